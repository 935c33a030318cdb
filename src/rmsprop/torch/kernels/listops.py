"""Elementwise operations over lists of tensors, in two ways of moving memory.

:class:`ForeachOps` runs each operation over the whole list at once with ``torch._foreach_*``
(few kernel launches, one pass over memory per operation); :class:`LoopOps` runs it tensor by
tensor. :mod:`rmsprop.torch.kernels.inplace` writes the update once against this interface, so
the two implementations compute the same thing, operation for operation.

``sqrt_``, ``add_scalar_`` and ``clamp_min_`` are only applied to temporaries and return the
list to go on with. Under autograd (``differentiable=True``) :class:`DifferentiableLoopOps`
computes those out of place, as torch's differentiable path does: an in-place change of a
tensor that a backward formula saved (the root) would make the step's graph unusable. The
values are the same, bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["ForeachOps", "LoopOps", "DifferentiableLoopOps", "ops_for"]

Tensors = list[Tensor] | tuple[Tensor, ...]  # torch._foreach_* return tuples


class LoopOps:
    """One tensor at a time (torch's for-loop implementation)."""

    @staticmethod
    def neg(xs: Tensors) -> Tensors:
        return [torch.neg(x) for x in xs]

    @staticmethod
    def add(xs: Tensors, ys: Tensors, alpha: float) -> Tensors:
        return [x.add(y, alpha=alpha) for x, y in zip(xs, ys)]

    @staticmethod
    def add_(xs: Tensors, ys: Tensors, alpha: float) -> None:
        for x, y in zip(xs, ys):
            x.add_(y, alpha=alpha)

    @staticmethod
    def add_scalar(xs: Tensors, value: float) -> Tensors:
        return [x.add(value) for x in xs]

    @staticmethod
    def add_scalar_(xs: Tensors, value: float) -> Tensors:
        for x in xs:
            x.add_(value)
        return xs

    @staticmethod
    def mul_(xs: Tensors, value: float) -> None:
        for x in xs:
            x.mul_(value)

    @staticmethod
    def div(xs: Tensors, values: Sequence[float]) -> Tensors:
        return [x.div(v) for x, v in zip(xs, values)]

    @staticmethod
    def addcmul(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> Tensors:
        return [x.addcmul(y, z, value=value) for x, y, z in zip(xs, ys, zs)]

    @staticmethod
    def addcmul_(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> None:
        for x, y, z in zip(xs, ys, zs):
            x.addcmul_(y, z, value=value)

    @staticmethod
    def addcdiv_(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> None:
        for x, y, z in zip(xs, ys, zs):
            x.addcdiv_(y, z, value=value)

    @staticmethod
    def lerp_(xs: Tensors, ys: Tensors, weight: float) -> None:
        for x, y in zip(xs, ys):
            x.lerp_(y, weight)

    @staticmethod
    def maximum_(xs: Tensors, ys: Tensors) -> None:
        for x, y in zip(xs, ys):
            torch.maximum(x, y, out=x)

    @staticmethod
    def clamp_min_(xs: Tensors, value: float) -> Tensors:
        for x in xs:
            x.clamp_min_(value)
        return xs

    @staticmethod
    def sqrt(xs: Tensors) -> Tensors:
        return [x.sqrt() for x in xs]

    @staticmethod
    def sqrt_(xs: Tensors) -> Tensors:
        for x in xs:
            x.sqrt_()
        return xs


class ForeachOps:
    """The whole list at once (torch's multi-tensor ``_foreach`` implementation)."""

    neg = staticmethod(torch._foreach_neg)

    @staticmethod
    def add(xs: Tensors, ys: Tensors, alpha: float) -> Tensors:
        return torch._foreach_add(xs, ys, alpha=alpha)

    @staticmethod
    def add_(xs: Tensors, ys: Tensors, alpha: float) -> None:
        torch._foreach_add_(xs, ys, alpha=alpha)

    @staticmethod
    def add_scalar(xs: Tensors, value: float) -> Tensors:
        return torch._foreach_add(xs, value)

    @staticmethod
    def add_scalar_(xs: Tensors, value: float) -> Tensors:
        torch._foreach_add_(xs, value)
        return xs

    @staticmethod
    def mul_(xs: Tensors, value: float) -> None:
        torch._foreach_mul_(xs, value)

    @staticmethod
    def div(xs: Tensors, values: Sequence[float]) -> Tensors:
        return torch._foreach_div(xs, list(values))

    @staticmethod
    def addcmul(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> Tensors:
        return torch._foreach_addcmul(xs, ys, zs, value=value)

    @staticmethod
    def addcmul_(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> None:
        torch._foreach_addcmul_(xs, ys, zs, value=value)

    @staticmethod
    def addcdiv_(xs: Tensors, ys: Tensors, zs: Tensors, value: float) -> None:
        torch._foreach_addcdiv_(xs, ys, zs, value=value)

    @staticmethod
    def lerp_(xs: Tensors, ys: Tensors, weight: float) -> None:
        torch._foreach_lerp_(xs, ys, weight)

    @staticmethod
    def maximum_(xs: Tensors, ys: Tensors) -> None:
        torch._foreach_maximum_(xs, ys)

    @staticmethod
    def clamp_min_(xs: Tensors, value: float) -> Tensors:
        torch._foreach_clamp_min_(xs, value)
        return xs

    sqrt = staticmethod(torch._foreach_sqrt)

    @staticmethod
    def sqrt_(xs: Tensors) -> Tensors:
        torch._foreach_sqrt_(xs)
        return xs


class DifferentiableLoopOps(LoopOps):
    """:class:`LoopOps` with every temporary computed out of place (autograd-safe)."""

    @staticmethod
    def add_scalar_(xs: Tensors, value: float) -> Tensors:
        return [x.add(value) for x in xs]

    @staticmethod
    def clamp_min_(xs: Tensors, value: float) -> Tensors:
        return [x.clamp_min(value) for x in xs]

    @staticmethod
    def sqrt_(xs: Tensors) -> Tensors:
        return [x.sqrt() for x in xs]

    @staticmethod
    def maximum_(xs: Tensors, ys: Tensors) -> None:
        for x, y in zip(xs, ys):  # out= does not support autograd; maximum saves its inputs
            x.copy_(torch.maximum(x.clone(), y))


def ops_for(foreach: bool) -> type:
    """The operations to run a step with: the leaner in-place ones, or when grad mode is on
    (the step of a ``differentiable=True`` optimizer) autograd-safe ones, tensor by tensor
    even for ``foreach``: the backward of some ``_foreach`` operations keeps a tensor that the
    step goes on to update in place (torch refuses ``foreach`` with ``differentiable``)."""
    if torch.is_grad_enabled():
        return DifferentiableLoopOps
    return ForeachOps if foreach else LoopOps
