"""The tensors of one step as flat memory, for the fused kernels (numba and Triton).

A fused kernel walks each parameter and its state as flat arrays of one element order and
reads them through a table of addresses, so one call covers many tensors. This module builds
that table (with contiguous copies for layouts a flat walk cannot follow, copied back after),
groups the tensors by storage formats, and turns a spec into the kernel's compile-time flags
and runtime scalars. No numba or Triton here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from numpy.typing import DTypeLike
import torch
from torch import Tensor

from ...element import Flags, flags_of, momentum_on
from ...spec import RMSpropSpec
from .capabilities import STATE_DTYPES
from .tensors import TensorLists
from ..native import bump_versions

__all__ = ["FORMAT", "Flags", "FlatTable", "check_lists", "chunk_table", "compute_dtype",
           "flags_of", "group_by_storage", "scalars_of"]

FORMAT = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16",
          torch.float16: "f16"}

# Rows of the address table, in this order.
PARAM, GRAD, SQUARE_AVG, MAX_SQUARE_AVG, GRAD_AVG, MOMENTUM_BUFFER = range(6)


def compute_dtype(state_dtype: torch.dtype) -> type:
    """The dtype a kernel computes in: float64 for float64 state, float32 for every other
    (bfloat16 and float16 state are widened to float32)."""
    return np.float64 if state_dtype == torch.float64 else np.float32


def scalars_of(
    spec: RMSpropSpec, lr: float, steps: Sequence[float] | None, n: int, dtype: DTypeLike
) -> tuple[np.ndarray, np.ndarray]:
    """``hyper = [lr, rho, 1 - rho, eps, wd, mu, lr*wd, 0]`` and the per-tensor bias corrections
    ``1 - rho**t`` (ones without bias correction), in the kernel's compute dtype.

    ``1 - rho``, ``lr*wd`` and ``1 - rho**t`` are computed here in float64 and rounded once,
    as :func:`rmsprop.update.rmsprop_update` evaluates them (Python floats), so a kernel
    rounds exactly as that function does when NumPy runs it in the compute dtype."""
    rho = spec.alpha
    wd = spec.weight_decay
    hyper = np.array([lr, rho, 1 - rho, spec.eps, wd, spec.momentum, lr * wd, 0.0], dtype=dtype)
    if spec.bias_correction:
        # one Python power per distinct t (the tensors of a group usually share theirs)
        distinct, which = np.unique(np.asarray(steps, dtype=np.float64), return_inverse=True)
        values = np.array([1 - rho**step for step in distinct.tolist()], dtype=np.float64)
        corrections = values[which.reshape(-1)].astype(dtype)
    else:
        corrections = np.ones(n, dtype=dtype)
    return hyper, corrections


def _where(x: Tensor) -> tuple[bool, int]:
    """A cheap stand-in for ``x.device`` (the meta device, like the CPU, has index -1)."""
    return x.is_cpu, x.get_device()


def group_by_storage(
    t: TensorLists, steps: Sequence[float] | None, impl: str
) -> list[tuple[tuple[torch.device, torch.dtype, torch.dtype], TensorLists, list[float] | None]]:
    """The tensors of ``t`` (and their ``steps``) by (device, param dtype, state dtype).

    Every combination is checked before anything is changed: a parameter dtype the kernels do
    not store, or a state dtype they do not read for it, raises a ``ValueError``.
    """
    keys: dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]] = {}
    first = (t.params[0].dtype, t.square_avgs[0].dtype) if t.params else None
    if first is not None and all(p.dtype == first[0] for p in t.params) and all(
            v.dtype == first[1] for v in t.square_avgs) and len(
            {_where(p) for p in t.params}) == 1:  # the usual case, at a glance
        keys[(t.params[0].device, *first)] = list(range(len(t.params)))
    else:
        for i, (p, v) in enumerate(zip(t.params, t.square_avgs)):
            keys.setdefault((p.device, p.dtype, v.dtype), []).append(i)
    for _, param_dtype, state_dtype in keys:
        if state_dtype not in STATE_DTYPES.get(param_dtype, ()):
            allowed = ", ".join(map(str, STATE_DTYPES.get(param_dtype, ()))) or "none"
            raise ValueError(
                f"impl={impl!r} cannot update a {param_dtype} parameter with {state_dtype} "
                f"state (supported state dtypes: {allowed})"
            )
    if len(keys) == 1:
        return [(next(iter(keys)), t, list(steps) if steps else None)]
    return [
        (
            key,
            TensorLists(*[[lst[i] for i in indices] if lst else [] for lst in t.fields()]),
            [steps[i] for i in indices] if steps else None,
        )
        for key, indices in keys.items()
    ]


def check_lists(t: TensorLists, spec: RMSpropSpec, impl: str) -> None:
    """Every list the options need is there, one tensor per parameter, of its size and on its
    device, and every gradient of its parameter's dtype: the kernels read raw memory, so a
    missing or short buffer, or one in another format, must fail here."""
    needed = [("grads", t.grads), ("square_avgs", t.square_avgs)]
    if spec.amsgrad:
        needed.append(("max_square_avgs", t.max_square_avgs))
    if spec.centered:
        needed.append(("grad_avgs", t.grad_avgs))
    if momentum_on(spec.momentum):
        needed.append(("momentum_buffers", t.momentum_buffers))
    sizes = [p.numel() for p in t.params]
    # One device for everything (the usual case) is checked in one pass; else per parameter.
    one_device = len({(x.is_cpu, x.get_device()) for x in t.params} | {
        (x.is_cpu, x.get_device()) for _, lst in needed for x in lst}) <= 1
    devices = None if one_device else [_where(p) for p in t.params]
    if any(g.dtype != p.dtype for p, g in zip(t.params, t.grads)):
        # torch's grad setter refuses this, but `p.grad.data = ...` gets through: the kernel
        # would read the gradient's bytes in the parameter's format
        bad = next(i for i, (p, g) in enumerate(zip(t.params, t.grads)) if g.dtype != p.dtype)
        raise ValueError(
            f"impl={impl!r}: grads[{bad}] has dtype {t.grads[bad].dtype}, its parameter "
            f"{t.params[bad].dtype} (the fused kernels read a gradient in its parameter's "
            "dtype)")
    for name, lst in needed:
        if len(lst) != len(t.params):
            raise ValueError(
                f"impl={impl!r} needs one tensor of {name} per parameter, got {len(lst)} "
                f"for {len(t.params)} parameters"
            )
        if [x.numel() for x in lst] != sizes or (
                devices is not None and [_where(x) for x in lst] != devices):
            bad = next(i for i, (p, x) in enumerate(zip(t.params, lst))
                       if x.numel() != p.numel() or x.device != p.device)
            raise ValueError(
                f"impl={impl!r}: {name}[{bad}] has shape {tuple(lst[bad].shape)} on "
                f"{lst[bad].device}, its parameter {tuple(t.params[bad].shape)} on "
                f"{t.params[bad].device}"
            )


def chunk_table(sizes: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every tensor cut into chunks of at most ``chunk`` elements: for each chunk, its tensor,
    its first element and its length (empty tensors have none)."""
    blocks = (sizes + chunk - 1) // chunk
    tensor = np.repeat(np.arange(sizes.size, dtype=np.int64), blocks)
    first_block = np.cumsum(blocks) - blocks
    start = (np.arange(tensor.size, dtype=np.int64) - first_block[tensor]) * chunk
    return tensor, start, np.minimum(chunk, sizes[tensor] - start)


