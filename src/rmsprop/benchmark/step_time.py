"""Time per RMSProp step: ours against torch.optim.RMSprop, bitsandbytes and the memory itself.

An RMSProp step is memory-bound: for float32 parameters without momentum it must read theta,
g, v and write theta, v, 20 bytes per parameter (28 with a momentum buffer, 8 more for each
further state tensor). For each parameter layout and option set this measures, in one run and
interleaved (every repetition times each contender once, in a rotating order, after a
warm-up), the median time of ``optimizer.step()`` for:

* ``torch-loop`` and ``torch-foreach``: ``torch.optim.RMSprop(foreach=False / True)``;
* ``torch-compile`` (``--compile``): ``torch.compile(torch_opt.step)`` (compiles for ~40 s);
* ``bnb-32bit`` and ``bnb-8bit``: bitsandbytes' RMSprop, when it imports (it ignores
  ``momentum``: such rows are marked and never taken as the peers' best);
* ``rmsprop-default``: ``rmsprop.torch.RMSprop(params, ...)`` as a drop-in user writes it
  (``impl="auto"``: torch's own path for the default ``pytorch`` flavour, torch's numbers bit
  for bit);
* ``rmsprop-<impl>``: ``rmsprop.torch.RMSprop(impl=...)`` for each implementation that can
  run here (loop, foreach, fused on CPU, triton on CUDA);
* ``rmsprop-<impl>-flat``: the same with ``flat=True`` (fused and triton): the parameters,
  gradients and state as views of one buffer each, so the step is one pass over flat arrays;
* the machine's bandwidth, by triad-like kernels over arrays of the same size: ``a = b + s*c``
  with numba (``triad-numba``) and with ``torch.add(b, c, alpha=s, out=a)`` (``triad-torch``),
  counted as 3 arrays (12 bytes per element; the write-allocate read is not counted), and on
  CUDA a device-to-device copy (8 bytes per element);
* the step's own access pattern with no arithmetic (``streams-numba``, CPU, float32 and
  float64): one pass over flat arrays of the same number of elements that reads theta, g and
  each state tensor and writes theta and each state tensor (:mod:`._streams`: the five-stream
  kernel for plain RMSProp, seven with momentum), at the step's minimal byte count, over all
  numba's threads and over one (``streams-numba-1thread``: where other work shares the cores, a
  parallel pass can wait a scheduler time slice for its second thread, 10+ ms, which one thread
  never does). The faster of the two is the ceiling of the step's access pattern on this
  machine; each contender's ``of streams`` is its time over the contender's (100 % = as fast
  as moving the bytes can be).

Every contender works on arrays of its own, the ceilings too: the rotation keeps the
contenders' order, so one sharing arrays with the contender timed just before it would find
them still in cache (a last-level cache of tens of MiB holds most of the streams of a step
of a few million parameters).

It prints ms per step, GB/s at the minimal byte count, the speed-up over torch's best eager
path in the same run (the faster of loop and foreach), and the fraction of the best measured
bandwidth; the figures that matter are printed last: the default's speed and the fastest
setting's, each against torch. ``--json`` writes every number,
``--plot`` draws the speed-ups (log axis: they span decades).

A figure is flagged (:func:`flags`) when it cannot be taken at face value: ``above-ceiling``
when it moves more bytes per second than the machine's triad measured in the same run
(:data:`CEILING_MARGIN` allowed for the triad's own noise: data that stayed in cache, or a
machine busy while the triad ran), ``noisy`` when the spread of its rounds (p75 - p25) exceeds
:data:`NOISE_LIMIT` of its median (a busy machine). Flagged figures are marked in the table,
listed before the summary and in the JSON (``flags``, ``ok``); ``--strict`` exits with 1 when
any is flagged, for scripts. ``--quick`` is a short run (two small layouts, a tenth of the
size, 5 rounds) to check that everything runs.

Run: ``python -m rmsprop.benchmark.step_time`` (or ``rmsprop bench``, or
``python benchmarks/step_time.py``); ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..suggest import did_you_mean

__all__ = ["LAYOUTS", "CONFIGS", "CEILING_MARGIN", "NOISE_LIMIT", "Contender", "flags", "main",
           "measure", "minimal_bytes", "run_case", "state_count", "streams_lines"]


CEILING_MARGIN = 1.10
"""A figure above this fraction of the measured triad bandwidth is flagged ``above-ceiling``."""

NOISE_LIMIT = 0.25
"""A figure whose interquartile range exceeds this fraction of its median is flagged ``noisy``."""


def flags(result: dict[str, Any]) -> list[str]:
    """Why a contender's figures cannot be taken at face value (empty when they can)."""
    out = []
    if result["kind"] not in ("bandwidth", "ceiling") and (
            result["bandwidth_fraction"] > CEILING_MARGIN):
        out.append("above-ceiling")
    if result["p75_ms"] - result["p25_ms"] > NOISE_LIMIT * result["median_ms"]:
        out.append("noisy")
    return out


