"""The lean step's shared preparation (rmsprop.torch.lean.table): a bad storage name is refused
before the kernel runs, by the numba step as by the Triton one."""

from __future__ import annotations

import pytest
import torch

from rmsprop.spec import RMSpropSpec


def test_the_numba_step_refuses_an_unknown_storage_and_changes_nothing():
    """Before the shared table, the numba step read any storage but "8bit" as bfloat16 bits."""
    from rmsprop.torch.lean.kernel_cpu import step_lean

    param = torch.linspace(-1.0, 1.0, 300)
    square_avg = torch.zeros(300, dtype=torch.bfloat16)
    before = param.clone(), square_avg.clone()
    with pytest.raises(ValueError, match="storage must be '8bit' or 'bf16', got '4bit'"):
        step_lean([param], [torch.ones(300)], [{"square_avg": square_avg}], RMSpropSpec(),
                  0.01, [1], [0], "4bit")
    assert torch.equal(param, before[0]) and torch.equal(square_avg, before[1])


def test_numba_widen_and_narrow_need_a_constant_format():
    """The format picks the conversion when the kernel is compiled: a run-time string is a
    typing error that names it, not a silent float path."""
    import numba
    import numpy as np

    from rmsprop.torch.kernels.numba_support import widen

    @numba.njit
    def load(bits, fmt):
        return widen(bits[0], fmt)

    with pytest.raises(numba.core.errors.TypingError, match="constant string"):
        load(np.zeros(1, np.uint16), "bf16")
