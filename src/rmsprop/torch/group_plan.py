"""A param group's step planned once: what ``RMSprop.step`` would gather tensor by tensor.

An ordinary step of a fused group (``impl="fused"`` or ``"triton"``) looks at every
parameter in Python: is its gradient set, sparse, on which device, of which dtype; which
implementation runs it; its state, created if missing; the kernel's address table; the step
counters counted up one 0-d tensor at a time.
On a model of many small tensors (2000 x 1k) that costs ten times the kernel. A
:class:`GroupPlan` keeps the answers while they hold:

* the group's parameters (which ones, in which order, which of them have a gradient), their
  storage, the group's options and how they resolve (``impl``, the spec);
* the state tensors and the kernel's tables (:class:`.kernels.plan.KernelPlan`);
* the step counters, gathered into one 1-D tensor per group: ``state[p]["step"]`` is a 0-d
  view of its element (torch's format: a 0-d float tensor), so one in-place add counts every
  parameter's step.

:meth:`GroupPlan.grads` checks, at every step, what can change between steps without the
optimizer seeing it, in one C++ loop over the group (:mod:`rmsprop.torch.native`, which falls
back to the same checks in Python): the parameter list, each parameter's address
(``p.data = ...``), which gradients are set, and their addresses (new at every step after
``zero_grad(set_to_none=True)``: they are written into the kernel's table, nothing is
rebuilt), sizes and contiguity. What the optimizer changes itself (``load_state_dict``,
unpickling, ``add_param_group``, ``warm_start``) drops its plans (:func:`forget`); a change
of options (``state_precision``, ``momentum``, ...) written into ``param_groups`` between
steps is seen by comparing the group's resolved spec and settings.
Replacing a state tensor by assignment (``optimizer.state[p]["square_avg"] = t``) between
steps is not watched (no torch optimizer API does it): call :func:`forget` after it.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..spec import RMSpropSpec
from .flat_layout import FlatLayout
from .kernels import KernelPlan
from .kernels.tensors import TensorLists
from .native import BOUND, MOVED, PlanWatch

__all__ = ["GroupPlan", "forget", "plans_of", "settings_of"]

_GRAD = operator.attrgetter("grad")
_SPARSE = operator.attrgetter("is_sparse")
_PLANS = "_rmsprop_plans"  # the optimizer's __dict__ entry: {id(group): GroupPlan}
# The state key of each list of TensorLists (None: not a state tensor).
_NAMES = (None, None, "square_avg", "step", "max_square_avg", "grad_avg", "momentum_buffer")


def _state_names(tensors: TensorLists) -> tuple[str, ...]:
    """The state keys (but ``step``) whose lists ``tensors`` holds."""
    return tuple(name for name, lst in zip(_NAMES, tensors.fields())
                 if name and name != "step" and lst)


def plans_of(optimizer: Any) -> dict[int, "GroupPlan"]:
    """The optimizer's plans, by ``id`` of their group."""
    return optimizer.__dict__.setdefault(_PLANS, {})


def forget(optimizer: Any) -> None:
    """Drop every plan of ``optimizer`` (its state or groups changed): the next step
    rebuilds them."""
    optimizer.__dict__[_PLANS] = {}


def settings_of(group: dict[str, Any]) -> tuple:
    """How a group runs, besides its spec: a plan holds only while these are unchanged."""
    return (group["impl"], group["foreach"], group["state_precision"], group["min_8bit_size"],
            group["capturable"], group["differentiable"])


@dataclass
class GroupPlan:
    """One group's step, gathered once (see the module docstring)."""

    group: dict[str, Any]
    watch: PlanWatch
    spec: RMSpropSpec
    settings: tuple
    impl: str
    state: Any
    state_len: int
    counters: Tensor
    kernel: KernelPlan
    layout: FlatLayout | None = None

    @classmethod
    def build(cls, optimizer: Any, group: dict[str, Any], params: list[Tensor],
              states: list[dict[str, Any]], tensors: TensorLists, spec: RMSpropSpec,
              impl: str, layout: FlatLayout | None = None) -> "GroupPlan | None":
        """The plan of ``group`` stepping ``params`` (those with a gradient) with ``states``
        (created) and ``tensors`` (their lists); ``None`` when the step counters cannot be
        gathered on the CPU (mixed dtypes or devices, as a loaded state dict may leave them,
        or all on a GPU).

        With a flat ``layout`` holding every parameter of the group (each with its gradient
        bound to its view), the state is moved into the layout's buffers and, without bias
        correction (one ``1 - rho^t`` for all), the kernel walks the buffers as one tensor.
        """
        steps = [s["step"] for s in states]
        first = steps[0]
        if not all(isinstance(s, Tensor) and s.dim() == 0 and s.dtype == first.dtype
                   and s.device == first.device for s in steps):
            return None
        if first.device.type != "cpu":  # step_values reads the counters with NumPy
            return None
        group_params = list(group["params"])
        if layout is not None and not (
                len(params) == len(group_params) and layout.intact(group_params)
                and layout.adopt_state(states, _state_names(tensors))):
            layout = None
        counters = torch.stack([s.detach() for s in steps])
        for state, view in zip(states, counters.unbind()):
            state["step"] = view
        tensors = TensorLists(*[[s[name] for s in states] if name and lst else lst
                                for name, lst in zip(_NAMES, tensors.fields())])
        if layout is not None and not spec.bias_correction:
            buffers = layout.state_buffers
            tensors = TensorLists(
                [layout.param_buffer], [layout.grad_buffer],
                *[([buffers[name]] if name != "step" else lst[:1]) if lst and name else []
                  for name, lst in zip(_NAMES[2:], tensors.fields()[2:])])
        kernel = KernelPlan.build(tensors, spec, updated=list(params))
        return cls(group, PlanWatch(group_params, params), spec, settings_of(group), impl,
                   optimizer.state, len(optimizer.state), counters, kernel, layout)

    @property
    def params(self) -> list[Tensor]:
        """The parameters the plan steps (those of the group with a gradient, in order)."""
        return self.watch.params

    def grads(self, optimizer: Any, group: dict[str, Any], spec: RMSpropSpec
              ) -> list[Tensor] | None:
        """This step's gradients of :attr:`params` when the plan still holds for ``group``
        (their addresses written into the kernel's table), else ``None``."""
        group_params = group["params"]
        if (self.group is not group or spec is not self.spec
                or optimizer.state is not self.state or len(optimizer.state) != self.state_len
                or settings_of(group) != self.settings):
            return None
        if self.layout is not None:  # gradients not bound to their views are copied in
            status = self.layout.watch.status(group_params)  # the list, addresses, gradients
            if status == MOVED:
                return None
            if status == BOUND:
                return self.layout.grad_views
            grads = list(map(_GRAD, group_params))
            if all(map(operator.is_not, grads, itertools.repeat(None))) and not any(
                    map(_SPARSE, grads)):
                return grads
            return None
        found = self.watch.grads(group_params)
        if found is None:
            return None
        grads, addresses = found
        self.kernel.set_grads(addresses)
        return grads

    def step_values(self) -> np.ndarray:
        """t of this step for each parameter (the counters plus one, in float64, as the
        per-call path computes them from each counter's value)."""
        return self.counters.numpy().astype(np.float64) + 1.0
