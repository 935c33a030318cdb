"""Lean state on the GPU: 8-bit block-quantized or bfloat16 state in one Triton launch.

The state format, the codes and the random bits of :mod:`.kernel_cpu` (the CPU kernel), so
that a state dict moves between the two and continues with the same numbers:

* 8-bit: the minifloats of :mod:`rmsprop.torch.lean.codes` (``UNSIGNED`` for v and vmax, ``SIGNED``
  for gbar and b), one float32 scale per block of ``BLOCK`` = 256 elements; centered state is
  stored as ``v - gbar**2`` (:data:`rmsprop.torch.lean.storage.VARIANCE_OF`);
* bfloat16: the state's upper 16 bits;
* rounding stochastic by default: element ``i`` of block ``k`` of a state tensor adds the top
  bits of ``hash32(seed, k) + i * 0x9E3779B9`` (mod 2**32), ``seed = seed_of(salt, step,
  stream)``, as :func:`.kernel_cpu._encode` does.

Program ``p`` of the launch updates :data:`ROWS` quantization blocks of one tensor (a table
says which tensor and which first block) as a ``ROWS x 256`` tile: it decodes the state,
runs :func:`rmsprop.element.rmsprop_element` (bound for Triton once, in
:mod:`.triton_kernel`), stores the parameter, takes each block's absmax as the integer max of
the values' ``|x|`` bit patterns (NaN above inf above every finite value) and encodes.

Every operation of the encoding and decoding is an integer operation, a select, or a float32
multiply, add or IEEE-rounded divide (``div_rn``), with no FMA contraction
(``enable_fp_fusion=False``), so the Triton interpreter (``TRITON_INTERPRET=1``, NumPy) gives
the bits of the numba kernel, which the tests check. On a GPU two things can differ, both
outside the values a block decodes to:

* the codes of a block whose scale is NaN (a NaN or inf in the block): the GPU's NaN has
  another payload, so other codes, read as NaN all the same;
* subnormal float32 values, if the device flushed them: Triton does not ask for flushing
  (no ``.ftz`` in the PTX, checked by ``tests/lean_state/test_triton_lowbit_compile.py``).

Triton is imported with this module, which :mod:`rmsprop.torch.lean.optimizer` imports only when
a lean step runs on the GPU (or under the interpreter).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl
from torch import Tensor

from ...element import Flags
from .codes import BLOCK, SIGNED, UNSIGNED, CodeFormat
from .table import CODES, GRAD, PARAM, SCALES, LeanTable, lean_step
from ..kernels.flat import chunk_table
from ..kernels.triton_kernel import load, load_hyper, rmsprop_element, store

__all__ = ["ROWS", "hash32", "step_lean_triton"]

ROWS = 8
"""Quantization blocks per program (2048 elements)."""

# Wellons' lowbias32 and the Weyl increment, kernel_cpu.hash32's (tests/lean_state/test_triton_lowbit.py
# compares the codes of both kernels under stochastic rounding, which draws from these)
_GOLDEN: tl.constexpr = tl.constexpr(0x9E3779B9)
_MIX1: tl.constexpr = tl.constexpr(0x7FEB352D)
_MIX2: tl.constexpr = tl.constexpr(0x846CA68B)
_ABS_MASK: tl.constexpr = tl.constexpr(0x7FFFFFFF)
_INF_BITS: tl.constexpr = tl.constexpr(0x7F800000)
_NAN_BITS: tl.constexpr = tl.constexpr(0x7FC00000)  # numpy's (and numba's) float32 NaN
_FLOAT32_MAX: tl.constexpr = tl.constexpr(float(np.finfo(np.float32).max))

_PARAM_TYPE = {torch.float32: tl.float32, torch.bfloat16: tl.uint16, torch.float16: tl.float16}
# Rows of the address table (:mod:`.table`), as constants of the kernels.
_PARAM: tl.constexpr = tl.constexpr(PARAM)
_GRAD: tl.constexpr = tl.constexpr(GRAD)
_CODES: tl.constexpr = tl.constexpr(CODES)
_SCALES: tl.constexpr = tl.constexpr(SCALES)


def _format_constants(fmt: CodeFormat) -> dict[str, Any]:
    """A code format's numbers as the kernel's constants (see :class:`CodeFormat`)."""
    prefix = "S_" if fmt.signed else "U_"
    m = fmt.mantissa_bits
    return {prefix + "TOP": float(np.float32(fmt.top)),
            prefix + "SMALLEST": float(np.float32(2.0 ** (1 - fmt.bias))),
            prefix + "OFFSET": fmt.offset, prefix + "M": m,
            prefix + "MAX": fmt.max_magnitude_code,
            prefix + "NORMAL_BITS": fmt.offset << (23 - m)}


_FORMATS = {**_format_constants(UNSIGNED), **_format_constants(SIGNED)}


@triton.jit
def hash32(seed, index):
    """32 random bits for ``index`` under ``seed`` (uint32): :func:`.kernel_cpu.hash32`."""
    x = index * _GOLDEN + seed
    x = x ^ (x >> 16)
    x = x * _MIX1
    x = x ^ (x >> 15)
    x = x * _MIX2
    return x ^ (x >> 16)


@triton.jit
def _decode(code, scale, SIGNED: tl.constexpr, M: tl.constexpr, NORMAL_BITS: tl.constexpr,
            SMALLEST: tl.constexpr):
    """``codebook[code] * scale`` from the code's bits, as :func:`.kernel_cpu._magnitude`
    and ``decode_signed``/``decode_unsigned`` compute it (``scale``: one per row)."""
    c = code.to(tl.uint32)
    if SIGNED:
        magnitude = c & 127
    else:
        magnitude = c
    below = magnitude < (1 << M)
    exponent = tl.where(below, NORMAL_BITS + (1 << 23), NORMAL_BITS).to(tl.uint32)
    value = ((magnitude << (23 - M)) + exponent).to(tl.float32, bitcast=True)
    value = tl.where(below, value - SMALLEST, value)
    if SIGNED:
        return value * tl.where((c & 128) != 0, -scale, scale)
    else:
        return value * scale


@triton.jit
def _umax(a, b):
    return tl.maximum(a, b)


# The combine function of tl.max, which Triton's interpreter runs as one NumPy max (any other
# runs per element, in Python); tl.max itself is a @triton.jit helper, which the interpreter
# cannot call if Triton was imported before TRITON_INTERPRET was set.
_MAX_COMBINE = getattr(getattr(tl, "standard", None), "_elementwise_max", _umax)


@triton.jit
def _top_bits(values, mask):
    """Per row, the largest ``|x|`` bit pattern of the values under ``mask``."""
    bits = values.to(tl.uint32, bitcast=True) & _ABS_MASK
    return tl.reduce(tl.where(mask, bits, 0).to(tl.uint32), 1, _MAX_COMBINE)


@triton.jit
def _randoms(seed, blocks, lanes):
    """The random bits of every element: the block's ``hash32`` plus ``lane * golden``."""
    return hash32(seed, blocks.to(tl.uint32))[:, None] + lanes * _GOLDEN


