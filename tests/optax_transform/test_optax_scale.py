"""rmsprop.optax.scale_by_rmsprop: the normalisation without a learning rate, against optax's
scale_by_rms / scale_by_stddev on every one of their options, composed with optax's
scale_by_learning_rate / trace / add_decayed_weights, against torch.optim.RMSprop for the
momentum form it computes, and against the float64 reference for the options optax lacks.

jax and optax are imported inside the fixtures, so that collecting this file is cheap.
"""

import itertools
import types

import numpy as np
import pytest

RTOL = 1e-5  # |ours - theirs| / max(|theirs|, 1), as tests/frameworks/test_parity_optax.py
# One step's output from the same state against optax's scaler: ours divides g/sqrt(v + eps),
# optax multiplies g*rsqrt(v + eps) (or g*(1/(sqrt(v) + eps))); measured 2 ulp at most, 3 where
# centering and bias correction cancel (decay 0.9, initial_scale 1).
FIRST_STEP_ULPS = 3

# Every combination of the arguments of optax.scale_by_rms and scale_by_stddev (decay, eps,
# initial_scale, eps_in_sqrt, bias_correction; centered picks the scaler) but one: centered and
# bias-corrected from initial_scale=0, the first step's variance g^2 - g^2 is exactly 0 only at
# decay 0.5 (tests/optax_common.py); at 0.9 it is rounding noise no two programs share.
CASES = [
    (dict(decay=decay, eps=eps, initial_scale=v0, eps_in_sqrt=inside, bias_correction=bias),
     centered)
    for decay, eps, v0, inside, bias, centered in itertools.product(
        (0.5, 0.9), (1e-8, 1e-3), (0.0, 1.0), (True, False), (False, True), (False, True))
    if not (centered and bias and v0 == 0.0 and decay != 0.5)
]


# A quick subset in which every value of every argument occurs, for both scalers; the whole
# grid is marked slow.
QUICK = [
    (dict(decay=d, eps=e, initial_scale=v0, eps_in_sqrt=inside, bias_correction=bias), centered)
    for (d, e, v0), (inside, bias), centered in zip(
        [(0.5, 1e-8, 0.0), (0.9, 1e-3, 1.0), (0.9, 1e-8, 1.0), (0.5, 1e-3, 0.0)] * 2,
        [(True, False), (False, True), (True, True), (False, False)] * 2,
        [False] * 4 + [True] * 4,
    )
]
assert all(case in CASES for case in QUICK)


def _id(case):
    options, centered = case
    scaler = "scale_by_stddev" if centered else "scale_by_rms"
    return scaler + "-" + "-".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture(scope="module")
def lib():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import optax_common
    import rmsprop.optax as ro

    return types.SimpleNamespace(jax=jax, jnp=jnp, optax=optax, ro=ro, common=optax_common)


def _first_outputs(lib, ours, theirs):
    problem = lib.common.PROBLEM
    params = lib.jax.tree.map(lib.jnp.asarray, problem.params0)
    outputs = []
    for tx in (ours, theirs):
        out, _ = tx.update(problem.grads[0], tx.init(params), params)
        outputs.append(out)
    return outputs


def _ulps(a, b):
    a, b = np.float64(a), np.float64(b)
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(a - b) / spacing, initial=0.0))


@pytest.mark.parity
@pytest.mark.parametrize("case", QUICK, ids=_id)
def test_equals_optax_scaler_on_its_options(lib, case):
    _check_equals_optax_scaler(lib, *case)


@pytest.mark.slow
@pytest.mark.parity
@pytest.mark.parametrize("case", [c for c in CASES if c not in QUICK], ids=_id)
def test_equals_optax_scaler_on_every_combination_of_its_options(lib, case):
    _check_equals_optax_scaler(lib, *case)


