"""The protocol every experiment follows: a claim as data, then simulate, measure, judge, plot.

An experiment module defines

* ``SPEC``: a :class:`Spec` (name, the article's sentence verbatim, the hypothesis as a
  measurable statement, :class:`Criterion` thresholds fixed in code with a one-line rationale,
  the optimizers with their learning-rate grids, the seeds);
* ``simulate(cfg, progress) -> raw``: every run, nothing judged;
* ``measure(raw, cfg) -> Measurement``: figures with 95 % intervals, one :class:`Tuned` record
  per optimizer of ``SPEC.optimizers``, labelled sanity checks;
* ``plot(raw, measurement, cfg) -> Figure``.

:func:`judge` is not the module's: it derives the verdict from the measured figures and the
spec's criteria alone, so the JSON carries everything needed to re-judge it.

Verdicts. For each criterion ``figure op threshold`` the figure's 95 % interval decides:
entirely on the claimed side is *reproduced*, entirely on the other side (or on the threshold)
*contradicted*, straddling it *inconclusive*. The experiment is contradicted if any criterion
is, reproduced if all are, inconclusive otherwise; a tuned optimizer whose best learning rate
is on an edge of its grid makes a best-vs-best comparison unsupported, so the verdict is then
inconclusive whatever the criteria say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "VERDICTS", "Criterion", "Spec", "Config", "Figure", "Tuned", "Measurement", "interval",
    "tune", "judge", "count_verdicts", "headline", "settle_steps", "first_dip", "censored", "log_grid", "points_per_decade",
    "Settling", "tune_by_settling", "tune_each_by_settling", "settling_header", "short_target",
]

VERDICTS = ("contradicted", "inconclusive", "reproduced")  # the order reports list them in
MIN_SEEDS = 5
MIN_POINTS_PER_DECADE = 3.0


@dataclass(frozen=True)
class Criterion:
    """``figure op threshold``: what a measured figure must satisfy for the claim to hold.

    ``op`` is ``">"`` or ``"<"``; ``why`` is the one-line rationale of the threshold.
    """

    figure: str
    op: str
    threshold: float
    why: str

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise ValueError(f"criterion on {self.figure!r}: op must be '>' or '<', got {self.op!r}")
        if not self.why:
            raise ValueError(f"criterion on {self.figure!r} needs a rationale (why)")

    def status(self, low: float, high: float) -> str:
        """The verdict of this criterion for a figure whose 95 % interval is [low, high]."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return "inconclusive"
        if self.op == ">":
            if low > self.threshold:
                return "reproduced"
            return "contradicted" if high <= self.threshold else "inconclusive"
        if high < self.threshold:
            return "reproduced"
        return "contradicted" if low >= self.threshold else "inconclusive"

    def text(self) -> str:
        return f"{self.figure} {self.op} {self.threshold:g}"


def points_per_decade(grid: Sequence[float]) -> float:
    """Grid density: (points - 1) per decade spanned."""
    lo, hi = min(grid), max(grid)
    return (len(grid) - 1) / math.log10(hi / lo) if hi > lo else 0.0


def log_grid(low: float, high: float, per_decade: int = 3) -> tuple[float, ...]:
    """A log-spaced grid from ``low`` to ``high`` with ``per_decade`` points per decade."""
    n = math.ceil(math.log10(high / low) * per_decade - 1e-9) + 1
    return tuple(float(v) for v in np.logspace(math.log10(low), math.log10(high), n))


@dataclass(frozen=True)
class Spec:
    """An experiment as data (see the module docstring).

    ``claim`` is a sentence of the article, verbatim (tests check it against the article's text);
    ``optimizers`` maps each tuned optimizer to its learning-rate grid (>= 3 points per decade);
    ``n_seeds`` paired seeds at full settings (>= 5 unless ``deterministic``), ``quick_seeds`` at
    the demo's.
    """

    name: str
    summary: str
    section: str
    claim: str
    hypothesis: str
    criteria: tuple[Criterion, ...]
    optimizers: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    deterministic: bool = False
    n_seeds: int = MIN_SEEDS
    quick_seeds: int = 2
    default_steps: int = 1000
    min_steps: int = 100
    quick_steps: int = 300
    heavy: bool = False  # minutes at full settings: parallel runs start it first

    def __post_init__(self) -> None:
        if not self.criteria:
            raise ValueError(f"experiment {self.name!r} has no criterion: nothing could judge it")
        if not self.deterministic and self.n_seeds < MIN_SEEDS:
            raise ValueError(f"experiment {self.name!r}: a stochastic experiment needs >= "
                             f"{MIN_SEEDS} seeds at full settings, got {self.n_seeds}")
        for name, grid in self.optimizers.items():
            density = points_per_decade(grid)
            if len(grid) < 3 or density < MIN_POINTS_PER_DECADE - 1e-9:
                raise ValueError(f"experiment {self.name!r}, optimizer {name!r}: the lr grid needs "
                                 f">= 3 points and >= {MIN_POINTS_PER_DECADE:g} per decade, got "
                                 f"{len(grid)} points, {density:.2f} per decade")
        if not self.min_steps <= self.quick_steps <= self.default_steps:
            raise ValueError(f"experiment {self.name!r}: need min_steps <= quick_steps <= "
                             f"default_steps")


