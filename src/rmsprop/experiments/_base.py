"""What every experiment shares: the :class:`Result` it returns, seeding, files and plots.

Plots are drawn on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, so
running an experiment never touches pyplot's global state or the user's backend.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = [
    "Result",
    "Table",
    "Progress",
    "no_progress",
    "seeded",
    "single_thread",
    "new_figure",
    "save_figure",
    "jsonable",
    "check_steps",
]

#: ``progress(fraction_done)`` with ``fraction_done`` in [0, 1]; the CLI draws it as a bar.
Progress = Callable[[float], None]


def no_progress(fraction: float) -> None:  # noqa: ARG001 - the silent default
    """A :data:`Progress` that shows nothing."""


@dataclass
class Table:
    """A small table for the terminal and the HTML report."""

    headers: list[str]
    rows: list[list[Any]]
    title: str = ""


@dataclass
class Result:
    """What one experiment found (the JSON beside it holds every number).

    Attributes:
        name: the experiment's registry name.
        claim: the article's sentence, verbatim.
        verdict: ``"reproduced"``, ``"contradicted"`` or ``"inconclusive"``.
        finding: one line: each judged figure (mean and 95 % interval) against its threshold.
        reasons: one line per criterion (and the grid-edge rule) behind the verdict.
        figures: the judged numbers by name, each ``{mean, low, high, n, ...}``.
        pngs: the plots written.
        json: the JSON file.
        tables: tables for the terminal and the report.
        notes: what a reader should know (demo settings, a failed sanity check...).
        seconds: wall time of the run.
        seeds: the paired seeds (empty when the experiment is deterministic).
        steps: the length of the run.
    """

    name: str
    claim: str
    verdict: str
    finding: str
    reasons: list[str]
    figures: dict[str, Any]
    pngs: list[Path]
    json: Path
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pngs"] = [str(p) for p in self.pngs]
        data["json"] = str(self.json)
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    """Plain JSON types; non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def jsonable(value: Any) -> Any:
    """Plain JSON types (see :func:`_jsonable`)."""
    return _jsonable(value)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[np.random.Generator]:
    """Seed Python, NumPy and torch; yield a NumPy generator for the experiment's own draws."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    yield np.random.default_rng(seed)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the models are tiny, and results then do not depend on the
    number of cores (reductions split across threads round differently)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_steps(steps: int | None, default: int, minimum: int, name: str) -> int:
    """``steps`` or the default; a ValueError naming the experiment if it is below ``minimum``."""
    if steps is None:
        return default
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {steps!r}")
    if steps < minimum:
        raise ValueError(f"steps for {name!r} must be >= {minimum}, got {steps}")
    return steps


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float = 4.2,
               title: str = "") -> tuple[Any, Any]:
    """A figure (no pyplot) with a grid of axes; returns ``(figure, axes array)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    if title:
        fig.suptitle(title, fontsize=13, fontweight="bold")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return fig, axes


def save_figure(fig: Any, path: Path) -> Path:
    """Render with the Agg canvas and write a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path
