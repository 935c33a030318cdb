"""DTensor arguments (FSDP2, tensor parallelism) as the local shards a raw-memory kernel reads.

The fused and Triton kernels read and write memory by address, and a DTensor is a wrapper
whose own storage is empty: they must be handed its local tensor. The update is elementwise,
so updating the local shards of a parameter, its gradient and its state is updating the
DTensors, exactly, when all of them are laid out alike (same mesh, same placements). FSDP2
guarantees that: the gradient is reduce-scattered to the parameter's sharding, and the state
is created with ``full_like`` from the parameter. A layout that differs (a ``Partial``
gradient, say) is refused with a ``ValueError`` rather than updated wrongly. ``loop`` and
``foreach`` need none of this: torch's DTensor dispatch runs their operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from torch import Tensor

from .tensors import TensorLists, dtensor_type

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = ["local_shards"]


def local_shards(t: TensorLists) -> TensorLists:
    """``t`` with every DTensor replaced by its local tensor (the same memory, not a copy)."""
    dtensor = dtensor_type()
    if dtensor is None or not any(isinstance(p, dtensor) for p in t.params):
        return t
    for i, p in enumerate(t.params):
        one = t.item(i)
        # Everything but the step count, a plain scalar tensor.
        row = [x for lst in one.fields() if lst is not one.steps for x in lst]
        _check_alike(p, row, dtensor, i)
    return TensorLists(
        *[[cast("DTensor", x).to_local() if isinstance(x, dtensor) else x for x in lst]
          for lst in t.fields()]
    )


def _layout(x: Tensor, dtensor: type) -> Any:
    """A DTensor's (mesh, placements); None for a plain tensor."""
    if not isinstance(x, dtensor):
        return None
    shard = cast("DTensor", x)
    return shard.device_mesh, shard.placements


def _check_alike(p: Tensor, row: list[Tensor], dtensor: type, index: int) -> None:
    expected = _layout(p, dtensor)
    if expected is None:
        if any(isinstance(x, dtensor) for x in row):
            raise ValueError(
                f"parameter {index} is a plain tensor but its gradient or state is a DTensor"
            )
        return
    for x in row:
        layout = _layout(x, dtensor)
        if layout != expected:
            raise ValueError(
                f"parameter {index} is a DTensor with placements {expected[1]}, but its "
                f"gradient or state is laid out as {layout or 'a plain tensor'}: the fused "
                f"kernels need them alike"
            )