def _check_equals_optax_scaler(lib, options, centered):
    optax, common = lib.optax, lib.common
    theirs_scaler = (optax.scale_by_stddev if centered else optax.scale_by_rms)(**options)
    ours_scaler = lib.ro.scale_by_rmsprop(**options, centered=centered)
    # the raw output of one step, sign included
    ours_out, theirs_out = _first_outputs(lib, ours_scaler, theirs_scaler)
    for name in ours_out:
        assert _ulps(ours_out[name], theirs_out[name]) <= FIRST_STEP_ULPS, name
    # composed with a schedule, 50 steps
    schedule = common.schedule_of(common.PROBLEM)
    ours, theirs = common.run_pair(
        optax.chain(ours_scaler, optax.scale_by_learning_rate(schedule)),
        optax.chain(theirs_scaler, optax.scale_by_learning_rate(schedule)),
    )
    err = common.max_error(ours, theirs)
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


def test_positional_arguments_are_optax_scale_by_rms(lib):
    import inspect

    ours = list(inspect.signature(lib.ro.scale_by_rmsprop).parameters.values())
    theirs = list(inspect.signature(lib.optax.scale_by_rms).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs]
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs):])


@pytest.mark.parity
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_with_lr_outside_is_torch_form(lib, nesterov):
    """chain(scale_by_rmsprop(momentum), scale_by_learning_rate(schedule)) is
    torch.optim.RMSprop's b <- mu*b + u; theta -= lr*b, under a changing learning rate."""
    torch = pytest.importorskip("torch")
    common, optax = lib.common, lib.optax
    problem = common.MATRIX_PROBLEM
    options = dict(momentum=0.9, centered=True, weight_decay=0.01)
    tx = optax.chain(
        lib.ro.scale_by_rmsprop(flavor="pytorch", nesterov=nesterov, **options),
        optax.scale_by_learning_rate(common.schedule_of(problem)),
    )
    ours = common.run(tx, problem)
    if nesterov:  # torch.optim.RMSprop has no Nesterov: the torch-form reference is ours
        from rmsprop.torch import RMSprop as torch_cls
        extra = dict(nesterov=True)
    else:
        torch_cls, extra = torch.optim.RMSprop, {}
    name = next(iter(problem.params0))
    param = torch.tensor(problem.params0[name], requires_grad=True)
    opt = torch_cls([param], lr=1.0, **options, **extra)
    theirs = []
    for grads, lr in zip(problem.grads, problem.lrs):
        opt.param_groups[0]["lr"] = float(lr)
        param.grad = torch.tensor(grads[name])
        opt.step()
        theirs.append({name: param.detach().numpy().copy()})
    err = common.max_error(ours, theirs)
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


@pytest.mark.parity
def test_trace_after_the_learning_rate_is_optax_rmsprop_momentum(lib):
    """The documented recipe for optax's form b <- mu*b + lr*u gives optax.rmsprop."""
    common, optax = lib.common, lib.optax
    schedule = common.schedule_of(common.PROBLEM)
    ours = optax.chain(lib.ro.scale_by_rmsprop(centered=True),
                       optax.scale_by_learning_rate(schedule), optax.trace(0.9, nesterov=True))
    theirs = optax.rmsprop(schedule, centered=True, momentum=0.9, nesterov=True)
    err = common.max_error(*common.run_pair(ours, theirs))
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"
    # and the two forms do differ under this schedule
    torch_form = optax.chain(lib.ro.scale_by_rmsprop(centered=True, momentum=0.9, nesterov=True),
                             optax.scale_by_learning_rate(schedule))
    assert common.max_error(common.run(torch_form), common.run(theirs)) > 1e-3


@pytest.mark.parity
def test_decoupled_decay_by_add_decayed_weights_is_the_keras_flavour(lib):
    """The documented recipe for decoupled decay gives rmsprop(flavor='keras', weight_decay),
    which tests/test_parity_keras.py checks against Keras."""
    common, optax = lib.common, lib.optax
    schedule = common.schedule_of(common.PROBLEM)
    ours = optax.chain(lib.ro.scale_by_rmsprop(flavor="keras"), optax.add_decayed_weights(0.05),
                       optax.scale_by_learning_rate(schedule))
    keras = lib.ro.rmsprop(schedule, flavor="keras", weight_decay=0.05)
    err = common.max_error(common.run(ours), common.run(keras))
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


