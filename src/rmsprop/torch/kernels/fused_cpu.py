"""``impl="fused"``: the whole RMSProp update of each element in one pass over memory, on CPU.

Per element, :func:`rmsprop_element` reads theta, g, v (and vmax, gbar, b when the options use
them), computes the update of :mod:`rmsprop.spec` in registers and writes theta and the state
back: 20 bytes per float32 parameter without momentum, 28 with it, and no temporaries. The
tensors of one call are cut into chunks of at most :data:`CHUNK` elements; the chunk list is
split into a few runs of equal work per thread torch uses, each run a call of the kernel
(which releases the GIL), taken in turn by this thread and those of a small pool. So one large
tensor and two thousand small ones are both a few calls per thread. (Threads of our own
rather than numba's ``prange``: a ``parallel=True`` kernel takes a second longer to compile,
and its OpenMP pool would compete with torch's.)

Specialisation: the options that decide which arrays are read and written (amsgrad,
centered, momentum) and the storage formats are compile-time constants of a closure
(:func:`_kernel_for`), so each memory layout is its own vectorised loop; the other options are
runtime flags, invariant in the loop. That keeps the variants few (8 layouts per pair of
dtypes): each is compiled on first use (about half a second) and cached on disk by numba
(``cache=True``) for later processes. Supported storage: float32 and float64 parameters with
state of the same dtype; bfloat16 and float16 parameters with float32 state (computed in
float32, rounded to nearest even on the store), or with state of their own dtype (as
``load_state_dict`` leaves it).

numba is imported with this module, which :mod:`rmsprop.torch.kernels` imports only when a
fused step runs.
"""

from __future__ import annotations

import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import llvmlite.ir as llvm
import numba
import numpy as np
import torch
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ... import numba_cache
from ...element import CODE_FINGERPRINT, Flags, Hyper, bind
from ...spec import RMSpropSpec
from .flat import (
    FORMAT, FlatTable, check_lists, chunk_table, flags_of, group_by_storage, scalars_of,
)
from .inplace import TensorLists

__all__ = ["CHUNK", "fused", "rmsprop_element"]

numba_cache.install()  # the kernels' disk cache: NUMBA_CACHE_DIR or the user's, not the package

CHUNK = 1 << 16
"""Elements per unit of parallel work (256 KiB of float32 per array)."""

_RAW_DTYPE = {"f32": np.float32, "f64": np.float64, "bf16": np.uint16, "f16": np.uint16}


# -- storage conversions (LLVM IR, so that they vectorise) ------------------------------------

_I16, _I32 = llvm.IntType(16), llvm.IntType(32)


@intrinsic
def _voidptr(typingctx, address):
    """An integer address as a pointer (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@intrinsic
def _bf16_to_f32(typingctx, bits):
    """bfloat16 bits -> float32 (exact: the bits are the float32's upper half)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        wide = builder.zext(builder.trunc(args[0], _I16), _I32)
        return builder.bitcast(builder.shl(wide, llvm.Constant(_I32, 16)), llvm.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_to_bf16(typingctx, value):
    """float32 -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN.

    The rounding of ``c10::BFloat16`` (``round_to_nearest_even``): add 0x7FFF plus the lowest
    kept bit, keep the upper 16 bits.
    """
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], _I32)
        lowest_kept = builder.and_(builder.lshr(bits, llvm.Constant(_I32, 16)),
                                   llvm.Constant(_I32, 1))
        rounded = builder.add(builder.add(bits, llvm.Constant(_I32, 0x7FFF)), lowest_kept)
        upper = builder.trunc(builder.lshr(rounded, llvm.Constant(_I32, 16)), _I16)
        is_nan = builder.fcmp_unordered("uno", args[0], args[0])
        return builder.select(is_nan, llvm.Constant(_I16, 0x7FC0), upper)

    return types.uint16(value), codegen


@intrinsic
def _f16_to_f32(typingctx, bits):
    """float16 bits -> float32 (exact, LLVM ``fpext``)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        half = builder.bitcast(builder.trunc(args[0], _I16), llvm.HalfType())
        return builder.fpext(half, llvm.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_to_f16(typingctx, value):
    """float32 -> float16 bits, rounded to nearest even (LLVM ``fptrunc``, IEEE 754)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], llvm.HalfType()), _I16)

    return types.uint16(value), codegen


# -- the math: rmsprop.element's function, compiled by numba ----------------------------------


@njit(inline="always")
def _maximum(a, b):
    """max(a, b) with a NaN in ``b`` (or ``a``) propagated."""
    return b if (b > a or b != b) else a


