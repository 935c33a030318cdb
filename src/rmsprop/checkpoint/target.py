"""Where a save may write: the regular file at a path, through symlinks, and the mode it keeps.

:func:`resolve` says which file a save replaces and with which permission bits, or refuses:

- a path ending in a separator (``"x.ckpt/"``) names a directory, never a file;
- symlinks are followed (``latest.ckpt -> step100.ckpt`` replaces ``step100.ckpt`` and the
  link stays a link), as ``open(path, "w")`` follows them; a dangling link creates its target;
- what is there must be a regular file: a directory, a character or block device, a FIFO or a
  socket is refused (``os.replace`` would put a regular file in its place: run as root on
  ``/dev/null`` it would destroy the device node);
- a read-only file (no write bit in its mode, or not writable by this process) is refused, as
  a careful tool does: ``os.replace`` only needs the directory to be writable, so it would
  otherwise be replaced silently;
- the replacement keeps the existing file's permission bits (and owner, where this process may
  set it); a new file gets ``0o600``. An explicit ``mode`` sets the bits in both cases (the
  umask does not apply to it).

The checks and the final ``os.replace`` are not one atomic operation: a file swapped in
between by another process is replaced like any other.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .errors import CheckpointTargetError

__all__ = ["Target", "resolve", "check_mode", "kind_of", "NEW_FILE_MODE"]

NEW_FILE_MODE = 0o600
"""Permission bits of a new checkpoint: it holds the whole training state, private by default."""

_KINDS = (
    (stat.S_ISDIR, "a directory", errno.EISDIR),
    (stat.S_ISCHR, "a character device", errno.EINVAL),
    (stat.S_ISBLK, "a block device", errno.EINVAL),
    (stat.S_ISFIFO, "a FIFO", errno.EINVAL),
    (stat.S_ISSOCK, "a socket", errno.EINVAL),
    (stat.S_ISLNK, "a symlink that cannot be resolved (a loop)", errno.ELOOP),
)


def kind_of(mode: int) -> tuple[str, int] | None:
    """What a file of ``st_mode`` ``mode`` is, and the errno that refuses it; None: a regular
    file."""
    for is_kind, kind, code in _KINDS:
        if is_kind(mode):
            return kind, code
    return None if stat.S_ISREG(mode) else ("not a regular file", errno.EINVAL)


@dataclass(frozen=True)
class Target:
    """The regular file a save replaces (or creates), and the ownership and bits it gets."""

    path: str
    mode: int
    owner: tuple[int, int] | None  # (uid, gid) of the file replaced; None for a new file


def check_mode(mode: object) -> int | None:
    """``mode`` as given to ``save``: ``None`` or permission bits ``0 <= mode <= 0o777``."""
    if mode is None:
        return None
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(
            f"Invalid mode value: {mode!r} (mode must be None or permission bits, an int from "
            "0 to 0o777, e.g. 0o600)"
        )
    return mode


def resolve(path: str | os.PathLike, mode: int | None = None) -> Target:
    """The file a save of ``path`` replaces, or :class:`CheckpointTargetError` saying why not.

    Raises:
        CheckpointTargetError: the path ends in a separator, or names (through symlinks) a
            directory, a device, a FIFO, a socket, a symlink loop or a read-only file.
        FileNotFoundError: the directory the file would go in does not exist.
    """
    where = os.fsdecode(os.fspath(path))
    separators = tuple(s for s in (os.sep, os.altsep) if s)
    if not where or where.endswith(separators) or os.path.basename(where) in (".", ".."):
        raise CheckpointTargetError(
            errno.EISDIR,
            "a checkpoint path must name a file; this one ends in a separator or names a "
            "directory",
            where,
        )
    real = os.path.realpath(os.path.abspath(where))
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                errno.ENOENT, f"the directory {directory!r} the checkpoint would go in does "
                "not exist", where,
            ) from None
        return Target(real, NEW_FILE_MODE if mode is None else mode, None)
    kind = kind_of(info.st_mode)
    if kind is not None:
        via = f" (through symlinks: {real!r})" if real != os.path.abspath(where) else ""
        raise CheckpointTargetError(
            kind[1], f"is {kind[0]}{via}, not a regular file: a checkpoint is only written "
            "over a regular file", where,
        )
    bits = stat.S_IMODE(info.st_mode) & 0o777
    if not bits & 0o222 or not os.access(real, os.W_OK):
        raise CheckpointTargetError(
            errno.EACCES, f"is read-only (mode {bits:#o}): a save does not replace it; make it "
            "writable (chmod u+w) or save elsewhere", where,
        )
    return Target(real, bits if mode is None else mode, (info.st_uid, info.st_gid))
