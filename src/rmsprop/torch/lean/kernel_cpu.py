"""``impl="fused"`` with lean state: 8-bit block-quantized or bfloat16 state, in one pass
(docs/design.md, "The kernels' contract" and "The state formats").

For every block of :data:`~rmsprop.torch.lean.codes.BLOCK` (256) elements the kernel reads the
parameter, the gradient and the stored state once, in two kinds of vectorised loop:

1. one loop decodes the state (``codebook[code] * scale[block]``, computed rather than looked
   up; or widens bfloat16), runs :func:`rmsprop.element.rmsprop_element` as compiled for
   ``impl="fused"`` (the math exists once), writes the new
   parameter, and keeps the new state values in local buffers of 256 (in L1) with each
   buffer's absmax (which gives the new scale);
2. one loop per state tensor encodes its buffer, rounding stochastically by default (see
   :mod:`rmsprop.torch.lean.storage` for the formats and why).

The step uses the new state at full float32 precision; only what is stored for the next step
is rounded. Memory traffic per element: parameter and gradient, plus one byte per state tensor
(two with bfloat16).

Random bits: per element and state tensor, the top bits of a Weyl sequence shifted by a hash
of (the parameter's index in the optimizer, the step, the state tensor, the block) (see
:func:`_encode`). A step is deterministic, does not depend on the number of threads, and a run
resumed from a state dict continues bit for bit.

Threads: the kernel releases the GIL and runs on the thread pool of
:mod:`rmsprop.torch.kernels.numba_support`, as many
threads as torch uses, each on a run of chunks of equal size.

Compile-time variants: which state tensors exist (amsgrad, centered, momentum), the form of
momentum (``lr_in_momentum``, ``nesterov``), the storage, the parameter dtype and the
rounding. The other options are run-time flags, as in :mod:`rmsprop.torch.kernels.fused_cpu`, so the option matrix
costs at most 20 compilations per storage and dtype, each cached on disk by numba. The form of
momentum is compiled in because LLVM turns those two flags into selects, computing all four
forms for every element, and this step is bound by arithmetic, not memory (the cost measured:
``benchmarks/NOTES.md``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit

from ...element import CODE_FINGERPRINT, Flags, Hyper
from .codes import BLOCK, SIGNED, STATE_KEYS, UNSIGNED, CodeFormat, seed_of
from .table import CODES, GRAD, PARAM, SCALES, LeanTable, lean_step
from ..kernels.flat import chunk_table
from ..kernels.fused_cpu import rmsprop_element
from ..kernels.numba_support import (
    SUPPORT_FINGERPRINT, bits_of, float_of_bits, narrow, run_on_threads, umax32, voidptr, widen,
)

__all__ = ["STATE_KEYS", "LeanVariant", "kernel_for", "quantize_into", "hash32",
           "step_lean", "seed_of", "CHUNK_BLOCKS"]

CHUNK_BLOCKS = 64
"""Blocks per unit of parallel work (16384 elements)."""

_U32 = np.uint32
_GOLDEN, _MIX1, _MIX2 = _U32(0x9E3779B9), _U32(0x7FEB352D), _U32(0x846CA68B)
_S15, _S16 = _U32(15), _U32(16)
_ABS_MASK = _U32(0x7FFFFFFF)
_INF_BITS = _U32(0x7F800000)
_BF16_NAN = _U32(0x7FC0)
_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


@njit(inline="always")
def hash32(seed, index):
    """32 random bits for element ``index`` under ``seed``: Wellons' lowbias32 of a Weyl step.

    Stateless, so each element's bits depend on (seed, index) only, whatever the threads do.
    """
    x = _U32(_U32(index) * _GOLDEN + _U32(seed))
    x = _U32(x ^ (x >> _S16))
    x = _U32(x * _MIX1)
    x = _U32(x ^ (x >> _S15))
    x = _U32(x * _MIX2)
    return _U32(x ^ (x >> _S16))


@njit(inline="always")
def abs_bits(x):
    """The bit pattern of ``|x|`` (float32): these order as the magnitudes do, inf above every
    finite value and NaN above inf, so a block's absmax is an integer max, which vectorises
    (a float max, without fastmath, does not)."""
    return _U32(bits_of(x) & _ABS_MASK)


@njit(inline="always")
def block_top_bits(values, n):
    """The largest :func:`abs_bits` of ``values[:n]``."""
    top_bits = _U32(0)
    for i in range(n):
        top_bits = umax32(top_bits, abs_bits(values[i]))
    return top_bits


@njit(inline="always")
def _encode(values, n, codes, base, stochastic, top_bits, signed, top, smallest_normal,
            offset, mantissa_bits, max_code):
    """Quantize one block, ``values[:n]`` into ``codes[:n]``; returns its scale, the absmax
    over ``top`` (the value of a code is its raw value times the scale).

    ``top_bits`` is :func:`block_top_bits` of the values, taken by the caller (the kernel
    takes it in its update loop, where it costs nothing).

    ``base`` (uint32) is the block's random number: element i's random bits are the top bits
    of ``base + i * 0x9E3779B9`` (mod 2**32), a Weyl sequence shifted by the block's ``base``
    (a fresh :func:`hash32` per block, state tensor and step). For every element the bits are
    uniform and independent from one step to the next (``base`` is), which is all that
    unbiased stochastic rounding needs; within a block they are equidistributed, so the
    block's rounding errors also cancel better than independent draws would. One add per
    element, where a hash per element costs about as much as the rest of the encoding.

    The block is scaled so that its absmax lands on the format's top raw value; the code of a
    raw value ``y`` is its float32 bit pattern cut to the format's mantissa,
    ``(bits(y) >> (23 - m)) - offset``, after adding ``r`` uniform in [0, 2**(23 - m)):
    rounding up with probability equal to the distance from the lower code, so unbiased (a
    carry into the exponent is the next binade). Below the smallest normal ``c`` the format is
    linear (subnormal): ``y + c`` lies in [c, 2c), whose mantissa is that code (plus 2**m).
    A NaN or inf in the block makes its scale NaN, so the whole block reads as NaN: a
    non-finite value is never hidden. At the ends of float32's range: a scale that would
    overflow (absmax above ``top`` times float32's max) is float32's max, so the block's
    largest values read up to 6 % low rather than inf; a block whose absmax is so small that
    ``top / absmax`` overflows (under 2.8e-39, float32 subnormals) is stored as zeros. The
    format's numbers are arguments so that one function serves every format (callers pass
    module constants, which numba folds after inlining).
    """
    absmax = float_of_bits(top_bits) if top_bits < _INF_BITS else np.float32(np.nan)
    inv = top / absmax if absmax > np.float32(0.0) else np.float32(0.0)
    if inv > _FLOAT32_MAX:  # only inf: absmax is subnormal
        inv = np.float32(0.0)
    shift = _U32(23 - mantissa_bits)
    random_shift = _U32(9 + mantissa_bits)  # the top 23 - m random bits: [0, 2**shift)
    nearest = _U32(1) << _U32(22 - mantissa_bits)
    subnormal_offset = _U32(1 << mantissa_bits)
    # Branch-free (selects), every integer kept at 32 bits (numba widens uint32 arithmetic to
    # 64 bits, which halves the vector width): so that the loop vectorises fully.
    random = base  # base + i * golden, as a 32-bit induction: 64-bit products halve the width
    for i in range(n):
        x = values[i]
        y = abs(x * inv)
        below = y < smallest_normal
        raw = bits_of(y + smallest_normal if below else y)
        if stochastic:
            add = _U32(random >> random_shift)
            random = _U32(random + _GOLDEN)
        else:
            add = nearest
        code = _U32(_U32(_U32(raw + add) >> shift)
                    - (subnormal_offset + offset if below else offset))
        code = _U32(min(code, max_code))
        if signed:
            code = _U32(code | _U32(_U32(bits_of(x) >> _U32(24)) & _U32(128)))
        codes[i] = code
    scale = absmax / top
    return _FLOAT32_MAX if scale > _FLOAT32_MAX else scale  # NaN stays NaN


@njit(inline="always")
def _magnitude(magnitude, mantissa_bits, normal_bits, smallest_normal):
    """The codebook value of the magnitude code ``magnitude``
    (:attr:`~rmsprop.torch.lean.codes.CodeFormat.codebook`), computed from its bits: shifted
    into a float32's mantissa and exponent fields, the exponent rebiased by adding
    ``normal_bits = (127 - bias) << 23``. A subnormal code (field 0: ``f * 2**-m * c`` with
    ``c = 2**(1 - bias)``, the smallest normal) is read as the normal ``c * (1 + f * 2**-m)``
    less ``c``, exactly. Integer operations, a select and a subtraction that vectorise, where a
    table lookup would be a gather that does not; and the code's value never passes through a
    float32 subnormal, so that a flush-to-zero mode (``torch.set_flush_denormal(True)``) reads
    every code as itself (a subnormal scale or state value is flushed, as by any arithmetic)."""
    below = magnitude < _U32(1 << mantissa_bits)
    exponent = _U32(normal_bits + _U32(1 << 23)) if below else normal_bits
    value = float_of_bits(_U32(_U32(magnitude << _U32(23 - mantissa_bits)) + exponent))
    return value - smallest_normal if below else value


@njit(inline="always")
def decode_unsigned(code, scale):
    """The value of an unsigned code (:data:`~rmsprop.torch.lean.codes.UNSIGNED`) in a block of
    scale ``scale``: ``codebook[code] * scale``."""
    return _magnitude(_U32(code), _U_M, _U_NORMAL_BITS, _U_SMALLEST) * scale


@njit(inline="always")
def decode_signed(code, scale, negative_scale):
    """The value of a signed code (:data:`~rmsprop.torch.lean.codes.SIGNED`) in a block of scale
    ``scale``, ``codebook[code] * scale``, as the magnitude times ``scale`` or
    ``negative_scale = -scale`` (the same product: rounding is symmetric); the sign picks a
    scale, which is cheaper than setting the bit in each value."""
    c = _U32(code)
    magnitude = _magnitude(_U32(c & _U32(127)), _S_M, _S_NORMAL_BITS, _S_SMALLEST)
    return magnitude * (negative_scale if c & _U32(128) else scale)


def _format_constants(fmt: CodeFormat) -> tuple:
    return (fmt.signed, np.float32(fmt.top), np.float32(2.0 ** (1 - fmt.bias)),
            _U32(fmt.offset), fmt.mantissa_bits, _U32(fmt.max_magnitude_code),
            _U32(fmt.offset << (23 - fmt.mantissa_bits)))


(_U_SIGNED, _U_TOP, _U_SMALLEST, _U_OFFSET, _U_M, _U_MAX,
 _U_NORMAL_BITS) = _format_constants(UNSIGNED)
(_S_SIGNED, _S_TOP, _S_SMALLEST, _S_OFFSET, _S_M, _S_MAX,
 _S_NORMAL_BITS) = _format_constants(SIGNED)
# numba folds the constants above into the compiled code but keys its disk cache on a
# function's own bytecode and closure only: the compiled functions capture this fingerprint so
# that a change of format (in rmsprop.torch.lean.codes) compiles them afresh.
_FORMATS = (UNSIGNED.exponent_bits, UNSIGNED.mantissa_bits, SIGNED.exponent_bits,
            SIGNED.mantissa_bits, BLOCK)


@njit(inline="always")
def encode_unsigned(values, n, codes, base, stochastic, top_bits):
    """:func:`_encode` in the format of v and vmax (:data:`~rmsprop.torch.lean.codes.UNSIGNED`)."""
    return _encode(values, n, codes, base, stochastic, top_bits, _U_SIGNED, _U_TOP,
                   _U_SMALLEST, _U_OFFSET, _U_M, _U_MAX)


@njit(inline="always")
def encode_signed(values, n, codes, base, stochastic, top_bits):
    """:func:`_encode` in the format of gbar and b (:data:`~rmsprop.torch.lean.codes.SIGNED`)."""
    return _encode(values, n, codes, base, stochastic, top_bits, _S_SIGNED, _S_TOP,
                   _S_SMALLEST, _S_OFFSET, _S_M, _S_MAX)


@njit(inline="always")
def encode_bf16(values, n, out, base, stochastic):
    """float32 -> bfloat16 bits, rounded stochastically (add 16 random bits, keep the upper
    half) or to nearest even; NaN stays NaN."""
    random = base  # the Weyl sequence of _encode
    for i in range(n):
        raw = bits_of(values[i])
        if stochastic:
            rounded = _U32(_U32(raw + _U32(random >> _S16)) >> _S16)
            random = _U32(random + _GOLDEN)
        else:
            rounded = (raw + _U32(0x7FFF) + ((raw >> _S16) & _U32(1))) >> _S16
        out[i] = _BF16_NAN if (raw & _ABS_MASK) > _INF_BITS else rounded


@njit(inline="always")
def _decoded(q8, signed, stored, i, scale):
    """Element ``i`` of one state tensor's block: an 8-bit code (``q8``) in the format of gbar
    and b (``signed``) or of v and vmax, in a block of scale ``scale``; or bfloat16 bits."""
    if q8:
        if signed:
            return decode_signed(stored[i], scale, -scale)
        return decode_unsigned(stored[i], scale)
    return widen(stored[i], "bf16")


@njit(inline="always")
def _kept(buffer, i, x, top_bits):
    """``x`` kept as element ``i`` of a state tensor's new block; returns the block's
    :func:`block_top_bits` so far."""
    buffer[i] = x
    return umax32(top_bits, abs_bits(x))


@njit(inline="always")
def _encoded(q8, signed, values, n, stored, scales, blk, seed, stochastic, top_bits):
    """Store block ``blk`` of one state tensor, ``values[:n]``, into ``stored``: 8-bit codes
    (``q8``, in the format of gbar and b if ``signed``, else of v and vmax) with the block's
    scale into ``scales[blk]``, or bfloat16 bits; the random bits are those of
    ``hash32(seed, blk)`` (see :func:`_encode`)."""
    base = hash32(seed, blk)
    if q8:
        if signed:
            scales[blk] = encode_signed(values, n, stored, base, stochastic, top_bits)
        else:
            scales[blk] = encode_unsigned(values, n, stored, base, stochastic, top_bits)
    else:
        encode_bf16(values, n, stored, base, stochastic)


@functools.lru_cache(maxsize=None)
def _quantizer(formats: tuple):
    support = SUPPORT_FINGERPRINT

    @njit(cache=True)
    def quantize(flat, codes, scale, seed, signed, stochastic):
        assert len(formats) == 5  # the fingerprint, kept in the closure (see _FORMATS)
        assert support != 0  # kept in the closure (see SUPPORT_FINGERPRINT)
        for blk in range(scale.size):
            lo = blk * BLOCK
            n = min(BLOCK, flat.size - lo)
            values = flat[lo : lo + n].copy()
            _encoded(True, signed, values, n, codes[lo : lo + n], scale, blk, seed, stochastic,
                     block_top_bits(values, n))

    return quantize


def quantize_into(
    flat: np.ndarray, codes: np.ndarray, scale: np.ndarray, fmt: CodeFormat, seed: int,
    stochastic: bool,
) -> None:
    """Quantize the float32 vector ``flat`` into ``codes`` (uint8) and ``scale`` (float32, one
    per block) with the kernel's encoder."""
    if fmt not in (UNSIGNED, SIGNED):
        raise ValueError(f"no encoder for the code format {fmt.name!r}")
    _quantizer(_FORMATS)(flat, codes, scale, _U32(seed), fmt.signed, stochastic)


