"""Heterogeneous parameter scales: least squares whose inputs span three decades of scale.

Per seed a linear regression with 200 examples and 10 inputs; input j is a standard normal
column times s_j, s log-spaced from 10^-1.5 to 10^1.5 (as inputs of different modalities or
units), noise-free targets y = A w* with w* standard normal, from w = 0. The loss
||A w - y||^2 / (2 n) is a quadratic whose curvature spans six decades, most of it along the
coordinates. RMSProp (the library's float64 update, rho 0.9, eps 1e-8) and full-batch gradient
descent, each tuned on its own grid (6 points per decade: gradient descent's best lr sits just
under its stability limit, and a coarse grid would handicap it) by the steps after which the
loss stays below 1e-4 of its start.
"""

from __future__ import annotations

import numpy as np

from ..spec import resolve
from ._base import Table
from ._plots import settling_figure
from ._protocol import (
    Config, Criterion, Measurement, Spec, interval, log_grid, settling_header,
    tune_each_by_settling,
)
from ._spec_grid import quadratic_rows, run_lr_seed_rows
from .forgiveness import SPEC as _FORGIVENESS

N, DIM = 200, 10
RELATIVE_TARGET = 1e-4
RMS = resolve("pytorch", alpha=0.9, eps=1e-8, lr=1e-3)
SPEC = Spec(
    name="heterogeneous-scales",
    summary="least squares with inputs over three decades of scale: tuned RMSProp vs tuned GD",
    section="Comparison with Other Optimizers",
    claim=_FORGIVENESS.claim,
    hypothesis="On least squares whose input scales span three decades, RMSProp at its best lr "
               "settles below 1e-4 of the starting loss in fewer steps than gradient descent at "
               "its best lr: GD steps / RMSProp steps, paired per seed, > 1.",
    criteria=(Criterion("gd_over_rmsprop_steps", ">", 1.0,
                        "'converges faster' means fewer steps at each one's best lr; 1 is a tie"),),
    optimizers={"GD": log_grid(1e-5, 1e-1, 6), "RMSProp": log_grid(1e-5, 1.0, 6)},
    n_seeds=5, quick_seeds=2, default_steps=3000, min_steps=200, quick_steps=800,
)
COLORS = {"GD": "tab:orange", "RMSProp": "tab:blue"}


def problem(seeds):
    scales = np.logspace(-1.5, 1.5, DIM)
    Hs, w_star = [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        A = rng.standard_normal((N, DIM)) * scales
        Hs.append(A.T @ A / N)
        w_star.append(rng.standard_normal(DIM))
    return np.array(Hs), np.array(w_star)


def simulate(cfg: Config, progress):
    H, w_star = problem(cfg.seeds)
    fn = quadratic_rows(H, w_star)
    x0 = np.zeros((len(cfg.seeds), DIM))
    raw = {}
    for k, (name, spec) in enumerate((("GD", None), ("RMSProp", RMS))):
        raw[name] = run_lr_seed_rows(spec, fn, x0, SPEC.optimizers[name], cfg.steps)
        progress((k + 1) / 2)
    return raw


def measure(raw, cfg: Config) -> Measurement:
    tuned, best, rows = tune_each_by_settling(raw, SPEC.optimizers, raw, RELATIVE_TARGET,
                                              cfg.steps, "steps until f stays below 1e-4 f0")
    figures = {"gd_over_rmsprop_steps": interval(best["GD"] / best["RMSProp"])}
    table = Table(settling_header("optimizer", RELATIVE_TARGET), rows,
                  title=f"least squares, input scales 10^-1.5..10^1.5, budget {cfg.steps} steps")
    return Measurement(figures=figures, tuned=tuned, tables=[table])


def plot(raw, m: Measurement, cfg: Config):
    return settling_figure("Inputs over three decades of scale: GD vs RMSProp, each at its best "
                           "lr", raw, m.tuned, raw, COLORS, cfg.steps, RELATIVE_TARGET,
                           xlabel="optimizer step (full batch)")
