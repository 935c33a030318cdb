"""Where numba caches rmsprop's compiled kernels: never inside the installed package.

numba's ``cache=True`` writes next to the source file (``__pycache__``) when it can, which
for an installed package means site-packages: read-only in a system install or a container
image, and shared between users and environments. :func:`install` puts a locator ahead of
numba's in-tree one, for rmsprop's own source files only, so that the kernels are cached:

- in ``NUMBA_CACHE_DIR`` when it is set (numba's own rule, unchanged);
- otherwise in numba's user-wide cache directory (``$XDG_CACHE_HOME/numba``, by default
  ``~/.cache/numba``), where numba itself goes when the source tree is read-only.

Other packages' numba functions are cached as numba decides.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from numba.core import caching, config

__all__ = ["install", "PACKAGE_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parent
"""The installed ``rmsprop`` package, whose files never receive a cache."""

# numba 0.60 names these classes with a leading underscore; later versions without it.
_CACHE_IMPL = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
_USER_WIDE = (getattr(caching, "UserWideCacheLocator", None)
              or getattr(caching, "_UserWideCacheLocator"))


class _PackageUserWideLocator(_USER_WIDE):  # type: ignore[misc, valid-type]
    """numba's user-wide locator, taken for rmsprop's files unless NUMBA_CACHE_DIR is set."""

    @classmethod
    def from_function(cls, py_func: Callable[..., Any], py_file: str) -> Any:
        # numba.core.config sets its options at run time, from the environment
        cache_dir = config.CACHE_DIR  # type: ignore[attr-defined]
        if cache_dir or not Path(py_file).resolve().is_relative_to(PACKAGE_DIR):
            return None
        return super().from_function(py_func, py_file)


@functools.cache
def install() -> None:
    """Put the locator in numba's list (once; before any ``cache=True`` kernel is made)."""
    locators = _CACHE_IMPL._locator_classes
    if _PackageUserWideLocator not in locators:
        locators.insert(0, _PackageUserWideLocator)
