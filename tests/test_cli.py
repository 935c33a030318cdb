"""The `rmsprop` command: help everywhere, the list, errors, and files written."""

from __future__ import annotations

import json
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


def test_run_writes_png_and_json_and_prints_the_figure(tmp_path):
    result = runner.invoke(cli.app, ["run", "memory", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "state / model bytes: RMSProp 1.0" in result.output.replace("\n", " ")
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "memory.json").read_text())
    assert saved["passed"] is True
    assert saved["data"]["state_bytes"]["MLP 64-64-64-10"]["SGD"] == 0


def test_demo_runs_its_tour_and_writes_a_report(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "DEMO", ("memory",))  # the wiring; the experiments have own tests
    result = runner.invoke(cli.app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 of 1 claims hold" in result.output
    assert (tmp_path / "report.html").exists() and (tmp_path / "memory.png").exists()


def test_strict_exits_1_when_a_claim_fails(tmp_path, monkeypatch):
    from rmsprop.experiments import memory

    monkeypatch.setattr(memory, "RMS_RANGE", (5.0, 6.0))  # an impossible bar
    result = runner.invoke(cli.app, ["run", "memory", "--out", str(tmp_path), "--strict"])
    assert result.exit_code == 1
    assert "FAIL" in result.output


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
