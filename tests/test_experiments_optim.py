"""The synthetic-problem experiments on shortened runs: each claim's figure against its bar.

Where possible the figure is also checked against an independent fact (a closed form, the
float64 reference) rather than only the experiment's own pass flag.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments_common import run_quick
from rmsprop import reference, resolve
from rmsprop.experiments import reddi, valley


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


@pytest.mark.slow
def test_valley(out):
    r = run_quick("valley", out)
    f = r.figures
    # RMSProp reaches the quadratic's target in fewer steps than the best-tuned SGD
    assert f["quadratic_steps_rmsprop"] is not None
    assert f["quadratic_steps_sgd"] is not None
    assert f["quadratic_steps_rmsprop"] < f["quadratic_steps_sgd"]
    # and on Rosenbrock its window of good learning rates is at least 1.5x wider
    assert f["rosenbrock_window_rmsprop_decades"] >= 1.5 * f["rosenbrock_window_sgd_decades"] > 0
    assert r.passed


def test_valley_sgd_bound_matches_theory():
    """Independent check of the grid: gradient descent on the quadratic diverges for lr > 2/100."""
    from rmsprop.experiments._grid import run_grid

    lrs = [0.019, 0.021]
    loss = run_grid(lambda g: torch.optim.SGD(g), valley.quadratic, [-10.0, 1.0], lrs, 300)["loss"]
    assert loss[-1, 0] < 1e-3 and loss[-1, 1] > 1e3


@pytest.mark.slow
def test_adagrad_decay(out):
    r = run_quick("adagrad-decay", out)
    f = r.figures
    assert f["loss_ratio"] >= 10  # AdaGrad stalls after the change, RMSProp tracks
    assert f["adagrad_step_shrink"] <= 0.25  # the median coordinate's step, 4x smaller
    assert f["rmsprop_step_regrowth"] > 1
    assert r.passed


@pytest.mark.slow
def test_momentum(out):
    r = run_quick("momentum", out)
    steps = r.steps

    def count(key):
        value = r.figures[key]
        return value if value is not None else steps + 1

    for problem in ("rotated_quadratic", "Rosenbrock"):
        plain = count(f"{problem}_plain_steps")
        assert count(f"{problem}_momentum_0.9_steps") < plain
        assert count(f"{problem}_Nesterov_0.9_steps") < plain
    assert r.passed


@pytest.mark.slow
def test_reddi(out):
    r = run_quick("reddi", out)
    f = r.figures
    assert f["deterministic_plain_x"] >= 0.8 and f["stochastic_plain_x"] >= 0.8
    assert f["deterministic_amsgrad_x"] <= -0.9 and f["stochastic_amsgrad_x"] <= -0.4
    # the deterministic form fails only for small rho; the stochastic one fails much more widely
    assert f["max_failing_rho_deterministic"] <= 0.5
    assert f["sweep_failures_stochastic"] > f["sweep_failures_deterministic"]
    assert r.passed


def test_reddi_simulation_matches_reference():
    """The torch simulation (LambdaLR alpha/sqrt(t), projection) equals the float64 oracle."""
    C, rho, steps = 3.0, 0.1, 60
    path = reddi.simulate("deterministic", [torch.tensor([C], dtype=torch.float64)], [rho],
                          steps, amsgrad=False, seed=0)[0][:, 0]
    spec = resolve("pytorch", lr=reddi.ALPHA, alpha=rho)
    x = np.zeros(1)
    state = reference.init_state(x, spec)
    for t in range(1, steps + 1):
        g = np.array([C if t % 3 == 1 else -1.0])
        x, state = reference.step(x, g, state, spec, lr=reddi.ALPHA / math.sqrt(t), step=t)
        x = np.clip(x, -1.0, 1.0)
        assert path[t - 1] == pytest.approx(x[0], rel=1e-12, abs=1e-12)
