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
untouched; a crash before the replace may leave a ``.<name>.<random>.tmp`` file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import safetensors.torch
import torch
from torch import Tensor

from .errors import (
    CheckpointChecksumError,
    CheckpointCorruptError,
    CheckpointFormatError,
    CheckpointTruncatedError,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "write", "read", "checksum"]

FORMAT = "rmsprop.checkpoint"
FORMAT_VERSION = 1
_HEADER_SIZE_BYTES = 8
_CHUNK_BYTES = 1 << 24


def checksum(tensors: Mapping[str, Tensor], fields: Mapping[str, str]) -> str:
    """SHA-256 of the metadata ``fields`` and of every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(fields), sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"\0{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        digest.update(memoryview(raw))
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
    path: str | os.PathLike, tensors: Mapping[str, Tensor], content: Mapping[str, Any]
) -> None:
    """Write ``tensors`` (CPU, contiguous, unshared storage) and ``content`` to ``path``,
    atomically."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    blob = _encode(tensors, content)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never reuse another writer's file; mode 0o666 lets the umask decide, as open() does.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            _write_all(file, blob)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _parse_header(blob: bytes, where: str) -> dict[str, Any]:
    if len(blob) < _HEADER_SIZE_BYTES:
        raise CheckpointTruncatedError(
            f"{where}: the file has {len(blob)} bytes, fewer than the 8 of a safetensors "
            "header size: it is truncated"
        )
    if len(blob) > _HEADER_SIZE_BYTES and blob[_HEADER_SIZE_BYTES:_HEADER_SIZE_BYTES + 1] != b"{":
        raise CheckpointFormatError(
            f"{where}: not a safetensors file (its header, after 8 bytes of size, does not "
            "start a JSON object): not an rmsprop checkpoint"
        )
    header_size = int.from_bytes(blob[:_HEADER_SIZE_BYTES], "little")
    available = len(blob) - _HEADER_SIZE_BYTES
    if header_size > available:
        raise CheckpointTruncatedError(
            f"{where}: the header size field says {header_size} bytes but only {available} "
            "follow: the file is truncated (or its first 8 bytes are damaged)"
        )
    try:
        header = json.loads(blob[_HEADER_SIZE_BYTES : _HEADER_SIZE_BYTES + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointCorruptError(f"{where}: the header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointCorruptError(f"{where}: the header is not a JSON object")
    data_size = available - header_size
    try:
        data_end = max(
            (int(entry["data_offsets"][1]) for key, entry in header.items()
             if key != "__metadata__"),
            default=0,
        )
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointCorruptError(f"{where}: the header's tensor entries are damaged") from None
    if data_end > data_size:
        raise CheckpointTruncatedError(
            f"{where}: the tensors need {data_end} data bytes but the file holds {data_size}: "
            "it is truncated"
        )
    return header


def read(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the content of the checkpoint at ``path``, verified.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointFormatError: not an rmsprop checkpoint, or an unknown format version.
        CheckpointTruncatedError: the file is shorter than its header says.
        CheckpointChecksumError: the content differs from what was written.
        CheckpointCorruptError: the file cannot be parsed.
    """
    where = os.fspath(path)
    blob = Path(path).read_bytes()
    header = _parse_header(blob, where)
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
    fields = {key: metadata.get(key) for key in ("format", "format_version", "content")}
    recorded = metadata.get("checksum")
    if not isinstance(fields["content"], str) or recorded != checksum(tensors, fields):
        raise CheckpointChecksumError(
            f"{where}: the content does not match its recorded checksum {recorded!r}: the file "
            "was damaged or modified after it was written"
        )
    try:
        content = json.loads(fields["content"])
    except json.JSONDecodeError as error:  # only reachable for a file written with a bad content
        raise CheckpointCorruptError(f"{where}: the content is not valid JSON ({error})") from None
    return tensors, content
