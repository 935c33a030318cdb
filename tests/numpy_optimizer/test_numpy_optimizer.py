"""rmsprop.numpy.RMSprop: against the exact oracle, in place, state dicts, errors.

The numbers are checked against ``exact_oracle`` (the spec's equations at 50 digits, sharing
no code with ``rmsprop.update``, which this optimizer and ``rmsprop.reference`` both run) and
against closed forms in tests/math/test_closed_forms.py; the bookkeeping tests below compare with
the float64 reference bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rmsprop import reference
from rmsprop.errors import NonFiniteGradientError
from rmsprop.numpy import RMSprop
from rmsprop.spec import FLAVORS
import exact_oracle
from option_matrix import (
    ALL_SPECS, WELL_CONDITIONED, ill_conditioned, numbered, params, tiered,
)
from rmsprop.testing import lr_schedule, mixed_gradients

SHAPES = ((4, 3), (), (2,))
STEPS = 12


def _problem(seed: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [rng.uniform(1.0, 2.0, size=s) * rng.choice([-1.0, 1.0], size=s) for s in SHAPES]
    per_shape = [mixed_gradients(rng, s, STEPS) for s in SHAPES]
    grads = [[g[t] for g in per_shape] for t in range(STEPS)]
    lrs = lr_schedule(rng, STEPS)
    return [np.asarray(p, dtype) for p in params], grads, lrs


def _reference_run(params, grads, lrs, spec):
    """The float64 reference, step by step: parameters and states after the last step."""
    thetas = [np.array(p, np.float64) for p in params]
    states = [reference.init_state(p, spec) for p in thetas]
    for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
        for i, g in enumerate(step_grads):
            thetas[i], states[i] = reference.step(thetas[i], g, states[i], spec, lr, t)
    return thetas, states


def _assert_state_dicts_equal(a, b):
    assert a["options"] == b["options"] and a["skipped_steps"] == b["skipped_steps"]
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        assert a["state"][key].keys() == b["state"][key].keys()
        for name, value in a["state"][key].items():
            np.testing.assert_array_equal(value, b["state"][key][name])


# -- numbers ------------------------------------------------------------------------------------


ORACLE_SHAPES = ((2, 2), ())
ORACLE_STEPS = 8
# |ours - oracle| at float64 after ORACLE_STEPS steps: parameters (of magnitude 1 to 2, and
# moving by less than 1 per step) relative to max(|oracle|, 1); v and vmax relative; the signed
# sums gbar and b (which can cancel towards 0) relative to max(|oracle|, 1e-2).
ORACLE_RTOL = {"param": 1e-14, "square_avg": 1e-14, "max_square_avg": 1e-14,
               "grad_avg": 1e-12, "momentum_buffer": 1e-12}
ORACLE_FLOOR = {"param": 1.0, "square_avg": 0.0, "max_square_avg": 0.0, "grad_avg": 1e-2,
                "momentum_buffer": 1e-2}


def _oracle_problem(seed: int, dyadic: bool = False):
    """Parameters of magnitude 1 to 2, mixed-magnitude gradients, a changing lr; ``dyadic``:
    gradients and lrs of 3 significant bits (squares, halves and products exact)."""
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.uniform(1.0, 2.0, size=s) * rng.choice([-1.0, 1.0], size=s))
              for s in ORACLE_SHAPES]
    per_shape = [mixed_gradients(rng, s, ORACLE_STEPS) for s in ORACLE_SHAPES]
    grads = [[np.asarray(g[t]) for g in per_shape] for t in range(ORACLE_STEPS)]
    lrs = lr_schedule(rng, ORACLE_STEPS)
    if dyadic:
        round3 = lambda x: np.ldexp(np.round(np.ldexp(*np.frexp(x)[:1], 3)) / 8,  # noqa: E731
                                    np.frexp(x)[1])
        grads = [[round3(g) for g in step] for step in grads]
        lrs = [float(round3(lr)) for lr in lrs]
    return params, grads, lrs


def _check_against_oracle(spec, params0, grads, lrs, opt, params):
    for i, (p0, param) in enumerate(zip(params0, params)):
        theta, state = exact_oracle.run(p0, [g[i] for g in grads], lrs, spec)
        assert opt.state[i]["step"] == len(grads)
        assert set(opt.state[i]) == {"step", *state}, (sorted(opt.state[i]), sorted(state))
        for name, ours, exact in [("param", param, theta)] + [
            (key, opt.state[i][key], value) for key, value in state.items()
        ]:
            error = np.abs(ours - exact) / np.maximum(np.abs(exact), ORACLE_FLOOR[name])
            assert error.max() <= ORACLE_RTOL[name], (
                f"{name} of param {i}: {ours!r} vs the exact {exact!r}, error "
                f"{error.max():.3g} > {ORACLE_RTOL[name]:g}; {spec}")


def _run(spec, params, grads, lrs, **extra):
    options = {k: v for k, v in spec.options().items() if k not in ("lr", "flavor")}
    opt = RMSprop(params, lr=lrs[0], **{**options, **extra})
    for step_grads, lr in zip(grads, lrs):
        opt.lr = lr
        opt.step(step_grads)
    return opt


@pytest.mark.parametrize("spec", tiered(params(ALL_SPECS)))
def test_float64_matches_the_exact_oracle(spec):
    """Every spec of the option matrix, 8 steps with a changing lr, to float64 rounding of the
    spec's equations at 50 digits. The ill-conditioned corner (centered + bias correction
    from v0 = 0, whose first variance is g^2 - g^2) runs with alpha = 0.5 and 3-bit
    gradients and lrs, where float64 computes that first variance exactly (0), and eps = 1/4,
    so that the first step, g/eps or g/sqrt(eps), stays of the size of the others."""
    n = ALL_SPECS.index(spec)
    if ill_conditioned(spec):
        spec = spec.replace(alpha=0.5, eps=0.25)
    params0, grads, lrs = _oracle_problem(n % 7, dyadic=ill_conditioned(spec))
    params = [p.copy() for p in params0]
    opt = _run(spec, params, grads, lrs)
    assert opt.spec == spec.replace(lr=lrs[-1])
    _check_against_oracle(spec, params0, grads, lrs, opt, params)


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_every_flavor_matches_the_exact_oracle(flavor):
    """Each flavour's preset (its alpha, eps, v0 and forms) with momentum and weight decay."""
    params0, grads, lrs = _oracle_problem(1)
    params = [p.copy() for p in params0]
    opt = RMSprop(params, lr=lrs[0], flavor=flavor, momentum=0.5, weight_decay=0.01)
    for step_grads, lr in zip(grads, lrs):
        opt.lr = lr
        opt.step(step_grads)
    assert opt.spec.flavor == flavor
    _check_against_oracle(opt.spec, params0, grads, lrs, opt, params)


