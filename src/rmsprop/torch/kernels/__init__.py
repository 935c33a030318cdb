"""The implementations of one RMSProp step over lists of tensors, by name.

Every implementation has the signature ``(tensors, spec, lr, steps) -> None`` and updates
``tensors.params`` and the state lists in place; they differ in how they move memory, never in
what they compute.
"""

from __future__ import annotations

from typing import Callable, Sequence, cast

import torch
from torch import Tensor
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from ...spec import RMSpropSpec
from .inplace import apply_update
from .listops import ops_for
from .local import local_shards
from .plan import KernelPlan, plannable
from .tensors import TensorLists, as_real

__all__ = ["KERNELS", "PLANNED", "PLANNED_FINITE", "KernelPlan", "TensorLists", "plannable", "loop", "foreach", "fused", "triton", "as_real"]

Kernel = Callable[[TensorLists, RMSpropSpec, float, Sequence[float] | None], None]


def loop(t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None) -> None:
    """Tensor by tensor."""
    t = as_real(t)
    ops = ops_for(foreach=False)
    for i in range(len(t.params)):
        apply_update(ops, t.item(i), spec, lr, steps and steps[i : i + 1])


def foreach(
    t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None
) -> None:
    """All tensors of one (device, dtype) at once, with ``torch._foreach_*``."""
    t = as_real(t)
    ops = ops_for(foreach=True)
    groups = _group_tensors_by_device_and_dtype(
        cast("list[list[Tensor | None]]", t.fields()), with_indices=True)
    for lists, indices in groups.values():
        group_steps = [steps[i] for i in indices] if steps else None
        apply_update(ops, TensorLists(*cast("list[list[Tensor]]", lists)), spec, lr, group_steps)


# torch.compile cannot trace into numba's dispatcher or Triton's launcher: the raw-memory
# kernels run eagerly inside a compiled step (a graph break), as torch's own fused kernels do.
@torch._disable_dynamo
def fused(t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None) -> None:
    """One pass over memory per step on CPU (numba, imported on first use): :mod:`.fused_cpu`."""
    from .fused_cpu import fused as fused_cpu

    fused_cpu(local_shards(t), spec, lr, steps)


@torch._disable_dynamo
def triton(t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None) -> None:
    """One pass over memory per step on GPU (Triton, imported on first use):
    :mod:`.triton_kernel`."""
    from .triton_kernel import triton_step

    triton_step(local_shards(t), spec, lr, steps)


KERNELS: dict[str, Kernel] = {"loop": loop, "foreach": foreach, "fused": fused, "triton": triton}


@torch._disable_dynamo
def fused_planned(plan: KernelPlan, spec: RMSpropSpec, lr: float,
                  steps: Sequence[float] | None) -> None:
    """``fused`` on the tables of a :class:`.plan.KernelPlan` built once (numba)."""
    from .fused_cpu import run_plan

    run_plan(plan, spec, lr, steps)


@torch._disable_dynamo
def triton_planned(plan: KernelPlan, spec: RMSpropSpec, lr: float,
                   steps: Sequence[float] | None) -> None:
    """``triton`` on the tables of a :class:`.plan.KernelPlan` built once and kept on the
    device."""
    from .triton_kernel import run_plan

    run_plan(plan, spec, lr, steps)


@torch._disable_dynamo
def fused_grads_finite(plan: KernelPlan) -> bool:
    """Whether this step's gradients in a :class:`.plan.KernelPlan` are all finite (numba)."""
    from .fused_cpu import grads_finite

    return grads_finite(plan)


PLANNED_FINITE: dict[str, Callable[[KernelPlan], bool]] = {"fused": fused_grads_finite}
"""The finiteness checks that read a :class:`.plan.KernelPlan`'s gradient row."""

PLANNED: dict[str, Callable[[KernelPlan, RMSpropSpec, float, Sequence[float] | None], None]] = {
    "fused": fused_planned, "triton": triton_planned}
"""The implementations that run on a :class:`.plan.KernelPlan` (the others run per call)."""
