"""Training quality with 8-bit state: the same final loss as float32 state, momentum at work.

Two tasks (``state8bit_tasks``: an MLP on scikit-learn's digits, full batch; a character GRU on
the Zen of Python), two seeds each, every parameter's state in 8 bits (``min_8bit_size=0``,
stricter than the default, which keeps tensors under 4096 elements in float32).
"""

from __future__ import annotations

import numba  # noqa: F401  (mandatory in the test extra: missing fails, never skips)
import numpy as np
import pytest

from rmsprop.torch import RMSprop

from state8bit_tasks import TASKS, train

pytestmark = pytest.mark.slow  # trains two models several times: minutes

SEEDS = (0, 1)
TOLERANCE = 0.02  # relative difference of the mean final loss


def run(task, precision: str, momentum: float = 0.0, lr_of_momentum: bool = False, **options):
    """The mean final loss over SEEDS and the mean loss curve (batch loss at every step)."""
    losses, curves = [], []
    for seed in SEEDS:
        loss, model, optimizer, curve = train(
            task, seed,
            lambda ps, lr: RMSprop(ps, lr=lr, momentum=momentum, state_precision=precision,
                                   min_8bit_size=0, **options),
            momentum=lr_of_momentum or momentum > 0,
        )
        if precision == "8bit":  # the large tensors really were stored in 8 bits
            assert all(any(k.endswith(".codes") for k in optimizer.state[p])
                       for p in model.parameters() if p.numel() >= 256)
        losses.append(loss)
        curves.append(curve)
    return float(np.mean(losses)), np.mean(curves, axis=0)


def relative(a: float, b: float) -> float:
    return abs(a / b - 1)


@pytest.mark.parametrize("name", ["digits", "chars"])
def test_8bit_state_trains_as_float32_and_momentum_is_used(name):
    task = TASKS[name]
    plain32, _ = run(task, "fp32")
    plain8, _ = run(task, "8bit")
    assert relative(plain8, plain32) <= TOLERANCE, (plain8, plain32)

    momentum32, curve32 = run(task, "fp32", momentum=0.9)
    momentum8, curve8 = run(task, "8bit", momentum=0.9)
    assert relative(momentum8, momentum32) <= TOLERANCE, (momentum8, momentum32)

    # Momentum is at work: at the same learning rate, no momentum ends elsewhere, and the
    # 8-bit loss curve with momentum follows float32's with momentum, not the one without.
    without8, curve_without = run(task, "8bit", lr_of_momentum=True)
    assert relative(without8, momentum8) > 5 * TOLERANCE, (without8, momentum8)
    gap_to_float32 = np.abs(curve8 / curve32 - 1).max()
    gap_to_without = np.abs(curve8 / curve_without - 1).max()
    assert gap_to_float32 < 0.05 and gap_to_without > 4 * gap_to_float32, \
        (gap_to_float32, gap_to_without)


def test_8bit_centered_state_trains_as_float32_on_a_full_batch():
    """The case that breaks a quantized v: full-batch gradients make v - gbar^2 tiny next to v
    (the stored variance keeps it; see rmsprop.torch.lean.storage.VARIANCE_OF)."""
    task = TASKS["digits"]
    centered32, _ = run(task, "fp32", momentum=0.9, centered=True)
    centered8, _ = run(task, "8bit", momentum=0.9, centered=True)
    assert relative(centered8, centered32) <= TOLERANCE, (centered8, centered32)