@triton.jit
def _encode(values, top_bits, randoms, STOCHASTIC: tl.constexpr, SIGNED: tl.constexpr,
            TOP: tl.constexpr, SMALLEST: tl.constexpr, OFFSET: tl.constexpr,
            M: tl.constexpr, MAX: tl.constexpr):
    """Codes and per-row scales of ``values``, as :func:`.kernel_cpu._encode`."""
    absmax = tl.where(top_bits < _INF_BITS, top_bits, _NAN_BITS).to(tl.uint32).to(
        tl.float32, bitcast=True)
    positive = absmax > 0.0
    inv = tl.where(positive, tl.div_rn(absmax * 0.0 + TOP, tl.where(positive, absmax, 1.0)),
                   0.0)
    inv = tl.where(inv > _FLOAT32_MAX, 0.0, inv)  # only inf: absmax is subnormal
    y = tl.abs(values * inv[:, None])
    below = y < SMALLEST
    raw = tl.where(below, y + SMALLEST, y).to(tl.uint32, bitcast=True)
    if STOCHASTIC:
        add = randoms >> (9 + M)
    else:
        add = randoms * 0 + (1 << (22 - M))
    code = ((raw + add) >> (23 - M)) - tl.where(below, (1 << M) + OFFSET, OFFSET).to(tl.uint32)
    code = tl.minimum(code, MAX)
    if SIGNED:
        code = code | ((values.to(tl.uint32, bitcast=True) >> 24) & 128)
    scale = tl.div_rn(absmax, absmax * 0.0 + TOP)
    scale = tl.where(scale > _FLOAT32_MAX, _FLOAT32_MAX, scale)  # NaN stays NaN
    return code.to(tl.uint8), scale


@triton.jit
def _encode_bf16(values, randoms, STOCHASTIC: tl.constexpr):
    """float32 -> bfloat16 bits, as :func:`.kernel_cpu.encode_bf16`."""
    raw = values.to(tl.uint32, bitcast=True)
    if STOCHASTIC:
        rounded = (raw + (randoms >> 16)) >> 16
    else:
        rounded = (raw + 0x7FFF + ((raw >> 16) & 1)) >> 16
    return tl.where((raw & _ABS_MASK) > _INF_BITS, 0x7FC0, rounded).to(tl.uint16)


