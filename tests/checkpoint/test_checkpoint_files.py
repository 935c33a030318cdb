"""rmsprop.checkpoint and the files around it: what a save may replace, what a load reads.

Regression tests of issue 14, items 9-11 (each failed on main before the fix):

- item 9: ``save`` writes only over a regular file (through a symlink, over its target, the
  link kept), keeps the file's permission bits (a new file gets 0600), and refuses a
  directory, a device, a FIFO, a trailing separator and a read-only file, writing nothing;
- item 10: a crafted manifest whose checksum was recomputed is refused by its schema with a
  ``CheckpointError`` naming the field, never a ``TypeError``, ``ValueError``,
  ``OverflowError`` or ``RecursionError``, and never loaded unchecked;
- item 11: ``load`` checks the file's size against its header before it reads the data: a
  device or a 20 GiB sparse file is refused having read at most a few bytes (measured with the
  kernel's count of bytes read, in a child process whose address space is capped, so that a
  regression fails instead of exhausting the machine's memory).

No test here writes to a real device: a device is simulated by making ``os.lstat`` report one.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import signal
import stat
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import safetensors.torch
import torch

from checkpoint_common import (  # noqa: F401 (one_thread: an autouse fixture)
    assert_same_run,
    assert_unchanged,
    make_model,
    one_thread,
    snapshot,
    train,
    trained,
)
import rmsprop.checkpoint as ckpt
from rmsprop.checkpoint import fileformat
from rmsprop.torch import RMSprop

OPTIONS = {"momentum": 0.9, "centered": True}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask, under which main's saves came out 0644
    yield
    os.umask(old)


@pytest.fixture
def runs() -> tuple[tuple, tuple]:
    """Two runs of the same model: the one saved first, and a later one saved over it."""
    return trained(OPTIONS, "loop", steps=2), trained(OPTIONS, "loop", steps=4)


def _loads_as(path: Path, run: tuple) -> None:
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl="loop", **OPTIONS)
    ckpt.load(path, optimizer, model)
    assert_same_run(run, (model, optimizer))


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- item 9: what a save replaces ---------------------------------------------------------------


def test_item09_save_keeps_symlink(tmp_path, runs) -> None:
    old, new = runs
    ckpt.save(tmp_path / "step100.ckpt", old[1], old[0])
    os.symlink("step100.ckpt", tmp_path / "latest.ckpt")
    ckpt.save(tmp_path / "latest.ckpt", new[1], new[0])
    assert (tmp_path / "latest.ckpt").is_symlink()
    assert os.readlink(tmp_path / "latest.ckpt") == "step100.ckpt"
    _loads_as(tmp_path / "step100.ckpt", new)
    _loads_as(tmp_path / "latest.ckpt", new)
    assert _listing(tmp_path) == ["latest.ckpt", "step100.ckpt"]


def test_item09_save_through_a_dangling_symlink_creates_its_target(tmp_path, runs) -> None:
    (tmp_path / "runs").mkdir()
    os.symlink("runs/step200.ckpt", tmp_path / "latest.ckpt")
    ckpt.save(tmp_path / "latest.ckpt", runs[1][1], runs[1][0])
    assert (tmp_path / "latest.ckpt").is_symlink()
    _loads_as(tmp_path / "runs" / "step200.ckpt", runs[1])
    assert stat.S_IMODE(os.stat(tmp_path / "runs" / "step200.ckpt").st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_item09_save_keeps_mode(tmp_path, runs, umask_022, mode) -> None:
    path = tmp_path / "run.ckpt"
    ckpt.save(path, runs[0][1], runs[0][0])
    os.chmod(path, mode)
    ckpt.save(path, runs[1][1], runs[1][0])
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    _loads_as(path, runs[1])


def test_item09_save_keeps_mode_of_a_symlinks_target(tmp_path, runs, umask_022) -> None:
    ckpt.save(tmp_path / "step100.ckpt", runs[0][1], runs[0][0])
    os.chmod(tmp_path / "step100.ckpt", 0o640)
    os.symlink("step100.ckpt", tmp_path / "latest.ckpt")
    ckpt.save(tmp_path / "latest.ckpt", runs[1][1], runs[1][0])
    assert stat.S_IMODE(os.stat(tmp_path / "step100.ckpt").st_mode) == 0o640


def test_item09_new_file_is_0600(tmp_path, runs, umask_022) -> None:
    ckpt.save(tmp_path / "run.ckpt", runs[0][1], runs[0][0])
    assert stat.S_IMODE(os.stat(tmp_path / "run.ckpt").st_mode) == 0o600


def test_item09_mode_keyword(tmp_path, runs, umask_022) -> None:
    path = tmp_path / "run.ckpt"
    ckpt.save(path, runs[0][1], runs[0][0], mode=0o640)  # a new file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    ckpt.save(path, runs[1][1], runs[1][0], mode=0o666)  # explicit: the umask does not apply
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    for bad in (0o1000, -1, "0600", 6.0, True):
        with pytest.raises(ValueError, match=f"Invalid mode value: {bad!r}"):
            ckpt.save(path, runs[0][1], runs[0][0], mode=bad)
    _loads_as(path, runs[1])


def _refused(
    path: str | Path, runs: tuple, match: str, code: int, before: Callable[[], Any] | None = None
) -> None:
    """A save of ``path`` raises CheckpointTargetError naming the path, and writes nothing."""
    directory = Path(path).parent
    listing = _listing(directory)
    state = before() if before else None
    with pytest.raises(ckpt.CheckpointTargetError, match=match) as caught:
        ckpt.save(path, runs[1][1], runs[1][0])
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    assert str(path) in str(caught.value)
    assert _listing(directory) == listing  # no temporary left, nothing renamed
    if before:
        assert before() == state


def test_item09_save_refuses_trailing_slash(tmp_path, runs) -> None:
    _refused(str(tmp_path / "x.ckpt") + os.sep, runs, "ends in a separator", errno.EISDIR)
    assert not (tmp_path / "x.ckpt").exists()
    path = tmp_path / "run.ckpt"
    ckpt.save(path, runs[0][1], runs[0][0])
    with pytest.raises(ckpt.CheckpointTargetError, match="ends in a separator"):
        ckpt.save(str(path) + "/", runs[1][1], runs[1][0])
    _loads_as(path, runs[0])


def test_item09_save_refuses_directory(tmp_path, runs) -> None:
    (tmp_path / "run.ckpt").mkdir()
    _refused(tmp_path / "run.ckpt", runs, "is a directory", errno.EISDIR)
    assert (tmp_path / "run.ckpt").is_dir()
    os.symlink("run.ckpt", tmp_path / "latest.ckpt")
    _refused(tmp_path / "latest.ckpt", runs, "is a directory", errno.EISDIR)
    assert (tmp_path / "latest.ckpt").is_symlink()


def test_item09_save_refuses_fifo(tmp_path, runs) -> None:
    os.mkfifo(tmp_path / "run.ckpt")
    _refused(tmp_path / "run.ckpt", runs, "is a FIFO", errno.EINVAL)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "run.ckpt").st_mode)


def test_item09_save_refuses_device(tmp_path, runs, monkeypatch) -> None:
    """A character device, simulated: ``os.lstat`` and ``os.stat`` say the (regular, harmless)
    file at the path is one, as they would for /dev/null."""
    path = tmp_path / "null"
    path.write_bytes(b"a device")
    real_lstat, real_stat = os.lstat, os.stat

    def as_device(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def fake(name: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            result = real(name, *args, **kwargs)
            if isinstance(name, (str, os.PathLike)) and os.fspath(name) == str(path):
                fields = list(result)
                fields[0] = stat.S_IFCHR | 0o666
                return os.stat_result(fields)
            return result
        return fake

    monkeypatch.setattr(os, "lstat", as_device(real_lstat))
    monkeypatch.setattr(os, "stat", as_device(real_stat))
    _refused(path, runs, "is a character device", errno.EINVAL,
             before=lambda: path.read_bytes())
    monkeypatch.undo()
    assert path.read_bytes() == b"a device" and not path.is_symlink()


def test_item09_save_refuses_read_only_file(tmp_path, runs) -> None:
    path = tmp_path / "run.ckpt"
    ckpt.save(path, runs[0][1], runs[0][0])
    os.chmod(path, 0o444)
    blob = path.read_bytes()
    _refused(path, runs, r"is read-only \(mode 0o444\)", errno.EACCES,
             before=lambda: (path.read_bytes(), os.stat(path).st_ino))
    assert path.read_bytes() == blob and stat.S_IMODE(os.stat(path).st_mode) == 0o444
    os.chmod(path, 0o644)  # made writable: saved over
    ckpt.save(path, runs[1][1], runs[1][0])
    _loads_as(path, runs[1])


def test_save_in_a_directory_that_does_not_exist(tmp_path, runs) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.save(tmp_path / "absent" / "run.ckpt", runs[0][1], runs[0][0])
    assert _listing(tmp_path) == []


def test_a_failed_save_through_a_symlink_keeps_both(tmp_path, runs, monkeypatch) -> None:
    ckpt.save(tmp_path / "step100.ckpt", runs[0][1], runs[0][0])
    os.symlink("step100.ckpt", tmp_path / "latest.ckpt")

    def fail(*args: Any) -> None:
        raise OSError("injected failure at replace")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", fail)
        with pytest.raises(OSError, match="injected"):
            ckpt.save(tmp_path / "latest.ckpt", runs[1][1], runs[1][0])
    assert (tmp_path / "latest.ckpt").is_symlink()
    assert _listing(tmp_path) == ["latest.ckpt", "step100.ckpt"]
    _loads_as(tmp_path / "latest.ckpt", runs[0])


# -- item 10: every manifest field checked ------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> dict[str, Any]:
    """A checkpoint of a trained run, and another run to load it into."""
    model, optimizer = trained(OPTIONS, "foreach", steps=3)
    path = tmp_path / "run.ckpt"
    ckpt.save(path, optimizer, model)
    target_model = make_model()
    target = RMSprop(target_model.parameters(), impl="foreach", **OPTIONS)
    train(target_model, target, 10, 2)
    return {"path": path, "model": target_model, "optimizer": target, "run": (model, optimizer)}


def write_content(path: Path, tensors: dict[str, torch.Tensor], content: str) -> None:
    """Write ``tensors`` and the manifest text ``content`` with a correct checksum: a file
    crafted by hand or by another tool (the text need not be JSON ``json.dumps`` can make)."""
    fields = {"format": fileformat.FORMAT, "format_version": str(fileformat.FORMAT_VERSION),
              "content": content}
    metadata = {**fields, "checksum": fileformat.checksum(tensors, fields)}
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def _rename_state(content: dict, old: str, new: str) -> None:
    state = content["optimizer"]["state"]
    state[new] = state.pop(old)


def _set_group(key: str, entry: Any) -> Callable[[dict, dict], None]:
    return lambda content, tensors: content["optimizer"]["param_groups"][0].__setitem__(
        key, entry)


def _set_state(key: str, entry: Any) -> Callable[[dict, dict], None]:
    def edit(content: dict, tensors: dict) -> None:
        content["optimizer"]["state"]["0"][key] = entry
        tensors.pop(f"optimizer.state.0.{key}", None)  # else refused as a tensor nothing names
    return edit


DEEP = 100_000
Edit = Callable[[dict, dict], Any]
ISSUE_CASES: dict[str, tuple[Edit, str]] = {  # each one of issue 14's item 10
    "param_groups null": (lambda c, t: c["optimizer"].__setitem__("param_groups", None),
                          "optimizer.param_groups is None, not a JSON array"),
    "model []": (lambda c, t: c.__setitem__("model", []), "model is \\[\\], not a JSON object"),
    "state index abc": (lambda c, t: _rename_state(c, "0", "abc"), "has the key 'abc'"),
    "state index ' 1'": (lambda c, t: _rename_state(c, "1", " 1"), "has the key ' 1'"),
    "state index '01'": (lambda c, t: _rename_state(c, "1", "01"), "has the key '01'"),
    "momentum 10**400": (_set_group("momentum", {"value": 10**400}),
                         "param group 0 'momentum' is an int of 401 digits"),
    "100,000-deep nesting": (_set_group("momentum", {"value": "DEEP"}), "nested too deeply"),
    "skipped_steps 'x'": (_set_group("skipped_steps", {"value": "x"}),
                          "'skipped_steps' is 'x', not an int >= 0"),
    "skipped_steps NaN": (_set_group("skipped_steps", {"value": float("nan")}),
                          "'skipped_steps' is nan, not an int >= 0"),
    "skipped_steps -5": (_set_group("skipped_steps", {"value": -5}),
                         "'skipped_steps' is -5, not an int >= 0"),
    "initial_lr 'x'": (_set_group("initial_lr", {"value": "x"}),
                       "'initial_lr' is {'value': 'x'}, not a number"),
}
MORE_CASES: dict[str, tuple[Edit, str]] = {  # refused on main too, by other errors or later
    "state index 6 of 6 parameters": (lambda c, t: _rename_state(c, "5", "6"), "has the key '6'"),
    "momentum NaN": (_set_group("momentum", {"value": float("nan")}),
                     "param group 0 'momentum' is nan, not a finite number"),
    "skipped_steps 2.0": (_set_group("skipped_steps", {"value": 2.0}),
                          "'skipped_steps' is 2.0, not an int >= 0"),
    "lr -1": (_set_group("lr", {"value": -1.0}), "'lr' is -1.0, not a finite number >= 0"),
    "centered 'yes'": (_set_group("centered", {"value": "yes"}), "'centered' .* not a bool"),
    "a value that is a list of lists": (_set_group("alpha", {"list": [[0.99]]}),
                                        r"'alpha'\[0\] is \[0.99\], not null"),
    "step '7'": (_set_state("step", {"value": "7"}),
                 "state 'step' of parameter 0 .* is '7', not a finite count"),
    "momentum_buffer a list": (_set_state("momentum_buffer", {"list": [1, 2]}),
                               "state 'momentum_buffer' of parameter 0 .* is \\[1, 2\\], "
                               "not a tensor"),
    "a state entry RMSprop does not keep": (_set_state("exp_avg", {"value": 1.0}),
                                            "state 'exp_avg' of parameter 0 .* not state"),
    "two entries naming one tensor": (
        _set_state("square_avg", {"tensor": "optimizer.state.0.grad_avg"}),
        "names a tensor for two entries: optimizer.state.0.grad_avg"),
}


def _load_crafted(saved: dict[str, Any], edit: Edit, match: str, error: type) -> None:
    tensors, content = fileformat.read(saved["path"])
    edit(content, tensors)
    text = json.dumps(content, sort_keys=True)
    text = text.replace('"DEEP"', "[" * DEEP + "]" * DEEP)
    write_content(saved["path"], tensors, text)
    optimizer, model = saved["optimizer"], saved["model"]
    before = snapshot(optimizer, model)
    with pytest.raises(error, match=match):
        ckpt.load(saved["path"], optimizer, model, options="checkpoint")
    assert_unchanged(before, optimizer, model)


@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_item10_crafted_manifest_is_refused(saved, case) -> None:
    _load_crafted(saved, *ISSUE_CASES[case], ckpt.CheckpointCorruptError)


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_crafted_manifest_is_refused_naming_the_field(saved, case) -> None:
    error = ckpt.UnexpectedTensorError if "does not keep" in case else ckpt.CheckpointCorruptError
    _load_crafted(saved, *MORE_CASES[case], error)


def test_item10_duplicate_keys_are_refused(saved) -> None:
    tensors, content = fileformat.read(saved["path"])
    text = json.dumps(content, sort_keys=True)
    entry = json.dumps(content["optimizer"]["state"]["1"], sort_keys=True)
    text = text.replace('"1": ' + entry, '"1": ' + entry + ', "1": ' + entry)
    write_content(saved["path"], tensors, text)
    before = snapshot(saved["optimizer"], saved["model"])
    with pytest.raises(ckpt.CheckpointCorruptError, match="holds the key '1' twice"):
        ckpt.load(saved["path"], saved["optimizer"], saved["model"])
    assert_unchanged(before, saved["optimizer"], saved["model"])


TORCH_OPTIMIZERS = sorted(
    name for name, cls in vars(torch.optim).items()
    if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
    and name not in ("Optimizer", "LBFGS", "SparseAdam")  # a closure's lists; sparse gradients
)


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_the_schema_accepts_every_torch_optimizer(tmp_path, name) -> None:
    """The schema's types and ranges refuse no real checkpoint: every torch.optim optimizer's
    state (Adafactor's eps is a tuple holding None, ASGD's alpha 0.75, ...) round-trips."""

    def run(first: int) -> tuple[torch.nn.Module, Any]:
        model = make_model()
        params = [p for p in model.parameters() if p.dim() == 2] if name == "Muon" else (
            model.parameters())
        optimizer = getattr(torch.optim, name)(params, lr=1e-2)
        train(model, optimizer, first, 2)
        return model, optimizer

    original = run(0)
    ckpt.save(tmp_path / "run.ckpt", original[1], original[0])
    other = run(10)
    ckpt.load(tmp_path / "run.ckpt", other[1], other[0])
    assert_same_run(original, other)


def test_the_schema_accepts_what_save_writes(saved) -> None:
    ckpt.load(saved["path"], saved["optimizer"], saved["model"])
    assert_same_run(saved["run"], (saved["model"], saved["optimizer"]))


class RefusesOnce(RMSprop):
    """An optimizer whose load_state_dict swaps the state in and then raises, once (as
    rmsprop's did for a malformed state value: issue 14, item 5)."""

    refused = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if not RefusesOnce.refused:
            RefusesOnce.refused = True
            raise ValueError("refused after loading")


def test_an_optimizer_refusing_after_the_checks_gets_its_state_back(tmp_path) -> None:
    model = make_model()
    optimizer = RefusesOnce(model.parameters(), impl="loop", **OPTIONS)
    train(model, optimizer, 0, 3)
    ckpt.save(tmp_path / "run.ckpt", optimizer, model)
    other_model = make_model()
    other = RefusesOnce(other_model.parameters(), impl="loop", **OPTIONS)
    train(other_model, other, 10, 2)
    before = snapshot(other, other_model)
    with pytest.raises(ckpt.CheckpointMismatchError, match="refused after loading"):
        ckpt.load(tmp_path / "run.ckpt", other, other_model)
    assert_unchanged(before, other, other_model)
    ckpt.load(tmp_path / "run.ckpt", other, other_model)  # it loads once it stops refusing
    assert_same_run((model, optimizer), (other_model, other))


# -- item 11: the size checked before the data is read ------------------------------------------


NEEDS_READ_COUNT = pytest.mark.skipif(
    not os.path.exists("/proc/self/io"), reason="needs Linux's count of bytes read"
)


def _read_bytes() -> int:
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


def _address_space() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def load_in_child(path: str | Path, watchdog_s: float = 120.0) -> dict[str, Any]:
    """Load ``path`` in a forked child whose address space may grow by at most 2 GiB; return
    the exception's class (or ``"loaded"``) and the bytes the child read while loading.

    A load that reads a huge file whole fails there with a MemoryError rather than exhausting
    the machine; a child still blocked after ``watchdog_s`` (a FIFO opened for reading waits
    for a writer) is killed and reported as ``"hung"``, so a regression cannot hang the suite.
    """
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl="loop", **OPTIONS)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            os.close(reader)
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            soft = _address_space() + (2 << 30)
            resource.setrlimit(resource.RLIMIT_AS, (soft if hard < 0 else min(soft, hard), hard))
            start = _read_bytes()
            try:
                ckpt.load(path, optimizer, model)
                outcome = "loaded"
            except BaseException as error:  # noqa: BLE001 (reported to the parent)
                outcome = type(error).__name__
                if isinstance(error, ckpt.CheckpointError):
                    outcome += f": {error}"
            report = {"outcome": outcome, "read": _read_bytes() - start}
            os.write(writer, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(writer)
    chunks = []
    deadline = time.monotonic() + watchdog_s
    try:
        while True:
            ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return {"outcome": "hung", "read": None}
            chunk = os.read(reader, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"outcome": "died", "read": null}')


def _sparse(path: Path, head: bytes, size: int = 20 << 30) -> Path:
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)  # a hole: no disk blocks, zeros when read
    return path


