"""The article's claims as runnable experiments, one module each.

Each module has ``NAME``, ``SUMMARY`` (one line), ``CLAIM``, ``DEFAULT_STEPS``, ``MIN_STEPS``
and ``run(seed, steps, out_dir, progress=None) -> Result``; :func:`run` here is the one
entry point (it validates the arguments, creates the output folder, seeds and times the run).

Examples:
    >>> from rmsprop import experiments
    >>> experiments.names()[:2]
    ['valley', 'adagrad-decay']
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from types import ModuleType

from ..extras import require
from ..suggest import did_you_mean

require("rmsprop.experiments", "lab", "torch", "matplotlib")

from ._base import Progress, Result, Table, no_progress, single_thread

__all__ = ["names", "get", "run", "summaries", "Result", "Table", "UnknownExperimentError"]

_MODULES = {
    "valley": "valley",
    "adagrad-decay": "adagrad_decay",
    "cold-start": "cold_start",
    "momentum": "momentum",
    "reddi": "reddi",
    "memory": "memory",
    "rnn": "rnn",
    "digits": "digits",
    "policy-gradient": "policy_gradient",
    "warmup": "warmup",
}


class UnknownExperimentError(KeyError):
    """An experiment name that is not in the registry (the message lists the valid ones)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def names() -> list[str]:
    """The experiments, in the article's order."""
    return list(_MODULES)


def get(name: str) -> ModuleType:
    """The module of experiment ``name``."""
    if name not in _MODULES:
        raise UnknownExperimentError(
            f"unknown experiment {name!r}{did_you_mean(name, _MODULES)} "
            f"(valid names: {', '.join(_MODULES)})"
        )
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def summaries() -> dict[str, str]:
    """One line per experiment."""
    return {name: get(name).SUMMARY for name in _MODULES}


def run(
    name: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    out_dir: str | Path = "rmsprop-out",
    progress: Progress | None = None,
) -> Result:
    """Run experiment ``name`` and write its PNG and JSON into ``out_dir``.

    Raises:
        UnknownExperimentError: ``name`` is not an experiment.
        ValueError: ``seed`` is negative or ``steps`` is below the experiment's minimum.
    """
    module = get(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with single_thread():
        result = module.run(seed=seed, steps=steps, out_dir=out, progress=progress or no_progress)
    result.seconds = time.perf_counter() - start
    saved = json.loads(result.json.read_text())
    saved["seconds"] = result.seconds
    result.json.write_text(json.dumps(saved, indent=1))
    return result