@triton.jit
def _load_state(addresses, n_tensors, t, row: tl.constexpr, offsets, mask, blocks, row_mask,
                Q8: tl.constexpr, SIGNED: tl.constexpr, M: tl.constexpr,
                NORMAL_BITS: tl.constexpr, SMALLEST: tl.constexpr):
    if Q8:
        codes = tl.load(addresses + (_CODES + row) * n_tensors + t).to(tl.pointer_type(tl.uint8))
        scales = tl.load(addresses + (_SCALES + row) * n_tensors + t).to(
            tl.pointer_type(tl.float32))
        scale = tl.load(scales + blocks, mask=row_mask, other=1.0)
        code = tl.load(codes + offsets, mask=mask, other=0)
        return _decode(code, scale[:, None], SIGNED, M, NORMAL_BITS, SMALLEST)
    else:
        bits = tl.load(addresses + (_CODES + row) * n_tensors + t).to(tl.pointer_type(tl.uint16))
        return load(bits, offsets, mask, True, tl.float32)


@triton.jit
def _store_state(addresses, n_tensors, t, row: tl.constexpr, seeds, offsets, mask, blocks,
                 row_mask, lanes, values, Q8: tl.constexpr, STOCHASTIC: tl.constexpr,
                 SIGNED: tl.constexpr, TOP: tl.constexpr, SMALLEST: tl.constexpr,
                 OFFSET: tl.constexpr, M: tl.constexpr, MAX: tl.constexpr):
    seed = tl.load(seeds + row * n_tensors + t).to(tl.uint32)
    randoms = _randoms(seed, blocks, lanes)
    values = tl.where(mask, values, 0.0)  # the padding of a short last block counts as 0
    if Q8:
        codes = tl.load(addresses + (_CODES + row) * n_tensors + t).to(tl.pointer_type(tl.uint8))
        scales = tl.load(addresses + (_SCALES + row) * n_tensors + t).to(
            tl.pointer_type(tl.float32))
        code, scale = _encode(values, _top_bits(values, mask), randoms, STOCHASTIC, SIGNED,
                              TOP, SMALLEST, OFFSET, M, MAX)
        tl.store(codes + offsets, code, mask=mask)
        tl.store(scales + blocks, scale, mask=row_mask)
    else:
        bits = tl.load(addresses + (_CODES + row) * n_tensors + t).to(tl.pointer_type(tl.uint16))
        tl.store(bits + offsets, _encode_bf16(values, randoms, STOCHASTIC), mask=mask)


