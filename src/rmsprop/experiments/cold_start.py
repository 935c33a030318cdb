"""Resuming from a checkpoint with and without the optimizer state, at rho 0.9 and 0.99.

An MLP on scikit-learn's digits is trained with ``rmsprop.torch.RMSprop`` (lr 1e-3, eps 1e-8)
for 3/4 of the steps, checkpointed, then resumed on the same minibatches with the optimizer
state (``load_state_dict``), with the parameters only (a fresh optimizer, v = 0), and with the
parameters only plus ``optimizer.warm_start(closure, steps=20)``. Per seed: the largest
full-training-set loss in the 20 steps after the resume, relative to a full resume's. The
first update's size (about 1/sqrt(1 - rho) times larger with v = 0, by the update rule) is a
sanity check, not the verdict.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ..torch import RMSprop
from ._base import Table, new_figure
from ._digits import batches, digits_split, mlp
from ._plots import band
from ._protocol import Config, Criterion, Measurement, Spec, interval

LR = 1e-3
BATCH = 64
WINDOW = 20
GUARD_STEPS = 20
RHOS = (0.9, 0.99)
WAYS = ("with optimizer state", "parameters only", "parameters only + warm_start")
SPEC = Spec(
    name="cold-start",
    summary="resume with vs without optimizer state (rho 0.9 and 0.99): loss after the resume",
    section="Training and Inference",
    claim="Restoring only the parameters effectively resets the squared-gradient estimate to "
          "zero, which causes the first few updates to be excessively large and can destabilize "
          "training on a cold start.",
    hypothesis="At the article's rho = 0.9, the highest training loss in the 20 steps after a "
               "parameters-only resume exceeds that after a full resume by more than 10%: "
               "the ratio, paired per seed, > 1.1.",
    criteria=(Criterion("spike_ratio_rho_0.9", ">", 1.1,
                        "a 10% higher loss excursion is a visible destabilisation, above the "
                        "minibatch-to-minibatch wiggle of the full-set loss"),),
    n_seeds=5, quick_seeds=2, default_steps=800, min_steps=200, quick_steps=300,
)
COLORS = dict(zip(WAYS, ("tab:blue", "tab:red", "tab:green")))


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _one(seed: int, rho: float, steps: int):
    x, y, _, _ = digits_split()
    loss_fn = nn.functional.cross_entropy
    resume_at = steps * 3 // 4
    torch.manual_seed(seed)
    model = mlp()
    order = batches(len(x), BATCH, steps, torch.Generator().manual_seed(seed))
    opt = RMSprop(model.parameters(), lr=LR, alpha=rho, eps=1e-8)
    for t in range(resume_at):
        opt.zero_grad()
        loss_fn(model(x[order[t]]), y[order[t]]).backward()
        opt.step()
    params, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    with torch.no_grad():
        ckpt = loss_fn(model(x), y).item()
    out = {}
    for way in WAYS:
        model.load_state_dict(params)
        opt = RMSprop(model.parameters(), lr=LR, alpha=rho, eps=1e-8)
        if way == WAYS[0]:
            opt.load_state_dict(state)
        elif way == WAYS[2]:
            feed = iter(batches(len(x), BATCH, GUARD_STEPS, torch.Generator().manual_seed(seed + 1)))

            def closure():
                idx = next(feed)
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                return loss

            opt.warm_start(closure, steps=GUARD_STEPS)
        losses, updates = [], []
        for t in range(resume_at, steps):
            before = _flat(model)
            opt.zero_grad()
            loss_fn(model(x[order[t]]), y[order[t]]).backward()
            opt.step()
            updates.append((_flat(model) - before).norm().item())
            with torch.no_grad():
                losses.append(loss_fn(model(x), y).item())
        out[way] = {"loss": np.array(losses), "update": np.array(updates)}
    return ckpt, out


def simulate(cfg: Config, progress):
    raw: dict[str, dict[float, Any]] = {"checkpoint_loss": {}, "runs": {}}
    k = 0
    for rho in RHOS:
        ckpts, runs = [], []
        for seed in cfg.seeds:
            ckpt, out = _one(seed, rho, cfg.steps)
            ckpts.append(ckpt)
            runs.append(out)
            k += 1
            progress(k / (len(RHOS) * len(cfg.seeds)))
        raw["checkpoint_loss"][rho] = np.array(ckpts)
        raw["runs"][rho] = {w: {key: np.array([r[w][key] for r in runs]) for key in ("loss", "update")}
                            for w in WAYS}
    return raw


def measure(raw, cfg: Config) -> Measurement:
    figures, rows, sanity = {}, [], {}
    for rho in RHOS:
        runs = raw["runs"][rho]
        peak = {w: runs[w]["loss"][:, :WINDOW].max(1) for w in WAYS}
        ratio = peak[WAYS[1]] / peak[WAYS[0]]
        figures[f"spike_ratio_rho_{rho}"] = interval(ratio)
        figures[f"guard_spike_ratio_rho_{rho}"] = interval(peak[WAYS[2]] / peak[WAYS[0]])
        first = runs[WAYS[1]]["update"][:, 0] / runs[WAYS[0]]["update"][:, 0]
        figures[f"first_update_ratio_rho_{rho}"] = interval(first)
        sanity[f"rho {rho}: first params-only update larger than a full resume's"] = bool(
            np.all(first > 1))
        for w in WAYS:
            rows.append([rho, w, interval(peak[w] / raw["checkpoint_loss"][rho]).text(".3f"),
                         interval(runs[w]["update"][:, 0]).text(".3g"),
                         interval(runs[w]["loss"][:, -1]).text(".3f")])
    table = Table(["rho", "resume", f"max loss in {WINDOW} steps / checkpoint loss",
                   "first update norm", "loss at the end"], rows,
                  title=f"resume at step {cfg.steps * 3 // 4}, lr {LR:g}")
    notes = [f"rho 0.99 (torch's default): spike ratio {figures['spike_ratio_rho_0.99'].text()} "
             f"vs {figures['spike_ratio_rho_0.9'].text()} at the article's 0.9; the judged "
             "figure is the article's default"]
    return Measurement(figures=figures, sanity=sanity, tables=[table], notes=notes)


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.5,
                           title=f"Cold start: full-set training loss after resuming at step "
                                 f"{cfg.steps * 3 // 4} (MLP on digits, lr {LR:g})")
    for ax, rho in zip(axes[0], RHOS):
        t = np.arange(1, cfg.steps - cfg.steps * 3 // 4 + 1)
        for w in WAYS:  # warm_start ends close to the full resume: dashed, so both show
            band(ax, t, raw["runs"][rho][w]["loss"], COLORS[w], w, ls="--" if w == WAYS[2] else "-")
        ax.axhline(raw["checkpoint_loss"][rho].mean(), color="k", ls=":", lw=1,
                   label="loss at the checkpoint (mean)")
        ax.axvline(WINDOW, color="0.5", ls="--", lw=0.8, label=f"window of {WINDOW} steps")
        ax.set_xlabel("steps after the resume")
        ax.set_ylabel("training loss, full training set (nats)")
        ax.set_title(f"rho = {rho}", fontsize=10)
        ax.legend(fontsize=7)
    return fig
