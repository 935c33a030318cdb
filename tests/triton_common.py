"""Triton's interpreter for a test module: ``TRITON_INTERPRET=1`` must be set when the kernel
module is decorated, so this sets it and reloads the kernel module if something imported it
compiled; the interpreter then runs the kernels on CPU tensors."""

from __future__ import annotations

import importlib
import os
from typing import Any, Iterator


def interpreted_triton_kernel() -> Iterator[Any]:
    """For a module-scoped fixture: the float32 kernel module, interpreted, while the
    fixture lasts (the environment restored after)."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    from rmsprop.torch.kernels import triton_kernel

    if type(triton_kernel._rmsprop_kernel).__name__ != "InterpretedFunction":
        importlib.reload(triton_kernel)
    yield triton_kernel
    if previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = previous
