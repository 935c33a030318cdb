"""The manifest's schema: every field's type and range, checked before anything reads it.

A checkpoint's checksum proves the file is the one that was written, not that its writer
followed the format: a file crafted by hand or by another tool, with the checksum recomputed,
reaches the manifest. :func:`check` refuses anything outside this schema with a
:class:`~rmsprop.checkpoint.errors.CheckpointManifestError` naming the field::

    content      {"created_by": {str: str}, "optimizer": optimizer | null,
                  "model": {"entries": {str: {"tensor": str}}} | null}
    optimizer    {"class": str, "param_groups": [group], "params": [param], "state": {index: state}}
    group        {"params": [int], "lr": number >= 0 | tensor, key: value, ...}
                 the groups' "params" are 0, 1, 2, ... in order (torch's numbering)
    param        {"shape": [int >= 0], "dtype": str, "name": str | null}
    index        a parameter's number in canonical decimal: "0", "17" (not "01", " 1", "+1")
    state        {str: value}
    value        {"value": scalar} | {"tuple": [scalar]} | {"list": [scalar]} | {"tensor": str}
    scalar       null | bool | int | float | str

Ints lie in int64's range (``10**400`` is refused, so no later ``float()`` overflows),
strings and lists are bounded, and values hold scalars only, so the depth of a manifest is
bounded by the schema itself. Options of known meaning have their types and ranges
(:data:`GROUP_KEYS`): a learning rate is a finite number >= 0, ``skipped_steps`` a count,
``centered`` a bool, ``betas`` two numbers in [0, 1), ...; an optimizer's own ranges (alpha <= 1
for RMSprop) are its own check's, after this one.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

from .errors import CheckpointManifestError

__all__ = ["check", "GROUP_KEYS", "MAX_INT", "MAX_TEXT", "MAX_ITEMS"]

MAX_INT = 2**63 - 1
"""The largest magnitude of an int in a manifest (int64's range)."""
MAX_TEXT = 4096
"""The longest string in a manifest."""
MAX_ITEMS = 1 << 24
"""The most items in one list or mapping of a manifest."""

_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
_KINDS = ("value", "tuple", "list", "tensor")


def _fail(where: str, problem: str) -> None:
    raise CheckpointManifestError(f"the checkpoint's manifest is malformed: {where} {problem}")


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # parsed near the recursion limit: no repr, a description
        return f"a deeply nested JSON {'object' if isinstance(value, dict) else 'array'}"
    return f"{text[:60]}..." if len(text) > 63 else text


# -- scalars ------------------------------------------------------------------------------------


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, float)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            _fail(where, f"is an int of {len(str(abs(value)))} digits, beyond int64's range")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            _fail(where, f"is a string of {len(value)} characters, more than {MAX_TEXT}")
    else:
        _fail(where, f"is {_describe(value)}, not null, a bool, a number or a string")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        _fail(where, f"is {_describe(value)}, not a string")
    _check_scalar(value, where)
    return value


def _check_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        _fail(where, f"is {_describe(value)}, not a JSON object")
    if len(value) > MAX_ITEMS:
        _fail(where, f"has {len(value)} entries, more than {MAX_ITEMS}")
    for key in value:
        _check_text(key, f"{where}: key {key!r}")
    return value


def _check_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(where, f"is {_describe(value)}, not a JSON array")
    if len(value) > MAX_ITEMS:
        _fail(where, f"has {len(value)} items, more than {MAX_ITEMS}")
    return value


