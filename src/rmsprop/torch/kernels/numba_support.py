"""What the numba kernels share: LLVM intrinsics for raw memory and 16-bit floats, and the
thread pool that runs a kernel over a chunk list (docs/design.md, "The kernels' contract").

numba is imported with this module, which only the numba kernels import.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import llvmlite.ir as llvm
import numpy as np
import torch
from numba import types
from numba.core import cgutils, errors
from numba.extending import intrinsic

from ... import numba_cache

__all__ = ["MIN_PER_THREAD", "PIECES_PER_THREAD", "SUPPORT_FINGERPRINT", "bits_of",
           "float_of_bits", "narrow", "run_on_threads", "umax32", "voidptr", "widen"]

numba_cache.install()  # the kernels' disk cache: NUMBA_CACHE_DIR or the user's, not the package

SUPPORT_FINGERPRINT = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)
"""A number that changes with this file. numba keys a kernel's disk cache on the kernel's own
module and closure, not on the helpers it calls from here (``widen``, ``narrow``...): the
kernels capture this, as they capture :data:`rmsprop.element.CODE_FINGERPRINT`, so that an
edit here recompiles them."""

# -- storage conversions (LLVM IR, so that they vectorise) ------------------------------------

_I16, _I32 = llvm.IntType(16), llvm.IntType(32)


def _kernel_intrinsic(definition: Callable[..., Any]) -> Callable[..., Any]:
    """numba's ``intrinsic``, typed as a kernel calls it (without the typing context that
    numba passes first)."""
    return intrinsic(definition)


@_kernel_intrinsic
def voidptr(typingctx, address):
    """An integer address as a pointer (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def _bf16_widened(builder: Any, bits: Any) -> Any:
    """bfloat16 bits (the low 16 of an integer) as float32: exact, the float32's upper half."""
    wide = builder.zext(builder.trunc(bits, _I16), _I32)
    return builder.bitcast(builder.shl(wide, llvm.Constant(_I32, 16)), llvm.FloatType())


def _f16_widened(builder: Any, bits: Any) -> Any:
    """float16 bits (the low 16 of an integer) as float32: exact, LLVM ``fpext``."""
    half = builder.bitcast(builder.trunc(bits, _I16), llvm.HalfType())
    return builder.fpext(half, llvm.FloatType())


def _bf16_rounded(builder: Any, value: Any) -> Any:
    """float32 -> bfloat16 bits, to nearest even; NaN stays a (quiet) NaN.

    The rounding of ``c10::BFloat16`` (``round_to_nearest_even``): add 0x7FFF plus the lowest
    kept bit, keep the upper 16 bits.
    """
    bits = builder.bitcast(value, _I32)
    lowest_kept = builder.and_(builder.lshr(bits, llvm.Constant(_I32, 16)),
                               llvm.Constant(_I32, 1))
    rounded = builder.add(builder.add(bits, llvm.Constant(_I32, 0x7FFF)), lowest_kept)
    upper = builder.trunc(builder.lshr(rounded, llvm.Constant(_I32, 16)), _I16)
    is_nan = builder.fcmp_unordered("uno", value, value)
    return builder.select(is_nan, llvm.Constant(_I16, 0x7FC0), upper)


def _f16_rounded(builder: Any, value: Any) -> Any:
    """float32 -> float16 bits, to nearest even (LLVM ``fptrunc``, IEEE 754)."""
    return builder.bitcast(builder.fptrunc(value, llvm.HalfType()), _I16)


def _unchanged(builder: Any, value: Any) -> Any:
    return value


_Conversion = Callable[[Any, Any], Any]
_WIDENED: dict[str, _Conversion] = {"bf16": _bf16_widened, "f16": _f16_widened}
_ROUNDED: dict[str, _Conversion] = {"bf16": _bf16_rounded, "f16": _f16_rounded}


def _storage_format(fmt: Any) -> str:
    if not isinstance(fmt, types.StringLiteral):
        raise errors.TypingError(f"the storage format must be a constant string, got {fmt}")
    return fmt.literal_value


def _conversion(value: Any, fmt: Any, conversions: dict[str, _Conversion],
                accepts: Callable[[Any], bool], result: Any) -> Any:
    """The signature and code of :func:`widen` or :func:`narrow` for ``value``'s type: the
    conversion of the format ``fmt`` (a constant string) if it has one, else none (``value``
    a float, returned as it is); None for a type the conversion does not take."""
    kind = _storage_format(fmt)
    convert = conversions.get(kind, _unchanged)
    if convert is _unchanged:
        accepts, result = (lambda t: isinstance(t, types.Float)), value
    if not accepts(value):
        return None

    def codegen(context, builder, signature, args):
        return convert(builder, args[0])

    return result(value, fmt), codegen


@_kernel_intrinsic
def widen(typingctx, stored, fmt):
    """An element as stored, in the compute type: for ``fmt`` (a constant string) ``"bf16"``
    or ``"f16"``, 16 raw bits widened exactly to float32; for any other format, the float
    itself. The kernels' load, one for every storage format."""
    return _conversion(stored, fmt, _WIDENED, lambda t: isinstance(t, types.Integer),
                       types.float32)


@_kernel_intrinsic
def narrow(typingctx, value, fmt):
    """A computed value as stored in ``fmt`` (a constant string): for ``"bf16"`` or ``"f16"``,
    the bits of the float32 ``value`` rounded to nearest even (NaN stays NaN); for any other
    format, ``value`` itself (the array's store converts it, as an assignment does). The
    kernels' store, one for every storage format."""
    return _conversion(value, fmt, _ROUNDED, lambda t: t == types.float32, types.uint16)


@_kernel_intrinsic
def bits_of(typingctx, value):
    """The bit pattern of a float32, as uint32."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm.IntType(32))

    return types.uint32(value), codegen


@_kernel_intrinsic
def float_of_bits(typingctx, bits):
    """The float32 with bit pattern ``bits`` (an integer: its low 32 bits)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if value.type.width > 32:
            value = builder.trunc(value, llvm.IntType(32))
        elif value.type.width < 32:
            value = builder.zext(value, llvm.IntType(32))
        return builder.bitcast(value, llvm.FloatType())

    return types.float32(bits), codegen


@_kernel_intrinsic
def umax32(typingctx, a, b):
    """max of two uint32 in 32-bit IR (numba's ``max`` widens to 64 bits, which halves the
    vector width of the reduction)."""
    if a != types.uint32 or b != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.icmp_unsigned(">", args[0], args[1]), args[0], args[1])

    return types.uint32(a, b), codegen



