"""Against optax.rmsprop: the optax flavour of the torch class, and our optax transformation.

Part 1, flavor="optax" of ``rmsprop.torch.RMSprop`` against optax.rmsprop (JAX, float32,
eager), on the parity problem of tests/parity_common.py. optax.rmsprop is built with its own
defaults (decay, eps) and the learning rate is a schedule of its step count, so it changes
every step. Every combination of momentum (None or 0.9), nesterov, centered, bias_correction,
initial_scale and eps_in_sqrt; optax has no weight decay in rmsprop (it is a separate
transformation).

Left out of that matrix, and tested on its own: centered + bias_correction from
initial_scale = 0 (``option_matrix.ill_conditioned``). At step 1 the bias-corrected variance is
g^2 - g^2 = 0 in exact arithmetic, so each side's step is decided by the last bit of its own
rounding (optax can even take the root of a negative number): there is no exact answer to
agree on.

Part 2, ``rmsprop.optax.rmsprop`` against optax.rmsprop over every combination of optax's
arguments. Both run jitted in float32 on the problems of ``optax_common`` (mixed-magnitude
dyadic gradients, a learning rate that changes every step, 50 steps); every parameter must
agree to float32 rounding at every step. Here the ill-conditioned combination is in the
matrix, with a decay of 0.5 that makes its first step exact (see optax_common).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import optax
import pytest

import rmsprop.optax as ro
from optax_common import MATRIX_PROBLEM, STEPS, max_error, run_pair, schedule_of
from optax_common import PROBLEM as TREE_PROBLEM
from option_matrix import OPTAX, combo_id, ill_conditioned, params
from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, require, run_ours,
)

pytestmark = pytest.mark.parity

# -- part 1: flavor="optax" of the torch class ------------------------------------------------


def optax_options(options):
    """Our options spelled as optax.rmsprop's keywords (v0 is its initial_scale)."""
    return dict(momentum=options["momentum"], nesterov=options["nesterov"],
                centered=options["centered"], bias_correction=options["bias_correction"],
                initial_scale=options["initial_accumulator_value"],
                eps_in_sqrt=options["eps_in_sqrt"])


COMBOS = [optax_options(options) for options in OPTAX if not ill_conditioned(options)]


def ours_options(combo):
    """The same choices, spelled as rmsprop.torch.RMSprop's keywords."""
    options = dict(combo)
    options["initial_accumulator_value"] = options.pop("initial_scale")
    return options


@functools.cache
def run_optax(problem: Problem, momentum: float, nesterov: bool, centered: bool,
              bias_correction: bool, initial_scale: float, eps_in_sqrt: bool) -> Trajectory:
    jnp = require("jax.numpy")
    optax = require("optax")
    lrs = jnp.asarray(np.asarray(problem.lrs, dtype=np.float32))
    opt = optax.rmsprop(
        learning_rate=lambda count: lrs[count], momentum=momentum or None, nesterov=nesterov,
        centered=centered, bias_correction=bias_correction, initial_scale=initial_scale,
        eps_in_sqrt=eps_in_sqrt,
    )
    params = [jnp.asarray(p) for p in problem.params0]
    state = opt.init(params)
    trajectory = []
    for grads in problem.grads:
        updates, state = opt.update([jnp.asarray(g) for g in grads], state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append([np.asarray(p) for p in params])
    return trajectory


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_optax(combo, impl):
    theirs = run_optax(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, impl, "optax", **ours_options(combo)), theirs)


@pytest.mark.parametrize(
    "wrong",
    [dict(lr_in_momentum=False), dict(eps_in_sqrt=False), dict(eps=1e-6), dict(alpha=0.99),
     dict(initial_accumulator_value=1.0), dict(nesterov=False), dict(bias_correction=False)],
    ids=combo_id,
)
def test_each_choice_is_needed(wrong):
    """Flipping one choice breaks parity: the comparison can fail."""
    combo = dict(momentum=0.9, nesterov=True, centered=True, bias_correction=True,
                 initial_scale=0.0, eps_in_sqrt=True)
    combo["centered"] = False  # a well-conditioned neighbour of the degenerate case
    assert_detected(run_ours(PROBLEM, "loop", "optax", **{**ours_options(combo), **wrong}),
                    run_optax(PROBLEM, **combo))


@pytest.mark.parametrize("eps_in_sqrt", (True, False))
def test_degenerate_centered_bias_correction(eps_in_sqrt):
    """centered + bias_correction from v0 = 0: the first step divides by the root of a
    variance that is 0 in exact arithmetic, so its size is set by rounding on either side.
    What we promise there: every step is finite, and since the variance is clamped at 0 the
    first step is never larger than lr*|g|/sqrt(eps) (or lr*|g|/eps with eps outside)."""
    combo = dict(momentum=0.0, nesterov=False, centered=True, bias_correction=True,
                 initial_scale=0.0, eps_in_sqrt=eps_in_sqrt)
    eps = 1e-8  # optax's default, which the flavour takes
    bound = 1 / np.sqrt(eps) if eps_in_sqrt else 1 / eps
    for impl in IMPLS:
        ours = run_ours(PROBLEM, impl, "optax", **ours_options(combo))
        assert all(np.all(np.isfinite(p)) for step in ours for p in step)
        for p0, g, p1 in zip(PROBLEM.params0, PROBLEM.grads[0], ours[0]):
            step = np.abs(p1.astype(np.float64) - p0)
            assert np.all(step <= PROBLEM.lrs[0] * np.abs(g) * bound * (1 + 1e-5) + 1e-6)