def _transformer_shapes(d: int = 512, blocks: int = 4, vocab: int = 8192) -> list[tuple]:
    """A GPT-like mix (16.8M parameters in 51 tensors): embedding, per block two LayerNorms,
    attention (qkv, projection) and MLP weights with biases, a final LayerNorm."""
    shapes: list[tuple] = [(vocab, d)]
    for _ in range(blocks):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,),
                   (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


LAYOUTS: dict[str, Callable[[], list[tuple]]] = {
    "1x16M": lambda: [(16_000_000,)],
    "64x250k": lambda: [(250_000,)] * 64,
    "2000x1k": lambda: [(1000,)] * 2000,
    "transformer": _transformer_shapes,
}
"""Parameter layouts: one large tensor; 64 x 250k; 2000 x 1k; a transformer-like mix."""

CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "centered": {"centered": True},
}
"""Option sets, as keyword arguments of torch.optim.RMSprop (and ours)."""

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
           "float16": torch.float16}


def state_count(options: dict[str, Any]) -> int:
    """The state tensors a step keeps per parameter: v, plus the momentum buffer, gbar, vmax as
    the options ask."""
    return 1 + (options.get("momentum", 0) > 0) + bool(options.get("centered")) + bool(
        options.get("amsgrad"))


def minimal_bytes(numel: int, options: dict[str, Any], param_dtype: torch.dtype,
                  state_dtype: torch.dtype) -> int:
    """The bytes a step must move: read theta and g, write theta; read and write each state
    tensor (v, plus the momentum buffer, gbar, vmax as the options ask)."""
    p, s = param_dtype.itemsize, state_dtype.itemsize
    return numel * (3 * p + 2 * s * state_count(options))


@dataclass
class Contender:
    """One thing to time: ``step()`` runs it once."""

    name: str
    kind: str  # "torch", "peer", "ours", "bandwidth" or "ceiling"
    step: Callable[[], Any]
    bytes: int
    note: str = ""
    keep: list[Any] = field(default_factory=list)  # what must stay alive while it runs


def _params(shapes: Sequence[tuple], dtype: torch.dtype, device: str, seed: int
            ) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen).to(device=device, dtype=dtype))
        p.grad = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
        params.append(p)
    return params


def _torch_contenders(shapes, options, dtype, device, bytes_, compile_step) -> list[Contender]:
    out = []
    for foreach in (False, True):
        params = _params(shapes, dtype, device, 0)
        opt = torch.optim.RMSprop(params, lr=1e-3, foreach=foreach, **options)
        name = "torch-foreach" if foreach else "torch-loop"
        out.append(Contender(name, "torch", opt.step, bytes_, keep=[params, opt]))
    if compile_step:
        params = _params(shapes, dtype, device, 0)
        opt = torch.optim.RMSprop(params, lr=1e-3, **options)
        compiled = torch.compile(opt.step)
        started = time.perf_counter()
        compiled()
        note = f"compiled in {time.perf_counter() - started:.0f} s"
        out.append(Contender("torch-compile", "peer", compiled, bytes_, note, [params, opt]))
    return out


