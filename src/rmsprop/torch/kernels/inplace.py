"""The RMSProp update of :mod:`rmsprop.spec`, in place, over lists of tensors.

Written once against the list operations of :mod:`.listops`; the loop and foreach
implementations differ only in the ``ops`` they pass. For the options torch has, the operations
are those of ``torch.optim.RMSprop`` in the same order, so the ``pytorch`` flavour is
bit-identical to torch. The only departure: the centered variance ``v - gbar^2`` is clamped at
0 before the root, where torch can produce NaN from rounding (the two agree whenever torch's
value is a number).
"""

from __future__ import annotations

from typing import Any, Sequence


from ...spec import RMSpropSpec
from .tensors import TensorLists

__all__ = ["apply_update"]


def apply_update(
    ops: Any, t: TensorLists, spec: RMSpropSpec, lr: float, steps: Sequence[float] | None
) -> None:
    """One step for every tensor of ``t`` (params and state are updated in place).

    ``steps`` holds t of each tensor (already incremented); it is needed for bias correction
    only, and may be ``None`` without it.
    ``t.grads`` is never written: ``maximize`` and coupled weight decay work on copies.
    """
    rho, eps, wd, mu = spec.alpha, spec.eps, spec.weight_decay, spec.momentum
    params, grads = t.params, t.grads

    if spec.maximize:
        grads = ops.neg(grads)
    if wd != 0:
        if spec.decoupled_weight_decay:
            ops.mul_(params, 1 - lr * wd)
        elif spec.maximize:
            ops.add_(grads, params, alpha=wd)  # grads is already our own copy
        else:
            grads = ops.add(grads, params, alpha=wd)

    ops.mul_(t.square_avgs, rho)
    ops.addcmul_(t.square_avgs, grads, grads, value=1 - rho)
    v = t.square_avgs
    if spec.amsgrad:
        ops.maximum_(t.max_square_avgs, v)
        v = t.max_square_avgs
    if spec.centered:
        ops.lerp_(t.grad_avgs, grads, 1 - rho)
    gbar = t.grad_avgs

    s = None  # the variance estimate, when it is a temporary we may overwrite
    if spec.bias_correction:
        assert steps is not None  # the callers pass steps with bias correction
        corrections = [1 - rho**step for step in steps]
        s = ops.div(v, corrections)
        if spec.centered:
            gbar = ops.div(gbar, corrections)
    if spec.centered:
        if s is None:
            s = ops.addcmul(v, gbar, gbar, value=-1)
        else:
            ops.addcmul_(s, gbar, gbar, value=-1)
        s = ops.clamp_min_(s, 0.0)

    if spec.eps_in_sqrt:
        if s is None:
            s = ops.add_scalar(v, eps)
        else:
            s = ops.add_scalar_(s, eps)
        denom = ops.sqrt_(s)
    else:
        if s is None:
            denom = ops.sqrt(v)
        else:
            denom = ops.sqrt_(s)
        denom = ops.add_scalar_(denom, eps)

    if mu > 0:
        bufs = t.momentum_buffers
        ops.mul_(bufs, mu)
        if spec.lr_in_momentum:  # tf form: b = mu*b + lr*u; step = b (nesterov: lr*u + mu*b)
            ops.addcdiv_(bufs, grads, denom, value=lr)
            if spec.nesterov:
                ops.addcdiv_(params, grads, denom, value=-lr)
                ops.add_(params, bufs, alpha=-mu)
            else:
                ops.add_(params, bufs, alpha=-1.0)
        else:  # torch form: b = mu*b + u; step = lr*b (nesterov: lr*(u + mu*b))
            ops.addcdiv_(bufs, grads, denom, value=1.0)
            if spec.nesterov:
                ops.addcdiv_(params, grads, denom, value=-lr)
                ops.add_(params, bufs, alpha=-lr * mu)
            else:
                ops.add_(params, bufs, alpha=-lr)
    else:
        ops.addcdiv_(params, grads, denom, value=-lr)
