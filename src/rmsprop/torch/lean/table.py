"""What a lean step hands its kernel, the numba one or the Triton one: one table of addresses,
random seeds, sizes and scalars, built here once for both (docs/design.md, "The kernels'
contract"), so that the two read the same state with the same random bits.

:func:`lean_step` turns a kernel's launch over a :class:`LeanTable` into the step function
that the optimizer calls (:func:`rmsprop.torch.lean.kernel_cpu.step_lean`,
:func:`rmsprop.torch.lean.kernel_triton.step_lean_triton`). No numba and no Triton here: the
Triton path runs without numba.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from ...element import Flags
from ...spec import RMSpropSpec
from ..kernels.flat import flags_of, scalars_of
from .codes import STATE_KEYS, seed_of

__all__ = ["CODES", "GRAD", "PARAM", "ROWS", "SCALES", "STORAGES", "LeanStep", "LeanTable",
           "lean_step"]

PARAM, GRAD, CODES, SCALES = 0, 1, 2, 6
"""Rows of the address table: the parameter, the gradient, then per state tensor (in the
order of :data:`~rmsprop.torch.lean.codes.STATE_KEYS`) its codes or bfloat16 bits from row
``CODES``, its block scales from row ``SCALES`` (8-bit only); 0 where an option leaves the
tensor out."""

ROWS = SCALES + len(STATE_KEYS)

STORAGES = ("8bit", "bf16")


class LeanTable(NamedTuple):
    """One lean step of ``n`` parameters of one dtype and device, as its kernel reads it."""

    addresses: np.ndarray  # int64 (ROWS, n): first element of each tensor
    seeds: np.ndarray  # uint32 (4, n): seed_of(salt, step, state tensor)
    numels: np.ndarray  # int64 (n,)
    hyper: np.ndarray  # float32: scalars_of's row
    corrections: np.ndarray  # float32 (n,): 1 - rho**t, or ones
    flags: Flags
    param_dtype: torch.dtype
    device: torch.device
    storage: str  # one of STORAGES
    stochastic: bool


class LeanStep(Protocol):
    def __call__(self, params: Sequence[Tensor], grads: Sequence[Tensor],
                 stored: Sequence[dict[str, Any]], spec: RMSpropSpec, lr: float,
                 steps: Sequence[int], salts: Sequence[int], storage: str,
                 stochastic: bool = True) -> None: ...


def lean_step(launch: Callable[[LeanTable], None]) -> LeanStep:
    """The step function of a kernel that runs over a :class:`LeanTable` (``launch``)."""

    @functools.wraps(launch)
    def step(params: Sequence[Tensor], grads: Sequence[Tensor],
             stored: Sequence[dict[str, Any]], spec: RMSpropSpec, lr: float,
             steps: Sequence[int], salts: Sequence[int], storage: str,
             stochastic: bool = True) -> None:
        """One step of every parameter whose state is stored as ``storage`` ("8bit" or
        "bf16").

        Args:
            params, grads: real, contiguous tensors of one dtype (float32, bfloat16, float16)
                and one device.
            stored: per parameter, the state tensors by key: for "8bit" ``{key: (codes,
                scale)}``, for "bf16" ``{key: bfloat16 tensor}``; the keys of
                ``state_keys(spec)``.
            steps: t of each parameter (already counted for this step).
            salts: a number per parameter (its index in the optimizer) for the random bits.
            stochastic: stochastic rounding (the default) or to nearest (to measure the
                difference: see ``benchmarks/state_8bit.py``).
        """
        if storage not in STORAGES:
            raise ValueError(f"storage must be '8bit' or 'bf16', got {storage!r}")
        if params:
            launch(_table(params, grads, stored, spec, lr, steps, salts, storage, stochastic))

    return step


def _table(params: Sequence[Tensor], grads: Sequence[Tensor], stored: Sequence[dict[str, Any]],
           spec: RMSpropSpec, lr: float, steps: Sequence[int], salts: Sequence[int],
           storage: str, stochastic: bool) -> LeanTable:
    flags = flags_of(spec)
    present = (True, flags.amsgrad, flags.centered, flags.momentum)
    n = len(params)
    addresses = np.zeros((ROWS, n), dtype=np.int64)
    seeds = np.zeros((len(STATE_KEYS), n), dtype=np.uint32)
    for t, (p, g, state) in enumerate(zip(params, grads, stored)):
        addresses[PARAM, t] = p.data_ptr()
        addresses[GRAD, t] = g.data_ptr()
        for row, key in enumerate(STATE_KEYS):
            seeds[row, t] = seed_of(salts[t], steps[t], row)
            if not present[row]:
                continue
            if storage == "8bit":
                codes, scale = state[key]
                addresses[CODES + row, t] = codes.data_ptr()
                addresses[SCALES + row, t] = scale.data_ptr()
            else:
                addresses[CODES + row, t] = state[key].data_ptr()
    numels = np.array([p.numel() for p in params], dtype=np.int64)
    hyper, corrections = scalars_of(spec, lr, steps, n, np.dtype(np.float32))
    return LeanTable(addresses, seeds, numels, hyper, corrections, flags, params[0].dtype,
                     params[0].device, storage, stochastic)
