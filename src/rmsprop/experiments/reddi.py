"""Reddi, Kale & Kumar (ICLR 2018): RMSProp can converge to the worst point of a convex problem.

Article ("Limitations"): "on some convex problems it has been shown to fail to converge [...]
a deficiency it shares with Adam" (ref. 4). The online problems on the feasible set [-1, 1],
each step t = 1, 2, ... with loss f_t(x) = g_t * x, so the gradient is g_t:

* deterministic: g_t = C if t mod 3 == 1 else -1 (C = 3). The mean gradient (C - 2)/3 > 0, so
  the best point is x = -1; with rho = 1/(1 + C^2) RMSProp ends at x = +1, the worst point.
* stochastic: g_t = C with probability p = (1 + delta)/(C + 1), else -1 (C = 20, delta = 0.1).
  The mean gradient is delta > 0, so again x = -1 is best; RMSProp with rho = 0.9 ends near +1.

Step size alpha/sqrt(t) (a :class:`torch.optim.lr_scheduler.LambdaLR` over alpha = 1), each step
projected back onto [-1, 1]; ``rmsprop.torch.RMSprop`` with ``amsgrad=True`` (the running max
of v, Reddi et al.'s fix) converges toward -1. A sweep over rho and C shows where plain RMSProp
fails: the deterministic form only for small rho (near 1/(1 + C^2)), the stochastic one also at
the usual rho = 0.9 (Reddi et al. Theorem 3; checked by simulation in DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from ..torch import RMSprop
from ._base import Result, Progress, Table, check_steps, finish, new_figure, no_progress, seeded

NAME = "reddi"
SUMMARY = "Reddi et al.'s counterexamples: plain RMSProp ends at x=+1 (worst), amsgrad near -1"
CLAIM = (
    "On Reddi, Kale & Kumar's convex counterexamples on [-1, 1] (optimum x = -1, step alpha/sqrt(t)) "
    "plain RMSProp ends near the worst point x = +1, in the deterministic form (C = 3, "
    "rho = 1/(1+C^2)) and the stochastic one (C = 20, delta = 0.1, rho = 0.9); with amsgrad=True "
    "it ends near -1 in the deterministic form and on the optimum's side (x <= -0.4, still "
    "moving toward -1) in the stochastic one."
)
DEFAULT_STEPS = 10_000
MIN_STEPS = 1000
QUICK_STEPS = 5000  # the demo, `report --quick` and the tests
ALPHA = 1.0
DELTA = 0.1
SEEDS = 16
SWEEP_RHOS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99]
SWEEP_CS = [2.5, 3, 4, 5, 7, 10, 20, 50]
SWEEP_SEEDS = 4
SWEEP_STEPS = 3000
# thresholds on the mean x over the last 10% of steps (and over seeds)
PLAIN_AT_LEAST = 0.8
AMSGRAD_DET_AT_MOST = -0.9
AMSGRAD_STO_AT_MOST = -0.4
SETUPS = {
    "deterministic": dict(C=3.0, rho=1 / (1 + 3.0**2)),
    "stochastic": dict(C=20.0, rho=0.9),
}


def _gradients(kind: str, C: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
    """g_t for every copy; ``C`` holds each copy's C."""
    if kind == "deterministic":
        return C.clone() if t % 3 == 1 else torch.full_like(C, -1.0)
    p = (1 + DELTA) / (C + 1)
    u = torch.rand(C.shape, generator=gen, dtype=C.dtype)
    return torch.where(u < p, C, torch.full_like(C, -1.0))


def simulate(kind: str, C_per_group: list[torch.Tensor], rhos: list[float], steps: int, *,
             amsgrad: bool, seed: int, tick=lambda t: None) -> list[np.ndarray]:
    """Run one param group per rho; group i is a vector of copies with constants C_per_group[i].

    Returns the iterates x_t (steps, copies) of each group.
    """
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.zeros_like(C) for C in C_per_group]  # start in the middle, x_0 = 0
    for x in xs:
        x.grad = torch.zeros_like(x)
    opt = RMSprop([{"params": [x], "alpha": rho} for x, rho in zip(xs, rhos)], lr=ALPHA,
                  amsgrad=amsgrad)
    schedule = LambdaLR(opt, lambda s: 1.0 / np.sqrt(s + 1))  # eta_t = alpha / sqrt(t)
    paths = [np.empty((steps, x.numel())) for x in xs]
    with torch.no_grad():
        for t in range(1, steps + 1):
            for x, C in zip(xs, C_per_group):
                x.grad.copy_(_gradients(kind, C, t, gen))
            opt.step()
            schedule.step()
            for x, path in zip(xs, paths):
                x.clamp_(-1.0, 1.0)  # projection onto the feasible set
                path[t - 1] = x.numpy()
            tick(t)
    return paths


