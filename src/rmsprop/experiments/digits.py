"""Supervised learning on scikit-learn's digits: tuned RMSProp vs tuned Adam (and SGD).

An MLP (64-64-64-10, tanh) on the bundled 8x8 digits; the 1437 training images are split into
1150 for training and 287 for validation (the lr is chosen on validation loss), the 360 test
images are only used for the reported accuracy. Minibatch 64; per seed the same initial weights
and batches for every optimizer and lr. ``rmsprop.torch.RMSprop`` (rho 0.9, eps 1e-8),
``torch.optim.Adam`` and ``torch.optim.SGD``, each on its own grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..torch import RMSprop
from ._base import Table, new_figure
from ._digits import batches, digits_split, mlp
from ._plots import best_lr_bands, lr_sweep
from ._protocol import Config, Criterion, Measurement, Spec, interval, log_grid, tune

BATCH = 64
EVAL_EVERY = 50
N_VAL = 287
SPEC = Spec(
    name="digits",
    summary="MLP on sklearn digits: tuned RMSProp vs tuned Adam test accuracy (and SGD)",
    section="Variants",
    claim="Adam can be viewed as RMSProp augmented with a first-moment estimate (a smoothed "
          "gradient) and bias-correction terms; in practice the two often produce comparable "
          "results on supervised tasks, with Adam more commonly chosen as the default in modern "
          "training pipelines.",
    hypothesis="On an MLP on the digits, each at its best lr (by validation loss), RMSProp's "
               "test accuracy minus Adam's, paired per seed, lies within +-1 percentage point.",
    criteria=(
        Criterion("rmsprop_minus_adam_test_acc_points", ">", -1.0,
                  "'comparable': under 1 point, about 4 of the 360 test images"),
        Criterion("rmsprop_minus_adam_test_acc_points", "<", 1.0,
                  "'comparable': under 1 point, about 4 of the 360 test images"),
    ),
    optimizers={"RMSProp": log_grid(1e-4, 10 ** -1.5, 3), "Adam": log_grid(1e-4, 10 ** -1.5, 3),
                "SGD": log_grid(10 ** -1.5, 1.0, 3)},
    n_seeds=5, quick_seeds=2, default_steps=600, min_steps=100, quick_steps=150,
    heavy=True,
)
MAKE = {
    "RMSProp": lambda p, lr: RMSprop(p, lr=lr, alpha=0.9, eps=1e-8),
    "Adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "SGD": lambda p, lr: torch.optim.SGD(p, lr=lr),
}
COLORS = {"RMSProp": "tab:blue", "Adam": "tab:red", "SGD": "tab:orange"}


def simulate(cfg: Config, progress):
    x_all, y_all, x_test, y_test = digits_split()
    x, y, x_val, y_val = x_all[:-N_VAL], y_all[:-N_VAL], x_all[-N_VAL:], y_all[-N_VAL:]
    loss_fn = nn.functional.cross_entropy
    evals = list(range(0, cfg.steps + 1, EVAL_EVERY))
    if evals[-1] != cfg.steps:
        evals.append(cfg.steps)
    shape = lambda o: (len(SPEC.optimizers[o]), len(cfg.seeds))  # noqa: E731
    val = {o: np.zeros(shape(o)) for o in MAKE}
    test_acc = {o: np.zeros(shape(o)) for o in MAKE}
    curves = {o: np.zeros((*shape(o), len(evals))) for o in MAKE}
    total = sum(len(g) for g in SPEC.optimizers.values()) * len(cfg.seeds)
    done = 0
    for j, seed in enumerate(cfg.seeds):
        torch.manual_seed(seed)
        init = mlp().state_dict()
        order = batches(len(x), BATCH, cfg.steps, torch.Generator().manual_seed(seed))
        for oname, make in MAKE.items():
            for i, lr in enumerate(SPEC.optimizers[oname]):
                model = mlp()
                model.load_state_dict(init)
                opt = make(model.parameters(), lr)
                k = 0
                for t in range(cfg.steps + 1):
                    if t == evals[k]:
                        with torch.no_grad():
                            curves[oname][i, j, k] = (model(x_test).argmax(1) == y_test).float().mean().item()
                        k += 1
                    if t == cfg.steps:
                        break
                    opt.zero_grad()
                    loss_fn(model(x[order[t]]), y[order[t]]).backward()
                    opt.step()
                with torch.no_grad():
                    v = loss_fn(model(x_val), y_val).item()
                    val[oname][i, j] = v if np.isfinite(v) else np.inf
                    test_acc[oname][i, j] = (model(x_test).argmax(1) == y_test).float().mean().item()
                done += 1
                progress(done / total)
    return {"val_loss": val, "test_acc": test_acc, "curves": curves, "evals": evals}


def measure(raw, cfg: Config) -> Measurement:
    tuned, acc, rows = {}, {}, []
    for oname in MAKE:
        t = tune(SPEC.optimizers[oname], raw["val_loss"][oname], "validation loss after training")
        tuned[oname] = t
        acc[oname] = 100 * raw["test_acc"][oname][t.best_index]
        rows.append([oname, f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
                     t.score_by_lr[t.best_index].text(".3f"), interval(acc[oname]).text(".2f")])
    figures = {"rmsprop_minus_adam_test_acc_points": interval(acc["RMSProp"] - acc["Adam"]),
               "sgd_minus_adam_test_acc_points": interval(acc["SGD"] - acc["Adam"]),
               **{f"{o.lower()}_test_acc_percent": interval(a) for o, a in acc.items()}}
    table = Table(["optimizer", "best lr (validation loss)", "validation loss",
                   "test accuracy % (mean [95%])"], rows,
                  title=f"digits MLP, {cfg.steps} steps, each optimizer at its best lr")
    notes = [f"SGD minus Adam: {figures['sgd_minus_adam_test_acc_points'].text('.2f')} points "
             "(shown for scale, not judged)"]
    return Measurement(figures=figures, tuned=tuned, tables=[table], notes=notes)


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.6,
                           title="MLP on scikit-learn digits, each optimizer at its best lr")
    ax_acc, ax_lr = axes[0]
    best_lr_bands(ax_acc, raw["evals"], m.tuned, COLORS, MAKE,
                  lambda o, b: 100 * raw["curves"][o][b])
    ax_acc.set_ylim(85, 100)
    ax_acc.set_xlabel("optimizer step (minibatch of 64)")
    ax_acc.set_ylabel("test accuracy (%), axis from 85%")
    ax_acc.set_title("test accuracy at each one's best lr", fontsize=10)
    ax_acc.legend(fontsize=7, loc="lower right")
    lr_sweep(ax_lr, m.tuned, COLORS, "validation loss after training (nats)")
    ax_lr.set_title("final validation loss vs lr", fontsize=10)
    return fig
