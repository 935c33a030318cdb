"""``rmsprop.torch.RMSprop``: a drop-in for ``torch.optim.RMSprop`` with every option of the spec.

The class only keeps param groups and lazily created state; the update itself is
:func:`rmsprop.torch.functional.rmsprop`.
"""

from __future__ import annotations

import functools
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar, cast

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from .._defaults import explicit as explicit_options, flavor_default
from ..errors import StateDictError
from ..spec import FLAVORS, OPTION_NAMES, RMSpropSpec, check_impl, resolve
from ..update import state_keys
from .functional import NonFiniteGradientError, choose_impl, rmsprop, wants_torch_path
from . import group_plan, native, state_schema
from .flat_layout import FlatLayout
from .group_plan import GroupPlan
from .kernels import PLANNED, PLANNED_FINITE, TensorLists, plannable
from .lean import optimizer as lean_state
from .kernels.capabilities import state_dtype
from .kernels.tensors import all_finite, step_dtype
from .lean.storage import DEFAULT_MIN_8BIT_SIZE
from .warm_start import ColdStartWarning, note_loaded_guards, split_cold, warm_start

__all__ = ["RMSprop", "NonFiniteGradientError", "StateDictError"]


# The group keys that make up the spec (lr is kept apart: it changes under schedules).
_SPEC_KEYS = tuple(name for name in OPTION_NAMES if name != "lr")


_F = TypeVar("_F", bound=Callable[..., Any])
_GRAD = operator.attrgetter("grad")
_DTYPE = operator.attrgetter("dtype")

# Where torch lets capturable=True step (torch.optim.optimizer's list; XLA is torch's too).
_CAPTURABLE_DEVICES = ("cuda", "xpu", "hpu", torch._C._get_privateuse1_backend_name(), "xla")


def _grad_mode_of_step(step: _F) -> _F:
    """Run ``step`` with grad mode on for a ``differentiable=True`` optimizer, off otherwise
    (torch's rule: the constructor's ``differentiable`` decides for every group).

    The graph breaks around it keep a compiled step an inference graph when grad mode is off,
    as torch's own decorator does (pytorch/pytorch#104053).
    """

    @functools.wraps(step)
    def wrapped(self: "RMSprop", *args: Any, **kwargs: Any) -> Any:
        import torch._dynamo

        previous = torch.is_grad_enabled()
        try:
            torch.set_grad_enabled(bool(self.defaults["differentiable"]))
            torch._dynamo.graph_break()
            return step(self, *args, **kwargs)
        finally:
            torch._dynamo.graph_break()
            torch.set_grad_enabled(previous)

    return wrapped  # type: ignore[return-value]


