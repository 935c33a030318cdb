"""What a param group and a parameter's state must hold, checked before a step or a load.

:class:`rmsprop.torch.RMSprop` calls :func:`check_groups` at the start of every ``step`` (so
that a hyperparameter a scheduler or user code wrote into ``param_groups`` gets the
constructor's checks before any group steps) and :func:`checked_state_dict` at the start of
``load_state_dict`` (so that a refused state dict leaves the optimizer as it was). Every error
names the param group, the parameter (its index in the state dict's order) and the field.

A parameter's state (torch's names; lean storage in :mod:`rmsprop.torch.lean.storage`):

=====================  ==========================================================
``step``               a real number or 1-element tensor: finite, whole, >= 0
``square_avg``         v >= 0, finite, in the parameter's shape (or its real view);
``max_square_avg``     likewise (amsgrad); centered lean state stores ``variance``
                       and ``max_variance`` (v - gbar^2 >= 0) instead
``grad_avg``           gbar, finite (centered)
``momentum_buffer``    b, finite (momentum > 0)
``<name>.codes``       uint8 codes with a float32 ``<name>.block_scale``, finite, >= 0
``cold_start_guard``   a bool (:mod:`rmsprop.torch.warm_start`)
=====================  ==========================================================

The last section is what :mod:`rmsprop.checkpoint` reads of a parameter's state
(:func:`saved_entry_kind`, :func:`saved_state_upgraded`, :func:`held_state_keys`,
:func:`storage_problem`) and how it marks parameters restored without their state
(:func:`note_restored`), so that it needs no detail of the storage or of the guard.

An empty state is a parameter that never stepped (a frozen layer), as in torch. A state that
lacks ``step``, v or a tensor the group's options need is refused, unless the caller asks for a
fresh start (``missing_state="fresh"``): a parameter without ``step`` or v then starts over
(its state dropped, the cold-start guard on), one without gbar, vmax or b gets them at their
starting values (0, the current v, 0), none of which can make a step larger.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import TYPE_CHECKING, Any, Iterable, Mapping, cast

import torch
from torch import Tensor

from ..errors import StateDictError
from ..spec import OPTION_NAMES, RMSpropSpec, check_impl, check_lr
from ..update import state_keys
from .lean import optimizer as lean_state
from .functional import choose_impl
from .kernels.tensors import dtensor_type, real_view
from .lean.storage import (
    CODES_SUFFIX,
    FORMAT_OF,
    LEGACY_SCALE_SUFFIX,
    SCALE_SUFFIX,
    VARIANCE_OF,
    logical_keys,
    storage_problem,
    upgrade_legacy_scales,
)
from .warm_start import GUARD_KEY, clear_restored, guard_applies, mark_restored

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = [
    "MISSING_STATE_POLICIES",
    "spec_of",
    "check_group",
    "check_groups",
    "checked_state_dict",
    "StateDictError",
    "saved_entry_kind",
    "saved_state_upgraded",
    "held_state_keys",
    "storage_problem",
    "note_restored",
]

MISSING_STATE_POLICIES = ("error", "fresh")

# The group keys that make up the spec (lr is kept apart: it changes under schedules).
_SPEC_KEYS = tuple(name for name in OPTION_NAMES if name != "lr")
_GROUP_KEYS = ("lr", *_SPEC_KEYS, "impl", "foreach", "state_precision", "min_8bit_size",
               "skipped_steps")

# The group keys of every RMSprop state dict (torch's since 0.x; ours add their options, and
# a state dict without those takes the loading optimizer's values, as torch's __setstate__).
_TORCH_GROUP_KEYS = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

# Keys only another torch.optim class writes (each class's own group or state entries).
_FOREIGN_GROUP_KEYS = {
    "betas": "torch.optim.Adam, AdamW, Adamax, NAdam, RAdam or SparseAdam",
    "dampening": "torch.optim.SGD",
    "lr_decay": "torch.optim.Adagrad",
    "rho": "torch.optim.Adadelta",
    "lambd": "torch.optim.ASGD",
    "t0": "torch.optim.ASGD",
    "etas": "torch.optim.Rprop",
    "step_sizes": "torch.optim.Rprop",
    "momentum_decay": "torch.optim.NAdam",
    "beta2_decay": "torch.optim.Adafactor",
    "history_size": "torch.optim.LBFGS",
    "line_search_fn": "torch.optim.LBFGS",
}
_FOREIGN_STATE_KEYS = {
    "exp_avg": "torch.optim.Adam, AdamW, NAdam or RAdam",
    "exp_avg_sq": "torch.optim.Adam, AdamW, NAdam or RAdam",
    "max_exp_avg_sq": "torch.optim.Adam or AdamW (amsgrad)",
    "exp_inf": "torch.optim.Adamax",
    "mu_product": "torch.optim.NAdam",
    "sum": "torch.optim.Adagrad",
    "acc_delta": "torch.optim.Adadelta",
    "prev": "torch.optim.Rprop",
    "step_size": "torch.optim.Rprop",
    "ax": "torch.optim.ASGD",
    "eta": "torch.optim.ASGD",
    "row_var": "torch.optim.Adafactor",
    "col_var": "torch.optim.Adafactor",
    "old_dirs": "torch.optim.LBFGS",
}
# Stored tensors that hold v (>= 0); the others (gbar, b) take any finite value.
_NONNEGATIVE = {*VARIANCE_OF, *VARIANCE_OF.values()}


_PLAIN = frozenset({float, int, bool, str})
_PLAIN_OR_NONE = _PLAIN | {type(None)}


@functools.lru_cache(maxsize=256)
def _cached_spec(values: tuple) -> RMSpropSpec:
    return RMSpropSpec(lr=None, **dict(zip(_SPEC_KEYS, values)))


def spec_of(group: Mapping[str, Any]) -> RMSpropSpec:
    """The validated options of a param group (its ``lr`` aside)."""
    values = tuple([group[name] for name in _SPEC_KEYS])
    if not _PLAIN.issuperset(map(type, values)):
        # A 0-d tensor is read by value: a tensor written in place must not hit a stale entry.
        values = tuple(v.item() if isinstance(v, Tensor) else v for v in values)
    try:
        hash(values)
    except TypeError:  # a list, say: RMSpropSpec names the field and the value
        return RMSpropSpec(lr=None, **dict(zip(_SPEC_KEYS, values)))
    return _cached_spec(values)


def check_lr_value(lr: Any) -> None:
    """``lr``: a finite real number >= 0, or a 1-element tensor holding one."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)}")
        check_lr(lr.item())
    else:
        check_lr(lr)