@dataclass(frozen=True)
class Config:
    """The settings of one run: steps, the paired seeds, and whether these are demo settings."""

    steps: int
    seeds: tuple[int, ...]
    quick: bool = False


@dataclass
class Figure:
    """A measured figure: its mean over seeds and a 95 % interval (t-interval over seeds)."""

    mean: float
    low: float
    high: float
    n: int
    unit: str = ""
    values: list[float] = field(default_factory=list)

    def text(self, fmt: str = ".3g") -> str:
        if self.n <= 1 or self.low == self.high:
            return f"{self.mean:{fmt}}"
        return f"{self.mean:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def interval(values: ArrayLike, unit: str = "") -> Figure:
    """Mean and 95 % Student-t interval of per-seed values (one value: a point, no width)."""
    data = np.atleast_1d(np.asarray(values, dtype=np.float64))
    mean = float(np.mean(data))
    if len(data) < 2 or not np.all(np.isfinite(data)):
        low = high = mean if len(data) < 2 else float("nan")
    else:
        sem = float(np.std(data, ddof=1) / math.sqrt(len(data)))
        if sem == 0.0:
            low = high = mean
        else:
            from scipy import stats  # type: ignore[import-untyped]  # scipy ships no types

            low, high = (float(v) for v in stats.t.interval(0.95, len(data) - 1, loc=mean,
                                                             scale=sem))
    return Figure(mean, low, high, len(data), unit, [float(v) for v in data])


@dataclass
class Tuned:
    """One optimizer's tuning: the grid, its score at each lr (mean and 95 % interval over
    seeds), the best lr and whether it lies on an edge of the grid."""

    lr_grid: list[float]
    score: str
    score_by_lr: list[Figure]
    best_lr: float
    best_index: int
    best_lr_on_edge: bool
    lower_is_better: bool = True


