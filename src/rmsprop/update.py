"""The RMSProp update of :mod:`rmsprop.spec`, written once over an array namespace.

``xp`` is any module with NumPy's elementwise API (``numpy``, ``jax.numpy``): the same function
is the float64 oracle (:mod:`rmsprop.reference`), the NumPy optimizer (:mod:`rmsprop.numpy`)
and the optax transformation (:mod:`rmsprop.optax`). It is pure: it returns a new parameter and
a new state and never writes to its inputs, so it also runs under ``jax.jit``.

The torch kernels (:mod:`rmsprop.torch.kernels`) compute the same update in place, in the op
order of ``torch.optim.RMSprop`` so that the ``pytorch`` flavour is bit-identical to torch; they
are tested against this function.

Complex arrays follow optax's convention (Wirtinger calculus, as ``optax.rmsprop``): v and vmax
are real and accumulate ``|g|^2 = Re(conj(g)*g)``, the centered form subtracts ``|gbar|^2``,
and gbar and the momentum buffer are complex. Backends that update real and imaginary parts
apart, as torch does, pass the real view (``(..., 2)`` real pairs) instead.
"""

from __future__ import annotations

from typing import Any, Mapping

from .spec import RMSpropSpec

__all__ = ["state_keys", "init_state", "rmsprop_update", "rmsprop_terms"]


def state_keys(spec: RMSpropSpec) -> tuple[str, ...]:
    """The state tensors an update with ``spec`` reads and writes (torch's names)."""
    keys = ["square_avg"]
    if spec.amsgrad:
        keys.append("max_square_avg")
    if spec.centered:
        keys.append("grad_avg")
    if not _is_off(spec.momentum):
        keys.append("momentum_buffer")
    return tuple(keys)


def _is_off(value: Any) -> bool:
    """Whether an option (momentum, weight_decay) is a plain number equal to 0.

    An array value (a JAX tracer from ``optax.inject_hyperparams``) counts as on: its value is
    only known at run time, and the update with it at 0 gives the same numbers as without.
    """
    return isinstance(value, (int, float)) and value == 0


def init_state(param: Any, spec: RMSpropSpec, xp: Any) -> dict[str, Any]:
    """The state before step 1: v = vmax = v0, gbar = b = 0, in ``param``'s shape and dtype
    (for a complex ``param``, v and vmax in its real dtype: they hold ``|g|^2``)."""
    v0 = spec.initial_accumulator_value
    real_dtype = xp.finfo(param.dtype).dtype if xp.iscomplexobj(param) else None
    state = {}
    for key in state_keys(spec):
        if key in ("square_avg", "max_square_avg"):
            state[key] = xp.full_like(param, v0, dtype=real_dtype)
        else:
            state[key] = xp.full_like(param, 0.0)
    return state


def _abs_square(x: Any) -> Any:
    """``|x|^2`` of a complex array, as ``Re(conj(x)*x)`` (optax's ``abs_sq``)."""
    return (x.conj() * x).real


def rmsprop_update(
    xp: Any,
    param: Any,
    grad: Any,
    state: Mapping[str, Any],
    spec: RMSpropSpec,
    lr: Any,
    step: Any,
) -> tuple[Any, dict[str, Any]]:
    """One RMSProp step (the equations are in :mod:`rmsprop.spec`).

    Args:
        xp: the array namespace (``numpy`` or ``jax.numpy``).
        param, grad: arrays of one shape; ``grad`` is the raw gradient of the loss.
        state: the arrays named by :func:`state_keys` (from :func:`init_state` or a step).
        spec: the options; ``spec.lr`` is ignored in favour of ``lr``. Its numeric options
            may be scalar arrays (:mod:`rmsprop.optax` passes injected hyperparameters).
        lr: the learning rate eta_t of this step (a schedule's value).
        step: t, the number of this step (1 for the first); used by bias correction only.

    Returns:
        ``(new_param, new_state)``: ``(param - decay) - delta`` of :func:`rmsprop_terms`.
    """
    decay, delta, new_state = rmsprop_terms(xp, param, grad, state, spec, lr, step)
    if decay is not None:
        param = param - decay
    return param - delta, new_state


def rmsprop_terms(
    xp: Any,
    param: Any,
    grad: Any,
    state: Mapping[str, Any],
    spec: RMSpropSpec,
    lr: Any,
    step: Any,
) -> tuple[Any, Any, dict[str, Any]]:
    """The two terms of one RMSProp step, for code that returns the change rather than the
    new parameter (optax's updates): ``decay = lr*wd*theta`` (decoupled weight decay; None
    when off) and ``delta``, the RMSProp step, with ``theta_t = (theta - decay) - delta``.

    Arguments as :func:`rmsprop_update`. Returns ``(decay, delta, new_state)``.
    """
    rho = spec.alpha
    wd = spec.weight_decay
    new_state: dict[str, Any] = {}
    decay = None

    if spec.maximize:
        grad = -grad
    if not _is_off(wd) and not spec.decoupled_weight_decay:
        grad = grad + wd * param
    if not _is_off(wd) and spec.decoupled_weight_decay:
        decay = lr * wd * param

    if xp.iscomplexobj(grad):
        v = rho * state["square_avg"] + (1 - rho) * _abs_square(grad)
    else:
        v = rho * state["square_avg"] + (1 - rho) * grad * grad
    new_state["square_avg"] = v
    if spec.amsgrad:
        v = xp.maximum(state["max_square_avg"], v)
        new_state["max_square_avg"] = v
    if spec.centered:
        gbar = rho * state["grad_avg"] + (1 - rho) * grad
        new_state["grad_avg"] = gbar
    if spec.bias_correction:
        correction = 1 - rho**step
        v = v / correction
        if spec.centered:
            gbar = gbar / correction
    if spec.centered:
        gbar_sq = _abs_square(gbar) if xp.iscomplexobj(gbar) else gbar * gbar
        s = xp.maximum(v - gbar_sq, 0)
    else:
        s = v
    denom = xp.sqrt(s + spec.eps) if spec.eps_in_sqrt else xp.sqrt(s) + spec.eps
    normalized = grad / denom

    mu = spec.momentum
    if not _is_off(mu):
        if spec.lr_in_momentum:
            buf = mu * state["momentum_buffer"] + lr * normalized
            delta = lr * normalized + mu * buf if spec.nesterov else buf
        else:
            buf = mu * state["momentum_buffer"] + normalized
            delta = lr * (normalized + mu * buf) if spec.nesterov else lr * buf
        new_state["momentum_buffer"] = buf
    else:
        delta = lr * normalized
    return decay, delta, new_state
