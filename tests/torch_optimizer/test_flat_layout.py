"""RMSprop(flat=True): a group's parameters, gradients and state as views of one buffer each,
bit for bit the numbers of the same optimizer without it, whatever the user does between
steps (zero_grad, the module's zero_grad, a replaced gradient, a loaded state dict)."""

from __future__ import annotations

import copy

import pytest
import torch

from rmsprop.torch import RMSprop
from rmsprop.torch import group_plan

OPTIONS = [
    {"impl": "fused"},
    {"impl": "fused", "momentum": 0.9},
    {"impl": "fused", "momentum": 0.5, "centered": True, "amsgrad": True,
     "bias_correction": True, "weight_decay": 0.01},
    {"impl": "loop", "momentum": 0.9},  # torch's path on the views: torch's numbers
]


def model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3),
                               torch.nn.LayerNorm(3))


def storage(t):
    return t.untyped_storage().data_ptr()


def train_step(m, opt, x, y, event):
    opt.zero_grad()
    if event == "module_zero_grad":  # sets every .grad to None: new gradients below
        m.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    if event == "replace_grad":
        m[0].weight.grad = m[0].weight.grad.clone() * 0.5
    if event == "no_grad":  # this parameter does not step
        m[2].bias.grad = None
    opt.step()


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_flat_steps_as_the_ordinary_layout(options):
    ordinary, flat = model(), model()
    ordinary_opt = RMSprop(ordinary.parameters(), lr=1e-2, **options)
    flat_opt = RMSprop(flat.parameters(), lr=1e-2, flat=True, **options)
    gen = torch.Generator().manual_seed(1)
    events = {2: "module_zero_grad", 4: "replace_grad", 5: "no_grad", 7: "load_state_dict"}
    for step in range(10):
        x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 3, generator=gen)
        event = events.get(step)
        for m, opt in ((ordinary, ordinary_opt), (flat, flat_opt)):
            train_step(m, opt, x, y, event)
            if event == "load_state_dict":
                opt.load_state_dict(copy.deepcopy(ordinary_opt.state_dict()))
        for p, q in zip(ordinary.parameters(), flat.parameters()):
            assert torch.equal(p, q), step
            for key, value in ordinary_opt.state[p].items():
                assert torch.equal(flat_opt.state[q][key], value), (step, key)
    params = list(flat.parameters())
    assert len({storage(p) for p in params}) == 1
    assert len({storage(p.grad) for p in params}) == 1
    assert len({storage(flat_opt.state[p]["square_avg"]) for p in params}) == 1


def test_the_fused_flat_step_walks_the_buffers_as_one_tensor():
    m = model()
    opt = RMSprop(m.parameters(), lr=1e-2, impl="fused", momentum=0.9, flat=True)
    x, y = torch.randn(4, 8), torch.randn(4, 3)
    for _ in range(2):
        train_step(m, opt, x, y, None)
    (plan,) = group_plan.plans_of(opt).values()
    assert plan.layout is not None
    assert [g.sizes.tolist() for g in plan.kernel.groups] == [
        [sum(p.numel() for p in m.parameters())]]


def test_zero_grad_keeps_the_views_and_zeroes_them():
    m = model()
    opt = RMSprop(m.parameters(), flat=True, impl="fused")
    torch.nn.functional.mse_loss(m(torch.randn(4, 8)), torch.randn(4, 3)).backward()
    opt.step()
    opt.zero_grad()  # set_to_none=True, torch's default
    params = list(m.parameters())
    assert all(p.grad is not None and not p.grad.any() for p in params)
    assert len({storage(p.grad) for p in params}) == 1


def test_a_parameter_moved_out_of_the_buffer_still_steps_as_the_ordinary_layout():
    ordinary, flat = model(), model()
    opts = [RMSprop(m.parameters(), lr=1e-2, impl="fused", momentum=0.9, flat=f)
            for m, f in ((ordinary, False), (flat, True))]
    x, y = torch.randn(16, 8), torch.randn(16, 3)
    for step in range(4):
        if step == 2:
            flat[0].bias.data = flat[0].bias.data.clone()
        for m, opt in zip((ordinary, flat), opts):
            train_step(m, opt, x, y, None)
        for p, q in zip(ordinary.parameters(), flat.parameters()):
            assert torch.equal(p, q), step


def test_the_state_dict_loads_into_torch_and_continues_identically():
    ours, theirs = model(), model()
    opt = RMSprop(ours.parameters(), lr=1e-2, impl="loop", momentum=0.9, flat=True)
    x, y = torch.randn(16, 8), torch.randn(16, 3)
    for _ in range(3):
        train_step(ours, opt, x, y, None)
    theirs.load_state_dict(ours.state_dict())
    torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=1e-2, momentum=0.9)
    torch_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(3):
        train_step(ours, opt, x, y, None)
        train_step(theirs, torch_opt, x, y, None)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p, q)


def test_refused_groups_name_the_problem_and_move_nothing():
    a = torch.nn.Parameter(torch.randn(3))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    before = a.data_ptr()
    with pytest.raises(ValueError, match=r"one dtype and device per param group.*parameter 1"):
        RMSprop([a, b], flat=True)
    assert a.data_ptr() == before
    with pytest.raises(ValueError, match="state_precision='fp32'"):
        RMSprop([a], flat=True, state_precision="bf16")
    with pytest.raises(ValueError, match="differentiable"):
        RMSprop([a], flat=True, differentiable=True)
    opt = RMSprop([a], flat=True)
    with pytest.raises(ValueError, match="param group 1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.int64),
                                                           requires_grad=False)]})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_a_nan_in_the_gradient_buffer_is_seen_before_anything_changes(policy):
    m = model()
    opt = RMSprop(m.parameters(), lr=1e-2, impl="fused", momentum=0.9, flat=True,
                  nonfinite=policy)
    x, y = torch.randn(4, 8), torch.randn(4, 3)
    for _ in range(2):
        train_step(m, opt, x, y, None)
    before = [p.detach().clone() for p in m.parameters()]
    state = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    m[2].bias.grad[1] = float("nan")
    if policy == "raise":
        with pytest.raises(Exception, match="NaN or inf"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    assert all(torch.equal(p, b) for p, b in zip(m.parameters(), before))
    after = opt.state_dict()
    for key, saved in state["state"].items():
        for name, value in saved.items():
            assert torch.equal(after["state"][key][name], value), (key, name)


def test_a_checkpoint_of_a_flat_run_resumes_flat_and_identically(tmp_path):
    """rmsprop.checkpoint (safetensors, which refuses shared storage) saves the buffers'
    views and loads them back into a flat optimizer: the run continues bit for bit."""
    from rmsprop import checkpoint

    m, resumed = model(), model(1)
    opt = RMSprop(m.parameters(), lr=1e-2, impl="fused", momentum=0.9, flat=True)
    x, y = torch.randn(8, 8), torch.randn(8, 3)
    for _ in range(3):
        train_step(m, opt, x, y, None)
    checkpoint.save(tmp_path / "run.safetensors", opt, m)
    resumed_opt = RMSprop(resumed.parameters(), lr=1e-2, impl="fused", momentum=0.9,
                          flat=True)
    checkpoint.load(tmp_path / "run.safetensors", resumed_opt, resumed)
    for _ in range(3):
        train_step(m, opt, x, y, None)
        train_step(resumed, resumed_opt, x, y, None)
    params = list(resumed.parameters())
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), params))
    assert len({storage(p) for p in params}) == 1
    assert len({storage(resumed_opt.state[p]["momentum_buffer"]) for p in params}) == 1