def _bnb_contenders(shapes, options, dtype, device, bytes_) -> list[Contender]:
    if importlib.util.find_spec("bitsandbytes") is None:
        return []
    try:
        import bitsandbytes as bnb
    except Exception:  # an install that fails on import is not a peer to time
        return []
    note = "ignores momentum" if options.get("momentum", 0) > 0 else ""
    out = []
    for bits, cls in ((32, bnb.optim.RMSprop32bit), (8, bnb.optim.RMSprop8bit)):
        params = _params(shapes, dtype, device, 0)
        try:
            opt = cls(params, lr=1e-3, **options)
            opt.step()
        except Exception as error:  # e.g. no kernel for this device
            print(f"  (bnb-{bits}bit skipped: {type(error).__name__}: {error})", file=sys.stderr)
            continue
        out.append(Contender(f"bnb-{bits}bit", "peer", opt.step, bytes_, note, [params, opt]))
    return out


def _our_contenders(shapes, options, dtype, device, bytes_for) -> list[Contender]:
    from rmsprop.torch import RMSprop
    from rmsprop.torch.kernels.capabilities import state_dtype, unsupported

    params = _params(shapes, dtype, device, 0)
    opt = RMSprop(params, lr=1e-3, **options)
    default_impl = opt.impl_of(opt.param_groups[0])
    out = [Contender("rmsprop-default", "ours", opt.step,
                     bytes_for(state_dtype(default_impl, dtype)),
                     f"impl='auto' runs {default_impl}", keep=[params, opt])]
    for impl in ("loop", "foreach", "fused", "triton"):
        params = _params(shapes, dtype, device, 0)
        if unsupported(impl, params) or (impl == "triton" and device != "cuda"):
            continue
        opt = RMSprop(params, lr=1e-3, impl=impl, **options)
        bytes_ = bytes_for(state_dtype(impl, dtype))
        out.append(Contender(f"rmsprop-{impl}", "ours", opt.step, bytes_, keep=[params, opt]))
        if impl in ("fused", "triton"):  # the opt-in flat layout: one buffer per stream
            params = _params(shapes, dtype, device, 0)
            opt = RMSprop(params, lr=1e-3, impl=impl, flat=True, **options)
            out.append(Contender(f"rmsprop-{impl}-flat", "ours", opt.step, bytes_,
                                 "flat=True", keep=[params, opt]))
    return out


def _bandwidth_contenders(numel: int, device: str) -> list[Contender]:
    """Each on arrays of its own, as every contender: arrays shared with the contender timed
    just before would still be in cache (the rotation keeps the contenders' order)."""
    def arrays(k: int) -> list[torch.Tensor]:
        return [torch.rand(numel, device=device) for _ in range(k)]

    a, b, c = arrays(3)
    out = [Contender("triad-torch", "bandwidth", lambda: torch.add(b, c, alpha=2.0, out=a),
                     12 * numel, "a = b + s*c, 3 arrays", [a, b, c])]
    if device == "cpu" and importlib.util.find_spec("numba") is not None:
        from ._triad import triad

        an, bn, cn = (x.numpy() for x in arrays(3))
        triad(an, bn, cn, 2.0)  # compile (or load from cache) outside the timing
        out.append(Contender("triad-numba", "bandwidth", lambda: triad(an, bn, cn, 2.0),
                             12 * numel, "a = b + s*c, 3 arrays", [an, bn, cn]))
    if device == "cuda":
        x, y = arrays(2)
        out.append(Contender("copy", "bandwidth", lambda: x.copy_(y), 8 * numel,
                             "device-to-device copy, 2 arrays", [x, y]))
    return out


