"""TensorFlow's momentum form (the article's equation) vs torch's, under a changing lr.

The article writes m_t = mu m_(t-1) + eta_t g_t / (sqrt(v_t) + eps), theta -= m_t: the lr is
inside the buffer (TensorFlow, Keras, optax). torch keeps the lr outside:
m_t = mu m_(t-1) + g_t / (sqrt(v_t) + eps), theta -= eta_t m_t. With a constant lr the two are
the same (a sanity check); with a schedule, torch's form rescales the whole accumulated velocity
at once. Per seed a rotated quadratic (20 dimensions, eigenvalues 1..1000, random basis and
start); schedule: linear warm-up over the first 10 % of steps, then cosine decay to 0.1 of the
peak. Both forms (the library's float64 update, rho 0.9, eps 1e-8, momentum 0.9) are tuned on
their own grid of peak lrs by the steps after which the loss stays below 1e-4 of its start.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..spec import resolve
from ._base import Table
from ._plots import settling_figure
from ._protocol import (
    Config, Criterion, Measurement, Spec, interval, log_grid, settling_header,
    tune_each_by_settling,
)
from ._spec_grid import quadratic_rows, run_lr_seed_rows, run_rows

DIM = 20
RELATIVE_TARGET = 1e-4
FORMS = {
    "TF form (lr inside)": resolve("pytorch", lr=1e-3, alpha=0.9, eps=1e-8, momentum=0.9,
                                   lr_in_momentum=True),
    "torch form (lr outside)": resolve("pytorch", lr=1e-3, alpha=0.9, eps=1e-8, momentum=0.9),
}
SPEC = Spec(
    name="tf-momentum-form",
    summary="momentum with the lr inside the buffer (TF, the article) vs outside (torch), "
            "under warm-up + cosine decay",
    section="Variants",
    claim="This RMSProp-with-momentum form is what TensorFlow exposes when its momentum "
          "hyperparameter is non-zero, and it tends to perform better on problems with poorly "
          "conditioned curvature.",
    hypothesis="Under a warm-up + cosine schedule on rotated quadratics with condition number "
               "1000, the article's (TensorFlow) momentum form at its best peak lr settles below "
               "1e-4 of the start in fewer steps than torch's form at its best: torch steps / "
               "TF steps, paired per seed, > 1.",
    criteria=(Criterion("torch_over_tf_steps", ">", 1.0,
                        "the form the article names should be at least as good: 1 is a tie"),),
    optimizers={name: log_grid(1e-4, 1e-1, 3) for name in FORMS},
    n_seeds=5, quick_seeds=2, default_steps=2000, min_steps=200, quick_steps=600,
)
COLORS = dict(zip(FORMS, ("tab:red", "tab:blue")))


def schedule_for(steps: int):
    warm = max(steps // 10, 1)

    def factor(t: int) -> float:
        if t < warm:
            return (t + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - warm) / (steps - warm)))

    return factor


def problem(seeds):
    Hs, x0 = [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        Q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        Hs.append(Q @ np.diag(np.logspace(0, 3, DIM)) @ Q.T)
        x0.append(rng.standard_normal(DIM))
    return np.array(Hs), np.array(x0)


def simulate(cfg: Config, progress):
    H, x0 = problem(cfg.seeds)
    fn = quadratic_rows(H)
    raw: dict[str, Any] = {}
    for k, (name, spec) in enumerate(FORMS.items()):
        raw[name] = run_lr_seed_rows(spec, fn, x0, SPEC.optimizers[name], cfg.steps,
                                     schedule=schedule_for(cfg.steps))
        progress((k + 1) / (len(FORMS) + 1))
    constant = [run_rows(spec, quadratic_rows(H[:1]), x0[:1], np.array([1e-3]), 200,
                         keep_x=True)["x"][:, 0] for spec in FORMS.values()]
    raw["constant_lr_max_diff"] = float(np.abs(constant[0] - constant[1]).max()
                                        / np.abs(constant[0]).max())
    progress(1.0)
    return raw


def measure(raw, cfg: Config) -> Measurement:
    tuned, best, rows = tune_each_by_settling(FORMS, SPEC.optimizers, raw, RELATIVE_TARGET,
                                              cfg.steps, "steps until f stays below 1e-4 f0")
    names = list(FORMS)
    figures = {"torch_over_tf_steps": interval(best[names[1]] / best[names[0]])}
    # rounding differs (lr * sum vs sum of lr * ...) and condition 1000 amplifies it
    sanity = {"at a constant lr the two forms give the same trajectory (relative 1e-9)":
              raw["constant_lr_max_diff"] < 1e-9}
    table = Table(settling_header("form", RELATIVE_TARGET, "best peak lr"), rows,
                  title=f"rotated quadratic, condition 1000, warm-up + cosine, {cfg.steps} steps")
    return Measurement(figures=figures, tuned=tuned, sanity=sanity, tables=[table])


def plot(raw, m: Measurement, cfg: Config):
    return settling_figure("Momentum with the lr inside (TF) or outside (torch) the buffer, "
                           "warm-up + cosine lr", raw, m.tuned, FORMS, COLORS, cfg.steps,
                           RELATIVE_TARGET, lr_word="peak lr", sweep_lr_word="peak learning rate")
