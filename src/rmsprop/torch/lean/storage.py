"""Lean optimizer state: 8-bit block-quantized tensors, bfloat16, and conversions between them
(docs/design.md, "The state formats").

``RMSprop(..., state_precision="8bit")`` stores each state tensor (v, vmax, gbar, b) of a
parameter with at least ``min_8bit_size`` elements as

* ``codes``: one ``uint8`` per element (in the parameter's real shape), and
* ``scale``: one ``float32`` per block of :data:`BLOCK` = 256 consecutive elements (row-major
  order), the block's absolute maximum over the format's top value (``absmax / top``, at
  most float32's max);

and the value of element ``i`` is ``codebook[codes[i]] * scale[i // 256]``, one float32
product of two exact numbers (:attr:`CodeFormat.codebook`: the minifloat values themselves).
In the optimizer's ``state`` (and its ``state_dict()``) they are the tensors
``"square_avg.codes"`` and ``"square_avg.block_scale"`` (likewise ``max_square_avg``,
``grad_avg``, ``momentum_buffer``; centered state keeps ``"variance"`` and ``"max_variance"``
instead of v and vmax, see :data:`VARIANCE_OF`): plain tensors, so
``torch.save(..., weights_only=True)`` and safetensors take them as they are. Bytes per
parameter: 1 + 4/256 = 1.016 per state tensor (float32: 4).

rmsprop 0.1.0 stored ``".scale"``, the block absmax itself, and read the codes with a codebook
divided by ``top`` (one more rounding, and a division in the kernel); its state dicts load
through :func:`upgrade_legacy_scales` (codes kept, scale divided by ``top``: each value moves
by at most two ulps), in ``load_state_dict`` and ``rmsprop.checkpoint.load``; not through
``torch.distributed.checkpoint``, which loads into this version's key names.

The codes are 8-bit minifloats scaled per block so that the block's absmax is the top code
(to an ulp); the 256-entry codebooks are module constants shared by every tensor. A code's
value is exact in float32 and the fused kernel computes it from the code's bits, so that
decoding costs a few vector operations and no table. Parameters smaller than
``min_8bit_size`` (default 4096, as bitsandbytes) keep full-precision state: their state is a
small share of the memory.

Formats. Dettmers et al. ("8-bit Optimizers via Block-wise Quantization", ICLR 2022) use a
"dynamic tree" code, found by table search; a minifloat has the same shape (geometric spacing,
constant relative error) and is encoded by cutting the float32 bit pattern, with no search,
so that the kernel's encoding vectorises.

* :data:`UNSIGNED`, for v and vmax: E5M3 without a sign: 31 binades and a linear range below
  2**-31 of the block max, 3 mantissa bits. What the step uses is sqrt(v), whose relative
  error is half of v's; a format with fewer binades loses the elements far below their
  block's max (their steps then jump).
* :data:`SIGNED`, for gbar and the momentum buffer: sign + E4M3 (the FP8 E4M3 layout with a
  block scale).

The errors measured for these and the other candidates are in ``benchmarks/NOTES.md``.

Rounding. With ``alpha = 0.99`` one step changes v by about 1 % relative, less than half the
code spacing: rounding to nearest returns the old code and v freezes (the "stuck EMA"; the
test ``test_round_to_nearest_freezes_an_ema...`` shows it). Rounding is therefore stochastic,
``E[q(x)] = x``, so the average moves by the right amount on average (its effect on a
training run: ``benchmarks/NOTES.md``). The random bits are deterministic for a given
parameter, step and element (see :mod:`rmsprop.torch.lean.kernel_cpu`).

``state_precision="bf16"`` stores the same tensors as bfloat16 (2 bytes per element), rounded
stochastically for the same reason (bfloat16 has 8 significant bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from .codes import BLOCK, FORMAT_OF, SIGNED, UNSIGNED, CodeFormat
from ..kernels.tensors import real_view

__all__ = [
    "BLOCK",
    "PRECISIONS",
    "DEFAULT_MIN_8BIT_SIZE",
    "CodeFormat",
    "UNSIGNED",
    "SIGNED",
    "FORMAT_OF",
    "QuantizedTensor",
    "check_state_precision",
    "check_min_8bit_size",
    "is_quantized",
    "stored_keys",
    "state_nbytes",
    "storage_problem",
    "upgrade_legacy_scales",
]

PRECISIONS = ("fp32", "bf16", "8bit")
"""Valid ``state_precision`` values. ``"fp32"`` keeps the state in the parameter's dtype, as
torch does (float32 for float32 parameters)."""

DEFAULT_MIN_8BIT_SIZE = 4096
"""Parameters with fewer elements keep full-precision state under ``state_precision="8bit"``."""

CODES_SUFFIX, SCALE_SUFFIX = ".codes", ".block_scale"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
LEGACY_SCALE_SUFFIX = ".scale"
"""0.1.0's block absmax (see :func:`upgrade_legacy_scales`)."""