def _streams_contenders(numel: int, options: dict[str, Any], dtype: torch.dtype, device: str
                        ) -> list[Contender]:
    """The step's streams with no arithmetic, over flat arrays of ``numel`` elements, on all
    numba's threads and on one (CPU, float32 and float64 parameters, with numba)."""
    if device != "cpu" or dtype not in (torch.float32, torch.float64) or (
            importlib.util.find_spec("numba") is None):
        return []
    from ._streams import move_streams

    k = state_count(options)
    bytes_ = minimal_bytes(numel, options, dtype, dtype)
    note = f"the step's {3 + 2 * k} streams, no arithmetic"
    out = []
    for name, threads, suffix in (("streams-numba", None, ""),
                                  ("streams-numba-1thread", 1, ", one thread")):
        # arrays of its own (see _bandwidth_contenders)
        arrays = [torch.rand(numel, dtype=dtype).numpy() for _ in range(2 + k)]
        theta, g, states = arrays[0], arrays[1], arrays[2:]
        move_streams(theta, g, states)  # compile (or load from cache) outside the timing
        out.append(Contender(
            name, "ceiling", functools.partial(move_streams, theta, g, states, threads=threads),
            bytes_, note + suffix, [arrays]))
    return out


def measure(contenders: Sequence[Contender], warmup: int, repeats: int, device: str
            ) -> dict[str, list[float]]:
    """Seconds per step of each contender: ``warmup + repeats`` rounds, each timing every
    contender once, starting one further along the list every round; warm-up rounds dropped."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    n = len(contenders)
    for round_ in range(warmup + repeats):
        for k in range(n):
            contender = contenders[(round_ + k) % n]
            sync()
            started = time.perf_counter()
            contender.step()
            sync()
            if round_ >= warmup:
                times[contender.name].append(time.perf_counter() - started)
    return times


def run_case(layout: str, config: str, *, dtype: str = "float32", device: str = "cpu",
             warmup: int = 3, repeats: int = 20, compile_step: bool = False,
             peers: bool = True, scale: float = 1.0) -> dict[str, Any]:
    """Measure every contender for one layout and option set; returns the numbers."""
    shapes = LAYOUTS[layout]()
    if scale != 1.0:
        shapes = [tuple(max(1, round(s * scale)) if i == 0 else s for i, s in enumerate(shape))
                  for shape in shapes]
    options = CONFIGS[config]
    param_dtype = _DTYPES[dtype]
    numel = sum(math.prod(shape) for shape in shapes)

    def bytes_for(state_dtype: torch.dtype) -> int:
        return minimal_bytes(numel, options, param_dtype, state_dtype)

    contenders = _torch_contenders(shapes, options, param_dtype, device,
                                   bytes_for(param_dtype), compile_step)
    if peers:
        contenders += _bnb_contenders(shapes, options, param_dtype, device,
                                      bytes_for(param_dtype))
    contenders += _our_contenders(shapes, options, param_dtype, device, bytes_for)
    contenders += _bandwidth_contenders(numel, device)
    contenders += _streams_contenders(numel, options, param_dtype, device)
    times = measure(contenders, warmup, repeats, device)

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    torch_best = min(("torch-loop", "torch-foreach"), key=medians.__getitem__)
    bandwidth_name = max((c for c in contenders if c.kind == "bandwidth"),
                         key=lambda c: c.bytes / medians[c.name]).name
    bandwidth = next(c.bytes for c in contenders if c.name == bandwidth_name) / medians[
        bandwidth_name]
    ceilings = [c.name for c in contenders if c.kind == "ceiling"]
    streams_name = min(ceilings, key=medians.__getitem__) if ceilings else None
    streams = None if streams_name is None else medians[streams_name]
    results = {}
    for c in contenders:
        ts = sorted(times[c.name])
        rate = c.bytes / medians[c.name]
        results[c.name] = {
            "kind": c.kind,
            "median_ms": medians[c.name] * 1e3,
            "p25_ms": ts[len(ts) // 4] * 1e3,
            "p75_ms": ts[(3 * len(ts)) // 4] * 1e3,
            "bytes": c.bytes,
            "gbps": rate / 1e9,
            "speedup_vs_torch_best": medians[torch_best] / medians[c.name],
            "bandwidth_fraction": rate / bandwidth,
            "streams_fraction": None if streams is None else streams / medians[c.name],
            "note": c.note,
        }
        results[c.name]["flags"] = flags(results[c.name])
    del contenders
    gc.collect()
    return {
        "layout": layout, "config": config, "options": options, "dtype": dtype,
        "device": device, "tensors": len(shapes), "params": numel, "repeats": repeats,
        "warmup": warmup, "torch_best": torch_best, "bandwidth_reference": bandwidth_name,
        "bandwidth_gbps": bandwidth / 1e9,
        "streams_reference": streams_name,
        "streams_ms": None if streams is None else streams * 1e3, "results": results,
        "flagged": [name for name, r in results.items() if r["flags"]],
    }


def print_case(case: dict[str, Any]) -> None:
    print(f"\n{case['layout']} ({case['tensors']} tensors, {case['params'] / 1e6:.1f}M "
          f"{case['dtype']} params), {case['config']} {case['options'] or ''}: "
          f"torch's best eager = {case['torch_best']}, bandwidth = "
          f"{case['bandwidth_gbps']:.1f} GB/s ({case['bandwidth_reference']})"
          + ("" if case["streams_ms"] is None else
             f", the step's streams with no arithmetic = {case['streams_ms']:.2f} ms "
             f"({case['streams_reference']})"))
    print(f"  {'contender':<16}{'ms/step':>10}{'p25-p75':>16}{'GB/s':>8}"
          f"{'x torch best':>14}{'of bandwidth':>14}{'of streams':>12}  note")
    for name, r in case["results"].items():
        spread = f"{r['p25_ms']:.2f}-{r['p75_ms']:.2f}"
        streams = "-" if r["streams_fraction"] is None else f"{r['streams_fraction']:.0%}"
        print(f"  {name:<16}{r['median_ms']:>10.2f}{spread:>16}{r['gbps']:>8.1f}"
              f"{r['speedup_vs_torch_best']:>13.2f}x{r['bandwidth_fraction']:>13.0%}"
              f"{streams:>12}"
              f"  {' '.join(f'[{flag}]' for flag in r['flags'])} {r['note']}".rstrip())


def headline(cases: Sequence[dict[str, Any]]) -> list[str]:
    """Per case, the figures that matter: the default (what a drop-in user gets) and our
    fastest implementation, each against torch's best eager path."""
    lines = []
    for case in cases:
        ours = {n: r for n, r in case["results"].items()
                if r["kind"] == "ours" and n != "rmsprop-default"}
        if not ours:
            continue
        fastest = min(ours, key=lambda n: ours[n]["median_ms"])
        for label, name in (("default", "rmsprop-default"), ("fastest", fastest)):
            r = case["results"].get(name)
            if r is None:
                continue
            note = f" [{r['note']}]" if label == "default" and r["note"] else ""
            lines.append(
                f"{label} {name}{note} on {case['layout']}/{case['config']}: "
                f"{r['median_ms']:.2f} ms, {r['speedup_vs_torch_best']:.2f}x torch's best eager "
                f"({case['torch_best']}), {r['bandwidth_fraction']:.0%} of measured bandwidth "
                f"({r['gbps']:.1f} of {case['bandwidth_gbps']:.1f} GB/s)"
                + ("" if r["streams_fraction"] is None else
                   f", {r['streams_fraction']:.0%} of the no-arithmetic streams kernel "
                   f"({case['streams_ms']:.2f} ms)")
                + (f" [flagged: {', '.join(r['flags'])}]" if r["flags"] else "")
            )
    return lines


