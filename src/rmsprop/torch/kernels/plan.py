"""A step's flat-memory tables built once and reused: the kernels' side of a param group's plan.

:class:`FlatTable` is rebuilt at every call of a fused kernel (the addresses of every tensor,
the chunk table, the grouping by storage formats): Python work per tensor, which on a model of
many small tensors costs more than the kernel. A :class:`KernelPlan` holds the same tables for
tensors that do not move between steps (a group's parameters and state); only the gradients'
addresses change from step to step (``zero_grad(set_to_none=True)`` gives new gradients), and
they are written into the table's gradient row by :meth:`KernelPlan.set_grads`, one NumPy
assignment. No numba or Triton here: the kernels read the tables (:func:`.fused_cpu.run_plan`,
:func:`.triton_kernel.run_plan`).

A plan is built only for tensors a flat walk follows as they are (contiguous, real, plain
tensors: no complex views, no DTensors, no copies to write back); the caller keeps the
per-call path for the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ...element import Flags, flags_of
from ...spec import RMSpropSpec
from .capabilities import STATE_DTYPES
from .flat import FORMAT, GRAD, check_lists, chunk_table, compute_dtype, scalars_of
from .tensors import TensorLists, dtensor_type
from ..native import bump_versions

__all__ = ["CHUNK", "SERIAL_BELOW", "KernelPlan", "StorageGroup", "plannable"]

CHUNK = 1 << 16
"""Elements per unit of parallel work of the CPU kernel (256 KiB of float32 per array)."""

SERIAL_BELOW = 1 << 22
"""A plan of fewer elements runs on the calling thread: below this, handing half the work to
a second thread cost more than it saved where it was measured (benchmarks/NOTES.md, issue
19), most of all on a busy machine, where the second thread waits for a time slice."""


@dataclass
class StorageGroup:
    """The tensors of one (param dtype, state dtype) pair: ``index`` are their positions in
    the plan's order; ``addresses`` the kernel's table (its gradient row set each step)."""

    index: np.ndarray
    param_format: str
    state_format: str
    compute: type
    addresses: np.ndarray
    sizes: np.ndarray
    chunk_tensor: np.ndarray
    chunk_start: np.ndarray
    chunk_length: np.ndarray
    device_tables: dict[str, Any] = field(default_factory=dict)
    """A kernel's own copies of these tables, kept between steps (the Triton kernel's, on
    the device: see :func:`.triton_kernel.run_plan`)."""

    def scalars(self, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None
                ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`.flat.scalars_of` for this group's tensors, in its compute dtype; ``steps``
        holds the new t of every tensor of the plan, in the plan's order (None without bias
        correction)."""
        if steps is not None and self.index.size != len(steps):
            steps = [steps[i] for i in self.index.tolist()]
        return scalars_of(spec, lr, steps, self.index.size, self.compute)


@dataclass
class KernelPlan:
    """The tables of one group's tensors for a fused kernel (see the module docstring)."""

    params: list[Tensor]
    flags: Flags
    groups: list[StorageGroup]
    numel: int

    @classmethod
    def build(cls, t: TensorLists, spec: RMSpropSpec, chunk: int = CHUNK,
              updated: list[Tensor] | None = None) -> "KernelPlan":
        """The plan of ``t`` (the addresses of its ``grads`` are this step's: see
        :meth:`set_grads`); the caller has checked :func:`plannable`. ``updated``: the
        tensors whose version counters a step bumps (default ``t.params``; the parameters
        themselves where ``t.params`` is one buffer they are views of)."""
        check_lists(t, spec, "fused")
        rows = [t.params, t.grads, t.square_avgs, t.max_square_avgs, t.grad_avgs,
                t.momentum_buffers]
        keys: dict[tuple[torch.dtype, torch.dtype], list[int]] = {}
        for i, (p, v) in enumerate(zip(t.params, t.square_avgs)):
            keys.setdefault((p.dtype, v.dtype), []).append(i)
        groups = []
        for (param_dtype, state_dtype), indices in keys.items():
            index = np.array(indices, dtype=np.int64)
            addresses = np.zeros((len(rows), index.size), dtype=np.int64)
            for r, row in enumerate(rows):
                if row:
                    addresses[r] = [row[i].data_ptr() for i in indices]
            sizes = np.array([t.params[i].numel() for i in indices], dtype=np.int64)
            chunk_tensor, chunk_start, chunk_length = chunk_table(sizes, chunk)
            groups.append(StorageGroup(
                index, FORMAT[param_dtype], FORMAT[state_dtype],
                compute_dtype(state_dtype),
                addresses, sizes, chunk_tensor, chunk_start, chunk_length))
        return cls(list(t.params if updated is None else updated), flags_of(spec), groups,
                   int(sum(p.numel() for p in t.params)))

    @property
    def serial(self) -> bool:
        """Whether the kernel runs this plan on the calling thread (see :data:`SERIAL_BELOW`)."""
        return self.numel < SERIAL_BELOW

    def set_grads(self, grad_addresses: np.ndarray | Sequence[int]) -> None:
        """This step's gradient addresses, one per parameter in the plan's order."""
        if len(self.groups) == 1 and self.groups[0].index.size == len(grad_addresses):
            self.groups[0].addresses[GRAD] = grad_addresses
            return
        everything = np.asarray(grad_addresses, dtype=np.int64)
        for group in self.groups:
            group.addresses[GRAD] = everything[group.index]

    def finish(self) -> None:
        """After the kernel: bump the parameters' version counters, as torch's in-place ops
        do (one call for all of them)."""
        bump_versions(self.params)


def plannable(t: TensorLists) -> bool:
    """Whether :class:`KernelPlan` can hold ``t``: every tensor contiguous, real, a plain
    tensor, all on one device, and each (param dtype, state dtype) pair one the kernels
    store."""
    dtensor = dtensor_type()
    tensors = [x for row in (t.params, t.grads, t.square_avgs, t.max_square_avgs, t.grad_avgs,
                             t.momentum_buffers) for x in row]
    if any(x.is_complex() or not x.is_contiguous() or x.is_sparse
           or (dtensor is not None and isinstance(x, dtensor)) for x in tensors):
        return False
    if len({(x.is_cpu, x.get_device()) for x in tensors}) > 1:
        return False
    return all(v.dtype in STATE_DTYPES.get(p.dtype, ())
               for p, v in zip(t.params, t.square_avgs))
