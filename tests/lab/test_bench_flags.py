"""`rmsprop bench` flags the figures it cannot vouch for: above the bandwidth measured in the
same run, or spread too widely over the rounds; --strict turns a flag into exit status 1.

The timings are replaced by fixed ones (``measure`` patched), so the flags are checked on
known numbers, not on this machine's load.
"""

from __future__ import annotations

import json

import pytest

from rmsprop.benchmark import step_time


def _timings(fast: str | None = None, noisy: str | None = None):
    """A ``measure`` stand-in: the triads move 1 GB/s and every step half that, except
    ``fast`` (100 GB/s, above the triad's bandwidth) and ``noisy`` (rounds from 0.5x to 1.5x
    of its median)."""
    def measure(contenders, warmup, repeats, device):
        times = {}
        for c in contenders:
            rate = 1e9 if c.kind == "bandwidth" else 100e9 if c.name == fast else 0.5e9
            median = c.bytes / rate
            if c.name == noisy:
                times[c.name] = [median * (0.5 + i / (repeats - 1)) for i in range(repeats)]
            else:
                times[c.name] = [median] * repeats
        return times
    return measure


ARGS = ["--layouts", "2000x1k", "--configs", "plain", "--scale", "0.001", "--repeats", "5",
        "--warmup", "0", "--no-peers"]


def test_a_figure_above_the_measured_bandwidth_is_flagged(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(step_time, "measure", _timings(fast="rmsprop-loop"))
    path = tmp_path / "bench.json"
    assert step_time.main([*ARGS, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    (case,) = report["cases"]
    loop = case["results"]["rmsprop-loop"]
    assert loop["bandwidth_fraction"] == pytest.approx(100)
    assert loop["flags"] == ["above-ceiling"]
    assert case["flagged"] == ["rmsprop-loop"]
    assert report["ok"] is False and len(report["flags"]) == 1
    printed = capsys.readouterr().out
    assert "[above-ceiling]" in printed and "Flagged figures" in printed
    # the headline last: the default's line, then the fastest setting's
    assert printed.rstrip().splitlines()[-1].strip().startswith("fastest rmsprop-")


def test_a_wide_spread_is_flagged_noisy_and_strict_exits_1(monkeypatch):
    monkeypatch.setattr(step_time, "measure", _timings(noisy="torch-foreach"))
    assert step_time.main(ARGS) == 0
    assert step_time.main([*ARGS, "--strict"]) == 1


def test_clean_figures_are_not_flagged_and_strict_exits_0(monkeypatch, tmp_path):
    monkeypatch.setattr(step_time, "measure", _timings())
    path = tmp_path / "bench.json"
    assert step_time.main([*ARGS, "--strict", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["ok"] is True and report["flags"] == []
    assert all(not r["flags"] for r in report["cases"][0]["results"].values())


def test_flags_by_their_thresholds():
    base = {"kind": "ours", "median_ms": 1.0, "p25_ms": 0.9, "p75_ms": 1.1}
    assert step_time.flags({**base, "bandwidth_fraction": 1.0}) == []
    assert step_time.flags({**base, "bandwidth_fraction": 1.2}) == ["above-ceiling"]
    assert step_time.flags({**base, "kind": "bandwidth", "bandwidth_fraction": 1.2}) == []
    assert step_time.flags({**base, "p75_ms": 1.3, "bandwidth_fraction": 0.5}) == ["noisy"]


def test_quick_runs_the_small_layouts(monkeypatch, tmp_path):
    monkeypatch.setattr(step_time, "measure", _timings())
    path = tmp_path / "bench.json"
    assert step_time.main(["--quick", "--no-peers", "--scale", "0.001", "--json", str(path)]) == 0
    cases = json.loads(path.read_text())["cases"]
    assert [c["layout"] for c in cases] == ["64x250k", "64x250k", "2000x1k", "2000x1k"]
    assert {c["repeats"] for c in cases} == {5}


def test_a_misspelt_layout_gets_the_closest(capsys):
    with pytest.raises(SystemExit) as exit_:
        step_time.main(["--layouts", "2000x1K0"])
    assert exit_.value.code == 2
    assert "did you mean '2000x1k'" in capsys.readouterr().err


def test_the_plot_has_a_log_axis(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, *a, **k: seen.append(self.axes[0].get_yscale()))
    monkeypatch.setattr(step_time, "measure", _timings())
    assert step_time.main([*ARGS, "--plot", str(tmp_path / "p.png")]) == 0
    assert seen == ["log"]
