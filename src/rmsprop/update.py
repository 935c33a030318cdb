"""The RMSProp update of :mod:`rmsprop.spec`, written once over an array namespace.

``xp`` is any module with NumPy's elementwise API (``numpy``, ``jax.numpy``): the same function
is the float64 oracle (:mod:`rmsprop.reference`), the NumPy optimizer (:mod:`rmsprop.numpy`)
and the optax transformation (:mod:`rmsprop.optax`). It is pure: it returns a new parameter and
a new state and never writes to its inputs, so it also runs under ``jax.jit``.

The arithmetic is :func:`rmsprop.element.rmsprop_element` (docs/design.md, "The update"), bound
to ``xp``'s functions: the numba and Triton kernels run the same function, compiled. Torch's
replay (:mod:`rmsprop.torch.kernels.inplace`) keeps ``torch.optim.RMSprop``'s op order, so that
the ``pytorch`` flavour is bit-identical to torch; every backend is tested against this module
(``tests/kernels/test_backend_relations.py``).

Complex arrays follow optax's convention (Wirtinger calculus, as ``optax.rmsprop``): v and vmax
are real and accumulate ``|g|^2 = Re(conj(g)*g)``, the centered form subtracts ``|gbar|^2``,
and gbar and the momentum buffer are complex. Backends that update real and imaginary parts
apart, as torch does, pass the real view (``(..., 2)`` real pairs) instead.
"""

from __future__ import annotations

import operator
from typing import Any, Mapping

from .element import Hyper, bind, flags_of, momentum_on
from .spec import RMSpropSpec

__all__ = ["state_keys", "init_state", "rmsprop_update", "rmsprop_terms"]


def state_keys(spec: RMSpropSpec) -> tuple[str, ...]:
    """The state tensors an update with ``spec`` reads and writes (torch's names)."""
    keys = ["square_avg"]
    if spec.amsgrad:
        keys.append("max_square_avg")
    if spec.centered:
        keys.append("grad_avg")
    if momentum_on(spec.momentum):
        keys.append("momentum_buffer")
    return tuple(keys)


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


def _element_for(xp: Any) -> Any:
    """:func:`rmsprop.element.rmsprop_element` over the arrays of ``xp``."""
    element = _BOUND.get(xp.__name__)
    if element is None:
        element = _BOUND[xp.__name__] = bind(
            {"sqrt": xp.sqrt, "div": operator.truediv, "maximum": xp.maximum,
             "abs_sq": _abs_square, "__name__": __name__})
    return element


_BOUND: dict[str, Any] = {}


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
    flags = flags_of(spec, complex_grad=bool(xp.iscomplexobj(grad)))
    # Python floats where the options are numbers: NumPy and JAX round each once to the
    # arrays' type, as the kernels' float64-computed scalars are.
    correction = 1 - rho**step if spec.bias_correction else 1
    hyper = Hyper(lr=lr, rho=rho, one_minus_rho=1 - rho, eps=spec.eps, wd=wd, mu=spec.momentum,
                  lr_wd=lr * wd, correction=correction, zero=0)
    square_avg = state["square_avg"]
    missing = square_avg  # stands for the state an option leaves out (never read then)
    decay, delta, v, vmax, gbar, b = _element_for(xp)(
        param, grad, square_avg, state.get("max_square_avg", missing),
        state.get("grad_avg", missing), state.get("momentum_buffer", missing), hyper, flags)
    new_state: dict[str, Any] = {"square_avg": v}
    if flags.amsgrad:
        new_state["max_square_avg"] = vmax
    if flags.centered:
        new_state["grad_avg"] = gbar
    if flags.momentum:
        new_state["momentum_buffer"] = b
    return (decay if flags.decoupled else None), delta, new_state
