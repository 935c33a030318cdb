"""The experiment registry: names, errors, determinism."""

from __future__ import annotations

import json

import pytest

from rmsprop import experiments
from rmsprop.experiments import UnknownExperimentError


def test_every_experiment_is_registered_with_its_constants():
    assert experiments.names() == ["valley", "adagrad-decay", "cold-start", "momentum", "reddi",
                                   "memory", "rnn", "digits", "policy-gradient", "warmup"]
    for name in experiments.names():
        module = experiments.get(name)
        assert module.NAME == name
        assert module.SUMMARY and module.CLAIM
        assert module.MIN_STEPS <= module.QUICK_STEPS <= module.DEFAULT_STEPS


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownExperimentError, match="valid names: valley, adagrad-decay"):
        experiments.get("valey")


@pytest.mark.parametrize("bad", [-1, 199])
def test_bad_steps_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="steps for 'valley' must be >= 200"):
        experiments.run("valley", steps=bad, out_dir=tmp_path)


def test_negative_seed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seed must be >= 0"):
        experiments.run("memory", seed=-1, out_dir=tmp_path)


@pytest.mark.slow
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    def data(seed, sub):
        result = experiments.run("adagrad-decay", seed=seed, steps=400, out_dir=tmp_path / sub)
        return json.loads(result.json.read_text())["data"]

    first = data(3, "a")
    assert data(3, "b") == first
    assert data(4, "c") != first
