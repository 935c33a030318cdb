"""flavor="optax" against optax.rmsprop (JAX, float32, eager).

optax.rmsprop is built with its own defaults (decay, eps) and the learning rate is a schedule
of its step count, so it changes every step. Every combination of momentum (None or 0.9),
nesterov, centered, bias_correction, initial_scale and eps_in_sqrt; optax has no weight decay
in rmsprop (it is a separate transformation).

Left out of the matrix, and tested on its own below: centered + bias_correction from
initial_scale = 0. At step 1 the bias-corrected variance is g^2 - g^2 = 0 in exact arithmetic,
so each side's step is decided by the last bit of its own rounding (optax can even take the
root of a negative number): there is no exact answer to agree on.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, require, run_ours,
)
from option_matrix import OPTAX, combo_id, ill_conditioned, params

pytestmark = pytest.mark.parity


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
