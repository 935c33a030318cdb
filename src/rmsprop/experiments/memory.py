"""Optimizer-state memory measured from the process, not from the optimizer's own bookkeeping.

A "model" of 2 float32 tensors of 2^20 elements each (8 MiB) gets random gradients; the
process's resident memory (``/proc/self/statm``, in a fresh interpreter) is read before the optimizer is built and after
its first step, which allocates and writes its state. The difference, in units of the model's
size, is the measured overhead (repeated per seed; the allocator's own slack is the noise). The
sum of ``nbytes`` over ``optimizer.state`` is the bookkeeping figure: a sanity check only.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..torch import RMSprop
from ._base import Table, new_figure
from ._protocol import Config, Criterion, Measurement, Spec, interval

TENSORS, ELEMENTS = 2, 2**20
OPTIMIZERS: dict[str, Callable] = {
    "SGD": lambda p: torch.optim.SGD(p, lr=1e-3),
    "AdaGrad": lambda p: torch.optim.Adagrad(p, lr=1e-3),
    "RMSProp": lambda p: RMSprop(p, lr=1e-3, alpha=0.9),
    "RMSProp momentum": lambda p: RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.9),
    "RMSProp centered": lambda p: RMSprop(p, lr=1e-3, alpha=0.9, centered=True),
    "Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    "AdaDelta": lambda p: torch.optim.Adadelta(p),
}
SPEC = Spec(
    name="memory",
    summary="optimizer-state memory measured as the process's resident-memory growth",
    section="Training and Inference",
    claim="During training, the optimizer maintains one extra tensor of the same shape as the "
          "parameters (the running average $ v_t $), so the memory overhead is roughly equal "
          "to that of the model itself.",
    hypothesis="The resident memory added by RMSProp's first step on an 8 MiB float32 model is "
               "between 0.8 and 1.25 times the model's size, at least half a model more than "
               "SGD's and at least half a model less than Adam's.",
    criteria=(
        Criterion("rmsprop_over_model", ">", 0.8, "'roughly equal': within 25% of the model"),
        Criterion("rmsprop_over_model", "<", 1.25, "'roughly equal': within 25% of the model"),
        Criterion("rmsprop_minus_sgd_over_model", ">", 0.5,
                  "'more expensive than SGD': half a model separates one tensor from none"),
        Criterion("adam_minus_rmsprop_over_model", ">", 0.5,
                  "'cheaper than Adam': half a model separates one tensor from two"),
    ),
    n_seeds=5, quick_seeds=2, default_steps=1, min_steps=1, quick_steps=1,
)


def rss_bytes() -> float:
    """Resident memory of this process (NaN where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return float("nan")


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state: every tensor in ``optimizer.state``."""
    return sum(v.nbytes for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))


def _allocations_go_back_to_the_os() -> None:
    """glibc raises its mmap threshold after large frees, so freed state would stay resident and
    the next optimizer's growth be undercounted: pin the threshold (Linux/glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB
    except (OSError, AttributeError):
        pass


def measure_in_this_process(seeds, steps: int, progress=lambda f: None) -> dict:
    """The measurement itself; :func:`simulate` runs it in a fresh interpreter."""
    _allocations_go_back_to_the_os()
    model_bytes = TENSORS * ELEMENTS * 4
    for make in OPTIMIZERS.values():  # lazy imports and caches of a first step are not state
        warm = [torch.zeros(ELEMENTS, requires_grad=True)]
        warm[0].grad = torch.ones(ELEMENTS)
        make(warm).step()
    grown: dict[str, list[float]] = {o: [] for o in OPTIMIZERS}
    booked: dict[str, list[float]] = {o: [] for o in OPTIMIZERS}
    for k, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        params = [torch.zeros(ELEMENTS, requires_grad=True) for _ in range(TENSORS)]
        for p in params:
            p.grad = torch.randn(ELEMENTS, generator=gen)
        for oname, make in OPTIMIZERS.items():
            gc.collect()
            before = rss_bytes()
            opt = make(params)
            for _ in range(steps):
                opt.step()
            grown[oname].append((rss_bytes() - before) / model_bytes)
            booked[oname].append(state_bytes(opt) / model_bytes)
            del opt
            gc.collect()
        progress((k + 1) / len(seeds))
    return {"grown": grown, "booked": booked, "model_bytes": model_bytes}


def simulate(cfg: Config, progress):
    """Measure in a fresh interpreter: a process that already ran other experiments keeps freed
    memory in its allocator and would undercount the growth (seen in a report run)."""
    code = ("import json, sys; from rmsprop.experiments.memory import measure_in_this_process; "
            f"print(json.dumps(measure_in_this_process({list(cfg.seeds)!r}, {cfg.steps})))")
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the memory measurement failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    progress(1.0)
    return {"grown": {o: np.array(v) for o, v in out["grown"].items()},
            "booked": {o: np.array(v) for o, v in out["booked"].items()},
            "model_bytes": out["model_bytes"]}


def measure(raw, cfg: Config) -> Measurement:
    g, b = raw["grown"], raw["booked"]
    figures = {
        "rmsprop_over_model": interval(g["RMSProp"]),
        "rmsprop_minus_sgd_over_model": interval(g["RMSProp"] - g["SGD"]),
        "adam_minus_rmsprop_over_model": interval(g["Adam"] - g["RMSProp"]),
        **{f"measured_{o.replace(' ', '_')}": interval(v) for o, v in g.items()},
    }
    sanity = {"bookkeeping: RMSProp's state tensors hold 1.0x the model (+ a step counter)":
              bool(np.all(np.abs(b["RMSProp"] - 1) < 1e-3)),
              "bookkeeping: Adam's state tensors hold 2.0x the model (+ a step counter)":
              bool(np.all(np.abs(b["Adam"] - 2) < 1e-3))}
    table = Table(["optimizer", "resident memory growth / model size (mean [95%])",
                   "state tensors' bytes / model size (bookkeeping)"],
                  [[o, interval(g[o]).text(".3f"), f"{b[o].mean():.3f}"] for o in OPTIMIZERS],
                  title=f"first step on a {raw['model_bytes'] / 2**20:.0f} MiB float32 model")
    return Measurement(figures=figures, sanity=sanity, tables=[table],
                       data={"grown": g, "booked": b, "model_bytes": raw["model_bytes"]})


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 1, width=8.0, height=4.6,
                           title="Optimizer state memory: resident-memory growth on the first step")
    ax = axes[0][0]
    names = list(OPTIMIZERS)
    figs = [interval(raw["grown"][o]) for o in names]
    y = np.arange(len(names))
    ax.barh(y, [f.mean for f in figs], color=[f"C{i}" for i in range(len(names))],
            xerr=np.array([[f.mean - f.low for f in figs], [f.high - f.mean for f in figs]]),
            capsize=3, label="measured growth (bars: 95% interval)")
    ax.plot([raw["booked"][o].mean() for o in names], y, "kx", ms=8,
            label="bookkeeping: bytes of the state tensors")
    ax.axvspan(0.8, 1.25, color="tab:blue", alpha=0.1, label="'roughly the model' (0.8-1.25x)")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"memory / model size ({raw['model_bytes'] / 2**20:.0f} MiB float32)")
    ax.legend(fontsize=8, loc="upper right")
    return fig
