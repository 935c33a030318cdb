"""The cold-start guard: an optimizer starting on trained parameters without their state.

Resuming with the parameters but not the optimizer state resets v to zero (v0), so the first
updates are too large: with ``v_1 = (1 - rho) g^2`` the first step is
``lr * g / sqrt((1 - rho) g^2) = lr / sqrt(1 - rho)`` per coordinate, 10 x lr for rho = 0.99,
in every coordinate at once (docs/checkpoint.md, "The cold-start guard").

Two remedies:

(a) :func:`warm_start` (``RMSprop.warm_start(closure, steps=k)``) re-estimates v from k
    gradient batches without moving the parameters: v = (1/k) sum_i g_i^2, the running mean,
    which is the EMA of the update with rho_i = 1 - 1/i (so
    :func:`rmsprop.update.rmsprop_update` computes it, maximize and weight decay included).
    The state is stored as ``(1 - rho^t) * mean`` with ``step = t = max(step, k)`` and the
    following steps run bias-corrected (with ``bias_correction``, or under the guard of (b)
    until its horizon), so that the value the kernel divides by is the mean itself at first
    and each new gradient then weighs ``(1 - rho) / (1 - rho^(t+1))``, about 1/(k+1), not
    ``1 - rho``: the estimate of k batches taken at one point follows the gradient as the
    parameters move (with ``1 - rho`` a coordinate whose gradient was small at that point
    and grows would take steps of up to ``lr / sqrt(1 - rho)``, 3x those of a full-state
    resume on a full batch). The gradient average gbar of the centered form is not
    re-estimated: it restarts at 0, as in a fresh run. k batches that agree (a full batch, a
    deterministic loss: the same gradient every call) give mean(g)^2 = mean(g^2), a
    variance v - gbar^2 of 0 and steps of g / eps; with gbar = 0 the variance the step
    divides by is v itself, at least the true one, whatever the batches, and gbar grows
    back by its EMA.

(b) The automatic guard, when the user does nothing: :func:`rmsprop.checkpoint.load` with a
    model and no optimizer marks the parameters it restored. An ``RMSprop`` that creates fresh
    state for a marked parameter (that is, ``load_state_dict`` never gave it state) warns once
    (:class:`ColdStartWarning`) and runs that parameter's first :func:`guard_horizon` steps
    with bias correction, ``v_hat = v / (1 - rho^t)``: the unbiased estimate of E[g^2] from a
    zero start (Kingma & Ba 2015, section 3), so the first step is ``lr * sign(g)`` rather
    than ``lr / sqrt(1 - rho)``. After the horizon ``1 - rho^t`` rounds to 1 in float32 and
    the guard stops. A centered group runs uncentered during the guard (:func:`guarded_spec`):
    bias-corrected from a zero start, v and gbar are both the mean of the same few gradients,
    so ``v - gbar^2`` is 0 on a full batch; gbar stays at 0 until the horizon and then grows
    by its EMA. It applies only where the zero start is the problem: groups with
    ``initial_accumulator_value == 0``, ``alpha > 0`` and ``bias_correction=False``.
    Parameters nobody marked (every ordinary run) take the untouched path, bit-identical to
    ``torch.optim.RMSprop``. A guarded parameter's state holds ``"cold_start_guard": True``
    until the horizon, so ``state_dict()`` and checkpoints saved during the guard resume it;
    loading state without it (real state) ends the guard.
"""

from __future__ import annotations

import math
import numbers
import sys
import types
import warnings
from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..spec import RMSpropSpec
from ..update import init_state, rmsprop_update
from .kernels.tensors import real_view as _real

__all__ = [
    "ColdStartWarning",
    "warm_start",
    "mark_restored",
    "clear_restored",
    "is_restored",
    "guard_horizon",
    "split_cold",
    "note_loaded_guards",
    "GUARD_KEY",
    "guard_applies",
    "guarded_spec",
]

# Parameters rmsprop.checkpoint.load restored without optimizer state (weak: never keeps a
# parameter alive; keyed by identity, as a tensor's == is elementwise).
_restored: WeakIdKeyDictionary = WeakIdKeyDictionary()


class ColdStartWarning(UserWarning):
    """An optimizer started with fresh state on parameters a checkpoint restored."""


def mark_restored(params: Iterable[Tensor]) -> None:
    """Mark ``params`` as restored from a checkpoint without their optimizer state."""
    for p in params:
        _restored[p] = True


def clear_restored(params: Iterable[Tensor]) -> None:
    """Forget the marks of ``params`` (their optimizer state was restored too)."""
    for p in params:
        _restored.pop(p, None)


def is_restored(p: Tensor) -> bool:
    """Whether ``p`` carries the mark of :func:`mark_restored`."""
    return p in _restored


