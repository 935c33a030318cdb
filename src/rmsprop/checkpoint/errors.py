"""The errors of :mod:`rmsprop.checkpoint`: one class per way a checkpoint can be wrong.

::

    CheckpointError
    ├── CheckpointTargetError           save: the path is not a file a save may replace
    ├── CheckpointFormatError           not ours (not even a regular file), or a newer version
    ├── CheckpointCorruptError          the bytes are not the bytes that were written
    │   ├── CheckpointTruncatedError    the file ends early
    │   ├── CheckpointChecksumError     the content does not match its SHA-256
    │   └── CheckpointManifestError     the manifest breaks the format's schema
    └── CheckpointMismatchError         sound, but not for this optimizer / model
        ├── ParamCountMismatchError     number of param groups or parameters
        ├── ShapeMismatchError
        ├── DtypeMismatchError
        ├── MissingTensorError          a tensor that is needed is not in the file
        ├── UnexpectedTensorError       the file holds a tensor nothing here would take
        └── OptionsMismatchError        optimizer class or hyperparameters differ

Every load raises before it changes anything: after any of these errors the optimizer and the
model hold exactly what they held before. A save that raises :class:`CheckpointTargetError`
(also an ``OSError``, with ``errno`` and ``filename`` set) has written nothing.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointTargetError",
    "CheckpointFormatError",
    "CheckpointCorruptError",
    "CheckpointTruncatedError",
    "CheckpointChecksumError",
    "CheckpointManifestError",
    "CheckpointMismatchError",
    "ParamCountMismatchError",
    "ShapeMismatchError",
    "DtypeMismatchError",
    "MissingTensorError",
    "UnexpectedTensorError",
    "OptionsMismatchError",
]


class CheckpointError(Exception):
    """A checkpoint could not be loaded (or saved); nothing was changed."""


class CheckpointTargetError(CheckpointError, OSError):
    """``save`` refused its path: a directory, a device, a FIFO, a socket, a read-only file,
    a name ending in a separator, or a symlink loop. Nothing was written."""


class CheckpointFormatError(CheckpointError):
    """The file is not an rmsprop checkpoint, or its format version is not one we read."""


class CheckpointCorruptError(CheckpointError):
    """The file's bytes are not those that were written (damaged, edited or cut short)."""


class CheckpointTruncatedError(CheckpointCorruptError):
    """The file is shorter than its header says."""


class CheckpointChecksumError(CheckpointCorruptError):
    """The content's SHA-256 differs from the one recorded at save time."""


class CheckpointManifestError(CheckpointCorruptError):
    """A field of the manifest is missing, unknown, of the wrong type or out of range (a file
    crafted or written by another tool: its checksum may well be right)."""


class CheckpointMismatchError(CheckpointError):
    """A sound checkpoint that does not fit the optimizer or model it is loaded into."""


class ParamCountMismatchError(CheckpointMismatchError):
    """The number of param groups, or of parameters in a group, differs."""


class ShapeMismatchError(CheckpointMismatchError):
    """A tensor's shape differs from the parameter (or state, or model entry) it belongs to."""


class DtypeMismatchError(CheckpointMismatchError):
    """A tensor's dtype differs from the parameter (or state, or model entry) it belongs to."""


class MissingTensorError(CheckpointMismatchError):
    """A tensor the optimizer or model needs is not in the checkpoint."""


class UnexpectedTensorError(CheckpointMismatchError):
    """The checkpoint holds a tensor that nothing in the optimizer or model would take."""


class OptionsMismatchError(CheckpointMismatchError):
    """The optimizer's class or hyperparameters differ from those in the checkpoint."""
