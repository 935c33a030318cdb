"""The per-step checks of a planned group and the version bump of its step: one C++ loop
(:mod:`.loader`) where it is built, else the same in Python (see :mod:`rmsprop.torch.native`).
"""

from __future__ import annotations

import itertools
import operator
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .loader import built, load

__all__ = ["BOUND", "GRADS_UNBOUND", "MOVED", "MIN_TENSORS", "FlatWatch", "PlanWatch",
           "bump_versions", "ready_for"]

MIN_TENSORS = 256
"""Groups of fewer tensors run the checks in Python and never build the C++ loop: there it
would save tens of microseconds a step, against a compiler and ninja and 15 s once."""

MOVED, GRADS_UNBOUND, BOUND = 0, 1, 2
""":meth:`FlatWatch.status`: a parameter moved out of its place (or the list changed); every
parameter in place but some gradient not its view; all in place and bound."""

_GRAD = operator.attrgetter("grad")
_PTR = Tensor.data_ptr
_NUMEL = Tensor.numel
_CONTIGUOUS = Tensor.is_contiguous
_DTYPE = operator.attrgetter("dtype")


def ready_for(count: int) -> None:
    """Build (or load) the C++ loop now if a group of ``count`` tensors will use it: the one
    place that builds, called while a step checks its groups, before anything changes, so
    that a build's warning (an error under ``-W error``) stops the step before it writes."""
    if count >= MIN_TENSORS:
        load()


def _loop_for(count: int):
    """The loop for a group of ``count`` tensors if :func:`ready_for` loaded it (never
    builds: the watches also run while a step writes, and in ``zero_grad``)."""
    return built() if count >= MIN_TENSORS else None


class FlatWatch:
    """Where a flat group's parameters and gradients must be: each parameter's data at its
    address in the buffer, each gradient its view of the gradient buffer."""

    def __init__(self, params: Sequence[Tensor], addresses: Sequence[int],
                 grad_views: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.addresses = list(addresses)
        self.grad_views = list(grad_views)
        self.address_table = np.array(self.addresses, dtype=np.int64)
        # what the C++ loop compares p.grad with: each view's TensorImpl (kept alive here)
        self.grad_table = np.array([view._cdata for view in self.grad_views], dtype=np.int64)

    def status(self, params: list[Tensor]) -> int:
        """:data:`MOVED`, :data:`GRADS_UNBOUND` or :data:`BOUND` for ``params`` (the group's
        list now, which must be :attr:`params`, the same objects in order)."""
        native = _loop_for(len(self.params))
        if native is not None and type(params) is list:
            return native.flat_status(params, self.params, self.address_table, self.grad_table)
        return self.status_in_python(params)

    def status_in_python(self, params: Sequence[Tensor]) -> int:
        """:meth:`status` without the C++ loop."""
        if len(params) != len(self.params) or not all(map(operator.is_, params, self.params)):
            return MOVED
        if list(map(_PTR, params)) != self.addresses:
            return MOVED
        if all(map(operator.is_, map(_GRAD, params), self.grad_views)):
            return BOUND
        return GRADS_UNBOUND


class PlanWatch:
    """What a planned group's step must find unchanged: the group's parameters (the same
    objects in order), which of them have a gradient, and for those, their data's address and
    their gradient's size, dtype and contiguity; the gradients' addresses are read at each
    step."""

    def __init__(self, group_params: Sequence[Tensor], params: Sequence[Tensor]) -> None:
        """``params``: those of ``group_params`` with a gradient, in the group's order."""
        self.group_params = list(group_params)
        has = set(map(id, params))
        self.has_grad = [id(p) in has for p in self.group_params]
        self.params = list(params)
        self.param_ptrs = list(map(_PTR, self.params))
        self.sizes = list(map(_NUMEL, self.params))
        self.dtypes = list(map(_DTYPE, self.params))
        self.has_grad_table = np.array(self.has_grad, dtype=np.uint8)
        self.address_table = np.array(self.param_ptrs, dtype=np.int64)
        self.size_table = np.array(self.sizes, dtype=np.int64)
        self.grad_addresses = np.zeros(len(self.params), dtype=np.int64)

    def grads(self, group_params: list[Tensor]) -> tuple[list[Tensor], np.ndarray] | None:
        """This step's gradients of :attr:`params` and their data addresses while the plan
        holds for ``group_params`` (the group's list now), else ``None``."""
        native = _loop_for(len(self.group_params))
        if native is None or type(group_params) is not list:
            return self.grads_in_python(group_params)
        grads = native.plan_grads(group_params, self.group_params, self.has_grad_table,
                                  self.address_table, self.size_table, self.grad_addresses)
        return None if grads is None else (grads, self.grad_addresses)

    def grads_in_python(self, group_params: Sequence[Tensor]
                        ) -> tuple[list[Tensor], np.ndarray] | None:
        """:meth:`grads` without the C++ loop."""
        if len(group_params) != len(self.group_params) or not all(
                map(operator.is_, group_params, self.group_params)):
            return None
        grads = list(map(_GRAD, group_params))
        if list(map(operator.is_not, grads, itertools.repeat(None))) != self.has_grad:
            return None
        if len(grads) != len(self.params):
            grads = list(itertools.compress(grads, self.has_grad))
        try:
            ptrs = list(map(_PTR, grads))
            if (list(map(_NUMEL, grads)) != self.sizes or not all(map(_CONTIGUOUS, grads))
                    or list(map(_DTYPE, grads)) != self.dtypes
                    or list(map(_PTR, self.params)) != self.param_ptrs):
                return None
        except RuntimeError:  # a sparse gradient: the ordinary path says so
            return None
        return grads, np.array(ptrs, dtype=np.int64)


def bump_versions(tensors: Sequence[Tensor]) -> None:
    """Every tensor's version counter plus one, as :func:`torch.autograd.graph.increment_version`
    (which it calls where the C++ loop is not loaded: this runs after a kernel wrote, so it
    never starts a build)."""
    native = built() if len(tensors) >= MIN_TENSORS else None
    if native is None:
        torch.autograd.graph.increment_version(tensors)
    else:
        native.bump(tensors if type(tensors) is list else list(tensors))
