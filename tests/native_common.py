"""Running a test with the C++ loop of :mod:`rmsprop.torch.native` and without it."""

from __future__ import annotations

import pytest

from rmsprop.torch import native
from rmsprop.torch.native import group_pass

PATHS = ["native", "python"]


def use_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Run the checks and bumps of planned steps with the C++ loop, for groups of any size
    (the loop must be built: it is wherever the project is tested), or in Python
    (``RMSPROP_NATIVE=0``)."""
    if path == "python":
        monkeypatch.setenv(native.ENV, "0")
    else:
        monkeypatch.delenv(native.ENV, raising=False)
        monkeypatch.setattr(group_pass, "MIN_TENSORS", 1)
        assert native.load() is not None, "the C++ loop did not build here"
