"""rmsprop.torch.RMSprop against the real torch.optim.RMSprop: identical numbers and state.

Two parts. The drop-in: the default class (and ``impl="fused"``) on a small MLP under a
LambdaLR schedule, state dicts both ways, PyTorch's own test and error inputs, complex
parameters, the signature, hooks and reloads. The flavour: ``flavor="pytorch"`` selected by
name and fed the mixed-magnitude gradients and per-step learning rate of the other parity
files (tests/parity_common.py), over 100 steps, loop and foreach; and the centered
cancellation where torch returns NaN and ours stays finite.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch.testing._internal.common_optimizers import (
    get_error_inputs_for_all_optims,
    optim_error_inputs_func_rmsprop,
    optim_inputs_func_rmsprop,
)

import rmsprop.torch as rt
from option_matrix import TORCH_OPTIONS, params
from parity_common import (
    IMPLS, Trajectory, cancellation_problem, is_finite, make_problem, run_ours,
    run_torch_optimizer,
)

pytestmark = pytest.mark.parity

# torch's options, each with its for-loop and its foreach implementation.
COMBOS = [{**options, "foreach": foreach} for options in TORCH_OPTIONS for foreach in (False, True)]


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 6, generator=gen), torch.randn(16, 3, generator=gen))
            for _ in range(n)]


def train(model, opt, data, scheduler=None):
    for x, y in data:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def assert_same(model_a, model_b):
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b), (a - b).abs().max()


def assert_same_state(opt_a, opt_b):
    for pa, pb in zip(
        [p for g in opt_a.param_groups for p in g["params"]],
        [p for g in opt_b.param_groups for p in g["params"]],
    ):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("kwargs", params(COMBOS))
def test_identical_to_torch_over_100_steps(kwargs):
    """Every combination of momentum, centered, weight_decay, maximize, foreach; an lr that
    changes every step through a scheduler; bit-identical parameters and state."""
    data = batches(100)
    runs = []
    for cls in (torch.optim.RMSprop, rt.RMSprop):
        model = make_model()
        opt = cls(model.parameters(), lr=1e-2, **kwargs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 0.1 * t))
        train(model, opt, data, sched)
        runs.append((model, opt))
    assert_same(runs[0][0], runs[1][0])
    assert_same_state(runs[0][1], runs[1][1])


DEFAULT_COMBOS = TORCH_OPTIONS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("kwargs", params(DEFAULT_COMBOS))
def test_default_is_bit_identical_to_torch(kwargs, dtype):
    """``RMSprop(params)`` with neither impl nor foreach (the drop-in as a user writes it):
    100 steps under a LambdaLR schedule, parameters and state bit-identical to
    ``torch.optim.RMSprop(params)``'s default, for all 16 option combinations x 2 dtypes.
    (Before issue 15, impl="auto" ran the fused kernel here, a few ulp away.)"""
    data = [(x.to(dtype), y.to(dtype)) for x, y in batches(100)]
    runs = []
    for cls in (torch.optim.RMSprop, rt.RMSprop):
        model = make_model().to(dtype)
        opt = cls(model.parameters(), lr=1e-2, **kwargs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 0.1 * t))
        train(model, opt, data, sched)
        runs.append((model, opt))
    assert_same(runs[0][0], runs[1][0])
    assert_same_state(runs[0][1], runs[1][1])


@pytest.mark.parametrize("kwargs", params(DEFAULT_COMBOS))
def test_fused_impl_matches_torch_to_float32_rounding(kwargs):
    """``impl="fused"`` (the fast path, as torch's ``fused=True``): 100 steps stay within
    float32 rounding of torch's default path (it does not round as torch's kernels do)."""
    data = batches(100)
    models = []
    for cls, extra in ((torch.optim.RMSprop, {}), (rt.RMSprop, {"impl": "fused"})):
        model = make_model()
        opt = cls(model.parameters(), lr=1e-2, **kwargs, **extra)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 0.1 * t))
        train(model, opt, data, sched)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", params(COMBOS))
@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
def test_state_dicts_load_both_ways(kwargs, direction):
    """Train 30 steps with one, save, load into the other, train 30 more: identical to 60
    uninterrupted steps of torch.optim.RMSprop. The state dict goes through torch.save."""
    data = batches(60)
    first, second = (
        (torch.optim.RMSprop, rt.RMSprop) if direction == "torch->ours"
        else (rt.RMSprop, torch.optim.RMSprop)
    )
    reference_model = make_model()
    reference_opt = torch.optim.RMSprop(reference_model.parameters(), lr=1e-2, **kwargs)
    train(reference_model, reference_opt, data)

    model = make_model()
    opt = first(model.parameters(), lr=1e-2, **kwargs)
    train(model, opt, data[:30])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model = make_model(seed=123)
    resumed_model.load_state_dict(saved["model"])
    resumed_opt = second(resumed_model.parameters(), lr=1e-2, **kwargs)
    resumed_opt.load_state_dict(saved["opt"])
    train(resumed_model, resumed_opt, data[30:])
    assert_same(reference_model, resumed_model)
    assert_same_state(reference_opt, resumed_opt)


@pytest.mark.parametrize("optim_input", optim_inputs_func_rmsprop("cpu", torch.float32),
                         ids=lambda o: o.desc)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_torch_own_test_inputs(optim_input, dtype):
    """PyTorch's own RMSprop test inputs (common_optimizers), incl. complex parameters and a
    tensor lr: the same numbers as torch.optim.RMSprop, for loop and foreach."""
    kwargs = dict(optim_input.kwargs)
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(5, 4, generator=gen, dtype=dtype), torch.randn((), generator=gen,
                                                                       dtype=dtype)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=dtype) for p in init]
             for _ in range(20)]
    results = []
    for cls in (torch.optim.RMSprop, rt.RMSprop):
        for foreach in (False, True):
            params = [p.clone().requires_grad_() for p in init]
            opt = cls(params, **{**kwargs, "foreach": foreach})
            for step_grads in grads:
                for p, g in zip(params, step_grads):
                    p.grad = g.clone()
                opt.step()
            results.append(params)
    torch_loop, torch_foreach, ours_loop, ours_foreach = results
    for ours in (ours_loop, ours_foreach):
        for a, b in zip(torch_foreach, ours):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        # torch's for-loop adds complex weight decay before viewing as real, which rounds
        # differently from its own foreach path by an ulp; ours is the foreach semantics.
        exact = not (dtype.is_complex and kwargs.get("weight_decay", 0))
        for a, b in zip(torch_loop, ours):
            torch.testing.assert_close(a, b, **({"rtol": 0, "atol": 0} if exact else {}))


def test_complex_is_view_as_real():
    """Complex parameters are updated as torch does: as their view_as_real."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, dtype=torch.complex64, generator=gen, requires_grad=True)
    r = torch.view_as_real(z.detach()).clone().requires_grad_()
    opts = [rt.RMSprop([z], lr=1e-2, momentum=0.9, centered=True, amsgrad=True),
            rt.RMSprop([r], lr=1e-2, momentum=0.9, centered=True, amsgrad=True)]
    for _ in range(10):
        g = torch.randn(4, 3, dtype=torch.complex64, generator=gen)
        z.grad, r.grad = g, torch.view_as_real(g).clone()
        for opt in opts:
            opt.step()
    assert torch.equal(torch.view_as_real(z.detach()), r.detach())


