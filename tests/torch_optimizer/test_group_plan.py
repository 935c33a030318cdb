"""The plan of a fused param group (rmsprop.torch.group_plan): built once, reused while the
group is unchanged, rebuilt when it changes, and the numbers of the per-call fused path bit for
bit (that path, rmsprop.torch.functional.rmsprop, is run here on its own copies as the
reference; torch.optim.RMSprop and rmsprop.reference check both against independent code).
Every test runs with the C++ loop of rmsprop.torch.native and with its Python stand-in."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from native_common import PATHS, use_path
from plan_common import (
    SHAPES, PerCall, assert_same, count_builds, grads_for, make_params, step_both,
)
from rmsprop import reference
from rmsprop.spec import RMSpropSpec
from rmsprop.torch import RMSprop
from rmsprop.torch import group_plan
from rmsprop.torch.group_plan import GroupPlan
from rmsprop.torch.kernels import TensorLists

OPTIONS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.5, "nesterov": True, "centered": True, "amsgrad": True,
     "bias_correction": True, "weight_decay": 0.01},
]


@pytest.fixture(autouse=True, params=PATHS)
def checks_path(request, monkeypatch):
    use_path(monkeypatch, request.param)


@pytest.fixture
def builds(monkeypatch):
    """How many plans the optimizer builds."""
    return count_builds(monkeypatch)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_one_plan_serves_every_step_with_the_per_call_numbers(options, builds):
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused", **options)
    per_call = PerCall(params, options)
    for step in range(6):
        grads = grads_for(params, step)
        opt.zero_grad()  # set_to_none: new gradient tensors at every step
        step_both(opt, params, per_call, grads)
    assert builds["n"] == 1


def test_step_counters_are_views_of_one_tensor_per_group():
    params = make_params()
    opt = RMSprop(params, impl="fused")
    for step in range(3):
        for p, g in zip(params, grads_for(params, step)):
            p.grad = g
        opt.step()
    steps = [opt.state[p]["step"] for p in params]
    assert all(s.dim() == 0 and s.dtype == torch.float32 and s.item() == 3 for s in steps)
    assert len({s.untyped_storage().data_ptr() for s in steps}) == 1


@pytest.mark.parametrize("change", ["load_state_dict", "param_data", "option",
                                    "add_param_group", "state_precision"])
def test_a_changed_group_is_planned_again_and_steps_as_before(change, builds):
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9)
    per_call = PerCall(params, {"momentum": 0.9})
    lr = 1e-2
    for step in range(5):
        grads = grads_for(params, step)
        if step == 2:
            if change == "load_state_dict":
                opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            elif change == "param_data":  # a new storage, same values
                params[1].data = params[1].data.clone()
            elif change == "option":  # a scheduler writing into param_groups
                opt.param_groups[0]["momentum"] = 0.5
                per_call.spec = per_call.spec.replace(momentum=0.5)
            elif change == "add_param_group":
                opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
            else:  # a lean step in between, then back to full precision
                opt.param_groups[0]["state_precision"] = "bf16"
        if change == "state_precision" and step == 3:
            opt.param_groups[0]["state_precision"] = "fp32"
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        if change == "state_precision" and step == 2:  # the lean step: not comparable
            per_call = PerCall(params, {"momentum": 0.9})
            for i, p in enumerate(params):
                for key in per_call.state:
                    per_call.state[key][i].copy_(opt.state[p][key]
                                                 if key in opt.state[p] else 0)
                per_call.steps[i].fill_(opt.state[p]["step"].item())
            continue
        per_call.step(grads, lr)
        assert_same(opt, params, per_call)
    assert builds["n"] == 2


def test_a_parameter_without_gradient_is_left_alone_and_the_plan_kept(builds):
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused")
    per_call = PerCall(params, {})
    active = [0, 2, 3, 4]
    for step in range(4):
        grads = grads_for(params, step)
        for i in active:
            params[i].grad = grads[i].clone()
        opt.step()
        per_call.step(grads, active=active)
        for i in active:
            assert torch.equal(params[i].detach(), per_call.params[i])
        assert torch.equal(params[1].detach(), per_call.params[1])  # never stepped
        assert "step" not in opt.state.get(params[1], {})
    assert builds["n"] == 1


def test_the_planned_path_matches_torch_and_the_reference():
    """Many small tensors, under the plan: within the fused tolerance of torch.optim.RMSprop,
    and of the float64 reference at float64."""
    for dtype, tol in ((torch.float32, dict(rtol=1e-4, atol=1e-5)),
                       (torch.float64, dict(rtol=1e-12, atol=1e-13))):
        shapes = [(7,)] * 300 + [(70_000,)]
        ours = make_params(3, shapes, dtype)
        theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        opt = RMSprop(ours, lr=1e-2, impl="fused", momentum=0.9, centered=True)
        torch_opt = torch.optim.RMSprop(theirs, lr=1e-2, momentum=0.9, centered=True)
        spec = RMSpropSpec(lr=1e-2, momentum=0.9, centered=True)
        start = [p.detach().double().numpy().copy() for p in ours]  # a copy at float64 too
        ref = [(theta, reference.init_state(theta, spec)) for theta in start]
        for step in range(4):
            grads = grads_for(ours, step)
            for p, q, g in zip(ours, theirs, grads):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            torch_opt.step()
            ref = [reference.step(theta, g.double().numpy(), state, spec, 1e-2, step + 1)
                   for (theta, state), g in zip(ref, grads)]
        for p, q, (theta, _) in zip(ours, theirs, ref):
            torch.testing.assert_close(p, q, **tol)
            np.testing.assert_allclose(p.detach().double().numpy(), theta, **tol)


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9, "centered": True}], ids=str)
def test_state_dict_round_trip_through_torch(options):
    """Saved by the plan's counters, loaded by torch.optim.RMSprop, saved again, loaded back:
    the run continues as one that never left (state[p]["step"] is torch's 0-d tensor)."""
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused", **options)
    for step in range(3):
        for p, g in zip(params, grads_for(params, step)):
            p.grad = g
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert all(s["step"].dim() == 0 and s["step"].dtype == torch.float32
               for s in saved["state"].values())
    torch_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    torch_opt = torch.optim.RMSprop(torch_params, lr=1e-2, **options)
    torch_opt.load_state_dict(saved)
    back_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    back = RMSprop(back_params, lr=1e-2, impl="fused", **options)
    back.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    for step in range(3, 6):
        grads = grads_for(params, step)
        for ps in (params, back_params):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
        opt.step()
        back.step()
    for p, q in zip(params, back_params):
        assert torch.equal(p, q)
        for key, value in opt.state[p].items():
            assert torch.equal(back.state[q][key], value), key
    steps = [back.state[q]["step"] for q in back_params]
    assert len({s.untyped_storage().data_ptr() for s in steps}) == 1  # gathered again
    assert all(s.item() == 6 for s in steps)


def test_a_group_of_several_dtypes_is_planned_with_the_per_call_numbers(builds):
    params = (make_params(4, [(5,), (300,)], torch.float64) + make_params(5, [(7,), (2, 3)])
              + make_params(6, [(9,)], torch.bfloat16))
    params = [params[0], params[2], params[1], params[4], params[3]]  # interleaved dtypes
    opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, bias_correction=True)
    per_call = PerCall(params, {"momentum": 0.9, "bias_correction": True})
    for i, p in enumerate(per_call.params):  # the fused kernels keep float32 state for bf16
        if p.dtype == torch.bfloat16:
            for key in per_call.state:
                per_call.state[key][i] = per_call.state[key][i].float()
    for step in range(4):
        step_both(opt, params, per_call, grads_for(params, step))
    assert builds["n"] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_a_planned_group_sees_every_nonfinite_gradient_before_anything_changes(
        policy, dtype, monkeypatch):
    """The plan's one-pass check (not torch's per-tensor norms) finds a NaN or inf anywhere:
    in the first, a middle or the last tensor, at its first or last element."""
    import rmsprop.torch.optimizer as optimizer_module

    params = make_params(7, SHAPES, dtype)
    opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, nonfinite=policy)
    for p, g in zip(params, grads_for(params, 0)):
        p.grad = g
    opt.step()
    monkeypatch.setattr(optimizer_module, "all_finite", None)  # the plan's check, not it
    for index, element, value in [(0, 0, float("nan")), (1, -1, float("inf")),
                                  (4, 500, -float("inf")), (2, 0, float("nan"))]:
        for p, g in zip(params, grads_for(params, 1)):
            p.grad = g
        params[index].grad.view(-1)[element] = value
        before = [p.detach().clone() for p in params]
        state = copy.deepcopy({i: dict(opt.state[p]) for i, p in enumerate(params)})
        if policy == "raise":
            with pytest.raises(Exception, match="param group 0 holds NaN or inf"):
                opt.step()
        else:
            skipped = opt.skipped_steps
            opt.step()
            assert opt.skipped_steps == skipped + 1
        assert all(torch.equal(p, b) for p, b in zip(params, before))
        for i, p in enumerate(params):
            for key, value in state[i].items():
                assert torch.equal(opt.state[p][key], value), (index, key)
    for p, g in zip(params, grads_for(params, 2)):  # finite again: it steps
        p.grad = g
    opt.step()
    assert opt.state[params[0]]["step"].item() == 2