def _as_bool(name: str, value: Any) -> bool:
    """``value`` as a bool: Python and NumPy bools are accepted (torch takes any truthy value;
    we refuse what is not a bool, so that ``capturable="no"`` is not taken for ``True``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


class RMSprop(Optimizer):
    r"""RMSProp with every option of the family; a drop-in for ``torch.optim.RMSprop``.

    The positional arguments, their order, defaults and state keys (``step``,
    ``square_avg``, ``momentum_buffer``, ``grad_avg``) are those of ``torch.optim.RMSprop``;
    every extra option is keyword-only. The numbers too, bit for bit, with the default
    ``impl="auto"`` (torch's own for-loop / foreach path); ``impl="fused"`` is faster and
    within a few ulp (see ``impl`` below). The update (see :mod:`rmsprop.spec`)::

        v <- alpha*v + (1 - alpha)*g^2
        theta <- theta - lr * g / (sqrt(v) + eps)

    with weight decay, momentum (torch or TensorFlow form, Nesterov), centering, AMSGrad,
    bias correction and eps inside or outside the root as options.

    Args:
        params: iterable of parameters or param groups.
        lr: learning rate (float or 1-element tensor; default: the flavour's, 1e-2).
        alpha: decay of the moving averages, in [0, 1) (default: the flavour's, 0.99).
        eps: added to the denominator (default: the flavour's, 1e-8).
        weight_decay: L2 penalty, or decoupled decay (default 0).
        momentum: momentum factor (default 0).
        centered: divide by an estimate of the gradient's variance (default False).
        capturable: as torch's: the step counters live on the parameter's device and the step
            never reads a value back to the host, so it can be captured in a CUDA graph (torch's
            paths only; on a CPU parameter the step raises torch's ``AssertionError``, before
            anything changes). A tensor ``lr`` is read back once per step, and so are options
            outside torch's (``bias_correction``, ``nonfinite`` other than ``"propagate"``).
        foreach: ``True`` selects ``impl="foreach"``, ``False`` ``impl="loop"``.
        maximize: maximize the objective (the gradient tensor is not modified).
        differentiable: as torch's: ``step()`` runs with grad mode on and records the update
            in autograd, so gradients flow through it to the parameters, the gradients and the
            state (``impl`` ``"loop"``, which ``"auto"`` takes as torch does, or ``"foreach"``;
            the fused kernels and lean state refuse it).

    Keyword-only args (``None`` means: the flavour's choice):
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        eps_in_sqrt: ``sqrt(v + eps)`` (TensorFlow) instead of ``sqrt(v) + eps``.
        initial_accumulator_value: v0 (TensorFlow 1 uses 1.0).
        lr_in_momentum: TensorFlow's momentum form ``b = mu*b + lr*u; theta -= b``.
        decoupled_weight_decay: ``theta -= lr*weight_decay*theta`` instead of L2.
        amsgrad: use the running maximum of v (state key ``max_square_avg``).
        bias_correction: divide v (and the gradient average) by ``1 - alpha**t``.
        flavor: a framework preset, see :func:`rmsprop.flavors` (default ``"pytorch"``).
        impl: ``"auto"``, ``"loop"``, ``"foreach"``, ``"fused"`` (CPU, numba) or ``"triton"``
            (CUDA); a compiled step (``torch.compile``) runs the last two eagerly inside it.
            ``"auto"`` runs torch's own path for the ``pytorch`` flavour (``"loop"`` on CPU,
            ``"foreach"`` on GPU, as ``torch.optim.RMSprop`` picks), which gives
            ``torch.optim.RMSprop``'s numbers bit for bit; ``impl="fused"`` (``"triton"``) is
            the fast path, as torch's ``fused=True``, within a few ulp of torch's numbers (it
            does not round as torch's kernels do: torch's CPU ``addcmul``/``lerp`` round
            through an FMA, torch's CUDA kernels are compiled with FMA contraction, the numba
            and Triton kernels use none). For the other flavours and for lean state,
            ``"auto"`` takes the fused kernels.
        nonfinite: ``"propagate"`` (as torch), ``"raise"`` (raise
            :class:`NonFiniteGradientError` before anything changes) or ``"skip"`` (skip the
            whole step and count it in each group's ``"skipped_steps"``).
        state_precision: how the state is stored: ``"fp32"`` (default; the parameter's dtype,
            as torch, but float32 for 16-bit parameters under the fused and Triton kernels),
            ``"bf16"`` or ``"8bit"`` (block-wise quantized, about 1 byte per element per state
            tensor; see :mod:`rmsprop.torch.lean.storage`). Lean precisions run on CPU
            tensors (numba, ``impl="fused"`` or ``"auto"``) and on CUDA tensors (Triton,
            ``impl="triton"`` or ``"auto"``); every option works with them.
            A state dict loads with any precision and is converted to this optimizer's;
            ``torch.optim.RMSprop`` reads only ``"fp32"`` state dicts (load a lean one into
            this class with ``"fp32"`` and save that to hand a run over).
        min_8bit_size: under ``"8bit"``, parameters with fewer elements keep full-precision
            state (default 4096).
        flat: lay each param group out flat (default ``False``): its parameters' data, their
            gradients and each state tensor become views of one buffer each (as DDP's
            ``gradient_as_bucket_view`` does for gradients), so that ``impl="fused"`` updates
            a group in one pass over a few contiguous arrays, however many tensors it has.
            The numbers are those of ``flat=False``, bit for bit. What it changes for the
            user: the parameters' storage moves at construction (``p.data`` is a view of the
            group's buffer; the ``Parameter`` objects stay the same, the module keeps
            working; non-contiguous parameters become contiguous); ``zero_grad()`` zeroes the
            gradients in place whatever ``set_to_none`` says (as torch's
            ``set_to_none=False``: a parameter that gets no gradient then steps with
            ``g = 0``; set ``p.grad = None`` to leave it out); a gradient that is not its
            view (assigned, or new after ``p.grad = None``) is copied in at the next step;
            each group needs one dtype and device and ``state_precision="fp32"``, and
            refuses ``differentiable=True``. See docs/flat.md.

    .. warning:: Stricter than torch on purpose: ``alpha`` must be < 1, NaN or infinite
       hyperparameters are refused, and the centered variance is clamped at 0 before the root
       (torch returns NaN when rounding makes it negative). Complex parameters are updated as
       torch does: real and imaginary parts as two real parameters.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = flavor_default(1e-2),
        alpha: float = flavor_default(0.99),
        eps: float = flavor_default(1e-8),
        weight_decay: float = flavor_default(0),
        momentum: float = flavor_default(0),
        centered: bool = flavor_default(False),
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        nesterov: bool | None = None,
        eps_in_sqrt: bool | None = None,
        initial_accumulator_value: float | None = None,
        lr_in_momentum: bool | None = None,
        decoupled_weight_decay: bool | None = None,
        amsgrad: bool | None = None,
        bias_correction: bool | None = None,
        flavor: str = "pytorch",
        impl: str = "auto",
        nonfinite: str = "propagate",
        state_precision: str = "fp32",
        min_8bit_size: int = DEFAULT_MIN_8BIT_SIZE,
        flat: bool = False,
    ) -> None:
        given = {
            "lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
            "momentum": momentum, "centered": centered, "maximize": maximize,
            "nesterov": nesterov, "eps_in_sqrt": eps_in_sqrt,
            "initial_accumulator_value": initial_accumulator_value,
            "lr_in_momentum": lr_in_momentum,
            "decoupled_weight_decay": decoupled_weight_decay, "amsgrad": amsgrad,
            "bias_correction": bias_correction, "nonfinite": nonfinite,
        }
        if lr is None:  # as torch.optim.RMSprop, which cannot compare None with 0
            raise TypeError("lr must be a real number or a 1-element tensor, got None")
        foreach = state_schema.check_foreach(foreach)
        explicit = explicit_options(given)
        tensor_lr = explicit.pop("lr") if isinstance(explicit.get("lr"), Tensor) else None
        if tensor_lr is not None:
            state_schema.check_lr_value(tensor_lr)
            explicit["lr"] = tensor_lr.item()
        spec = resolve(flavor, **explicit)
        capturable = _as_bool("capturable", capturable)
        differentiable = _as_bool("differentiable", differentiable)
        check_impl(impl)
        defaults = {
            **spec.options(),
            "lr": tensor_lr if tensor_lr is not None else spec.lr,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
            "impl": impl,
            "skipped_steps": 0,
            "state_precision": state_precision,
            "min_8bit_size": min_8bit_size,
        }
        self._flat = _as_bool("flat", flat)
        if self._flat and differentiable:
            raise ValueError("flat=True moves the parameters' data into one buffer, outside "
                             "autograd: it cannot be differentiable=True")
        super().__init__(params, defaults)

    # -- param groups ---------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its own ``flavor`` (if any) supplies the options it does not set.

        Options the constructor set away from its own flavour's preset (``maximize=True``,
        ``nonfinite="raise"``, ``momentum=0.9``, ...) apply to such a group too, as torch's
        constructor arguments apply to every group.
        """
        flavor = param_group.get("flavor", self.defaults["flavor"])
        if flavor != self.defaults["flavor"]:
            base = FLAVORS[self.defaults["flavor"]]
            base_spec = RMSpropSpec(**{**base.preset, "lr": None, "flavor": base.name})
            own = {k: self.defaults[k] for k in _SPEC_KEYS
                   if k != "flavor" and self.defaults[k] != getattr(base_spec, k)}
            own.update(
                {k: v for k, v in param_group.items() if k in OPTION_NAMES and k != "flavor"}
            )
            if own.get("lr") is None:
                own["lr"] = self.defaults["lr"]
            lr = own["lr"]
            own["lr"] = lr.item() if isinstance(lr, Tensor) else lr
            param_group = {**resolve(flavor, **own).options(), **param_group, "lr": lr}
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        index = len(self.param_groups) - 1
        try:
            self._check_group(group, index)
            if group["impl"] != "auto":  # an implementation that cannot run these params says so
                choose_impl(group["impl"], group["foreach"], group["params"])
            if self.__dict__.get("_flat"):
                if group["state_precision"] != "fp32":
                    raise ValueError(
                        f"flat=True keeps the state in buffers of the parameters' dtype: it "
                        f"needs state_precision='fp32', got {group['state_precision']!r} "
                        f"(param group {index})")
                layout = FlatLayout(group["params"], f"param group {index}")
                _layouts_of(self)[id(group["params"])] = (group["params"], layout)
        except Exception:
            self.param_groups.pop()  # a refused group leaves the optimizer as it was
            raise
        group_plan.forget(self)

    @staticmethod
    def _check_group(group: dict[str, Any], index: int | None = None) -> None:
        state_schema.check_group(group)
        _check_torch_path_options(group, index)

    @staticmethod
    def spec_of(group: dict[str, Any]) -> RMSpropSpec:
        """The validated options of a param group (its ``lr`` aside: see ``group["lr"]``)."""
        return state_schema.spec_of(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # A state dict saved by torch.optim.RMSprop (or an older version) lacks our options:
        # they take this optimizer's construction values.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if "step" in p_state and not torch.is_tensor(p_state["step"]):
                    p_state["step"] = torch.tensor(
                        float(p_state["step"]), dtype=step_dtype(),
                        device=p.device if group["capturable"] else None,
                    )
        note_loaded_guards(self)  # an unpickled optimizer resumes its cold-start guard too
        group_plan.forget(self)

    def load_state_dict(self, state_dict: dict[str, Any], *, missing_state: str = "error") -> None:
        """Load a state dict (ours, or one saved by ``torch.optim.RMSprop``), validated first.

        Every group and every parameter's state is checked before anything changes (see
        :mod:`rmsprop.torch.state_schema`); a refused state dict raises
        :class:`~rmsprop.errors.StateDictError` naming the group, the parameter and the field,
        and leaves the optimizer as it was. Another optimizer's state dict (Adam's, SGD's,
        ...) is refused. How each group runs and stores its state (``impl``, ``foreach``,
        ``state_precision``, ``min_8bit_size``) stays this optimizer's own.

        Args:
            state_dict: as returned by ``state_dict()``.
            missing_state: what to do with a parameter whose state lacks a tensor the
                group's options need: ``"error"`` (default: refuse, as a resumed run would
                silently restart it from zero) or ``"fresh"`` (start it over on purpose: a
                parameter without ``step`` or ``square_avg`` restarts its whole state under
                the cold-start guard, with a :class:`ColdStartWarning`; a missing
                ``grad_avg``, ``max_square_avg`` or ``momentum_buffer`` starts at 0, the
                current v and 0).
        """
        state_dict, fresh = state_schema.checked_state_dict(self, state_dict, missing_state)
        with lean_state.loading(self, state_dict):  # keeps our settings, converts the state
            super().load_state_dict(state_dict)
        group_plan.forget(self)  # the next step gathers the loaded state
        note_loaded_guards(self)
        if fresh:
            warnings.warn(
                f"load_state_dict(missing_state='fresh'): parameter(s) {fresh} start their "
                "optimizer state over (the cold-start guard applies where v starts at 0)",
                ColdStartWarning, stacklevel=2,
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``torch.optim.Optimizer.zero_grad``; under ``flat=True`` a group's gradients
        stay views of its gradient buffer, zeroed in place whatever ``set_to_none`` says (as
        torch's ``set_to_none=False``: see docs/flat.md)."""
        layouts = _layouts_of(self)
        for group in self.param_groups:
            _intact_layout(self, group)  # a group whose parameters moved out is ordinary now
        if not layouts:
            super().zero_grad(set_to_none)
            return
        groups = self.param_groups
        flat = [layouts[id(g["params"])][1] for g in groups if id(g["params"]) in layouts]
        self.param_groups = [g for g in groups if id(g["params"]) not in layouts]
        try:
            super().zero_grad(set_to_none)
        finally:
            self.param_groups = groups
        for layout in flat:
            layout.zero_grads()

    # -- the step -------------------------------------------------------------------------

    @property
    def skipped_steps(self) -> int:
        """How many steps ``nonfinite="skip"`` has skipped."""
        return max((group["skipped_steps"] for group in self.param_groups), default=0)

    def impl_of(self, group: dict[str, Any], params: list[Tensor] | None = None) -> str:
        """The implementation ``group`` runs with on ``params`` (default: all of the group's),
        ``impl="auto"`` resolved (see :func:`rmsprop.torch.functional.choose_impl`)."""
        params = list(group["params"]) if params is None else params
        group = {**self.defaults, **group}
        torch_path = group["state_precision"] == "fp32" and wants_torch_path(
            self.spec_of(group), group["differentiable"], group["capturable"])
        return choose_impl(group["impl"], group["foreach"], params, torch_path=torch_path)

    def _state_of(
        self, p: Tensor, spec: RMSpropSpec, dtype: torch.dtype | None = None,
        capturable: bool = False,
    ) -> dict[str, Tensor]:
        """``p``'s state, its missing tensors created in ``dtype`` (default: ``p``'s dtype);
        the step counter on ``p``'s device when ``capturable``, on the CPU otherwise (torch's)."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.zeros(
                (), dtype=step_dtype(), device=p.device if capturable else None)
        square_avg = state.get("square_avg")
        if (square_avg is None and len(state) > 1) or (
                square_avg is not None and square_avg.dtype != (dtype or p.dtype)
                and square_avg.dtype == torch.bfloat16):
            # lean state (warm_start, a group switched to state_precision="fp32")
            lean_state.decode_for_writing(state, p, dtype)
        for key in state_keys(spec):
            if key not in state:
                if key == "square_avg":
                    v0 = spec.initial_accumulator_value
                    # complex: v0 for the real and the imaginary part (as view_as_real)
                    init = torch.full_like(
                        p, complex(v0, v0) if p.is_complex() else v0, dtype=dtype,
                        memory_format=torch.preserve_format,
                    )
                elif key == "max_square_avg":  # the running max starts at the current v
                    init = state["square_avg"].clone(memory_format=torch.preserve_format)
                else:
                    init = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state[key] = init
        return state

    @_grad_mode_of_step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform a single optimization step.

        Args:
            closure: reevaluates the model and returns the loss (called with grad enabled).
        """
        self._accelerator_graph_capture_health_check()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        state_schema.check_groups(self)  # options written into param_groups since the last step
        work = [self._work_of(group) for group in self.param_groups]
        if not _gradients_pass(work):  # nonfinite="skip" found a NaN or inf
            for group in self.param_groups:
                group["skipped_steps"] += 1
            return loss
        for item in work:
            if item.impl is not None:  # None: no parameter of the group has a gradient
                self._step_group(item)
        return loss

    def _work_of(self, group: dict[str, Any]) -> "_Work":
        """What ``group`` steps this time, checked before any group changes: its plan's, when
        the plan still holds (:mod:`rmsprop.torch.group_plan`), else gathered here."""
        spec = self.spec_of(group)
        plans = group_plan.plans_of(self)
        plan = plans.get(id(group))
        if plan is not None:
            grads = plan.grads(self, group, spec)
            if grads is not None:
                return _Work(group, plan.params, grads, spec, plan.impl, plan)
            # the group changed: the ordinary path below may replace its state (lean storage)
            del plans[id(group)]
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("RMSprop does not support sparse gradients")
        impl = self.impl_of(group, params) if params else None
        layout = _layouts_of(self).get(id(group["params"]))
        if impl in PLANNED or layout is not None:  # a build and its warning: before any step
            native.ready_for(max(len(group["params"]), len(layout[1].params) if layout else 0))
        grads = [p.grad for p in params]
        if params and (impl in ("fused", "triton") or group["state_precision"] != "fp32"):
            _check_grad_dtypes(self, group, params, grads)
        if params and group["capturable"]:
            _check_capturable_devices(self, params)
        if params and group["state_precision"] != "fp32":
            lean_state.check_state(self, group, params)
        return _Work(group, params, grads, spec, impl, None)

    def _step_group(self, item: "_Work") -> None:
        """One group's step (after every group's checks passed)."""
        group, spec, impl = item.group, item.spec, cast(str, item.impl)  # set: see step()
        # The cold-start guard (rmsprop.torch.warm_start): one batch in an ordinary run.
        batches = split_cold(self, item.params, spec)
        layout = _layouts_of(self).get(id(group["params"]), (None, None))[1]
        if layout is not None and item.plan is None:
            layout = _intact_layout(self, group)
        if layout is not None and item.grads is not layout.grad_views \
                and not layout.grads_bound(item.grads):
            layout.bind_grads(list(map(_GRAD, group["params"])))
        if item.plan is not None:
            if len(batches) == 1 and batches[0][0] is item.params and batches[0][1] is spec:
                _run_plan(item.plan, group, spec)
                return
            del group_plan.plans_of(self)[id(group)]  # the cold-start guard splits the group
        for params, batch_spec in batches:
            if group["state_precision"] != "fp32":  # 8-bit / bf16 state: the rest is full
                params = lean_state.step(self, group, params, batch_spec)
            # every tensor the group's options need (a guarded batch steps with fewer)
            states = [self._state_of(p, spec, state_dtype(impl, p.dtype),
                                     group["capturable"])
                      for p in params]
            if layout is not None and len(params) == len(group["params"]):
                layout.adopt_state(states, state_keys(batch_spec))  # torch's paths too
            tensors = TensorLists(
                params,
                cast(list[Tensor], [p.grad for p in params]),  # all set: see `_work_of`
                [s["square_avg"] for s in states],
                [s["step"] for s in states],
                [s["max_square_avg"] for s in states] if batch_spec.amsgrad else [],
                [s["grad_avg"] for s in states] if batch_spec.centered else [],
                [s["momentum_buffer"] for s in states] if batch_spec.momentum > 0 else [],
            )
            if (params is item.params and batch_spec is spec and item.impl in PLANNED
                    and group["state_precision"] == "fp32" and plannable(tensors)):
                plan = GroupPlan.build(self, group, params, states, tensors, spec, item.impl,
                                       layout)
                if plan is not None:
                    group_plan.plans_of(self)[id(group)] = plan
                    _run_plan(plan, group, spec)
                    continue
            rmsprop(
                params, tensors.grads, tensors.square_avgs, tensors.steps,
                max_square_avgs=tensors.max_square_avgs, grad_avgs=tensors.grad_avgs,
                momentum_buffers=tensors.momentum_buffers,
                spec=batch_spec,
                lr=group["lr"],
                impl=impl,
                differentiable=group["differentiable"],
            )

    def warm_start(self, closure: Callable[[], Any], steps: int = 10) -> list[Any]:
        """Re-estimate v from ``steps`` batches; params do not move.

        The cure for a cold start (parameters restored without optimizer state): v becomes
        the mean of g^2 over the batches instead of starting from zero; the gradient average
        of the centered form restarts at 0 (batches that agree would make the variance 0). See
        :func:`rmsprop.torch.warm_start.warm_start`.

        Args:
            closure: computes one batch's loss and calls ``backward()`` (zeroing the gradients
                first), as for ``step``.
            steps: the number of batches, k >= 1.

        Returns:
            The closure's losses.
        """
        try:
            return warm_start(self, closure, steps)
        finally:
            group_plan.forget(self)