# -- the thread pool ----------------------------------------------------------------------

PIECES_PER_THREAD = 4
"""Runs of work per thread in one kernel call (see :func:`_run`)."""

MIN_PER_THREAD = 1 << 16
"""Fewer elements than this per thread and handing work to a thread costs more than it saves."""

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()  # two threads stepping at once must not race to replace it


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: start a new pool there."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


def _pool_of(workers: int) -> ThreadPoolExecutor:
    """The pool, grown to at least ``workers`` threads. The pool it replaces is not shut
    down: another thread may be about to submit to it; its threads end once it is
    collected."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rmsprop")
            _pool_size = workers
        return _pool


os.register_at_fork(after_in_child=_forget_pool)


def _threads_for(numel: int) -> int:
    """As many threads as torch uses (``torch.set_num_threads`` applies here too), fewer for
    small steps."""
    return max(1, min(torch.get_num_threads(), numel // MIN_PER_THREAD))


def run_on_threads(kernel, chunk_length: np.ndarray, *args) -> None:
    """``kernel(first, last, *args)`` over every chunk: the chunk list cut into
    :data:`PIECES_PER_THREAD` runs of equal work per thread, which this thread and the pool's
    threads take in turn as each finishes its last (the kernel releases the GIL).

    Taking runs in turn rather than one fixed run per thread: a thread that the system
    schedules late (another process's threads, OpenMP workers of torch still spinning after an
    operation) would otherwise make the whole step as slow as one thread. Which thread runs a
    chunk never changes what is computed.
    """
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

    pool = _pool_of(threads - 1)
    futures = [pool.submit(take_runs) for _ in range(threads - 1)]
    take_runs()
    for future in futures:
        future.result()
