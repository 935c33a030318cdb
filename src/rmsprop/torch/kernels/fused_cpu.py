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
dtypes): each is compiled on first use and cached on disk by numba
(``cache=True``) for later processes. Supported storage: float32 and float64 parameters with
state of the same dtype; bfloat16 and float16 parameters with float32 state (computed in
float32, rounded to nearest even on the store), or with state of their own dtype (as
``load_state_dict`` leaves it).

numba is imported with this module, which :mod:`rmsprop.torch.kernels` imports only when a
fused step runs.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numba
import numpy as np
from numba import njit

from ...element import CODE_FINGERPRINT, Flags, Hyper, bind
from ...spec import RMSpropSpec
from .flat import (
    FORMAT, FlatTable, check_lists, chunk_table, compute_dtype, flags_of, group_by_storage,
    scalars_of,
)
from .numba_support import (
    MIN_PER_THREAD, PIECES_PER_THREAD, SUPPORT_FINGERPRINT, narrow, run_on_threads, voidptr,
    widen,
)
from .plan import CHUNK, KernelPlan
from .tensors import TensorLists, as_real

__all__ = ["CHUNK", "MIN_PER_THREAD", "PIECES_PER_THREAD", "fused", "grads_finite",
           "rmsprop_element", "run_plan"]


_RAW_DTYPE: dict[str, type[np.generic]] = {"f32": np.float32, "f64": np.float64,
                                           "bf16": np.uint16, "f16": np.uint16}


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
    p_size, s_size = np.dtype(p_raw).itemsize, np.dtype(s_raw).itemsize
    element_code = CODE_FINGERPRINT ^ SUPPORT_FINGERPRINT  # an edit of either recompiles
    zero = np.float64(0.0) if state_format == "f64" else np.float32(0.0)  # a constant: folds

    @njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
    def kernel(first, last, addresses, chunk_tensor, chunk_start, chunk_length, hyper,
               corrections, maximize, l2, decoupled, bias_correction, eps_in_sqrt,
               lr_in_momentum, nesterov):
        """Chunks ``first`` to ``last`` (excluded) of the chunk table."""
        assert element_code != 0  # kept in the closure (see CODE_FINGERPRINT)
        flags = Flags(maximize, l2, decoupled, amsgrad, centered, bias_correction, eps_in_sqrt,
                      momentum, lr_in_momentum, nesterov, False)
        for c in range(first, last):
            t, lo, n = chunk_tensor[c], chunk_start[c], chunk_length[c]
            h = Hyper(hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5], hyper[6],
                      corrections[t], zero)
            param = numba.carray(voidptr(addresses[_PARAM, t] + lo * p_size), n, p_raw)
            grad = numba.carray(voidptr(addresses[_GRAD, t] + lo * p_size), n, p_raw)
            square_avg = numba.carray(voidptr(addresses[_V, t] + lo * s_size), n, s_raw)
            max_square_avg = numba.carray(voidptr(addresses[_VMAX, t] + lo * s_size), n, s_raw)
            grad_avg = numba.carray(voidptr(addresses[_GBAR, t] + lo * s_size), n, s_raw)
            buf = numba.carray(voidptr(addresses[_BUF, t] + lo * s_size), n, s_raw)
            for i in range(n):
                theta = widen(param[i], param_format)
                v = widen(square_avg[i], state_format)
                vmax = widen(max_square_avg[i], state_format) if amsgrad else zero
                gbar = widen(grad_avg[i], state_format) if centered else zero
                b = widen(buf[i], state_format) if momentum else zero
                decay, delta, v, vmax, gbar, b = rmsprop_element(
                    theta, widen(grad[i], param_format), v, vmax, gbar, b, h, flags)
                param[i] = narrow((theta - decay) - delta, param_format)
                square_avg[i] = narrow(v, state_format)
                if amsgrad:
                    max_square_avg[i] = narrow(vmax, state_format)
                if centered:
                    grad_avg[i] = narrow(gbar, state_format)
                if momentum:
                    buf[i] = narrow(b, state_format)

    return kernel


