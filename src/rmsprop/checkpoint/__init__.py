"""Full training state in one file, saved atomically and loaded only after it is validated.

::

    import rmsprop.checkpoint

    rmsprop.checkpoint.save("run.ckpt", optimizer, model)   # atomic: old file intact on failure
    rmsprop.checkpoint.load("run.ckpt", optimizer, model)   # validates everything, then loads

The file is a safetensors file (tensors) whose header carries a JSON manifest (the optimizer's
class, every param group's options and flavour, which tensor is which state of which
parameter, the model's entries) and a SHA-256 of all of it; the format is documented in
``docs/checkpoint.md``. Distributed (DTensor / FSDP2) state goes through
``torch.distributed.checkpoint`` instead, which the optimizer supports unchanged.

Loading a model without an optimizer marks its parameters as restored without optimizer
state: an ``rmsprop.torch.RMSprop`` that later starts on them with fresh state applies the
cold-start guard (see :mod:`rmsprop.torch.warm_start`).
"""

from __future__ import annotations

import os
from typing import Any

from ..extras import require

require("rmsprop.checkpoint", "torch", "torch", "safetensors")

from . import fileformat, target, training_state
from .errors import (
    CheckpointChecksumError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointManifestError,
    CheckpointMismatchError,
    CheckpointTargetError,
    CheckpointTruncatedError,
    DtypeMismatchError,
    MissingTensorError,
    OptionsMismatchError,
    ParamCountMismatchError,
    ShapeMismatchError,
    UnexpectedTensorError,
)
from .fileformat import FORMAT, FORMAT_VERSION

__all__ = [
    "save",
    "load",
    "FORMAT",
    "FORMAT_VERSION",
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

_OPTION_POLICIES = ("check", "checkpoint")


def save(
    path: str | os.PathLike,
    optimizer: Any = None,
    model: Any = None,
    *,
    mode: int | None = None,
) -> None:
    """Save the optimizer's full state (and the model's parameters and buffers) to ``path``.

    Atomic: the file at ``path`` is either the previous checkpoint, untouched, or the complete
    new one, whatever fails or crashes during the save.

    ``path`` must be a regular file or a new name: through a symlink, the file it points to is
    replaced and the link kept. The file keeps its permission bits; a new one gets ``0o600``.
    A directory, a device, a FIFO, a socket, a name ending in a separator and a read-only
    file are refused before anything is written (see :mod:`rmsprop.checkpoint.target`).

    Args:
        path: the checkpoint file (its directory must exist).
        optimizer: a ``torch.optim.Optimizer`` (``rmsprop.torch.RMSprop`` or any other); its
            state, param groups, options and flavour are saved.
        model: a ``torch.nn.Module`` whose ``state_dict()`` (parameters and buffers) is saved.
        mode: permission bits for the file (e.g. ``0o640``), new or replaced, whatever the
            umask; default: the replaced file's, or ``0o600`` for a new one.

    Raises:
        ValueError: neither ``optimizer`` nor ``model`` was given, or ``mode`` is not
            permission bits.
        CheckpointTargetError: ``path`` is not a file a save may replace (an ``OSError``
            naming it).
        FileNotFoundError: the directory of ``path`` does not exist.
        TypeError: a state value cannot be stored (a DTensor: use torch.distributed.checkpoint).
    """
    if optimizer is None and model is None:
        raise ValueError("save needs an optimizer, a model or both; got neither")
    target.resolve(path, target.check_mode(mode))  # refused before the state is gathered
    tensors, content = training_state.collect(optimizer, model)
    fileformat.write(path, tensors, content, mode)


def load(
    path: str | os.PathLike,
    optimizer: Any = None,
    model: Any = None,
    *,
    options: str = "check",
    cold_start_guard: bool = True,
) -> None:
    """Load a checkpoint written by :func:`save` into ``optimizer`` and/or ``model``.

    Everything is checked before anything changes: the format and its version, the checksum,
    the number of param groups and parameters, every shape and dtype, the presence of every
    tensor, the optimizer's class and options. On any error the optimizer and the model are
    exactly as they were.

    The optimizer keeps its own implementation choices (``impl``, ``foreach``, ...): they say
    how this process runs the step, not what it computes. The learning rate (and a scheduler's
    ``initial_lr``) comes from the checkpoint, as with ``load_state_dict``.

    Args:
        path: a file written by :func:`save`.
        optimizer: receives the saved optimizer state (the checkpoint must hold one).
        model: receives the saved parameters and buffers (the checkpoint must hold them).
        options: ``"check"`` (default): the optimizer's options must equal the saved ones
            (other than ``lr``), else :class:`OptionsMismatchError`; ``"checkpoint"``: take
            the saved options, as ``torch.optim.Optimizer.load_state_dict`` does.
        cold_start_guard: when ``model`` is loaded without ``optimizer``, mark its parameters so
            that an ``rmsprop.torch.RMSprop`` starting on them with fresh state applies the
            cold-start guard and warns (see :mod:`rmsprop.torch.warm_start`).

    Raises:
        FileNotFoundError: no file at ``path`` (and other ``OSError``s of opening it, such as
            ``PermissionError``, as the system raises them).
        ValueError: neither ``optimizer`` nor ``model``, or an unknown ``options`` value.
        CheckpointFormatError, CheckpointCorruptError (CheckpointTruncatedError,
        CheckpointChecksumError, CheckpointManifestError): the file is not a sound rmsprop
        checkpoint (the size of the file is checked against its header before its data is
        read, and every field of the manifest against a schema:
        :mod:`rmsprop.checkpoint.manifest_schema`).
        CheckpointMismatchError (ParamCountMismatchError, ShapeMismatchError,
        DtypeMismatchError, MissingTensorError, UnexpectedTensorError, OptionsMismatchError):
        the checkpoint does not fit ``optimizer`` or ``model``.
    """
    if optimizer is None and model is None:
        raise ValueError("load needs an optimizer, a model or both; got neither")
    if options not in _OPTION_POLICIES:
        raise ValueError(
            f"Invalid options value: {options!r} (options must be one of "
            f"{', '.join(map(repr, _OPTION_POLICIES))})"
        )
    tensors, content = fileformat.read(path)
    try:
        plan = training_state.plan(content, tensors, optimizer, model, options == "check")
    except CheckpointManifestError as error:
        raise CheckpointManifestError(f"{os.fspath(path)}: {error}") from None
    except (KeyError, IndexError, AttributeError) as error:  # a sound file, a malformed manifest
        raise CheckpointCorruptError(
            f"{os.fspath(path)}: the checkpoint's manifest is malformed ({error!r})"
        ) from None
    training_state.apply(plan, optimizer, model)
    _update_cold_start_marks(optimizer, model, cold_start_guard)


def _update_cold_start_marks(optimizer: Any, model: Any, cold_start_guard: bool) -> None:
    from ..torch.state_schema import note_restored

    if optimizer is not None:
        note_restored((p for g in optimizer.param_groups for p in g["params"]), restored=False)
    else:
        note_restored(model.parameters(), restored=cold_start_guard)
