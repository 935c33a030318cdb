"""eps outside the root, sqrt(v) + eps (torch, the article), vs inside, sqrt(v + eps) (TensorFlow).

Softmax regression on scikit-learn's digits (64 pixels + a bias, 10 classes, minibatch 64),
trained with the library's float64 update at the article's defaults (lr 1e-3, rho 0.9,
eps 1e-8), once per placement of eps, per seed from the same initial weights on the same
minibatches. Along the eps-outside run, at every step, the update the other placement would make
from the same v and g is compared: the gap 1 - |g / sqrt(v + eps)| / |g / (sqrt(v) + eps)|.
Measured: that gap early (the first 10 steps) minus late (the last 10 % of steps), and the
final training losses of the two runs.
"""

from __future__ import annotations

import numpy as np

from ..spec import resolve
from ..update import init_state, rmsprop_update
from ._base import Table, new_figure
from ._digits import digits_split
from ._plots import band
from ._protocol import Config, Criterion, Measurement, Spec, interval

BATCH = 64
EARLY = 10
EVAL_EVERY = 10  # the full-set loss curve (the judged figures use every step)
OUTSIDE = resolve("pytorch", lr=1e-3, alpha=0.9, eps=1e-8)
INSIDE = OUTSIDE.replace(eps_in_sqrt=True)
SPEC = Spec(
    name="eps-placement",
    summary="eps inside vs outside the square root: where the updates differ, and the outcome",
    section="Formulation",
    claim="A common alternative writes the denominator as $ \\sqrt{v_t + \\epsilon} $, with "
          "$ \\epsilon $ inside the square root rather than added afterward; this is the form used "
          "in TensorFlow and gives slightly different numerical behavior near the start of "
          "training but is otherwise equivalent in spirit.",
    hypothesis="At the article's defaults on softmax regression, the relative gap between the "
               "two placements' updates is larger in the first 10 steps than in the last 10% "
               "(early minus late > 0), and the final training losses differ by less than 2%.",
    criteria=(
        Criterion("early_minus_late_update_gap", ">", 0.0,
                  "'near the start of training': the difference must be concentrated early"),
        Criterion("final_loss_rel_diff", "<", 0.02,
                  "'otherwise equivalent': final losses within 2%"),
    ),
    n_seeds=5, quick_seeds=2, default_steps=1000, min_steps=100, quick_steps=300,
)


def _softmax_grad(W, x, y):
    logits = x @ W
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-300).mean()
    p[np.arange(len(y)), y] -= 1
    return loss, x.T @ p / len(y)


def simulate(cfg: Config, progress):
    x_t, y_t, _, _ = digits_split()
    x = np.hstack([x_t.numpy().astype(np.float64), np.ones((len(x_t), 1))])
    y = y_t.numpy()
    gap = np.zeros((len(cfg.seeds), cfg.steps))
    final = {"outside": np.zeros(len(cfg.seeds)), "inside": np.zeros(len(cfg.seeds))}
    evals = list(range(0, cfg.steps, EVAL_EVERY)) + [cfg.steps]
    curves = {"outside": np.zeros((len(cfg.seeds), len(evals))),
              "inside": np.zeros((len(cfg.seeds), len(evals)))}
    for j, seed in enumerate(cfg.seeds):
        rng = np.random.default_rng(seed)
        W0 = 0.01 * rng.standard_normal((65, 10))
        order = [rng.choice(len(x), BATCH, replace=False) for _ in range(cfg.steps)]
        for name, spec in (("outside", OUTSIDE), ("inside", INSIDE)):
            W, state = W0.copy(), init_state(W0, spec, np)
            for t in range(cfg.steps):
                if t % EVAL_EVERY == 0:
                    curves[name][j, t // EVAL_EVERY] = _softmax_grad(W, x, y)[0]
                _, g = _softmax_grad(W, x[order[t]], y[order[t]])
                W, state = rmsprop_update(np, W, g, state, spec, spec.lr, t + 1)
                if name == "outside":
                    v = state["square_avg"]
                    out = np.linalg.norm(g / (np.sqrt(v) + spec.eps))
                    ins = np.linalg.norm(g / np.sqrt(v + spec.eps))
                    gap[j, t] = 1 - ins / out if out > 0 else 0.0
            curves[name][j, -1] = _softmax_grad(W, x, y)[0]
            final[name][j] = curves[name][j, -1]
        progress((j + 1) / len(cfg.seeds))
    return {"gap": gap, "final": final, "curves": curves, "evals": evals}


def measure(raw, cfg: Config) -> Measurement:
    gap = raw["gap"]
    late = gap[:, -max(cfg.steps // 10, 1):].mean(1)
    early = gap[:, :EARLY].mean(1)
    rel = np.abs(raw["final"]["inside"] / raw["final"]["outside"] - 1)
    figures = {"early_minus_late_update_gap": interval(early - late),
               "final_loss_rel_diff": interval(rel),
               "early_update_gap": interval(early), "late_update_gap": interval(late)}
    table = Table(["figure", "mean [95%] over seeds"],
                  [["update gap, first 10 steps", figures["early_update_gap"].text()],
                   ["update gap, last 10% of steps", figures["late_update_gap"].text()],
                   ["final training loss, eps outside", interval(raw["final"]["outside"]).text(".4f")],
                   ["final training loss, eps inside", interval(raw["final"]["inside"]).text(".4f")],
                   ["|inside / outside - 1|", figures["final_loss_rel_diff"].text()]],
                  title=f"softmax regression on digits, lr 1e-3, rho 0.9, eps 1e-8, {cfg.steps} steps")
    return Measurement(figures=figures, tables=[table])


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.6,
                           title="eps inside vs outside the root (softmax regression on digits)")
    ax_gap, ax_loss = axes[0]
    t = np.arange(1, cfg.steps + 1)
    ax_gap.set_xscale("log")
    band(ax_gap, t, raw["gap"], "tab:purple", "update gap")
    ax_gap.axvspan(1, EARLY, color="tab:green", alpha=0.1, label=f"first {EARLY} steps")
    ax_gap.axvspan(cfg.steps - cfg.steps // 10, cfg.steps, color="tab:orange", alpha=0.1,
                   label="last 10% of steps")
    ax_gap.set_xlabel("step (log scale)")
    ax_gap.set_ylabel("1 - |g/sqrt(v+eps)| / |g/(sqrt(v)+eps)|")
    ax_gap.legend(fontsize=7)
    ax_loss.set_yscale("log")
    for name, color in (("outside", "tab:blue"), ("inside", "tab:red")):
        band(ax_loss, raw["evals"], raw["curves"][name], color, f"eps {name}")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("training loss, full set (nats, log)")
    ax_loss.legend(fontsize=7)
    return fig
