"""rmsprop.optax.rmsprop inside optax's machinery: chain, inject_hyperparams, MultiSteps,
masked, apply_if_finite, schedules, jax.grad through training, pytrees and dtypes; the
options optax lacks checked against the float64 reference; and bad input."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rmsprop.optax as ro
from rmsprop import reference
from rmsprop.spec import resolve
from optax_common import PROBLEM, max_error, run, run_pair, schedule_of

RTOL = 1e-5


@pytest.mark.parity
def test_chain_with_clipping_matches_optax():
    def make(factory):
        return optax.chain(optax.clip_by_global_norm(1.0), factory(1e-2, momentum=0.9))

    assert max_error(*run_pair(make(ro.rmsprop), make(optax.rmsprop))) <= RTOL


@pytest.mark.parity
def test_inject_hyperparams_matches_optax_and_the_injected_lr_is_used():
    ours = optax.inject_hyperparams(ro.rmsprop)(learning_rate=0.01, centered=True)
    theirs = optax.inject_hyperparams(optax.rmsprop)(learning_rate=0.01, centered=True)
    params = jax.tree.map(jnp.asarray, PROBLEM.params0)
    states = [ours.init(params), theirs.init(params)]
    assert "learning_rate" in states[0].hyperparams
    steps = [jax.jit(ours.update), jax.jit(theirs.update)]
    trajectories = ([], [])
    params = [params, params]
    for t, grads in enumerate(PROBLEM.grads):
        if t == 20:  # a change of the injected learning rate reaches both
            for state in states:
                state.hyperparams["learning_rate"] = jnp.asarray(0.05)
        for i in range(2):
            updates, states[i] = steps[i](grads, states[i], params[i])
            params[i] = optax.apply_updates(params[i], updates)
            trajectories[i].append(jax.tree.map(np.asarray, params[i]))
    assert max_error(*trajectories) <= RTOL
    fixed = run(ro.rmsprop(0.01, centered=True))
    assert max_error(trajectories[0][:20], fixed[:20]) <= RTOL
    assert max_error(trajectories[0], fixed) > 1e-3  # the change took effect


def test_injected_structural_options_give_the_same_numbers():
    """momentum, decay and weight_decay arrive as (traced) arrays: same as given as floats."""
    options = dict(decay=0.95, momentum=0.9, weight_decay=0.01, nesterov=True)
    injected = optax.inject_hyperparams(ro.rmsprop)(learning_rate=0.01, **options)
    assert {"decay", "momentum", "weight_decay"} <= set(injected.init(PROBLEM.params0).hyperparams)
    assert max_error(run(injected), run(ro.rmsprop(0.01, **options))) <= RTOL
    # a momentum injected as 0 keeps its buffer and changes nothing
    zero = optax.inject_hyperparams(ro.rmsprop)(learning_rate=0.01, momentum=0.0)
    assert max_error(run(zero), run(ro.rmsprop(0.01))) <= RTOL


@pytest.mark.parity
def test_multi_steps_matches_optax():
    def make(factory):
        return optax.MultiSteps(factory(1e-2, bias_correction=True), every_k_schedule=3)

    ours, theirs = run_pair(make(ro.rmsprop), make(optax.rmsprop))
    assert max_error(ours, theirs) <= RTOL
    assert np.array_equal(ours[1]["w"], PROBLEM.params0["w"])  # accumulating, not stepping
    assert not np.array_equal(ours[2]["w"], PROBLEM.params0["w"])


@pytest.mark.parity
def test_masked_matches_optax():
    mask = {"w": True, "s": False, "b": True}

    def make(factory):
        return optax.chain(optax.masked(factory(1e-2, momentum=0.9), mask),
                           optax.masked(optax.sgd(1e-3), {k: not v for k, v in mask.items()}))

    assert max_error(*run_pair(make(ro.rmsprop), make(optax.rmsprop))) <= RTOL


@pytest.mark.parity
def test_optax_schedule_matches_optax():
    schedule = optax.exponential_decay(1e-2, transition_steps=5, decay_rate=0.7)
    pair = run_pair(ro.rmsprop(schedule, momentum=0.9), optax.rmsprop(schedule, momentum=0.9))
    assert max_error(*pair) <= RTOL


def test_apply_if_finite_skips_a_nan_step():
    opt = optax.apply_if_finite(ro.rmsprop(1e-2, momentum=0.9), max_consecutive_errors=3)
    params = jax.tree.map(jnp.asarray, PROBLEM.params0)
    state = opt.init(params)
    updates, state = opt.update(PROBLEM.grads[0], state, params)
    params = optax.apply_updates(params, updates)
    bad = {**PROBLEM.grads[1], "w": PROBLEM.grads[1]["w"].copy()}
    bad["w"][0, 0] = np.nan
    updates, new_state = opt.update(bad, state, params)
    assert all(float(jnp.max(jnp.abs(u))) == 0 for u in jax.tree.leaves(updates))
    assert int(new_state.notfinite_count) == 1
    for before, after in zip(jax.tree.leaves(state.inner_state),
                             jax.tree.leaves(new_state.inner_state)):
        np.testing.assert_array_equal(before, after)


# -- options optax does not have, against the float64 reference ---------------------------

REFERENCE_CASES = {
    "torch-momentum-form-under-schedule": dict(momentum=0.9, lr_in_momentum=False),
    "torch-form-nesterov": dict(momentum=0.9, nesterov=True, lr_in_momentum=False),
    "coupled-weight-decay-amsgrad": dict(weight_decay=0.1, amsgrad=True, centered=True),
    "decoupled-weight-decay-maximize": dict(
        weight_decay=0.1, decoupled_weight_decay=True, maximize=True, momentum=0.5),
    "pytorch-flavor-eps-outside": dict(flavor="pytorch", bias_correction=True),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_options_beyond_optax_match_the_reference(case):
    options = dict(REFERENCE_CASES[case])
    flavor = options.pop("flavor", "optax")
    ours = run(ro.rmsprop(schedule_of(PROBLEM), flavor=flavor, eps=1e-6, **options))
    spec = resolve(flavor, lr=1.0, eps=1e-6, **options)
    expected = []
    params = {k: reference.init_state(v, spec) | {"theta": np.float64(v)}
              for k, v in PROBLEM.params0.items()}
    for t, (grads, lr) in enumerate(zip(PROBLEM.grads, PROBLEM.lrs), start=1):
        step = {}
        for name, entry in params.items():
            theta, state = reference.step(entry["theta"], grads[name],
                                          {k: v for k, v in entry.items() if k != "theta"},
                                          spec, float(lr), t)
            params[name] = {**state, "theta": theta}
            step[name] = theta.astype(np.float32)
        expected.append(step)
    assert max_error(ours, expected) <= 1e-5


# -- jax.grad through training --------------------------------------------------------------


def _meta_loss(factory, lr, params0, grads_fn, steps=5):
    opt = factory(lr, momentum=0.9, centered=True)
    params, state = params0, opt.init(params0)
    for _ in range(steps):
        updates, state = opt.update(grads_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2)


def test_jax_grad_through_a_training_loop_matches_optax():
    params0 = {k: jnp.asarray(PROBLEM.params0[k]) for k in ("w", "b")}
    grads_fn = jax.grad(lambda p: jnp.sum(jnp.sin(p["w"])) + jnp.sum(p["b"] ** 2))
    ours = jax.jit(jax.grad(lambda lr: _meta_loss(ro.rmsprop, lr, params0, grads_fn)))(0.01)
    theirs = jax.jit(jax.grad(lambda lr: _meta_loss(optax.rmsprop, lr, params0, grads_fn)))(0.01)
    assert np.isfinite(ours) and abs(float(ours)) > 1e-3
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    # and against a central difference of the same loop, in float32
    h = 1e-4
    f = jax.jit(lambda lr: _meta_loss(ro.rmsprop, lr, params0, grads_fn))
    np.testing.assert_allclose(ours, (f(0.01 + h) - f(0.01 - h)) / (2 * h), rtol=2e-2)


# -- pytrees and dtypes -----------------------------------------------------------------------

Pair = collections.namedtuple("Pair", "left right")


@pytest.mark.parity
def test_arbitrary_pytrees_match_optax():
    rng = np.random.default_rng(3)
    tree = {
        "layers": [Pair(rng.normal(size=(3, 2)), rng.normal(size=2)),
                   Pair(rng.normal(size=()), None)],
        "empty": np.zeros((0, 4)),
        "nested": ({"a": rng.normal(size=(2, 2, 2))},),
    }
    tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), tree)
             for _ in range(10)]
    results = []
    for factory in (ro.rmsprop, optax.rmsprop):
        opt = factory(1e-2, momentum=0.9)
        params, state = tree, opt.init(tree)
        for g in grads:
            updates, state = jax.jit(opt.update)(g, state, params)
            params = optax.apply_updates(params, updates)
        results.append(params)
    assert jax.tree.structure(results[0]) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtypes_are_kept_under_jit(dtype):
    opt = ro.rmsprop(optax.linear_schedule(1e-2, 1e-3, 10), momentum=0.9, centered=True,
                     bias_correction=True, weight_decay=1e-2)
    params = {"w": jnp.ones((3, 2), dtype), "s": jnp.asarray(2.0, dtype)}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    state = opt.init(params)
    updates, state = jax.jit(opt.update)(grads, state, params)
    updates, state = jax.jit(opt.update)(grads, state, params)
    for leaf in jax.tree.leaves((updates, state.square_avg, state.grad_avg,
                                 state.momentum_buffer)):
        assert leaf.dtype == dtype
    assert state.count.dtype == jnp.int32 and int(state.count) == 2
    assert all(bool(jnp.all(jnp.isfinite(u)) & jnp.any(u != 0)) for u in jax.tree.leaves(updates))


def test_state_is_a_typed_named_tuple_with_only_the_moments_in_use():
    state = ro.rmsprop(1e-2).init(PROBLEM.params0)
    assert isinstance(state, ro.RMSpropState)
    assert state.max_square_avg is None and state.grad_avg is None
    assert state.momentum_buffer is None
    full = ro.rmsprop(1e-2, momentum=0.9, centered=True, amsgrad=True, initial_scale=1.0)
    state = full.init(PROBLEM.params0)
    for field in ("square_avg", "max_square_avg", "grad_avg", "momentum_buffer"):
        assert jax.tree.structure(getattr(state, field)) == jax.tree.structure(PROBLEM.params0)
    np.testing.assert_array_equal(state.square_avg["w"], np.ones((7, 5), np.float32))


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(learning_rate=-1.0), ValueError, "learning_rate"),
        (dict(learning_rate="0.1"), TypeError, "learning_rate"),
        (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
        (dict(learning_rate=0.1, decay=1.0), ValueError, "decay"),
        (dict(learning_rate=0.1, decay=-0.5), ValueError, "decay"),
        (dict(learning_rate=0.1, eps=-1e-8), ValueError, "eps"),
        (dict(learning_rate=0.1, initial_scale=-1.0), ValueError, "initial_scale"),
        (dict(learning_rate=0.1, momentum=-0.9), ValueError, "momentum"),
        (dict(learning_rate=0.1, nesterov=True), ValueError, "nesterov.*momentum=None"),
        (dict(learning_rate=0.1, eps_in_sqrt="yes"), TypeError, "eps_in_sqrt"),
        (dict(learning_rate=0.1, weight_decay=-1.0), ValueError, "weight_decay"),
        (dict(learning_rate=0.1, flavor="caffe"), ValueError, "flavor"),
        (dict(learning_rate=0.1, decay=jnp.ones(2)), ValueError, "decay must be a scalar"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        ro.rmsprop(**kwargs)


def test_bad_inputs_raise_clear_errors():
    params = {"w": jnp.ones(3)}
    opt = ro.rmsprop(0.1, weight_decay=0.01)
    state = opt.init(params)
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(params, state)
    with pytest.raises(ValueError, match="needs the parameters"):
        jax.jit(opt.update)(params, state)
    with pytest.raises(TypeError, match=r"floating-point.*\['n'\]"):
        ro.rmsprop(0.1).init({"w": jnp.ones(3), "n": jnp.ones(3, jnp.int32)})
    with pytest.raises(ValueError, match="shape"):
        ro.rmsprop(0.1).update({"w": jnp.ones(())}, ro.rmsprop(0.1).init(params))


@pytest.mark.parametrize("module", ["alias", "scale"])
def test_docstring_example_runs(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(
        importlib.import_module(f"rmsprop.optax.{module}"), verbose=False
    )
    assert tried > 0 and failures == 0
