"""The `rmsprop` command: help everywhere, the list, errors, and files written."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rmsprop import cli, experiments

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["demo", "--help"], ["experiments", "--help"],
                                  ["run", "--help"], ["report", "--help"]])
def test_help_everywhere(args):
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_no_arguments_prints_the_usage():
    result = runner.invoke(cli.app, [])
    assert result.exit_code in (0, 2)  # click's no_args_is_help exit status varies by version
    assert "Usage" in result.output and "demo" in result.output


def test_bench_help_is_the_benchmarks():
    result = runner.invoke(cli.app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--layouts" in result.output


def test_list_names_every_experiment():
    result = runner.invoke(cli.app, ["experiments"])
    assert result.exit_code == 0
    for name in experiments.names():
        assert name in result.output


def test_unknown_experiment_exits_2_and_lists_the_valid_names():
    result = runner.invoke(cli.app, ["run", "valey"])
    assert result.exit_code == 2
    assert "unknown experiment 'valey'" in result.output
    assert "policy-gradient" in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "memory", "--steps", "-3"], "--steps"),
    (["run", "valley", "--steps", "10"], "must be >= 200"),
    (["run", "memory", "--seed", "-1"], "--seed"),
    (["report", "--only", "nope"], "unknown experiment 'nope'"),
    (["run", "memory", "--seed", str(2**64)], "--seed"),
    (["run", "memory", "--out", __file__ + "/sub"], "--out"),
])
def test_bad_arguments_exit_2_with_a_message(args, message):
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_run_writes_png_and_json_and_prints_the_verdict(tmp_path):
    result = runner.invoke(cli.app, ["run", "adam-beta1-zero", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "adam-beta1-zero.json").read_text())
    text = " ".join(result.output.split())
    assert f"adam-beta1-zero {saved['verdict']}" in text
    assert "adam_vs_rmsprop_bias_corrected_max_rel_diff" in text
    assert (tmp_path / "adam-beta1-zero.png").read_bytes()[:4] == b"\x89PNG"
    assert saved["claim"] == experiments.get("adam-beta1-zero").SPEC.claim
    assert saved["deterministic"] is True and saved["seeds"] == []


def test_demo_runs_its_tour_counts_the_verdicts_and_writes_a_report(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "DEMO", ("adam-beta1-zero", "graves-nesterov"))  # the wiring
    result = runner.invoke(cli.app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    counts = re.search(r"rmsprop demo: (\d+) contradicted, (\d+) inconclusive, (\d+) "
                       r"reproduced \(of 2 claims\)", text)
    assert counts, text
    verdicts = [json.loads((tmp_path / f"{n}.json").read_text())["verdict"]
                for n in ("adam-beta1-zero", "graves-nesterov")]
    assert [int(c) for c in counts.groups()] == [verdicts.count(v) for v in experiments.VERDICTS]
    assert "demo settings" in text
    assert (tmp_path / "report.html").exists() and (tmp_path / "graves-nesterov.png").exists()


def test_strict_exits_1_when_a_claim_is_not_reproduced(tmp_path, monkeypatch):
    import dataclasses

    from rmsprop.experiments import adam_beta1
    from rmsprop.experiments._protocol import Criterion

    impossible = (Criterion("adam_vs_rmsprop_bias_corrected_max_rel_diff", "<", -1.0, "never"),)
    monkeypatch.setattr(adam_beta1, "SPEC", dataclasses.replace(adam_beta1.SPEC, criteria=impossible))
    result = runner.invoke(cli.app, ["run", "adam-beta1-zero", "--out", str(tmp_path), "--strict"])
    assert result.exit_code == 1
    assert "contradicted" in result.output


@pytest.mark.slow
def test_python_dash_m_rmsprop():
    done = subprocess.run([sys.executable, "-m", "rmsprop", "experiments"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "adagrad-decay" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "rmsprop", "run", "nope"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2
    assert "unknown experiment 'nope'" in bad.stderr


def test_an_unknown_experiment_gets_the_closest_name():
    result = runner.invoke(cli.app, ["run", "cold-strat"])
    assert result.exit_code == 2
    assert "did you mean 'cold-start'?" in " ".join(result.output.replace("│", " ").split())


def test_help_lists_the_experiments_and_the_flavours():
    from rmsprop import FLAVORS

    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    for name in [*experiments.names(), *FLAVORS]:
        assert f" {name}," in text or f" {name}." in text, name


def test_flavors_lists_every_flavour_with_what_it_reproduces():
    from rmsprop import flavors

    result = runner.invoke(cli.app, ["flavors"])
    assert result.exit_code == 0
    for name in flavors():
        assert name in result.output