def _check_fields(
    value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    mapping = _check_mapping(value, where)
    missing = [key for key in required if key not in mapping]
    if missing:
        _fail(where, f"lacks {', '.join(map(repr, missing))}")
    extra = sorted(set(mapping) - set(required) - set(optional))
    if extra:
        _fail(where, f"has unknown {', '.join(map(repr, extra[:5]))}")
    return mapping


def _check_count(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT:
        _fail(where, f"is {_describe(value)}, not an int >= 0")
    return value


# -- encoded values -----------------------------------------------------------------------------


def _check_value(entry: Any, where: str) -> tuple[str, Any]:
    """An encoded value: its kind and its payload, checked for structure only."""
    entry = _check_mapping(entry, where)
    if len(entry) != 1 or next(iter(entry)) not in _KINDS:
        _fail(where, f"is {_describe(entry)}, not one of "
              + ", ".join(f"{{{kind!r}: ...}}" for kind in _KINDS))
    (kind, payload), = entry.items()
    if kind == "tensor":
        _check_text(payload, f"{where} (a tensor name)")
    elif kind == "value":
        _check_scalar(payload, where)
    else:
        for i, item in enumerate(_check_list(payload, where)):
            _check_scalar(item, f"{where}[{i}]")
    return kind, payload


Rule = Callable[[str, Any, str], None]


def _number(low: float, high: float = math.inf, tensor: bool = False,
            high_open: bool = False) -> Rule:
    def rule(kind: str, payload: Any, where: str) -> None:
        if kind == "tensor" and tensor:
            return  # its value is checked once the tensor is read
        if kind != "value" or not _is_number(payload):
            _fail(where, f"is {_describe({kind: payload})}, not a number")
        inside = low <= payload < high if high_open else low <= payload <= high
        if not (math.isfinite(payload) and inside):
            bound = f"< {high}" if high_open else f"<= {high}"
            _fail(where, f"is {payload!r}, not a finite number >= {low}"
                  + (f" and {bound}" if math.isfinite(high) else ""))
    return rule


def _flag(optional: bool) -> Rule:
    def rule(kind: str, payload: Any, where: str) -> None:
        if kind != "value" or not (isinstance(payload, bool) or (optional and payload is None)):
            _fail(where, f"is {_describe({kind: payload})}, not a bool"
                  + (" or null" if optional else ""))
    return rule


def _text(kind: str, payload: Any, where: str) -> None:
    if kind != "value" or not isinstance(payload, str):
        _fail(where, f"is {_describe({kind: payload})}, not a string")


def _count(kind: str, payload: Any, where: str) -> None:
    if kind != "value":
        _fail(where, f"is {_describe({kind: payload})}, not an int >= 0")
    _check_count(payload, where)


def _texts(kind: str, payload: Any, where: str) -> None:
    if kind not in ("list", "tuple") or not all(isinstance(x, str) for x in payload):
        _fail(where, f"is {_describe({kind: payload})}, not a list of strings")


def _pair_in_unit_interval(kind: str, payload: Any, where: str) -> None:
    if kind not in ("list", "tuple") or len(payload) != 2:
        _fail(where, f"is {_describe({kind: payload})}, not a pair of numbers")
    for i, item in enumerate(payload):
        _number(0.0, 1.0, high_open=True)("value", item, f"{where}[{i}]")


_NONNEGATIVE = _number(0.0)


def _eps(kind: str, payload: Any, where: str) -> None:
    """A number >= 0; or, as torch.optim.Adafactor keeps it, a tuple of them and nulls."""
    if kind in ("list", "tuple"):
        for i, item in enumerate(payload):
            if item is not None:
                _NONNEGATIVE("value", item, f"{where}[{i}]")
    else:
        _NONNEGATIVE(kind, payload, where)


GROUP_KEYS: dict[str, Rule] = {
    "lr": _number(0.0, tensor=True),
    "initial_lr": _number(0.0, tensor=True),
    "skipped_steps": _count,
    "min_8bit_size": _count,
    "alpha": _NONNEGATIVE,
    "eps": _eps,
    "weight_decay": _NONNEGATIVE,
    "momentum": _NONNEGATIVE,
    "initial_accumulator_value": _NONNEGATIVE,
    "betas": _pair_in_unit_interval,
    "centered": _flag(optional=False),
    "maximize": _flag(optional=False),
    "capturable": _flag(optional=False),
    "differentiable": _flag(optional=False),
    "foreach": _flag(optional=True),
    "fused": _flag(optional=True),
    "nesterov": _flag(optional=True),
    "amsgrad": _flag(optional=True),
    "eps_in_sqrt": _flag(optional=True),
    "lr_in_momentum": _flag(optional=True),
    "decoupled_weight_decay": _flag(optional=True),
    "bias_correction": _flag(optional=True),
    "flavor": _text,
    "impl": _text,
    "nonfinite": _text,
    "state_precision": _text,
    "param_names": _texts,
}
"""Group entries of known meaning (rmsprop's options and torch's common ones) and their rule;
other entries are checked for structure only."""


# -- the manifest -------------------------------------------------------------------------------


def check(content: Any) -> None:
    """Raise :class:`CheckpointManifestError` unless ``content`` follows the schema."""
    content = _check_fields(content, "the content", ("created_by", "optimizer", "model"))
    for key, value in _check_mapping(content["created_by"], "created_by").items():
        _check_text(value, f"created_by[{key!r}]")
    if content["optimizer"] is not None:
        _check_optimizer(content["optimizer"])
    if content["model"] is not None:
        model = _check_fields(content["model"], "model", ("entries",))
        for name, entry in _check_mapping(model["entries"], "model.entries").items():
            if _check_value(entry, f"model entry {name!r}")[0] != "tensor":
                _fail(f"model entry {name!r}", f"is {_describe(entry)}, not a tensor")


def _check_optimizer(optimizer: Any) -> None:
    optimizer = _check_fields(optimizer, "optimizer", ("class", "param_groups", "params", "state"))
    _check_text(optimizer["class"], "optimizer.class")
    params = _check_list(optimizer["params"], "optimizer.params")
    for i, param in enumerate(params):
        where = f"optimizer.params[{i}]"
        param = _check_fields(param, where, ("shape", "dtype", "name"))
        for d, size in enumerate(_check_list(param["shape"], f"{where}.shape")):
            _check_count(size, f"{where}.shape[{d}]")
        _check_text(param["dtype"], f"{where}.dtype")
        if param["name"] is not None:
            _check_text(param["name"], f"{where}.name")
    numbered = 0
    for g, group in enumerate(_check_list(optimizer["param_groups"], "optimizer.param_groups")):
        where = f"param group {g}"
        group = _check_mapping(group, where)
        for key in ("params", "lr"):
            if key not in group:
                _fail(where, f"lacks {key!r}")
        indices = _check_list(group["params"], f"{where} 'params'")
        expected = list(range(numbered, numbered + len(indices)))
        if indices != expected or any(type(i) is not int for i in indices):
            _fail(f"{where} 'params'", f"is {_describe(indices)}, not the parameter numbers "
                  f"{numbered} to {numbered + len(indices) - 1} in order")
        numbered += len(indices)
        for key, entry in group.items():
            if key != "params":
                kind, payload = _check_value(entry, f"{where} {key!r}")
                rule = GROUP_KEYS.get(key)
                if rule is not None:
                    rule(kind, payload, f"{where} {key!r}")
    if numbered != len(params):
        _fail("optimizer.param_groups", f"number {numbered} parameters, optimizer.params "
              f"describes {len(params)}")
    for index, entries in _check_mapping(optimizer["state"], "optimizer.state").items():
        if not _INDEX.fullmatch(index) or int(index) >= len(params):
            _fail("optimizer.state", f"has the key {index!r}, not the canonical decimal number "
                  f"of one of its {len(params)} parameters")
        for key, entry in _check_mapping(entries, f"optimizer.state[{index!r}]").items():
            _check_value(entry, f"state {key!r} of parameter {index}")
