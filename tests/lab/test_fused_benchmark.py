"""The step-time benchmark runs and reports consistent numbers (a smoke test: tiny sizes, no
timing is asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from rmsprop.benchmark import step_time


@pytest.mark.parametrize(
    "options, param_dtype, state_dtype, per_param",
    [({}, torch.float32, torch.float32, 20),  # read theta, g, v; write theta, v
     ({"momentum": 0.9}, torch.float32, torch.float32, 28),
     ({"momentum": 0.9, "centered": True}, torch.float32, torch.float32, 36),
     ({}, torch.bfloat16, torch.float32, 14),
     ({}, torch.float64, torch.float64, 40)],
)
def test_minimal_bytes(options, param_dtype, state_dtype, per_param):
    assert step_time.minimal_bytes(1000, options, param_dtype, state_dtype) == 1000 * per_param


@pytest.mark.slow
def test_main_writes_consistent_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert step_time.main([
        "--layouts", "64x250k,2000x1k", "--configs", "plain,momentum", "--scale", "0.001",
        "--repeats", "2", "--warmup", "1", "--no-peers", "--json", str(path),
    ]) == 0
    printed = capsys.readouterr().out
    last_two = [line.strip() for line in printed.rstrip().splitlines()[-2:]]
    assert last_two[0].startswith("default rmsprop-default")  # headline last: the default,
    assert last_two[1].startswith("fastest rmsprop-")  # then the fastest setting
    cases = json.loads(path.read_text())["cases"]
    assert [(c["layout"], c["config"]) for c in cases] == [
        ("64x250k", "plain"), ("64x250k", "momentum"), ("2000x1k", "plain"),
        ("2000x1k", "momentum")]
    for case in cases:
        results = case["results"]
        assert {"torch-loop", "torch-foreach", "rmsprop-default", "rmsprop-loop",
                "rmsprop-foreach", "triad-torch"} <= set(results)
        per_param = 28 if case["config"] == "momentum" else 20
        assert results["torch-loop"]["bytes"] == case["params"] * per_param
        best = results[case["torch_best"]]["median_ms"]
        assert best == min(results["torch-loop"]["median_ms"],
                           results["torch-foreach"]["median_ms"])
        for r in results.values():
            assert r["speedup_vs_torch_best"] == pytest.approx(best / r["median_ms"])
            assert r["gbps"] == pytest.approx(r["bytes"] / r["median_ms"] / 1e6)
        reference = results[case["bandwidth_reference"]]
        assert reference["bandwidth_fraction"] == pytest.approx(1.0)


def test_unknown_layout_is_a_usage_error():
    with pytest.raises(SystemExit):
        step_time.main(["--layouts", "nope"])
