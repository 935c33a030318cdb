"""Our step time at two commits, measured in one run: is a refactor free?

Each side (``--base`` and ``--head``: a git revision, or ``WORKTREE`` for the files as they
are) runs in its own worker process, importing its own ``rmsprop`` (``git archive`` of the
revision's ``src/`` into a temporary folder). The workers build the same parameters and
gradients, warm up (numba compiles), then take turns: every round times each contender once
on one side, then on the other, the order swapped every round, so that both sides see the
same machine. The layouts and option sets are those of ``rmsprop bench``
(:mod:`rmsprop.benchmark.step_time`). Only the public API is used (``rmsprop.torch.RMSprop`` with ``impl`` and
``state_precision``), so any two commits since 0.2 compare.

The figure that matters is head over base: the median over rounds of the per-round ratio of
the two sides' times (paired, steadier than a ratio of medians when other work shares the
cores), with its 25th-75th percentiles. "within noise" means that range contains 1.

    python benchmarks/compare_commits.py --base 97ad675 --layouts 64x250k,2000x1k,transformer
    python benchmarks/compare_commits.py --base HEAD~1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from rmsprop.benchmark.step_time import CONFIGS, LAYOUTS

REPO = Path(__file__).resolve().parents[1]

CONTENDERS: dict[str, dict[str, Any]] = {
    "loop": {"impl": "loop"},
    "foreach": {"impl": "foreach"},
    "fused": {"impl": "fused"},
    "fused-8bit": {"impl": "fused", "state_precision": "8bit"},
}
"""Keyword arguments of ``rmsprop.torch.RMSprop`` for each contender."""

# ---------------------------------------------------------------- worker (one side)

def _worker() -> None:
    """Read one JSON command per line from stdin, answer one JSON line: ``setup`` builds
    the cases, ``round`` times every (case, contender) once."""
    import rmsprop
    import torch
    from rmsprop.torch import RMSprop

    cases: list[tuple[str, Any, int]] = []
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "setup":
            for case in command["cases"]:
                gen = torch.Generator().manual_seed(0)
                params = []
                for shape in case["shapes"]:
                    p = torch.nn.Parameter(torch.randn(shape, generator=gen))
                    p.grad = torch.randn(shape, generator=gen)
                    params.append(p)
                opt = RMSprop(params, lr=1e-4, **case["options"], **case["contender"])
                for _ in range(command["warmup"]):
                    opt.step()
                cases.append((case["id"], opt, command["steps"]))
            answer: dict[str, Any] = {"ready": len(cases), "package": rmsprop.__file__}
        else:
            answer = {}
            for case_id, opt, steps in cases:
                start = time.perf_counter()
                for _ in range(steps):
                    opt.step()
                answer[case_id] = (time.perf_counter() - start) / steps * 1e3
        print(json.dumps(answer), flush=True)


# ---------------------------------------------------------------- driver

def _source_of(rev: str, into: Path) -> Path:
    """The ``src/`` folder of ``rev`` (``WORKTREE``: this checkout's, as it is)."""
    if rev == "WORKTREE":
        return REPO / "src"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _commit_of(rev: str) -> str:
    if rev == "WORKTREE":
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              check=True, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"],
                               check=True, capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}"
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                          check=True, capture_output=True, text=True).stdout.strip()


class _Side:
    def __init__(self, name: str, src: Path, numba_cache: Path) -> None:
        # numba's cache in the temporary folder: a commit's archive is compiled afresh and
        # leaves nothing behind in the user's cache
        env = dict(os.environ, PYTHONPATH=str(src), NUMBA_CACHE_DIR=str(numba_cache))
        self.name = name
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker stopped (its error is above)")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q[0], statistics.median(values), q[-1]


def compare(base: str, head: str, layouts: list[str], configs: list[str],
            contenders: list[str], rounds: int, steps: int, warmup: int) -> dict[str, Any]:
    """Both sides' step times, interleaved round by round (see the module docstring)."""
    cases = [{"id": f"{layout}/{config}/{name}", "shapes": LAYOUTS[layout](),
              "options": CONFIGS[config], "contender": CONTENDERS[name]}
             for layout in layouts for config in configs for name in contenders]
    times: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {name: _Side(name, _source_of(rev, Path(tmp) / name), Path(tmp) / "numba")
                 for name, rev in (("base", base), ("head", head))}
        packages = {}
        try:
            for name, side in sides.items():
                packages[name] = side.ask({"cmd": "setup", "cases": cases, "warmup": warmup,
                                           "steps": steps})["package"]
            for r in range(rounds):
                order = ("base", "head") if r % 2 == 0 else ("head", "base")
                for name in order:
                    for case_id, ms in sides[name].ask({"cmd": "round"}).items():
                        times[name].setdefault(case_id, []).append(ms)
        finally:
            for side in sides.values():
                side.close()
    rows = []
    for case in cases:
        b, h = times["base"][case["id"]], times["head"][case["id"]]
        low, mid, high = _quantiles([y / x for x, y in zip(b, h)])
        rows.append({"case": case["id"], "base_ms": statistics.median(b),
                     "head_ms": statistics.median(h), "head_over_base": mid,
                     "head_over_base_p25": low, "head_over_base_p75": high,
                     "within_noise": low <= 1.0 <= high})
    return {"base": _commit_of(base), "head": _commit_of(head), "rounds": rounds,
            "steps_per_round": steps, "packages": packages,
            "load_average": os.getloadavg(), "rows": rows}


def print_report(result: dict[str, Any]) -> None:
    print(f"Step time, head {result['head']} against base {result['base']}: "
          f"{result['rounds']} interleaved rounds of {result['steps_per_round']} steps, "
          f"load average {result['load_average'][0]:.2f}")
    print(f"  {'case':<34} {'base ms':>9} {'head ms':>9} {'head/base':>10} {'p25-p75':>13}")
    for row in result["rows"]:
        verdict = "within noise" if row["within_noise"] else (
            "slower" if row["head_over_base_p25"] > 1 else "faster")
        print(f"  {row['case']:<34} {row['base_ms']:9.2f} {row['head_ms']:9.2f} "
              f"{row['head_over_base']:9.2f}x {row['head_over_base_p25']:6.2f}-"
              f"{row['head_over_base_p75']:<6.2f} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--head", default="WORKTREE",
                        help="git revision, or WORKTREE for the files as they are (default)")
    parser.add_argument("--layouts", default="64x250k,2000x1k,transformer")
    parser.add_argument("--configs", default="plain,momentum")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    if args.worker:
        _worker()
        return 0
    for name in args.contenders.split(","):
        if name not in CONTENDERS:
            parser.error(f"--contenders: unknown {name!r}; known: {', '.join(CONTENDERS)}")
    for option, known in (("layouts", LAYOUTS), ("configs", CONFIGS)):
        for name in getattr(args, option).split(","):
            if name not in known:
                parser.error(f"--{option}: unknown {name!r}; known: {', '.join(known)}")
    result = compare(args.base, args.head, args.layouts.split(","), args.configs.split(","),
                     args.contenders.split(","), args.rounds, args.steps, args.warmup)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
