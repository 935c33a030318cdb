"""``impl="triton"``: the whole RMSProp update in one Triton launch per group of tensors.

Multi-tensor: the tensors of a (device, param dtype, state dtype) group are cut into blocks of
:data:`BLOCK` elements; program ``i`` of the launch reads from a table which tensor and offset
its block is, then the addresses of that tensor's parameter, gradient and state, and does the
update of :mod:`rmsprop.spec` for its block in registers (one read and one write of each
array, 20 bytes per float32 parameter without momentum). Every option is a ``tl.constexpr``,
so each combination compiles to its own branch-free kernel.

Storage as in :mod:`.fused_cpu`: float32/float64 parameters with state of their dtype,
bfloat16/float16 parameters with float32 state (or state of their own dtype). Division and
square root are the IEEE-rounded ones (``div_rn``, ``sqrt_rn``), as torch's. bfloat16 is
rounded to nearest even with integer arithmetic, identical on the GPU and in the interpreter.

Run on CPU tensors under ``TRITON_INTERPRET=1`` (set before this module is imported), which is
how the tests check it without a GPU. Triton is imported with this module, which
:mod:`rmsprop.torch.kernels` imports only when a Triton step runs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from ...element import Flags, Hyper, bind
from ...spec import RMSpropSpec
from .flat import (
    FORMAT, GRAD, FlatTable, check_lists, chunk_table, compute_dtype, flags_of,
    group_by_storage, scalars_of,
)
from .plan import KernelPlan, StorageGroup
from .tensors import TensorLists, as_real

__all__ = ["BLOCK", "load", "load_hyper", "rmsprop_element", "run_plan", "store",
           "triton_step"]

BLOCK = 2048
"""Elements per program."""

_STORAGE_TYPE = {"f32": tl.float32, "f64": tl.float64, "bf16": tl.uint16, "f16": tl.float16}


@triton.jit
def load(pointer, offsets, mask, BF16: tl.constexpr, COMPUTE: tl.constexpr):
    """Load and widen to the compute type (bfloat16 is stored as its 16 raw bits). The Triton
    kernels' load, one for every storage format."""
    raw = tl.load(pointer + offsets, mask=mask, other=0)
    if BF16:
        return (raw.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        return raw.to(COMPUTE)


@triton.jit
def store(pointer, offsets, mask, value, BF16: tl.constexpr, STORAGE: tl.constexpr):
    """Round to the storage type and store; bfloat16 to nearest even, NaN kept a NaN. The
    Triton kernels' store, one for every storage format."""
    if BF16:
        bits = value.to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        bits16 = tl.where(value != value, 0x7FC0, rounded).to(tl.uint16)
        tl.store(pointer + offsets, bits16, mask=mask)
    else:
        tl.store(pointer + offsets, value.to(STORAGE), mask=mask)


@triton.jit
def _sqrt(x):
    if x.dtype == tl.float64:
        return tl.sqrt(x)  # float64 sqrt is IEEE-rounded
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _div(x, y):
    if x.dtype == tl.float64:
        return x / y  # float64 division is IEEE-rounded
    else:
        return tl.div_rn(x, y)


@triton.jit
def _maximum(a, b):
    """max(a, b) with a NaN in ``b`` (or ``a``) propagated."""
    return tl.where(b > a, b, tl.where(b != b, b, a))


@triton.jit
def _abs_sq(x):
    return x * x  # real only: torch's complex tensors reach the kernels as real views


rmsprop_element = bind(
    {"sqrt": _sqrt, "div": _div, "maximum": _maximum, "abs_sq": _abs_sq, "tl": tl,
     "__name__": __name__},
    triton.jit,
)
"""The element function of :mod:`rmsprop.element`, compiled by Triton (every flag a
constant of the kernel, so each combination is its own branch-free code)."""


@triton.jit
def load_hyper(hyper, correction):
    """The :class:`~rmsprop.element.Hyper` record of a kernel's ``hyper`` row
    (:func:`rmsprop.torch.kernels.flat.scalars_of`: lr, rho, 1 - rho, eps, wd, mu, lr*wd, 0)
    with the tensor's bias ``correction``."""
    return Hyper(tl.load(hyper + 0), tl.load(hyper + 1), tl.load(hyper + 2), tl.load(hyper + 3),
                 tl.load(hyper + 4), tl.load(hyper + 5), tl.load(hyper + 6), correction,
                 tl.load(hyper + 7))


@triton.jit
def _rmsprop_kernel(
    addresses, n_tensors, sizes, block_tensor, block_start, corrections, hyper,
    MAXIMIZE: tl.constexpr, L2: tl.constexpr, DECOUPLED: tl.constexpr, AMSGRAD: tl.constexpr,
    CENTERED: tl.constexpr, BIAS_CORRECTION: tl.constexpr, EPS_IN_SQRT: tl.constexpr,
    MOMENTUM: tl.constexpr, LR_IN_MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr,
    PARAM_TYPE: tl.constexpr, STATE_TYPE: tl.constexpr,
    PARAM_BF16: tl.constexpr, STATE_BF16: tl.constexpr, F64: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(block_tensor + pid)
    offsets = tl.load(block_start + pid) + tl.arange(0, BLOCK_SIZE)
    mask = offsets < tl.load(sizes + t)

    param = tl.load(addresses + t).to(tl.pointer_type(PARAM_TYPE))
    grad = tl.load(addresses + n_tensors + t).to(tl.pointer_type(PARAM_TYPE))
    square_avg = tl.load(addresses + 2 * n_tensors + t).to(tl.pointer_type(STATE_TYPE))
    theta = load(param, offsets, mask, PARAM_BF16, COMPUTE)
    v = load(square_avg, offsets, mask, STATE_BF16, COMPUTE)
    # Placeholders for the state an option leaves out (never read then). Not tl.zeros: that is
    # a @triton.jit helper, which the interpreter cannot call if triton was imported first.
    vmax = v
    gbar = v
    b = v
    if AMSGRAD:
        max_square_avg = tl.load(addresses + 3 * n_tensors + t).to(tl.pointer_type(STATE_TYPE))
        vmax = load(max_square_avg, offsets, mask, STATE_BF16, COMPUTE)
    if CENTERED:
        grad_avg = tl.load(addresses + 4 * n_tensors + t).to(tl.pointer_type(STATE_TYPE))
        gbar = load(grad_avg, offsets, mask, STATE_BF16, COMPUTE)
    if MOMENTUM:
        buf = tl.load(addresses + 5 * n_tensors + t).to(tl.pointer_type(STATE_TYPE))
        b = load(buf, offsets, mask, STATE_BF16, COMPUTE)

    decay, delta, v, vmax, gbar, b = rmsprop_element(
        theta, load(grad, offsets, mask, PARAM_BF16, COMPUTE), v, vmax, gbar, b,
        load_hyper(hyper, tl.load(corrections + t)),
        Flags(MAXIMIZE, L2, DECOUPLED, AMSGRAD, CENTERED, BIAS_CORRECTION, EPS_IN_SQRT,
              MOMENTUM, LR_IN_MOMENTUM, NESTEROV, False),  # in the call: a variable loses constexpr
    )
    store(param, offsets, mask, (theta - decay) - delta, PARAM_BF16, PARAM_TYPE)
    store(square_avg, offsets, mask, v, STATE_BF16, STATE_TYPE)
    if AMSGRAD:
        store(max_square_avg, offsets, mask, vmax, STATE_BF16, STATE_TYPE)
    if CENTERED:
        store(grad_avg, offsets, mask, gbar, STATE_BF16, STATE_TYPE)
    if MOMENTUM:
        store(buf, offsets, mask, b, STATE_BF16, STATE_TYPE)


def triton_step(
    t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None
) -> None:
    """One step of every tensor: one launch per (device, param dtype, state dtype) group."""
    t = as_real(t)
    check_lists(t, spec, "triton")
    flags = flags_of(spec)
    for (device, param_dtype, state_dtype), group, group_steps in group_by_storage(
        t, steps, "triton"
    ):
        table = FlatTable.of(group)
        block_tensor, block_start, _ = chunk_table(table.sizes, BLOCK)
        if block_tensor.size == 0:
            continue
        param_format, state_format = FORMAT[param_dtype], FORMAT[state_dtype]
        hyper, corrections = scalars_of(spec, lr, group_steps, len(group.params),
                                        compute_dtype(state_dtype))

        def on_device(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(device, non_blocking=True)

        _launch(device, flags, param_format, state_format, block_tensor.size,
                on_device(table.addresses), len(group.params), on_device(table.sizes),
                on_device(block_tensor), on_device(block_start), on_device(corrections),
                on_device(hyper))
        table.finish()


def run_plan(plan: KernelPlan, spec: RMSpropSpec, lr: float,
             steps: Sequence[float] | None) -> None:
    """One step of the tensors of ``plan`` (its gradient row set for this step): the launch
    of :func:`triton_step` on tables built once and kept on the device, the address table
    uploaded again only when the gradients' addresses changed; ``steps`` (the new t of each
    tensor, in the plan's order) only with bias correction."""
    flags = plan.flags
    device = plan.params[0].device
    for group in plan.groups:
        tables = _tables_on(device, group)
        if tables["blocks"] == 0:
            continue
        hyper, corrections = group.scalars(spec, lr, steps)
        _launch(device, flags, group.param_format, group.state_format, tables["blocks"],
                tables["addresses"], group.index.size, tables["sizes"],
                tables["block_tensor"], tables["block_start"],
                torch.from_numpy(corrections).to(device, non_blocking=True),
                torch.from_numpy(hyper).to(device, non_blocking=True))
    plan.finish()


def _tables_on(device: torch.device, group: StorageGroup) -> dict[str, Any]:
    """``group``'s tables on ``device``: built at the first step, kept in the group; the
    address table copied again when its gradient row changed (``set_grads``).

    Everything is built before anything is kept (a failed copy leaves nothing half-kept).
    Tables are kept for the CUDA stream they were made on, and made again on another: the
    caching allocator may hand a freed block to new work on the stream it was allocated on
    only, which then runs after every launch that read it there."""
    kept = group.device_tables
    grads = group.addresses[GRAD]
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    if kept and kept["stream"] == stream:
        if np.array_equal(kept["grads"], grads):
            return kept
        addresses = _copy_to(device, group.addresses)
        kept.update(addresses=addresses, grads=grads.copy())
        return kept
    block_tensor, block_start, _ = chunk_table(group.sizes, BLOCK)
    new = {"blocks": block_tensor.size, "sizes": _copy_to(device, group.sizes),
           "block_tensor": _copy_to(device, block_tensor),
           "block_start": _copy_to(device, block_start),
           "addresses": _copy_to(device, group.addresses), "grads": grads.copy(),
           "stream": stream}
    kept.clear()
    kept.update(new)
    return kept


def _copy_to(device: torch.device, array: np.ndarray) -> torch.Tensor:
    """A copy of ``array`` on ``device`` that owns its memory (the array changes later)."""
    return torch.tensor(array, device=device)


def _launch(device: torch.device, flags: Flags, param_format: str, state_format: str,
            blocks: int, addresses: torch.Tensor, n: int, sizes: torch.Tensor,
            block_tensor: torch.Tensor, block_start: torch.Tensor, corrections: torch.Tensor,
            hyper: torch.Tensor) -> None:
    """One launch of :func:`_rmsprop_kernel` over ``blocks`` blocks (the tables on
    ``device``)."""
    f64 = state_format == "f64"
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _rmsprop_kernel[(blocks,)](
            addresses, n, sizes, block_tensor, block_start, corrections, hyper,
            MAXIMIZE=flags.maximize, L2=flags.l2, DECOUPLED=flags.decoupled,
            AMSGRAD=flags.amsgrad, CENTERED=flags.centered,
            BIAS_CORRECTION=flags.bias_correction, EPS_IN_SQRT=flags.eps_in_sqrt,
            MOMENTUM=flags.momentum, LR_IN_MOMENTUM=flags.lr_in_momentum,
            NESTEROV=flags.nesterov,
            PARAM_TYPE=_STORAGE_TYPE[param_format],
            STATE_TYPE=_STORAGE_TYPE[state_format],
            PARAM_BF16=param_format == "bf16",
            STATE_BF16=state_format == "bf16",
            F64=f64,
            COMPUTE=tl.float64 if f64 else tl.float32,
            BLOCK_SIZE=BLOCK,
            enable_fp_fusion=False,  # no FMA contraction: round as update.py does
        )
