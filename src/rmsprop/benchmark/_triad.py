"""The triad ``a = b + s*c`` in numba, the machine-bandwidth yardstick of the step benchmark
(imported only where numba is installed)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import numba_cache

__all__ = ["triad"]

numba_cache.install()


@njit(parallel=True, cache=True, error_model="numpy")
def _triad(a, b, c, s):
    for i in prange(a.size):
        a[i] = b[i] + s * c[i]


def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float) -> None:
    """``a[:] = b + s*c`` over all cores, in the arrays' dtype."""
    _triad(a, b, c, a.dtype.type(s))
