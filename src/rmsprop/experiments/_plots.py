"""Plot pieces every experiment uses: mean curves with 95 % bands, the lr sweep of a tuning.

Nothing is clipped: values a log axis cannot show (zero, negative, NaN) are counted and the
count is printed on the axes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._base import new_figure
from ._protocol import Tuned, short_target

__all__ = ["band", "best_lr_bands", "cut_early_transient", "lr_sweep", "final_loss_sweep",
           "flag_hidden", "t_band", "settling_panels", "settling_figure"]


def t_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``values`` (seeds, points): mean and the 95 % t-interval's bounds."""
    from scipy import stats  # type: ignore[import-untyped]  # scipy ships no type information

    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(0)
    n = values.shape[0]
    if n < 2:
        return mean, mean, mean
    sem = values.std(0, ddof=1) / np.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * sem
    return mean, mean - half, mean + half


def band(ax: Any, x: ArrayLike, values: np.ndarray, color: str, label: str, *,
         lw: float = 1.4, ls: str = "-") -> None:
    """Mean over seeds (a line) and its 95 % interval (a band), each with a legend entry; on
    a log-scaled axis (set the scale first) the mean and interval are those of log10."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n = values.shape[0]
    if ax.get_yscale() == "log":  # on a log axis: mean and interval of log10, shown back in
        flag_hidden(ax, values)   # linear units (a linear interval would reach below zero)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean, low, high = (10 ** v for v in t_band(np.log10(np.where(values > 0, values, np.nan))))
        what = "geometric mean"
    else:
        mean, low, high = t_band(values)
        what = "mean"
    ax.plot(x, mean, color=color, lw=lw, ls=ls,
            label=f"{label} ({what} of {n} seeds)" if n > 1 else label)
    if n > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0,
                        label=f"{label}: 95% interval")


def best_lr_bands(ax: Any, x: ArrayLike, tuned: Mapping[str, Tuned], colors: Mapping[str, str],
                  names: Iterable[str], curve_at: Callable[[str, int], np.ndarray],
                  lr_word: str = "lr") -> None:
    """For each of ``names``, the :func:`band` of ``curve_at(name, index of its best lr)``
    (seeds, points), labelled with that lr."""
    for name in names:
        t = tuned[name]
        band(ax, x, curve_at(name, t.best_index), colors[name],
             f"{name} {lr_word} {t.best_lr:.3g}")


def flag_hidden(ax: Any, values: np.ndarray | None) -> None:
    """Say on the axes how many values a log scale cannot show (no silent clipping)."""
    if values is None:
        return
    values = np.asarray(values, dtype=np.float64)
    hidden = int(np.sum(~(values > 0)))
    if hidden:
        ax.text(0.01, 0.01, f"{hidden} value(s) <= 0 or NaN not drawn", transform=ax.transAxes,
                fontsize=7, color="tab:red", va="bottom")


def cut_early_transient(ax: Any, curves: Sequence[np.ndarray], levels: Sequence[float],
                        skip: float = 0.05) -> None:
    """Where the first ``skip`` fraction of steps spans over 3x the range of the rest, fit the
    y axis to ``curves`` (each (steps, seeds)) after them and to ``levels``, and say so on the
    axes with the range the first steps reach (an early transient must not flatten the rest,
    nor vanish unsaid)."""
    steps = curves[0].shape[0]
    after = np.concatenate([np.ravel(c[int(skip * steps):]) for c in curves] + [list(levels)])
    every = np.concatenate([np.ravel(c) for c in curves] + [list(levels)])
    after, every = after[np.isfinite(after)], every[np.isfinite(every)]
    lo, hi = float(after.min()), float(after.max())
    if every.max() - every.min() <= 3 * (hi - lo):  # the transient does not crowd the rest
        return
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.text(0.01, 0.99, f"axis cut: seeds reach [{every.min():.3g}, {every.max():.3g}] in the "
            f"first {skip:.0%} of steps", transform=ax.transAxes, fontsize=7,
            color="tab:red", va="top")


def lr_sweep(ax: Any, tuned: Mapping[str, Tuned], colors: Mapping[str, str], ylabel: str, *,
             log_y: bool = True) -> None:
    """The score against lr for every tuned optimizer: mean with 95 % error bars, the best lr
    starred, the grid's edges marked, runs that diverged or never reached the target drawn
    as crosses at the top."""
    finite_all = [f.mean for t in tuned.values() for f in t.score_by_lr if np.isfinite(f.mean)]
    top = max(finite_all) if finite_all else 1.0
    for name, t in tuned.items():
        lrs = np.array(t.lr_grid)
        mean = np.array([f.mean for f in t.score_by_lr])
        low = np.array([f.low if np.isfinite(f.low) else f.mean for f in t.score_by_lr])
        high = np.array([f.high if np.isfinite(f.high) else f.mean for f in t.score_by_lr])
        ok = np.isfinite(mean)
        with np.errstate(invalid="ignore"):
            yerr = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
        ax.errorbar(lrs[ok], mean[ok], yerr=yerr[:, ok], fmt="o-", ms=3.5, lw=1.2, capsize=2,
                    color=colors[name], label=f"{name} (bars: 95% interval)")
        if (~ok).any():
            ax.plot(lrs[~ok], np.full((~ok).sum(), top * (3 if log_y else 1.1)), "x",
                    color=colors[name], ms=7, label=f"{name}: diverged / not reached")
        best = t.best_index
        edge = " ON GRID EDGE" if t.best_lr_on_edge else ""
        ax.plot([t.lr_grid[best]], [mean[best]], "*", ms=14, color=colors[name], mec="k",
                label=f"{name} best lr {t.best_lr:.3g}{edge}")
        for end in (lrs[0], lrs[-1]):
            ax.axvline(end, color=colors[name], ls=":", lw=0.8)
    ax.plot([], [], ":", color="0.4", label="dotted: each grid's edges")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def final_loss_sweep(ax: Any, tuned: Mapping[str, Tuned], finals: Mapping[str, np.ndarray],
                     colors: Mapping[str, str], ylabel: str = "log10 final loss") -> None:
    """Final loss against lr for every tuned optimizer (``finals[name]``: (lrs, seeds)), mean
    with 95 % error bars; the lr the tuning chose is starred, diverged runs drawn as crosses."""
    from ._protocol import interval

    figures = {name: [interval(row) for row in np.asarray(finals[name])] for name in tuned}
    # Crosses go just above the drawn means and bars: a single seed that blew up to 1e270
    # without overflowing must not squash the lrs that were drawn.
    drawn = [max(f.mean, f.high if np.isfinite(f.high) else f.mean)
             for figs in figures.values() for f in figs if np.isfinite(f.mean)]
    top = max(drawn) if drawn else 1.0
    for name, t in tuned.items():
        lrs = np.array(t.lr_grid)
        figs = figures[name]
        mean = np.array([f.mean for f in figs])
        ok = np.isfinite(mean)
        low = np.array([f.low if np.isfinite(f.low) else f.mean for f in figs])
        high = np.array([f.high if np.isfinite(f.high) else f.mean for f in figs])
        with np.errstate(invalid="ignore"):  # inf - inf where a run diverged: masked by ok
            yerr = [np.clip(mean - low, 0, None)[ok], np.clip(high - mean, 0, None)[ok]]
        ax.errorbar(lrs[ok], mean[ok], yerr=yerr,
                    fmt="o-", ms=3.5, lw=1.2, capsize=2, color=colors[name],
                    label=f"{name} (bars: 95% interval)")
        if (~ok).any():
            ax.plot(lrs[~ok], np.full((~ok).sum(), top + 1), "x", color=colors[name], ms=7,
                    label=f"{name}: diverged in a seed (drawn at the top)")
        b = t.best_index
        if ok[b]:
            ax.plot([lrs[b]], [mean[b]], "*", ms=13, color=colors[name], mec="k",
                    label=f"{name}: the tuned lr {t.best_lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6)


def settling_panels(ax_lr: Any, ax_final: Any, tuned: Mapping[str, Tuned],
                    raw: Mapping[str, np.ndarray], colors: Mapping[str, str], steps: int,
                    relative_target: float, lr_word: str = "lr") -> None:
    """The two tuning panels of an experiment judged by steps to settle below
    ``relative_target * f0``: steps to settle vs lr (the budget dashed) and the final loss
    relative to the first vs lr (the target dashed). ``raw[name]`` is the loss, step first."""
    lr_sweep(ax_lr, tuned, colors, f"steps until f stays below {short_target(relative_target)} f0")
    ax_lr.axhline(steps + 1, color="0.5", ls="--", lw=0.8)
    if lr_word != "lr":
        ax_lr.set_xlabel(f"{lr_word} (log scale)")
    ax_lr.set_title(f"steps to settle vs {lr_word} (dashed: budget {steps})", fontsize=10)
    final_loss_sweep(ax_final, tuned, {n: np.log10(raw[n][-1] / raw[n][0]) for n in tuned},
                     colors, "log10 final f / f0")
    ax_final.axhline(np.log10(relative_target), color="k", ls="--", lw=1)
    ax_final.set_title("final loss vs lr (dashed: target)", fontsize=10)


def settling_figure(title: str, raw: Mapping[str, np.ndarray], tuned: Mapping[str, Tuned],
                    names: Iterable[str], colors: Mapping[str, str], steps: int,
                    relative_target: float, *, lr_word: str = "lr", sweep_lr_word: str = "lr",
                    xlabel: str = "optimizer step", loss_title: str = "") -> Any:
    """The figure of an experiment judged by steps to settle below ``relative_target * f0``
    (``raw[name]``: the loss, (step, lr, seed)): log10 f / f0 of each of ``names`` at its
    best lr (the target dashed), then :func:`settling_panels`."""
    fig, axes = new_figure(1, 3, width=5.6, height=4.6, title=title)
    ax_loss, ax_lr, ax_final = axes[0]
    best_lr_bands(ax_loss, np.arange(steps + 1), tuned, colors, names,
                  lambda n, b: np.log10(raw[n][:, b, :] / raw[n][0, b, :]).T, lr_word)
    ax_loss.axhline(np.log10(relative_target), color="k", ls="--", lw=1,
                    label=f"target f / f0 = {relative_target:g}")
    ax_loss.set_xlabel(xlabel)
    ax_loss.set_ylabel("log10 f / f0")
    if loss_title:
        ax_loss.set_title(loss_title, fontsize=10)
    ax_loss.legend(fontsize=7)
    settling_panels(ax_lr, ax_final, tuned, raw, colors, steps, relative_target,
                    lr_word=sweep_lr_word)
    return fig
