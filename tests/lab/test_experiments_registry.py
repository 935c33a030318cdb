"""The experiment registry: names, errors, determinism."""

from __future__ import annotations

import json

import pytest

from rmsprop import experiments
from rmsprop.experiments import UnknownExperimentError


def test_every_experiment_is_registered_with_its_spec():
    assert experiments.names()[:2] == ["valley", "lr-forgiveness"]
    assert len(set(experiments.names())) == len(experiments.names()) >= 16
    for name in experiments.names():
        spec = experiments.get(name).SPEC
        assert spec.name == name and spec.summary and spec.claim and spec.hypothesis
        assert spec.min_steps <= spec.quick_steps <= spec.default_steps


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownExperimentError, match="valid names: valley, lr-forgiveness"):
        experiments.get("valey")


@pytest.mark.parametrize("bad", [-1, 199])
def test_bad_steps_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="steps for 'valley' must be >= 200"):
        experiments.run("valley", steps=bad, out_dir=tmp_path)


def test_negative_seed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seed must be >= 0"):
        experiments.run("memory", seed=-1, out_dir=tmp_path)


def test_bad_seed_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="n_seeds for 'weight-decay' must be an int >= 1"):
        experiments.run("weight-decay", n_seeds=0, out_dir=tmp_path)


# weight-decay (NumPy's generator) in the fast tier; adagrad-decay (torch's) in the full suite
@pytest.mark.parametrize("name, steps", [
    pytest.param("adagrad-decay", 400, marks=pytest.mark.slow), ("weight-decay", 200)])
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, name, steps):
    def doc(seed, sub):
        result = experiments.run(name, seed=seed, steps=steps, quick=True,
                                 out_dir=tmp_path / sub)
        saved = json.loads(result.json.read_text())
        return saved["figures"], saved["seeds"]

    first = doc(3, "a")
    assert doc(3, "b") == first
    assert first[1] == [3, 4]
    assert doc(4, "c") != first
