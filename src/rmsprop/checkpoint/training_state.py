"""An optimizer's and a model's state as named tensors plus a JSON manifest, and back, validated.

:func:`collect` turns ``optimizer.state_dict()`` and ``model.state_dict()`` into flat tensors
(``optimizer.state.<index>.<key>``, ``optimizer.param_groups.<group>.<key>``,
``model.<name>``) and a manifest that says where each belongs. :func:`plan` checks a manifest
(its schema first: :mod:`rmsprop.checkpoint.manifest_schema`) against an optimizer and a
model and returns the state dicts to load, or raises a
:class:`~rmsprop.checkpoint.errors.CheckpointError` subclass; it changes nothing.
:func:`apply` loads a plan.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from . import manifest_schema
from .errors import (
    CheckpointCorruptError,
    CheckpointManifestError,
    CheckpointMismatchError,
    DtypeMismatchError,
    MissingTensorError,
    OptionsMismatchError,
    ParamCountMismatchError,
    ShapeMismatchError,
    UnexpectedTensorError,
)

__all__ = ["collect", "plan", "apply", "Plan", "EXECUTION_KEYS", "UNCHECKED_KEYS"]

# How this process runs the step and stores its state, not the update the step computes: the
# loading optimizer keeps its own (lean state is converted on load: rmsprop.torch.lean.optimizer).
EXECUTION_KEYS = ("impl", "foreach", "fused", "capturable", "differentiable",
                  "state_precision", "min_8bit_size")
# Group entries that legitimately change during training; restored from the checkpoint unchecked.
UNCHECKED_KEYS = ("params", "param_names", "lr", "initial_lr", "skipped_steps")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _is_dtensor(value: Any) -> bool:
    return type(value).__name__ == "DTensor" or hasattr(value, "to_local")


def _class_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class _TensorStore:
    """The tensors to write: on CPU, contiguous, each with its own storage."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self._storages: set[int] = set()

    def add(self, name: str, tensor: Tensor, what: str) -> dict[str, str]:
        if _is_dtensor(tensor):
            raise TypeError(
                f"{what} is a sharded DTensor: save distributed training state with "
                "torch.distributed.checkpoint (see docs/checkpoint.md), not rmsprop.checkpoint"
            )
        if type(tensor) is not Tensor and not isinstance(tensor, torch.nn.Parameter):
            raise TypeError(f"{what} is a {type(tensor).__name__}, not a plain tensor")
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() > 0 and storage in self._storages:  # tied weights: safetensors
            tensor = tensor.clone()  # refuses shared storage, so the second name gets a copy
        self._storages.add(tensor.untyped_storage().data_ptr())
        self.tensors[name] = tensor
        return {"tensor": name}


def _encode_value(value: Any, name: str, store: _TensorStore, what: str) -> dict[str, Any]:
    if isinstance(value, Tensor):
        return store.add(name, value, what)
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if isinstance(value, (tuple, list)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value
    ):
        return {"tuple" if isinstance(value, tuple) else "list": list(value)}
    raise TypeError(f"{what} = {value!r} ({type(value).__name__}) cannot be saved in a checkpoint")


def _decode_value(entry: Any, tensors: Mapping[str, Tensor], what: str) -> Any:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise CheckpointCorruptError(f"{what}: malformed manifest entry {entry!r}")
    (kind, value), = entry.items()
    if kind == "tensor":
        if value not in tensors:
            raise MissingTensorError(f"{what}: tensor {value!r} is not in the checkpoint")
        return tensors[value]
    if kind == "value":
        return value
    if kind == "tuple":
        return tuple(value)
    if kind == "list":
        return list(value)
    raise CheckpointCorruptError(f"{what}: unknown manifest entry kind {kind!r}")