# The ill-conditioned corner is rounding noise below float64: WELL_CONDITIONED; every
# combination in float32, one in eight in float16.
LOWER_PRECISION = (
    tiered(pytest.param(np.float32, *c.values, id=f"float32-{c.id}")
           for c in numbered(WELL_CONDITIONED))
    + tiered(pytest.param(np.float16, *c.values, id=f"float16-{c.id}")
             for c in numbered(WELL_CONDITIONED[::8]))
)


@pytest.mark.parametrize("dtype, n, spec", LOWER_PRECISION)
def test_lower_precision_computes_in_the_arrays_dtype(dtype, n, spec):
    """float32 (and float16) stay in their dtype and follow the reference to their rounding.

    float16 squares of small gradients are subnormal (few bits): its bound checks the dtype
    handling, not the numbers.
    """
    rtol = {np.float32: 5e-6, np.float16: 0.1}[dtype]
    params, grads, lrs = _problem(n % 5, dtype)
    grads = [[g.astype(dtype) for g in step] for step in grads]  # what both sides see
    options = {k: v for k, v in spec.options().items() if k not in ("lr", "flavor")}
    opt = RMSprop(params, lr=lrs[0], **options)
    for step_grads, lr in zip(grads, lrs):
        opt.lr = lr
        opt.step(step_grads)
    thetas, _ = _reference_run(_problem(n % 5, dtype)[0], grads, lrs, spec)
    for i, (param, theta) in enumerate(zip(params, thetas)):
        assert param.dtype == dtype
        assert all(v.dtype == dtype for k, v in opt.state[i].items() if k != "step")
        error = np.abs(param.astype(np.float64) - theta) / np.maximum(np.abs(theta), 1.0)
        assert error.max() <= rtol, (spec, i, error.max())


def test_float64_gradients_for_float32_params_keep_float32():
    w = np.ones(3, np.float32)
    opt = RMSprop([w], lr=0.1)
    opt.step([np.full(3, 0.5, np.float64)])
    assert w.dtype == np.float32 and opt.state[0]["square_avg"].dtype == np.float32
    assert not np.array_equal(w, np.ones(3, np.float32))


# -- behaviour -------------------------------------------------------------------------------------


