"""An oracle independent of ``rmsprop.update``: the update's equations at 50 decimal digits.

The equations of :mod:`rmsprop.spec` (docs/design.md, "The update"), written out here one
element at a time over :class:`decimal.Decimal` numbers, from the spec's text rather than from
the library's code: it shares no function with ``rmsprop.update`` (which
``rmsprop.reference``, ``rmsprop.numpy`` and ``rmsprop.optax`` all run), so a slip in that
function, or in the order in which it applies the options, shows up against it.

Every float64 input (parameters, gradients, learning rates, hyperparameters) converts to a
Decimal exactly; each operation then rounds at 50 significant digits, far below float64's
rounding (about 16 digits), so the results are exact for the purpose of a float64 comparison
wherever the problem is well-conditioned.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Sequence

import numpy as np

from rmsprop import RMSpropSpec

CONTEXT = decimal.Context(prec=50)


def _d(x: float) -> Decimal:
    return Decimal(float(x))  # exact: every float64 is a finite decimal


def run_element(theta: float, grads: Sequence[float], lrs: Sequence[float],
                spec: RMSpropSpec) -> tuple[Decimal, dict[str, Decimal]]:
    """One scalar parameter over ``len(grads)`` steps; returns it and its state."""
    with decimal.localcontext(CONTEXT):
        rho, eps, mu, wd = (_d(spec.alpha), _d(spec.eps), _d(spec.momentum),
                            _d(spec.weight_decay))
        theta = _d(theta)
        v = vmax = _d(spec.initial_accumulator_value)
        gbar = b = Decimal(0)
        for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
            g, lr = _d(g), _d(lr)
            if spec.maximize:
                g = -g
            if wd and not spec.decoupled_weight_decay:
                g = g + wd * theta
            if wd and spec.decoupled_weight_decay:
                theta = theta - lr * wd * theta
            v = rho * v + (1 - rho) * g * g
            vmax = max(vmax, v)
            second = vmax if spec.amsgrad else v
            gbar = rho * gbar + (1 - rho) * g
            c = 1 - rho**t if spec.bias_correction else Decimal(1)
            if spec.centered:
                s = max(second / c - (gbar / c) ** 2, Decimal(0))
            else:
                s = second / c
            d = (s + eps).sqrt() if spec.eps_in_sqrt else s.sqrt() + eps
            u = g / d
            if not mu:
                step = lr * u
            elif spec.lr_in_momentum:  # tf form: the buffer holds lr
                b = mu * b + lr * u
                step = lr * u + mu * b if spec.nesterov else b
            else:  # torch form
                b = mu * b + u
                step = lr * (u + mu * b) if spec.nesterov else lr * b
            theta = theta - step
        state = {"square_avg": v}
        if spec.amsgrad:
            state["max_square_avg"] = vmax
        if spec.centered:
            state["grad_avg"] = gbar
        if mu:
            state["momentum_buffer"] = b
        return theta, state


def run(param: np.ndarray, grads: Sequence[np.ndarray], lrs: Sequence[float],
        spec: RMSpropSpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`run_element` over every element of ``param``, rounded to float64 at the end."""
    param = np.asarray(param, np.float64)
    flat_grads = [np.asarray(g, np.float64).reshape(-1) for g in grads]
    thetas, states = [], []
    for i, theta in enumerate(param.reshape(-1)):
        result, state = run_element(theta, [g[i] for g in flat_grads], lrs, spec)
        thetas.append(float(result))
        states.append(state)
    keys = states[0].keys() if states else ()
    return (np.array(thetas).reshape(param.shape),
            {k: np.array([float(s[k]) for s in states]).reshape(param.shape) for k in keys})
