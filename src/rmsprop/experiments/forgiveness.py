"""How forgiving of the learning rate: the width of the lr window that converges, RMSProp vs SGD.

Two deterministic problems with random start points per seed: Rosenbrock's curved valley
``(1 - x)^2 + 100 (y - x^2)^2`` (start (-1.2, 1) plus a jitter of 0.1) with target 1e-2, and the
valley experiment's quadratic (condition 100, f = 100 at the start) with target 1e-3. Both
optimizers run on one common wide grid (3 points per decade, 1e-5 to 10); the window of an
optimizer is the number of grid points whose run settles below the target within the budget,
times the grid spacing (in decades). Judged: RMSProp's window minus SGD's, paired per seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._base import Table, new_figure
from ._grid import run_lr_seed_grid
from ._plots import final_loss_sweep, lr_sweep
from ._protocol import (
    Config, Criterion, Measurement, Spec, censored, first_dip, interval, log_grid, settle_steps,
    tune,
)
from .valley import COLORS, OPTIMIZERS, hessian, quadratic, starts

GRID = log_grid(1e-5, 10.0, 3)
SPACING = 1 / 3
SPEC = Spec(
    name="lr-forgiveness",
    summary="width of the lr window that converges (Rosenbrock, quadratic): RMSProp vs SGD",
    section="Comparison with Other Optimizers",
    claim="Compared to plain SGD with a fixed global learning rate, RMSProp is more forgiving of "
          "poor learning-rate choices and converges faster on problems with heterogeneous "
          "parameter scales, such as when training across different layer types or modalities.",
    hypothesis="The range of learning rates (decades, on a common grid with 3 points per "
               "decade) over which the loss settles below the target within the budget is "
               "wider for RMSProp (rho 0.9) than for SGD by more than half a decade, on "
               "Rosenbrock and on an ill-conditioned quadratic.",
    criteria=(
        Criterion("window_gain_rosenbrock_decades", ">", 0.5,
                  "more than one grid spacing (1/3 decade) wider, so not a grid artefact"),
        Criterion("window_gain_quadratic_decades", ">", 0.5,
                  "more than one grid spacing (1/3 decade) wider, so not a grid artefact"),
    ),
    optimizers={f"{o}, {p}": GRID for p in ("rosenbrock", "quadratic") for o in ("SGD", "RMSProp")},
    n_seeds=5, quick_seeds=2, default_steps=3000, min_steps=200, quick_steps=1000,
    heavy=True,
)


def rosenbrock(X: torch.Tensor, t: int):
    x, y = X[:, 0], X[:, 1]
    r = y - x**2
    return (1 - x) ** 2 + 100 * r**2, torch.stack([-2 * (1 - x) - 400 * x * r, 200 * r], 1)


def problems(seeds):
    rosen_starts = np.array([[-1.2, 1.0] + np.random.default_rng(s).uniform(-0.1, 0.1, 2)
                             for s in seeds])
    return {
        "rosenbrock": (rosenbrock, rosen_starts, 1e-2),
        "quadratic": (quadratic(hessian(0.0)), starts(seeds, 0.0), 1e-3),
    }


def simulate(cfg: Config, progress):
    raw: dict[str, Any] = {}
    k = 0
    probs = problems(cfg.seeds)
    for pname, (fn, x0, _) in probs.items():
        raw[pname] = {}
        for oname, make in OPTIMIZERS.items():
            with np.errstate(all="ignore"):
                raw[pname][oname] = run_lr_seed_grid(make, fn, x0, GRID, cfg.steps)["loss"]
            k += 1
            progress(k / (len(probs) * len(OPTIMIZERS)))
    return raw


def measure(raw, cfg: Config) -> Measurement:
    figures, tuned, rows = {}, {}, []
    data: dict[str, Any] = {}
    targets = {p: v[2] for p, v in problems(cfg.seeds).items()}
    for pname, target in targets.items():
        windows = {}
        data[pname] = {}
        for oname in OPTIMIZERS:
            loss = raw[pname][oname]
            settle = settle_steps(loss.reshape(loss.shape[0], -1), target).reshape(loss.shape[1:])
            windows[oname] = np.isfinite(settle).sum(0) * SPACING  # per seed
            t = tune(GRID, censored(settle, cfg.steps), f"steps to stay below {target:g}",
                     tiebreak=np.log10(np.abs(loss[-1]) + 1e-300))
            tuned[f"{oname}, {pname}"] = t
            data[pname][oname] = {"tuned": t, "window_decades": windows[oname]}
            dip = first_dip(loss[:, t.best_index], target)
            rows.append([pname, oname, interval(windows[oname]).text(".2f"),
                         f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
                         t.score_by_lr[t.best_index].text(".0f"),
                         interval(censored(dip, cfg.steps)).text(".0f")])
        figures[f"window_gain_{pname}_decades"] = interval(windows["RMSProp"] - windows["SGD"])
    table = Table(["problem", "optimizer", "lr window that settles (decades)", "best lr",
                   "steps to settle at best lr", "first dip below the target"], rows,
                  title=f"lr windows on a common grid 1e-5..10 (3 per decade), budget {cfg.steps}")
    return Measurement(figures=figures, tuned=tuned, tables=[table], data={"results": data,
                                                                            "grid": GRID})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(2, 2, width=6.2, height=4.4,
                           title="How forgiving of the lr: steps to settle below the target vs lr")
    for ax, ax_final, pname in zip(axes[0], axes[1], m.data["results"]):
        res = m.data["results"][pname]
        lr_sweep(ax, {o: res[o]["tuned"] for o in OPTIMIZERS}, COLORS,
                 "steps until the loss stays below the target")
        ax.axhline(cfg.steps + 1, color="0.5", ls="--", lw=0.8)
        wins = ", ".join(f"{o} {res[o]['window_decades'].mean():.2f}" for o in OPTIMIZERS)
        target = problems(cfg.seeds)[pname][2]
        final_loss_sweep(ax_final, {o: res[o]["tuned"] for o in OPTIMIZERS},
                         {o: np.log10(raw[pname][o][-1]) for o in OPTIMIZERS}, COLORS,
                         f"log10 loss at step {cfg.steps}")
        ax_final.axhline(np.log10(problems(cfg.seeds)[pname][2]), color="k", ls="--", lw=1)
        ax_final.set_title(f"{pname}: final loss vs lr (dashed: target)", fontsize=9)
        ax.set_title(f"{pname}, target {target:g} (dashed: budget {cfg.steps})\n"
                     f"lr window that settles, decades: {wins}", fontsize=9)
    return fig