def _check_torch_path_options(group: dict[str, Any], index: int | None) -> None:
    """``differentiable`` and ``capturable`` are bools and only asked of torch's paths."""
    where = "" if index is None else f" (param group {index})"
    for name in ("capturable", "differentiable"):
        group[name] = _as_bool(name, group[name])
        if not group[name]:
            continue
        if group["impl"] in ("fused", "triton"):
            raise ValueError(
                f"{name}=True runs on torch's paths (impl 'loop', 'foreach' or 'auto'), got "
                f"impl={group['impl']!r}{where}: the fused kernels write memory outside "
                + ("autograd" if name == "differentiable" else "torch's graph-safe operations")
            )
        if group["state_precision"] != "fp32":
            raise ValueError(
                f"{name}=True needs state_precision='fp32', got "
                f"state_precision={group['state_precision']!r}{where}: lean state is kept by "
                "the fused kernel"
            )


def _check_grad_dtypes(optimizer: RMSprop, group: dict[str, Any], params: list[Tensor],
                       grads: list[Tensor]) -> None:
    """Every gradient in its parameter's dtype, as the kernels read it. torch's ``p.grad = g``
    refuses another dtype, but ``p.grad.data = ...`` does not; torch's own path would promote,
    a kernel would read the bytes in the wrong format. Checked before any group steps."""
    if list(map(_DTYPE, grads)) == list(map(_DTYPE, params)):
        return
    bad = next(i for i, (p, g) in enumerate(zip(params, grads)) if g.dtype != p.dtype)
    index = next(i for i, g in enumerate(optimizer.param_groups) if g is group)
    position = next(i for i, q in enumerate(group["params"]) if q is params[bad])
    raise ValueError(
        f"parameter {position} of param group {index}: its gradient has dtype "
        f"{grads[bad].dtype}, the parameter {params[bad].dtype}; impl={group['impl']!r} "
        f"(state_precision={group['state_precision']!r}) reads a gradient in its parameter's "
        "dtype: set p.grad to a tensor of that dtype")