def check_foreach(foreach: Any) -> bool | None:
    """``foreach``: ``None`` or a bool (NumPy's bool scalar too, as torch takes it)."""
    if foreach is None or isinstance(foreach, bool):
        return foreach
    if str(getattr(foreach, "dtype", "")) == "bool" and getattr(foreach, "shape", None) == ():
        return bool(foreach)
    raise TypeError(f"foreach must be a bool or None, got {foreach!r}")


def check_group(group: dict[str, Any]) -> None:
    """Every option of ``group`` (a complete group: the optimizer's defaults filled in)."""
    check_lr_value(group["lr"])
    check_impl(group["impl"])
    foreach = check_foreach(group["foreach"])
    if foreach is not None and group["impl"] not in ("auto", "foreach" if foreach else "loop"):
        raise ValueError(f"foreach={foreach} contradicts impl={group['impl']!r}")
    spec_of(group)
    lean_state.check_storage(group)
    skipped = group.get("skipped_steps", 0)
    if isinstance(skipped, bool) or not isinstance(skipped, numbers.Integral) or skipped < 0:
        raise ValueError(f"Invalid skipped_steps value: {skipped!r} (an int >= 0)")


def check_groups(optimizer: Any) -> None:
    """Before a step: every group's options, as the constructor checks them, with the group's
    index in the error. ``TypeError`` or ``ValueError``, as the constructor raises.

    A group whose options are plain values equal to those it last passed with (every step of
    an ordinary run) is not checked again; its parameters are (the storage's needs).
    """
    passed = optimizer.__dict__.setdefault("_rmsprop_checked_groups", {})
    for index, group in enumerate(optimizer.param_groups):
        try:
            values = tuple([group[key] for key in _GROUP_KEYS])
        except KeyError as error:
            raise KeyError(f"param group {index} has no {error.args[0]!r} entry") from None
        types = tuple(map(type, values))  # True == 1: a bool's type is part of its value
        plain = _PLAIN_OR_NONE.issuperset(types)
        try:
            if plain and passed.get(id(group)) == (values, types):
                if group["state_precision"] != "fp32":
                    lean_state.check_storage(group)
                continue
            check_group(group)
            if group["impl"] != "auto" and group["params"]:
                choose_impl(group["impl"], group["foreach"], group["params"])
        except (TypeError, ValueError) as error:
            raise type(error)(f"param group {index}: {error}") from None
        if plain:
            passed[id(group)] = (values, types)


