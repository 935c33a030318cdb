"""rmsprop.torch.RMSprop (loop and foreach) against the float64 reference, every option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rmsprop import reference
from option_matrix import ALL_SPECS, WELL_CONDITIONED, ill_conditioned, params, tiered
from rmsprop.testing import lr_schedule, mixed_gradients
from rmsprop.torch import RMSprop

# The ill-conditioned corner (option_matrix.ill_conditioned) is tested on its own below.
CONDITIONED_SPECS = WELL_CONDITIONED
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run_ours(spec, init, grads, lrs, dtype, impl):
    """Run rmsprop.torch.RMSprop over precomputed gradients; returns final params and state."""
    params = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in init]
    options = spec.options()
    options.pop("lr")
    opt = RMSprop(params, lr=lrs[0], impl=impl, **options)
    for step_grads, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
    return params, opt


def run_reference(spec, init, grads, lrs, dtype):
    """The reference on the same inputs as ours sees them (rounded to ``dtype``)."""
    as_seen = lambda a: torch.tensor(a, dtype=dtype).double().numpy()  # noqa: E731
    results = []
    for i, p in enumerate(init):
        theta, state = as_seen(p), reference.init_state(as_seen(p), spec)
        for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
            theta, state = reference.step(theta, as_seen(step_grads[i]), state, spec, lr, t)
        results.append((theta, state))
    return results


def make_problem(seed, shapes, steps):
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s) for s in shapes]
    per_param = [mixed_gradients(rng, s, steps, low=1e-2, high=1e1) for s in shapes]
    grads = [[per_param[i][t] for i in range(len(shapes))] for t in range(steps)]
    return init, grads, lr_schedule(rng, steps)


def assert_matches(spec, params, opt, expected, rtol, atol):
    for p, (theta, state) in zip(params, expected):
        np.testing.assert_allclose(p.detach().double().numpy(), theta, rtol=rtol, atol=atol)
        ours = opt.state[p]
        for key, value in state.items():
            np.testing.assert_allclose(
                ours[key].double().numpy(), value, rtol=rtol, atol=atol, err_msg=key
            )


MATRIX_PROBLEM = make_problem(0, [(3, 4), (), (5,)], steps=6)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("spec", tiered(params(CONDITIONED_SPECS)))
def test_every_option_combination_float64(spec, impl):
    """The whole option matrix, one spec per test, 6 steps with a changing lr: 1e-12 relative
    at float64."""
    init, grads, lrs = MATRIX_PROBLEM
    params, opt = run_ours(spec, init, grads, lrs, torch.float64, impl)
    expected = run_reference(spec, init, grads, lrs, torch.float64)
    assert_matches(spec, params, opt, expected, rtol=1e-12, atol=1e-14)


shapes = st.lists(
    st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple), min_size=1, max_size=3
)


@settings(max_examples=120, deadline=None)
@given(
    spec=st.sampled_from(CONDITIONED_SPECS),
    shapes=shapes,
    dtype=st.sampled_from(sorted(DTYPES)),
    impl=st.sampled_from(["loop", "foreach"]),
    steps=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    eps=st.sampled_from([1e-8, 1e-3, 0.1]),
)
def test_matches_reference(spec, shapes, dtype, impl, steps, seed, alpha, eps):
    """Random shapes, dtypes, options and schedules: float64 to 1e-12, float32 to rounding."""
    assume(not (spec.centered and alpha == 0))  # variance g^2 - g^2 = 0: the step is g/eps
    spec = spec.replace(alpha=alpha, eps=eps)
    init, grads, lrs = make_problem(seed, shapes, steps)
    params, opt = run_ours(spec, init, grads, lrs, DTYPES[dtype], impl)
    expected = run_reference(spec, init, grads, lrs, DTYPES[dtype])
    if dtype == "float64":
        assert_matches(spec, params, opt, expected, rtol=1e-12, atol=1e-13)
    else:
        # float32: each step rounds; the error grows with the number of steps.
        assert_matches(spec, params, opt, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("spec", params(ALL_SPECS[::7]))
def test_loop_and_foreach_are_bit_identical(spec):
    """Same math, different memory movement: the two implementations agree exactly,
    with mixed dtypes, a 0-d parameter and a frozen (grad-less) one."""
    init, grads, lrs = make_problem(1, [(4, 3), (), (6,)], steps=5)
    results = []
    for impl in ("loop", "foreach"):
        tensors = [
            torch.tensor(init[0], dtype=torch.float32, requires_grad=True),
            torch.tensor(init[1], dtype=torch.float64, requires_grad=True),
            torch.tensor(init[2], dtype=torch.float32, requires_grad=True),
        ]
        frozen = torch.ones(3, requires_grad=True)
        options = spec.options()
        options.pop("lr")
        opt = RMSprop(tensors + [frozen], lr=1e-2, impl=impl, **options)
        for step_grads, lr in zip(grads, lrs):
            opt.param_groups[0]["lr"] = lr
            for p, g in zip(tensors, step_grads):
                p.grad = torch.tensor(g, dtype=p.dtype)
            opt.step()
        assert torch.equal(frozen, torch.ones(3)) and len(opt.state[frozen]) == 0
        results.append(tensors)
    for a, b in zip(*results):
        assert torch.equal(a, b), spec


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_centered_bias_correction_first_step_is_eps_limited(impl):
    """From v0 = 0 the first centered, bias-corrected variance is 0 up to rounding, so the
    first update is lr*g/(sqrt(s) + eps) with 0 <= s <= a few ulp of g^2: close to lr*g/eps."""
    spec = next(s for s in ALL_SPECS if ill_conditioned(s) and s.momentum == 0
                and s.weight_decay == 0 and not s.maximize and not s.eps_in_sqrt)
    init, grads, lrs = make_problem(3, [(50,)], steps=1)
    params, _ = run_ours(spec, init, grads, lrs, torch.float64, impl)
    step = init[0] - params[0].detach().numpy()
    g, lr = grads[0][0], lrs[0]
    ulp_root = np.sqrt(8 * np.finfo(np.float64).eps) * np.abs(g)
    assert np.all(np.sign(step) == np.sign(g))
    assert np.all(np.abs(step) <= lr * np.abs(g) / spec.eps * (1 + 1e-12))
    assert np.all(np.abs(step) >= lr * np.abs(g) / (ulp_root + spec.eps) * (1 - 1e-12))
