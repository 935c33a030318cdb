"""The access pattern of an RMSProp step with no arithmetic, in numba: the ceiling the step is
measured against (imported only where numba is installed).

A step reads theta, g and each state tensor (v, and the momentum buffer, gbar, vmax as the
options ask) and writes theta and each state tensor back. This kernel moves the same streams
over the same elements, one pass, and computes nothing but one add per element: with k state
tensors it rotates the values,

    theta <- g + s_k,   s_1 <- theta,   s_j <- s_{j-1} (j = 2..k),

all from the values before the call. (Some operation must join two reads: there are k + 2
streams read and k + 1 written, and a value read and never used would let the compiler drop
its stream.)
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
from numba import njit, prange

from .. import numba_cache

__all__ = ["MAX_STATES", "move_streams"]

numba_cache.install()

MAX_STATES = 4
"""v, the momentum buffer, gbar and vmax: the most state tensors a step keeps."""


@njit(parallel=True, cache=True, error_model="numpy")
def _one(theta, g, s1):
    for i in prange(theta.size):
        t = theta[i]
        theta[i] = g[i] + s1[i]
        s1[i] = t


@njit(parallel=True, cache=True, error_model="numpy")
def _two(theta, g, s1, s2):
    for i in prange(theta.size):
        t = theta[i]
        theta[i] = g[i] + s2[i]
        s2[i] = s1[i]
        s1[i] = t


@njit(parallel=True, cache=True, error_model="numpy")
def _three(theta, g, s1, s2, s3):
    for i in prange(theta.size):
        t = theta[i]
        theta[i] = g[i] + s3[i]
        s3[i] = s2[i]
        s2[i] = s1[i]
        s1[i] = t


@njit(parallel=True, cache=True, error_model="numpy")
def _four(theta, g, s1, s2, s3, s4):
    for i in prange(theta.size):
        t = theta[i]
        theta[i] = g[i] + s4[i]
        s4[i] = s3[i]
        s3[i] = s2[i]
        s2[i] = s1[i]
        s1[i] = t


_KERNELS = (_one, _two, _three, _four)


def move_streams(theta: np.ndarray, g: np.ndarray, states: Sequence[np.ndarray],
                 threads: int | None = None) -> None:
    """One pass over the streams of a step (module docstring), in place, over numba's threads
    (``threads`` of them for this call, if given): ``theta``, ``g`` and 1 to
    :data:`MAX_STATES` state arrays, one-dimensional, contiguous, of one size and dtype."""
    if not 1 <= len(states) <= MAX_STATES:
        raise ValueError(f"states: 1 to {MAX_STATES} arrays, got {len(states)}")
    arrays = (theta, g, *states)
    if len({(a.shape, a.dtype) for a in arrays}) != 1 or any(
            a.ndim != 1 or not a.flags.c_contiguous for a in arrays):
        raise ValueError("theta, g, states: one-dimensional contiguous arrays of one size and "
                         f"dtype, got {[(a.shape, str(a.dtype)) for a in arrays]}")
    if threads is None:
        _KERNELS[len(states) - 1](theta, g, *states)
        return
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _KERNELS[len(states) - 1](theta, g, *states)
    finally:
        numba.set_num_threads(before)
