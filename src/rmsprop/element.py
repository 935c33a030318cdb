"""The RMSProp update of one element, written once (docs/design.md, "The update").

:func:`rmsprop_element` is plain Python over scalars (or arrays: every operation is
elementwise). Its primitives are module globals that each backend rebinds with :func:`bind`:
``sqrt`` and ``div`` (IEEE-rounded), ``maximum(a, b)`` (NaN in either argument propagates)
and ``abs_sq`` (``|x|^2`` of a complex ``x``). The NumPy/JAX update (:mod:`rmsprop.update`),
the numba kernels (:mod:`rmsprop.torch.kernels.fused_cpu`, ``lean.kernel_cpu``) and the Triton
kernel (:mod:`rmsprop.torch.kernels.triton_kernel`) all run this function's code, so they
round in one order; only torch's own replay (:mod:`rmsprop.torch.kernels.inplace`) follows
torch's op order instead.

The hyperparameters come as one :class:`Hyper` record, the options as one :class:`Flags`
record. The flags decide which operations run; each backend makes them constants where it
can (numba and Triton compile a kernel per layout, NumPy branches in Python).
"""

from __future__ import annotations

import hashlib
import math
import types
from typing import Any, Callable, NamedTuple

from .spec import RMSpropSpec

__all__ = ["CODE_FINGERPRINT", "Flags", "Hyper", "bind", "flags_of", "momentum_on",
           "rmsprop_element"]


def momentum_on(momentum: Any) -> bool:
    """Whether momentum is on: a plain number above 0, or an array (a JAX tracer from
    ``optax.inject_hyperparams``, known only at run time; at 0 it gives the same numbers as
    without momentum)."""
    return not isinstance(momentum, (int, float)) or momentum > 0


def _weight_decay_on(wd: Any) -> bool:
    return not isinstance(wd, (int, float)) or wd != 0


class Flags(NamedTuple):
    """The options as the element function reads them (weight decay split by its form)."""

    maximize: bool
    l2: bool
    decoupled: bool
    amsgrad: bool
    centered: bool
    bias_correction: bool
    eps_in_sqrt: bool
    momentum: bool
    lr_in_momentum: bool
    nesterov: bool
    complex_grad: bool = False


def flags_of(spec: RMSpropSpec, complex_grad: bool = False) -> Flags:
    wd_on = _weight_decay_on(spec.weight_decay)
    return Flags(
        maximize=spec.maximize,
        l2=wd_on and not spec.decoupled_weight_decay,
        decoupled=wd_on and spec.decoupled_weight_decay,
        amsgrad=spec.amsgrad,
        centered=spec.centered,
        bias_correction=spec.bias_correction,
        eps_in_sqrt=spec.eps_in_sqrt,
        momentum=momentum_on(spec.momentum),
        lr_in_momentum=spec.lr_in_momentum,
        nesterov=spec.nesterov,
        complex_grad=complex_grad,
    )


# The primitives, for Python floats; bind() replaces them for arrays and compiled kernels.


def sqrt(x: Any) -> Any:
    return math.sqrt(x)


def div(x: Any, y: Any) -> Any:
    return x / y


def maximum(a: Any, b: Any) -> Any:
    """max(a, b) with a NaN in either propagated."""
    return b if (b > a or b != b) else a


def abs_sq(x: Any) -> Any:
    """``|x|^2 = Re(conj(x)*x)``."""
    return (x.conjugate() * x).real


class Hyper(NamedTuple):
    """The numbers of one step, in the compute type: ``one_minus_rho = 1 - rho``,
    ``lr_wd = lr*wd`` and ``correction = 1 - rho**t`` (1 without bias correction) are each
    rounded once from float64; ``zero`` is 0 of the compute type."""

    lr: Any
    rho: Any
    one_minus_rho: Any
    eps: Any
    wd: Any
    mu: Any
    lr_wd: Any
    correction: Any
    zero: Any


