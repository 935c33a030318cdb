"""The optional parts of rmsprop and the extra that installs each.

``pip install rmsprop`` brings NumPy only (the spec, the float64 reference, ``rmsprop.numpy``).
Every other part checks its packages when it is imported and, where one is missing, raises an
``ImportError`` that names the extra to install, e.g.
``rmsprop.torch needs PyTorch: pip install 'rmsprop[torch]'``.
"""

from __future__ import annotations

import importlib

__all__ = ["NAMES", "require"]

NAMES = {
    "torch": "PyTorch",
    "safetensors": "safetensors",
    "jax": "JAX",
    "optax": "optax",
    "numba": "numba",
    "triton": "Triton",
    "typer": "typer",
    "rich": "rich",
    "matplotlib": "matplotlib",
}
"""How the error names each package (its import name where not listed)."""


def require(part: str, extra: str, *modules: str) -> None:
    """Import ``modules`` for ``part``; if one cannot be imported, raise an ``ImportError``
    naming the extra that installs it (the import's own error is its cause)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"{part} needs {NAMES.get(module, module)}: pip install 'rmsprop[{extra}]' "
                f"(import {module}: {error})",
                name=module,
            ) from error