@triton.jit
def _lowbit_kernel(
    addresses, n_tensors, sizes, program_tensor, program_block, corrections, hyper, seeds,
    MAXIMIZE: tl.constexpr, L2: tl.constexpr, DECOUPLED: tl.constexpr, AMSGRAD: tl.constexpr,
    CENTERED: tl.constexpr, BIAS_CORRECTION: tl.constexpr, EPS_IN_SQRT: tl.constexpr,
    MOMENTUM: tl.constexpr, LR_IN_MOMENTUM: tl.constexpr, NESTEROV: tl.constexpr,
    PARAM_TYPE: tl.constexpr, PARAM_BF16: tl.constexpr, Q8: tl.constexpr,
    STOCHASTIC: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr, QBLOCK: tl.constexpr,
    U_TOP: tl.constexpr, U_SMALLEST: tl.constexpr, U_OFFSET: tl.constexpr, U_M: tl.constexpr,
    U_MAX: tl.constexpr, U_NORMAL_BITS: tl.constexpr,
    S_TOP: tl.constexpr, S_SMALLEST: tl.constexpr, S_OFFSET: tl.constexpr, S_M: tl.constexpr,
    S_MAX: tl.constexpr, S_NORMAL_BITS: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(program_tensor + pid)
    numel = tl.load(sizes + t)
    blocks = tl.load(program_block + pid) + tl.arange(0, ROWS_PER_PROGRAM)  # int64
    lanes = tl.arange(0, QBLOCK).to(tl.uint32)[None, :]
    offsets = blocks[:, None] * QBLOCK + tl.arange(0, QBLOCK)[None, :]
    mask = offsets < numel
    row_mask = blocks * QBLOCK < numel
    param = tl.load(addresses + _PARAM * n_tensors + t).to(tl.pointer_type(PARAM_TYPE))
    grad = tl.load(addresses + _GRAD * n_tensors + t).to(tl.pointer_type(PARAM_TYPE))
    theta = load(param, offsets, mask, PARAM_BF16, tl.float32)

    v = _load_state(addresses, n_tensors, t, 0, offsets, mask, blocks, row_mask, Q8, False,
                    U_M, U_NORMAL_BITS, U_SMALLEST)
    # placeholders for the state an option leaves out (never read then)
    vmax = v * 0.0
    gbar = vmax
    b = vmax
    if AMSGRAD:
        vmax = _load_state(addresses, n_tensors, t, 1, offsets, mask, blocks, row_mask, Q8,
                           False, U_M, U_NORMAL_BITS, U_SMALLEST)
    if CENTERED:
        gbar = _load_state(addresses, n_tensors, t, 2, offsets, mask, blocks, row_mask, Q8,
                           True, S_M, S_NORMAL_BITS, S_SMALLEST)
        # stored as v - gbar**2 (rmsprop.torch.lean.storage.VARIANCE_OF)
        v = v + gbar * gbar
        vmax = vmax + gbar * gbar
    if MOMENTUM:
        b = _load_state(addresses, n_tensors, t, 3, offsets, mask, blocks, row_mask, Q8, True,
                        S_M, S_NORMAL_BITS, S_SMALLEST)

    decay, delta, v, vmax, gbar, b = rmsprop_element(
        theta, load(grad, offsets, mask, PARAM_BF16, tl.float32), v, vmax, gbar, b,
        load_hyper(hyper, tl.load(corrections + t)),
        Flags(MAXIMIZE, L2, DECOUPLED, AMSGRAD, CENTERED, BIAS_CORRECTION, EPS_IN_SQRT,
              MOMENTUM, LR_IN_MOMENTUM, NESTEROV, False),  # in the call: a variable loses constexpr
    )
    store(param, offsets, mask, (theta - decay) - delta, PARAM_BF16, PARAM_TYPE)

    if CENTERED:
        gbar_squared = gbar * gbar
        w = v - gbar_squared
        v = tl.where(w < 0.0, 0.0, w)  # NaN stays NaN
        if AMSGRAD:
            w = vmax - gbar_squared
            vmax = tl.where(w < 0.0, 0.0, w)
    _store_state(addresses, n_tensors, t, 0, seeds, offsets, mask, blocks, row_mask, lanes, v,
                 Q8, STOCHASTIC, False, U_TOP, U_SMALLEST, U_OFFSET, U_M, U_MAX)
    if AMSGRAD:
        _store_state(addresses, n_tensors, t, 1, seeds, offsets, mask, blocks, row_mask, lanes,
                     vmax, Q8, STOCHASTIC, False, U_TOP, U_SMALLEST, U_OFFSET, U_M, U_MAX)
    if CENTERED:
        _store_state(addresses, n_tensors, t, 2, seeds, offsets, mask, blocks, row_mask, lanes,
                     gbar, Q8, STOCHASTIC, True, S_TOP, S_SMALLEST, S_OFFSET, S_M, S_MAX)
    if MOMENTUM:
        _store_state(addresses, n_tensors, t, 3, seeds, offsets, mask, blocks, row_mask, lanes,
                     b, Q8, STOCHASTIC, True, S_TOP, S_SMALLEST, S_OFFSET, S_M, S_MAX)


@lean_step
def step_lean_triton(table: LeanTable) -> None:
    """The Triton kernel over ``table``, in one launch: tensors on one CUDA device (or on the
    CPU under ``TRITON_INTERPRET=1``), the arguments and the results of
    :func:`.kernel_cpu.step_lean` (see :func:`.table.lean_step`)."""
    flags = table.flags
    blocks = (table.numels + BLOCK - 1) // BLOCK
    program_tensor, program_block, _ = chunk_table(blocks, ROWS)
    if program_tensor.size == 0:
        return
    device = table.device

    def on_device(array: np.ndarray) -> Tensor:
        return torch.from_numpy(array).to(device, non_blocking=True)

    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _lowbit_kernel[(program_tensor.size,)](
            on_device(table.addresses), table.numels.size, on_device(table.numels),
            on_device(program_tensor), on_device(program_block), on_device(table.corrections),
            on_device(table.hyper), on_device(table.seeds.astype(np.int64)),
            MAXIMIZE=flags.maximize, L2=flags.l2, DECOUPLED=flags.decoupled,
            AMSGRAD=flags.amsgrad, CENTERED=flags.centered,
            BIAS_CORRECTION=flags.bias_correction, EPS_IN_SQRT=flags.eps_in_sqrt,
            MOMENTUM=flags.momentum, LR_IN_MOMENTUM=flags.momentum and flags.lr_in_momentum,
            NESTEROV=flags.momentum and flags.nesterov,
            PARAM_TYPE=_PARAM_TYPE[table.param_dtype],
            PARAM_BF16=table.param_dtype == torch.bfloat16,
            Q8=table.storage == "8bit", STOCHASTIC=table.stochastic, ROWS_PER_PROGRAM=ROWS,
            QBLOCK=BLOCK, **_FORMATS,
            enable_fp_fusion=False,  # no FMA contraction: round as the CPU kernel does
        )