# -- load_state_dict ------------------------------------------------------------------------


def _fail(message: str) -> StateDictError:
    return StateDictError(f"state_dict: {message}; the optimizer is unchanged")


def checked_state_dict(
    optimizer: Any, state_dict: Any, missing_state: str = "error"
) -> tuple[dict[str, Any], list[int]]:
    """``state_dict`` checked against ``optimizer``, as it is to be loaded.

    Returns the state dict to hand to ``torch.optim.Optimizer.load_state_dict`` (a shallow
    copy when ``missing_state="fresh"`` changed a parameter's state; the tensors are shared)
    and the indices of the parameters that start over. Raises :class:`StateDictError` naming
    the group, the parameter and the field; nothing is changed.
    """
    if missing_state not in MISSING_STATE_POLICIES:
        raise ValueError(
            f"Invalid missing_state value: {missing_state!r} (missing_state must be one of "
            f"{', '.join(map(repr, MISSING_STATE_POLICIES))})"
        )
    if not isinstance(state_dict, Mapping):
        raise _fail(f"expected a dict, got {type(state_dict).__name__}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise _fail(f"no {key!r} entry")
    states, saved_groups = state_dict["state"], state_dict["param_groups"]
    if not isinstance(states, Mapping):
        raise _fail(f"'state' must be a dict, got {type(states).__name__}")
    if not isinstance(saved_groups, (list, tuple)):
        raise _fail(f"'param_groups' must be a list, got {type(saved_groups).__name__}")
    if len(saved_groups) != len(optimizer.param_groups):
        raise _fail(f"{len(saved_groups)} param groups, the optimizer has "
                    f"{len(optimizer.param_groups)}")

    specs = []
    seen: set[Any] = set()
    for g, (saved, group) in enumerate(zip(saved_groups, optimizer.param_groups)):
        specs.append(_check_saved_group(optimizer, g, saved, group, seen))
    _check_foreign_state(states)

    # upgraded() only reads it; ignore until lean_state (kernel refactor) takes a Mapping
    state_dict = lean_state.upgraded(state_dict)  # type: ignore[arg-type]
    states = state_dict["state"]
    fresh_states = {}
    fresh_params = []
    index = 0
    for g, (saved, group, spec) in enumerate(zip(saved_groups, optimizer.param_groups, specs)):
        for saved_id, p in zip(saved["params"], group["params"]):
            where = f"param group {g}, parameter {index} (shape {tuple(p.shape)})"
            state = states.get(saved_id)
            if state is not None:
                restart = _check_state(state, p, spec, where, missing_state)
                if restart:  # starts over, under the cold-start guard where it applies
                    fresh_states[saved_id] = {GUARD_KEY: True} if guard_applies(spec) else {}
                    fresh_params.append(index)
            index += 1
    for key, state in states.items():  # other entries are kept, as torch keeps them
        if key not in seen and isinstance(state, Mapping):
            raise _fail(f"state for parameter id {key!r}, which no param group lists")
    if fresh_states:
        state_dict = {**state_dict, "state": {**states, **fresh_states}}
    return state_dict, fresh_params


def _check_saved_group(
    optimizer: Any, g: int, saved: Any, group: dict[str, Any], seen: set[Any]
) -> RMSpropSpec:
    if not isinstance(saved, Mapping):
        raise _fail(f"param group {g} must be a dict, got {type(saved).__name__}")
    for key, owner in _FOREIGN_GROUP_KEYS.items():
        if key in saved:
            raise _fail(f"param group {g} has {key!r}: this is the state dict of {owner}, "
                        "not of an RMSprop")
    ids = saved.get("params")
    if not isinstance(ids, (list, tuple)):
        raise _fail(f"param group {g}: 'params' must be a list of parameter ids, got {ids!r}")
    if len(ids) != len(group["params"]):
        raise _fail(f"param group {g} has {len(ids)} parameters, the optimizer's "
                    f"{len(group['params'])} (loaded state dict contains a parameter group "
                    "that doesn't match the size of optimizer's group)")
    for i in ids:  # ints, or names (torch.distributed.checkpoint keys them by name)
        try:
            hash(i)
        except TypeError:
            raise _fail(f"param group {g}: parameter id {i!r} is not an int or a name") from None
        if i in seen:
            raise _fail(f"param group {g}: parameter id {i} is listed twice")
        seen.add(i)
    for key in _TORCH_GROUP_KEYS:  # every torch.optim.RMSprop state dict has them
        if key not in saved:
            raise _fail(f"param group {g} has no {key!r}: not the state dict of an RMSprop")
    # How the group runs and stores its state is this optimizer's own (lean_state.own_settings).
    merged = {**optimizer.defaults, **saved, **lean_state.own_settings(group)}
    try:
        check_group(merged)
    except (TypeError, ValueError) as error:
        raise _fail(f"param group {g}: {error}") from None
    return spec_of(merged)


def _check_foreign_state(states: Mapping[Any, Any]) -> None:
    for key, state in states.items():
        if isinstance(state, Mapping):
            for name, owner in _FOREIGN_STATE_KEYS.items():
                if name in state:
                    raise _fail(f"the state of parameter id {key} holds {name!r}: this is the "
                                f"state dict of {owner}, not of an RMSprop")


def _check_state(
    state: Any, p: Tensor, spec: RMSpropSpec, where: str, missing_state: str
) -> bool:
    """Check one parameter's saved state; True when it is to start over (fresh)."""
    if not isinstance(state, Mapping):
        raise _fail(f"{where}: the state must be a dict, got {type(state).__name__}")
    for name, value in state.items():
        _check_entry(name, value, p, where)
    problem = storage_problem(state, p)
    if problem:
        raise _fail(f"{where}: {problem}")
    for name in state:
        if isinstance(name, str) and name.endswith(SCALE_SUFFIX) \
                and name[: -len(SCALE_SUFFIX)] + CODES_SUFFIX not in state:
            raise _fail(f"{where}: {name!r} without its {CODES_SUFFIX!r} tensor")
    tensors = [n for n in state if n not in ("step", GUARD_KEY)]
    if not tensors and "step" not in state:
        return False  # never stepped (or guarded before its first step)
    held = set(_logical(state))
    needed = ("step", *state_keys(spec))
    missing = [key for key in needed if key not in held]
    if not missing:
        return False
    if missing_state == "error":
        raise _fail(
            f"{where}: the state has no {missing[0]!r}, which the group's options need "
            "(a run resumed without it would restart it from zero); to start it over "
            "on purpose, load with missing_state='fresh'"
        )
    return "step" in missing or "square_avg" in missing


def _logical(state: Mapping[str, Any]) -> list[str]:
    """torch's names of the entries in ``state`` (``step`` and the state tensors)."""
    inverse = {v: k for k, v in VARIANCE_OF.items()}
    names = []
    for name in state:
        base = name[: -len(CODES_SUFFIX)] if name.endswith(CODES_SUFFIX) else name
        names.append(inverse.get(base, base))
    return names


def _check_entry(name: Any, value: Any, p: Tensor, where: str) -> None:
    if name == "step":
        _check_step(value, where)
    elif name == GUARD_KEY:
        if not isinstance(value, bool):
            raise _fail(f"{where}: {GUARD_KEY!r} must be a bool, got {value!r}")
    elif name in FORMAT_OF:
        _check_values(name, value, where, floating=True, nonnegative=name in _NONNEGATIVE)
    elif isinstance(name, str) and name.endswith(CODES_SUFFIX) \
            and name[: -len(CODES_SUFFIX)] in FORMAT_OF:
        if not isinstance(value, Tensor):
            raise _fail(f"{where}: {name!r} must be a tensor, got {type(value).__name__}")
    elif isinstance(name, str) and name.endswith(SCALE_SUFFIX) \
            and name[: -len(SCALE_SUFFIX)] in FORMAT_OF:
        _check_values(name, value, where, floating=True, nonnegative=True)
        if value.dim() != 1:
            raise _fail(f"{where}: {name!r} must be 1-dimensional (a scale per block), got "
                        f"shape {tuple(value.shape)}")
    else:
        raise _fail(f"{where}: the state holds {name!r}, which RMSprop does not keep")


def _check_step(value: Any, where: str) -> None:
    if isinstance(value, Tensor):
        if value.numel() != 1 or not value.is_floating_point():  # the step adds 1.0 in place
            raise _fail(f"{where}: 'step' must be a 1-element floating-point tensor, got "
                        f"{value.dtype} of shape {tuple(value.shape)}")
        if value.is_meta:
            return
        number = _local(value).item()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise _fail(f"{where}: 'step' must be a number or a tensor, got {value!r} "
                    f"({type(value).__name__})")
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise _fail(f"{where}: Invalid step value: {number} (step must be a whole number >= 0)")


def _check_values(name: str, value: Any, where: str, floating: bool, nonnegative: bool) -> None:
    if not isinstance(value, Tensor):
        raise _fail(f"{where}: {name!r} must be a tensor, got {type(value).__name__}")
    if floating and not (value.is_floating_point() or value.is_complex()):
        raise _fail(f"{where}: {name!r} must be a floating-point tensor, got {value.dtype}")
    local = _local(value)
    if local.is_meta or local.numel() == 0:
        return
    real = real_view(local)
    if not bool(torch.isfinite(real).all()):
        raise _fail(f"{where}: {name!r} holds NaN or inf")
    if nonnegative and bool((real < 0).any()):
        raise _fail(f"{where}: {name!r} holds negative values (it must be >= 0)")


def _local(t: Tensor) -> Tensor:
    dtensor = dtensor_type()
    return cast("DTensor", t).to_local() if dtensor is not None and isinstance(t, dtensor) else t


# -- the checkpoint's view (rmsprop.checkpoint) ---------------------------------------------

_SAVED_TENSOR_NAMES = frozenset(
    name + suffix for name in FORMAT_OF
    for suffix in ("", CODES_SUFFIX, SCALE_SUFFIX, LEGACY_SCALE_SUFFIX)
)


def saved_entry_kind(name: str) -> str | None:
    """What entry ``name`` of one parameter's saved state is to :class:`rmsprop.torch.RMSprop`:
    ``"guard"`` (the cold-start guard's bool), ``"step"`` (the step count), ``"tensor"`` (a
    state tensor in any storage: torch's names, a centered variance, 8-bit codes and scales,
    0.1.0's 8-bit scales) or ``None`` (nothing it keeps)."""
    if name == GUARD_KEY:
        return "guard"
    if name == "step":
        return "step"
    return "tensor" if name in _SAVED_TENSOR_NAMES else None


def saved_state_upgraded(state: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter's saved state as this version reads it, in a new dict: 8-bit state saved
    by rmsprop 0.1.0 converted (:func:`rmsprop.torch.lean.storage.upgrade_legacy_scales`)."""
    return dict(upgrade_legacy_scales(state))


def held_state_keys(state: Mapping[str, Any]) -> list[str]:
    """torch's names of the state tensors that one parameter's ``state`` holds, whatever their
    storage (8-bit codes of ``square_avg``, or a centered ``variance``, count as
    ``square_avg``); ``step`` aside."""
    return logical_keys(state)


def note_restored(params: Iterable[Tensor], restored: bool) -> None:
    """Mark ``params`` as restored from a checkpoint without their optimizer state
    (``restored``): an RMSprop that then gives them fresh state applies the cold-start guard
    (:mod:`rmsprop.torch.warm_start`). ``restored=False`` clears the mark (their optimizer state
    was restored too, or the caller declined the guard)."""
    (mark_restored if restored else clear_restored)(params)