@njit(inline="always")
def _div(x, y):
    return x / y


@njit(inline="always")
def _abs_sq(x):
    return x * x  # real only: torch's complex tensors reach the kernels as real views


rmsprop_element = bind(
    {"sqrt": np.sqrt, "div": _div, "maximum": _maximum, "abs_sq": _abs_sq,
     "__name__": __name__},
    njit(inline="always"),
)
"""The element function of :mod:`rmsprop.element`, compiled by numba; all arguments are
scalars of the compute type (float64 for float64 state, else float32), so the result is bit
for bit what NumPy gives running it on arrays of that type (the tests check every option)."""


# Rows of the address table (see :mod:`.flat`).
_PARAM, _GRAD, _V, _VMAX, _GBAR, _BUF = range(6)


@functools.lru_cache(maxsize=None)
def _kernel_for(amsgrad: bool, centered: bool, momentum: bool, param_format: str,
                state_format: str):
    """The kernel of one memory layout: a closure whose captured flags numba folds as
    constants (they decide which arrays are read and written)."""
    p_raw, s_raw = _RAW_DTYPE[param_format], _RAW_DTYPE[state_format]
    p_bf16, p_f16 = param_format == "bf16", param_format == "f16"
    s_bf16, s_f16 = state_format == "bf16", state_format == "f16"
    p_size, s_size = np.dtype(p_raw).itemsize, np.dtype(s_raw).itemsize
    element_code = CODE_FINGERPRINT
    zero = np.float64(0.0) if state_format == "f64" else np.float32(0.0)  # a constant: folds

    @njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
    def kernel(first, last, addresses, chunk_tensor, chunk_start, chunk_length, hyper,
               corrections, maximize, l2, decoupled, bias_correction, eps_in_sqrt,
               lr_in_momentum, nesterov):
        """Chunks ``first`` to ``last`` (excluded) of the chunk table."""
        assert element_code != 0  # kept in the closure (see CODE_FINGERPRINT)
        lr, rho, one_minus_rho, eps = hyper[0], hyper[1], hyper[2], hyper[3]
        wd, mu, lr_wd = hyper[4], hyper[5], hyper[6]
        for c in range(first, last):
            t, lo, n = chunk_tensor[c], chunk_start[c], chunk_length[c]
            correction = corrections[t]
            param = numba.carray(_voidptr(addresses[_PARAM, t] + lo * p_size), n, p_raw)
            grad = numba.carray(_voidptr(addresses[_GRAD, t] + lo * p_size), n, p_raw)
            square_avg = numba.carray(_voidptr(addresses[_V, t] + lo * s_size), n, s_raw)
            max_square_avg = numba.carray(_voidptr(addresses[_VMAX, t] + lo * s_size), n, s_raw)
            grad_avg = numba.carray(_voidptr(addresses[_GBAR, t] + lo * s_size), n, s_raw)
            buf = numba.carray(_voidptr(addresses[_BUF, t] + lo * s_size), n, s_raw)
            for i in range(n):
                if p_bf16:
                    theta, g = _bf16_to_f32(param[i]), _bf16_to_f32(grad[i])
                elif p_f16:
                    theta, g = _f16_to_f32(param[i]), _f16_to_f32(grad[i])
                else:
                    theta, g = param[i], grad[i]
                if s_bf16:
                    v = _bf16_to_f32(square_avg[i])
                    vmax = _bf16_to_f32(max_square_avg[i]) if amsgrad else zero
                    gbar = _bf16_to_f32(grad_avg[i]) if centered else zero
                    b = _bf16_to_f32(buf[i]) if momentum else zero
                elif s_f16:
                    v = _f16_to_f32(square_avg[i])
                    vmax = _f16_to_f32(max_square_avg[i]) if amsgrad else zero
                    gbar = _f16_to_f32(grad_avg[i]) if centered else zero
                    b = _f16_to_f32(buf[i]) if momentum else zero
                else:
                    v = square_avg[i]
                    vmax = max_square_avg[i] if amsgrad else zero
                    gbar = grad_avg[i] if centered else zero
                    b = buf[i] if momentum else zero
                decay, delta, v, vmax, gbar, b = rmsprop_element(
                    theta, g, v, vmax, gbar, b,
                    Hyper(lr, rho, one_minus_rho, eps, wd, mu, lr_wd, correction, zero),
                    Flags(maximize, l2, decoupled, amsgrad, centered, bias_correction,
                          eps_in_sqrt, momentum, lr_in_momentum, nesterov, False),
                )
                theta = (theta - decay) - delta
                if p_bf16:
                    param[i] = _f32_to_bf16(theta)
                elif p_f16:
                    param[i] = _f32_to_f16(theta)
                else:
                    param[i] = theta
                if s_bf16:
                    square_avg[i] = _f32_to_bf16(v)
                    if amsgrad:
                        max_square_avg[i] = _f32_to_bf16(vmax)
                    if centered:
                        grad_avg[i] = _f32_to_bf16(gbar)
                    if momentum:
                        buf[i] = _f32_to_bf16(b)
                elif s_f16:
                    square_avg[i] = _f32_to_f16(v)
                    if amsgrad:
                        max_square_avg[i] = _f32_to_f16(vmax)
                    if centered:
                        grad_avg[i] = _f32_to_f16(gbar)
                    if momentum:
                        buf[i] = _f32_to_f16(b)
                else:
                    square_avg[i] = v
                    if amsgrad:
                        max_square_avg[i] = vmax
                    if centered:
                        grad_avg[i] = gbar
                    if momentum:
                        buf[i] = b

    return kernel