def _check_capturable_devices(optimizer: RMSprop, params: list[Tensor]) -> None:
    """torch's refusal of ``capturable=True`` off the devices that can capture a step (CPU
    included), raised as torch raises it, but before anything changes."""
    if torch.compiler.is_compiling():  # the compiler handles it (torch's note)
        return
    for p in params:
        step = optimizer.state.get(p, {}).get("step")
        step_device = p.device.type if step is None else step.device.type
        if p.device.type != step_device or p.device.type not in _CAPTURABLE_DEVICES:
            raise AssertionError(
                "If capturable=True, params and state_steps must be on supported devices: "
                f"{list(_CAPTURABLE_DEVICES)}."
            )


@dataclass
class _Work:
    """One group's share of a step: its parameters with a gradient, those gradients, its
    options, the implementation that runs it and its plan (if one holds)."""

    group: dict[str, Any]
    params: list[Tensor]
    grads: list[Tensor]
    spec: RMSpropSpec
    impl: str | None
    plan: GroupPlan | None

    def grads_finite(self) -> bool:
        """Whether every gradient is finite: one pass of the plan's kernel over the addresses
        it holds for this step (a flat group's, once its gradients are its views), else
        :func:`all_finite` tensor by tensor."""
        plan = self.plan
        if plan is not None and plan.impl in PLANNED_FINITE and (
                plan.layout is None or self.grads is plan.layout.grad_views):
            return PLANNED_FINITE[plan.impl](plan.kernel)
        return all_finite(self.grads)


