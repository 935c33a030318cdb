"""``state_precision``: the optimizer's side of lean state (8-bit or bfloat16), per param group.

:class:`rmsprop.torch.RMSprop` keeps two more group keys, ``state_precision`` (``"fp32"``,
``"bf16"`` or ``"8bit"``) and ``min_8bit_size``, and hands the parameters of a lean group to
:func:`step`, which creates their state in the group's storage (see
:mod:`rmsprop.torch.lean.storage`) and runs the kernel that decodes and encodes it: the
numba kernel on CPU tensors (:mod:`rmsprop.torch.lean.kernel_cpu`), the Triton kernel on CUDA
tensors (:mod:`rmsprop.torch.lean.kernel_triton`, same format and random bits: a state dict
moves between them); :func:`kernel_of` says which. Parameters that keep full-precision state
(those under ``min_8bit_size`` in an 8-bit group) go back to the ordinary path.

Loading a state dict (:func:`loading`) keeps the optimizer's own ``state_precision`` and
``min_8bit_size`` (they choose how state is stored, not what the update computes) and converts
the loaded state to them: an 8-bit state dict loads into a float32 optimizer dequantized, a
float32 one into an 8-bit optimizer quantized (to nearest), so a run can change precision on
resume; state already in the target storage loads bit for bit.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Iterator, cast

import torch
from torch import Tensor

from ...spec import RMSpropSpec
from ...update import state_keys
from ..kernels.capabilities import state_dtype, unsupported
from ..kernels.tensors import step_dtype
from .storage import (
    CODES_SUFFIX,
    SCALE_SUFFIX,
    VARIANCE_OF,
    check_min_8bit_size,
    check_state_precision,
    convert,
    create,
    lean_keys,
    real_view,
    storage_of,
    storage_problem,
    upgrade_legacy_scales,
)

__all__ = ["check_storage", "check_params", "check_state", "kernel_of", "own_settings", "step",
           "loading", "upgraded", "LEAN_DTYPES"]

LEAN_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.complex64)
"""Parameter dtypes the lean-state kernel updates (the update is computed in float32)."""


def kernel_of(impl: str, p: Tensor) -> str:
    """The kernel that updates ``p``'s lean state under the group's ``impl``: ``"fused"``
    (numba, CPU tensors) or ``"triton"`` (CUDA tensors; CPU ones under ``TRITON_INTERPRET=1``
    with ``impl="triton"``); ``impl="auto"`` picks by ``p``'s device."""
    if impl == "auto":
        return "triton" if p.is_cuda else "fused"
    return impl


def check_storage(group: dict[str, Any]) -> None:
    """Validate a group's ``state_precision`` and ``min_8bit_size`` against its ``impl``."""
    precision = check_state_precision(group["state_precision"])
    check_min_8bit_size(group["min_8bit_size"])
    if precision == "fp32":
        return
    if group["impl"] not in ("auto", "fused", "triton") or group.get("foreach") is not None:
        raise ValueError(
            f"state_precision={precision!r} needs impl='fused', impl='triton' or impl='auto' "
            f"(the state is decoded and encoded inside the fused CPU kernel or the Triton GPU "
            f"kernel), got impl={group['impl']!r}"
            + (f", foreach={group['foreach']}" if group.get("foreach") is not None else "")
        )
    check_params(group, precision)


def check_params(group: dict[str, Any], precision: str) -> None:
    """The group's parameters are ones a lean kernel can update under the group's ``impl``
    (a supported dtype; CPU tensors and numba for the fused kernel, CUDA tensors and Triton
    for the Triton kernel)."""
    impl = group.get("impl", "auto")
    by_kernel: dict[str, list[Tensor]] = {}
    for p in group["params"]:
        if not isinstance(p, Tensor):
            continue  # a loaded group's parameter ids
        if impl == "auto" and not (p.is_cpu or p.is_cuda):
            raise ValueError(
                f"state_precision={precision!r} runs on CPU tensors (the fused numba kernel) "
                f"or CUDA tensors (the Triton kernel), got a parameter on {p.device}"
            )
        if p.dtype not in LEAN_DTYPES:
            raise ValueError(
                f"state_precision={precision!r} supports float32, bfloat16, float16 and "
                f"complex64 parameters, got {p.dtype}"
            )
        by_kernel.setdefault(kernel_of(impl, p), []).append(p)
    # one call per kernel, not per parameter: this runs at every step
    for kernel, params in by_kernel.items():
        why = unsupported(kernel, params)  # device, or the package missing
        if why:
            raise ValueError(f"state_precision={precision!r}: {why}")