def test_updates_the_users_arrays_in_place_and_never_the_gradients():
    base = np.arange(1.0, 9.0)
    view = base[2:6]  # a view the user holds into a bigger array
    scalar = np.array(3.0)
    opt = RMSprop({"view": view, "scalar": scalar}, lr=0.1, maximize=True, weight_decay=0.1)
    grads = {"view": np.ones(4), "scalar": np.array(2.0)}
    kept = copy.deepcopy(grads)
    opt.step(grads)
    assert opt.params["view"] is view and opt.params["scalar"] is scalar
    expected, _ = _reference_run([np.arange(3.0, 7.0), np.array(3.0)],
                                 [[kept["view"], kept["scalar"]]], [0.1], opt.spec)
    np.testing.assert_array_equal(base[2:6], expected[0])
    np.testing.assert_array_equal(base[:2], [1.0, 2.0])  # the rest of the array is untouched
    np.testing.assert_array_equal(scalar, expected[1])
    for name in grads:
        np.testing.assert_array_equal(grads[name], kept[name])


def test_a_none_gradient_skips_that_array_only():
    a, b = np.ones(2), np.ones(3)
    opt = RMSprop([a, b], lr=0.1)
    opt.step([np.ones(2), None])
    opt.step([np.ones(2), np.ones(3)])
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1
    expected, _ = _reference_run([np.ones(3)], [[np.ones(3)]], [0.1], opt.spec)
    np.testing.assert_array_equal(b, expected[0])


def test_state_dict_round_trip_resumes_exactly():
    params, grads, lrs = _problem(3)
    opt = RMSprop(params, lr=0.01, momentum=0.9, centered=True, amsgrad=True)
    for g in grads[:6]:
        opt.step(g)
    saved = opt.state_dict()
    for g in grads[6:]:
        opt.step(g)

    resumed_params = [p.copy() for p in _problem(3)[0]]
    fresh = RMSprop(resumed_params, lr=0.5)  # options come from the state dict
    warmup = RMSprop(resumed_params, lr=0.01, momentum=0.9, centered=True, amsgrad=True)
    for g in grads[:6]:
        warmup.step(g)
    fresh.load_state_dict(saved)
    assert fresh.spec == opt.spec and fresh.lr == 0.01
    for g in grads[6:]:
        fresh.step(g)
    for a, b in zip(params, resumed_params):
        np.testing.assert_array_equal(a, b)
    _assert_state_dicts_equal(fresh.state_dict(), opt.state_dict())


def test_state_dict_is_a_deep_copy_both_ways():
    w = np.ones(3)
    opt = RMSprop([w], lr=0.1)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    saved["state"][0]["square_avg"][:] = 123.0
    assert not np.any(opt.state[0]["square_avg"] == 123.0)
    loaded = opt.state_dict()
    opt.load_state_dict(loaded)
    loaded["state"][0]["square_avg"][:] = 456.0
    assert not np.any(opt.state[0]["square_avg"] == 456.0)


def _corrupt(saved, how):
    bad = copy.deepcopy(saved)
    entry = bad["state"][0]
    if how == "shape":
        entry["square_avg"] = np.ones(5)
    elif how == "dtype":
        entry["square_avg"] = entry["square_avg"].astype(np.float32)
    elif how == "missing moment":
        del entry["momentum_buffer"]
    elif how == "extra moment":
        entry["grad_avg"] = np.zeros(3)
    elif how == "unknown param":
        bad["state"][7] = copy.deepcopy(entry)
    elif how == "bad option":
        bad["options"]["alpha"] = 1.5
    elif how == "unknown option":
        bad["options"]["betas"] = 0.9
    elif how == "step":
        entry["step"] = -1
    elif how == "missing key":
        del bad["skipped_steps"]
    elif how == "not an array":
        entry["square_avg"] = [1.0, 1.0, 1.0]
    return bad


@pytest.mark.parametrize(
    "how, error, match",
    [("shape", ValueError, "shape"), ("dtype", ValueError, "dtype"),
     ("missing moment", ValueError, "keys"), ("extra moment", ValueError, "keys"),
     ("unknown param", ValueError, "no param"), ("bad option", ValueError, "alpha"),
     ("unknown option", ValueError, "options"), ("step", ValueError, "step"),
     ("missing key", ValueError, "skipped_steps"), ("not an array", TypeError, "numpy array")],
)
def test_a_failed_load_changes_nothing(how, error, match):
    w = np.ones(3)
    opt = RMSprop([w], lr=0.1, momentum=0.9)
    opt.step([np.full(3, 0.5)])
    before = opt.state_dict()
    saved = opt.state_dict()
    opt.step([np.full(3, 0.25)])
    current, w_now = opt.state_dict(), w.copy()
    with pytest.raises(error, match=match):
        opt.load_state_dict(_corrupt(saved, how))
    _assert_state_dicts_equal(opt.state_dict(), current)
    np.testing.assert_array_equal(w, w_now)
    assert before["state"][0]["step"] == 1  # (the saved dict itself was not touched either)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nonfinite_gradients_change_nothing(policy):
    a, b = np.ones(2), np.ones(2)
    opt = RMSprop([a, b], lr=0.1, nonfinite=policy)
    opt.step([np.ones(2), np.ones(2)])
    before, a_now = opt.state_dict(), a.copy()
    bad = [np.ones(2), np.array([1.0, np.inf])]
    if policy == "raise":
        with pytest.raises(NonFiniteGradientError):
            opt.step(bad)
        assert opt.skipped_steps == 0
    else:
        opt.step(bad)
        assert opt.skipped_steps == 1
    np.testing.assert_array_equal(a, a_now)
    after = opt.state_dict()
    assert after["state"][0]["step"] == 1
    for key in before["state"]:
        np.testing.assert_array_equal(after["state"][key]["square_avg"],
                                      before["state"][key]["square_avg"])


