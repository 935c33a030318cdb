"""The per-step checks of a flat group and the version bump of a planned step: one C++ loop
(:mod:`.loader`) where it is built, else the same in Python (see :mod:`rmsprop.torch.native`).
"""

from __future__ import annotations

import operator
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .loader import load

__all__ = ["BOUND", "GRADS_UNBOUND", "MOVED", "FlatWatch", "bump_versions"]

MOVED, GRADS_UNBOUND, BOUND = 0, 1, 2
""":meth:`FlatWatch.status`: a parameter moved out of its place (or the list changed); every
parameter in place but some gradient not its view; all in place and bound."""

_GRAD = operator.attrgetter("grad")
_PTR = Tensor.data_ptr


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
        native = load()
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


def bump_versions(tensors: Sequence[Tensor]) -> None:
    """Every tensor's version counter plus one, as :func:`torch.autograd.graph.increment_version`
    (which it calls where the C++ loop is not built)."""
    native = load()
    if native is None:
        torch.autograd.graph.increment_version(tensors)
    else:
        native.bump(tensors if type(tensors) is list else list(tensors))