def _assert_refused_unread(result: dict[str, Any], error: type, match: str) -> None:
    assert result["outcome"].startswith(error.__name__ + ":"), result
    assert match in result["outcome"], result
    assert result["read"] < 1 << 20, result  # the 8-byte size and the header at most


@NEEDS_READ_COUNT
def test_item11_load_refuses_huge_sparse_file_unread(tmp_path) -> None:
    zeros = _sparse(tmp_path / "zeros.ckpt", b"")
    _assert_refused_unread(load_in_child(zeros), ckpt.CheckpointFormatError,
                           "not a safetensors file")
    huge_header = _sparse(tmp_path / "header.ckpt", (10 << 30).to_bytes(8, "little") + b"{")
    _assert_refused_unread(load_in_child(huge_header), ckpt.CheckpointCorruptError,
                           "more than the 100000000 a safetensors header may have")


@NEEDS_READ_COUNT
def test_item11_load_refuses_checkpoint_with_huge_tail_unread(tmp_path) -> None:
    model, optimizer = trained(OPTIONS, "loop", steps=1)
    path = tmp_path / "run.ckpt"
    ckpt.save(path, optimizer, model)
    with open(path, "r+b") as file:
        file.truncate(20 << 30)
    _assert_refused_unread(load_in_child(path), ckpt.CheckpointCorruptError,
                           "bytes after the tensors its header describes")


