"""Lean optimizer state: memory, step time and final loss of 8-bit state, ours against peers.

For each parameter layout and option set, in one run:

* **memory**: optimizer-state bytes per parameter, the sum of ``nbytes`` of every tensor in
  ``optimizer.state`` (codes, scales, float32 leftovers, step counters; bitsandbytes' code
  map included) over the number of parameters;
* **speed**: the median time of ``optimizer.step()``, interleaved (every round times each
  contender once, in a rotating order, after warm-up rounds), in several passes over all the
  cases (``--passes``), so that a burst of other work on the machine spoils one pass of a case
  rather than the whole of it;
* **final loss**: the digits MLP of ``tests/state8bit_tasks.py`` (full batch, 300 steps, two
  seeds), trained with each contender.

Contenders: ``rmsprop.torch.RMSprop`` with float32 state (``impl="fused"``), 8-bit state
(``state_precision="8bit"``: stochastic rounding; also with ``min_8bit_size=0`` and with
rounding to nearest for the loss), bfloat16 state; ``bitsandbytes.optim.RMSprop8bit`` (and,
for the loss, ``torch.optim.RMSprop``). bitsandbytes 0.50.2 ignores ``momentum`` (its rows are
marked) and refuses ``centered``.

The figure that matters is printed last: our 8-bit step time over our float32 fused step time
(target <= 1.5), as the ratio of the medians and as the median over rounds of the ratio of the
two steps timed back to back in a round (steadier where other work shares the cores).

Run: ``python benchmarks/state_8bit.py`` (``--help`` for the options; ``--json`` keeps every
number).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from rmsprop.torch import RMSprop  # noqa: E402
from rmsprop.torch.lean import kernel_cpu  # noqa: E402

LAYOUTS: dict[str, list[tuple[int, ...]]] = {
    "1x4M": [(4_000_000,)],
    "16x250k": [(250_000,)] * 16,
    "transformer-4M": [(4096, 256)] + [
        shape for _ in range(4) for shape in
        [(256,), (256,), (768, 256), (768,), (256, 256), (256,),
         (256,), (256,), (1024, 256), (1024,), (256, 1024), (256,)]
    ] + [(256,), (256,)],
}
"""Parameter layouts: one large tensor; 16 x 250k; a GPT-like mix (4.2M parameters in 51
tensors, a third of them under 4096 elements: those keep float32 state in both 8-bit
optimizers)."""

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "centered+momentum": {"momentum": 0.9, "centered": True},
}


def _bnb():
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    with contextlib.redirect_stderr(None), contextlib.redirect_stdout(None):
        import bitsandbytes

    return bitsandbytes


def optimizers(options: dict[str, Any]) -> dict[str, Callable[[Any, float], Any]]:
    """name -> make(params, lr), for the speed and memory table."""
    makers = {
        "ours-fp32": lambda ps, lr: RMSprop(ps, lr=lr, impl="fused", **options),
        "ours-8bit": lambda ps, lr: RMSprop(ps, lr=lr, state_precision="8bit", **options),
        "ours-bf16": lambda ps, lr: RMSprop(ps, lr=lr, state_precision="bf16", **options),
    }
    bnb = _bnb()
    if bnb is not None:
        makers["bnb-8bit"] = lambda ps, lr: bnb.optim.RMSprop8bit(ps, lr=lr, **options)
    return makers


def note_of(name: str, options: dict[str, Any]) -> str:
    if name.startswith("bnb") and options.get("momentum", 0) > 0:
        return "ignores momentum"
    return ""


def state_bytes_per_param(optimizer: Any, params: list[torch.Tensor]) -> float:
    total = 0
    for p in params:
        for value in optimizer.state[p].values():
            if torch.is_tensor(value):
                total += value.nbytes
    return total / sum(p.numel() for p in params)


def time_case(shapes, options, repeats: int, warmup: int) -> list[dict[str, Any]]:
    rows, runs = [], []
    for name, make in optimizers(options).items():
        generator = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        try:
            opt = make(params, 1e-3)
            opt.step()
        except Exception as error:  # bitsandbytes refuses centered
            rows.append({"name": name, "skipped": f"{type(error).__name__}: {error}"})
            continue
        runs.append((name, opt, params, []))
    for _ in range(warmup):
        for _, opt, _, _ in runs:
            opt.step()
    for r in range(repeats):
        order = runs[r % len(runs):] + runs[: r % len(runs)]
        for _, opt, _, times in order:
            start = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - start)
    for name, opt, params, times in runs:
        rows.append({
            "name": name,
            "ms": 1e3 * statistics.median(times),
            "ms_min": 1e3 * min(times),
            "times_ms": [1e3 * t for t in times],
            "bytes_per_param": state_bytes_per_param(opt, params),
            "note": note_of(name, options),
        })
    return rows


def merge_passes(passes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of one case timed in several passes, as one: the times pooled, the median and
    minimum over all of them, and each pass's own median kept (``ms_per_pass``)."""
    merged = []
    for rows in zip(*passes):
        first = rows[0]
        if "skipped" in first:
            merged.append(first)
            continue
        times = [t for r in rows for t in r["times_ms"]]
        merged.append({**first, "ms": statistics.median(times), "ms_min": min(times),
                       "times_ms": times, "ms_per_pass": [r["ms"] for r in rows]})
    return merged


