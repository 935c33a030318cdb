"""The GPU suite: time per RMSProp step against a device-to-device copy, ours and the peers.

For each parameter layout (1 x 64M, 64 x 1M, 4000 x 4k float32 parameters) and option set
(plain, momentum), in one run and interleaved as :func:`rmsprop.benchmark.step_time.measure`
does, the median time of ``optimizer.step()`` for:

* ``torch-foreach``: ``torch.optim.RMSprop(foreach=True)``;
* ``torch-fused``: ``torch.optim.RMSprop(fused=True)``, where torch has it (torch 2.13's
  RMSprop has no ``fused`` argument: the row says so);
* ``rmsprop-triton``: ``rmsprop.torch.RMSprop(impl="triton")``, float32 state;
* ``rmsprop-8bit``: ``rmsprop.torch.RMSprop(impl="triton", state_precision="8bit")``, the
  Triton kernel of 8-bit state (:mod:`rmsprop.torch.lean.kernel_triton`);
* ``bnb-8bit``: ``bitsandbytes.optim.RMSprop8bit`` (it ignores ``momentum``: marked);

both 8-bit optimizers with ``min_8bit_size=0``, so that the 4000-element tensors of 4000 x 4k
get 8-bit state too (both keep float32 state under 4096 elements by default);
* ``copy``: ``a.copy_(b)`` over as many float32 elements as the layout has parameters,
  8 bytes per element: the yardstick.

A contender that cannot run here (no such option in this torch, no kernel for this device, a
package missing) is a row marked ``not supported`` with the reason, never a crash.

Each step is counted at the bytes it must move: read theta and g, write theta (12 bytes per
float32 parameter), read and write every state tensor it keeps, as stored (float32, or 8-bit
codes and their block scales; step counters and bitsandbytes' 256-entry code map left out).
``of copy`` is that rate over the copy's.

Writes ``gpu_step_time.json`` (every number, the GPU's name, the versions) and
``gpu_step_time.md`` (one table) into ``--out``. ``--device cpu --quick`` runs the same suite
on CPU at a thousandth of the size and at most 16 tensors a layout: a dry run of everything
but the GPU (the two Triton rows run there only under ``TRITON_INTERPRET=1``). A time budget
(``--budget-s``) skips the cases left when it is spent, so that the suite stays under the
8 minutes it is given; skipped cases are listed.

Run: ``benchmarks/gpu.sh`` (checks what is importable first), or
``python -m rmsprop.benchmark.gpu --out DIR``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import inspect
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import step_time
from .step_time import Contender

__all__ = ["CONFIGS", "CONTENDERS", "LAYOUTS", "main", "markdown", "run_suite", "write"]

LAYOUTS: dict[str, list[tuple[int, ...]]] = {
    "1x64M": [(64_000_000,)],
    "64x1M": [(1_000_000,)] * 64,
    "4000x4k": [(4_000,)] * 4000,
}
"""One large tensor; 64 large ones; many small ones (a model's norms, biases, heads)."""

CONFIGS: dict[str, dict[str, Any]] = {"plain": {}, "momentum": {"momentum": 0.9}}
"""Option sets, as keyword arguments of torch.optim.RMSprop (and ours)."""

CONTENDERS = ("torch-foreach", "torch-fused", "rmsprop-triton", "rmsprop-8bit", "bnb-8bit")
"""The optimizers timed, in table order (the copy comes first)."""

JSON_NAME = "gpu_step_time.json"
MARKDOWN_NAME = "gpu_step_time.md"

_LR = 1e-3


class Unsupported(Exception):
    """This contender cannot run here; the message says why."""


def _optimizer(name: str, params: list[torch.nn.Parameter], options: dict[str, Any]) -> Any:
    if name == "torch-foreach":
        return torch.optim.RMSprop(params, lr=_LR, foreach=True, **options)
    if name == "torch-fused":
        if "fused" not in inspect.signature(torch.optim.RMSprop).parameters:
            raise Unsupported(f"torch {torch.__version__}'s RMSprop has no fused option")
        # through a dict: fused is not in the signature of every torch this runs on
        return torch.optim.RMSprop(params, lr=_LR, **{**options, "fused": True})
    if name in ("rmsprop-triton", "rmsprop-8bit"):
        from rmsprop.torch import RMSprop

        extra = {"impl": "triton"} if name == "rmsprop-triton" else {
            "impl": "triton", "state_precision": "8bit", "min_8bit_size": 0}
        return RMSprop(params, lr=_LR, **extra, **options)
    if name == "bnb-8bit":
        try:
            import bitsandbytes as bnb
        except Exception as error:  # not installed, or an install that fails on import
            raise Unsupported(f"bitsandbytes cannot be imported ({type(error).__name__})")
        return bnb.optim.RMSprop8bit(params, lr=_LR, min_8bit_size=0, **options)
    raise ValueError(f"contender: unknown {name!r} (known: {', '.join(CONTENDERS)})")


def _note(name: str, options: dict[str, Any]) -> str:
    if name == "bnb-8bit" and options.get("momentum", 0) > 0:
        return "ignores momentum"
    return ""


def state_bytes(optimizer: Any) -> int:
    """Bytes of the state a step reads and writes: every tensor in ``optimizer.state`` but the
    step counters and bitsandbytes' code maps (``qmap*``: 256 entries, read from cache)."""
    return sum(value.nbytes for state in optimizer.state.values()
               for key, value in state.items()
               if isinstance(value, torch.Tensor) and key != "step"
               and not key.startswith("qmap"))


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return text if isinstance(error, Unsupported) else f"{type(error).__name__}: {text}"


def _contenders(shapes: Sequence[tuple[int, ...]], options: dict[str, Any], device: str,
                names: Sequence[str]) -> tuple[list[Contender], dict[str, str]]:
    """What can be timed, each after one step (compiles, creates the state); and, for each
    contender that cannot run, why."""
    numel = sum(math.prod(shape) for shape in shapes)
    gen = torch.Generator().manual_seed(0)
    values = [(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
              for shape in shapes]
    a = torch.empty(numel, device=device)
    b = torch.rand(numel, generator=gen).to(device)
    out = [Contender("copy", "bandwidth", lambda: a.copy_(b), 8 * numel,
                     "device-to-device copy" if device == "cuda" else "copy", [a, b])]
    unsupported: dict[str, str] = {}
    for name in names:
        params = []
        for theta, g in values:
            p = torch.nn.Parameter(theta.to(device, copy=True))
            p.grad = g.to(device, copy=True)
            params.append(p)
        try:
            optimizer = _optimizer(name, params, options)
            optimizer.step()
        except Exception as error:  # no such option, kernel or package here: a row says so
            unsupported[name] = _reason(error)
            del params
            continue
        bytes_ = 12 * numel + 2 * state_bytes(optimizer)
        out.append(Contender(name, "peer" if name.startswith("bnb") else
                             "torch" if name.startswith("torch") else "ours",
                             optimizer.step, bytes_, _note(name, options), [params, optimizer]))
    del values
    return out, unsupported


def run_case(layout: str, config: str, *, device: str, warmup: int, repeats: int,
             scale: float = 1.0, max_tensors: int | None = None,
             names: Sequence[str] = CONTENDERS) -> dict[str, Any]:
    """Time every contender on one layout and option set; returns the case's numbers."""
    shapes = [tuple(max(1, round(s * scale)) if i == 0 else s for i, s in enumerate(shape))
              for shape in LAYOUTS[layout][:max_tensors]]
    options = CONFIGS[config]
    contenders, unsupported = _contenders(shapes, options, device, names)
    times = step_time.measure(contenders, warmup, repeats, device)
    copy_rate = contenders[0].bytes / statistics.median(times["copy"])
    rows: list[dict[str, Any]] = []
    by_name = {c.name: c for c in contenders}
    for name in ("copy", *names):
        if name in unsupported:
            rows.append({"name": name, "status": "not supported", "reason": unsupported[name],
                         "note": _note(name, options)})
            continue
        c = by_name[name]
        ts = sorted(times[name])
        median = statistics.median(ts)
        rows.append({
            "name": name, "status": "ok", "kind": c.kind, "median_ms": median * 1e3,
            "p25_ms": ts[len(ts) // 4] * 1e3, "p75_ms": ts[(3 * len(ts)) // 4] * 1e3,
            "bytes": c.bytes, "gbps": c.bytes / median / 1e9,
            "copy_fraction": c.bytes / median / copy_rate, "note": c.note,
        })
    del contenders, by_name
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"layout": layout, "config": config, "options": options, "tensors": len(shapes),
            "params": sum(math.prod(shape) for shape in shapes), "repeats": repeats,
            "warmup": warmup, "copy_gbps": copy_rate / 1e9, "rows": rows}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(device: str) -> dict[str, Any]:
    """The device's name and the versions that the figures depend on."""
    name = (torch.cuda.get_device_name() if device == "cuda"
            else platform.processor() or platform.machine())
    return {"device": device, "name": name, "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": _version("triton"), "bitsandbytes": _version("bitsandbytes"),
            "torch_threads": torch.get_num_threads()}


def run_suite(layouts: Sequence[str], configs: Sequence[str], *, device: str, warmup: int,
              repeats: int, scale: float = 1.0, max_tensors: int | None = None,
              budget_s: float = math.inf,
              names: Sequence[str] = CONTENDERS,
              progress: Callable[[str], Any] = lambda line: None) -> dict[str, Any]:
    """Every case in turn until ``budget_s`` is spent; the report that :func:`write` writes."""
    started = time.perf_counter()
    cases, skipped = [], []
    for layout in layouts:
        for config in configs:
            if time.perf_counter() - started > budget_s:
                skipped.append(f"{layout}/{config}")
                continue
            case = run_case(layout, config, device=device, warmup=warmup, repeats=repeats,
                            scale=scale, max_tensors=max_tensors, names=names)
            progress(f"{layout}/{config}: " + ", ".join(
                f"{r['name']} {r['median_ms']:.3f} ms" if r["status"] == "ok"
                else f"{r['name']} not supported" for r in case["rows"]))
            cases.append(case)
    return {"machine": machine(device), "scale": scale, "max_tensors": max_tensors,
            "cases": cases, "skipped": skipped,
            "elapsed_s": time.perf_counter() - started}


def _shape_label(case: dict[str, Any]) -> str:
    n, per = case["tensors"], case["params"] // case["tensors"]
    size = (f"{per / 1e6:g}M" if per >= 1_000_000 else f"{per / 1e3:g}k" if per >= 1000
            else str(per))
    return f"{n} x {size}"


def markdown(report: dict[str, Any], command: str = "") -> str:
    """One table: per case and contender, ms per step, GB/s and the fraction of the copy's."""
    m = report["machine"]
    lines = [f"# RMSProp step time on {m['name']}", "",
             f"{m['device']}, torch {m['torch']} (CUDA {m['cuda']}), triton {m['triton']}, "
             f"bitsandbytes {m['bitsandbytes']}, Python {m['python']}; float32 parameters; "
             "medians of interleaved rounds; bytes counted at what each step must move "
             "(theta, g, and its state as stored).", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| layout | options | contender | ms/step | p25-p75 ms | GB/s | of copy | note |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for case in report["cases"]:
        head = f"| {_shape_label(case)} | {case['config']} "
        for r in case["rows"]:
            if r["status"] == "ok":
                lines.append(f"{head}| {r['name']} | {r['median_ms']:.3f} | "
                             f"{r['p25_ms']:.3f}-{r['p75_ms']:.3f} | {r['gbps']:.0f} | "
                             f"{r['copy_fraction']:.0%} | {r['note']} |")
            else:
                note = "; ".join(x for x in (r["note"], r["reason"]) if x)
                lines.append(f"{head}| {r['name']} | {r['status']} | | | | {note} |")
    if report["skipped"]:
        lines += ["", f"Skipped (time budget spent): {', '.join(report['skipped'])}."]
    lines += ["", f"Suite time: {report['elapsed_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: str | Path, command: str = "") -> tuple[Path, Path]:
    """Write the report as JSON and as a Markdown table into ``out``; returns the two paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    json_path.write_text(json.dumps({**report, "command": command}, indent=1))
    md_path.write_text(markdown(report, command))
    return json_path, md_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rmsprop.benchmark.gpu", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-results", help="folder for the JSON and the table")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help=f"comma-separated, from {', '.join(LAYOUTS)}")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 50)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 5)")
    parser.add_argument("--scale", type=float, default=None,
                        help="scale the first dimension of every tensor")
    parser.add_argument("--max-tensors", type=int, default=None,
                        help="keep at most this many tensors of each layout")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip the cases left once this many seconds are spent (420)")
    parser.add_argument("--quick", action="store_true",
                        help="a dry run: --scale 0.001, --max-tensors 16, --repeats 3, "
                             "--warmup 1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite and write its two files; 2 on a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    defaults = ({"scale": 0.001, "max_tensors": 16, "repeats": 3, "warmup": 1} if args.quick
                else {"scale": 1.0, "repeats": 50, "warmup": 5})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    layouts = [x for x in args.layouts.split(",") if x]
    configs = [x for x in args.configs.split(",") if x]
    for given, known, flag in ((layouts, LAYOUTS, "--layouts"), (configs, CONFIGS, "--configs")):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if args.repeats < 1 or args.warmup < 0 or args.scale <= 0 or (
            args.max_tensors is not None and args.max_tensors < 1):
        parser.error("--repeats must be >= 1, --warmup >= 0, --scale > 0, --max-tensors >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (--device cpu --quick is a "
                     "dry run on CPU)")
    report = run_suite(layouts, configs, device=args.device, warmup=args.warmup,
                       repeats=args.repeats, scale=args.scale, max_tensors=args.max_tensors,
                       budget_s=args.budget_s,
                       progress=lambda line: print(line, flush=True))
    command = " ".join(["python -m rmsprop.benchmark.gpu",
                        *(sys.argv[1:] if argv is None else argv)])
    json_path, md_path = write(report, args.out, command)
    print(markdown(report, command))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
