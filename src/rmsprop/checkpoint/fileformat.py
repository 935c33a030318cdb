"""The checkpoint file: one safetensors file whose header carries the JSON content and a SHA-256.

Layout (format version 1; see ``docs/checkpoint.md``)::

    u64 little-endian N | N bytes of JSON header | tensor data        (plain safetensors)

    header["__metadata__"] = {
        "format": "rmsprop.checkpoint",
        "format_version": "1",
        "content": "<JSON: what the tensors are (optimizer groups, options, state; model entries)>",
        "checksum": "sha256:<hex>",
    }

The checksum covers the format fields, the content and every tensor's name, dtype, shape and
bytes, so any change to the file after it was written is found on load.

:func:`write` is atomic: the bytes go to a temporary file in the destination's directory,
which is flushed and ``fsync``-ed before ``os.replace`` puts it in place (then the directory is
``fsync``-ed). An exception or a crash at any point leaves the previous file at ``path``
untouched; a crash before the replace may leave a ``.<name>.<random>.tmp`` file behind. It
writes only over a regular file (:mod:`rmsprop.checkpoint.target`).

:func:`read` reads the 8-byte size and the header first and checks the file's size against
them (exactly the header and the tensors' bytes, a header of at most
:data:`MAX_HEADER_BYTES`) before it reads the tensor data, so a device, a FIFO, a huge sparse
file or a header claiming a huge length is refused without being read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from typing import Any, Mapping

import safetensors.torch
import torch
from torch import Tensor

from . import target
from .errors import (
    CheckpointChecksumError,
    CheckpointCorruptError,
    CheckpointFormatError,
    CheckpointTruncatedError,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_HEADER_BYTES", "write", "read", "checksum"]

FORMAT = "rmsprop.checkpoint"
FORMAT_VERSION = 1
_HEADER_SIZE_BYTES = 8
_CHUNK_BYTES = 1 << 24
_MAX_FILE_BYTES = 1 << 62
MAX_HEADER_BYTES = 100_000_000
"""The largest header a checkpoint may have (safetensors' own limit)."""


def checksum(tensors: Mapping[str, Tensor], fields: Mapping[str, Any]) -> str:
    """SHA-256 of the metadata ``fields`` and of every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(fields), sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"\0{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(raw.data)
    return "sha256:" + digest.hexdigest()


def _encode(tensors: Mapping[str, Tensor], content: Mapping[str, Any]) -> bytes:
    fields = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "content": json.dumps(content, sort_keys=True),
    }
    metadata = {**fields, "checksum": checksum(tensors, fields)}
    return safetensors.torch.save(dict(tensors), metadata=metadata)


def _write_all(file: Any, blob: bytes) -> None:
    view = memoryview(blob)
    for start in range(0, len(view), _CHUNK_BYTES):
        file.write(view[start : start + _CHUNK_BYTES])


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles: nothing to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(
    path: str | os.PathLike,
    tensors: Mapping[str, Tensor],
    content: Mapping[str, Any],
    mode: int | None = None,
) -> None:
    """Write ``tensors`` (CPU, contiguous, unshared storage) and ``content`` to ``path``,
    atomically, over the regular file there (through symlinks) or a new one; see
    :mod:`rmsprop.checkpoint.target` for what is refused and which mode the file gets."""
    destination = target.resolve(path, target.check_mode(mode))
    directory, name = os.path.split(destination.path)
    blob = _encode(tensors, content)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never reuse another writer's file; 0o600 until the bits are set, just before
    # the file takes its place.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            _write_all(file, blob)
            file.flush()
            _keep_owner(file.fileno(), destination.owner)
            if hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), destination.mode)
            else:  # Windows before Python 3.13
                os.chmod(temporary, destination.mode)
            os.fsync(file.fileno())
        os.replace(temporary, destination.path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _keep_owner(fd: int, owner: tuple[int, int] | None) -> None:
    if owner is None or not hasattr(os, "fchown") or owner == (os.getuid(), os.getgid()):
        return
    try:
        os.fchown(fd, *owner)
    except PermissionError:  # only root may give a file away: the new file is this user's
        pass


def _json(text: str | bytes, what: str, where: str) -> Any:
    """``text`` parsed, refusing duplicate keys (a reader would see one of two values)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping = dict(pairs)
        if len(mapping) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise CheckpointCorruptError(f"{where}: {what} holds the key {key!r} twice")
                seen.add(key)
        return mapping

    try:
        return json.loads(text, object_pairs_hook=unique)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointCorruptError(f"{where}: {what} is not valid JSON ({error})") from None
    except RecursionError:
        raise CheckpointCorruptError(f"{where}: {what} is nested too deeply") from None


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_FILE_BYTES


def _data_bytes(header: Mapping[str, Any], where: str) -> int:
    """The tensor data bytes the header's entries describe (the end of the last one)."""
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
                and offsets[0] <= offsets[1]):
            raise CheckpointCorruptError(
                f"{where}: the header's entry for tensor {key!r} is damaged (its data_offsets "
                "must be two byte offsets, start <= end)"
            )
        end = max(end, offsets[1])
    return end


