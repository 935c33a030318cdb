"""benchmarks/compare_commits.py: each side imports its own commit's rmsprop, and every case
is timed on both sides in every round (nothing timed is asserted)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from rmsprop.benchmark.step_time import LAYOUTS

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None
    or subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0,
    reason="needs the project's git checkout (the base side is a git archive)")


def _script():
    spec = importlib.util.spec_from_file_location(
        "compare_commits", REPO / "benchmarks" / "compare_commits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # two workers compile the kernels afresh (about 40 s)
def test_each_side_runs_its_own_commit_and_every_case_is_timed_every_round():
    LAYOUTS["3x100"] = lambda: [(100,)] * 3
    try:
        result = _script().compare("HEAD", "WORKTREE", ["3x100"], ["plain", "momentum"],
                                   ["loop", "fused-8bit"], rounds=3, steps=1, warmup=1)
    finally:
        del LAYOUTS["3x100"]
    base, head = (Path(result["packages"][side]) for side in ("base", "head"))
    assert head == REPO / "src" / "rmsprop" / "__init__.py"
    assert base.name == "__init__.py" and base.parent.name == "rmsprop"
    assert REPO not in base.parents  # the archived commit, not this checkout
    assert [row["case"] for row in result["rows"]] == [
        "3x100/plain/loop", "3x100/plain/fused-8bit",
        "3x100/momentum/loop", "3x100/momentum/fused-8bit"]
    for row in result["rows"]:
        assert row["base_ms"] > 0 and row["head_ms"] > 0
        assert row["head_over_base_p25"] <= row["head_over_base"] <= row["head_over_base_p75"]


def test_an_unknown_layout_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--layouts", "64x250k,9x9"])
    assert "--layouts: unknown '9x9'" in capsys.readouterr().err
