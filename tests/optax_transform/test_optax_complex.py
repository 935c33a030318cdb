"""Complex parameters in rmsprop.optax: optax's convention for the optax flavour (v accumulates
|g|^2, checked against optax.rmsprop itself), torch's for the others (real and imaginary parts
apart, checked against torch.optim.RMSprop and rmsprop.torch.RMSprop on complex tensors).

jax, optax and torch are imported inside the fixtures, so that collecting this file is cheap.
"""

import types

import numpy as np
import pytest

STEPS = 40
SHAPE = (6, 5)
# |ours - theirs| / max(|theirs|, 1) over every step and element, real and imaginary parts:
# measured 2.4e-7 against optax (momentum 0.9), 1e-5 is the real-parameter tests' bound.
RTOL_OPTAX = 1e-6
RTOL_TORCH = 1e-5
# The first update (from a fresh state) against optax's, per real component: ours divides
# g/sqrt(v + eps), optax multiplies g*rsqrt(v + eps); measured 2 ulp at most.
FIRST_STEP_ULPS = 2

OPTAX_CASES = {
    "defaults": {},
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "centered": dict(centered=True),
    "bias-correction-eps-outside": dict(bias_correction=True, eps_in_sqrt=False),
    "initial-scale-centered-momentum": dict(initial_scale=1.0, centered=True, momentum=0.5),
}
TORCH_CASES = {
    "defaults": {},
    "momentum-centered": dict(momentum=0.9, centered=True),
    "weight-decay-maximize": dict(weight_decay=0.1, maximize=True, momentum=0.5),
}


@pytest.fixture(scope="module")
def lib():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import rmsprop.optax as ro

    return types.SimpleNamespace(jax=jax, jnp=jnp, optax=optax, ro=ro)


@pytest.fixture(scope="module")
def problem():
    """Complex64 parameters, complex gradients whose scale varies by element (2^-8 to 2^2),
    and a learning rate that changes every step."""
    rng = np.random.default_rng(7)

    def complex_normal(scale=1.0):
        return (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)) * scale

    exponents = rng.integers(-8, 3, size=SHAPE)
    params0 = complex_normal().astype(np.complex64)
    grads = [complex_normal(np.exp2(exponents)).astype(np.complex64) for _ in range(STEPS)]
    lrs = (3e-3 * np.exp(rng.uniform(-1, 1, size=STEPS))).astype(np.float32)
    return types.SimpleNamespace(params0=params0, grads=grads, lrs=lrs)


def _schedule(lib, problem):
    lrs = lib.jnp.asarray(problem.lrs)
    return lambda count: lrs[count]


def _run(lib, tx, problem, jit=True):
    """Parameters after each step, and the first step's update."""
    update = lib.jax.jit(tx.update) if jit else tx.update
    params = lib.jnp.asarray(problem.params0)
    state = tx.init(params)
    trajectory, first = [], None
    for grads in problem.grads:
        updates, state = update(lib.jnp.asarray(grads), state, params)
        first = np.asarray(updates) if first is None else first
        params = lib.optax.apply_updates(params, updates)
        trajectory.append(np.asarray(params))
    return trajectory, first


def _parts(x):
    x = np.asarray(x)
    return np.concatenate([x.real.ravel(), x.imag.ravel()]).astype(np.float64)


def _max_error(ours, theirs):
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        a, b = _parts(a), _parts(b)
        assert np.isfinite(a).all() and np.isfinite(b).all()
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0))))
    return worst


def _ulps(a, b):
    a, b = _parts(a), _parts(b)
    spacing = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(a - b) / spacing))


@pytest.mark.parity
@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_complex_parameters_match_optax_rmsprop(lib, problem, case):
    options = OPTAX_CASES[case]
    schedule = _schedule(lib, problem)
    ours, ours_first = _run(lib, lib.ro.rmsprop(schedule, **options), problem)
    theirs, theirs_first = _run(lib, lib.optax.rmsprop(schedule, **options), problem)
    assert ours[-1].dtype == np.complex64
    assert _ulps(ours_first, theirs_first) <= FIRST_STEP_ULPS
    err = _max_error(ours, theirs)
    assert err <= RTOL_OPTAX, f"max error {err:.3g} > {RTOL_OPTAX:g}"
    # the imaginary parts move: a real-only update would pass a looser check
    assert np.max(np.abs(ours[-1].imag - problem.params0.imag)) > 1e-3


def test_optax_convention_is_not_the_real_pairs_one(lib, problem):
    """The two conventions give different numbers on this problem (so the checks above and
    below tell them apart): optax's |g|^2 couples the parts, torch's does not."""
    schedule = _schedule(lib, problem)
    optax_way, _ = _run(lib, lib.ro.rmsprop(schedule, eps_in_sqrt=False, decay=0.99), problem)
    torch_way, _ = _run(lib, lib.ro.rmsprop(schedule, flavor="pytorch"), problem)
    assert _max_error(optax_way, torch_way) > 1e-3


def _run_torch(optimizer_cls, problem, **options):
    torch = pytest.importorskip("torch")
    param = torch.tensor(problem.params0, requires_grad=True)
    opt = optimizer_cls([param], lr=float(problem.lrs[0]), **options)
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        opt.param_groups[0]["lr"] = float(lr)
        param.grad = torch.tensor(grads)
        opt.step()
        trajectory.append(param.detach().numpy().copy())
    return trajectory