def streams_lines(cases: Sequence[dict[str, Any]]) -> list[str]:
    """Per case, the no-arithmetic streams kernel's time measured in the same run and each
    of our implementations' step against it (its time over the kernel's, and the kernel's
    as a fraction of it)."""
    lines = []
    for case in cases:
        if case["streams_ms"] is None:
            continue
        ours = [f"{name} {r['median_ms']:.2f} ms = {r['median_ms'] / case['streams_ms']:.2f}x"
                f" ({r['streams_fraction']:.0%})"
                for name, r in case["results"].items() if r["kind"] == "ours"]
        lines.append(f"{case['layout']}/{case['config']}: streams {case['streams_ms']:.2f} ms "
                     f"({case['streams_reference']}); " + ", ".join(ours))
    return lines


def plot(cases: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in cases[0]["results"]
             if cases[0]["results"][n]["kind"] not in ("bandwidth", "ceiling")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cases)), 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [case["results"].get(name, {}).get("speedup_vs_torch_best", 0) for case in cases]
        ax.bar([i + k * width for i in range(len(cases))], values, width, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_xticklabels([f"{c['layout']}\n{c['config']}" for c in cases])
    ax.set_ylabel("speed-up over torch's best eager step")
    ax.set_title("RMSProp step time (median of interleaved runs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmsprop bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", default=None,
                        help=f"comma-separated, from {', '.join(LAYOUTS)}")
    parser.add_argument("--configs", default="plain,momentum",
                        help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 3)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile(torch_opt.step) (about 40 s to compile)")
    parser.add_argument("--no-peers", action="store_true", help="skip bitsandbytes")
    parser.add_argument("--scale", type=float, default=None,
                        help="scale the first dimension of every tensor (for a quick run)")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: layouts 64x250k,2000x1k, --scale 0.1, --repeats 5, "
                             "--warmup 1 (explicit options win)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 if any figure is flagged (above the measured "
                             "bandwidth, or noisy)")
    parser.add_argument("--json", metavar="PATH", help="write every number as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw the speed-ups (PNG, SVG...)")
    return parser