def guard_horizon(alpha: float) -> int:
    """The first step t at which ``1 - alpha**t`` rounds to 1 in float32 (alpha^t <= 2^-25)."""
    if alpha <= 0.0:
        return 0
    return math.ceil(-25 * math.log(2) / math.log(alpha))


GUARD_KEY = "cold_start_guard"
"""The entry of a guarded parameter's state (``True``): it travels with ``state_dict()`` and
checkpoints, so a run saved during the guard resumes guarded, as it would have continued."""


def note_loaded_guards(optimizer: Any) -> None:
    """After ``load_state_dict``: whether any loaded state carries :data:`GUARD_KEY` (so that
    :func:`split_cold` looks for guarded parameters at all)."""
    optimizer.__dict__["_rmsprop_guarded"] = any(  # torch lets code keep other entries
        isinstance(state, dict) and state.get(GUARD_KEY) for state in optimizer.state.values())


def guard_applies(spec: RMSpropSpec) -> bool:
    """Whether the cold-start guard changes anything for ``spec``: v starts from zero and
    is not bias-corrected already."""
    return not spec.bias_correction and spec.initial_accumulator_value == 0 and spec.alpha > 0


def guarded_spec(spec: RMSpropSpec) -> RMSpropSpec:
    """The options a guarded parameter steps with: bias correction on, and the uncentered
    form (the centered variance of a bias-corrected zero start is 0 on a full batch)."""
    return spec.replace(bias_correction=True, centered=False)


def split_cold(
    optimizer: Any, params: list[Tensor], spec: RMSpropSpec
) -> list[tuple[list[Tensor], RMSpropSpec]]:
    """``params`` as batches of (parameters, options): cold-started ones run with bias correction.

    Called by ``RMSprop.step`` before it creates state; in an ordinary run (no parameter ever
    marked, no guard loaded) it returns ``[(params, spec)]`` after two flag checks.
    """
    if (not _restored and not optimizer.__dict__.get("_rmsprop_guarded")) \
            or not guard_applies(spec):
        return [(params, spec)]
    state = optimizer.state
    fresh = [p for p in params if p in _restored and "step" not in state.get(p, {})]
    for p in fresh:
        state[p][GUARD_KEY] = True
    if fresh:
        optimizer.__dict__["_rmsprop_guarded"] = True
        _warn_once(optimizer, len(fresh))
    if not optimizer.__dict__.get("_rmsprop_guarded"):
        return [(params, spec)]
    horizon = guard_horizon(spec.alpha)
    guarded, ordinary = [], []
    for p in params:
        p_state = state.get(p)
        if p_state and p_state.get(GUARD_KEY):
            if "step" not in p_state or float(p_state["step"]) < horizon:
                guarded.append(p)
                continue
            del p_state[GUARD_KEY]
        ordinary.append(p)
    batches = [(ordinary, spec), (guarded, guarded_spec(spec))]
    return [(batch, batch_spec) for batch, batch_spec in batches if batch]