@pytest.mark.parametrize(
    "error_input",
    get_error_inputs_for_all_optims("cpu", torch.float32)
    + optim_error_inputs_func_rmsprop("cpu", torch.float32),
    ids=lambda e: e.optimizer_error_input.desc,
)
def test_torch_own_error_inputs(error_input):
    """PyTorch's error inputs for RMSprop raise the same error, with torch's wording."""
    optim_input = error_input.optimizer_error_input
    params = optim_input.params
    if params is None:
        params = [torch.nn.Parameter(torch.randn(1, 1))]
    if issubclass(error_input.error_type, Warning):
        with pytest.warns(error_input.error_type, match=error_input.error_regex):
            rt.RMSprop(params, **optim_input.kwargs)
    else:
        with pytest.raises(error_input.error_type, match=error_input.error_regex):
            rt.RMSprop(params, **optim_input.kwargs)


def test_signature_is_torch_compatible():
    """Same positional arguments in the same order, same default values."""
    import inspect

    theirs = inspect.signature(torch.optim.RMSprop)
    ours = inspect.signature(rt.RMSprop)
    positional = [p for p in ours.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == list(theirs.parameters)
    for p in positional:
        expected = theirs.parameters[p.name].default
        assert p.default == expected and repr(p.default) == repr(expected), p.name
    extra = [p for p in ours.parameters.values() if p.name not in theirs.parameters]
    assert all(p.kind is p.KEYWORD_ONLY for p in extra)


def test_closure_and_hooks():
    """step(closure) returns the closure's loss; torch's step hooks run."""
    model = make_model()
    (x, y), = batches(1)
    opt = rt.RMSprop(model.parameters())
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    before = copy.deepcopy(model.state_dict())
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert calls == ["pre", "post"]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_zero_grad_is_noop_and_sparse_rejected():
    p = torch.nn.Parameter(torch.ones(3))
    opt = rt.RMSprop([p])
    opt.step()  # no grad: nothing happens, no state
    assert torch.equal(p, torch.ones(3)) and len(opt.state) == 0
    p.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_float_step_in_loaded_state_dict():
    """An old state dict with a float 'step' loads (as torch's __setstate__ allows)."""
    model = make_model()
    opt = rt.RMSprop(model.parameters())
    train(model, opt, batches(3))
    sd = opt.state_dict()
    for s in sd["state"].values():
        s["step"] = float(s["step"])
    opt2 = rt.RMSprop(make_model().parameters())
    opt2.load_state_dict(sd)
    assert all(torch.is_tensor(s["step"]) and s["step"].item() == 3 for s in opt2.state.values())


def test_bf16_reload_with_the_default_continues_as_torch():
    """bfloat16 parameters under the default (torch's path, state in bfloat16 as torch's):
    saved after 5 steps and loaded into a fresh optimizer, the run goes on bit-identical to
    torch.optim.RMSprop's uninterrupted run, state dtype included."""
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(50, generator=gen).to(torch.bfloat16)
    grads = [torch.randn(50, generator=gen).to(torch.bfloat16) for _ in range(10)]

    def steps(opt, p, gs):
        for g in gs:
            p.grad = g.clone()
            opt.step()

    reference = torch.nn.Parameter(init.clone())
    reference_opt = torch.optim.RMSprop([reference], momentum=0.9)
    steps(reference_opt, reference, grads)

    first = torch.nn.Parameter(init.clone())
    first_opt = rt.RMSprop([first], momentum=0.9)
    steps(first_opt, first, grads[:5])
    resumed = torch.nn.Parameter(first.detach().clone())
    resumed_opt = rt.RMSprop([resumed], momentum=0.9)
    resumed_opt.load_state_dict(copy.deepcopy(first_opt.state_dict()))
    steps(resumed_opt, resumed, grads[5:])
    assert torch.equal(resumed, reference)
    for key in ("square_avg", "momentum_buffer"):
        assert resumed_opt.state[resumed][key].dtype == torch.bfloat16, key
        assert torch.equal(resumed_opt.state[resumed][key], reference_opt.state[reference][key])


# -- flavor="pytorch" on the parity problem ---------------------------------------------

PROBLEM_100 = make_problem(seed=1, steps=100)


def assert_identical(ours: Trajectory, theirs: Trajectory) -> None:
    for ours_step, theirs_step in zip(ours, theirs, strict=True):
        for a, b in zip(ours_step, theirs_step, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(TORCH_OPTIONS))
def test_bit_identical_to_torch(combo, impl):
    theirs = run_torch_optimizer(
        PROBLEM_100,
        lambda ps: torch.optim.RMSprop(
            ps, lr=PROBLEM_100.lrs[0], foreach=impl == "foreach", **combo
        ),
    )
    assert_identical(run_ours(PROBLEM_100, impl, "pytorch", **combo), theirs)


def test_centered_cancellation():
    """torch takes sqrt(v - gbar^2) unclamped and returns NaN on this input; ours clamps
    v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    theirs = run_torch_optimizer(
        problem, lambda ps: torch.optim.RMSprop(ps, lr=1e-4, alpha=0.9, centered=True)
    )
    assert not is_finite(theirs)
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "pytorch", alpha=0.9, centered=True))