_FULL = {"layouts": "1x16M,64x250k,2000x1k,transformer", "scale": 1.0, "repeats": 20,
         "warmup": 3}
_QUICK = {"layouts": "64x250k,2000x1k", "scale": 0.1, "repeats": 5, "warmup": 1}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0, or 1 under ``--strict`` when a figure is flagged."""
    args = _parser().parse_args(argv)
    defaults = _QUICK if args.quick else _FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    layouts = [x for x in args.layouts.split(",") if x]
    configs = [x for x in args.configs.split(",") if x]
    for value, known, flag in ((layouts, LAYOUTS, "--layouts"), (configs, CONFIGS, "--configs")):
        unknown = [x for x in value if x not in known]
        if unknown:
            guess = did_you_mean(unknown[0], known)
            _parser().error(f"{flag}: unknown {', '.join(unknown)}{guess} "
                            f"(known: {', '.join(known)})")
    if args.repeats < 1 or args.warmup < 0 or args.scale <= 0:
        _parser().error("--repeats must be >= 1, --warmup >= 0, --scale > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        _parser().error("--device cuda: no CUDA device is available")

    print(f"RMSProp step time: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {args.device}; medians of {args.repeats} interleaved rounds after "
          f"{args.warmup} warm-up rounds")
    cases = []
    for layout in layouts:
        for config in configs:
            case = run_case(layout, config, dtype=args.dtype, device=args.device,
                            warmup=args.warmup, repeats=args.repeats,
                            compile_step=args.compile, peers=not args.no_peers,
                            scale=args.scale)
            print_case(case)
            cases.append(case)
    flagged = [f"{c['layout']}/{c['config']} {name}: {', '.join(c['results'][name]['flags'])}"
               for c in cases for name in c["flagged"]]
    if flagged:
        print(f"\nFlagged figures (above {CEILING_MARGIN:.0%} of the measured bandwidth, or "
              f"rounds spread over {NOISE_LIMIT:.0%} of the median: a busy machine?):")
        for line in flagged:
            print("  " + line)
    if args.json:
        machine = {"processor": platform.processor(), "machine": platform.machine(),
                   "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                   "python": platform.python_version()}
        if args.device == "cuda":
            machine["gpu"] = torch.cuda.get_device_name()
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "argv": list(argv or sys.argv[1:]),
                       "ok": not flagged, "flags": flagged, "cases": cases}, f, indent=1)
    if args.plot:
        plot(cases, args.plot)
    lines = streams_lines(cases)
    if lines:
        print("\nOur steps against the step's streams with no arithmetic, measured in the same "
              "run (time over the kernel's; the kernel's as a fraction of ours):")
        for line in lines:
            print("  " + line)
    print("\nSummary (per case: our default, then our fastest setting):")
    for line in headline(cases):
        print("  " + line)
    return 1 if args.strict and flagged else 0


if __name__ == "__main__":
    raise SystemExit(main())