def _layouts_of(optimizer: RMSprop) -> dict[int, tuple[list[Tensor], FlatLayout]]:
    """The flat layouts of ``optimizer`` (``flat=True``), by ``id`` of their group's
    parameter list (which ``load_state_dict`` keeps, while it replaces the group dicts)."""
    return optimizer.__dict__.setdefault("_rmsprop_layouts", {})


def _intact_layout(optimizer: RMSprop, group: dict[str, Any]) -> FlatLayout | None:
    """``group``'s flat layout, or ``None``; a layout whose parameters moved out of their
    buffer (``p.data = ...``, ``model.to(...)``) is dropped: the group is an ordinary one."""
    layouts = _layouts_of(optimizer)
    entry = layouts.get(id(group["params"]))
    if entry is None:
        return None
    if not entry[1].intact(group["params"]):  # also drops a group whose list was edited
        del layouts[id(group["params"])]
        return None
    return entry[1]


def _gradients_pass(work: list[_Work]) -> bool:
    """The ``nonfinite`` policies, before anything changes: raise
    :class:`NonFiniteGradientError` for a NaN or inf in a ``"raise"`` group; ``False`` when
    a ``"skip"`` group holds one (the whole step is skipped).

    Each policy answers for its own groups' gradients: a NaN in a "skip" group skips the
    step, it does not raise because another group says "raise".
    """
    raising = [i for i, item in enumerate(work)
               if item.spec.nonfinite == "raise" and item.grads and not item.grads_finite()]
    if raising:
        raise NonFiniteGradientError(
            f"a gradient of param group {raising[0]} holds NaN or inf "
            "(nonfinite='raise'); parameters and optimizer state are unchanged"
        )
    return all(item.grads_finite() for item in work
               if item.spec.nonfinite == "skip" and item.grads)


def _run_plan(plan: GroupPlan, group: dict[str, Any], spec: RMSpropSpec) -> None:
    """A planned group's step: one kernel launch per storage format, one add for the step
    counters (the numbers of :func:`rmsprop.torch.functional.rmsprop`, bit for bit)."""
    lr = group["lr"]
    lr = lr.item() if isinstance(lr, Tensor) else float(lr)
    steps = plan.step_values().tolist() if spec.bias_correction else None
    PLANNED[plan.impl](plan.kernel, spec, lr, steps)
    plan.counters.add_(1.0)
