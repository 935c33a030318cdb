"""rmsprop.checkpoint.load on mutated checkpoint files (issue 14: the property-based test).

Hypothesis mutates a saved checkpoint (of float32 state, and of 8-bit codes and scales) and
recomputes its checksum, so that every mutation reaches the manifest and the tensors as a
crafted file would: it drops a field, gives one another type, an out-of-range value or a
non-canonical key, adds keys, nests values deeply, drops, reshapes, retypes or adds tensors,
points an entry at another tensor, and truncates or extends the file. The loads use
``options="check"`` (the default). The property, for every mutated file:

- either the load is refused with a ``CheckpointError`` subclass (never ``TypeError``,
  ``ValueError``, ``OverflowError``, ``RecursionError``, ...) and the optimizer and model are
  bitwise what they were;
- or it loads, and the next step is bit-identical to the step after loading the unmutated
  file with the values a load takes unchecked as ``load_state_dict`` does (the learning rate
  the file gave): the same error if that step raises, NaN where it gives NaN. (A learning rate
  of 1e308 is such a value: it overflows float32, in torch's step too.)
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from checkpoint_common import (  # noqa: F401 (one_thread: an autouse fixture)
    X,
    Y,
    assert_same_run,
    assert_unchanged,
    make_model,
    one_thread,
    snapshot,
    train,
)
import rmsprop.checkpoint as ckpt
from rmsprop.checkpoint import fileformat
from rmsprop.checkpoint.training_state import UNCHECKED_KEYS
from rmsprop.torch import RMSprop

OPTIONS = {"momentum": 0.9, "centered": True, "amsgrad": True, "nonfinite": "raise"}
STATES = {  # float32 state (the loop kernel), and 8-bit codes and scales (the fused one)
    "fp32": {"impl": "loop"},
    "8bit": {"impl": "auto", "state_precision": "8bit", "min_8bit_size": 0},
}
DEEP = "\x00deep\x00"

REPLACEMENTS = [
    None, True, False, 0, 1, -1, 2, 0.5, 1.5, -0.5, math.nan, math.inf, -math.inf, 1e308,
    10**30, 2**63, 10**400, "", "x", "01", " 1", "abc", "float64", [], [1], [[0.9]], {},
    {"value": 1}, {"value": "x"}, {"tensor": "model.0.weight"}, {"list": [1, 2]},
    {"tuple": [0.9, "x"]}, {"value": 1, "list": []}, {"other": 1}, DEEP,
]
KEY_RENAMES = ["01", " 1", "1 ", "+1", "-1", "1.0", "abc", "\u0661", "6", "99", "", "extra"]


def _build(state: str, first: int, steps: int) -> tuple[torch.nn.Module, RMSprop]:
    model = make_model()
    optimizer = RMSprop(model.parameters(), **OPTIONS, **STATES[state])
    train(model, optimizer, first, steps)
    return model, optimizer


def _step(model: torch.nn.Module, optimizer: RMSprop) -> None:
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(X[:16]), Y[:16]).backward()
    optimizer.step()


@pytest.fixture(scope="module", params=list(STATES))
def clean(request, tmp_path_factory) -> dict[str, Any]:
    """The unmutated checkpoint's tensors and content (made on one thread, as the tests run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, optimizer = _build(request.param, 0, 3)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("clean") / "run.ckpt"
    ckpt.save(path, optimizer, model)
    tensors, content = fileformat.read(path)
    return {"tensors": tensors, "content": content, "bytes": path.read_bytes(),
            "state": request.param}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in the manifest: keys of objects and indices of arrays."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*prefix, i)))
    return found


def _parent(content: Any, path: tuple) -> Any:
    for key in path[:-1]:
        content = content[key]
    return content


@st.composite
def mutations(draw: Any, clean: dict[str, Any]) -> list[tuple]:
    content = clean["content"]
    paths = [p for p in _paths(content) if p]
    names = sorted(clean["tensors"])
    chosen = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(
            ["drop", "replace", "rename", "extra", "deep", "tensor drop", "tensor reshape",
             "tensor dtype", "tensor extra", "repoint", "truncate", "extend"]))
        if kind in ("drop", "replace", "rename", "extra", "deep"):
            path = draw(st.sampled_from(paths))
            value = draw(st.sampled_from(REPLACEMENTS))
            key = draw(st.sampled_from(KEY_RENAMES))
            depth = draw(st.sampled_from([64, 900, 5000, 100_000]))
            chosen.append((kind, path, value, key, depth))
        elif kind.startswith("tensor") or kind == "repoint":
            name = draw(st.sampled_from(names))
            other = draw(st.sampled_from(names))
            dtype = draw(st.sampled_from([torch.float64, torch.float16, torch.int32,
                                          torch.bfloat16, torch.uint8]))
            chosen.append((kind, name, other, dtype))
        else:
            chosen.append((kind, draw(st.floats(0.0, 1.0)), draw(st.integers(1, 4096))))
    return chosen


