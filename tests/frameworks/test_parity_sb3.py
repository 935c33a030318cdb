"""flavor="sb3" against stable-baselines3's RMSpropTFLike (sb2_compat/rmsprop_tf_like.py).

RMSpropTFLike is built with its own defaults (alpha, eps); every combination of momentum,
centered and (coupled, L2) weight decay. Its momentum is torch's form (lr outside the buffer);
eps sits inside the root and the accumulator starts at 1, as in TF1.
"""

from __future__ import annotations

import functools

import pytest

from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, require, run_ours, run_torch_optimizer,
)
from option_matrix import SB3, combo_id, params

pytestmark = pytest.mark.parity

COMBOS = SB3  # momentum x centered x weight_decay


@functools.cache
def run_sb3(problem: Problem, **combo) -> Trajectory:
    module = require("stable_baselines3.common.sb2_compat.rmsprop_tf_like")
    return run_torch_optimizer(
        problem, lambda ps: module.RMSpropTFLike(ps, lr=problem.lrs[0], **combo)
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_sb3(combo, impl):
    theirs = run_sb3(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, impl, "sb3", **combo), theirs)


@pytest.mark.parametrize(
    "wrong",
    [dict(initial_accumulator_value=0.0), dict(lr_in_momentum=True),
     dict(decoupled_weight_decay=True), dict(alpha=0.9)],
    ids=combo_id,
)
def test_each_preset_choice_is_needed(wrong):
    """Flipping one choice of the preset breaks parity: the comparison can fail."""
    combo = dict(momentum=0.9, centered=True, weight_decay=0.1)
    assert_detected(run_ours(PROBLEM, "loop", "sb3", **combo, **wrong), run_sb3(PROBLEM, **combo))


def test_eps_inside_the_root():
    """SB3's eps = 1e-8 next to v >= 0.99^t is invisible; with eps = 0.1 its place shows."""
    theirs = run_sb3(PROBLEM, eps=0.1)
    assert_parity(run_ours(PROBLEM, "loop", "sb3", eps=0.1), theirs)
    assert_detected(run_ours(PROBLEM, "loop", "sb3", eps=0.1, eps_in_sqrt=False), theirs)


def test_centered_cancellation():
    """SB3 takes sqrt(v - gbar^2 + eps) unclamped and returns NaN on this input; ours clamps
    v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    assert not is_finite(run_sb3(problem, alpha=0.9, centered=True))
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "sb3", alpha=0.9, centered=True))
