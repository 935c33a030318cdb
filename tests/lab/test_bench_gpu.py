"""The GPU suite (benchmarks/gpu.sh, rmsprop.benchmark.gpu) runs end to end on CPU and writes
its JSON and Markdown table with the expected columns; contenders that cannot run are rows
marked "not supported". Timings are replaced by fixed ones: nothing timed is asserted."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rmsprop.benchmark import gpu, step_time

HEADER = "| layout | options | contender | ms/step | p25-p75 ms | GB/s | of copy | note |"
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


def _fixed(contenders, warmup, repeats, device):
    """The copy at 2 GB/s, every step at 1 GB/s of its own byte count."""
    return {c.name: [c.bytes / (2e9 if c.name == "copy" else 1e9)] * repeats
            for c in contenders}


def _report():
    row = {"status": "ok", "kind": "ours", "median_ms": 2.0, "p25_ms": 1.5, "p75_ms": 2.5,
           "bytes": 80_000_000, "gbps": 40.0, "copy_fraction": 0.42, "note": ""}
    case = {"layout": "64x1M", "config": "momentum", "options": {"momentum": 0.9},
            "tensors": 64, "params": 64_000_000, "repeats": 50, "warmup": 5,
            "copy_gbps": 95.2,
            "rows": [{**row, "name": "copy", "kind": "bandwidth", "copy_fraction": 1.0},
                     {**row, "name": "rmsprop-triton"},
                     {"name": "rmsprop-8bit", "status": "not supported",
                      "reason": "ValueError: no CUDA kernel", "note": ""},
                     {**row, "name": "bnb-8bit", "note": "ignores momentum"}]}
    return {"machine": {"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "python": "3.12",
                        "torch": "2.13.0", "cuda": "12.8", "triton": "3.5",
                        "bitsandbytes": None, "torch_threads": 16},
            "scale": 1.0, "max_tensors": None, "cases": [case],
            "skipped": ["4000x4k/plain"], "elapsed_s": 12.0}


def test_the_writers_give_one_row_per_contender(tmp_path):
    json_path, md_path = gpu.write(_report(), tmp_path / "out", "benchmarks/gpu.sh")
    table = md_path.read_text()
    assert "NVIDIA H100 80GB HBM3" in table.splitlines()[0]
    lines = table.splitlines()
    start = lines.index(HEADER)
    rows = [line.split(" | ") for line in lines[start + 2:start + 6]]
    assert [r[2] for r in rows] == ["copy", "rmsprop-triton", "rmsprop-8bit", "bnb-8bit"]
    assert all(r[0] == "| 64 x 1M" and r[1] == "momentum" for r in rows)
    assert rows[1][3:7] == ["2.000", "1.500-2.500", "40", "42%"]
    assert rows[2][3] == "not supported" and "no CUDA kernel" in rows[2][-1]
    assert "ignores momentum" in rows[3][-1]
    assert "Skipped (time budget spent): 4000x4k/plain." in table
    written = json.loads(json_path.read_text())
    assert written["command"] == "benchmarks/gpu.sh"
    assert written["machine"]["name"] == "NVIDIA H100 80GB HBM3"
    assert written["cases"] == _report()["cases"]


def test_bytes_and_fractions_of_the_torch_rows(monkeypatch):
    monkeypatch.setattr(step_time, "measure", _fixed)
    report = gpu.run_suite(["64x1M"], ["plain", "momentum"], device="cpu", warmup=0,
                           repeats=2, scale=0.001, max_tensors=3,
                           names=["torch-foreach", "torch-fused"])
    for case, per_param in zip(report["cases"], (20, 28)):
        rows = {r["name"]: r for r in case["rows"]}
        assert list(rows) == ["copy", "torch-foreach", "torch-fused"]
        assert rows["copy"]["bytes"] == 8 * case["params"] == 8 * 3000
        assert rows["torch-foreach"]["bytes"] == per_param * case["params"]
        assert rows["torch-foreach"]["copy_fraction"] == pytest.approx(0.5)
        assert rows["torch-foreach"]["median_ms"] == pytest.approx(per_param * 3000 / 1e6)


@pytest.mark.slow  # builds every contender: bitsandbytes' import, the 8-bit kernel
def test_the_suite_runs_on_cpu_with_unsupported_rows(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(step_time, "measure", _fixed)
    out = tmp_path / "out"
    assert gpu.main(["--device", "cpu", "--quick", "--layouts", "64x1M,4000x4k",
                     "--max-tensors", "3", "--out", str(out)]) == 0
    report = json.loads((out / gpu.JSON_NAME).read_text())
    assert [(c["layout"], c["config"]) for c in report["cases"]] == [
        ("64x1M", "plain"), ("64x1M", "momentum"), ("4000x4k", "plain"),
        ("4000x4k", "momentum")]
    torch_has_fused = "fused" in inspect.signature(torch.optim.RMSprop).parameters
    for case in report["cases"]:
        assert case["tensors"] == 3
        assert case["params"] == 3 * (1000 if case["layout"] == "64x1M" else 4)
        rows = {r["name"]: r for r in case["rows"]}
        assert list(rows) == ["copy", *gpu.CONTENDERS]
        assert rows["copy"]["copy_fraction"] == pytest.approx(1.0)
        # torch keeps float32 v (and a momentum buffer): 20 (28) bytes per parameter
        per_param = 28 if case["config"] == "momentum" else 20
        foreach = rows["torch-foreach"]
        assert foreach["bytes"] == per_param * case["params"]
        assert foreach["copy_fraction"] == pytest.approx(0.5)
        assert foreach["gbps"] == pytest.approx(1.0)
        assert rows["rmsprop-triton"]["status"] == "not supported"  # CPU tensors
        assert "CUDA" in rows["rmsprop-triton"]["reason"]
        assert (rows["torch-fused"]["status"] == "ok") == torch_has_fused
        # 8-bit state, every tensor (min_8bit_size=0): fewer bytes than float32 state
        if rows["rmsprop-8bit"]["status"] == "ok":
            assert rows["rmsprop-8bit"]["bytes"] < foreach["bytes"]
    table = (out / gpu.MARKDOWN_NAME).read_text()
    assert HEADER in table and table in capsys.readouterr().out


def test_a_spent_budget_skips_the_cases_left(monkeypatch):
    monkeypatch.setattr(step_time, "measure", _fixed)
    report = gpu.run_suite(["64x1M"], ["plain", "momentum"], device="cpu", warmup=0,
                           repeats=1, scale=0.001, max_tensors=2, budget_s=-1.0)
    assert report["cases"] == [] and report["skipped"] == ["64x1M/plain", "64x1M/momentum"]


def test_usage_errors():
    with pytest.raises(SystemExit) as exit_:
        gpu.main(["--layouts", "64x2M", "--device", "cpu"])
    assert exit_.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu.main(["--out", "unused"])


@pytest.mark.slow  # imports torch, Triton, bitsandbytes and numba in a fresh process
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer without a GPU")
def test_the_script_says_what_is_missing_and_stops_without_a_gpu(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("missing:") and "cuda: none" in done.stdout
    assert "no CUDA device" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing written, nothing installed