def test_step_counters_off_the_cpu_are_not_planned():
    """The plan reads its counters with NumPy: counters on another device (a state dict
    moved to the GPU) keep the per-call path, which reads each with ``item()``."""
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused")
    for p, g in zip(params, grads_for(params, 0)):
        p.grad = g
    opt.step()
    group = opt.param_groups[0]
    states = [dict(opt.state[p], step=torch.zeros((), device="meta")) for p in params]
    tensors = TensorLists(params, [p.grad for p in params], [s["square_avg"] for s in states],
                          [s["step"] for s in states], [], [], [])
    assert GroupPlan.build(opt, group, params, states, tensors, opt.spec_of(group),
                           "fused") is None



@pytest.mark.parametrize("precision", ["fp32", "8bit"])
@pytest.mark.parametrize("planned", [False, True])
def test_a_gradient_retyped_through_data_is_refused_before_anything_changes(planned,
                                                                           precision):
    """torch's ``p.grad = g`` refuses a gradient of another dtype; ``p.grad.data = ...`` does
    not. The kernels read a gradient in its parameter's format, so the step must refuse it,
    naming it, before any group steps, rather than read float64 bytes as float32 (what both
    the fused and the 8-bit kernel did)."""
    first, second = make_params(seed=1), make_params(seed=2)
    for p in first + second:
        p.grad = torch.ones_like(p)
    opt = RMSprop([{"params": first}, {"params": second}], lr=1e-2, impl="fused",
                  momentum=0.9, state_precision=precision, min_8bit_size=1)
    opt.step()  # builds the plans
    if not planned:
        group_plan.forget(opt)
    second[1].grad.data = second[1].grad.data.double()
    before = [p.detach().clone() for p in first + second]
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=r"parameter 1 of param group 1: its gradient has dtype "
                                         r"torch.float64, the parameter torch.float32"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(first + second, before))
    after = opt.state_dict()["state"]
    for i, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(after[i][key], value), (i, key)


def test_the_functional_fused_step_refuses_a_gradient_of_another_dtype():
    """rmsprop.torch.functional.rmsprop has no optimizer to check its groups first: the
    kernel's own list check refuses the gradient, before the kernel reads it."""
    from rmsprop.torch.functional import rmsprop

    params = [p.detach() for p in make_params()]
    grads = [torch.ones_like(p) for p in params]
    grads[2] = grads[2].double()
    square_avgs = [torch.zeros_like(p) for p in params]
    before = [p.clone() for p in params]
    with pytest.raises(ValueError, match=r"grads\[2\] has dtype torch.float64, its parameter "
                                         r"torch.float32"):
        rmsprop(params, grads, square_avgs, [torch.zeros(()) for _ in params],
                spec=RMSpropSpec(), lr=1e-2, impl="fused")
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert not any(v.any() for v in square_avgs)
