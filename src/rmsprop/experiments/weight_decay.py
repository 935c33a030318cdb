"""Coupled (L2 in the gradient) vs decoupled weight decay under RMSProp: the effective penalty.

Per seed a noisy linear regression (500 examples, 8 inputs whose scales span one decade,
targets y = A w* + noise 0.1), minibatch 32, trained with the library's float64 update (lr 1e-2,
rho 0.9, eps 1e-8) and a penalty lambda = 0.5, once coupled (lambda theta added to the gradient,
then rescaled) and once decoupled (theta -= lr lambda theta, not rescaled). At the average
iterate over the last half of the steps, the effective penalty of coordinate i is what balances
the data gradient there: lambda_eff_i = -dL_data/dtheta_i / theta_i. Measured: the median over the
coordinates of |log10(lambda_eff decoupled / lambda_eff coupled)| (the median: a coordinate near
zero makes its ratio noise).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import resolve
from ..update import init_state, rmsprop_update
from ._base import Table, new_figure
from ._protocol import Config, Criterion, Measurement, Spec, interval

N, DIM, BATCH, LAMBDA, NOISE = 500, 8, 32, 0.5, 0.1
COUPLED = resolve("pytorch", lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=LAMBDA)
DECOUPLED = COUPLED.replace(decoupled_weight_decay=True)
SPEC = Spec(
    name="weight-decay",
    summary="coupled vs decoupled weight decay under RMSProp: the effective per-coordinate penalty",
    section="Limitations",
    claim="The per-parameter scaling can interfere with explicit weight decay; coupling the "
          "regularizer to the rescaled update gives a different effective penalty than coupling "
          "it to the raw gradient, which motivated the decoupled-weight-decay variants that have "
          "since become standard for Adam-like methods.",
    hypothesis="On a noisy regression with inputs of different scales, the effective "
               "per-coordinate penalty of decoupled decay differs from that of coupled (L2) "
               "decay by more than a factor 2 for the median coordinate: |log10 ratio| > 0.3.",
    criteria=(Criterion("median_abs_log10_penalty_ratio", ">", 0.3,
                        "a factor of 2 (0.3 decades) is a different penalty, not estimation "
                        "noise"),),
    n_seeds=5, quick_seeds=2, default_steps=4000, min_steps=200, quick_steps=1000,
)


def simulate(cfg: Config, progress):
    scales = np.logspace(-0.5, 0.5, DIM)
    out: dict[str, list[Any]] = {"coupled": [], "decoupled": []}
    curves: dict[str, list[Any]] = {"coupled": [], "decoupled": []}
    for j, seed in enumerate(cfg.seeds):
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((N, DIM)) * scales
        w_star = rng.standard_normal(DIM)
        y = A @ w_star + NOISE * rng.standard_normal(N)
        order = [rng.choice(N, BATCH, replace=False) for _ in range(cfg.steps)]
        for name, spec in (("coupled", COUPLED), ("decoupled", DECOUPLED)):
            w = np.zeros(DIM)
            state = init_state(w, spec, np)
            tail, path = [], []
            for t in range(cfg.steps):
                idx = order[t]
                g = A[idx].T @ (A[idx] @ w - y[idx]) / BATCH
                w, state = rmsprop_update(np, w, g, state, spec, spec.lr, t + 1)
                if t >= cfg.steps // 2:
                    tail.append(w)
                if t % 10 == 0:
                    path.append(w.copy())
            w_bar = np.mean(tail, axis=0)
            data_grad = A.T @ (A @ w_bar - y) / N
            out[name].append(-data_grad / w_bar)
            curves[name].append(np.array(path))
        progress((j + 1) / len(cfg.seeds))
    return {"penalty": {k: np.array(v) for k, v in out.items()}, "scales": scales,
            "paths": {k: np.array(v) for k, v in curves.items()}}


def measure(raw, cfg: Config) -> Measurement:
    c, d = raw["penalty"]["coupled"], raw["penalty"]["decoupled"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(np.log10(np.abs(d / c)))
    figures = {"median_abs_log10_penalty_ratio": interval(np.nanmedian(ratio, axis=1)),
               "coupled_penalty_over_lambda": interval(np.median(c, axis=1) / LAMBDA)}
    sanity = {"coupled decay's effective penalty is lambda within 20% (median coordinate)":
              bool(np.all(np.abs(np.median(c, axis=1) / LAMBDA - 1) < 0.2))}
    rows = [[f"{s:.3g}", interval(c[:, i]).text(".3g"), interval(d[:, i]).text(".3g")]
            for i, s in enumerate(raw["scales"])]
    table = Table(["input scale", "effective penalty, coupled", "effective penalty, decoupled"],
                  rows, title=f"lambda = {LAMBDA}, lr 1e-2, rho 0.9, {cfg.steps} steps "
                              f"(average iterate over the last half)")
    return Measurement(figures=figures, sanity=sanity, tables=[table],
                       data={"penalty": raw["penalty"], "scales": raw["scales"]})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 1, width=8.0, height=4.8,
                           title="Effective weight-decay penalty per coordinate under RMSProp")
    ax = axes[0][0]
    s = raw["scales"]
    for name, color, marker in (("coupled", "tab:blue", "o"), ("decoupled", "tab:red", "s")):
        p = raw["penalty"][name]
        mean = p.mean(0)
        from ._plots import t_band

        _, low, high = t_band(p)
        ax.errorbar(s, mean, yerr=[np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)],
                    fmt=marker + "-", color=color, capsize=3,
                    label=f"{name} (mean over seeds, bars: 95% interval)")
    ax.axhline(LAMBDA, color="k", ls="--", lw=1, label=f"lambda = {LAMBDA}")
    ax.set_xscale("log")  # linear y: the decoupled intervals reach below zero
    ax.set_xlabel("scale of the input (log)")
    ax.set_ylabel("effective penalty -dL/dtheta_i / theta_i")
    ax.legend(fontsize=8)
    return fig
