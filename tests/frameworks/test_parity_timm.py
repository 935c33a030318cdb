"""flavor="timm" against timm's RMSpropTF (timm/optim/rmsprop_tf.py).

timm's package ``__init__`` imports torchvision, so the module is loaded from its file, as a
submodule of a stand-in package pointing at timm/optim (it imports its siblings ``_helpers``
and ``_types`` relatively). timm is installed with ``pip install --no-deps timm``.

RMSpropTF is built with its own defaults (alpha, eps) and run single-tensor (foreach=False).
Every combination of momentum, centered, weight decay (none, coupled L2, decoupled) and,
with momentum, lr_in_momentum (timm's switch between the TF and torch momentum forms).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from parity_common import (
    IMPLS, PROBLEM, Problem, Trajectory, assert_detected, assert_parity, cancellation_problem,
    is_finite, run_ours, run_torch_optimizer,
)
from option_matrix import TIMM, combo_id, params

pytestmark = pytest.mark.parity


def timm_options(options):
    """Our options spelled as RMSpropTF's keywords; without momentum, lr_in_momentum is
    timm's default (True: it means nothing there)."""
    return dict(momentum=options["momentum"], centered=options["centered"],
                weight_decay=options["weight_decay"],
                decoupled_decay=options["decoupled_weight_decay"],
                lr_in_momentum=options["lr_in_momentum"] or not options["momentum"])


COMBOS = [timm_options(options) for options in TIMM]


@functools.cache
def rmsprop_tf_class():
    """timm.optim.rmsprop_tf.RMSpropTF, without importing the timm package."""
    spec = importlib.util.find_spec("timm")
    if spec is None:
        if os.environ.get("CI"):
            raise ImportError("timm is not installed: pip install --no-deps timm")
        pytest.skip("timm is not installed (pip install --no-deps timm)")
    package = types.ModuleType("_timm_optim")
    package.__path__ = [str(Path(spec.origin).parent / "optim")]
    sys.modules.setdefault("_timm_optim", package)
    return importlib.import_module("_timm_optim.rmsprop_tf").RMSpropTF


def ours_options(combo):
    options = dict(combo)
    options["decoupled_weight_decay"] = options.pop("decoupled_decay")
    return options


@functools.cache
def run_timm(problem: Problem, **combo) -> Trajectory:
    cls = rmsprop_tf_class()
    return run_torch_optimizer(
        problem, lambda ps: cls(ps, lr=problem.lrs[0], foreach=False, **combo)
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("combo", params(COMBOS))
def test_matches_timm(combo, impl):
    theirs = run_timm(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, impl, "timm", **ours_options(combo)), theirs)


@pytest.mark.parametrize(
    "wrong",
    [dict(initial_accumulator_value=0.0), dict(lr_in_momentum=False),
     dict(decoupled_weight_decay=True), dict(alpha=0.99)],
    ids=combo_id,
)
def test_each_preset_choice_is_needed(wrong):
    """Flipping one choice of the preset breaks parity: the comparison can fail."""
    combo = dict(momentum=0.9, centered=True, weight_decay=0.1, decoupled_decay=False,
                 lr_in_momentum=True)
    assert_detected(run_ours(PROBLEM, "loop", "timm", **{**ours_options(combo), **wrong}),
                    run_timm(PROBLEM, **combo))


def test_eps_inside_the_root():
    """timm's eps = 1e-10 next to v >= 0.9^t is invisible; with eps = 0.1 its place shows."""
    combo = dict(momentum=0.0, centered=False, weight_decay=0.0, decoupled_decay=False,
                 lr_in_momentum=True, eps=0.1)
    theirs = run_timm(PROBLEM, **combo)
    assert_parity(run_ours(PROBLEM, "loop", "timm", **ours_options(combo)), theirs)
    assert_detected(
        run_ours(PROBLEM, "loop", "timm", **ours_options(combo), eps_in_sqrt=False), theirs
    )


def test_centered_cancellation_stays_finite():
    """timm takes sqrt(v - gbar^2 + eps) unclamped (with TF's op order, which happens to keep
    this input finite); ours clamps v - gbar^2 at 0 and stays finite."""
    problem = cancellation_problem()
    assert is_finite(run_timm(problem, momentum=0.0, centered=True, weight_decay=0.0,
                              decoupled_decay=False, lr_in_momentum=True))
    for impl in IMPLS:
        assert is_finite(run_ours(problem, impl, "timm", centered=True))