@pytest.mark.parametrize("options", [
    dict(amsgrad=True, weight_decay=0.1, maximize=True),
    dict(amsgrad=True, centered=True, momentum=0.5, bias_correction=True, flavor="pytorch"),
], ids=["amsgrad-l2-maximize", "amsgrad-centered-momentum-bias-pytorch"])
def test_options_beyond_optax_match_the_reference(lib, options):
    """Options optax's scalers lack, with the learning rate applied after, against the float64
    reference of the torch momentum form."""
    from rmsprop import reference
    from rmsprop.spec import resolve

    common, optax = lib.common, lib.optax
    options = dict(options)
    flavor = options.pop("flavor", "optax")
    tx = optax.chain(lib.ro.scale_by_rmsprop(flavor=flavor, eps=1e-6, **options),
                     optax.scale_by_learning_rate(common.schedule_of(common.PROBLEM)))
    ours = common.run(tx)
    spec = resolve(flavor, lr=1.0, eps=1e-6, lr_in_momentum=False, **options)
    thetas = {k: np.float64(v) for k, v in common.PROBLEM.params0.items()}
    states = {k: reference.init_state(v, spec) for k, v in thetas.items()}
    expected = []
    for t, (grads, lr) in enumerate(zip(common.PROBLEM.grads, common.PROBLEM.lrs), start=1):
        for name in thetas:
            thetas[name], states[name] = reference.step(
                thetas[name], grads[name], states[name], spec, float(lr), t)
        expected.append({k: v.astype(np.float32) for k, v in thetas.items()})
    err = common.max_error(ours, expected)
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


def test_inject_hyperparams_and_jit(lib):
    optax, common = lib.optax, lib.common
    injected = optax.inject_hyperparams(lib.ro.scale_by_rmsprop)(decay=0.95, momentum=0.9)
    state = injected.init(common.PROBLEM.params0)
    assert set(state.hyperparams) == {"decay", "momentum"}
    plain = lib.ro.scale_by_rmsprop(decay=0.95, momentum=0.9)
    # not bit-identical: injected, 1 - decay is computed from float32 0.95, not float64
    assert common.max_error(common.run(injected), common.run(plain)) <= RTOL
    assert common.max_error(common.run(plain), common.run(lib.ro.scale_by_rmsprop())) > 1e-3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(flavor="keras", weight_decay=0.01), ValueError,
     r"flavor='keras'.*learning rate.*weight_decay=0.01.*add_decayed_weights"),
    (dict(decay=1.0), ValueError, "decay"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(initial_scale=-1.0), ValueError, "initial_scale"),
    (dict(nesterov=True), ValueError, "nesterov.*momentum=None"),
    (dict(momentum=-0.1), ValueError, "momentum"),
    (dict(flavor="caffe"), ValueError, "flavor"),
])
def test_bad_arguments_raise_at_construction(lib, kwargs, error, match):
    with pytest.raises(error, match=match):
        lib.ro.scale_by_rmsprop(**kwargs)


def test_weight_decay_needs_the_params(lib):
    jnp = lib.jnp
    tx = lib.ro.scale_by_rmsprop(weight_decay=0.1)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="scale_by_rmsprop with weight decay needs the param"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize("factory", ["rmsprop", "scale_by_rmsprop"])
def test_eager_and_jitted_steps_are_bit_identical(lib, factory):
    """XLA rounds decay**t differently op by op than in a compiled program (1e-5 relative at
    decay 0.999 in float32): the step is compiled either way, so both give the same bits."""
    common, jax = lib.common, lib.jax
    options = dict(decay=0.999, bias_correction=True, centered=True, momentum=0.9)
    if factory == "rmsprop":
        tx = lib.ro.rmsprop(common.schedule_of(common.PROBLEM), **options)
    else:
        tx = lib.optax.chain(lib.ro.scale_by_rmsprop(**options),
                             lib.optax.scale_by_learning_rate(1e-2))
    params = [jax.tree.map(lib.jnp.asarray, common.PROBLEM.params0)] * 2
    states = [tx.init(params[0])] * 2
    for grads in common.PROBLEM.grads[:10]:
        for i, update in enumerate((tx.update, jax.jit(tx.update))):
            updates, states[i] = update(grads, states[i], params[i])
            params[i] = lib.optax.apply_updates(params[i], updates)
    for eager, jitted in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
        np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