@pytest.mark.parity
@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_pytorch_flavour_matches_torch_optim_on_complex_parameters(lib, problem, case):
    torch = pytest.importorskip("torch")
    options = TORCH_CASES[case]
    theirs = _run_torch(torch.optim.RMSprop, problem, **options)
    ours, _ = _run(lib, lib.ro.rmsprop(_schedule(lib, problem), flavor="pytorch", **options),
                   problem)
    err = _max_error(ours, theirs)
    assert err <= RTOL_TORCH, f"max error {err:.3g} > {RTOL_TORCH:g}"


@pytest.mark.parity
@pytest.mark.parametrize("flavor", ["keras", "tensorflow", "sb3"])
def test_other_flavours_match_the_torch_port_on_complex_parameters(lib, problem, flavor):
    """Every flavour but optax's treats a complex parameter as rmsprop.torch.RMSprop does."""
    from rmsprop.torch import RMSprop

    options = dict(momentum=0.9, centered=True)
    theirs = _run_torch(RMSprop, problem, flavor=flavor, **options)
    ours, _ = _run(lib, lib.ro.rmsprop(_schedule(lib, problem), flavor=flavor, **options),
                   problem)
    err = _max_error(ours, theirs)
    assert err <= RTOL_TORCH, f"max error {err:.3g} > {RTOL_TORCH:g}"


def test_state_dtypes_per_convention_and_stable_under_jit(lib):
    jnp = lib.jnp
    params = {"z": jnp.ones((3,), jnp.complex64), "x": jnp.ones((2,), jnp.float32)}
    grads = {"z": jnp.array([1 + 2j, -1j, 0.5], jnp.complex64), "x": jnp.ones((2,))}
    options = dict(momentum=0.9, centered=True, amsgrad=True)
    expected = {
        # optax's: v and its maximum hold |g|^2, real; gbar and the buffer complex
        "optax": {"square_avg": jnp.float32, "max_square_avg": jnp.float32,
                  "grad_avg": jnp.complex64, "momentum_buffer": jnp.complex64},
        # torch's: every state array complex, holding the two parts' values
        "pytorch": dict.fromkeys(
            ("square_avg", "max_square_avg", "grad_avg", "momentum_buffer"), jnp.complex64),
    }
    for flavor, dtypes in expected.items():
        tx = lib.ro.rmsprop(0.1, flavor=flavor, **options)
        state = tx.init(params)
        updates, new_state = lib.jax.jit(tx.update)(grads, state, params)
        assert updates["z"].dtype == jnp.complex64 and updates["x"].dtype == jnp.float32
        for name, dtype in dtypes.items():
            assert getattr(state, name)["z"].dtype == dtype, (flavor, name)
            assert getattr(new_state, name)["z"].dtype == dtype, (flavor, name)
            assert getattr(new_state, name)["x"].dtype == jnp.float32


def test_complex_optimization_converges_as_optax_tests_it(lib):
    """optax's own check (alias_test.test_optimization, complex64 parabola): the conjugated
    gradient of sum |z - target|^2 drives z to the target, with and without momentum."""
    jax, jnp, optax = lib.jax, lib.jnp, lib.optax
    target = jnp.array([1.0, -1.0, 1.0], jnp.complex64) * (1 + 1j)

    def objective(z):
        return jnp.sum((jnp.conj(z - target) * (z - target)).real)

    for options in ({}, {"momentum": 0.9}):
        tx = lib.ro.rmsprop(5e-3, **options)

        def step(_, carry):
            z, state = carry
            grads = jnp.conj(jax.grad(objective)(z))
            updates, state = tx.update(grads, state, z)
            return optax.apply_updates(z, updates), state

        z = jnp.array([-1.0, 10.0, 1.0], jnp.complex64)
        z, _ = jax.jit(lambda z: jax.lax.fori_loop(0, 10000, step, (z, tx.init(z))))(z)
        np.testing.assert_allclose(np.asarray(z), np.asarray(target), rtol=3e-2, atol=3e-2)


def test_integer_leaves_are_still_refused(lib):
    jnp = lib.jnp
    with pytest.raises(TypeError, match=r"floating-point.*\['n'\].*int32"):
        lib.ro.rmsprop(0.1).init({"z": jnp.ones(3, jnp.complex64), "n": jnp.ones(3, jnp.int32)})


@pytest.mark.parametrize("flavor", ["optax", "pytorch"])
def test_abstract_complex_init_equals_concrete(lib, flavor):
    """init from a jax.ShapeDtypeStruct (as optax's sharding tests call it) gives the state of
    init from an array."""
    jax, jnp = lib.jax, lib.jnp
    tx = lib.ro.rmsprop(0.1, flavor=flavor, centered=True, momentum=0.9, initial_scale=2.0)
    abstract = tx.init(jax.ShapeDtypeStruct((2, 3), jnp.complex64))
    concrete = tx.init(jnp.zeros((2, 3), jnp.complex64))
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)):
        assert a.dtype == c.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