def _warn_once(optimizer: Any, count: int) -> None:
    if optimizer.__dict__.get("_rmsprop_cold_warned"):
        return
    optimizer.__dict__["_rmsprop_cold_warned"] = True
    warnings.warn(
        f"{type(optimizer).__name__} is starting with fresh state on {count} parameter(s) that "
        "rmsprop.checkpoint.load restored without optimizer state (load_state_dict never gave "
        "them state): v starts from zero, which makes the first steps too large. The "
        "cold-start guard applies bias correction to them for the first steps. Restore the "
        "optimizer state (rmsprop.checkpoint.load(path, optimizer, model)) or call "
        "optimizer.warm_start(closure, steps=k) to re-estimate it; to start from zero on "
        "purpose, load with rmsprop.checkpoint.load(..., cold_start_guard=False).",
        ColdStartWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside rmsprop and torch."""
    frame: types.FrameType | None = sys._getframe(2)
    level = 2  # 1 is _warn_once's caller of warnings.warn
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
        "rmsprop", "torch",
    ):
        frame, level = frame.f_back, level + 1
    return level


class _TorchArrays:
    """The NumPy-namespace functions :func:`rmsprop_update` calls, for torch tensors."""

    full_like = staticmethod(torch.full_like)
    sqrt = staticmethod(torch.sqrt)

    @staticmethod
    def iscomplexobj(x: Tensor) -> bool:
        return x.is_complex()

    @staticmethod
    def finfo(dtype: torch.dtype) -> Any:
        """Has ``.dtype``: the real dtype of ``dtype`` (NumPy's ``finfo(complex64).dtype``)."""
        return types.SimpleNamespace(dtype=dtype.to_real())

    @staticmethod
    def maximum(a: Tensor, b: Any) -> Tensor:
        return torch.maximum(a, b) if isinstance(b, Tensor) else torch.clamp_min(a, b)


def warm_start(optimizer: Any, closure: Callable[[], Any], steps: int) -> list[Any]:
    """Re-estimate v from ``steps`` gradient batches (gbar restarts at 0); the parameters do
    not move.

    Args:
        optimizer: an ``rmsprop.torch.RMSprop``.
        closure: computes the loss of one batch and calls ``backward()`` on it, as for ``step``
            (zero the gradients in it: each call must leave one batch's gradient).
        steps: k, the number of batches (>= 1).

    Returns:
        The losses the closure returned.

    Raises:
        NonFiniteGradientError: a gradient held NaN or inf; the state is unchanged.
    """
    from .functional import NonFiniteGradientError
    from .kernels.tensors import all_finite

    if not callable(closure):
        raise TypeError(f"closure must be callable, got {closure!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an int, got {steps!r} ({type(steps).__name__})")
    if steps < 1:
        raise ValueError(f"Invalid steps value: {steps!r} (steps must be an int >= 1)")
    steps = int(steps)

    estimates: dict[int, list[Any]] = {}  # id(p) -> [p, group, spec, running-mean state, count]
    losses = []
    for _ in range(steps):
        with torch.enable_grad():
            losses.append(closure())
        with torch.no_grad():
            grads = [p.grad for g in optimizer.param_groups for p in g["params"]
                     if p.grad is not None]
            if not grads:
                raise RuntimeError(
                    "warm_start: the closure left no gradient on any parameter (it must call "
                    "backward() on one batch's loss); optimizer state is unchanged"
                )
            if any(g.is_sparse for g in grads):
                raise RuntimeError("RMSprop does not support sparse gradients")
            if not all_finite(grads):
                raise NonFiniteGradientError(
                    "warm_start: a gradient holds NaN or inf; optimizer state is unchanged"
                )
            for group in optimizer.param_groups:
                spec = optimizer.spec_of(group)
                for p in group["params"]:
                    if p.grad is not None:
                        _accumulate(estimates, p, p.grad, group, spec)

    with torch.no_grad():
        for p, group, spec, mean, count in estimates.values():
            _commit(optimizer, p, group, spec, mean, count)
    return losses


def _accumulate(
    estimates: dict[int, list[Any]], p: Tensor, grad: Tensor, group: dict, spec: RMSpropSpec
) -> None:
    entry = estimates.get(id(p))
    if entry is None:
        entry = estimates[id(p)] = [p, group, spec, None, 0]
    entry[4] += 1
    count = entry[4]
    # The EMA with rho = 1 - 1/i is the running mean; momentum, amsgrad and gbar play no part.
    running_mean = spec.replace(
        alpha=1.0 - 1.0 / count, momentum=0.0, nesterov=False, amsgrad=False,
        bias_correction=False, centered=False,
    )
    # At least float32: a mean of squares in bfloat16 would lose what it estimates.
    # (Of the real view: complex parameters are pairs of real ones, as in the step.)
    dtype = torch.promote_types(_real(p.detach()).dtype, torch.float32)
    param, grad = _real(p.detach()).to(dtype), _real(grad).to(dtype)
    previous = entry[3] if entry[3] is not None else init_state(param, running_mean, _TorchArrays)
    _, entry[3] = rmsprop_update(_TorchArrays, param, grad, previous, running_mean, 0.0, count)


def _commit(
    optimizer: Any, p: Tensor, group: dict, spec: RMSpropSpec, mean: dict, count: int
) -> None:
    from .kernels.capabilities import state_dtype

    # The state tensors step() would create (the fused kernels keep float32 for 16-bit params).
    state = optimizer._state_of(p, spec, state_dtype(optimizer.impl_of(group), p.dtype))
    state.pop(GUARD_KEY, None)
    scale = 1.0
    guarded = guard_applies(spec)
    if spec.bias_correction or guarded:
        t = max(float(state["step"]), float(count))
        scale = 1.0 - spec.alpha**t
        state["step"].fill_(t)
    if guarded and t < guard_horizon(spec.alpha):  # the next steps as the guard's t+1, t+2, ...
        state[GUARD_KEY] = True
        optimizer.__dict__["_rmsprop_guarded"] = True
    _real(state["square_avg"]).copy_(mean["square_avg"] * scale)
    if spec.amsgrad:  # the running max restarts at the estimate
        _real(state["max_square_avg"]).copy_(mean["square_avg"] * scale)
    if spec.centered:  # not re-estimated: see the module's docstring
        state["grad_avg"].zero_()
