"""``RMSprop(..., flat=True)``: a group's parameters, gradients and state as views of one
buffer each, so that a fused step is one pass over three to five contiguous arrays.

As DDP's ``gradient_as_bucket_view`` does for gradients: the parameters' data moves into one
buffer (``p.data`` becomes a view of it: the same ``Parameter`` objects, the module keeps
working), their gradients are views of a second buffer, and each state tensor (``square_avg``,
``momentum_buffer``, ...) a view of one buffer per key. ``zero_grad()`` zeroes the gradient
buffer in place. What a user may do between steps keeps working, at the cost of a copy:

* a gradient that is not its view (``p.grad = g``, or a new gradient after ``p.grad = None``
  and ``backward()``) is copied into its view at the next step, and ``p.grad`` rebound to it;
* a parameter whose gradient is ``None`` is not stepped, as in torch (that step runs tensor by
  tensor, on the views);
* a loaded state dict (``load_state_dict``) is copied into the buffers at the next step.

See docs/flat.md for what it changes for the user.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
from torch import Tensor

from .native import BOUND, MOVED, FlatWatch

__all__ = ["FlatLayout"]


class FlatLayout:
    """The buffers of one flat param group (see the module docstring)."""

    def __init__(self, params: list[Tensor], where: str) -> None:
        """Move ``params``' data into one buffer (their values unchanged) and their
        gradients, where set, into a second; ``where`` names the group in errors."""
        _check(params, where)
        first = params[0] if params else torch.empty(0)
        self.params = list(params)
        self.numels = [p.numel() for p in params]
        self.offsets = [sum(self.numels[:i]) for i in range(len(params))]
        total = sum(self.numels)
        self.param_buffer = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad_buffer = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.state_buffers: dict[str, Tensor] = {}
        self.state_views: dict[str, list[Tensor]] = {}
        with torch.no_grad():
            views = self.views_of(self.param_buffer)
            for p, view in zip(params, views):
                view.copy_(p.detach())
            for p, view in zip(params, views):
                p.data = view
        # read back, not computed: data_ptr() of an empty tensor is 0, wherever its view lies
        self.addresses = [p.data_ptr() for p in params]
        self.grad_views = self.views_of(self.grad_buffer)
        for p, view in zip(params, self.grad_views):
            if p.grad is not None:
                view.copy_(p.grad.detach())
                p.grad = view
        self.watch = FlatWatch(params, self.addresses, self.grad_views)

    def views_of(self, buffer: Tensor) -> list[Tensor]:
        """``buffer`` cut into one view per parameter, in each parameter's shape."""
        return [buffer[o:o + n].view(p.shape)
                for p, o, n in zip(self.params, self.offsets, self.numels)]

    def intact(self, params: list[Tensor] | None = None) -> bool:
        """Every parameter is still its view of the buffer (``p.data = ...`` moves it out);
        with ``params`` (the group's list now), also that it holds the same parameters in the
        same order."""
        return self.watch.status(self.params if params is None else params) != MOVED

    def bind_grads(self, grads: Sequence[Tensor | None]) -> None:
        """Copy every set gradient that is not its view into its view, and rebind
        ``p.grad`` to the view (``None`` stays ``None``)."""
        with torch.no_grad():
            for p, grad, view in zip(self.params, grads, self.grad_views):
                if grad is not None and grad is not view:
                    view.copy_(grad)
                    p.grad = view

    def grads_bound(self, grads: Sequence[Tensor | None]) -> bool:
        """Whether every gradient is its view of the buffer."""
        return all(map(operator.is_, grads, self.grad_views))

    def zero_grads(self) -> None:
        """``zero_grad()`` of a flat group: every gradient its view, all zero."""
        if self.watch.status(self.params) != BOUND:
            for p, view in zip(self.params, self.grad_views):
                p.grad = view
        self.grad_buffer.zero_()

    def adopt_state(self, states: list[dict[str, Any]], keys: tuple[str, ...]) -> bool:
        """Make ``states[i][key]`` the i-th view of ``key``'s buffer for every key, copying
        the values in (a loaded state, or state created tensor by tensor); ``False`` (and
        nothing changed) when a key's tensors differ in dtype or device."""
        for key in keys:
            tensors = [s[key] for s in states]
            first = tensors[0]
            if any(t.dtype != first.dtype or t.device != first.device for t in tensors):
                return False
        for key in keys:
            tensors = [s[key] for s in states]
            buffer = self.state_buffers.get(key)
            if buffer is None or buffer.dtype != tensors[0].dtype:
                buffer = torch.empty(self.param_buffer.numel(), dtype=tensors[0].dtype,
                                     device=tensors[0].device)
                self.state_buffers[key] = buffer
                self.state_views[key] = self.views_of(buffer)
            views = self.state_views[key]
            with torch.no_grad():
                for state, tensor, view in zip(states, tensors, views):
                    if tensor is not view:
                        view.copy_(tensor)
                        state[key] = view
        return True


def _check(params: list[Tensor], where: str) -> None:
    """What a flat group needs, checked before anything moves."""
    if not params:
        return
    first = params[0]
    for i, p in enumerate(params):
        if p.layout != torch.strided or not p.dtype.is_floating_point:
            raise ValueError(
                f"flat=True lays out dense real floating-point parameters, got parameter {i} "
                f"of {where} with dtype {p.dtype} and layout {p.layout}")
        if p.dtype != first.dtype or p.device != first.device:
            raise ValueError(
                f"flat=True needs one dtype and device per param group, got parameter {i} "
                f"of {where} in {p.dtype} on {p.device}, parameter 0 in {first.dtype} on "
                f"{first.device}: put them in separate param groups")