def paired_ratio(rows: list[dict[str, Any]]) -> float:
    """The median over rounds of (our 8-bit step / our float32 step), the two timed in the same
    round."""
    ours8 = next(r for r in rows if r["name"] == "ours-8bit")
    ours32 = next(r for r in rows if r["name"] == "ours-fp32")
    return statistics.median(a / b for a, b in zip(ours8["times_ms"], ours32["times_ms"]))


def loss_makers(options: dict[str, Any]) -> dict[str, Callable[[Any, float], Any]]:
    makers = {
        "torch.optim": lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, **options),
        **optimizers(options),
        "ours-8bit-all": lambda ps, lr: RMSprop(ps, lr=lr, state_precision="8bit",
                                                min_8bit_size=0, **options),
        "ours-8bit-all-nearest": lambda ps, lr: RMSprop(ps, lr=lr, state_precision="8bit",
                                                        min_8bit_size=0, **options),
    }
    return makers


@contextlib.contextmanager
def rounding_to_nearest():
    """Run the 8-bit kernel with rounding to nearest instead of stochastic rounding."""
    original = kernel_cpu.step_lean
    kernel_cpu.step_lean = functools.partial(original, stochastic=False)
    try:
        yield
    finally:
        kernel_cpu.step_lean = original


def final_losses(config: str, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    from state8bit_tasks import TASKS, train

    options = CONFIGS[config]
    task = TASKS["digits"]
    rows = []
    for name, make in loss_makers(options).items():
        nearest = name.endswith("nearest")
        losses = []
        try:
            with rounding_to_nearest() if nearest else contextlib.nullcontext():
                for seed in seeds:
                    losses.append(train(task, seed, make, momentum="momentum" in options)[0])
        except Exception as error:
            rows.append({"name": name, "skipped": f"{type(error).__name__}: {error}"})
            continue
        rows.append({"name": name, "loss": statistics.mean(losses), "losses": losses,
                     "note": note_of(name, options)})
    return rows


def _minifloat(exponent_bits: int, mantissa_bits: int) -> "np.ndarray":
    from rmsprop.torch.lean.codes import CodeFormat

    book = CodeFormat("study", exponent_bits, mantissa_bits, False).codebook
    return np.sort(book / book.max())


def _dynamic_tree() -> "np.ndarray":
    """Dettmers' unsigned dynamic tree code (arXiv:1511.04561, as bitsandbytes builds it):
    decade k below the top holds 2**(7-k) linear steps."""
    values = [0.0, 1.0]
    for k in range(7):
        steps = 2 ** (7 - k)
        edges = np.linspace(0.1, 1.0, steps + 1)
        values += list(10.0 ** -k * (edges[:-1] + edges[1:]) / 2)
    return np.sort(np.unique(values))[:256]


def _nearest(values: "np.ndarray", book: "np.ndarray") -> "np.ndarray":
    """Block-wise absmax scaling, then each value to the nearest code of ``book`` (in [0, 1])."""
    n = values.size
    padded = np.pad(np.abs(values), (0, -n % 256)).reshape(-1, 256)
    scale = padded.max(axis=1, keepdims=True)
    y = np.divide(padded, scale, out=np.zeros_like(padded), where=scale > 0)
    hi = np.clip(np.searchsorted(book, y), 1, book.size - 1)
    lo = hi - 1
    q = np.where(y - book[lo] <= book[hi] - y, book[lo], book[hi])
    return (q * scale).reshape(-1)[:n] * np.sign(values)


def code_study() -> list[dict[str, Any]]:
    """Round-trip error of candidate codes on the v of trained models (the digits MLP, the
    character GRU, float32 state, momentum, centered): the relative error of sqrt(v), which is
    what the step divides by, rounding to nearest."""
    from state8bit_tasks import TASKS, train

    vs = []
    for name in ("digits", "chars"):
        _, model, opt, _ = train(TASKS[name], 0, lambda ps, lr: RMSprop(
            ps, lr=lr, momentum=0.9, centered=True), momentum=True)
        for p in model.parameters():
            if p.numel() >= 4096:
                v = opt.state[p]["square_avg"].double().reshape(-1).numpy()
                gbar = opt.state[p]["grad_avg"].double().reshape(-1).numpy()
                vs.append((v, np.maximum(v - gbar * gbar, 0)))
    codes = {
        "E5M3 (ours)": (_minifloat(5, 3), False),
        "E4M4": (_minifloat(4, 4), False),
        "E3M5": (_minifloat(3, 5), False),
        "dynamic tree": (_dynamic_tree(), False),
        "linear": (np.linspace(0, 1, 256), False),
        "E4M4 of sqrt(v)": (_minifloat(4, 4), True),
    }
    rows = []
    for label, (book, of_sqrt) in codes.items():
        for what, index in (("v", 0), ("v - gbar^2", 1)):
            errors = []
            for pair in vs:
                x = pair[index]
                root = np.sqrt(x)
                back = _nearest(root, book) if of_sqrt else np.sqrt(_nearest(x, book))
                keep = root > 0
                errors.append(np.abs(back[keep] / root[keep] - 1))
            e = np.concatenate(errors)
            rows.append({"code": label, "of": what, "median": float(np.median(e)),
                         "p99": float(np.quantile(e, 0.99)), "lost": float(np.mean(e >= 0.5))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=20, help="rounds per pass")
    parser.add_argument("--passes", type=int, default=3,
                        help="passes over all the cases; the rounds of every pass are pooled")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (the fused kernels follow it)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--no-loss", action="store_true", help="skip the training runs")
    parser.add_argument("--no-codes", action="store_true", help="skip the code study")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "speed": [], "loss": []}
    ratios = []
    cases = [(layout, config) for layout in args.layouts.split(",")
             for config in args.configs.split(",")]
    timed: dict[tuple[str, str], list[list[dict[str, Any]]]] = {case: [] for case in cases}
    for _ in range(args.passes):
        for layout, config in cases:
            timed[layout, config].append(
                time_case(LAYOUTS[layout], CONFIGS[config], args.repeats, args.warmup))
    for layout, config in cases:
        rows = merge_passes(timed[layout, config])
        results["speed"].append({"layout": layout, "config": config, "rows": rows})
        print(f"\n{layout}, {config}")
        base = next(r["ms"] for r in rows if r["name"] == "ours-fp32")
        for r in rows:
            if "skipped" in r:
                print(f"  {r['name']:<10} skipped ({r['skipped'][:70]})")
                continue
            print(f"  {r['name']:<10} {r['ms']:8.2f} ms (min {r['ms_min']:7.2f})"
                  f"  {r['ms'] / base:5.2f}x fp32  {r['bytes_per_param']:6.3f} B/param"
                  f"  {r['note']}")
        ours8 = next(r for r in rows if r["name"] == "ours-8bit")
        per_pass = [paired_ratio(pass_rows) for pass_rows in timed[layout, config]]
        ratios.append((layout, config, ours8["ms"] / base, paired_ratio(rows), per_pass))
    if not args.no_loss:
        seeds = tuple(range(args.seeds))
        for config in ("plain", "momentum", "centered+momentum"):
            rows = final_losses(config, seeds)
            results["loss"].append({"config": config, "rows": rows})
            print(f"\nfinal loss, digits MLP, {config} (mean of {len(seeds)} seeds)")
            base = next(r["loss"] for r in rows if r["name"] == "ours-fp32")
            for r in rows:
                if "skipped" in r:
                    print(f"  {r['name']:<22} skipped ({r['skipped'][:60]})")
                    continue
                print(f"  {r['name']:<22} {r['loss']:.5f}  {100 * (r['loss'] / base - 1):+7.2f}%"
                      f" vs ours-fp32  {r['note']}")
    if not args.no_codes:
        rows = code_study()
        results["codes"] = rows
        print("\ncode study: relative error of sqrt(v) after a round trip, rounding to nearest,"
              "\nblocks of 256 (v of the trained MLP and GRU; 'lost': error >= 50 %)")
        for r in rows:
            print(f"  {r['code']:<16} {r['of']:<11} median {100 * r['median']:6.2f} %"
                  f"  p99 {100 * r['p99']:7.2f} %  lost {100 * r['lost']:5.2f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\nours 8-bit step time / ours float32 fused step time (target <= 1.5):"
          "\n  ratio of the medians, and the median of the ratios within each round (the two"
          "\n  steps timed back to back: the steadier figure on a shared machine), over all"
          f"\n  {args.passes} passes and (in brackets) in each pass")
    for layout, config, ratio, paired, per_pass in ratios:
        passes = " ".join(f"{x:.2f}" for x in per_pass)
        print(f"  {layout:<15} {config:<18} {ratio:5.2f}x   paired {paired:5.2f}x  ({passes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
