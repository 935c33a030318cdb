"""flavor="keras" against Keras 3's keras.optimizers.RMSprop.

Keras is constructed with its own defaults (rho, epsilon), so the test also checks that the
flavour's defaults are Keras's. The learning rate is set on the optimizer before every step;
Keras's weight decay is decoupled (``theta -= theta * wd * lr`` in the base optimizer, before
the update). The backend is the one the process selected (tests/conftest.py asks for
TensorFlow).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, require, run_ours,
)
from option_matrix import KERAS, combo_id, params

pytestmark = pytest.mark.parity

COMBOS = KERAS  # momentum x centered x weight_decay


@functools.cache
def run_keras(problem: Problem, momentum: float, centered: bool, weight_decay: float
              ) -> Trajectory:
    keras = require("keras")
    opt = keras.optimizers.RMSprop(
        learning_rate=problem.lrs[0], momentum=momentum, centered=centered,
        weight_decay=weight_decay or None,
    )
    variables = [keras.Variable(p, dtype="float32") for p in problem.params0]
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        opt.learning_rate = lr
        opt.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        trajectory.append([np.array(v.numpy()) for v in variables])
    return trajectory


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_keras(combo, impl):
    theirs = run_keras(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, impl, "keras", **combo), theirs)


@pytest.mark.parametrize(
    "wrong",
    [dict(eps_in_sqrt=False), dict(lr_in_momentum=False), dict(decoupled_weight_decay=False),
     dict(initial_accumulator_value=1.0), dict(eps=1e-8), dict(alpha=0.99)],
    ids=combo_id,
)
def test_each_preset_choice_is_needed(wrong):
    """Flipping one choice of the preset breaks parity: the comparison can fail."""
    combo = dict(momentum=0.9, centered=False, weight_decay=0.1)
    assert_detected(run_ours(PROBLEM, "loop", "keras", **combo, **wrong),
                    run_keras(PROBLEM, **combo))


def test_centered_cancellation():
    """Keras takes sqrt(v - gbar^2 + eps) unclamped and returns NaN on this input; ours clamps
    v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    assert not is_finite(run_keras(problem, momentum=0.0, centered=True, weight_decay=0.0))
    for impl in ("loop", "foreach"):
        assert is_finite(run_ours(problem, impl, "keras", centered=True))