def collect(optimizer: Any, model: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the manifest of ``optimizer`` and ``model`` (either may be ``None``)."""
    store = _TensorStore()
    content: dict[str, Any] = {
        "created_by": {"rmsprop": _library_version(), "torch": torch.__version__},
        "optimizer": None,
        "model": None,
    }
    if optimizer is not None:
        content["optimizer"] = _collect_optimizer(optimizer, model, store)
    if model is not None:
        entries = {}
        for name, value in model.state_dict().items():
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"model state_dict entry {name!r} is a {type(value).__name__}, not a tensor"
                )
            entries[name] = store.add(f"model.{name}", value, f"model entry {name!r}")
        content["model"] = {"entries": entries}
    return store.tensors, content


def _library_version() -> str:
    from .. import __version__

    return __version__


def _collect_optimizer(optimizer: Any, model: Any, store: _TensorStore) -> dict[str, Any]:
    state_dict = optimizer.state_dict()
    names = {id(p): name for name, p in model.named_parameters()} if model is not None else {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = []
    for g, group in enumerate(state_dict["param_groups"]):
        saved: dict[str, Any] = {"params": list(group["params"])}
        for key, value in group.items():
            if key != "params":
                saved[key] = _encode_value(
                    value, f"optimizer.param_groups.{g}.{key}", store, f"param group {g} {key!r}"
                )
        groups.append(saved)
    state = {}
    for index, param_state in state_dict["state"].items():
        state[str(index)] = {
            key: _encode_value(
                value, f"optimizer.state.{index}.{key}", store,
                f"state {key!r} of parameter {index}",
            )
            for key, value in param_state.items()
        }
    return {
        "class": _class_name(optimizer),
        "param_groups": groups,
        "params": [
            {"shape": list(p.shape), "dtype": _dtype_name(p.dtype), "name": names.get(id(p))}
            for p in params
        ],
        "state": state,
    }


@dataclass
class Plan:
    """What a load will do: the state dicts to load (``None``: leave that object alone)."""

    optimizer_state_dict: dict[str, Any] | None
    model_state_dict: dict[str, Tensor] | None


def _describe(index: int, saved: Mapping[str, Any]) -> str:
    name = saved.get("name")
    return f"parameter {index}" + (f" ({name!r})" if name else "")


def _check_tensor(tensor: Tensor, shape: tuple[int, ...], dtype: torch.dtype, what: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ShapeMismatchError(
            f"{what}: shape {tuple(tensor.shape)} in the checkpoint, {tuple(shape)} here"
        )
    if tensor.dtype != dtype:
        raise DtypeMismatchError(
            f"{what}: dtype {_dtype_name(tensor.dtype)} in the checkpoint, "
            f"{_dtype_name(dtype)} here"
        )


def plan(
    content: Mapping[str, Any],
    tensors: Mapping[str, Tensor],
    optimizer: Any,
    model: Any,
    check_options: bool,
) -> Plan:
    """Validate ``content`` (against :mod:`~rmsprop.checkpoint.manifest_schema` first) and
    ``tensors`` against ``optimizer`` and ``model``; change nothing."""
    manifest_schema.check(content)
    optimizer_sd = model_sd = None
    if optimizer is not None:
        if content.get("optimizer") is None:
            raise MissingTensorError(
                "the checkpoint holds no optimizer state (it was saved without an optimizer)"
            )
        optimizer_sd = _plan_optimizer(content["optimizer"], tensors, optimizer, check_options)
    if model is not None:
        if content.get("model") is None:
            raise MissingTensorError(
                "the checkpoint holds no model state (it was saved without a model)"
            )
        model_sd = _plan_model(content["model"], tensors, model)
    _check_unreferenced(content, tensors)
    return Plan(optimizer_sd, model_sd)


def _tensor_names(content: Mapping[str, Any]) -> list[str]:
    """Every tensor name the manifest refers to (its structure is manifest_schema's)."""
    entries: list[Any] = []
    optimizer, model = content.get("optimizer"), content.get("model")
    if optimizer is not None:
        for group in optimizer["param_groups"]:
            entries.extend(entry for key, entry in group.items() if key != "params")
        for param_state in optimizer["state"].values():
            entries.extend(param_state.values())
    if model is not None:
        entries.extend(model["entries"].values())
    return [entry["tensor"] for entry in entries if "tensor" in entry]


def _check_unreferenced(content: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
    names = Counter(_tensor_names(content))
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise CheckpointManifestError(
            f"the checkpoint's manifest names a tensor for two entries: {', '.join(twice[:5])} "
            "(a save stores one tensor per entry)"
        )
    extra = sorted(set(tensors) - set(names))
    if extra:
        raise UnexpectedTensorError(
            f"the checkpoint holds tensors its manifest does not name: {', '.join(extra[:5])}"
        )


def _plan_optimizer(
    saved: Mapping[str, Any], tensors: Mapping[str, Tensor], optimizer: Any, check_options: bool
) -> dict[str, Any]:
    """The optimizer's state dict to load: the saved layout checked against the optimizer's,
    then its param groups, then each parameter's state."""
    params = _check_layout(saved, optimizer)
    groups = [
        _plan_group(g, group, saved_group, tensors, optimizer, check_options)
        for g, (group, saved_group) in enumerate(zip(optimizer.param_groups,
                                                     saved["param_groups"]))
    ]
    group_of = {index: groups[g] for g, saved_group in enumerate(saved["param_groups"])
                for index in saved_group["params"]}
    state = {}
    for key, entries in saved["state"].items():
        index = int(key)  # canonical and in range: manifest_schema
        what = _describe(index, saved["params"][index])
        state[index] = _plan_param_state(entries, tensors, optimizer, group_of[index],
                                         params[index], what)
    return {"state": state, "param_groups": groups}


def _check_layout(saved: Mapping[str, Any], optimizer: Any) -> list[Tensor]:
    """The checkpoint was saved by the optimizer's class, with as many groups and parameters,
    each of the optimizer's shape and dtype; returns the optimizer's parameters in order."""
    if saved.get("class") != _class_name(optimizer):
        raise OptionsMismatchError(
            f"the checkpoint holds the state of {saved.get('class')}, "
            f"the optimizer is {_class_name(optimizer)}"
        )
    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    if len(groups) != len(saved_groups):
        raise ParamCountMismatchError(
            f"the checkpoint has {len(saved_groups)} param groups, the optimizer {len(groups)}"
        )
    for g, (group, saved_group) in enumerate(zip(groups, saved_groups)):
        if len(group["params"]) != len(saved_group["params"]):
            raise ParamCountMismatchError(
                f"param group {g}: {len(saved_group['params'])} parameters in the checkpoint, "
                f"{len(group['params'])} in the optimizer"
            )
    params = [p for group in groups for p in group["params"]]
    saved_params = saved["params"]
    if len(params) != len(saved_params):
        raise ParamCountMismatchError(
            f"the checkpoint describes {len(saved_params)} parameters, the optimizer has "
            f"{len(params)}"
        )
    for index, (p, saved_p) in enumerate(zip(params, saved_params)):
        _check_param(index, p, saved_p)
    return params


def _check_param(index: int, p: Tensor, saved_p: Mapping[str, Any]) -> None:
    if tuple(saved_p["shape"]) != tuple(p.shape):
        raise ShapeMismatchError(
            f"{_describe(index, saved_p)}: shape {tuple(saved_p['shape'])} in the checkpoint, "
            f"{tuple(p.shape)} in the optimizer"
        )
    if saved_p["dtype"] != _dtype_name(p.dtype):
        raise DtypeMismatchError(
            f"{_describe(index, saved_p)}: dtype {saved_p['dtype']} in the checkpoint, "
            f"{_dtype_name(p.dtype)} in the optimizer"
        )


def _plan_group(
    g: int, group: Mapping[str, Any], saved_group: Mapping[str, Any],
    tensors: Mapping[str, Tensor], optimizer: Any, check_options: bool,
) -> dict[str, Any]:
    """Param group ``g`` to load: the checkpoint's entries, the optimizer's own execution
    settings (:data:`EXECUTION_KEYS`), checked."""
    new_group = {"params": list(saved_group["params"])}
    for key, entry in saved_group.items():
        if key != "params":
            new_group[key] = _decode_value(entry, tensors, f"param group {g} {key!r}")
            if key in ("lr", "initial_lr"):
                _check_rate(new_group[key], f"param group {g} {key!r}")
    for key in EXECUTION_KEYS:
        if key in group:
            new_group[key] = group[key]
    if check_options:
        _check_options(g, group, new_group)
    _validate_group(optimizer, g, new_group)
    return new_group


def _plan_param_state(
    entries: Mapping[str, Any], tensors: Mapping[str, Tensor], optimizer: Any,
    group: Mapping[str, Any], p: Tensor, what: str,
) -> dict[str, Any]:
    """One parameter's state to load (``what`` names it): decoded, in this version's format,
    checked against its group's options and against the state the optimizer already has."""
    param_state = {
        name: _decode_value(entry, tensors, f"state {name!r} of {what}")
        for name, entry in entries.items()
    }
    _check_state_types(optimizer, param_state, what)
    param_state = _upgraded(optimizer, param_state)
    _check_state(optimizer, group, p, param_state, what)
    for name, value in param_state.items():  # must fit state the optimizer already has
        have = optimizer.state.get(p, {}).get(name)
        if isinstance(value, Tensor) and isinstance(have, Tensor) and not _is_dtensor(have):
            _check_tensor(value, tuple(have.shape), have.dtype, f"state {name!r} of {what}")
    return param_state


def _check_rate(value: Any, what: str) -> None:
    """A tensor learning rate (a number's range is manifest_schema's): one finite value >= 0."""
    if isinstance(value, Tensor) and not (
        value.numel() == 1 and value.is_floating_point() and bool(torch.isfinite(value).all())
        and bool((value >= 0).all())
    ):
        raise CheckpointManifestError(
            f"{what}: a tensor of shape {tuple(value.shape)} and dtype {_dtype_name(value.dtype)}"
            ", not one finite floating-point value >= 0"
        )


def _check_state_types(optimizer: Any, state: Mapping[str, Any], what: str) -> None:
    """For rmsprop's optimizer: every entry one it keeps, of its type (the shapes are
    :func:`_check_state`'s)."""
    if getattr(type(optimizer), "spec_of", None) is None:
        return
    from ..torch.state_schema import saved_entry_kind

    for name, value in state.items():
        kind = saved_entry_kind(name)
        if kind == "guard":
            if not isinstance(value, bool):
                raise CheckpointManifestError(
                    f"state {name!r} of {what} is {value!r}, not a bool")
        elif kind == "step":
            if not _is_step(value):
                raise CheckpointManifestError(
                    f"state 'step' of {what} is {_summary(value)}, not a finite count >= 0 (a "
                    "0-d floating-point tensor or a number)"
                )
        elif kind is None:
            raise UnexpectedTensorError(
                f"state {name!r} of {what}: not state that {_class_name(optimizer)} keeps"
            )
        elif not isinstance(value, Tensor):
            raise CheckpointManifestError(f"state {name!r} of {what} is {value!r}, not a tensor")


def _is_step(value: Any) -> bool:
    if isinstance(value, Tensor):
        if value.dim() != 0 or not value.is_floating_point():
            return False
        value = value.item()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value >= 0


def _summary(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {_dtype_name(value.dtype)} tensor of shape {tuple(value.shape)}"
    return repr(value)


def _check_options(g: int, group: Mapping[str, Any], new_group: Mapping[str, Any]) -> None:
    skip = set(UNCHECKED_KEYS) | set(EXECUTION_KEYS)
    differences = []
    for key in sorted((set(group) | set(new_group)) - skip):
        here, there = group.get(key, "<absent>"), new_group.get(key, "<absent>")
        if isinstance(here, Tensor) or isinstance(there, Tensor):
            same = isinstance(here, Tensor) and isinstance(there, Tensor) and torch.equal(
                here.cpu(), there.cpu()
            )
        elif isinstance(here, (int, float)) and isinstance(there, (int, float)):
            same = float(here) == float(there)
        else:
            same = type(here) is type(there) and here == there
        if not same:
            differences.append(f"{key}={there!r} in the checkpoint, {here!r} here")
    if differences:
        raise OptionsMismatchError(
            f"param group {g}: the optimizer's options differ from the checkpoint's: "
            + "; ".join(differences)
            + " (pass options='checkpoint' to take the checkpoint's)"
        )


def _validate_group(optimizer: Any, g: int, group: dict[str, Any]) -> None:
    check = getattr(type(optimizer), "_check_group", None)
    if check is None:
        return
    merged = {**optimizer.defaults, **group}
    try:
        check(merged)
    except (TypeError, ValueError) as error:
        raise OptionsMismatchError(
            f"param group {g}: invalid options in the checkpoint: {error}"
        ) from None


def _upgraded(optimizer: Any, state: dict[str, Any]) -> dict[str, Any]:
    """For rmsprop's optimizer: 8-bit state saved by rmsprop 0.1.0 in this version's format."""
    if getattr(type(optimizer), "spec_of", None) is None or not state:
        return state
    from ..torch.state_schema import saved_state_upgraded

    return saved_state_upgraded(state)


def _check_state(
    optimizer: Any, group: Mapping[str, Any], p: Tensor, state: Mapping[str, Any], what: str
) -> None:
    """For rmsprop's optimizer: the state a non-empty entry needs, in the parameter's shape."""
    spec_of = getattr(type(optimizer), "spec_of", None)
    if spec_of is None or not state:
        return
    from ..torch.state_schema import held_state_keys, storage_problem
    from ..update import state_keys

    spec = spec_of({**optimizer.defaults, **group})
    held = {"step", *held_state_keys(state)}  # torch's names, whatever the storage (8-bit too)
    for key in ("step", *state_keys(spec)):
        if key not in held and not any(name.startswith(key + "_") for name in state):
            raise MissingTensorError(
                f"state {key!r} of {what} is not in the checkpoint (the group's options need it)"
            )
        value = state.get(key)
        if key != "step" and isinstance(value, Tensor) and value.dtype == p.dtype:
            _check_tensor(value, tuple(p.shape), p.dtype, f"state {key!r} of {what}")
    problem = storage_problem(state, p)
    if problem:
        raise ShapeMismatchError(f"{what}: {problem}")


def _plan_model(
    saved: Mapping[str, Any], tensors: Mapping[str, Tensor], model: Any
) -> dict[str, Tensor]:
    current = model.state_dict()
    entries = saved["entries"]
    missing = [name for name in current if name not in entries]
    if missing:
        raise MissingTensorError(
            f"model entries not in the checkpoint: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    unexpected = [name for name in entries if name not in current]
    if unexpected:
        raise UnexpectedTensorError(
            f"the checkpoint has model entries this model lacks: {', '.join(unexpected[:5])}"
            + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        )
    state_dict = {}
    for name, have in current.items():
        value = _decode_value(entries[name], tensors, f"model entry {name!r}")
        if not isinstance(value, Tensor):
            raise CheckpointCorruptError(f"model entry {name!r} is not a tensor")
        if _is_dtensor(have):
            raise TypeError(
                f"model entry {name!r} is a sharded DTensor: load distributed training state "
                "with torch.distributed.checkpoint (see docs/checkpoint.md)"
            )
        _check_tensor(value, tuple(have.shape), have.dtype, f"model entry {name!r}")
        state_dict[name] = value
    return state_dict


def apply(plan: Plan, optimizer: Any, model: Any) -> None:
    """Load ``plan`` into ``optimizer`` and ``model``; if loading the model fails, the optimizer
    gets its old state back."""
    previous = optimizer.state_dict() if plan.optimizer_state_dict is not None else None
    if plan.optimizer_state_dict is not None:
        try:
            optimizer.load_state_dict(plan.optimizer_state_dict)
        except Exception as error:  # the optimizer's own check, after ours: put its state back
            optimizer.load_state_dict(previous)
            raise CheckpointMismatchError(
                f"{_class_name(optimizer)}.load_state_dict refused the checkpoint's state: "
                f"{error!r}"
            ) from error
    if plan.model_state_dict is not None:
        try:
            model.load_state_dict(plan.model_state_dict, strict=True)
        except BaseException:
            if previous is not None:
                optimizer.load_state_dict(previous)
            raise

