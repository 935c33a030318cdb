"""Compiling and loading ``group_pass.cpp`` (see :mod:`rmsprop.torch.native`).

Each build runs in a scratch directory of its own and the finished library is written into
place whole (a temporary file, fsync, ``os.replace``), with its SHA-256 beside it: a build
that is interrupted (Ctrl-C during the first step, a killed CI job) leaves a scratch
directory, never the lock file on which :func:`torch.utils.cpp_extension.load` would wait
forever at the next start; a library that is not whole on disk is built again rather than
mapped (which would crash the process). Two processes that build at once each write an
identical library.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["ENV", "SOURCE", "NativeBuildWarning", "build", "built", "cache_dir", "disabled",
           "load", "module_name"]

ENV = "RMSPROP_NATIVE"
"""Set to ``0`` (or ``false``, ``off``, ``no``) to run the checks in Python without trying to
build the C++ loop."""

SOURCE = Path(__file__).with_name("group_pass.cpp")

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_built: list[ModuleType | None] = []  # after the first try: the module, or None if it failed


class NativeBuildWarning(RuntimeWarning):
    """The C++ loop could not be built: the same checks run in Python (slower)."""


def module_name() -> str:
    """The extension's name: one per source, torch build, Python and machine architecture, so
    that a changed source, another torch or another machine sharing the cache directory
    compiles its own rather than loading one that does not fit."""
    build_of = f"{torch.__version__} {torch.version.git_version} {sys.version} {platform.machine()}"
    key = SOURCE.read_bytes() + build_of.encode()
    return f"rmsprop_group_pass_{hashlib.sha256(key).hexdigest()[:16]}"


def cache_dir() -> Path:
    """Where the built library is kept: ``rmsprop`` in torch's extension directory
    (``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / "rmsprop"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(kept: Path, digest: Path) -> bool:
    """The kept library is whole: its SHA-256 is the one written beside it after it was moved
    into place (a library cut short, by a crash before the disk had it or a partly restored
    cache, would crash the process that maps it)."""
    try:
        return digest.read_text().strip() == _digest(kept)
    except OSError:
        return False


def _write_durably(path: Path, data: bytes) -> None:
    """``data`` into ``path``, whole or not at all (a temporary file, fsync, os.replace)."""
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def _import(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build() -> ModuleType:
    """The compiled ``group_pass.cpp``: from :func:`cache_dir` if it was built before, else
    compiled by :func:`torch.utils.cpp_extension.load` (raising what it raises: no compiler,
    no ninja...) and kept there."""
    from torch.utils.cpp_extension import LIB_EXT
    from torch.utils.cpp_extension import load as load_extension

    name = module_name()
    root = cache_dir()
    kept = root / f"{name}{LIB_EXT}"
    digest = root / f"{name}{LIB_EXT}.sha256"
    if _intact(kept, digest):
        return _import(name, kept)
    root.mkdir(parents=True, exist_ok=True)
    _log.info("rmsprop: compiling %s into %s (once per machine)", SOURCE.name, kept)
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        module = load_extension(name, sources=[str(SOURCE)], extra_cflags=["-O2"],
                                build_directory=str(scratch), is_python_module=True,
                                verbose=False)
        built = scratch / f"{module.__name__}{LIB_EXT}"
        if module.__name__ == name:  # torch renames a second build in one process: not kept
            library = built.read_bytes()
            _write_durably(kept, library)
            _write_durably(digest, hashlib.sha256(library).hexdigest().encode())
        return module
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def disabled() -> bool:
    """Whether ``RMSPROP_NATIVE`` turns the C++ loop off."""
    return os.environ.get(ENV, "").strip().lower() in ("0", "false", "off", "no")


def built() -> ModuleType | None:
    """The module if this process has loaded it already (never builds: for the code that
    runs after a step has begun to write, where a build's warning must not stop it)."""
    return None if disabled() or not _built else _built[0]


def load() -> ModuleType | None:
    """The compiled module, built (or loaded from the cache) at the first call of the
    process; ``None`` with ``RMSPROP_NATIVE=0`` or when it cannot be built (a
    :class:`NativeBuildWarning`, once)."""
    if disabled():
        return None
    if _built:
        return _built[0]
    with _lock:
        if _built:
            return _built[0]
        try:
            module = build()
        except Exception as error:  # any failure of the toolchain: Python does the work
            _built.append(None)  # before the warning, which a filter may turn into an error
            reason = (str(error).strip().splitlines() or [""])[0][:300]
            warnings.warn(
                f"rmsprop: the C++ loop over param groups could not be built or loaded "
                f"({type(error).__name__}: {reason}); the same checks run in Python, "
                f"slower. Set {ENV}=0 to skip the attempt.",
                NativeBuildWarning, stacklevel=2)
            return None
        _built.append(module)
        return module
