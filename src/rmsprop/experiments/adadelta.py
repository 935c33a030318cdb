"""AdaDelta (torch.optim.Adadelta) vs RMSProp: does AdaDelta remove the need for a global lr?

Per seed a quadratic in 10 dimensions, curvatures log-spaced 1..10, whose optimum lies at a
distance D from the start (a random direction), for D = 0.01, 1 and 100: the same problem in
three units of the parameters. Each optimizer runs at its default lr (AdaDelta 1.0, RMSProp the
article's 1e-3; rho 0.9, eps 1e-8) and over its own lr grid. Measured per seed and scale: the
regret of the default, log10(final loss at the default lr / final loss at the best lr of the
grid), in decades, with f / f0 floored at 1e-10 (converged; said in the table).
"""

from __future__ import annotations

import numpy as np
import torch

from ..torch import RMSprop
from ._base import Table, new_figure
from ._grid import run_lr_seed_grid
from ._plots import lr_sweep
from ._protocol import Config, Criterion, Measurement, Spec, interval, log_grid, tune

DIM = 10
FLOOR = 1e-10  # f / f0 below this counts as converged: regrets are measured down to it
SCALES = (0.01, 1.0, 100.0)
DEFAULTS = {"AdaDelta": 1.0, "RMSProp": 1e-3}
GRIDS = {"AdaDelta": log_grid(1e-3, 1e2, 3), "RMSProp": log_grid(1e-7, 1e1, 3)}
MAKE = {"AdaDelta": lambda g: torch.optim.Adadelta(g, rho=0.9),
        "RMSProp": lambda g: RMSprop(g, alpha=0.9, eps=1e-8)}
SPEC = Spec(
    name="adadelta",
    summary="AdaDelta vs RMSProp at their default lr across parameter scales 0.01..100: regret",
    section="Variants",
    claim="The closely related AdaDelta algorithm, introduced by Zeiler in 2012, was developed "
          "independently and arrives at a similar update rule but additionally rescales the "
          "numerator by a running average of squared parameter updates, eliminating the need "
          "to specify a global learning rate.",
    hypothesis="On a quadratic whose optimum is 0.01, 1 or 100 away, AdaDelta at its default "
               "lr (1.0) ends within one decade of the final loss at its best lr on every "
               "scale: the worst regret over the scales, per seed, is below 1 decade.",
    criteria=(Criterion("adadelta_worst_regret_decades", "<", 1.0,
                        "'no need to specify a lr': the default within 10x of the tuned loss"),),
    optimizers={f"{o}, D={d:g}": GRIDS[o] for o in MAKE for d in SCALES},
    n_seeds=5, quick_seeds=2, default_steps=2000, min_steps=200, quick_steps=500,
    heavy=True,
)
COLORS = {f"{o}, D={d:g}": c for o, cs in (("AdaDelta", ("#9be", "#36c", "#014")),
                                          ("RMSProp", ("#fb8", "#e70", "#840"))) for d, c in zip(SCALES, cs)}


def problem(seeds, scale):
    h = torch.logspace(0, 1, DIM, dtype=torch.float64)
    centres = []
    for s in seeds:
        u = np.random.default_rng(s).standard_normal(DIM)
        centres.append(scale * u / np.linalg.norm(u))
    c = torch.tensor(np.array(centres))
    n_seeds = len(seeds)

    def loss_and_grad(X, t):
        R = X.reshape(-1, n_seeds, DIM) - c
        return (0.5 * (h * R * R).sum(-1)).reshape(-1), (h * R).reshape(X.shape)

    return loss_and_grad


def simulate(cfg: Config, progress):
    raw, k = {}, 0
    x0 = np.zeros((len(cfg.seeds), DIM))
    for oname, make in MAKE.items():
        for d in SCALES:
            grid = list(GRIDS[oname]) + [DEFAULTS[oname]]
            loss = run_lr_seed_grid(make, problem(cfg.seeds, d), x0, grid, cfg.steps)["loss"]
            raw[f"{oname}, D={d:g}"] = {"grid": loss[:, :-1], "default": loss[:, -1]}
            k += 1
            progress(k / (len(MAKE) * len(SCALES)))
    return raw


def measure(raw, cfg: Config) -> Measurement:
    regret: dict[str, list[np.ndarray]] = {o: [] for o in MAKE}
    tuned, rows = {}, []
    for name, r in raw.items():
        oname = name.split(",")[0]
        final = np.log10(np.maximum(r["grid"][-1] / r["grid"][0], FLOOR))  # (lrs, seeds)
        t = tune(SPEC.optimizers[name], final, "log10 final f / f0")
        tuned[name] = t
        default = np.log10(np.maximum(r["default"][-1] / r["default"][0], FLOOR))
        reg = default - final[t.best_index]
        regret[oname].append(reg)
        rows.append([name, f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
                     interval(final[t.best_index]).text(".2f"), interval(default).text(".2f"),
                     interval(reg).text(".2f")])
    figures = {f"{o.lower()}_worst_regret_decades": interval(np.max(regret[o], axis=0))
               for o in MAKE}
    table = Table(["optimizer, distance to the optimum", "best lr",
                   "log10 f/f0 at the best lr", "log10 f/f0 at the default lr",
                   "regret of the default (decades)"], rows,
                  title=f"{cfg.steps} steps; defaults: AdaDelta lr 1.0, RMSProp lr 1e-3; f / f0 "
                        f"floored at {FLOOR:g} (converged)")
    notes = [f"RMSProp's worst regret at lr 1e-3: {figures['rmsprop_worst_regret_decades'].text()} "
             "decades (shown for comparison, not judged)"]
    return Measurement(figures=figures, tuned=tuned, tables=[table], notes=notes)


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.8,
                           title="Final loss vs lr at three parameter scales D (default lr: "
                                 "AdaDelta 1.0, RMSProp 1e-3)")
    for ax, oname in zip(axes[0], MAKE):
        sub = {k: v for k, v in m.tuned.items() if k.startswith(oname)}
        lr_sweep(ax, sub, COLORS, f"log10 final f / f0 (floored at {FLOOR:g})", log_y=False)
        ax.axvline(DEFAULTS[oname], color="k", ls="--", lw=1, label=f"default lr {DEFAULTS[oname]:g}")
        ax.legend(fontsize=6)
        ax.set_title(oname, fontsize=10)
    return fig