def tune(grid: Sequence[float], scores: np.ndarray, score: str, *,
         lower_is_better: bool = True, tiebreak: np.ndarray | None = None) -> Tuned:
    """Pick the best lr of ``grid`` from ``scores`` (lr, seed) by the mean over seeds.

    Non-finite scores (a diverged run) count as the worst. Ties (e.g. no lr reached a target)
    are broken by the lowest mean of ``tiebreak`` (lr, seed), e.g. the final loss; a plateau
    that stays tied (every lr of a range converged) gives its middle lr. The best is
    flagged when it is the first or the last point of the grid: the grid then does not
    bracket it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    worst = np.inf if lower_is_better else -np.inf
    clean = np.where(np.isfinite(scores), scores, worst)
    means = clean.mean(1)
    best = int(np.argmin(means) if lower_is_better else np.argmax(means))
    tied = np.flatnonzero(means == means[best])
    if tiebreak is not None and len(tied) > 1:
        extra = np.asarray(tiebreak, dtype=np.float64).reshape(len(grid), -1)
        extra = np.where(np.isfinite(extra), extra, np.inf).mean(1)
        tied = tied[extra[tied] == extra[tied].min()]
    best = int(tied[len(tied) // 2])  # a plateau of equal scores: its middle, not its end
    return Tuned(
        lr_grid=[float(v) for v in grid], score=score,
        score_by_lr=[interval(row) for row in clean], best_lr=float(grid[best]),
        best_index=best, best_lr_on_edge=best in (0, len(grid) - 1),
        lower_is_better=lower_is_better)


@dataclass
class Measurement:
    """What ``measure`` returns: figures (judged), tuning records, labelled sanity checks
    (never the verdict), tables and notes for the report."""

    figures: dict[str, Figure]
    tuned: dict[str, Tuned] = field(default_factory=dict)
    sanity: dict[str, bool] = field(default_factory=dict)
    tables: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def judge(criteria: Sequence[Criterion], figures: Mapping[str, Any],
          edges: Mapping[str, bool]) -> tuple[str, list[str]]:
    """The verdict and the reasons, from the criteria, each figure's ``low``/``high`` and the
    tuned optimizers' ``best_lr_on_edge`` flags. ``figures`` values are :class:`Figure` or
    the dicts the JSON holds."""

    def bounds(fig: Any) -> tuple[float, float]:
        if isinstance(fig, Figure):
            return fig.low, fig.high
        return _num(fig["low"]), _num(fig["high"])

    reasons, statuses = [], []
    for c in criteria:
        if c.figure not in figures:
            raise KeyError(f"criterion on {c.figure!r}: the measurement has no such figure")
        low, high = bounds(figures[c.figure])
        status = c.status(low, high)
        statuses.append(status)
        reasons.append(f"{c.text()}: 95% interval [{low:.4g}, {high:.4g}] -> {status}")
    if "contradicted" in statuses:
        verdict = "contradicted"
    elif all(s == "reproduced" for s in statuses):
        verdict = "reproduced"
    else:
        verdict = "inconclusive"
    on_edge = sorted(name for name, edge in edges.items() if edge)
    if on_edge and verdict != "inconclusive":
        reasons.append(f"best lr on the edge of its grid for {', '.join(on_edge)}: the "
                       f"comparison is not best vs best, so {verdict} cannot be claimed")
        verdict = "inconclusive"
    return verdict, reasons


def _num(value: Any) -> float:
    return float(value) if not isinstance(value, str) else float(value)  # 'nan', 'inf'


def settle_steps(losses: np.ndarray, target: float) -> np.ndarray:
    """Per column of ``losses`` (steps + 1, runs), the first step after which the loss stays
    <= target to the end, or NaN when the last value is above it (NaN losses count as above).
    Step 0 is the start point."""
    above = ~(np.asarray(losses) <= target)
    n = above.shape[0]
    any_above = above.any(0)
    last_above = n - 1 - np.argmax(above[::-1], axis=0)
    out = np.where(any_above, last_above + 1, 0).astype(np.float64)
    out[above[-1]] = np.nan
    return out


def first_dip(losses: np.ndarray, target: float) -> np.ndarray:
    """Per column, the first step whose loss is <= target (NaN if never): a secondary figure."""
    below = np.asarray(losses) <= target
    out = np.argmax(below, axis=0).astype(np.float64)
    out[~below.any(0)] = np.nan
    return out


def censored(steps: np.ndarray, budget: int) -> np.ndarray:
    """Steps with 'not reached' (NaN) counted as budget + 1: a bound that favours the loser."""
    return np.where(np.isfinite(steps), steps, budget + 1.0)


def count_verdicts(results: Sequence[Any]) -> dict[str, int]:
    """How many results (anything with a ``verdict``) have each verdict, contradictions first."""
    return {v: sum(r.verdict == v for r in results) for v in VERDICTS}


def headline(results: Sequence[Any]) -> str:
    """'N contradicted, N inconclusive, N reproduced (of N claims)'."""
    counts = count_verdicts(results)
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + f" (of {len(results)} claims)"


@dataclass
class Settling:
    """A tuning by steps to settle: the record, the censored steps at the best lr per seed,
    and the table cells (best lr, steps to settle, seeds settled, first dip, log10 final
    f / f0)."""

    tuned: Tuned
    best: np.ndarray
    cells: list[str]


def tune_by_settling(grid: Sequence[float], loss: np.ndarray, relative_target: float,
                     budget: int, score: str) -> Settling:
    """Tune on ``loss`` (step, lr, seed) by the steps after which ``loss / loss[0]`` stays
    below ``relative_target`` (not reached: ``budget + 1``), ties broken by the final loss."""
    rel = loss / loss[0]
    settle = settle_steps(rel.reshape(rel.shape[0], -1), relative_target).reshape(rel.shape[1:])
    t = tune(grid, censored(settle, budget), score, tiebreak=np.log10(rel[-1]))
    b = t.best_index
    best = censored(settle[b], budget)
    cells = [f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
             interval(best).text(".0f"),
             f"{int(np.isfinite(settle[b]).sum())}/{settle.shape[1]}",
             interval(censored(first_dip(rel[:, b], relative_target), budget)).text(".0f"),
             interval(np.log10(rel[-1, b])).text(".2f")]
    return Settling(t, best, cells)


def tune_each_by_settling(names: Iterable[str], grids: Mapping[str, Sequence[float]],
                          losses: Mapping[str, np.ndarray], relative_target: float, budget: int,
                          score: str) -> tuple[dict[str, Tuned], dict[str, np.ndarray],
                                               list[list[str]]]:
    """:func:`tune_by_settling` of each of ``names`` on its grid and loss: the tunings, the
    censored steps at each best lr (per seed), and a table row each (the name, then
    :attr:`Settling.cells`; headers: :func:`settling_header`)."""
    tuned, best, rows = {}, {}, []
    for name in names:
        s = tune_by_settling(grids[name], losses[name], relative_target, budget, score)
        tuned[name], best[name] = s.tuned, s.best
        rows.append([name, *s.cells])
    return tuned, best, rows


def short_target(relative_target: float) -> str:
    """``1e-4`` for 0.0001: the target as the tables and plots write it."""
    return f"{relative_target:.0e}".replace("e-0", "e-")


def settling_header(first: str, relative_target: float, best_lr: str = "best lr") -> list[str]:
    """The headers of the rows of :func:`tune_each_by_settling`: ``first`` (what a row is),
    ``best_lr``, then those of :attr:`Settling.cells`."""
    target = short_target(relative_target)
    return [first, best_lr, f"steps to stay below {target} f0", "seeds settled",
            f"first dip below {target} f0", "log10 final f / f0"]
