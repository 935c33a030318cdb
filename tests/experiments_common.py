"""Shared by the experiment tests: run an experiment at demo settings and check its JSON.

The check is the protocol's: the JSON holds the fields the report promises, every tuned
optimizer has its grid, best lr and edge flag, and the verdict re-derived from the JSON's own
figures and the spec's fixed thresholds is the verdict written. No test requires "reproduced".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rmsprop import experiments
from rmsprop.experiments._protocol import MIN_SEEDS, VERDICTS, judge

FIGURE_KEYS = {"mean", "low", "high", "n"}


def check_document(doc: dict, name: str) -> None:
    spec = experiments.get(name).SPEC
    assert doc["name"] == name
    assert doc["claim"] == spec.claim
    assert doc["verdict"] in VERDICTS
    if spec.deterministic:
        assert doc["deterministic"] is True and doc["seeds"] == []
    else:
        assert doc["deterministic"] is False
        assert len(doc["seeds"]) == doc["settings"]["n_seeds"] >= 1
        assert len(set(doc["seeds"])) == len(doc["seeds"])
        if not doc["settings"]["quick"]:
            assert len(doc["seeds"]) >= MIN_SEEDS
    assert set(doc["optimizers"]) == set(spec.optimizers)
    for oname, record in doc["optimizers"].items():
        grid = record["lr_grid"]
        assert grid == list(spec.optimizers[oname])
        assert record["best_lr"] in grid
        assert record["best_lr_on_edge"] == (record["best_lr"] in (grid[0], grid[-1]))
        assert len(record["score_by_lr"]) == len(grid)
    for fname, fig in doc["figures"].items():
        assert FIGURE_KEYS <= set(fig), fname
        low, mean, high = (float(fig[k]) for k in ("low", "mean", "high"))
        if all(math.isfinite(v) for v in (low, mean, high)):
            assert low <= mean <= high, fname
    for c in doc["criteria"]:
        assert c["figure"] in doc["figures"] and c["why"]
    # the verdict follows from the JSON alone: the figures, the fixed thresholds, the edges
    edges = {o: r["best_lr_on_edge"] for o, r in doc["optimizers"].items()}
    verdict, reasons = judge(spec.criteria, doc["figures"], edges)
    assert verdict == doc["verdict"] and reasons == doc["reasons"]


def run_quick(name: str, out_dir: Path, seed: int = 0):
    """Run ``name`` at demo settings; check its PNG and JSON; return (Result, JSON document)."""
    result = experiments.run(name, seed=seed, out_dir=out_dir, quick=True)
    assert result.name == name
    for png in result.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    doc = json.loads(result.json.read_text())
    assert doc["verdict"] == result.verdict
    check_document(doc, name)
    return result, doc