def rmsprop_element(theta, g, v, vmax, gbar, b, h, f):
    """One RMSProp step of one element (docs/design.md, "The update").

    ::

        g <- -g                               if maximize
        g <- g + wd*theta                     if l2 (coupled weight decay)
        decay = lr*wd*theta                   if decoupled, else 0
        v <- rho*v + (1-rho)*|g|^2
        vmax <- max(vmax, v)                  if amsgrad (used as v below; NaN propagates)
        gbar <- rho*gbar + (1-rho)*g          if centered
        v^, gbar^ = v/c, gbar/c               if bias_correction (c = 1 - rho^t)
        s = max(v^ - |gbar^|^2, 0)            if centered, else v^
        d = sqrt(s + eps) if eps_in_sqrt else sqrt(s) + eps
        u = g/d
        torch form: b <- mu*b + u;    delta = lr*(u + mu*b) if nesterov else lr*b
        tf form:    b <- mu*b + lr*u; delta = lr*u + mu*b   if nesterov else b
        no momentum: delta = lr*u
        theta_t = (theta - decay) - delta

    ``h`` is a :class:`Hyper`, ``f`` a :class:`Flags`. Returns
    ``(decay, delta, v, vmax, gbar, b)``; the state a flag leaves out comes back as passed.
    """
    if f.maximize:
        g = -g
    if f.l2:
        g = g + h.wd * theta
    decay = h.zero
    if f.decoupled:
        decay = h.lr_wd * theta
    if f.complex_grad:
        v = h.rho * v + h.one_minus_rho * abs_sq(g)
    else:
        v = h.rho * v + h.one_minus_rho * g * g
    s = v
    if f.amsgrad:
        vmax = maximum(vmax, v)
        s = vmax
    if f.centered:
        gbar = h.rho * gbar + h.one_minus_rho * g
    gbar_hat = gbar
    if f.bias_correction:
        s = div(s, h.correction)
        if f.centered:
            gbar_hat = div(gbar, h.correction)
    if f.centered:
        if f.complex_grad:
            s = maximum(s - abs_sq(gbar_hat), h.zero)
        else:
            s = maximum(s - gbar_hat * gbar_hat, h.zero)
    if f.eps_in_sqrt:
        d = sqrt(s + h.eps)
    else:
        d = sqrt(s) + h.eps
    u = div(g, d)
    if f.momentum:
        if f.lr_in_momentum:
            b = h.mu * b + h.lr * u
            if f.nesterov:
                delta = h.lr * u + h.mu * b
            else:
                delta = b
        else:
            b = h.mu * b + u
            if f.nesterov:
                delta = h.lr * (u + h.mu * b)
            else:
                delta = h.lr * b
    else:
        delta = h.lr * u
    return decay, delta, v, vmax, gbar, b


def bind(primitives: dict[str, Any], decorate: Callable[[Any], Any] = lambda fn: fn) -> Any:
    """:func:`rmsprop_element` with its primitives (``sqrt``, ``div``, ``maximum``,
    ``abs_sq``) bound to ``primitives``, passed through ``decorate`` (``numba.njit``,
    ``triton.jit``): the same code object, other globals."""
    missing = {"sqrt", "div", "maximum", "abs_sq"} - primitives.keys()
    if missing:
        raise ValueError(f"bind: primitives missing: {sorted(missing)}")
    namespace = {**globals(), **primitives}
    fn = types.FunctionType(rmsprop_element.__code__, namespace, "rmsprop_element")
    fn.__doc__ = rmsprop_element.__doc__
    fn.__module__ = primitives.get("__name__", __name__)
    return decorate(fn)


def _fingerprint(code: types.CodeType) -> int:
    text = repr((code.co_code, code.co_consts, code.co_names, code.co_varnames))
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


CODE_FINGERPRINT = _fingerprint(rmsprop_element.__code__)
"""A number that changes with :func:`rmsprop_element`'s code. numba keys its disk cache on a
kernel's own module and closure only: kernels capture this so that an edit here recompiles
them."""
