"""rmsprop.checkpoint: round trips, validation before any change, and atomic saves.

- save -> load -> continue is bit-identical to never stopping, for every implementation and a
  spread of option sets and flavours (and 8-bit state when the optimizer offers it);
- every way a file can be wrong (a flipped byte anywhere, a truncation, a wrong shape or
  dtype, a missing or unexpected tensor, other options, another optimizer, another format)
  raises its own CheckpointError subclass, and the optimizer and model are bitwise unchanged;
- a save that fails at any stage (an exception, or the process killed) leaves the previous
  checkpoint loadable with its old content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from checkpoint_common import (  # noqa: F401 (one_thread: an autouse fixture)
    X,
    assert_same_run,
    assert_unchanged,
    cpu_impls,
    make_model,
    one_thread,
    snapshot,
    train,
    trained,
)
import rmsprop.checkpoint as ckpt
from rmsprop.checkpoint import fileformat
from rmsprop.testing import option_matrix
from rmsprop.torch import RMSprop

IMPLS = cpu_impls()
# Every state tensor and option at least once: none; torch-form Nesterov momentum with
# centering, AMSGrad and L2; tf-form momentum with decoupled decay, bias correction, maximize,
# eps in the root and v0 = 1. Plus two flavours.
SPECS = [
    next(option_matrix(momentum=0.0, centered=False, amsgrad=False, weight_decay=0.0,
                       bias_correction=False, maximize=False)).options(),
    next(option_matrix(momentum=0.9, nesterov=True, lr_in_momentum=False, centered=True,
                       amsgrad=True, weight_decay=0.1, decoupled_weight_decay=False)).options(),
    next(option_matrix(momentum=0.9, lr_in_momentum=True, weight_decay=0.1,
                       decoupled_weight_decay=True, bias_correction=True, maximize=True,
                       eps_in_sqrt=True, initial_accumulator_value=1.0)).options(),
]
FLAVOR_OPTIONS = [{"flavor": name, "lr": 1e-2} for name in ("tensorflow", "graves")]
SPEC_IDS = ["plain", "nesterov-centered-amsgrad-l2", "tf-momentum-decoupled-bc-maximize-v0",
            "tensorflow", "graves"]


def _options(spec_options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec_options.items() if k not in ("flavor",)}


# -- round trips ----------------------------------------------------------------------------------


def _round_trip(tmp_path: Path, options: dict[str, Any], impl: str) -> None:
    uninterrupted = trained(options, impl, steps=3)
    train(*uninterrupted, 3, 3)
    first = trained(options, impl, steps=3)
    ckpt.save(tmp_path / "run.ckpt", first[1], first[0])
    model = make_model()
    with torch.no_grad():  # the resumed run starts from other values: all must come from the file
        for p in model.parameters():
            p.add_(1.0)
    optimizer = RMSprop(model.parameters(), impl=impl, **options)
    ckpt.load(tmp_path / "run.ckpt", optimizer, model)
    assert_same_run(first, (model, optimizer))
    train(model, optimizer, 3, 3)
    assert_same_run(uninterrupted, (model, optimizer))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", SPECS + FLAVOR_OPTIONS, ids=SPEC_IDS)
def test_round_trip_is_bit_identical_to_never_stopping(tmp_path, impl, options) -> None:
    _round_trip(tmp_path, _options(options) if "flavor" not in options else options, impl)


LEAN = {"momentum": 0.9, "centered": True, "amsgrad": True, "min_8bit_size": 0}
"""Lean state for every parameter of the small model (the default min_8bit_size would keep
its tensors, all under 4096 elements, in float32)."""


@pytest.mark.parametrize("precision", ["8bit", "bf16"])
@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_round_trip_with_lean_state(tmp_path, impl, precision) -> None:
    # Lean state is decoded and encoded inside the fused CPU kernel, which "auto" picks for
    # it; loop, foreach and triton refuse it.
    options = {**LEAN, "state_precision": precision}
    _round_trip(tmp_path, options, impl)
    _, optimizer = trained(options, impl, steps=1)
    stored = {name for state in optimizer.state.values() for name in state}
    assert ("variance.codes" if precision == "8bit" else "variance") in stored


def test_a_checkpoint_of_8bit_state_resumes_with_float32_state(tmp_path) -> None:
    """state_precision is how a run stores its state: a loading optimizer keeps its own and
    converts (the float32 state is the 8-bit state decoded)."""
    from rmsprop.torch.lean.storage import full_value

    model, lean = trained({**LEAN, "state_precision": "8bit"}, "auto", steps=3)
    ckpt.save(tmp_path / "run.ckpt", lean, model)
    optimizer = RMSprop(model.parameters(), **{**LEAN, "min_8bit_size": 4096})
    ckpt.load(tmp_path / "run.ckpt", optimizer, model)
    assert optimizer.param_groups[0]["state_precision"] == "fp32"
    for p in model.parameters():
        state = optimizer.state[p]
        assert sorted(k for k in state if k != "step") == sorted(
            ["square_avg", "max_square_avg", "grad_avg", "momentum_buffer"])
        for key in ("square_avg", "grad_avg", "momentum_buffer"):
            assert torch.equal(state[key], full_value(lean.state[p], key, p)), key
    train(model, optimizer, 3, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_round_trip_keeps_skipped_steps_tensor_lr_and_several_groups(tmp_path) -> None:
    def build() -> tuple[torch.nn.Module, RMSprop]:
        model = make_model()
        optimizer = RMSprop(
            [{"params": model[0].parameters(), "momentum": 0.9},
             {"params": model[3].parameters(), "flavor": "keras", "lr": torch.tensor(0.01)},
             {"params": model[1].parameters()}],
            nonfinite="skip",
        )
        return model, optimizer

    model, optimizer = build()
    optimizer.zero_grad()
    model(X[:8]).sum().backward()
    model[0].weight.grad[0, 0] = float("nan")
    optimizer.step()
    assert optimizer.skipped_steps == 1
    optimizer.zero_grad()
    model(X[:8]).sum().backward()
    optimizer.step()
    ckpt.save(tmp_path / "run.ckpt", optimizer, model)
    other_model, other = build()
    ckpt.load(tmp_path / "run.ckpt", other, other_model)
    assert other.skipped_steps == 1
    assert [g["flavor"] for g in other.param_groups] == ["pytorch", "keras", "pytorch"]
    assert_same_run((model, optimizer), (other_model, other))


def test_any_torch_optimizer_round_trips(tmp_path) -> None:
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    train(model, optimizer, 0, 2)
    ckpt.save(tmp_path / "adam.ckpt", optimizer, model)
    other_model = make_model()
    other = torch.optim.Adam(other_model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    ckpt.load(tmp_path / "adam.ckpt", other, other_model)
    assert other.param_groups[0]["betas"] == (0.8, 0.9)
    assert_same_run((model, optimizer), (other_model, other))


def test_the_file_is_plain_safetensors_with_documented_metadata(tmp_path) -> None:
    model, optimizer = trained({"momentum": 0.9}, "foreach", steps=2)
    ckpt.save(tmp_path / "run.ckpt", optimizer, model)
    with safetensors.safe_open(tmp_path / "run.ckpt", framework="pt") as f:
        metadata = f.metadata()
        names = set(f.keys())
    assert metadata["format"] == "rmsprop.checkpoint"
    assert metadata["format_version"] == "1"
    assert metadata["checksum"].startswith("sha256:")
    content = json.loads(metadata["content"])
    assert content["optimizer"]["class"] == "rmsprop.torch.optimizer.RMSprop"
    assert content["optimizer"]["param_groups"][0]["momentum"] == {"value": 0.9}
    assert content["optimizer"]["params"][0] == {
        "shape": [6, 4], "dtype": "float32", "name": "0.weight"
    }
    assert content["optimizer"]["state"]["0"]["momentum_buffer"] == {
        "tensor": "optimizer.state.0.momentum_buffer"
    }
    assert "model.1.running_mean" in names and "optimizer.state.0.square_avg" in names


def test_params_only_and_optimizer_only(tmp_path) -> None:
    model, optimizer = trained({}, "loop", steps=2)
    ckpt.save(tmp_path / "model.ckpt", model=model)
    ckpt.save(tmp_path / "optimizer.ckpt", optimizer)
    other = make_model()
    ckpt.load(tmp_path / "model.ckpt", model=other)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    fresh = RMSprop(other.parameters(), impl="loop")
    before = snapshot(fresh, other)
    with pytest.raises(ckpt.MissingTensorError, match="no optimizer state"):
        ckpt.load(tmp_path / "model.ckpt", fresh, other)
    assert_unchanged(before, fresh, other)
    with pytest.raises(ckpt.MissingTensorError, match="no model state"):
        ckpt.load(tmp_path / "optimizer.ckpt", fresh, other)
    assert_unchanged(before, fresh, other)
    ckpt.load(tmp_path / "optimizer.ckpt", fresh)
    assert_unchanged(snapshot(optimizer, None), fresh, None)


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="neither"):
        ckpt.save(tmp_path / "x.ckpt")
    model, optimizer = trained({}, "loop", steps=1)
    ckpt.save(tmp_path / "x.ckpt", optimizer, model)
    with pytest.raises(ValueError, match="Invalid options value: 'loose'"):
        ckpt.load(tmp_path / "x.ckpt", optimizer, options="loose")
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "absent.ckpt", optimizer)


# -- errors: each its own, and nothing changed -------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> dict[str, Any]:
    """A checkpoint of a trained run, and a different run (state and weights) to load into."""
    model, optimizer = trained({"momentum": 0.9, "centered": True}, "foreach", steps=3)
    path = tmp_path / "run.ckpt"
    ckpt.save(path, optimizer, model)
    target_model = make_model()
    target = RMSprop(target_model.parameters(), impl="foreach", momentum=0.9, centered=True)
    train(target_model, target, 10, 2)
    return {"path": path, "model": target_model, "optimizer": target, "bytes": path.read_bytes()}


def _expect(
    error: type[Exception], path: Path, optimizer: Any, model: Any, match: str = "", **kw: Any
) -> None:
    before = snapshot(optimizer, model) if optimizer is not None else None
    model_before = {k: v.clone() for k, v in model.state_dict().items()} if model else {}
    with pytest.raises(error, match=match):
        ckpt.load(path, optimizer, model, **kw)
    if optimizer is not None:
        assert_unchanged(before, optimizer, model)
    for key, value in model_before.items():
        assert torch.equal(model.state_dict()[key], value)


def _data_start(blob: bytes) -> int:
    return 8 + int.from_bytes(blob[:8], "little")


def test_a_flipped_byte_in_the_data_fails_the_checksum(saved) -> None:
    blob = bytearray(saved["bytes"])
    blob[_data_start(blob) + 5] ^= 0x01
    saved["path"].write_bytes(blob)
    _expect(ckpt.CheckpointChecksumError, saved["path"], saved["optimizer"], saved["model"],
            "does not match its recorded checksum")


def test_a_flipped_byte_anywhere_is_detected(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = RMSprop(model.parameters(), momentum=0.9)
    model(X[:4, :3]).sum().backward()
    optimizer.step()
    path = tmp_path / "small.ckpt"
    ckpt.save(path, optimizer, model)
    blob = path.read_bytes()
    before = snapshot(optimizer, model)
    kinds = set()
    for position in [*range(64), *range(64, len(blob), 3)]:  # the size field, then a third
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        path.write_bytes(damaged)
        with pytest.raises(ckpt.CheckpointError) as caught:
            ckpt.load(path, optimizer, model)
        kinds.add(type(caught.value).__name__)
    assert_unchanged(before, optimizer, model)
    assert {"CheckpointChecksumError", "CheckpointCorruptError", "CheckpointTruncatedError"} <= (
        kinds
    )


@pytest.mark.parametrize(
    "keep", ["nothing", "4 bytes", "header size", "half the header", "half", "all but 1"]
)
def test_a_truncated_file(saved, keep) -> None:
    blob = saved["bytes"]
    lengths = {
        "nothing": 0, "4 bytes": 4, "header size": 8, "half the header": _data_start(blob) // 2,
        "half": len(blob) // 2, "all but 1": len(blob) - 1,
    }
    saved["path"].write_bytes(blob[: lengths[keep]])
    _expect(ckpt.CheckpointTruncatedError, saved["path"], saved["optimizer"], saved["model"],
            "truncated")


def test_a_wrong_shape(saved, tmp_path) -> None:
    model = make_model(out_features=5)
    optimizer = RMSprop(model.parameters(), impl="foreach", momentum=0.9, centered=True)
    train(torch.nn.Sequential(model, torch.nn.Linear(5, 3)), optimizer, 0, 1)
    _expect(ckpt.ShapeMismatchError, saved["path"], optimizer, model,
            r"parameter 4 \('3.weight'\): shape \(3, 6\) in the checkpoint, "
            r"\(5, 6\) in the optimizer")
    _expect(ckpt.ShapeMismatchError, saved["path"], None, model,
            r"model entry '3.weight': shape \(3, 6\) in the checkpoint, \(5, 6\) here")


def test_a_wrong_dtype(saved) -> None:
    model = make_model().double()
    optimizer = RMSprop(model.parameters(), impl="foreach", momentum=0.9, centered=True)
    _expect(ckpt.DtypeMismatchError, saved["path"], optimizer, model,
            "dtype float32 in the checkpoint, float64")


def test_a_missing_model_tensor(saved) -> None:
    model = torch.nn.Sequential(*make_model(), torch.nn.Linear(3, 3))
    optimizer = RMSprop(list(model.parameters())[:6], impl="foreach", momentum=0.9, centered=True)
    _expect(ckpt.MissingTensorError, saved["path"], optimizer, model,
            "model entries not in the checkpoint: 4.weight, 4.bias")


def _rewrite(path: Path, edit: Any) -> None:
    """Re-save a checkpoint's tensors and content after ``edit(tensors, content)``, with a valid
    checksum: a file another tool wrote, sound but incomplete."""
    tensors, content = fileformat.read(path)
    edit(tensors, content)
    fileformat.write(path, tensors, content)


def test_a_missing_state_tensor(saved) -> None:
    _rewrite(saved["path"], lambda tensors, content: tensors.pop("optimizer.state.2.grad_avg"))
    _expect(ckpt.MissingTensorError, saved["path"], saved["optimizer"], saved["model"],
            "'optimizer.state.2.grad_avg' is not in the checkpoint")


def test_a_state_entry_the_options_need(saved) -> None:
    def drop(tensors: dict, content: dict) -> None:
        del tensors["optimizer.state.0.momentum_buffer"]
        del content["optimizer"]["state"]["0"]["momentum_buffer"]

    _rewrite(saved["path"], drop)
    _expect(ckpt.MissingTensorError, saved["path"], saved["optimizer"], saved["model"],
            r"state 'momentum_buffer' of parameter 0 \('0.weight'\) is not in the checkpoint")


def test_an_unexpected_tensor(saved) -> None:
    _rewrite(saved["path"], lambda tensors, content: tensors.update(stray=torch.zeros(2)))
    _expect(ckpt.UnexpectedTensorError, saved["path"], saved["optimizer"], saved["model"], "stray")


def test_a_malformed_manifest(saved) -> None:
    _rewrite(saved["path"], lambda tensors, content: content["optimizer"].pop("params"))
    _expect(ckpt.CheckpointCorruptError, saved["path"], saved["optimizer"], saved["model"],
            "manifest is malformed")


def test_a_model_without_an_entry_of_the_checkpoint(saved) -> None:
    model = torch.nn.Sequential(*list(make_model())[:3], torch.nn.Linear(6, 3, bias=False))
    _expect(ckpt.UnexpectedTensorError, saved["path"], None, model, "3.bias")


def test_a_different_parameter_count(saved) -> None:
    model = make_model()
    optimizer = RMSprop(list(model.parameters())[:5], momentum=0.9, centered=True)
    _expect(ckpt.ParamCountMismatchError, saved["path"], optimizer, model,
            "param group 0: 6 parameters in the checkpoint, 5 in the optimizer")
    two_groups = RMSprop([{"params": list(model.parameters())[:3]},
                          {"params": list(model.parameters())[3:]}], momentum=0.9, centered=True)
    _expect(ckpt.ParamCountMismatchError, saved["path"], two_groups, model,
            "1 param groups, the optimizer 2")


def test_different_options_and_optimizer_class(saved) -> None:
    model = make_model()
    optimizer = RMSprop(model.parameters(), momentum=0.5, centered=True)
    _expect(ckpt.OptionsMismatchError, saved["path"], optimizer, model,
            "momentum=0.9 in the checkpoint, 0.5 here")
    ckpt.load(saved["path"], optimizer, model, options="checkpoint")
    assert optimizer.param_groups[0]["momentum"] == 0.9
    torch_optimizer = torch.optim.RMSprop(model.parameters(), momentum=0.9, centered=True)
    _expect(ckpt.OptionsMismatchError, saved["path"], torch_optimizer, model,
            "rmsprop.torch.optimizer.RMSprop, the optimizer is torch.optim.rmsprop.RMSprop")


def test_invalid_options_in_the_checkpoint(saved) -> None:
    def invalid(tensors: dict, content: dict) -> None:
        content["optimizer"]["param_groups"][0]["alpha"] = {"value": 1.5}

    _rewrite(saved["path"], invalid)
    _expect(ckpt.OptionsMismatchError, saved["path"], saved["optimizer"], saved["model"],
            "invalid options in the checkpoint: Invalid alpha value: 1.5", options="checkpoint")


def test_not_an_rmsprop_checkpoint_or_a_newer_format(saved, tmp_path) -> None:
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, plain)
    _expect(ckpt.CheckpointFormatError, plain, saved["optimizer"], saved["model"],
            "not an rmsprop checkpoint")
    newer = tmp_path / "newer.ckpt"
    safetensors.torch.save_file(
        {"w": torch.zeros(2)}, newer,
        metadata={"format": "rmsprop.checkpoint", "format_version": "2", "content": "{}",
                  "checksum": ""},
    )
    _expect(ckpt.CheckpointFormatError, newer, saved["optimizer"], saved["model"],
            "format version '2', this rmsprop reads version 1")
    # Files of other kinds say what they are not, rather than "truncated".
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint, just some notes\n" * 4)
    torch_file = tmp_path / "state.pt"
    torch.save(saved["optimizer"].state_dict(), torch_file)
    for other in (text, torch_file):
        _expect(ckpt.CheckpointFormatError, other, saved["optimizer"], saved["model"],
                "not a safetensors file")


# -- atomic saves -------------------------------------------------------------------------------


STAGES = ["encode", "write", "fsync", "replace"]


def _fail_at(monkeypatch: pytest.MonkeyPatch, stage: str, failure: Any) -> None:
    if stage == "encode":
        monkeypatch.setattr(fileformat, "_encode", lambda *a: failure())
    elif stage == "write":
        original = fileformat._write_all

        def half_then_fail(file: Any, blob: bytes) -> None:
            original(file, blob[: len(blob) // 2])
            file.flush()
            failure()

        monkeypatch.setattr(fileformat, "_write_all", half_then_fail)
    elif stage == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: failure())
    elif stage == "replace":
        monkeypatch.setattr(os, "replace", lambda a, b: failure())
    elif stage == "fsync_directory":
        monkeypatch.setattr(fileformat, "_fsync_directory", lambda d: failure())


def _old_and_new(tmp_path: Path) -> tuple[Path, tuple, tuple]:
    old = trained({"momentum": 0.9}, "loop", steps=2)
    path = tmp_path / "run.ckpt"
    ckpt.save(path, old[1], old[0])
    new = trained({"momentum": 0.9}, "loop", steps=4)
    return path, old, new


def _assert_loads_as(path: Path, run: tuple) -> None:
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl="loop", momentum=0.9)
    ckpt.load(path, optimizer, model)
    assert_same_run(run, (model, optimizer))


@pytest.mark.parametrize("stage", STAGES)
def test_an_exception_at_any_stage_keeps_the_old_checkpoint(tmp_path, monkeypatch, stage) -> None:
    path, old, new = _old_and_new(tmp_path)

    def failure() -> None:
        raise OSError(f"injected failure at {stage}")

    with monkeypatch.context() as patch:
        _fail_at(patch, stage, failure)
        with pytest.raises(OSError, match="injected"):
            ckpt.save(path, new[1], new[0])
    _assert_loads_as(path, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary left
    ckpt.save(path, new[1], new[0])
    _assert_loads_as(path, new)


def test_a_failure_after_the_replace_leaves_the_new_checkpoint_whole(tmp_path, monkeypatch) -> None:
    path, old, new = _old_and_new(tmp_path)

    def failure() -> None:
        raise OSError("injected failure at fsync_directory")

    with monkeypatch.context() as patch:
        _fail_at(patch, "fsync_directory", failure)
        with pytest.raises(OSError, match="injected"):
            ckpt.save(path, new[1], new[0])
    _assert_loads_as(path, new)


@pytest.mark.parametrize("stage", ["write", "fsync", "replace"])
def test_a_process_killed_during_a_save_keeps_the_old_checkpoint(
    tmp_path, monkeypatch, stage
) -> None:
    path, old, new = _old_and_new(tmp_path)
    pid = os.fork()
    if pid == 0:  # the child dies inside the save, as a killed process would: no cleanup runs
        try:
            _fail_at(monkeypatch, stage, lambda: os._exit(17))
            ckpt.save(path, new[1], new[0])
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17
    _assert_loads_as(path, old)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run.ckpt"]
    assert all(name.startswith(".run.ckpt.") and name.endswith(".tmp") for name in leftovers)
    assert leftovers, "the killed save should have left its temporary file"