def test_nan_propagates_by_default_like_torch():
    w = np.ones(2)
    RMSprop([w], lr=0.1).step([np.array([np.nan, 1.0])])
    assert np.isnan(w[0]) and np.isfinite(w[1])


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: RMSprop([]), ValueError, "empty"),
        (lambda: RMSprop(np.ones(3)), TypeError, "list or dict"),
        (lambda: RMSprop([[1.0, 2.0]]), TypeError, r"params\[0\] must be a numpy array"),
        (lambda: RMSprop([np.ones(2, complex)]), TypeError, "complex"),
        (lambda: RMSprop([np.ones(2, int)]), TypeError, "float"),
        (lambda: RMSprop([np.broadcast_to(np.ones(1), (3,))]), ValueError, "read-only"),
        (lambda: RMSprop([np.ones(4)[:3], np.ones(4)]), None, None),
        (lambda: (lambda a: RMSprop([a[:3], a[2:]]))(np.ones(4)), ValueError, "share memory"),
        (lambda: (lambda a: RMSprop([a, a]))(np.ones(4)), ValueError, "share memory"),
        (lambda: RMSprop([np.ones(2)], lr=-1.0), ValueError, "lr"),
        (lambda: RMSprop([np.ones(2)], alpha=1.0), ValueError, "alpha"),
        (lambda: RMSprop([np.ones(2)], eps=-1.0), ValueError, "eps"),
        (lambda: RMSprop([np.ones(2)], momentum=-0.1), ValueError, "momentum"),
        (lambda: RMSprop([np.ones(2)], nesterov=True), ValueError, "nesterov"),
        (lambda: RMSprop([np.ones(2)], flavor="tensorflow"), ValueError, "learning rate"),
        (lambda: RMSprop([np.ones(2)], flavor="nope"), ValueError, "flavor"),
        (lambda: RMSprop([np.ones(2)], nonfinite="ignore"), ValueError, "nonfinite"),
        (lambda: RMSprop([np.ones(2)], centered="yes"), TypeError, "centered"),
    ],
)
def test_bad_construction_raises_clear_errors(make, error, match):
    if error is None:
        make()  # disjoint views of one array are fine
        return
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "grads, error, match",
    [
        ([np.ones(2)], ValueError, "one entry per param"),
        ([np.ones(2), np.ones(4)], ValueError, r"grads\[1\] has shape"),
        ([np.ones(2), np.ones(3, complex)], TypeError, "real numbers"),
        ({"0": np.ones(2)}, TypeError, "list"),
        (np.ones(2), TypeError, "list"),
    ],
)
def test_a_bad_step_raises_and_changes_nothing(grads, error, match):
    a, b = np.ones(2), np.ones(3)
    opt = RMSprop([a, b], lr=0.1)
    opt.step([np.ones(2), np.ones(3)])
    before = opt.state_dict()
    with pytest.raises(error, match=match):
        opt.step(grads)
    _assert_state_dicts_equal(opt.state_dict(), before)
    assert a[0] == b[0] != 1.0


def test_dict_params_need_dict_grads_with_the_same_keys():
    opt = RMSprop({"w": np.ones(2), "b": np.ones(1)}, lr=0.1)
    with pytest.raises(ValueError, match="missing.*'b'"):
        opt.step({"w": np.ones(2)})
    with pytest.raises(TypeError, match="dict"):
        opt.step([np.ones(2), np.ones(1)])


def test_lr_setter_validates():
    opt = RMSprop([np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -0.5
    with pytest.raises(TypeError, match="lr"):
        opt.lr = "fast"
    assert opt.lr == 0.1


def test_docstring_example_runs():
    import doctest

    import rmsprop.numpy

    failures, tried = doctest.testmod(rmsprop.numpy, verbose=False)
    assert tried > 0 and failures == 0
