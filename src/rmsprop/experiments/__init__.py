"""The article's claims as runnable experiments, one module each.

Each module follows the protocol of :mod:`._protocol`: ``SPEC`` (the claim as data) and the
steps ``simulate``, ``measure`` and ``plot``; :func:`run` here is the one entry point (it
validates the arguments, creates the output folder, seeds, judges, writes and times the run).

Examples:
    >>> from rmsprop import experiments
    >>> experiments.names()[:2]
    ['valley', 'lr-forgiveness']
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
from ._execute import execute
from ._protocol import VERDICTS, count_verdicts, headline

__all__ = ["names", "get", "run", "summaries", "count_verdicts", "headline", "Result", "Table",
           "UnknownExperimentError", "VERDICTS"]

_MODULES = {  # the article's order
    "valley": "valley",
    "lr-forgiveness": "forgiveness",
    "heterogeneous-scales": "heterogeneous",
    "adagrad-decay": "adagrad_decay",
    "eps-placement": "eps_placement",
    "memory": "memory",
    "cold-start": "cold_start",
    "momentum": "momentum",
    "tf-momentum-form": "tf_momentum",
    "graves-nesterov": "graves",
    "adadelta": "adadelta",
    "adam-beta1-zero": "adam_beta1",
    "digits": "digits",
    "policy-gradient": "policy_gradient",
    "rnn": "rnn",
    "weight-decay": "weight_decay",
    "warmup": "warmup",
    "lr-jump": "lr_jump",
    "reddi": "reddi",
    "correlations": "correlations",
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
    return {name: get(name).SPEC.summary for name in _MODULES}


def run(
    name: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    out_dir: str | Path = "rmsprop-out",
    progress: Progress | None = None,
    quick: bool = False,
    n_seeds: int | None = None,
) -> Result:
    """Run experiment ``name`` and write its PNG and JSON into ``out_dir``.

    ``quick`` selects the demo's settings (fewer steps and seeds, said in the notes);
    ``n_seeds`` overrides the number of paired seeds (``seed``, ``seed + 1``, ...).

    Raises:
        UnknownExperimentError: ``name`` is not an experiment.
        ValueError: ``seed`` is negative, ``steps`` is below the experiment's minimum or
            ``n_seeds`` is below 1.
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
        result = execute(module, seed=seed, steps=steps, quick=quick, n_seeds=n_seeds,
                         out_dir=out, progress=progress or no_progress)
    result.seconds = time.perf_counter() - start
    saved = json.loads(result.json.read_text())
    saved["seconds"] = result.seconds
    result.json.write_text(json.dumps(saved, indent=1))
    return result