VARIANCE_OF = {"square_avg": "variance", "max_square_avg": "max_variance"}
"""Centered, lean state stores ``v - gbar**2`` (and ``vmax - gbar**2``) in place of v (vmax).

The centered update divides by the root of ``s = v - gbar**2``, which is small next to v when
the gradient changes little (a full batch, late in training): stored with a relative error of
a few per cent, v would make s mostly rounding noise, clamped to 0 half the time, and the step
``g / (sqrt(s) + eps)`` would explode. Storing s itself keeps its relative error at the
format's. Decoding gives ``v = variance + gbar**2`` (float32, with the decoded gbar), which is
what the step then uses; :func:`full_value` does the same for a float32 state dict."""


def check_state_precision(value: Any) -> str:
    """Validate ``state_precision``: one of :data:`PRECISIONS`."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(
            f"Invalid state_precision value: {value!r} "
            f"(state_precision must be one of {', '.join(map(repr, PRECISIONS))})"
        )
    return value


def check_min_8bit_size(value: Any) -> int:
    """Validate ``min_8bit_size``: an int >= 0 (parameters with fewer elements keep full state)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"min_8bit_size must be an int, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise ValueError(f"Invalid min_8bit_size value: {value} (min_8bit_size must be >= 0)")
    return int(value)


def blocks_of(numel: int) -> int:
    return math.ceil(numel / BLOCK)


@dataclass
class QuantizedTensor:
    """One 8-bit state tensor: ``codes`` (uint8, the parameter's real shape), ``scale``
    (float32, one per block) and the ``format`` they are read with."""

    codes: Tensor
    scale: Tensor
    format: CodeFormat

    def dequantize(self) -> Tensor:
        """The float32 values: ``codebook[codes] * scale[block]`` (rounded once)."""
        flat = self.codes.reshape(-1).long()
        book = self.format.codebook_tensor.to(self.codes.device)
        scale = self.scale.repeat_interleave(BLOCK)[: flat.numel()]
        return (book[flat] * scale).reshape(self.codes.shape)

    @staticmethod
    def quantize(
        values: Tensor, fmt: CodeFormat, seed: int = 0, stochastic: bool = True
    ) -> "QuantizedTensor":
        """Quantize ``values`` (any real dtype; read as float32) with the kernel's encoder."""
        from .kernel_cpu import quantize_into

        flat = values.detach().to(device="cpu", dtype=torch.float32).reshape(-1).contiguous()
        codes = torch.empty(flat.numel(), dtype=torch.uint8)
        scale = torch.empty(blocks_of(flat.numel()), dtype=torch.float32)
        quantize_into(flat.numpy(), codes.numpy(), scale.numpy(), fmt, seed, stochastic)
        return QuantizedTensor(
            codes.reshape(values.shape).to(values.device), scale.to(values.device), fmt
        )

    @staticmethod
    def filled(shape: torch.Size, value: float, fmt: CodeFormat, device: Any) -> "QuantizedTensor":
        """Every element equal to ``value`` (>= 0, or any sign for a signed format), exactly:
        the code of 1/2 (a power of two, in the top binade) with the scale ``2 * |value|``
        (above float32's max / 2, the top code: within an ulp, and 6.25 % low at most above
        ``top`` times float32's max, where the scale saturates)."""
        numel = math.prod(shape)
        magnitude = float(np.float32(abs(value)))
        code = (fmt.bias - 1) * 2**fmt.mantissa_bits  # exponent field of 2**-1, mantissa 0
        scale = 2.0 * magnitude
        if scale > _FLOAT32_MAX:  # over float32's max / 2: the nearest code of the top binade
            code, scale = fmt.max_magnitude_code, min(magnitude / fmt.top, _FLOAT32_MAX)
        if magnitude == 0:
            code = 0
        elif value < 0:
            code |= 128
        return QuantizedTensor(
            torch.full(shape, code, dtype=torch.uint8, device=device),
            torch.full((blocks_of(numel),), scale, dtype=torch.float32, device=device),
            fmt,
        )

    def nbytes(self) -> int:
        return self.codes.nbytes + self.scale.nbytes


