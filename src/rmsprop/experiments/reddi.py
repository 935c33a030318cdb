"""Reddi, Kale & Kumar (ICLR 2018): RMSProp can converge to the worst point of a convex problem.

The online problems on the feasible set [-1, 1], each step t = 1, 2, ... with loss
f_t(x) = g_t * x, so the gradient is g_t:

* deterministic: g_t = C if t mod 3 == 1 else -1 (C = 3). The mean gradient (C - 2)/3 > 0, so
  the best point is x = -1; with rho = 1/(1 + C^2) RMSProp ends at x = +1, the worst point.
* stochastic: g_t = C with probability p = (1 + delta)/(C + 1), else -1 (C = 20, delta = 0.1).
  The mean gradient is delta > 0, so again x = -1 is best; RMSProp with rho = 0.9.

Step size alpha/sqrt(t) (a :class:`torch.optim.lr_scheduler.LambdaLR` over alpha = 1), each step
projected back onto [-1, 1]; ``rmsprop.torch.RMSprop`` with ``amsgrad=True`` (Reddi et al.'s
fix) is shown beside it, and ``torch.optim.Adam`` (betas 0.9 and the same rho) on the
stochastic form, for "a deficiency it shares with Adam". A sweep over rho and C shows where plain RMSProp fails. The figure is
the mean iterate over the last 10 % of steps (per seed in the stochastic form).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from ..torch import RMSprop
from ._base import Table, new_figure
from ._protocol import Config, Criterion, Measurement, Spec, interval

ALPHA = 1.0
DELTA = 0.1
SWEEP_RHOS = [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]
SWEEP_CS = [2.5, 3, 5, 10, 20, 50]
SWEEP_SEEDS = 4
SWEEP_STEPS = 3000
ADAM_BETA1 = 0.9  # Adam's default; beta2 is the RMSProp arm's rho
SETUPS = {
    "deterministic": dict(C=3.0, rho=1 / (1 + 3.0**2)),
    "stochastic": dict(C=20.0, rho=0.9),
}
SPEC = Spec(
    name="reddi",
    summary="Reddi et al.'s convex counterexamples: where plain RMSProp ends on [-1, 1] "
            "(optimum -1)",
    section="Limitations",
    claim="The algorithm has no convergence guarantees on non-convex objectives stronger than "
          "those for SGD, and on some convex problems it has been shown to fail to converge to "
          "a stationary point even in the limit of infinite samples, a deficiency it shares "
          "with Adam.",
    hypothesis="On Reddi et al.'s counterexamples (optimum x = -1), plain RMSProp's mean "
               "iterate over the last 10% of steps ends on the wrong half of [-1, 1] (x > 0), "
               "in the deterministic form (C = 3, rho = 0.1) and in the stochastic one "
               "(C = 20, delta = 0.1, the usual rho = 0.9), over seeds; and so does Adam "
               "(beta1 0.9, beta2 = the same rho 0.9) on the stochastic one.",
    criteria=(
        Criterion("deterministic_plain_x", ">", 0.0,
                  "x > 0 is closer to the worst point +1 than to the optimum -1"),
        Criterion("stochastic_plain_x", ">", 0.0,
                  "x > 0 is closer to the worst point +1 than to the optimum -1"),
        Criterion("stochastic_adam_x", ">", 0.0,
                  "'shares with Adam': Adam too ends closer to +1 than to -1"),
    ),
    n_seeds=8, quick_seeds=3, default_steps=10_000, min_steps=1000, quick_steps=3000,
)


def _gradients(kind: str, C: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
    """g_t for every copy; ``C`` holds each copy's C."""
    if kind == "deterministic":
        return C.clone() if t % 3 == 1 else torch.full_like(C, -1.0)
    p = (1 + DELTA) / (C + 1)
    u = torch.rand(C.shape, generator=gen, dtype=C.dtype)
    return torch.where(u < p, C, torch.full_like(C, -1.0))


def simulate_runs(kind: str, C_per_group: list[torch.Tensor], rhos: list[float], steps: int, *,
             amsgrad: bool, seed: int, tick=lambda t: None, adam_beta1: float | None = None,
             ) -> list[np.ndarray]:
    """Run one param group per rho; group i is a vector of copies with constants C_per_group[i].
    With ``adam_beta1``, ``torch.optim.Adam`` with betas (adam_beta1, rho) instead of RMSProp
    (the same gradients, as the same generator is drawn in the same order).

    Returns the iterates x_t (steps, copies) of each group.
    """
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.zeros_like(C) for C in C_per_group]  # start in the middle, x_0 = 0
    grads = [torch.zeros_like(x) for x in xs]
    for x, g in zip(xs, grads):
        x.grad = g
    opt: torch.optim.Optimizer
    if adam_beta1 is None:
        opt = RMSprop([{"params": [x], "alpha": rho} for x, rho in zip(xs, rhos)], lr=ALPHA,
                      amsgrad=amsgrad)
    else:
        opt = torch.optim.Adam([{"params": [x], "betas": (adam_beta1, rho)}
                                for x, rho in zip(xs, rhos)], lr=ALPHA)
    schedule = LambdaLR(opt, lambda s: 1.0 / np.sqrt(s + 1))  # eta_t = alpha / sqrt(t)
    paths = [np.empty((steps, x.numel())) for x in xs]
    with torch.no_grad():
        for t in range(1, steps + 1):
            for g, C in zip(grads, C_per_group):
                g.copy_(_gradients(kind, C, t, gen))
            opt.step()
            schedule.step()
            for x, path in zip(xs, paths):
                x.clamp_(-1.0, 1.0)  # projection onto the feasible set
                path[t - 1] = x.numpy()
            tick(t)
    return paths