def check_state(optimizer: Any, group: dict[str, Any], params: list[Tensor]) -> None:
    """Before a step changes anything: ``params`` (those of ``group`` with a gradient) are
    ones the lean kernel can update and their state has the storage's shapes (a state dict
    loaded for other parameters, say), so that a refused step leaves every group as it was."""
    check_params({"params": params, "impl": group["impl"]}, group["state_precision"])
    for p in params:
        problem = storage_problem(optimizer.state.get(p, {}), p)
        if problem:
            everyone = itertools.chain.from_iterable(g["params"] for g in optimizer.param_groups)
            index = next(i for i, q in enumerate(everyone) if q is p)
            raise ValueError(f"parameter {index} (shape {tuple(p.shape)}): {problem}")


def own_settings(group: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``group`` that a loaded state dict does not replace: how its state is
    stored and which implementation runs it (``impl`` and torch's ``foreach`` are how this
    process runs the step: a state dict saved with ``impl="triton"`` on a GPU machine must load
    on a CPU one, and one saved by ``torch.optim.RMSprop`` with ``foreach=None`` must not move
    an optimizer built with ``foreach=False`` to another kernel).
    """
    return {"state_precision": group["state_precision"], "min_8bit_size": group["min_8bit_size"],
            "impl": group["impl"], "foreach": group["foreach"]}


@torch._disable_dynamo  # the fused kernel runs eagerly in a compiled step (see kernels)
def step(
    optimizer: Any, group: dict[str, Any], params: list[Tensor], spec: RMSpropSpec
) -> list[Tensor]:
    """One step of the parameters of ``params`` whose state is stored lean.

    Returns the parameters that keep full-precision state, for the ordinary path. The caller
    has run :func:`check_state` on ``params`` before any group was stepped.
    """
    precision = group["state_precision"]
    salt_of = {id(p): i for i, p in enumerate(
        itertools.chain.from_iterable(g["params"] for g in optimizer.param_groups))}
    keys = state_keys(spec)
    group_keys = state_keys(optimizer.spec_of(group))
    batches: dict[tuple[str, torch.dtype, torch.device, str], list[Tensor]] = {}
    full = []
    for p in params:
        storage = storage_of(p, precision, group["min_8bit_size"])
        if storage == "full" or p.numel() == 0:
            full.append(p)
            continue
        state = optimizer.state[p]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=step_dtype())
        convert(state, p, storage, spec.centered)  # state loaded or made in another storage
        # every tensor the group's options need (a guarded batch steps with fewer)
        create(state, p, group_keys, spec.initial_accumulator_value, storage, spec.centered)
        key = (storage, real_view(p).dtype, p.device, kernel_of(group["impl"], p))
        batches.setdefault(key, []).append(p)

    for (storage, _, _, kernel), batch in batches.items():
        states = [optimizer.state[p] for p in batch]
        torch._foreach_add_([s["step"] for s in states], 1.0)
        reals = [real_view(p) for p in batch]
        work = [x if x.is_contiguous() else x.contiguous() for x in reals]
        grads = [real_view(cast(Tensor, p.grad)).contiguous() for p in batch]  # all have one
        names = dict(zip(keys, lean_keys(keys, spec.centered)))
        if storage == "8bit":
            stored = [{k: (s[n + CODES_SUFFIX], s[n + SCALE_SUFFIX]) for k, n in names.items()}
                      for s in states]
        else:
            stored = [{k: s[n] for k, n in names.items()} for s in states]
        _lean_step(kernel)(
            work, grads, stored, spec,
            lr=float(group["lr"]),
            steps=[int(s["step"].item()) for s in states],
            salts=[salt_of[id(p)] for p in batch],
            storage=storage,
        )
        for real, copy in zip(reals, work):
            if copy is not real:
                real.copy_(copy)
        torch.autograd.graph.increment_version(batch)
    return full


def _lean_step(kernel: str) -> Any:
    """The step function of ``kernel`` (its module imported on first use: numba or Triton)."""
    if kernel == "triton":
        from .kernel_triton import step_lean_triton

        return step_lean_triton
    from .kernel_cpu import step_lean

    return step_lean


def decode_for_writing(state: dict[str, Any], p: Tensor, dtype: torch.dtype | None = None) -> None:
    """Turn ``p``'s lean state into torch's tensors at full precision (``dtype``, default
    ``p``'s), for code that writes them directly (``warm_start``, the full-precision step of a
    group whose ``state_precision`` was set to ``"fp32"``); a lean step stores them back."""
    square_avg = state.get("square_avg")
    if any(name.endswith(CODES_SUFFIX) or name in VARIANCE_OF.values() for name in state) or (
            isinstance(square_avg, Tensor) and square_avg.dtype == torch.bfloat16):
        convert(state, p, "full", False, full_dtype=dtype)


def _is_centered(group: dict[str, Any]) -> bool:
    return bool(group.get("centered", False))


def upgraded(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` with 8-bit state saved by 0.1.0 read in this format
    (:func:`~rmsprop.torch.lean.storage.upgrade_legacy_scales`): a new dict that shares the
    tensors, or ``state_dict`` itself (never modified) when nothing is old."""
    states = {key: upgrade_legacy_scales(value) if isinstance(value, dict) else value
              for key, value in state_dict["state"].items()}
    if all(states[key] is value for key, value in state_dict["state"].items()):
        return state_dict
    return {**state_dict, "state": states}


@contextlib.contextmanager
def loading(optimizer: Any, state_dict: dict[str, Any]) -> Iterator[None]:
    """Around ``Optimizer.load_state_dict``: check the saved state's storage against our
    parameters first, keep the optimizer's own storage settings (:func:`own_settings`) and
    store the loaded state in them.

    torch casts every state tensor but ``step`` to a floating-point parameter's dtype; the
    8-bit codes and scales are put back as they were saved (uint8 and float32), and so is the
    float32 state that the fused and Triton kernels keep for bfloat16/float16 parameters, so
    that a reload continues the run bit for bit.
    """
    own = [own_settings(g) for g in optimizer.param_groups]
    saved_ids = itertools.chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    params = itertools.chain.from_iterable(g["params"] for g in optimizer.param_groups)
    kept: dict[int, dict[str, Tensor]] = {}
    for index, (saved_id, p) in enumerate(zip(saved_ids, params)):
        saved = state_dict["state"].get(saved_id, {})
        problem = storage_problem(saved, p)
        if problem:  # before anything is loaded
            raise ValueError(f"state_dict: parameter {index} (shape {tuple(p.shape)}): {problem}")
        kept[id(p)] = {k: v for k, v in saved.items() if isinstance(v, Tensor) and k != "step"}
    yield
    for group, settings in zip(optimizer.param_groups, own):
        group.update(settings)
        precision, min_8bit_size = group["state_precision"], group["min_8bit_size"]
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            # the dtype the step keeps full state in (float32 for a 16-bit parameter under
            # the fused kernel), which torch's cast to the parameter's dtype may have lowered
            full_dtype = state_dtype(optimizer.impl_of(group, [p]), p.dtype)
            for key, value in kept.get(id(p), {}).items():
                if key.endswith((CODES_SUFFIX, SCALE_SUFFIX)) or (
                        value.dtype == full_dtype != state[key].dtype):
                    state[key] = value.to(device=p.device)
            convert(state, p, storage_of(p, precision, min_8bit_size), _is_centered(group),
                    full_dtype=full_dtype)
