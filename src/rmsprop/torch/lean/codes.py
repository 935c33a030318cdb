"""The 8-bit code formats of the lean state: block-scaled minifloats
(docs/design.md, "The state formats").

A leaf: the kernel (:mod:`rmsprop.torch.lean.kernel_cpu`) encodes and decodes these, the
storage (:mod:`rmsprop.torch.lean.storage`) keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

__all__ = ["BLOCK", "CodeFormat", "UNSIGNED", "SIGNED", "FORMAT_OF", "STATE_KEYS", "seed_of"]

BLOCK = 256
"""Elements per quantization block (one float32 scale each)."""


@dataclass(frozen=True)
class CodeFormat:
    """An 8-bit minifloat, scaled per block so that its largest magnitude ``top`` stands for
    the block's absmax.

    Magnitude fields: ``e`` exponent bits, ``m`` mantissa bits (``e + m = 8`` unsigned, 7 plus
    a sign bit signed), bias ``2**e``: the top binade is [1/2, 1), the largest raw magnitude is
    ``top = 1 - 2**-(m+1)``. Field ``e = 0`` is subnormal (linear). Magnitude code
    ``c = e_field * 2**m + m_field``, monotone in the value; signed codes put the sign in bit 7.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    signed: bool

    @property
    def bias(self) -> int:
        return 2**self.exponent_bits

    @property
    def top(self) -> float:
        """The largest raw magnitude: a block's absmax is scaled onto it."""
        return 1.0 - 2.0 ** -(self.mantissa_bits + 1)

    @property
    def offset(self) -> int:
        """``code = (float32 bits >> (23 - m)) - offset`` in the normal range (and
        ``bits = (code + offset) << (23 - m)``)."""
        return (127 - self.bias) << self.mantissa_bits

    @property
    def max_magnitude_code(self) -> int:
        return 2 ** (self.exponent_bits + self.mantissa_bits) - 1

    def raw_magnitudes(self) -> np.ndarray:
        """The raw value of every magnitude code (float64, ascending)."""
        m = self.mantissa_bits
        values = []
        for code in range(self.max_magnitude_code + 1):
            e_field, m_field = divmod(code, 2**m)
            if e_field == 0:
                values.append(m_field * 2.0 ** (1 - self.bias - m))
            else:
                values.append((1 + m_field / 2**m) * 2.0 ** (e_field - self.bias))
        return np.array(values)

    @cached_property
    def codebook(self) -> np.ndarray:
        """The value of each of the 256 codes, for a block whose scale is 1 (float32, exact:
        at most ``m + 1`` significant bits)."""
        magnitudes = self.raw_magnitudes().astype(np.float32)
        if not self.signed:
            return magnitudes
        return np.concatenate([magnitudes, -magnitudes]).astype(np.float32)

    @cached_property
    def codebook_tensor(self) -> Tensor:
        return torch.from_numpy(self.codebook)


UNSIGNED = CodeFormat("ufp8_e5m3", exponent_bits=5, mantissa_bits=3, signed=False)
SIGNED = CodeFormat("fp8_e4m3", exponent_bits=4, mantissa_bits=3, signed=True)

FORMAT_OF: dict[str, CodeFormat] = {
    "square_avg": UNSIGNED,
    "max_square_avg": UNSIGNED,
    "variance": UNSIGNED,
    "max_variance": UNSIGNED,
    "grad_avg": SIGNED,
    "momentum_buffer": SIGNED,
}
"""The code format of each stored state tensor."""

STATE_KEYS = ("square_avg", "max_square_avg", "grad_avg", "momentum_buffer")
"""The state tensors in the order of their random streams (``stream`` of :func:`seed_of`) and
of the rows of the lean kernels' address tables."""


def seed_of(salt: int, step: int, stream: int) -> int:
    """The 32-bit seed of one state tensor (``stream``) of one parameter at one step
    (splitmix64 of the three numbers): the stochastic rounding of a lean state tensor draws
    from it (:mod:`rmsprop.torch.lean.kernel_cpu`, :mod:`rmsprop.torch.lean.kernel_triton`), so that both
    kernels round alike."""
    mask = (1 << 64) - 1
    z = (salt * 0x9E3779B97F4A7C15 + step * 0xD1B54A32D192ED03 + stream * 0x8CB92BA72F3D8DD7)
    z &= mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) & 0xFFFFFFFF
