"""Compiling and loading ``group_pass.cpp`` (see :mod:`rmsprop.torch.native`)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["ENV", "SOURCE", "NativeBuildWarning", "build", "load", "module_name"]

ENV = "RMSPROP_NATIVE"
"""Set to ``0`` to run the checks in Python without trying to build the C++ loop."""

SOURCE = Path(__file__).with_name("group_pass.cpp")

_lock = threading.Lock()
_built: list[ModuleType | None] = []  # after the first try: the module, or None if it failed


class NativeBuildWarning(RuntimeWarning):
    """The C++ loop could not be built: the same checks run in Python (slower)."""


def module_name() -> str:
    """The extension's name: one per source, torch and Python, so that a changed source or
    another torch is compiled anew rather than loaded stale from torch's extension cache."""
    key = SOURCE.read_bytes() + f"{torch.__version__} {sys.version}".encode()
    return f"rmsprop_group_pass_{hashlib.sha256(key).hexdigest()[:16]}"


def build() -> ModuleType:
    """Compile ``group_pass.cpp`` (or load it from torch's extension cache) and return it;
    raises what :func:`torch.utils.cpp_extension.load` raises (no compiler, no ninja...)."""
    from torch.utils.cpp_extension import load as load_extension

    return load_extension(module_name(), sources=[str(SOURCE)], extra_cflags=["-O2"],
                          is_python_module=True, verbose=False)


def load() -> ModuleType | None:
    """The compiled module, built at the first call of the process; ``None`` with
    ``RMSPROP_NATIVE=0`` or when it cannot be built (a :class:`NativeBuildWarning`, once)."""
    if os.environ.get(ENV) == "0":
        return None
    if _built:
        return _built[0]
    with _lock:
        if not _built:
            try:
                _built.append(build())
            except Exception as error:  # any failure of the toolchain: Python does the work
                reason = (str(error).strip().splitlines() or [""])[0][:300]
                warnings.warn(
                    f"rmsprop: the C++ loop over param groups could not be built "
                    f"({type(error).__name__}: {reason}); the same checks run in Python, "
                    f"slower. Set {ENV}=0 to skip the attempt.",
                    NativeBuildWarning, stacklevel=3)
                _built.append(None)
        return _built[0]