def test_centered_cancellation():
    """optax takes rsqrt(v - gbar^2 + eps) unclamped and returns NaN on this input; ours clamps
    v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    assert not is_finite(run_optax(problem, momentum=0.0, nesterov=False, centered=True,
                                   bias_correction=False, initial_scale=0.0, eps_in_sqrt=True))
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "optax", centered=True))


# -- part 2: rmsprop.optax.rmsprop, the transformation ----------------------------------------

TRANSFORM_RTOL = 1e-5  # |ours - optax| / max(|optax|, 1), elementwise, at every step

NAMES = ("eps_in_sqrt", "centered", "momentum", "nesterov", "bias_correction", "initial_scale")
# optax.rmsprop's arguments (momentum None for none), the whole optax subset of the matrix.
TRANSFORM_COMBOS = [
    (o["eps_in_sqrt"], o["centered"], o["momentum"] or None, o["nesterov"], o["bias_correction"],
     o["initial_accumulator_value"])
    for o in OPTAX
]


def _decay(args: dict) -> float:
    # The first step of the ill-conditioned form divides by the root of g^2 - g^2 (+eps): exact
    # only with a decay whose complement is a power of two (see optax_common); with 0.9 both
    # sides would divide by rounding noise.
    return 0.5 if ill_conditioned(args) else 0.9


@pytest.mark.parametrize(
    "combo", TRANSFORM_COMBOS,
    ids=[",".join(f"{n}={v}" for n, v in zip(NAMES, c)) for c in TRANSFORM_COMBOS],
)
def test_matches_optax_rmsprop(combo):
    args = dict(zip(NAMES, combo))
    args["decay"] = _decay(args)
    args["eps"] = 1e-6  # a size at which eps inside and outside the root both matter here
    lr = schedule_of(MATRIX_PROBLEM)
    ours, theirs = run_pair(
        ro.rmsprop(lr, **args), optax.rmsprop(lr, **args), MATRIX_PROBLEM, pass_params=False
    )
    assert len(ours) == STEPS >= 50
    err = max_error(ours, theirs)
    assert err <= TRANSFORM_RTOL, f"max error {err:.3g} > {TRANSFORM_RTOL:g}"


def test_defaults_and_positional_arguments_match_optax():
    lr = schedule_of(TREE_PROBLEM)
    assert max_error(*run_pair(ro.rmsprop(lr), optax.rmsprop(lr))) <= TRANSFORM_RTOL
    positional = (lr, 0.95, 1e-6, 1.0, False, True, 0.9, True, True)
    assert (max_error(*run_pair(ro.rmsprop(*positional), optax.rmsprop(*positional)))
            <= TRANSFORM_RTOL)
    assert max_error(*run_pair(ro.rmsprop(1e-3), optax.rmsprop(1e-3))) <= TRANSFORM_RTOL


@pytest.mark.parametrize(
    "changed",
    [{"eps_in_sqrt": False}, {"centered": True}, {"momentum": 0.9}, {"bias_correction": True},
     {"initial_scale": 1.0}, {"decay": 0.95}, {"eps": 1e-4},
     {"lr_in_momentum": False, "momentum": 0.9}],
    ids=lambda d: ",".join(d),
)
def test_the_comparison_tells_a_changed_option_apart(changed):
    """Each option moves the numbers far beyond the tolerance, so the matrix above bites."""
    lr = schedule_of(MATRIX_PROBLEM)
    base = {"eps": 1e-6, **({"momentum": 0.9} if "lr_in_momentum" in changed else {})}
    ours, theirs = run_pair(
        ro.rmsprop(lr, **{**base, **changed}), optax.rmsprop(lr, **base), MATRIX_PROBLEM
    )
    assert max_error(ours, theirs) > 30 * TRANSFORM_RTOL


def test_signature_is_optax_rmsprop_with_keyword_only_extras():
    ours = list(inspect.signature(ro.rmsprop).parameters.values())
    theirs = list(inspect.signature(optax.rmsprop).parameters.values())
    assert [(p.name, p.kind) for p in ours[: len(theirs)]] == [(p.name, p.kind) for p in theirs]
    for a, b in zip(ours, theirs):
        assert a.default == b.default, a.name
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs):])


@pytest.mark.parametrize("decoupled", [False, True])
def test_updates_with_weight_decay_are_the_change_itself(decoupled):
    """The update is -decay - delta, not (new param) - param: the latter rounds it to the
    spacing of the parameter's floats (0.3 % here, params at 1000)."""
    import jax.numpy as jnp
    import numpy as np

    params = {"w": jnp.array([1000.0, -1000.0, 1000.0], dtype=jnp.float32)}
    grads = {"w": jnp.array([0.5, 0.25, -0.5], dtype=jnp.float32)}
    tx = ro.rmsprop(1e-3, weight_decay=1e-4, decoupled_weight_decay=decoupled)
    updates, _ = tx.update(grads, tx.init(params), params)
    p, g = np.float64(params["w"]), np.float64(grads["w"])
    if decoupled:  # the RMSProp step of g alone, plus the decay of theta
        exact = -1e-3 * g / (np.sqrt(0.1 * g * g) + 1e-8) - 1e-3 * 1e-4 * p
    else:  # optax's own recipe: add_decayed_weights, then rmsprop
        g = g + 1e-4 * p
        exact = -1e-3 * g / (np.sqrt(0.1 * g * g) + 1e-8)
        reference = optax.chain(optax.add_decayed_weights(1e-4), optax.rmsprop(1e-3))
        theirs, _ = reference.update(grads, reference.init(params), params)
        np.testing.assert_allclose(updates["w"], theirs["w"], rtol=1e-6)
    np.testing.assert_allclose(np.float64(updates["w"]), exact, rtol=1e-5)  # was 3e-3 off
