"""AdaGrad's shrinking step vs RMSProp on a non-stationary objective.

Article ("Overview", "Comparison"): AdaGrad's cumulative sum of squared gradients grows
monotonically and shrinks the effective learning rate toward zero; RMSProp's exponential
average keeps the step responsive, so it suits long runs and non-stationary problems.

Problem: a noisy quadratic in 20 dimensions with curvatures h from 0.1 to 10,
``f_t(x) = s_t * sum_i h_i (x_i - c_t)^2 / 2``, gradient noise of standard deviation s_t, from
x = -5. For the first half c = 0 and s = 1; halfway the optimum moves to c = 5 and the
gradient scale drops to s = 0.01 (as gradients shrink late in training). Each optimiser's lr is
the best of a log grid on the first half (what a user tuning early would pick):
``torch.optim.Adagrad`` vs ``rmsprop.torch.RMSprop``. The effective step is
lr / (sqrt(accumulator) + eps), its median over the coordinates (a mean would be ruled by one
coordinate whose first gradient happened to be near zero).

A second scenario moves the optimum but keeps the gradient scale: there tuned AdaGrad keeps up
(its sum grows with the new, large gradients): the stall needs the gradients to shrink
relative to what was accumulated, which a long run provides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..torch import RMSprop
from ._base import Result, Progress, Table, check_steps, finish, new_figure, no_progress, seeded
from ._grid import run_grid

NAME = "adagrad-decay"
SUMMARY = "non-stationary objective: AdaGrad's effective step shrinks and it stalls; RMSProp tracks"
CLAIM = (
    "AdaGrad's effective step size lr/sqrt(sum g^2) shrinks toward zero, so when the objective "
    "changes (the optimum moves and the gradient scale drops halfway) it stalls, while RMSProp's "
    "moving average adapts and keeps tracking the optimum."
)
DEFAULT_STEPS = 4000
MIN_STEPS = 400
QUICK_STEPS = 1500  # the demo, `report --quick` and the tests
DIM = 20
START, C_BEFORE, C_AFTER, SCALE_AFTER = -5.0, 0.0, 5.0, 0.01
LRS = np.logspace(-3, 1, 9)
LOSS_RATIO_AT_LEAST = 10.0
ADAGRAD_SHRINK_AT_MOST = 0.25  # the median coordinate's step, at least 4x smaller
SCENARIOS = {
    "move + scale drop": dict(scale_after=SCALE_AFTER),
    "move only": dict(scale_after=1.0),
}
OPTIMIZERS = {
    "AdaGrad": (lambda groups: torch.optim.Adagrad(groups), "sum", 1e-10),  # torch defaults
    "RMSProp": (lambda groups: RMSprop(groups), "square_avg", 1e-8),
}
COLORS = {"AdaGrad": "tab:green", "RMSProp": "tab:blue"}


def make_problem(steps: int, scale_after: float, seed: int):
    """``(X, t) -> (true loss without the scale, noisy scaled gradient)`` and c_t."""
    h = torch.logspace(-1, 1, DIM, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def optimum(t: int) -> float:
        return C_BEFORE if t < steps // 2 else C_AFTER

    def loss_and_grad(X: torch.Tensor, t: int):
        s = 1.0 if t < steps // 2 else scale_after
        r = X - optimum(t)
        noise = torch.randn(X.shape, generator=gen, dtype=X.dtype)
        return 0.5 * (h * r * r).sum(1), s * (h * r + noise)

    return loss_and_grad, optimum


def _effective_step(key: str, eps: float):
    def observe(optimizer, rows):
        lrs = torch.tensor([group["lr"] for group in optimizer.param_groups], dtype=torch.float64)
        acc = torch.stack([optimizer.state[row][key] for row in rows])
        # the median over coordinates: one near-zero first gradient would rule a mean
        return (lrs[:, None] / (acc.sqrt() + eps)).median(1).values.numpy()
    return observe


def run(seed: int = 0, steps: int | None = None, out_dir: Path = Path("."),
        progress: Progress = no_progress) -> Result:
    steps = check_steps(steps, DEFAULT_STEPS, MIN_STEPS, NAME)
    half = steps // 2
    work = len(SCENARIOS) * len(OPTIMIZERS) * steps
    done = 0
    found: dict[str, dict] = {}
    with seeded(seed):
        for sname, scenario in SCENARIOS.items():
            found[sname] = {}
            for oname, (make, key, eps) in OPTIMIZERS.items():
                problem, optimum = make_problem(steps, scenario["scale_after"], seed)
                base = done
                out = run_grid(make, problem, torch.full((DIM,), START), LRS, steps,
                               observe=_effective_step(key, eps),
                               tick=lambda k: progress((base + k) / work) if k % 200 == 0 else None)
                done += steps
                first_half = np.nan_to_num(out["loss"][:half].mean(0), nan=np.inf)
                best = int(np.argmin(first_half))
                loss = out["loss"][:, best]
                found[sname][oname] = {
                    "best_lr": float(LRS[best]), "loss": loss,
                    "effective_step": out["observed"][:, best],
                    "x_stiff": out["x"][:, best, -1], "x_flat": out["x"][:, best, 0],
                    "first_half_loss": float(first_half[best]),
                    "end_loss": float(loss[-max(steps // 10, 1):].mean()),
                }
                found[sname]["optimum"] = np.array([optimum(t) for t in range(steps + 1)])
    progress(1.0)

    main = found["move + scale drop"]
    ada, rms = main["AdaGrad"], main["RMSProp"]
    ratio = ada["end_loss"] / rms["end_loss"]
    ada_shrink = ada["effective_step"][-1] / ada["effective_step"][0]
    rms_regrow = rms["effective_step"][-1] / rms["effective_step"][half - 1]
    passed = ratio >= LOSS_RATIO_AT_LEAST and ada_shrink <= ADAGRAD_SHRINK_AT_MOST and rms_regrow > 1
    verdict = (
        f"loss over the last 10% of steps: AdaGrad {ada['end_loss']:.3g} vs RMSProp "
        f"{rms['end_loss']:.3g} ({ratio:.0f}x, need >= {LOSS_RATIO_AT_LEAST:g}x); AdaGrad's "
        f"effective step fell to {ada_shrink:.3f} of its first-step value (need <= "
        f"{ADAGRAD_SHRINK_AT_MOST}); RMSProp's grew {rms_regrow:.0f}x after the change (need > 1)"
    )
    rows = []
    for sname in SCENARIOS:
        for oname in OPTIMIZERS:
            f = found[sname][oname]
            rows.append([sname, oname, f"{f['best_lr']:.3g}", f"{f['first_half_loss']:.3g}",
                         f"{f['end_loss']:.3g}", f"{f['effective_step'][-1]:.3g}"])
    table = Table(["scenario", "optimizer", "lr (best on 1st half)", "mean loss, 1st half",
                   "loss, last 10%", "final effective step"], rows,
                  title="AdaGrad vs RMSProp when the objective changes halfway")
    figures = {"adagrad_end_loss": ada["end_loss"], "rmsprop_end_loss": rms["end_loss"],
               "loss_ratio": ratio, "adagrad_step_shrink": ada_shrink,
               "rmsprop_step_regrowth": rms_regrow,
               "move_only_adagrad_end_loss": found["move only"]["AdaGrad"]["end_loss"],
               "move_only_rmsprop_end_loss": found["move only"]["RMSProp"]["end_loss"]}
    fig = _plot(found, steps)
    return finish(name=NAME, claim=CLAIM, passed=passed, verdict=verdict, figures=figures,
                  fig=fig, out_dir=out_dir, data=found, seed=seed, steps=steps, tables=[table],
                  notes=["with the optimum moved but the gradient scale unchanged ('move only'), "
                         "tuned AdaGrad keeps up: the stall needs gradients that shrink relative "
                         "to its accumulated sum"])


def _plot(found, steps):
    fig, axes = new_figure(2, 3, width=5.0, height=4.0,
                           title="AdaGrad's shrinking step vs RMSProp (objective changes at the "
                                 "dotted line)")
    t = np.arange(steps + 1)
    for row, sname in enumerate(SCENARIOS):
        ax_loss, ax_step, ax_x = axes[row]
        for oname in OPTIMIZERS:
            f = found[sname][oname]
            ax_loss.semilogy(t, f["loss"], color=COLORS[oname], lw=1,
                             label=f"{oname} (lr {f['best_lr']:.2g})")
            ax_step.semilogy(t[1:], f["effective_step"], color=COLORS[oname],
                             label=f"{oname}")
            ax_x.plot(t, f["x_flat"], color=COLORS[oname], lw=1,
                      label=f"{oname}, flattest coordinate (h = 0.1)")
        ax_x.plot(t, found[sname]["optimum"], "k--", lw=1, label="optimum c_t")
        for ax in (ax_loss, ax_step, ax_x):
            ax.axvline(steps // 2, color="0.3", ls=":", lw=1)
            ax.set_xlabel("optimizer step")
        ax_loss.set_ylabel("loss sum h (x - c)^2 / 2 (log scale)")
        ax_loss.set_title(f"{sname}: distance to the optimum", fontsize=10)
        ax_step.set_ylabel("effective step lr / (sqrt(acc) + eps)")
        ax_step.set_title(f"{sname}: effective step size (mean over coords)", fontsize=10)
        ax_x.set_ylabel("parameter value")
        ax_x.set_title(f"{sname}: tracking the optimum", fontsize=10)
        for ax in (ax_loss, ax_step, ax_x):
            ax.legend(fontsize=8)
    return fig