def upgrade_legacy_scales(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """One parameter's state with 0.1.0's ``".scale"`` entries (the block absmax, read with a
    codebook divided by ``top``) replaced by this format's ``".block_scale"`` (``absmax / top``
    in float32; the codes are the same); ``state`` itself when it has none."""
    legacy = [name for name in state if name.endswith(LEGACY_SCALE_SUFFIX)
              and name[: -len(LEGACY_SCALE_SUFFIX)] in FORMAT_OF
              and name[: -len(LEGACY_SCALE_SUFFIX)] + CODES_SUFFIX in state]
    if not legacy:
        return state
    upgraded = {k: v for k, v in state.items() if k not in legacy}
    for name in legacy:
        base, absmax = name[: -len(LEGACY_SCALE_SUFFIX)], state[name]
        if isinstance(absmax, Tensor) and absmax.is_floating_point():
            top = torch.tensor(FORMAT_OF[base].top, dtype=torch.float32, device=absmax.device)
            # the largest absmaxes would overflow: saturated as the encoder does (NaN stays)
            scale = (absmax.to(torch.float32) / top).clamp(max=_FLOAT32_MAX)
            upgraded[base + SCALE_SUFFIX] = scale
        else:  # left for storage_problem to name
            upgraded[name] = absmax
    return upgraded


def is_quantized(state: Mapping[str, Any], key: str = "square_avg") -> bool:
    """Whether ``state`` (one parameter's) holds ``key`` as 8-bit codes."""
    return key + CODES_SUFFIX in state


def read(state: Mapping[str, Any], key: str) -> QuantizedTensor:
    """The quantized ``key`` of one parameter's ``state``."""
    return QuantizedTensor(state[key + CODES_SUFFIX], state[key + SCALE_SUFFIX], FORMAT_OF[key])


def write(state: dict[str, Any], key: str, q: QuantizedTensor) -> None:
    """Store ``q`` as ``key`` in ``state`` (and drop a full-precision ``key``, if any)."""
    state.pop(key, None)
    state[key + CODES_SUFFIX] = q.codes
    state[key + SCALE_SUFFIX] = q.scale


def lean_keys(keys: Iterable[str], centered: bool) -> list[str]:
    """The names under which lean storage keeps the state tensors ``keys`` (torch's names)."""
    return [VARIANCE_OF.get(key, key) if centered else key for key in keys]


def stored_keys(state: Mapping[str, Any]) -> list[str]:
    """The state tensor names held in ``state`` (quantized or not), ``"step"`` aside."""
    keys = []
    for name in state:
        base = name[: -len(CODES_SUFFIX)] if name.endswith(CODES_SUFFIX) else name
        if base in FORMAT_OF and base not in keys:
            keys.append(base)
    return keys


def state_nbytes(states: Iterable[Mapping[str, Any]]) -> int:
    """Bytes of every state tensor of ``states`` (codes, scales, full tensors and ``step``)."""
    return sum(v.nbytes for state in states for v in state.values() if isinstance(v, Tensor))


# -- a parameter's state in a given precision ---------------------------------------------------


def storage_problem(state: Mapping[str, Any], p: Tensor) -> str | None:
    """What is wrong with the storage of ``p``'s state tensors in ``state``, or None.

    8-bit codes must be uint8 in the parameter's real shape with one float32 scale per block;
    every other state tensor (bfloat16 or full precision) must have the parameter's shape or
    its real shape. The lean kernel addresses state by the parameter's size, so this is checked
    before state is loaded or stepped, never left to the kernel. (One pass over ``state``
    with no tensor made: it runs before every lean step.)
    """
    shape = p.shape
    real_shape = (*shape, 2) if p.is_complex() else shape
    for name, value in state.items():
        if name.endswith(CODES_SUFFIX) and name[: -len(CODES_SUFFIX)] in FORMAT_OF:
            base = name[: -len(CODES_SUFFIX)]
            scale = state.get(base + SCALE_SUFFIX)
            if not isinstance(value, Tensor) or not isinstance(scale, Tensor):
                return f"state {base!r} needs both {name!r} and {base + SCALE_SUFFIX!r} tensors"
            if value.dtype != torch.uint8 or value.shape != real_shape:
                return (f"state {name!r} is {value.dtype} of shape {tuple(value.shape)}, the "
                        f"parameter needs uint8 of shape {tuple(real_shape)}")
            blocks = blocks_of(math.prod(real_shape))
            if scale.dtype != torch.float32 or scale.numel() != blocks:
                return (f"state {base + SCALE_SUFFIX!r} is {scale.dtype} with {scale.numel()} "
                        f"elements, the parameter needs float32 with {blocks}")
        elif name in FORMAT_OF and isinstance(value, Tensor) \
                and value.shape not in (shape, real_shape):
            return f"state {name!r} has shape {tuple(value.shape)}, the parameter {tuple(shape)}"
    return None


def storage_of(p: Tensor, precision: str, min_8bit_size: int) -> str:
    """How ``p``'s state is stored: ``"8bit"``, ``"bf16"`` or ``"full"`` (the param's dtype)."""
    if precision == "8bit" and real_view(p).numel() >= min_8bit_size:
        return "8bit"
    if precision == "bf16":
        return "bf16"
    return "full"


def _has(state: Mapping[str, Any], name: str) -> bool:
    return name in state or is_quantized(state, name)


def _stored_as(state: Mapping[str, Any], p: Tensor, storage: str, names: list[str],
               full_dtype: torch.dtype) -> bool:
    """Whether ``state`` holds exactly ``names``, each stored as ``storage``."""
    if set(stored_keys(state)) != set(names):
        return False
    for name in names:
        if storage == "8bit":
            if not is_quantized(state, name) or name in state:
                return False
        elif is_quantized(state, name):
            return False
        elif storage == "bf16" and state[name].dtype != torch.bfloat16:
            return False
        elif storage == "full" and state[name].dtype != full_dtype:
            return False
    return True


def create(state: dict[str, Any], p: Tensor, keys: Iterable[str], v0: float, storage: str,
           centered: bool) -> None:
    """Add the missing state tensors ``keys`` (torch's names) for ``p`` in ``storage``:
    v = ``v0``, gbar = b = 0 (so the centered variance is ``v0`` too), and vmax a copy of the
    current v (the running max of v so far)."""
    real = real_view(p)
    lean = storage != "full"
    for key in keys:
        name = VARIANCE_OF.get(key, key) if lean and centered else key
        if name in state or name + CODES_SUFFIX in state:
            continue
        if key == "max_square_avg":
            source = "variance" if lean and centered else "square_avg"
            if is_quantized(state, source):
                v = read(state, source)
                write(state, name, QuantizedTensor(v.codes.clone(), v.scale.clone(), v.format))
                continue
            if source in state:
                state[name] = state[source].clone(memory_format=torch.preserve_format)
                continue
        fill = v0 if key in ("square_avg", "max_square_avg") else 0.0
        if storage == "8bit":
            write(state, name, QuantizedTensor.filled(real.shape, fill, FORMAT_OF[name], p.device))
        elif storage == "bf16":
            state[name] = torch.full(real.shape, fill, dtype=torch.bfloat16, device=p.device)
        else:
            value = complex(fill, fill) if p.is_complex() else fill  # as view_as_real
            state[name] = torch.full_like(p, value, memory_format=torch.preserve_format)


def _stored_float32(state: Mapping[str, Any], name: str) -> Tensor:
    """Stored tensor ``name`` decoded to float32 (real view for complex state)."""
    if is_quantized(state, name):
        return read(state, name).dequantize()
    return real_view(state[name]).to(torch.float32)


def full_value(state: Mapping[str, Any], key: str, p: Tensor,
               dtype: torch.dtype | None = None) -> Tensor:
    """State tensor ``key`` (torch's name) at full precision, in ``dtype`` (default: ``p``'s)
    and ``p``'s shape (complex if ``p`` is); a centered variance is turned back into v."""
    dtype = dtype or p.dtype
    variance = VARIANCE_OF.get(key)
    if key in state:  # torch's tensor (also when written over lean state, as warm_start does)
        value = state[key]
    elif variance is not None and _has(state, variance):
        gbar = _stored_float32(state, "grad_avg")
        value = _stored_float32(state, variance) + gbar * gbar  # as the kernel decodes it
    else:
        value = read(state, key).dequantize()
    if p.is_complex():
        if not value.is_complex():
            value = torch.view_as_complex(value.to(real_view(p).dtype).contiguous())
        return value.to(dtype)
    return value.to(dtype).reshape(p.shape)


def logical_keys(state: Mapping[str, Any]) -> list[str]:
    """torch's names of the state tensors held in ``state``, whatever their storage."""
    inverse = {v: k for k, v in VARIANCE_OF.items()}
    return [inverse.get(name, name) for name in stored_keys(state)]


def convert(state: dict[str, Any], p: Tensor, storage: str, centered: bool,
            seed: int = 0, full_dtype: torch.dtype | None = None) -> None:
    """Store every state tensor of ``p`` as ``storage`` (``"8bit"``, ``"bf16"`` or ``"full"``:
    ``full_dtype``, default ``p``'s dtype), centered lean state as its variance (see
    :data:`VARIANCE_OF`).

    State already stored that way is left as it is (bit for bit); otherwise every tensor is
    decoded to full precision and stored again, to 8 bits by rounding to nearest (a single
    rounding: there is nothing to freeze).
    """
    keys = logical_keys(state)
    lean = storage != "full"
    if centered and lean and "square_avg" in keys and "grad_avg" not in keys:
        # centered switched on: gbar starts at 0 (as torch's), so the variance is v itself
        state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        keys = logical_keys(state)
    centered = centered and lean and "grad_avg" in keys
    full_dtype = full_dtype or p.dtype
    if not keys or _stored_as(state, p, storage, lean_keys(keys, centered), full_dtype):
        return
    values = {key: full_value(state, key, p, full_dtype) for key in keys}
    if centered:
        gbar = real_view(values["grad_avg"]).to(torch.float32)
        for key, name in VARIANCE_OF.items():
            if key in values:
                v = real_view(values.pop(key)).to(torch.float32)
                values[name] = (v - gbar * gbar).clamp_min(0)
    for name in list(state):
        if name.endswith((CODES_SUFFIX, SCALE_SUFFIX)) or name in FORMAT_OF:
            del state[name]
    for name, value in values.items():
        if storage == "8bit":
            write(state, name,
                  QuantizedTensor.quantize(real_view(value), FORMAT_OF[name], seed, False))
        elif storage == "bf16":
            state[name] = real_view(value).to(torch.bfloat16)
        else:
            state[name] = value
