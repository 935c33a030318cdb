"""The protocol: claims verbatim, grids and seeds enforced, verdicts from intervals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from rmsprop import experiments
from rmsprop.experiments._protocol import (
    Criterion, Figure, Spec, first_dip, interval, judge, log_grid, points_per_decade,
    settle_steps, tune,
)
from rmsprop.experiments.untested import UNTESTED

ARTICLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "rmsprop-article.txt"
ARTICLE_ALT = Path("/work/shared/reference/rmsprop-article.txt")


def _article() -> str:
    for path in (ARTICLE, ARTICLE_ALT):
        if path.exists():
            return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))
    pytest.skip("the article's text is not beside the repository")


def test_at_least_16_experiments_each_a_spec():
    assert len(experiments.names()) >= 16
    for name in experiments.names():
        module = experiments.get(name)
        assert module.SPEC.name == name
        for step in ("simulate", "measure", "plot"):
            assert callable(getattr(module, step)), (name, step)


@pytest.mark.parametrize("name", experiments.names())
def test_claim_is_a_verbatim_sentence_of_the_article(name):
    text = _article()
    claim = experiments.get(name).SPEC.claim
    assert claim in text, f"{name}: claim not verbatim in the article: {claim!r}"
    assert claim[0].isupper() and claim.endswith(".")


def test_untested_sentences_are_verbatim_and_not_claimed_by_an_experiment():
    text = _article()
    claimed = {experiments.get(n).SPEC.claim for n in experiments.names()}
    for sentence, why in UNTESTED:
        assert sentence in text, sentence
        assert sentence not in claimed and why


@pytest.mark.parametrize("name", experiments.names())
def test_full_settings_follow_the_protocol(name):
    spec = experiments.get(name).SPEC
    assert spec.deterministic or spec.n_seeds >= 5
    for grid in spec.optimizers.values():
        assert len(grid) >= 3 and points_per_decade(grid) >= 3 - 1e-9
    assert all(c.why for c in spec.criteria)


def _spec(**changes):
    base = dict(name="x", summary="s", section="s", claim="C.", hypothesis="h",
                criteria=(Criterion("f", ">", 1.0, "why"),))
    return Spec(**{**base, **changes})


def test_spec_refuses_what_the_protocol_forbids():
    with pytest.raises(ValueError, match="needs >= 5 seeds"):
        _spec(n_seeds=4)
    with pytest.raises(ValueError, match="per decade"):
        _spec(optimizers={"SGD": (1e-3, 1e-2, 1e-1)})  # 1 point per decade
    with pytest.raises(ValueError, match="no criterion"):
        _spec(criteria=())
    with pytest.raises(ValueError, match="rationale"):
        Criterion("f", ">", 1.0, "")
    _spec(n_seeds=4, deterministic=True)  # deterministic experiments need no seeds


def test_log_grid_has_at_least_the_density_asked():
    for low, high in ((1e-3, 10 ** -1.5), (1e-4, 1.0), (0.3, 3.0)):
        grid = log_grid(low, high, 3)
        assert grid[0] == pytest.approx(low) and grid[-1] == pytest.approx(high)
        assert points_per_decade(grid) >= 3


def _fig(low, high):
    return Figure((low + high) / 2, low, high, 5)


@pytest.mark.parametrize("low, high, op, expected", [
    (1.2, 1.5, ">", "reproduced"), (0.5, 0.9, ">", "contradicted"), (0.9, 1.1, ">", "inconclusive"),
    (0.5, 1.0, ">", "contradicted"),  # touching the threshold from below is not above it
    (0.5, 0.9, "<", "reproduced"), (1.1, 2.0, "<", "contradicted"), (0.9, 1.1, "<", "inconclusive"),
    (float("nan"), float("nan"), ">", "inconclusive"),
])
def test_an_interval_decides_the_criterion(low, high, op, expected):
    verdict, _ = judge([Criterion("f", op, 1.0, "why")], {"f": _fig(low, high)}, {})
    assert verdict == expected


def test_any_contradiction_wins_and_a_grid_edge_blocks_a_verdict():
    crit = [Criterion("a", ">", 0.0, "w"), Criterion("b", ">", 0.0, "w")]
    both = {"a": _fig(1, 2), "b": _fig(1, 2)}
    assert judge(crit, both, {})[0] == "reproduced"
    assert judge(crit, {"a": _fig(1, 2), "b": _fig(-2, -1)}, {})[0] == "contradicted"
    assert judge(crit, {"a": _fig(1, 2), "b": _fig(-1, 1)}, {})[0] == "inconclusive"
    verdict, reasons = judge(crit, both, {"SGD": True, "RMSProp": False})
    assert verdict == "inconclusive" and "SGD" in reasons[-1]
    # the JSON's dict form judges the same as the Figure objects
    as_dicts = {k: {"low": v.low, "high": v.high} for k, v in both.items()}
    assert judge(crit, as_dicts, {})[0] == "reproduced"


def test_interval_is_the_student_t_interval():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    fig = interval(values)
    half = 2.7764451051977987 * np.std(values, ddof=1) / math.sqrt(5)  # t_{0.975, 4}
    assert fig.mean == 3.0 and fig.n == 5
    assert fig.low == pytest.approx(3.0 - half, rel=1e-12)
    assert fig.high == pytest.approx(3.0 + half, rel=1e-12)
    assert interval([2.0]).low == interval([2.0]).high == 2.0


def test_settling_is_staying_below_and_the_first_dip_is_secondary():
    # dips below 1 at step 2, bounces back at step 4, stays below from step 6; a NaN run never
    loss = np.array([5, 3, 0.5, 0.8, 2, 1.5, 0.9, 0.4, 0.2])
    curves = np.stack([loss, np.full(9, np.nan)], 1)
    assert list(settle_steps(curves, 1.0)[:1]) == [6]
    assert np.isnan(settle_steps(curves, 1.0)[1])
    assert list(first_dip(curves, 1.0)[:1]) == [2]
    assert settle_steps(loss[:, None], 10.0)[0] == 0


def test_tuning_flags_a_best_lr_on_the_grid_edge_and_counts_divergence_as_worst():
    grid = [1e-3, 1e-2, 1e-1]
    t = tune(grid, np.array([[3.0, 3.0], [2.0, 2.0], [np.nan, np.inf]]), "loss")
    assert t.best_lr == 1e-2 and not t.best_lr_on_edge
    t = tune(grid, np.array([[1.0], [2.0], [3.0]]), "loss")
    assert t.best_lr == 1e-3 and t.best_lr_on_edge
    t = tune(grid, np.array([[6.0], [5.0], [1.0]]), "return", lower_is_better=False)
    assert t.best_lr == 1e-3 and t.best_lr_on_edge
    t = tune(grid, np.array([[9.0], [9.0], [9.0]]), "steps", tiebreak=np.array([[3.0], [1.0], [2.0]]))
    assert t.best_lr == 1e-2
    # a plateau of equal scores (every lr converged to the floor) gives its middle
    t = tune([1e-3, 1e-2, 1e-1, 1.0], np.array([[-10.0], [-10.0], [-10.0], [0.0]]), "log loss")
    assert t.best_lr == 1e-2 and not t.best_lr_on_edge


def test_diverged_crosses_sit_just_above_the_drawn_points_not_at_a_blown_up_seed():
    """A seed that grew to 1e270 without overflowing made the crosses (and the axis) reach
    270 decades, squashing every drawn lr into one line (heterogeneous-scales, 2026-12)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmsprop.experiments._plots import final_loss_sweep
    from rmsprop.experiments._protocol import tune

    grid = (1e-3, 1e-2, 1e-1)
    finals = np.array([[-3.0, -3.2], [-5.0, -5.1], [270.0, np.inf]])  # (lr, seed), log10
    t = tune(grid, finals, "log10 final loss")
    fig, ax = plt.subplots()
    final_loss_sweep(ax, {"GD": t}, {"GD": finals}, {"GD": "tab:orange"})
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == 1
    assert crosses[0].get_ydata()[0] < 0  # just above -3, the highest point drawn
    assert ax.get_ylim()[1] < 10
    plt.close(fig)


def test_an_early_transient_is_cut_from_the_axis_and_said_so():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rmsprop.experiments._plots import cut_early_transient

    steps = np.linspace(0, 1, 200)
    curve = np.stack([np.sin(6 * steps), np.cos(6 * steps)], 1)  # within [-1, 1]
    curve[2] = [-100.0, 90.0]  # a spike in the first 5 % of steps
    fig, ax = plt.subplots()
    ax.plot(curve)
    cut_early_transient(ax, [curve], (0.0,))
    low, high = ax.get_ylim()
    assert -1.5 < low < -0.9 and 0.9 < high < 1.5
    assert any("axis cut" in text.get_text() and "-100" in text.get_text() for text in ax.texts)
    fig2, ax2 = plt.subplots()  # no transient: the axis is left alone, nothing said
    cut_early_transient(ax2, [curve[10:]], (0.0,))
    assert not ax2.texts
    plt.close(fig)
    plt.close(fig2)
