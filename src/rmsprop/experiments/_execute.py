"""Run one experiment module through the protocol: simulate, measure, judge, plot, write.

The protocol's rules are enforced here, not in the modules: every optimizer of the spec has a
tuning record on exactly its grid, the verdict comes from :func:`_protocol.judge`, and the JSON
holds the claim, the verdict, the seeds and every judged figure with its interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from ._base import Progress, Result, check_steps, jsonable, save_figure, seeded
from ._protocol import MIN_SEEDS, Config, judge

__all__ = ["execute"]


def execute(module: ModuleType, *, seed: int, steps: int | None, quick: bool,
            n_seeds: int | None, out_dir: Path, progress: Progress) -> Result:
    spec = module.SPEC
    default = spec.quick_steps if quick else spec.default_steps
    steps = check_steps(steps, default, spec.min_steps, spec.name)
    if spec.deterministic:
        n = 1
    else:
        n = n_seeds if n_seeds is not None else (spec.quick_seeds if quick else spec.n_seeds)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n_seeds for {spec.name!r} must be an int >= 1, got {n_seeds!r}")
    cfg = Config(steps=steps, seeds=tuple(range(seed, seed + n)), quick=quick)
    with seeded(seed):
        raw = module.simulate(cfg, progress)
    measured = module.measure(raw, cfg)
    if set(measured.tuned) != set(spec.optimizers):
        raise RuntimeError(f"experiment {spec.name!r}: tuning records for "
                           f"{sorted(measured.tuned)}, the spec tunes {sorted(spec.optimizers)}")
    for name, record in measured.tuned.items():
        if list(record.lr_grid) != list(spec.optimizers[name]):
            raise RuntimeError(f"experiment {spec.name!r}: {name!r} was tuned off its grid")
    edges = {name: t.best_lr_on_edge for name, t in measured.tuned.items()}
    verdict, reasons = judge(spec.criteria, measured.figures, edges)
    notes = list(measured.notes)
    if not spec.deterministic and n < MIN_SEEDS:
        notes.insert(0, f"demo settings: {n} seed(s) and {steps} steps (full settings: "
                        f"{spec.n_seeds} seeds, {spec.default_steps} steps); the intervals "
                        f"are wide accordingly")
    failed = [name for name, ok in measured.sanity.items() if not ok]
    if failed:
        notes.insert(0, "sanity check(s) FAILED (the measurement itself is suspect): "
                        + "; ".join(failed))
    finding = "; ".join(
        f"{c.figure} = {measured.figures[c.figure].text()} (claim: {c.op} {c.threshold:g})"
        for c in spec.criteria)
    out_dir = Path(out_dir)
    png = save_figure(module.plot(raw, measured, cfg), out_dir / f"{spec.name}.png")
    result = Result(
        name=spec.name, claim=spec.claim, verdict=verdict, finding=finding, reasons=reasons,
        figures={k: jsonable(v) for k, v in measured.figures.items()}, pngs=[png],
        json=out_dir / f"{spec.name}.json", tables=list(measured.tables), notes=notes,
        seeds=list(cfg.seeds) if not spec.deterministic else [], steps=steps)
    document = {
        "name": spec.name, "summary": spec.summary, "section": spec.section,
        "claim": spec.claim, "hypothesis": spec.hypothesis, "verdict": verdict,
        "reasons": reasons, "finding": finding,
        "criteria": [{"figure": c.figure, "op": c.op, "threshold": c.threshold, "why": c.why}
                     for c in spec.criteria],
        "seeds": result.seeds, "deterministic": spec.deterministic,
        "settings": {"steps": steps, "quick": quick, "n_seeds": n},
        "optimizers": {name: _tuned_record(t) for name, t in measured.tuned.items()},
        "figures": measured.figures, "sanity": measured.sanity, "notes": notes,
        "tables": measured.tables, "pngs": [str(png)],
        "data": getattr(measured, "data", {}),
    }
    result.json.write_text(json.dumps(jsonable(document), indent=1))
    return result


def _tuned_record(t) -> dict:
    return {"lr_grid": t.lr_grid, "best_lr": t.best_lr, "best_lr_on_edge": t.best_lr_on_edge,
            "score": t.score, "lower_is_better": t.lower_is_better,
            "score_by_lr": t.score_by_lr, "best": t.score_by_lr[t.best_index]}