def simulate(cfg: Config, progress):
    runs: dict[str, dict[str, np.ndarray]] = {}
    seed = cfg.seeds[0]
    k = 0
    for kind, setup in SETUPS.items():
        copies = 1 if kind == "deterministic" else len(cfg.seeds)
        C = torch.full((copies,), setup["C"], dtype=torch.float64)
        runs[kind] = {}
        for amsgrad in (False, True):
            runs[kind]["amsgrad" if amsgrad else "plain"] = simulate_runs(
                kind, [C], [setup["rho"]], cfg.steps, amsgrad=amsgrad, seed=seed)[0]
            k += 1
            progress(k / 7)
        if kind == "stochastic":
            runs[kind]["adam"] = simulate_runs(kind, [C], [setup["rho"]], cfg.steps,
                                               amsgrad=False, seed=seed, adam_beta1=ADAM_BETA1)[0]
    sweep_steps = min(cfg.steps, SWEEP_STEPS)
    sweep = {}
    for kind in SETUPS:
        copies = 1 if kind == "deterministic" else SWEEP_SEEDS
        C = torch.tensor(np.repeat(SWEEP_CS, copies), dtype=torch.float64)
        paths = simulate_runs(kind, [C] * len(SWEEP_RHOS), SWEEP_RHOS, sweep_steps,
                              amsgrad=False, seed=seed + 1)
        tail = max(sweep_steps // 10, 1)
        sweep[kind] = np.array([p[-tail:].mean(0).reshape(len(SWEEP_CS), copies).mean(1)
                                for p in paths])  # (rho, C)
        k += 1
        progress(k / 7)
    return {"runs": runs, "sweep": sweep, "sweep_steps": sweep_steps}


def measure(raw, cfg: Config) -> Measurement:
    tail = cfg.steps // 10
    final = {kind: {o: path[-tail:].mean(0) for o, path in r.items()}
             for kind, r in raw["runs"].items()}  # per seed
    figures = {f"{kind}_{o}_x": interval(v) for kind, r in final.items() for o, v in r.items()}
    sweep = raw["sweep"]
    fails = {kind: [(r, c) for i, r in enumerate(SWEEP_RHOS) for j, c in enumerate(SWEEP_CS)
                    if sweep[kind][i, j] > 0] for kind in SETUPS}
    table = Table(["problem", "C", "rho", "plain RMSProp final x", "amsgrad final x"],
                  [[kind, SETUPS[kind]["C"], f"{SETUPS[kind]['rho']:.3g}",
                    figures[f"{kind}_plain_x"].text("+.3f"),
                    figures[f"{kind}_amsgrad_x"].text("+.3f")] for kind in SETUPS],
                  title="Reddi et al. counterexamples (optimum x = -1, worst x = +1)")
    sweep_table = Table(
        ["rho \\ C"] + [f"{c:g}" for c in SWEEP_CS],
        [[f"{r:g}"] + [f"{sweep['deterministic'][i, j]:+.2f} / {sweep['stochastic'][i, j]:+.2f}"
                       for j in range(len(SWEEP_CS))] for i, r in enumerate(SWEEP_RHOS)],
        title=f"sweep: final x of plain RMSProp, deterministic / stochastic "
              f"({raw['sweep_steps']} steps)")
    notes = [f"the deterministic form fails (x > 0) in {len(fails['deterministic'])} of "
             f"{sweep['deterministic'].size} sweep cells, only for rho <= "
             f"{max((r for r, _ in fails['deterministic']), default=None)}; the stochastic form "
             f"in {len(fails['stochastic'])}",
             f"Adam (betas {ADAM_BETA1}, 0.9) on the stochastic form: "
             f"{figures['stochastic_adam_x'].text('+.3f')}"]
    return Measurement(figures=figures, tables=[table, sweep_table], notes=notes,
                       data={"sweep_rhos": SWEEP_RHOS, "sweep_Cs": SWEEP_CS, "sweep": sweep})


def plot(raw, m: Measurement, cfg: Config):
    return _plot(raw["runs"], raw["sweep"], cfg.steps, raw["sweep_steps"])


def _plot(runs, sweep, steps, sweep_steps):
    fig, axes = new_figure(2, 2, width=6.4, height=4.4,
                           title="Reddi, Kale & Kumar (2018): RMSProp on [-1, 1], optimum x = -1")
    t = np.arange(1, steps + 1)
    colors = {"plain": "tab:red", "amsgrad": "tab:blue", "adam": "tab:orange"}
    labels = {"plain": "RMSProp", "amsgrad": "RMSProp, amsgrad=True",
              "adam": f"Adam, betas ({ADAM_BETA1}, rho)"}
    for ax, kind in zip(axes[0], SETUPS):
        setup = SETUPS[kind]
        for opt, path in runs[kind].items():
            mean = path.mean(1)
            ax.plot(t, mean, color=colors[opt], lw=1.2,
                    label=labels[opt] + (f" (mean of {path.shape[1]} seeds)" if path.shape[1] > 1 else ""))
            if path.shape[1] > 1:
                low, high = np.percentile(path, [25, 75], axis=1)
                ax.fill_between(t, low, high, color=colors[opt], alpha=0.15,
                                label=f"{labels[opt]}: middle 50% of seeds")
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
