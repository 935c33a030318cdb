"""flavor="tensorflow" against TensorFlow's own kernels (tensorflow-cpu, eager, CPU).

The reference is the raw ops ``ResourceApplyRMSProp`` / ``ResourceApplyCenteredRMSProp`` with
the slots the TF1 ``tf.compat.v1.train.RMSPropOptimizer`` creates (ms = 1, mg = mom = 0) and its
default decay and epsilon, read from its signature; and that optimizer class itself.
TF has no weight decay in RMSProp, so the matrix is momentum x centered.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest

from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, require, run_ours,
)
from option_matrix import TENSORFLOW, combo_id, params

pytestmark = pytest.mark.parity

COMBOS = TENSORFLOW  # momentum x centered


@functools.cache
def tf_defaults() -> dict[str, float]:
    """decay and epsilon of tf.compat.v1.train.RMSPropOptimizer (the raw ops have none)."""
    tf = require("tensorflow")
    parameters = inspect.signature(tf.compat.v1.train.RMSPropOptimizer.__init__).parameters
    return {"rho": parameters["decay"].default, "epsilon": parameters["epsilon"].default}


@functools.cache
def run_raw_ops(problem: Problem, momentum: float, centered: bool) -> Trajectory:
    tf = require("tensorflow")
    defaults = tf_defaults()
    f32 = lambda x: tf.constant(x, dtype=tf.float32)  # noqa: E731
    variables = [tf.Variable(p) for p in problem.params0]
    ms = [tf.Variable(np.ones_like(p)) for p in problem.params0]  # TF1 initialises ms to 1
    mg = [tf.Variable(np.zeros_like(p)) for p in problem.params0]
    mom = [tf.Variable(np.zeros_like(p)) for p in problem.params0]
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        for i, grad in enumerate(grads):
            common = dict(
                var=variables[i].handle, ms=ms[i].handle, mom=mom[i].handle, lr=f32(lr),
                rho=f32(defaults["rho"]), momentum=f32(momentum),
                epsilon=f32(defaults["epsilon"]), grad=f32(grad),
            )
            if centered:
                tf.raw_ops.ResourceApplyCenteredRMSProp(mg=mg[i].handle, **common)
            else:
                tf.raw_ops.ResourceApplyRMSProp(**common)
        trajectory.append([v.numpy().copy() for v in variables])
    return trajectory


@functools.cache
def run_tf1_optimizer(problem: Problem, momentum: float, centered: bool) -> Trajectory:
    """tf.compat.v1.train.RMSPropOptimizer itself, eager, lr a callable read every step."""
    tf = require("tensorflow")
    current = {"lr": problem.lrs[0]}
    opt = tf.compat.v1.train.RMSPropOptimizer(
        learning_rate=lambda: current["lr"], momentum=momentum, centered=centered
    )
    variables = [tf.Variable(p) for p in problem.params0]
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        current["lr"] = lr
        opt.apply_gradients([(tf.constant(g), v) for g, v in zip(grads, variables)])
        trajectory.append([v.numpy().copy() for v in variables])
    return trajectory


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_raw_ops(combo, impl):
    theirs = run_raw_ops(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, impl, "tensorflow", **combo), theirs)


@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_tf1_optimizer_class(combo):
    theirs = run_tf1_optimizer(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, "foreach", "tensorflow", **combo), theirs)


@pytest.mark.parametrize(
    "wrong",
    [dict(initial_accumulator_value=0.0), dict(lr_in_momentum=False), dict(alpha=0.99)],
    ids=combo_id,
)
def test_each_preset_choice_is_needed(wrong):
    """Flipping one choice of the preset breaks parity: the comparison can fail."""
    combo = dict(momentum=0.9, centered=True)
    assert_detected(run_ours(PROBLEM, "loop", "tensorflow", **combo, **wrong),
                    run_raw_ops(PROBLEM, **combo))


def test_eps_inside_the_root_is_needed():
    """With TF's eps = 1e-10 its place is invisible; with eps = 0.1 it is not."""
    tf = require("tensorflow")
    variable, ms, mom = (tf.Variable(np.float32(x)) for x in (1.0, 1.0, 0.0))
    grad, lr, eps = 0.5, 0.1, 0.1
    tf.raw_ops.ResourceApplyRMSProp(
        var=variable.handle, ms=ms.handle, mom=mom.handle, lr=np.float32(lr),
        rho=np.float32(0.9), momentum=np.float32(0.0), epsilon=np.float32(eps),
        grad=np.float32(grad),
    )
    problem = Problem((np.float32([1.0]),), ((np.float32([grad]),),), (lr,))
    ours = run_ours(problem, "loop", "tensorflow", eps=eps)
    outside = run_ours(problem, "loop", "tensorflow", eps=eps, eps_in_sqrt=False)
    assert_parity(ours, [[variable.numpy().reshape(1)]])
    assert_detected(outside, [[variable.numpy().reshape(1)]])


def test_centered_cancellation_stays_finite():
    """TF takes sqrt(ms - mg^2 + eps) unclamped; its op order (ms += (g^2 - ms)(1 - rho))
    makes a constant gradient converge exactly, which keeps this input finite. Ours clamps
    v - gbar^2 at 0 and stays finite too."""
    problem = cancellation_problem()
    assert is_finite(run_raw_ops(problem, momentum=0.0, centered=True))
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "tensorflow", centered=True))
