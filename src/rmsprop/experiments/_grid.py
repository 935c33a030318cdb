"""Run one optimizer on many independent copies of a small problem at once.

Each copy is a row of one tensor ``X`` (copies, dim); the optimizer sees each row as its own
parameter in its own param group, so each copy can have its own learning rate (a grid search in
one loop) while the gradient of every copy is computed in one vectorised call.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["run_grid", "run_lr_seed_grid"]


def run_grid(
    make_optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
    loss_and_grad: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
    x0: Sequence[float] | torch.Tensor,
    lrs: Sequence[float],
    steps: int,
    *,
    tick: Callable[[int], None] = lambda done: None,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    observe: Callable[[torch.optim.Optimizer, list[torch.Tensor]], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Optimise ``len(lrs)`` copies of a problem, copy i with learning rate ``lrs[i]``.

    Args:
        make_optimizer: builds the optimizer from param groups (each ``{"params", "lr"}``).
        loss_and_grad: ``(X, t) -> (loss per row, gradient rows)`` at step ``t`` (0-based).
        x0: the start point, shared by every copy (shape (dim,) or (copies, dim)).
        lrs: one learning rate per copy.
        steps: optimizer steps.
        tick: called with the number of steps done.
        scheduler: builds an lr scheduler stepped after each optimizer step (optional).
        observe: ``(optimizer, rows) -> array`` recorded after each step (e.g. a state
            statistic per copy); returned as ``observed`` (steps, ...).

    Returns:
        ``loss`` (steps + 1, copies) and ``x`` (steps + 1, copies, dim), float64; a copy that
        diverged keeps NaN/inf in its loss.
    """
    start = torch.as_tensor(x0, dtype=torch.float64)
    X = (start.expand(len(lrs), -1) if start.ndim == 1 else start).clone()
    G = torch.zeros_like(X)
    rows = [X[i] for i in range(len(lrs))]  # views: stepping a row steps X
    for row, grad in zip(rows, G):
        row.grad = grad
    optimizer = make_optimizer([{"params": [row], "lr": float(lr)} for row, lr in zip(rows, lrs)])
    schedule = scheduler(optimizer) if scheduler is not None else None
    losses = np.empty((steps + 1, len(lrs)))
    xs = np.empty((steps + 1, *X.shape))
    observed = []
    with torch.no_grad():
        for t in range(steps):
            loss, grad = loss_and_grad(X, t)
            losses[t] = loss.numpy()
            xs[t] = X.numpy()
            G.copy_(grad)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if observe is not None:
                observed.append(observe(optimizer, rows))
            tick(t + 1)
        loss, _ = loss_and_grad(X, steps)
        losses[steps] = loss.numpy()
        xs[steps] = X.numpy()
    out = {"loss": losses, "x": xs}
    if observe is not None:
        out["observed"] = np.array(observed)
    return out


def run_lr_seed_grid(
    make_optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
    loss_and_grad: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
    starts: np.ndarray | torch.Tensor,
    lrs: Sequence[float],
    steps: int,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """:func:`run_grid` over every (lr, seed) pair: ``starts`` (seeds, dim) are the paired
    start points. Returns ``loss`` (steps + 1, lrs, seeds) and ``x`` (steps + 1, lrs, seeds,
    dim)."""
    starts = torch.as_tensor(np.asarray(starts), dtype=torch.float64)
    n_seeds = starts.shape[0]
    x0 = starts.repeat(len(lrs), 1)  # lr-major: row = lr_index * seeds + seed
    per_row = [float(lr) for lr in lrs for _ in range(n_seeds)]
    out = run_grid(make_optimizer, loss_and_grad, x0, per_row, steps, **kwargs)
    out["loss"] = out["loss"].reshape(steps + 1, len(lrs), n_seeds)
    out["x"] = out["x"].reshape(steps + 1, len(lrs), n_seeds, -1)
    return out