class LeanVariant(NamedTuple):
    """What a compiled kernel is specialised on."""

    amsgrad: bool
    centered: bool
    momentum: bool
    lr_in_momentum: bool  # False without momentum
    nesterov: bool  # False without momentum
    param_format: str  # "f32", "bf16", "f16"
    storage: str  # "8bit", "bf16"
    stochastic: bool


_PARAM_RAW: dict[str, type[np.generic]] = {"f32": np.float32, "bf16": np.uint16,
                                           "f16": np.uint16}
_FORMAT_OF_DTYPE = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


@functools.lru_cache(maxsize=None)
def kernel_for(variant: LeanVariant):
    """The kernel of one variant (a closure whose captured flags numba folds as constants)."""
    amsgrad, centered, momentum, lr_in_momentum, nesterov, param_format, storage, stochastic = \
        variant
    p_raw = _PARAM_RAW[param_format]
    q8 = storage == "8bit"
    s_raw = np.uint8 if q8 else np.uint16
    one = np.float32(1.0)
    element_code = CODE_FINGERPRINT ^ SUPPORT_FINGERPRINT  # an edit of either recompiles
    zero = np.float32(0.0)  # a constant: folds
    formats = _FORMATS

    @njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
    def kernel(first, last, addresses, numels, chunk_tensor, chunk_block, chunk_count, hyper,
               corrections, seeds, maximize, l2, decoupled, bias_correction, eps_in_sqrt):
        """Chunks ``first`` to ``last`` (excluded) of the chunk table."""
        assert len(formats) == 5  # the fingerprint, kept in the closure (see _FORMATS)
        assert element_code != 0  # kept in the closure (see CODE_FINGERPRINT)
        flags = Flags(maximize, l2, decoupled, amsgrad, centered, bias_correction, eps_in_sqrt,
                      momentum, lr_in_momentum, nesterov, False)
        v_new = np.empty(BLOCK, np.float32)
        vmax_new = np.empty(BLOCK, np.float32)
        gbar_new = np.empty(BLOCK, np.float32)
        b_new = np.empty(BLOCK, np.float32)
        for c in range(first, last):
            t = chunk_tensor[c]
            numel = numels[t]
            nblocks = (numel + BLOCK - 1) // BLOCK
            h = Hyper(hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5], hyper[6],
                      corrections[t], zero)
            param = numba.carray(voidptr(addresses[PARAM, t]), numel, p_raw)
            grad = numba.carray(voidptr(addresses[GRAD, t]), numel, p_raw)
            v_codes = numba.carray(voidptr(addresses[CODES, t]), numel, s_raw)
            vmax_codes = numba.carray(voidptr(addresses[CODES + 1, t]), numel, s_raw)
            gbar_codes = numba.carray(voidptr(addresses[CODES + 2, t]), numel, s_raw)
            b_codes = numba.carray(voidptr(addresses[CODES + 3, t]), numel, s_raw)
            v_scale = numba.carray(voidptr(addresses[SCALES, t]), nblocks, np.float32)
            vmax_scale = numba.carray(voidptr(addresses[SCALES + 1, t]), nblocks, np.float32)
            gbar_scale = numba.carray(voidptr(addresses[SCALES + 2, t]), nblocks, np.float32)
            b_scale = numba.carray(voidptr(addresses[SCALES + 3, t]), nblocks, np.float32)
            for blk in range(chunk_block[c], chunk_block[c] + chunk_count[c]):
                lo = blk * BLOCK
                n = min(BLOCK, numel - lo)
                sv = v_scale[blk] if q8 else one
                svmax = vmax_scale[blk] if q8 and amsgrad else one
                sgbar = gbar_scale[blk] if q8 and centered else one
                sb = b_scale[blk] if q8 and momentum else one
                # views indexed from 0, so that no index needs a wraparound check
                block_param, block_grad = param[lo : lo + n], grad[lo : lo + n]
                v_block, vmax_block = v_codes[lo : lo + n], vmax_codes[lo : lo + n]
                gbar_block, b_block = gbar_codes[lo : lo + n], b_codes[lo : lo + n]
                # One loop decodes, updates and keeps the new state in the buffers and its
                # block max: the decoding's integer work overlaps the update's divide and root.
                # centered: v and vmax are stored as v - gbar^2 and vmax - gbar^2 (see
                # rmsprop.torch.lean.storage.VARIANCE_OF): decoded back with the decoded gbar
                v_top, vmax_top = _U32(0), _U32(0)
                gbar_top, b_top = _U32(0), _U32(0)
                for i in range(n):
                    v = _decoded(q8, False, v_block, i, sv)
                    vmax = _decoded(q8, False, vmax_block, i, svmax) if amsgrad else zero
                    gbar = _decoded(q8, True, gbar_block, i, sgbar) if centered else zero
                    b = _decoded(q8, True, b_block, i, sb) if momentum else zero
                    if centered:
                        v = v + gbar * gbar
                        vmax = vmax + gbar * gbar
                    theta = widen(block_param[i], param_format)
                    decay, delta, v, vmax, gbar, b = rmsprop_element(
                        theta, widen(block_grad[i], param_format), v, vmax, gbar, b, h, flags)
                    block_param[i] = narrow((theta - decay) - delta, param_format)
                    if centered:
                        gbar_squared = gbar * gbar
                        w = v - gbar_squared
                        v = zero if w < zero else w  # NaN stays NaN
                        if amsgrad:
                            w = vmax - gbar_squared
                            vmax = zero if w < zero else w
                        gbar_top = _kept(gbar_new, i, gbar, gbar_top)
                    v_top = _kept(v_new, i, v, v_top)
                    if amsgrad:
                        vmax_top = _kept(vmax_new, i, vmax, vmax_top)
                    if momentum:
                        b_top = _kept(b_new, i, b, b_top)
                # one call per state tensor: 8-bit codes and scale, or bfloat16 bits
                _encoded(q8, False, v_new, n, v_block, v_scale, blk, seeds[0, t], stochastic,
                         v_top)
                if amsgrad:
                    _encoded(q8, False, vmax_new, n, vmax_block, vmax_scale, blk, seeds[1, t],
                             stochastic, vmax_top)
                if centered:
                    _encoded(q8, True, gbar_new, n, gbar_block, gbar_scale, blk, seeds[2, t],
                             stochastic, gbar_top)
                if momentum:
                    _encoded(q8, True, b_new, n, b_block, b_scale, blk, seeds[3, t], stochastic,
                             b_top)

    return kernel


@lean_step
def step_lean(table: LeanTable) -> None:
    """The numba kernel over ``table``: real, contiguous CPU tensors (see :func:`.table.lean_step`
    for the arguments of the step function this is)."""
    flags = table.flags
    variant = LeanVariant(flags.amsgrad, flags.centered, flags.momentum,
                          flags.momentum and flags.lr_in_momentum,
                          flags.momentum and flags.nesterov,
                          _FORMAT_OF_DTYPE[table.param_dtype], table.storage, table.stochastic)
    numels = table.numels
    blocks = (numels + BLOCK - 1) // BLOCK
    chunk_tensor, chunk_block, chunk_count = chunk_table(blocks, CHUNK_BLOCKS)
    chunk_elements = np.minimum(chunk_count * BLOCK, numels[chunk_tensor] - chunk_block * BLOCK)
    run_on_threads(
        kernel_for(variant), chunk_elements,
        table.addresses, numels, chunk_tensor, chunk_block, chunk_count, table.hyper,
        table.corrections, table.seeds, flags.maximize, flags.l2, flags.decoupled,
        flags.bias_correction, flags.eps_in_sqrt,
    )