def run(seed: int = 0, steps: int | None = None, out_dir: Path = Path("."),
        progress: Progress = no_progress) -> Result:
    steps = check_steps(steps, DEFAULT_STEPS, MIN_STEPS, NAME)
    sweep_steps = min(steps, SWEEP_STEPS)
    work = 4 * steps + 2 * sweep_steps
    done = [0]

    def tick_from(base: int):
        return lambda t: progress((base + t) / work) if t % 250 == 0 else None

    runs: dict[str, dict[str, np.ndarray]] = {}
    with seeded(seed):
        for kind, setup in SETUPS.items():
            copies = 1 if kind == "deterministic" else SEEDS
            C = torch.full((copies,), setup["C"], dtype=torch.float64)
            runs[kind] = {}
            for amsgrad in (False, True):
                path = simulate(kind, [C], [setup["rho"]], steps, amsgrad=amsgrad,
                                seed=seed, tick=tick_from(done[0]))[0]
                done[0] += steps
                runs[kind]["amsgrad" if amsgrad else "plain"] = path
        sweep = {}
        for kind in SETUPS:
            copies = 1 if kind == "deterministic" else SWEEP_SEEDS
            C = torch.tensor(np.repeat(SWEEP_CS, copies), dtype=torch.float64)
            paths = simulate(kind, [C] * len(SWEEP_RHOS), SWEEP_RHOS, sweep_steps,
                             amsgrad=False, seed=seed + 1, tick=tick_from(done[0]))
            done[0] += sweep_steps
            tail = max(sweep_steps // 10, 1)
            sweep[kind] = np.array([p[-tail:].mean(0).reshape(len(SWEEP_CS), copies).mean(1)
                                    for p in paths])  # (rho, C)
    progress(1.0)

    tail = steps // 10
    final = {kind: {opt: float(path[-tail:].mean()) for opt, path in r.items()}
             for kind, r in runs.items()}
    checks = {
        "deterministic plain >= %.1f" % PLAIN_AT_LEAST: final["deterministic"]["plain"] >= PLAIN_AT_LEAST,
        "stochastic plain >= %.1f" % PLAIN_AT_LEAST: final["stochastic"]["plain"] >= PLAIN_AT_LEAST,
        "deterministic amsgrad <= %.1f" % AMSGRAD_DET_AT_MOST:
            final["deterministic"]["amsgrad"] <= AMSGRAD_DET_AT_MOST,
        "stochastic amsgrad <= %.1f" % AMSGRAD_STO_AT_MOST:
            final["stochastic"]["amsgrad"] <= AMSGRAD_STO_AT_MOST,
    }
    verdict = (
        f"final x (mean of last 10% of steps): deterministic plain {final['deterministic']['plain']:+.2f}"
        f" / amsgrad {final['deterministic']['amsgrad']:+.2f}; stochastic plain "
        f"{final['stochastic']['plain']:+.2f} / amsgrad {final['stochastic']['amsgrad']:+.2f} "
        f"(need plain >= {PLAIN_AT_LEAST}, amsgrad <= {AMSGRAD_DET_AT_MOST} det. / "
        f"{AMSGRAD_STO_AT_MOST} stoch.)"
    )
    fail_det = [(r, c) for i, r in enumerate(SWEEP_RHOS) for j, c in enumerate(SWEEP_CS)
                if sweep["deterministic"][i, j] > 0]
    fail_sto = [(r, c) for i, r in enumerate(SWEEP_RHOS) for j, c in enumerate(SWEEP_CS)
                if sweep["stochastic"][i, j] > 0]
    table = Table(
        ["problem", "C", "rho", "plain RMSProp final x", "amsgrad final x"],
        [[kind, SETUPS[kind]["C"], f"{SETUPS[kind]['rho']:.3g}", f"{final[kind]['plain']:+.3f}",
          f"{final[kind]['amsgrad']:+.3f}"] for kind in SETUPS],
        title="Reddi et al. counterexamples (optimum x = -1, worst x = +1)",
    )
    sweep_table = Table(
        ["rho \\ C"] + [f"{c:g}" for c in SWEEP_CS],
        [[f"{r:g}"] + [f"{sweep['deterministic'][i, j]:+.2f} / {sweep['stochastic'][i, j]:+.2f}"
                       for j in range(len(SWEEP_CS))] for i, r in enumerate(SWEEP_RHOS)],
        title=f"sweep: final x of plain RMSProp, deterministic / stochastic ({sweep_steps} steps)",
    )
    figures = {
        "deterministic_plain_x": final["deterministic"]["plain"],
        "deterministic_amsgrad_x": final["deterministic"]["amsgrad"],
        "stochastic_plain_x": final["stochastic"]["plain"],
        "stochastic_amsgrad_x": final["stochastic"]["amsgrad"],
        "sweep_failures_deterministic": len(fail_det),
        "sweep_failures_stochastic": len(fail_sto),
        "max_failing_rho_deterministic": max((r for r, _ in fail_det), default=None),
    }
    fig = _plot(runs, sweep, steps, sweep_steps)
    data = {"final": final, "checks": checks, "sweep_rhos": SWEEP_RHOS, "sweep_Cs": SWEEP_CS,
            "sweep_final_x": sweep,
            "paths_mean": {k: {o: p.mean(1)[:: max(steps // 2000, 1)] for o, p in r.items()}
                           for k, r in runs.items()}}
    return finish(name=NAME, claim=CLAIM, passed=all(checks.values()), verdict=verdict,
                  figures=figures, fig=fig, out_dir=out_dir, data=data, seed=seed, steps=steps,
                  tables=[table, sweep_table],
                  notes=["the deterministic counterexample fails only for small rho "
                         f"(failing cells in the sweep: rho <= {figures['max_failing_rho_deterministic']}); "
                         "the stochastic one fails at the usual rho = 0.9"])


def _plot(runs, sweep, steps, sweep_steps):
    fig, axes = new_figure(2, 2, width=6.4, height=4.4,
                           title="Reddi, Kale & Kumar (2018): RMSProp on [-1, 1], optimum x = -1")
    t = np.arange(1, steps + 1)
    colors = {"plain": "tab:red", "amsgrad": "tab:blue"}
    labels = {"plain": "RMSProp", "amsgrad": "RMSProp, amsgrad=True"}
    for ax, kind in zip(axes[0], SETUPS):
        setup = SETUPS[kind]
        for opt, path in runs[kind].items():
            mean = path.mean(1)
            ax.plot(t, mean, color=colors[opt], lw=1.2,
                    label=labels[opt] + (f" (mean of {path.shape[1]} seeds)" if path.shape[1] > 1 else ""))
            if path.shape[1] > 1:
                low, high = np.percentile(path, [25, 75], axis=1)
                ax.fill_between(t, low, high, color=colors[opt], alpha=0.15,
                                label="middle 50% of seeds" if opt == "amsgrad" else None)
        ax.axhline(-1, color="k", ls="--", lw=1, label="optimum x = -1")
        ax.set_xscale("log")
        ax.set_ylim(-1.1, 1.1)
        ax.set_xlabel("step t (log scale)")
        ax.set_ylabel("iterate x_t")
        extra = ", delta = 0.1" if kind == "stochastic" else ""
        ax.set_title(f"{kind}: C = {setup['C']:g}, rho = {setup['rho']:.3g}{extra}")
        ax.legend(fontsize=8, loc="center left")
    for ax, kind in zip(axes[1], SETUPS):
        ax.grid(False)
        im = ax.imshow(sweep[kind], cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", origin="lower")
        ax.set_xticks(range(len(SWEEP_CS)), [f"{c:g}" for c in SWEEP_CS])
        ax.set_yticks(range(len(SWEEP_RHOS)), [f"{r:g}" for r in SWEEP_RHOS])
        for i in range(len(SWEEP_RHOS)):
            for j in range(len(SWEEP_CS)):
                value = sweep[kind][i, j]
                ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(value) > 0.6 else "black")
        ax.set_xlabel("C (size of the rare gradient)")
        ax.set_ylabel("rho (alpha in torch: decay of v)")
        ax.set_title(f"{kind}, plain RMSProp: final x after {sweep_steps} steps\n"
                     "(red = ends at the worst point +1, blue = optimum -1)", fontsize=10)
        fig.colorbar(im, ax=ax, label="final x")
    return fig
