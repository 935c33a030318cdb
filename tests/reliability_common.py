"""Helpers of the reliability tests: an optimizer's complete observable state, bit for bit."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor


def _bits(t: Tensor) -> tuple:
    """A tensor as (dtype, shape, raw bytes): NaN payloads and signed zeros included."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    return (str(t.dtype), tuple(t.shape), bytes(flat.view(torch.uint8).numpy().tobytes()))


def _freeze(value: Any) -> Any:
    if isinstance(value, Tensor):
        return ("tensor", _bits(value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    return ("value", type(value).__name__, repr(value))


def snapshot(optimizer: Any) -> Any:
    """Parameters, state (every entry, non-parameter keys too) and param groups, as bytes."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    index = {id(p): i for i, p in enumerate(params)}
    state = []
    for key, value in optimizer.state.items():
        name = f"param {index[id(key)]}" if isinstance(key, Tensor) else repr(key)
        state.append((name, _freeze(value)))
    groups = [_freeze({k: v for k, v in g.items() if k != "params"})
              for g in optimizer.param_groups]
    return ([_bits(p) for p in params], sorted(state), groups)


def deep_state_dict(optimizer: Any) -> dict:
    """A state dict that shares no tensor with the optimizer."""
    return copy.deepcopy(optimizer.state_dict())