def _read_header(file: Any, size: int, where: str) -> tuple[dict[str, Any], bytes]:
    """The header, parsed, and the file's bytes up to its end; the file's size checked against
    both."""
    file.seek(0)
    head = file.read(_HEADER_SIZE_BYTES + 1)
    if len(head) < _HEADER_SIZE_BYTES:
        raise CheckpointTruncatedError(
            f"{where}: the file has {len(head)} bytes, fewer than the 8 of a safetensors "
            "header size: it is truncated"
        )
    if len(head) > _HEADER_SIZE_BYTES and head[_HEADER_SIZE_BYTES:] != b"{":
        raise CheckpointFormatError(
            f"{where}: not a safetensors file (its header, after 8 bytes of size, does not "
            "start a JSON object): not an rmsprop checkpoint"
        )
    header_size = int.from_bytes(head[:_HEADER_SIZE_BYTES], "little")
    available = size - _HEADER_SIZE_BYTES
    if header_size > available:
        raise CheckpointTruncatedError(
            f"{where}: the header size field says {header_size} bytes but only {available} "
            "follow: the file is truncated (or its first 8 bytes are damaged)"
        )
    if header_size > MAX_HEADER_BYTES:
        raise CheckpointCorruptError(
            f"{where}: the header size field says {header_size} bytes, more than the "
            f"{MAX_HEADER_BYTES} a safetensors header may have: not read"
        )
    file.seek(_HEADER_SIZE_BYTES)
    raw = file.read(header_size)
    if len(raw) < header_size:
        raise CheckpointTruncatedError(f"{where}: the file ended while its header was read")
    header = _json(raw, "the header", where)
    if not isinstance(header, dict):
        raise CheckpointCorruptError(f"{where}: the header is not a JSON object")
    data_size = available - header_size
    data_end = _data_bytes(header, where)
    if data_end > data_size:
        raise CheckpointTruncatedError(
            f"{where}: the tensors need {data_end} data bytes but the file holds {data_size}: "
            "it is truncated"
        )
    if data_end < data_size:
        raise CheckpointCorruptError(
            f"{where}: the file holds {data_size - data_end} bytes after the tensors its header "
            "describes: it was extended or damaged, not read"
        )
    return header, head[:_HEADER_SIZE_BYTES] + raw


def _read_checked(path: str | os.PathLike, where: str) -> tuple[dict[str, Any], bytes]:
    """The header and the whole file, read only after the file's size fits the header."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on regular files).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        kind = target.kind_of(info.st_mode)
        if kind is not None:
            raise CheckpointFormatError(f"{where}: is {kind[0]}, not a regular file: not read")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        header, start = _read_header(file, info.st_size, where)
        file.seek(0)
        blob = file.read(info.st_size)  # buffered: reads until it has them all (or the end)
        if len(blob) != info.st_size or file.read(1) or not blob.startswith(start):
            raise CheckpointCorruptError(f"{where}: the file changed while it was read")
    return header, blob


def read(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the content of the checkpoint at ``path``, verified.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointFormatError: not an rmsprop checkpoint (or not a regular file), or an
            unknown format version.
        CheckpointTruncatedError: the file is shorter than its header says.
        CheckpointChecksumError: the content differs from what was written.
        CheckpointCorruptError: the file cannot be parsed, or is longer than its header says.
    """
    where = os.fspath(path)
    header, blob = _read_checked(path, where)
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or "format" not in metadata:
        raise CheckpointFormatError(
            f"{where}: a safetensors file without rmsprop checkpoint metadata "
            f"(no '__metadata__.format' = {FORMAT!r}): not an rmsprop checkpoint"
        )
    if metadata["format"] != FORMAT:
        raise CheckpointFormatError(
            f"{where}: format is {metadata['format']!r}, expected {FORMAT!r}"
        )
    version = metadata.get("format_version")
    if str(version) != str(FORMAT_VERSION):
        raise CheckpointFormatError(
            f"{where}: format version {version!r}, this rmsprop reads version {FORMAT_VERSION}"
        )
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as error:  # safetensors raises its own SafetensorError and others
        raise CheckpointCorruptError(f"{where}: the tensor data cannot be read ({error})") from None
    del blob
    fields = {key: metadata.get(key) for key in ("format", "format_version", "content")}
    recorded = metadata.get("checksum")
    if not isinstance(fields["content"], str) or recorded != checksum(tensors, fields):
        raise CheckpointChecksumError(
            f"{where}: the content does not match its recorded checksum {recorded!r}: the file "
            "was damaged or modified after it was written"
        )
    return tensors, _json(fields["content"], "the content", where)
