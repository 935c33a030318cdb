"""AdaGrad's shrinking step vs RMSProp on a non-stationary objective, each at its best lr.

A noisy quadratic in 20 dimensions with curvatures h from 0.1 to 10,
``f_t(x) = s_t * sum_i h_i (x_i - c_t)^2 / 2`` with gradient noise of standard deviation s_t,
from x = -5. Halfway the optimum moves from c = 0 to c = 5; in the scenario "move + scale drop"
the gradient scale also drops from s = 1 to 0.01 (as gradients shrink late in training), in
"move only" it stays. ``torch.optim.Adagrad`` and ``rmsprop.torch.RMSprop`` (rho 0.9, eps 1e-8)
are each tuned on their own grid by the mean loss over the last 10 % of steps. The paired
seeds are rows of one noise stream seeded by the first seed: the same noise for both. AdaGrad's effective step lr / (sqrt(sum g^2) + eps) (median over the
coordinates) only shrinks by construction: that is a sanity check, not the verdict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..torch import RMSprop
from ._base import Table, new_figure
from ._grid import run_lr_seed_grid
from ._plots import band, best_lr_bands, cut_early_transient, lr_sweep
from ._protocol import Config, Criterion, Measurement, Spec, interval, log_grid, tune

DIM = 20
START, C_BEFORE, C_AFTER, SCALE_AFTER = -5.0, 0.0, 5.0, 0.01
SCENARIOS = {"move + scale drop": SCALE_AFTER, "move only": 1.0}
SPEC = Spec(
    name="adagrad-decay",
    summary="non-stationary objective: tuned AdaGrad vs tuned RMSProp after the optimum moves",
    section="Comparison with Other Optimizers",
    claim="Compared to AdaGrad, RMSProp avoids the indefinite shrinkage of step sizes by "
          "exponentially decaying old squared-gradient information; this makes it preferable "
          "for long training runs and for non-stationary problems.",
    hypothesis="On a noisy quadratic whose optimum moves halfway (with and without a drop of "
               "the gradient scale), RMSProp at its best lr ends with a lower loss (mean over "
               "the last 10% of steps) than AdaGrad at its best lr: log10(AdaGrad / RMSProp) "
               "> 0, paired per seed, in both scenarios.",
    criteria=(
        Criterion("log10_adagrad_over_rmsprop_move_and_drop", ">", 0.0,
                  "'preferable' means a lower loss at each one's best lr; 0 is a tie"),
        Criterion("log10_adagrad_over_rmsprop_move_only", ">", 0.0,
                  "'preferable' means a lower loss at each one's best lr; 0 is a tie"),
    ),
    optimizers={"AdaGrad": log_grid(1e-2, 1e4, 3), "RMSProp": log_grid(1e-4, 1.0, 3)},
    n_seeds=5, quick_seeds=2, default_steps=4000, min_steps=400, quick_steps=1000,
    heavy=True,
)
OPTIMIZERS = {
    "AdaGrad": (lambda groups: torch.optim.Adagrad(groups), "sum", 1e-10),  # torch defaults
    "RMSProp": (lambda groups: RMSprop(groups, alpha=0.9, eps=1e-8), "square_avg", 1e-8),
}
COLORS = {"AdaGrad": "tab:green", "RMSProp": "tab:blue"}


def make_problem(steps: int, scale_after: float, seed: int):
    """``(X, t) -> (loss without the scale, noisy scaled gradient)``; noise from ``seed``."""
    h = torch.logspace(-1, 1, DIM, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def loss_and_grad(X: torch.Tensor, t: int):
        late = t >= steps // 2
        r = X - (C_AFTER if late else C_BEFORE)
        noise = torch.randn(X.shape, generator=gen, dtype=X.dtype)
        return 0.5 * (h * r * r).sum(1), (scale_after if late else 1.0) * (h * r + noise)

    return loss_and_grad


def _effective_step(key: str, eps: float):
    def observe(optimizer, rows):
        lrs = torch.tensor([group["lr"] for group in optimizer.param_groups], dtype=torch.float64)
        acc = torch.stack([optimizer.state[row][key] for row in rows])
        return (lrs[:, None] / (acc.sqrt() + eps)).median(1).values.numpy()
    return observe


def simulate(cfg: Config, progress):
    raw: dict[str, Any] = {}
    k = 0
    x0 = np.full((len(cfg.seeds), DIM), START)
    for sname, scale in SCENARIOS.items():
        raw[sname] = {}
        for oname, (make, key, eps) in OPTIMIZERS.items():
            fn = make_problem(cfg.steps, scale, cfg.seeds[0])
            out = run_lr_seed_grid(make, fn, x0, SPEC.optimizers[oname], cfg.steps,
                                   observe=_effective_step(key, eps))
            n_lr = len(SPEC.optimizers[oname])
            raw[sname][oname] = {"loss": out["loss"],
                                 "step": out["observed"].reshape(cfg.steps, n_lr, -1),
                                 "x_flat": out["x"][:, :, :, 0]}
            k += 1
            progress(k / 4)
    return raw


def measure(raw, cfg: Config) -> Measurement:
    tail = max(cfg.steps // 10, 1)
    half = cfg.steps // 2
    figures, tuned, rows, sanity = {}, {}, [], {}
    data: dict[str, Any] = {}
    for sname, key in (("move + scale drop", "move_and_drop"), ("move only", "move_only")):
        end = {}
        data[sname] = {}
        for oname in OPTIMIZERS:
            loss = raw[sname][oname]["loss"]
            end_loss = loss[-tail:].mean(0)  # (lrs, seeds)
            t = tune(SPEC.optimizers[oname], np.log10(end_loss), "log10 mean loss, last 10%")
            if sname == "move + scale drop":
                tuned[oname] = t
            b = t.best_index
            end[oname] = end_loss[b]
            step = raw[sname][oname]["step"][:, b, :]
            data[sname][oname] = {"tuned": t, "end_loss": end_loss[b],
                                  "effective_step_first": step[0], "effective_step_last": step[-1]}
            rows.append([sname, oname, f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
                         interval(np.log10(end_loss[b])).text(".2f"),
                         interval(np.log10(step[-1])).text(".2f")])
            if oname == "AdaGrad":
                sanity[f"{sname}: AdaGrad's effective step at the end < at step 1"] = bool(
                    np.all(step[-1] < step[0]))
            else:
                sanity[f"{sname}: RMSProp's effective step changes after the switch"] = bool(
                    np.all(step[-1] != step[half - 1]))
        figures[f"log10_adagrad_over_rmsprop_{key}"] = interval(
            np.log10(end["AdaGrad"] / end["RMSProp"]))
    table = Table(["scenario", "optimizer", "best lr", "log10 loss, last 10% (mean [95%])",
                   "log10 final effective step"], rows,
                  title="AdaGrad vs RMSProp, each at its best lr, objective changes halfway")
    return Measurement(figures=figures, tuned=tuned, sanity=sanity, tables=[table],
                       data={"results": data})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(2, 3, width=5.0, height=4.0,
                           title="AdaGrad vs RMSProp when the objective changes (dotted line), "
                                 "each at its best lr")
    t = np.arange(cfg.steps + 1)
    for row, sname in enumerate(SCENARIOS):
        ax_loss, ax_x, ax_lr = axes[row]
        res = m.data["results"][sname]
        tuned = {o: res[o]["tuned"] for o in OPTIMIZERS}
        runs = raw[sname]
        best_lr_bands(ax_loss, t, tuned, COLORS, OPTIMIZERS,
                      lambda o, b: np.log10(runs[o]["loss"][:, b, :].T))
        for oname in OPTIMIZERS:
            band(ax_x, t, runs[oname]["x_flat"][:, tuned[oname].best_index, :].T, COLORS[oname],
                 oname)
        ax_x.plot(t, np.where(t < cfg.steps // 2, C_BEFORE, C_AFTER), "k--", lw=1,
                  label="optimum c_t")
        for ax in (ax_loss, ax_x):
            ax.axvline(cfg.steps // 2, color="0.3", ls=":", lw=1)
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=7)
        ax_loss.set_ylabel("log10 of sum h (x - c)^2 / 2")
        ax_loss.set_title(f"{sname}: loss (noise-free part)", fontsize=10)
        ax_x.set_ylabel("flattest coordinate x_1 (h = 0.1)")
        ax_x.set_title(f"{sname}: tracking the optimum", fontsize=10)
        cut_early_transient(ax_x, [raw[sname][o]["x_flat"][:, res[o]["tuned"].best_index, :]
                                   for o in OPTIMIZERS], (C_BEFORE, C_AFTER))
        lr_sweep(ax_lr, {o: res[o]["tuned"] for o in OPTIMIZERS}, COLORS,
                 "log10 loss, last 10% of steps", log_y=False)
        ax_lr.set_title(f"{sname}: final loss vs lr", fontsize=10)
    return fig
