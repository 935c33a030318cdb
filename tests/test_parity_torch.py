"""flavor="pytorch" (named explicitly) against torch.optim.RMSprop: bit-identical.

Short on purpose: tests/test_torch_parity.py covers the default class in depth. Here the
flavour is selected by name and fed the mixed-magnitude gradients and per-step learning rate
of the other parity tests, over 100 steps; torch's foreach matches our impl.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_common import (
    IMPLS, Trajectory, cancellation_problem, is_finite, make_problem, run_ours,
    run_torch_optimizer,
)
from option_matrix import TORCH_OPTIONS, params

pytestmark = pytest.mark.parity

PROBLEM_100 = make_problem(seed=1, steps=100)
COMBOS = TORCH_OPTIONS  # momentum x centered x weight_decay x maximize


def assert_identical(ours: Trajectory, theirs: Trajectory) -> None:
    for ours_step, theirs_step in zip(ours, theirs, strict=True):
        for a, b in zip(ours_step, theirs_step, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_bit_identical_to_torch(combo, impl):
    theirs = run_torch_optimizer(
        PROBLEM_100,
        lambda params: torch.optim.RMSprop(
            params, lr=PROBLEM_100.lrs[0], foreach=impl == "foreach", **combo
        ),
    )
    assert_identical(run_ours(PROBLEM_100, impl, "pytorch", **combo), theirs)


def test_centered_cancellation():
    """torch takes sqrt(v - gbar^2) unclamped and returns NaN on this input; ours clamps
    v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    theirs = run_torch_optimizer(
        problem, lambda params: torch.optim.RMSprop(params, lr=1e-4, alpha=0.9, centered=True)
    )
    assert not is_finite(theirs)
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "pytorch", alpha=0.9, centered=True))
