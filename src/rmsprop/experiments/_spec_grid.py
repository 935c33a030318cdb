"""Run the float64 update of :mod:`rmsprop.update` on many copies of a NumPy problem at once.

Each row of ``X`` (runs, dim) is one run with its own learning rate; the update is the library's
single copy of the math (``rmsprop_update``), with any :class:`rmsprop.RMSpropSpec` (TensorFlow's
momentum form, eps inside the root, bias correction, decoupled weight decay...). ``spec=None``
runs plain gradient descent.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..spec import RMSpropSpec
from ..update import init_state, rmsprop_update

__all__ = ["run_rows", "run_lr_seed_rows", "quadratic_rows"]

LossAndGrad = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def run_rows(spec: RMSpropSpec | None, loss_and_grad: LossAndGrad, x0: np.ndarray,
             lrs: np.ndarray, steps: int, *, schedule: Callable[[int], float] | None = None,
             keep_x: bool = False) -> dict[str, np.ndarray]:
    """``steps`` steps of every row; row i at ``lrs[i] * schedule(t)`` on step t (0-based).

    Returns ``loss`` (steps + 1, runs) and, with ``keep_x``, ``x`` (steps + 1, runs, dim); a
    run that diverged keeps its inf/NaN.
    """
    X = np.array(x0, dtype=np.float64)
    lr = np.asarray(lrs, dtype=np.float64)[:, None]
    state = init_state(X, spec, np) if spec is not None else {}
    losses = np.empty((steps + 1, X.shape[0]))
    xs: np.ndarray | None = np.empty((steps + 1, *X.shape)) if keep_x else None
    with np.errstate(all="ignore"):
        for t in range(steps):
            loss, grad = loss_and_grad(X, t)
            losses[t] = loss
            if xs is not None:
                xs[t] = X
            rate = lr * (schedule(t) if schedule is not None else 1.0)
            if spec is None:
                X = X - rate * grad
            else:
                X, state = rmsprop_update(np, X, grad, state, spec, rate, t + 1)
        losses[steps] = loss_and_grad(X, steps)[0]
        if xs is not None:
            xs[steps] = X
    out = {"loss": losses}
    if xs is not None:
        out["x"] = xs
    return out


def run_lr_seed_rows(spec: RMSpropSpec | None, loss_and_grad: LossAndGrad, starts: np.ndarray,
                     grid, steps: int, **kwargs) -> np.ndarray:
    """:func:`run_rows` over every (lr, seed): ``starts`` (seeds, dim); rows are lr-major, so
    ``loss_and_grad`` sees ``X`` of shape (lrs * seeds, dim). Returns the loss
    (steps + 1, lrs, seeds)."""
    n_seeds = starts.shape[0]
    x0 = np.tile(starts, (len(grid), 1))
    lrs = np.repeat(np.asarray(grid, dtype=np.float64), n_seeds)
    out = run_rows(spec, loss_and_grad, x0, lrs, steps, **kwargs)
    return out["loss"].reshape(steps + 1, len(grid), n_seeds)


def quadratic_rows(H: np.ndarray, centre: np.ndarray | None = None) -> LossAndGrad:
    """f = (x - c)^T H (x - c) / 2 with one Hessian (and centre) per seed: ``H`` (seeds, d, d),
    ``centre`` (seeds, d); rows of X are lr-major, seed-minor."""
    n_seeds, d = H.shape[0], H.shape[1]
    c = np.zeros((n_seeds, d)) if centre is None else centre

    def loss_and_grad(X: np.ndarray, t: int):
        R = X.reshape(-1, n_seeds, d) - c
        G = np.einsum("kij,lkj->lki", H, R)
        return 0.5 * (G * R).sum(-1).reshape(-1), G.reshape(X.shape)

    return loss_and_grad
