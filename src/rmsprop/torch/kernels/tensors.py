"""Tensor helpers every kernel shares: the parallel lists of one step, complex tensors as
real pairs, DTensor detection, the step counter's dtype, the finiteness check. A leaf: it
imports nothing of rmsprop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = ["TensorLists", "all_finite", "as_real", "dtensor_type", "real_view", "step_dtype"]


@dataclass
class TensorLists:
    """Parallel lists: one entry per parameter. Absent state lists stay empty."""

    params: list[Tensor]
    grads: list[Tensor]
    square_avgs: list[Tensor]
    steps: list[Tensor]
    max_square_avgs: list[Tensor] = field(default_factory=list)
    grad_avgs: list[Tensor] = field(default_factory=list)
    momentum_buffers: list[Tensor] = field(default_factory=list)

    def fields(self) -> list[list[Tensor]]:
        return [
            self.params, self.grads, self.square_avgs, self.steps,
            self.max_square_avgs, self.grad_avgs, self.momentum_buffers,
        ]

    def item(self, i: int) -> "TensorLists":
        """The lists of parameter ``i`` alone."""
        return TensorLists(*[[lst[i]] if lst else [] for lst in self.fields()])


def real_view(t: Tensor) -> Tensor:
    """``t`` as real numbers: complex tensors are updated as (..., 2) real pairs, as torch does."""
    return torch.view_as_real(t) if t.is_complex() else t


def as_real(t: TensorLists) -> TensorLists:
    """Complex tensors as real views (..., 2), as torch does: real and imaginary parts are
    updated as two independent real parameters."""
    if not any(p.is_complex() for p in t.params):
        return t
    return TensorLists(*[[real_view(x) for x in lst] for lst in t.fields()])


def dtensor_type() -> type | None:
    """torch.distributed.tensor.DTensor, or None where torch.distributed is not built in."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def step_dtype() -> torch.dtype:
    """The dtype of ``state["step"]`` by torch's rule (``optimizer._get_scalar_dtype``):
    float64 when that is the default dtype, float32 otherwise."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def all_finite(tensors: list[Tensor]) -> bool:
    """Whether every element of every tensor is finite (one max-abs pass per tensor).

    DTensors (FSDP2) are checked shard by shard and the verdict summed over their meshes:
    their own norm combines the ranks' norms with a MAX all-reduce, which drops a NaN (gloo
    returns the other rank's value), so a NaN on one rank would go unseen.
    """
    dtensor = dtensor_type()
    meshes = {}
    local = []
    for t in tensors:
        if dtensor is not None and isinstance(t, dtensor):
            shard = cast("DTensor", t)
            meshes[id(shard.device_mesh)] = shard.device_mesh
            t = shard.to_local()
        if t.numel() > 0:
            local.append(t)
    finite = True
    if local:
        norms = torch._foreach_norm(local, float("inf"))
        finite = bool(torch.stack([n.float().cpu() for n in norms]).isfinite().all())
    if not meshes:
        return finite
    bad = torch.tensor([0.0 if finite else 1.0])
    for mesh in meshes.values():
        bad = bad.to(mesh.device_type)
        for dim in range(mesh.ndim):
            torch.distributed.all_reduce(bad, group=mesh.get_group(dim))
    return bool(bad.item() == 0)