def flat_walkable(tensors: Sequence[Tensor]) -> bool:
    """The tensors of one parameter can be walked as flat arrays in one element order:
    all contiguous, or all dense with the same strides (channels_last, a transpose...)."""
    if all(x.is_contiguous() for x in tensors):
        return True
    first = tensors[0]
    if any(x.shape != first.shape or x.stride() != first.stride() for x in tensors):
        return False
    expected = 1
    for size, stride in sorted(zip(first.shape, first.stride()), key=lambda pair: pair[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


@dataclass
class FlatTable:
    """The address table of one group: ``addresses[row, i]`` is the first element of tensor
    ``i`` of list ``row`` (PARAM, GRAD, ...; 0 for absent lists), ``sizes[i]`` its length."""

    rows: list[list[Tensor]]
    addresses: np.ndarray
    sizes: np.ndarray
    written_copies: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    @classmethod
    def of(cls, t: TensorLists) -> "FlatTable":
        rows = [t.params, t.grads, t.square_avgs, t.max_square_avgs, t.grad_avgs,
                t.momentum_buffers]
        written: list[tuple[Tensor, Tensor]] = []
        if not all(x.is_contiguous() for row in rows for x in row):
            rows = [list(row) for row in rows]
            for i in range(len(t.params)):
                if flat_walkable([row[i] for row in rows if row]):
                    continue
                for r, row in enumerate(rows):  # a layout a flat walk cannot follow: a copy
                    if row:
                        copy = row[i].contiguous()
                        if r != GRAD:
                            written.append((row[i], copy))
                        row[i] = copy
        addresses = np.zeros((len(rows), len(t.params)), dtype=np.int64)
        for r, row in enumerate(rows):
            if row:
                addresses[r] = [x.data_ptr() for x in row]
        sizes = np.array([p.numel() for p in t.params], dtype=np.int64)
        return cls(rows, addresses, sizes, written)

    def finish(self) -> None:
        """After the kernel: copy results back into non-walkable originals, and bump the
        version counters of the parameters, as torch's own in-place ops do (so autograd
        notices a parameter changed under a saved graph; the state is the optimizer's own)."""
        for original, copy in self.written_copies:
            original.copy_(copy)
        bump_versions(self.rows[PARAM])
