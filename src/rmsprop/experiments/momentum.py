"""Plain RMSProp vs RMSProp with momentum (and Nesterov, centered) on poorly conditioned curvature.

A rotated quadratic in 20 dimensions per seed: Hessian eigenvalues log-spaced from 1 to 1000
in a random orthonormal basis (condition number 1000: a diagonal rescaling cannot remove it),
a random start; target: 1e-4 of the starting loss. Each variant of ``rmsprop.torch.RMSprop``
(rho 0.9, eps 1e-8; momentum 0.9 in the article's form, which equals torch's at a constant lr)
is tuned on its own grid by the mean steps after which the loss stays below the target.
"""

from __future__ import annotations

from typing import Any

import torch

from ..torch import RMSprop
from ._base import Table
from ._grid import run_grid
from ._plots import settling_figure
from ._protocol import (
    Config, Criterion, Measurement, Spec, interval, log_grid, settling_header,
    tune_each_by_settling,
)

DIM = 20
RELATIVE_TARGET = 1e-4
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "momentum 0.9": {"momentum": 0.9},
    "Nesterov 0.9": {"momentum": 0.9, "nesterov": True},
    "centered": {"centered": True},
}
SPEC = Spec(
    name="momentum",
    summary="plain vs momentum vs Nesterov vs centered RMSProp on a rotated quadratic "
            "(condition 1000), each at its best lr",
    section="Variants",
    claim="This RMSProp-with-momentum form is what TensorFlow exposes when its momentum "
          "hyperparameter is non-zero, and it tends to perform better on problems with poorly "
          "conditioned curvature.",
    hypothesis="On rotated quadratics with condition number 1000, RMSProp with momentum 0.9 at "
               "its best lr settles below 1e-4 of the starting loss in fewer steps than plain "
               "RMSProp at its best lr: plain steps / momentum steps, paired per seed, > 1.",
    criteria=(Criterion("plain_over_momentum_steps", ">", 1.0,
                        "'performs better' means fewer steps at each one's best lr; 1 is a tie"),),
    optimizers={v: log_grid(1e-4, 1e-1, 3) for v in VARIANTS},
    n_seeds=5, quick_seeds=2, default_steps=2000, min_steps=300, quick_steps=800,
)
COLORS = {"plain": "tab:gray", "momentum 0.9": "tab:blue", "Nesterov 0.9": "tab:purple",
          "centered": "tab:orange"}


def rotated_quadratic(seeds):
    """``loss_and_grad`` on rows (lr-major, seed-minor) and the start points (seeds, DIM)."""
    Hs, x0s = [], []
    for s in seeds:
        gen = torch.Generator().manual_seed(s)
        Q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=gen, dtype=torch.float64))
        Hs.append(Q @ torch.diag(torch.logspace(0, 3, DIM, dtype=torch.float64)) @ Q.T)
        x0s.append(torch.randn(DIM, generator=gen, dtype=torch.float64))
    H = torch.stack(Hs)

    def loss_and_grad(X: torch.Tensor, t: int):
        Xs = X.reshape(-1, len(seeds), DIM)
        G = torch.einsum("kij,lkj->lki", H, Xs)
        return 0.5 * (G * Xs).sum(-1).reshape(-1), G.reshape(X.shape)

    return loss_and_grad, torch.stack(x0s)


def simulate(cfg: Config, progress):
    fn, x0 = rotated_quadratic(cfg.seeds)
    raw = {}
    for k, (vname, options) in enumerate(VARIANTS.items()):
        grid = SPEC.optimizers[vname]
        rows = x0.repeat(len(grid), 1)
        lrs = [lr for lr in grid for _ in cfg.seeds]
        out = run_grid(lambda g: RMSprop(g, alpha=0.9, eps=1e-8, **options), fn, rows, lrs,
                       cfg.steps)
        raw[vname] = out["loss"].reshape(cfg.steps + 1, len(grid), len(cfg.seeds))
        progress((k + 1) / len(VARIANTS))
    return raw


def measure(raw, cfg: Config) -> Measurement:
    tuned, best, rows = tune_each_by_settling(
        VARIANTS, SPEC.optimizers, raw, RELATIVE_TARGET, cfg.steps,
        "steps until the loss stays below 1e-4 of the start")
    figures = {"plain_over_momentum_steps": interval(best["plain"] / best["momentum 0.9"]),
               "plain_over_nesterov_steps": interval(best["plain"] / best["Nesterov 0.9"]),
               "plain_over_centered_steps": interval(best["plain"] / best["centered"])}
    table = Table(settling_header("variant", RELATIVE_TARGET), rows,
                  title=f"rotated quadratic, condition 1000, budget {cfg.steps} steps")
    notes = ["judged: momentum 0.9; Nesterov and centered are shown (ratios "
             f"{figures['plain_over_nesterov_steps'].text()} and "
             f"{figures['plain_over_centered_steps'].text()})"]
    return Measurement(figures=figures, tuned=tuned, tables=[table], notes=notes)


def plot(raw, m: Measurement, cfg: Config):
    return settling_figure("RMSProp variants on rotated quadratics (condition 1000), each at "
                           "its best lr", raw, m.tuned, VARIANTS, COLORS, cfg.steps,
                           RELATIVE_TARGET, loss_title="loss at each variant's best lr")
