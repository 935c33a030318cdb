"""One C++ loop over a param group's tensors, where Python would pay tensor by tensor.

A planned step (:mod:`rmsprop.torch.group_plan`) looks at every parameter at every step: its
data must not have moved, its gradient must be set or not as when the plan was built, of the
same size, and its address goes into the kernel's table; a flat group's parameters must still
be views of its buffer and their gradients the views of its gradient buffer
(:mod:`rmsprop.torch.flat_layout`); and after the kernel every parameter's version counter
goes up by one, as torch's in-place updates make it. Python reaches each of these through
several objects per tensor, on cache lines that the kernel's pass over memory has evicted: on
2000 small tensors that cost more than the kernel itself (benchmarks/NOTES.md, issue 19). ``group_pass.cpp`` reads the same fields in one C++ loop, where the cache misses of
many tensors overlap.

Groups of fewer than :data:`MIN_TENSORS` tensors keep the Python checks: the loop is built
only where it pays, by :func:`ready_for`, while a step checks its groups and before any
changes. It is compiled by :func:`torch.utils.cpp_extension.load` (a C++ compiler and ninja;
about 15 s on two cores) and kept in ``rmsprop/`` under torch's extension directory
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), once per machine, torch
and source (:mod:`.loader`): :func:`build` does it ahead (in a container image, say). Where
it cannot be built, or with ``RMSPROP_NATIVE=0``, the same checks run in Python, with the
same results, slower (:mod:`.group_pass`); a :class:`NativeBuildWarning` says once why.
"""

from .loader import ENV, NativeBuildWarning, build, built, load
from .group_pass import (
    BOUND, GRADS_UNBOUND, MIN_TENSORS, MOVED, FlatWatch, PlanWatch, bump_versions, ready_for,
)

__all__ = ["BOUND", "ENV", "GRADS_UNBOUND", "MIN_TENSORS", "MOVED", "FlatWatch",
           "NativeBuildWarning", "PlanWatch", "build", "built", "bump_versions", "load",
           "ready_for"]
