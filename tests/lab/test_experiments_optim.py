"""The synthetic-problem experiments at demo settings: each writes a well-formed JSON whose
verdict follows from its own figures and thresholds (whatever the verdict is), plus
independent checks of what they simulate (closed forms, the float64 reference, a second
implementation written from the paper)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments_common import run_quick
from rmsprop import reference, resolve
from rmsprop.experiments import graves, reddi, valley

# Slow (the full suite runs them): the most expensive, whose shared pieces the fast tier runs
# in the others (momentum's settle-and-tune table and figure in tf-momentum-form, correlations
# and heterogeneous-scales; adadelta's lr-by-seed grid and lr sweep in lr-forgiveness;
# adagrad-decay's lr grid, bands and sweep likewise).
SYNTHETIC = ["lr-forgiveness", "heterogeneous-scales",
             pytest.param("adagrad-decay", marks=pytest.mark.slow),
             pytest.param("momentum", marks=pytest.mark.slow),
             "tf-momentum-form", "graves-nesterov",
             pytest.param("adadelta", marks=pytest.mark.slow), "adam-beta1-zero",
             "weight-decay", "correlations",
             pytest.param("valley", marks=pytest.mark.slow),
             pytest.param("reddi", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


@pytest.mark.parametrize("name", SYNTHETIC)
def test_runs_and_judges_itself(name, out):
    run_quick(name, out)


def test_valley_sgd_bound_matches_theory():
    """Independent check of the problem: gradient descent on it diverges for lr > 2/100."""
    from rmsprop.experiments._grid import run_grid

    fn = valley.quadratic(valley.hessian(0.0))
    loss = run_grid(lambda g: torch.optim.SGD(g), fn, [-10.0, 1.0], [0.019, 0.021], 300)["loss"]
    assert loss[-1, 0] < 1e-3 and loss[-1, 1] > 1e3


def test_valley_rotation_keeps_the_spectrum():
    assert np.allclose(np.linalg.eigvalsh(valley.hessian(45.0).numpy()), [1.0, valley.CONDITION])


def test_reddi_simulation_matches_reference():
    """The torch simulation (LambdaLR alpha/sqrt(t), projection) equals the float64 oracle."""
    C, rho, steps = 3.0, 0.1, 60
    path = reddi.simulate_runs("deterministic", [torch.tensor([C], dtype=torch.float64)], [rho],
                               steps, amsgrad=False, seed=0)[0][:, 0]
    spec = resolve("pytorch", lr=reddi.ALPHA, alpha=rho)
    x = np.zeros(1)
    state = reference.init_state(x, spec)
    for t in range(1, steps + 1):
        g = np.array([C if t % 3 == 1 else -1.0])
        x, state = reference.step(x, g, state, spec, lr=reddi.ALPHA / math.sqrt(t), step=t)
        x = np.clip(x, -1.0, 1.0)
        assert path[t - 1] == pytest.approx(x[0], rel=1e-12, abs=1e-12)


def test_graves_equations_equal_the_reference_graves_flavour():
    """Eq. 38-41 written from the paper against the float64 reference's 'graves' preset: an
    independent check that the experiment's heavy-ball reading is the library's."""
    H, x0 = graves._problem()
    path = graves.graves_paper(H, x0, 50)
    spec = resolve("graves")
    x, state = x0.copy(), reference.init_state(x0, spec)
    for t in range(1, 51):
        x, state = reference.step(x, H @ x, state, spec, lr=spec.lr, step=t)
        assert np.allclose(x, path[t], rtol=1e-12, atol=1e-15)


def test_correlations_gradient_descent_is_rotation_invariant(out):
    """The rotated problem is the aligned one in another basis: GD cannot tell them apart."""
    _, doc = run_quick("correlations", out / "corr")
    assert all(doc["sanity"].values())
    assert doc["figures"]["gd_rotated_over_aligned_steps"]["mean"] == pytest.approx(1.0, abs=0.01)


def test_adam_with_beta1_zero_is_bias_corrected_rmsprop(out):
    """torch.optim.Adam(betas=(0, rho)) against the library's update with bias correction."""
    _, doc = run_quick("adam-beta1-zero", out / "adam")
    assert float(doc["figures"]["adam_vs_rmsprop_bias_corrected_max_rel_diff"]["mean"]) < 1e-10
    # and plain RMSProp differs at step 1 by the correction 1/sqrt(1 - rho) - 1 ~ 2.16
    first = float(doc["figures"]["adam_vs_plain_rmsprop_first_step_rel_diff"]["mean"])
    assert first == pytest.approx(1 / math.sqrt(1 - 0.9) - 1, rel=1e-3)
