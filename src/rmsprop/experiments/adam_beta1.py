"""Adam with beta1 = 0 is RMSProp with bias correction: an exactness check through the spec.

``torch.optim.Adam`` (float64, betas (0, rho), eps 1e-8, lr 1e-3) and the library's float64
update (``rmsprop.update``) with the same rho and eps are fed one fixed stream of 20-dimensional
gradients (a quadratic's gradient at the start plus noise; open loop, so every rule sees the same
gradients and only the update rules differ): once with ``bias_correction=True`` (v divided by 1 - rho^t,
as Adam does), once without (the article's RMSProp). Measured: the largest relative difference
between the trajectories. Adam cannot switch its bias correction off, so "RMSProp = Adam without
the first moment and without bias correction" is checked as: Adam(beta1 = 0) equals RMSProp with
bias correction, and differs from plain RMSProp only while 1 - rho^t is far from 1.
"""

from __future__ import annotations

import numpy as np
import torch

from ..spec import resolve
from ..update import init_state, rmsprop_update
from ._base import Table, new_figure
from ._protocol import Config, Criterion, Measurement, Spec, interval

DIM = 20
RHO, EPS, LR = 0.9, 1e-8, 1e-3
SPEC = Spec(
    name="adam-beta1-zero",
    summary="Adam(beta1=0) vs RMSProp with and without bias correction: exact equality?",
    section="Variants",
    claim="Adam can be viewed as RMSProp augmented with a first-moment estimate (a smoothed "
          "gradient) and bias-correction terms; in practice the two often produce comparable "
          "results on supervised tasks, with Adam more commonly chosen as the default in modern "
          "training pipelines.",
    hypothesis="torch.optim.Adam with beta1 = 0 and RMSProp with bias correction (same rho, eps, "
               "lr) follow the same float64 trajectory: largest relative difference < 1e-10; "
               "and after 200 steps Adam(beta1 = 0) and plain RMSProp differ by < 1e-6 per step "
               "(the bias correction has faded).",
    criteria=(
        Criterion("adam_vs_rmsprop_bias_corrected_max_rel_diff", "<", 1e-10,
                  "the same arithmetic up to rounding: float64 leaves 1e-10 ample room"),
        Criterion("adam_vs_plain_rmsprop_late_step_rel_diff", "<", 1e-6,
                  "1 - 0.9^200 differs from 1 by 7e-10: what remains must be rounding-sized"),
    ),
    deterministic=True, default_steps=1000, min_steps=300, quick_steps=300,
)


def _problem():
    rng = np.random.default_rng(1)
    h = np.logspace(-1, 1, DIM)
    return h, rng.standard_normal(DIM), rng.standard_normal((4000, DIM))


def simulate(cfg: Config, progress):
    h, x0, noise = _problem()

    def grad(x, t):  # open loop: the same gradient stream for every update rule
        return h * x0 + 0.1 * noise[t % len(noise)]

    w = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([w], lr=LR, betas=(0.0, RHO), eps=EPS)
    paths = {"Adam(beta1=0)": [x0.copy()]}
    with torch.no_grad():
        for t in range(cfg.steps):
            w.grad = torch.tensor(grad(w.numpy(), t))
            adam.step()
            paths["Adam(beta1=0)"].append(w.numpy().copy())
    for name, bc in (("RMSProp + bias correction", True), ("RMSProp (plain)", False)):
        spec = resolve("pytorch", lr=LR, alpha=RHO, eps=EPS, bias_correction=bc)
        x, state = x0.copy(), init_state(x0, spec, np)
        path = [x.copy()]
        for t in range(cfg.steps):
            x, state = rmsprop_update(np, x, grad(x, t), state, spec, LR, t + 1)
            path.append(x.copy())
        paths[name] = path
    progress(1.0)
    return {k: np.array(v) for k, v in paths.items()}


def measure(raw, cfg: Config) -> Measurement:
    adam = raw["Adam(beta1=0)"]
    scale = np.linalg.norm(adam - adam[0], axis=1).max()
    d_bc = np.linalg.norm(raw["RMSProp + bias correction"] - adam, axis=1) / scale
    step_adam = np.diff(adam, axis=0)
    step_plain = np.diff(raw["RMSProp (plain)"], axis=0)
    # per-step difference of the update direction at late steps, relative to the step size
    rel_step = np.linalg.norm(step_plain - step_adam, axis=1) / np.linalg.norm(step_adam, axis=1)
    late = rel_step[200:]
    figures = {"adam_vs_rmsprop_bias_corrected_max_rel_diff": interval(d_bc.max()),
               "adam_vs_plain_rmsprop_late_step_rel_diff": interval(late.max()),
               "adam_vs_plain_rmsprop_first_step_rel_diff": interval(rel_step[0])}
    table = Table(["compared with Adam(beta1 = 0)", "largest trajectory difference / distance",
                   "step 1: update difference / update", "after step 200: largest"],
                  [["RMSProp + bias correction", f"{d_bc.max():.3g}", "", ""],
                   ["RMSProp (plain)",
                    f"{(np.linalg.norm(raw['RMSProp (plain)'] - adam, axis=1) / scale).max():.3g}",
                    f"{rel_step[0]:.3g}", f"{late.max():.3g}"]],
                  title=f"noisy quadratic, rho {RHO}, eps {EPS:g}, lr {LR:g}, {cfg.steps} steps")
    return Measurement(figures=figures, tables=[table], data={"rel_step_plain": rel_step})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 1, width=8.0, height=4.6,
                           title="Adam with beta1 = 0 against RMSProp (float64)")
    ax = axes[0][0]
    adam = raw["Adam(beta1=0)"]
    t = np.arange(1, cfg.steps + 1)
    for name, color in (("RMSProp + bias correction", "tab:green"), ("RMSProp (plain)", "tab:blue")):
        d = np.linalg.norm(np.diff(raw[name], axis=0) - np.diff(adam, axis=0), axis=1)
        d /= np.linalg.norm(np.diff(adam, axis=0), axis=1)
        ax.semilogy(t, np.maximum(d, 1e-18), color=color, lw=1.2,
                    label=f"{name} (exact zeros drawn at 1e-18)")
    ax.semilogy(t, RHO**t, "k--", lw=1, label="rho^t (what bias correction removes)")
    ax.axhline(1e-6, color="tab:red", ls=":", lw=1, label="threshold after step 200: 1e-6")
    ax.axvline(200, color="0.5", ls=":", lw=1)
    ax.set_ylim(1e-19, 10)  # rho^t runs on below: cut at the floor drawn for exact zeros
    ax.set_xlabel("step t")
    ax.set_ylabel("|update - Adam's update| / |Adam's update| (log)")
    ax.legend(fontsize=8)
    return fig