# -- the torch side ---------------------------------------------------------------------------

def fused(t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None) -> None:
    """One step of every tensor: one kernel call per (param dtype, state dtype) group."""
    t = as_real(t)
    check_lists(t, spec, "fused")
    if not all(p.is_cpu for p in t.params):
        device = next(p.device for p in t.params if not p.is_cpu)
        raise ValueError(f"impl='fused' runs on CPU tensors, got a parameter on {device}")
    groups = group_by_storage(t, steps, "fused")
    flags = flags_of(spec)
    for (_, param_dtype, state_dtype), group, group_steps in groups:
        table = FlatTable.of(group)
        hyper, corrections = scalars_of(spec, lr, group_steps, len(group.params),
                                        compute_dtype(state_dtype))
        chunk_tensor, chunk_start, chunk_length = chunk_table(table.sizes, CHUNK)
        kernel = _kernel_for(flags.amsgrad, flags.centered, flags.momentum,
                             FORMAT[param_dtype], FORMAT[state_dtype])
        run_on_threads(kernel, chunk_length, table.addresses, chunk_tensor, chunk_start,
                       chunk_length, hyper, corrections, flags.maximize, flags.l2,
                       flags.decoupled, flags.bias_correction, flags.eps_in_sqrt,
                       flags.lr_in_momentum, flags.nesterov)
        table.finish()


def run_plan(plan: KernelPlan, spec: RMSpropSpec, lr: float,
             steps: Sequence[float] | None) -> None:
    """One step of the tensors of ``plan`` (its gradient row set for this step): the kernel
    of :func:`fused`, on tables built once; ``steps`` (the new t of each tensor, in the plan's
    order) only with bias correction."""
    flags = plan.flags
    for group in plan.groups:
        hyper, corrections = group.scalars(spec, lr, steps)
        kernel = _kernel_for(flags.amsgrad, flags.centered, flags.momentum,
                             group.param_format, group.state_format)
        args = (group.addresses, group.chunk_tensor, group.chunk_start, group.chunk_length,
                hyper, corrections, flags.maximize, flags.l2, flags.decoupled,
                flags.bias_correction, flags.eps_in_sqrt, flags.lr_in_momentum, flags.nesterov)
        if plan.serial:
            kernel(0, group.chunk_length.size, *args)
        else:
            run_on_threads(kernel, group.chunk_length, *args)
    plan.finish()


@functools.lru_cache(maxsize=None)
def _finite_kernel_for(param_format: str):
    """Whether every gradient element of a chunk table is finite: its exponent bits are not
    all ones (an OR of bit tests, which vectorises; a float reduction would not)."""
    exponent_bits: dict[str, tuple[type[np.unsignedinteger], int]] = {
        "f32": (np.uint32, 0x7F800000), "f64": (np.uint64, 0x7FF0000000000000),
        "bf16": (np.uint16, 0x7F80), "f16": (np.uint16, 0x7C00)}
    raw, bits = exponent_bits[param_format]
    size = np.dtype(raw).itemsize
    mask = raw(bits)

    @njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
    def kernel(addresses, chunk_tensor, chunk_start, chunk_length):
        for c in range(chunk_tensor.size):
            t, lo, n = chunk_tensor[c], chunk_start[c], chunk_length[c]
            grad = numba.carray(voidptr(addresses[_GRAD, t] + lo * size), n, raw)
            bad = False
            for i in range(n):
                bad |= (grad[i] & mask) == mask
            if bad:
                return False
        return True

    return kernel


def grads_finite(plan: KernelPlan) -> bool:
    """Whether every element of the gradients in ``plan``'s table (this step's) is finite:
    one pass over them, no tensor by tensor call."""
    return all(_finite_kernel_for(group.param_format)(
        group.addresses, group.chunk_tensor, group.chunk_start, group.chunk_length)
        for group in plan.groups)
