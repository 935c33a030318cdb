"""Graves (2013, eq. 38-41) against the Nesterov form: is his momentum a lookahead?

Graves's update, written here from the paper's equations 38-41 (independently of the library):
n = a n + (1 - a) e^2, g = a g + (1 - a) e, D = b D - c e / sqrt(n - g^2 + d), w = w + D, with
a = 0.95, b = 0.9, c = 1e-4, d = 1e-4 (e is the gradient). It is run on a rotated quadratic
(condition 100, 10 dimensions, a fixed start) beside the library's ``graves`` flavour (the same
options) with ``nesterov=True`` added, i.e. the Nesterov-style lookahead the article names.
Measured: the largest distance between the two trajectories relative to the distance travelled.
That the library's ``graves`` flavour equals the paper's equations is a sanity check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import resolve
from ._base import Table, new_figure
from ._protocol import Config, Criterion, Measurement, Spec, interval
from ._spec_grid import run_rows

DIM = 10
A, B, C, D = 0.95, 0.9, 1e-4, 1e-4
SPEC = Spec(
    name="graves-nesterov",
    summary="Graves 2013 eq. 38-41 vs RMSProp with Nesterov momentum: the same update?",
    section="Variants",
    claim="A further extension proposed by Graves applies Nesterov-style lookahead to the "
          "momentum step.",
    hypothesis="Graves's equations 38-41 and the same RMSProp with a Nesterov lookahead on the "
               "momentum step give the same trajectory: their largest difference, relative to "
               "the distance travelled, is below 1e-6.",
    criteria=(Criterion("graves_vs_nesterov_max_rel_diff", "<", 1e-6,
                        "float64 rounding over a few thousand steps stays far below 1e-6"),),
    deterministic=True, default_steps=3000, min_steps=100, quick_steps=500,
)


def _problem():
    rng = np.random.default_rng(2013)
    Q, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    H = Q @ np.diag(np.logspace(0, 2, DIM)) @ Q.T
    return H, rng.standard_normal(DIM)


def graves_paper(H: np.ndarray, w: np.ndarray, steps: int) -> np.ndarray:
    """Eq. 38-41 of Graves (2013), arXiv:1308.0850, as printed; returns w_0..w_steps."""
    n = np.zeros_like(w)
    g = np.zeros_like(w)
    delta = np.zeros_like(w)
    path = [w.copy()]
    for _ in range(steps):
        e = H @ w
        n = A * n + (1 - A) * e * e
        g = A * g + (1 - A) * e
        delta = B * delta - C * e / np.sqrt(n - g * g + D)
        w = w + delta
        path.append(w.copy())
    return np.array(path)


def simulate(cfg: Config, progress):
    H, x0 = _problem()

    def fn(X, t):
        G = X @ H
        return 0.5 * (G * X).sum(1), G

    flavour = resolve("graves")
    runs: dict[str, Any] = {"paper": graves_paper(H, x0, cfg.steps)}
    for name, spec in (("graves flavour", flavour), ("Nesterov", flavour.replace(nesterov=True))):
        runs[name] = run_rows(spec, fn, x0[None], np.array([flavour.lr]), cfg.steps,
                              keep_x=True)["x"][:, 0, :]
    progress(1.0)
    runs["loss"] = {k: 0.5 * np.einsum("ti,ij,tj->t", v, H, v) for k, v in runs.items()}
    return runs


def measure(raw, cfg: Config) -> Measurement:
    travelled = np.linalg.norm(raw["paper"] - raw["paper"][0], axis=1).max()
    diff = np.linalg.norm(raw["Nesterov"] - raw["paper"], axis=1) / travelled
    flav = np.linalg.norm(raw["graves flavour"] - raw["paper"], axis=1) / travelled
    figures = {"graves_vs_nesterov_max_rel_diff": interval(diff.max()),
               "graves_vs_flavour_max_rel_diff": interval(flav.max())}
    sanity = {"the library's 'graves' flavour equals eq. 38-41 (relative difference < 1e-9)":
              bool(flav.max() < 1e-9)}
    table = Table(["trajectory", "largest difference from eq. 38-41 / distance travelled",
                   "final loss"],
                  [["graves flavour (heavy-ball momentum, lr inside)", f"{flav.max():.3g}",
                    f"{raw['loss']['graves flavour'][-1]:.3g}"],
                   ["graves + nesterov=True (lookahead)", f"{diff.max():.3g}",
                    f"{raw['loss']['Nesterov'][-1]:.3g}"],
                   ["eq. 38-41", "0", f"{raw['loss']['paper'][-1]:.3g}"]],
                  title=f"rotated quadratic, condition 100, {cfg.steps} steps")
    notes = ["eq. 41 adds the velocity Delta_i = b Delta_(i-1) - c e / sqrt(...) computed at the "
             "current weights: heavy-ball momentum, without a lookahead"]
    return Measurement(figures=figures, sanity=sanity, tables=[table], notes=notes,
                       data={"rel_diff_nesterov": diff[:: max(cfg.steps // 500, 1)]})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.6,
                           title="Graves 2013 (eq. 38-41) vs the Nesterov form of the same update")
    ax_loss, ax_diff = axes[0]
    t = np.arange(cfg.steps + 1)
    styles = {"paper": ("k", "-", "eq. 38-41 (written from the paper)"),
              "graves flavour": ("tab:green", "--", "library 'graves' flavour"),
              "Nesterov": ("tab:purple", "-", "graves + nesterov=True")}
    for key, (color, ls, label) in styles.items():
        ax_loss.semilogy(t, raw["loss"][key], color=color, ls=ls, lw=1.2, label=label)
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss x^T H x / 2 (log scale)")
    ax_loss.legend(fontsize=8)
    travelled = np.linalg.norm(raw["paper"] - raw["paper"][0], axis=1).max()
    for key in ("graves flavour", "Nesterov"):
        d = np.linalg.norm(raw[key] - raw["paper"], axis=1) / travelled
        color, _, label = styles[key]
        ax_diff.semilogy(t[1:], np.maximum(d[1:], 1e-18), color=color, lw=1.2,
                         label=f"{label} (floored at 1e-18 for the log axis)")
    ax_diff.axhline(1e-6, color="k", ls="--", lw=1, label="threshold 1e-6")
    ax_diff.set_xlabel("optimizer step")
    ax_diff.set_ylabel("|w - w_eq.38-41| / distance travelled (log)")
    ax_diff.legend(fontsize=7)
    return fig