# -- the torch side ---------------------------------------------------------------------------

PIECES_PER_THREAD = 4
"""Runs of work per thread in one kernel call (see :func:`_run`)."""

MIN_PER_THREAD = 1 << 16
"""Fewer elements than this per thread and handing work to a thread costs more than it saves."""

_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool there."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool)


def _threads_for(numel: int) -> int:
    """As many threads as torch uses (``torch.set_num_threads`` applies here too), fewer for
    small steps."""
    return max(1, min(torch.get_num_threads(), numel // MIN_PER_THREAD))


def _run(kernel, chunk_length: np.ndarray, *args) -> None:
    """``kernel(first, last, *args)`` over every chunk: the chunk list cut into
    :data:`PIECES_PER_THREAD` runs of equal work per thread, which this thread and the pool's
    threads take in turn as each finishes its last (the kernel releases the GIL).

    Taking runs in turn rather than one fixed run per thread: a thread that the system
    schedules late (another process's threads, OpenMP workers of torch still spinning after an
    operation) would otherwise make the whole step as slow as one thread. Which thread runs a
    chunk never changes what is computed.
    """
    global _pool, _pool_size
    threads = _threads_for(int(chunk_length.sum()))
    if threads == 1:
        kernel(0, chunk_length.size, *args)
        return
    pieces = min(chunk_length.size, threads * PIECES_PER_THREAD)
    work = np.cumsum(chunk_length)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, pieces) / pieces, side="right")
    bounds = [0, *cuts.tolist(), chunk_length.size]
    taken = itertools.count()  # next() on a count is atomic under the GIL

    def take_runs() -> None:
        while (k := next(taken)) < len(bounds) - 1:
            if bounds[k] < bounds[k + 1]:
                kernel(bounds[k], bounds[k + 1], *args)

    if _pool_size < threads - 1:
        _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="rmsprop")
        _pool_size = threads - 1
    futures = [_pool.submit(take_runs) for _ in range(threads - 1)]
    take_runs()
    for future in futures:
        future.result()


def fused(t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None) -> None:
    """One step of every tensor: one kernel call per (param dtype, state dtype) group."""
    from . import as_real

    t = as_real(t)
    check_lists(t, spec, "fused")
    if not all(p.is_cpu for p in t.params):
        device = next(p.device for p in t.params if not p.is_cpu)
        raise ValueError(f"impl='fused' runs on CPU tensors, got a parameter on {device}")
    groups = group_by_storage(t, steps, "fused")
    flags = flags_of(spec)
    for (_, param_dtype, state_dtype), group, group_steps in groups:
        table = FlatTable.of(group)
        compute = np.float64 if state_dtype == torch.float64 else np.float32
        hyper, corrections = scalars_of(spec, lr, group_steps, len(group.params), compute)
        chunk_tensor, chunk_start, chunk_length = chunk_table(table.sizes, CHUNK)
        kernel = _kernel_for(flags.amsgrad, flags.centered, flags.momentum,
                             FORMAT[param_dtype], FORMAT[state_dtype])
        _run(kernel, chunk_length, table.addresses, chunk_tensor, chunk_start, chunk_length,
             hyper, corrections, flags.maximize, flags.l2, flags.decoupled,
             flags.bias_correction, flags.eps_in_sqrt, flags.lr_in_momentum, flags.nesterov)
        table.finish()