def _mutate_manifest(content: dict, mutation: tuple) -> str | None:
    """Apply one manifest mutation; return the deep-nesting text to substitute, if any."""
    kind, path, value, key, depth = mutation
    try:
        parent = _parent(content, path)
        last = path[-1]
        parent[last]
    except (KeyError, IndexError, TypeError):
        return None  # an earlier mutation removed this position
    if kind == "drop":
        del parent[last]
    elif kind == "replace":
        parent[last] = copy.deepcopy(value)
    elif kind == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif kind == "extra" and isinstance(parent[last], dict):
        parent[last][key] = copy.deepcopy(value)
    elif kind == "deep":
        parent[last] = DEEP
        return "[" * depth + "]" * depth
    return None


def _mutate_tensors(tensors: dict, content: dict, mutation: tuple) -> None:
    kind, name, other, dtype = mutation
    if name not in tensors:
        return
    if kind == "tensor drop":
        del tensors[name]
    elif kind == "tensor reshape":
        tensors[name] = tensors[name].reshape(-1, 1) if tensors[name].dim() else (
            tensors[name].reshape(1))
    elif kind == "tensor dtype":
        tensors[name] = tensors[name].to(dtype)
    elif kind == "tensor extra":
        tensors[name + ".extra"] = torch.zeros(3)
    elif kind == "repoint":  # an entry names another tensor; its own is dropped
        text = json.dumps(content)
        target = json.dumps({"tensor": name})
        if target in text and other != name:
            content.update(json.loads(text.replace(target, json.dumps({"tensor": other}))))
            del tensors[name]


def _mutated_file(path: Path, clean: dict[str, Any], chosen: list[tuple]) -> None:
    content = copy.deepcopy(clean["content"])
    tensors = dict(clean["tensors"])
    deep = None
    for mutation in chosen:
        if mutation[0] in ("drop", "replace", "rename", "extra", "deep"):
            deep = _mutate_manifest(content, mutation) or deep
        elif mutation[0] not in ("truncate", "extend"):
            _mutate_tensors(tensors, content, mutation)
    text = json.dumps(content, sort_keys=True)
    if deep is not None:
        text = text.replace(json.dumps(DEEP), deep)
    fields = {"format": fileformat.FORMAT, "format_version": str(fileformat.FORMAT_VERSION),
              "content": text}
    metadata = {**fields, "checksum": fileformat.checksum(tensors, fields)}
    blob = safetensors.torch.save(tensors, metadata=metadata)
    for mutation in chosen:
        if mutation[0] == "truncate":
            blob = blob[: int(mutation[1] * (len(blob) - 1))]
        elif mutation[0] == "extend":
            blob = blob + b"\0" * mutation[2]
    path.write_bytes(blob)


@settings(max_examples=int(os.environ.get("RMSPROP_FUZZ_EXAMPLES", 120)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_checkpoint_loads_as_the_clean_one_or_is_refused(
    clean, tmp_path, data
) -> None:
    event(_check_mutated(clean, tmp_path, data.draw(mutations(clean))))


@pytest.mark.parametrize("lr", [1e308, 1e30, 0.0])
def test_a_learning_rate_from_the_file_steps_as_with_the_clean_file(clean, tmp_path, lr):
    """The learning rate is taken from the file unchecked: the step is the clean file's with
    that rate (1e308 overflows float32: the same error, or the same NaN and inf, as there)."""
    lr_path = ("optimizer", "param_groups", 0, "lr", "value")
    assert _check_mutated(clean, tmp_path, [("replace", lr_path, lr, "01", 64)]) == "loaded"


def _check_mutated(clean: dict[str, Any], tmp_path: Path, chosen: list[tuple]) -> str:
    """The property of the module docstring for one list of mutations; returns what
    happened ("loaded", or "refused: " and the error's type)."""
    path = tmp_path / "mutated.ckpt"
    _mutated_file(path, clean, chosen)
    model, optimizer = _build(clean["state"], 10, 2)  # other weights and state: a load must replace them all
    before = snapshot(optimizer, model)
    try:
        ckpt.load(path, optimizer, model)
    except ckpt.CheckpointError as error:
        assert_unchanged(before, optimizer, model)
        return f"refused: {type(error).__name__}"
    reference = _build(clean["state"], 10, 2)
    (path.parent / "clean.ckpt").write_bytes(clean["bytes"])
    ckpt.load(path.parent / "clean.ckpt", reference[1], reference[0])
    for group, loaded in zip(reference[1].param_groups, optimizer.param_groups):
        for key in UNCHECKED_KEYS:  # taken from the file unchecked, as load_state_dict does
            if key in loaded and key != "params":
                group[key] = loaded[key]
    assert _step_error(model, optimizer) == _step_error(*reference)
    assert_same_run(reference, (model, optimizer), equal_nan=True)
    return "loaded"


def _step_error(model: torch.nn.Module, optimizer: RMSprop) -> str | None:
    """The type of the error a step raises, or None."""
    try:
        _step(model, optimizer)
    except Exception as error:  # the test compares it with the reference's
        return type(error).__name__
    return None


def test_the_clean_checkpoint_loads(clean, tmp_path) -> None:
    """The property's other half is reachable: the unmutated file loads and matches."""
    path = tmp_path / "clean.ckpt"
    path.write_bytes(clean["bytes"])
    model, optimizer = _build(clean["state"], 10, 2)
    ckpt.load(path, optimizer, model)
    reference = _build(clean["state"], 0, 3)
    _step(model, optimizer)
    _step(*reference)
    assert_same_run(reference, (model, optimizer))