@NEEDS_READ_COUNT
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_item11_load_refuses_dev_zero_unread() -> None:
    # Reading /dev/zero changes nothing; loading it must not even read it.
    _assert_refused_unread(load_in_child("/dev/zero"), ckpt.CheckpointFormatError,
                           "is a character device, not a regular file")


@NEEDS_READ_COUNT
def test_load_refuses_a_fifo_and_a_directory_without_waiting(tmp_path) -> None:
    os.mkfifo(tmp_path / "run.ckpt")
    result = load_in_child(tmp_path / "run.ckpt")
    assert result["outcome"].startswith("CheckpointFormatError:"), result
    assert "is a FIFO, not a regular file" in result["outcome"]
    model = make_model()
    optimizer = RMSprop(model.parameters(), **OPTIONS)
    with pytest.raises(ckpt.CheckpointFormatError, match="is a directory, not a regular file"):
        ckpt.load(tmp_path, optimizer, model)


def test_a_checkpoint_one_byte_longer_is_refused(saved) -> None:
    with open(saved["path"], "ab") as file:
        file.write(b"\0")
    before = snapshot(saved["optimizer"], saved["model"])
    with pytest.raises(ckpt.CheckpointCorruptError, match="1 bytes after the tensors"):
        ckpt.load(saved["path"], saved["optimizer"], saved["model"])
    assert_unchanged(before, saved["optimizer"], saved["model"])
