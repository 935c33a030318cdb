"""The float64 reference against hand-written equations (DESIGN section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from rmsprop import RMSpropSpec, reference, resolve
from rmsprop.testing import option_matrix

from option_matrix import params, tiered


def test_first_step_by_hand():
    """v1 = (1-rho) g^2; theta1 = theta0 - lr g / (sqrt(v1) + eps)  (Hinton 2012)."""
    spec = RMSpropSpec(alpha=0.9, eps=1e-8)
    theta0, g, lr = np.array([1.0, -2.0, 0.5]), np.array([0.3, -4.0, 0.0]), 0.01
    theta1, state = reference.step(theta0, g, reference.init_state(theta0, spec), spec, lr, 1)
    v1 = (1 - 0.9) * g**2
    np.testing.assert_allclose(state["square_avg"], v1, rtol=1e-15)
    np.testing.assert_allclose(theta1, theta0 - lr * g / (np.sqrt(v1) + 1e-8), rtol=1e-15)


def test_eps_inside_the_root():
    spec = RMSpropSpec(alpha=0.5, eps=1e-2, eps_in_sqrt=True, initial_accumulator_value=1.0)
    theta0, g = np.array([0.0]), np.array([2.0])
    theta1, _ = reference.step(theta0, g, reference.init_state(theta0, spec), spec, 0.1, 1)
    v1 = 0.5 * 1.0 + 0.5 * 4.0
    np.testing.assert_allclose(theta1, -0.1 * 2.0 / np.sqrt(v1 + 1e-2), rtol=1e-15)


def test_centered_amsgrad_bias_correction_two_steps_by_hand():
    spec = RMSpropSpec(alpha=0.9, eps=1e-3, centered=True, amsgrad=True,
                       bias_correction=True, initial_accumulator_value=1.0)
    theta, g1, g2, lr = np.array([1.0]), np.array([3.0]), np.array([-1.0]), 0.1
    state = reference.init_state(theta, spec)
    theta, state = reference.step(theta, g1, state, spec, lr, 1)
    theta, state = reference.step(theta, g2, state, spec, lr, 2)
    v1 = 0.9 + 0.1 * 9
    v2 = 0.9 * v1 + 0.1 * 1
    vmax = max(1.0, v1, v2)
    m2 = 0.9 * (0.1 * 3) + 0.1 * (-1)
    c2 = 1 - 0.9**2
    s = vmax / c2 - (m2 / c2) ** 2
    np.testing.assert_allclose(state["max_square_avg"], [vmax], rtol=1e-15)
    step1 = lr * 3 / (np.sqrt(max(v1, 1.0) / 0.1 - (0.3 / 0.1) ** 2) + 1e-3)
    expected = 1.0 - step1 - lr * (-1) / (np.sqrt(s) + 1e-3)
    np.testing.assert_allclose(theta, [expected], rtol=1e-13)


def test_momentum_forms_equal_for_constant_lr_differ_under_schedule():
    """DESIGN: the torch form (lr outside the buffer) and the tf form (inside) are equal for a
    constant learning rate and differ once it changes."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=4) for _ in range(20)]
    torch_form = RMSpropSpec(momentum=0.9, alpha=0.9)
    tf_form = torch_form.replace(lr_in_momentum=True)
    theta0 = np.zeros(4)
    a, _ = reference.run(theta0, grads, torch_form, [0.01] * 20)
    b, _ = reference.run(theta0, grads, tf_form, [0.01] * 20)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    schedule = [0.01 * 0.8**t for t in range(20)]
    a, _ = reference.run(theta0, grads, torch_form, schedule)
    b, _ = reference.run(theta0, grads, tf_form, schedule)
    assert np.max(np.abs(a - b)) > 1e-3


def test_nesterov_by_hand():
    for lr_in_momentum in (False, True):
        spec = RMSpropSpec(momentum=0.5, nesterov=True, alpha=0.0, eps=0.0,
                           lr_in_momentum=lr_in_momentum)
        theta, state = np.array([0.0]), None
        state = reference.init_state(theta, spec)
        theta, state = reference.step(theta, np.array([2.0]), state, spec, 0.1, 1)
        # alpha = 0, eps = 0: u = sign(g) = 1; b1 = u (torch) or lr*u (tf)
        # torch form: step = lr*(u + mu*b1) = 0.1*1.5; tf form: lr*u + mu*lr*u, the same
        np.testing.assert_allclose(theta, [-0.15], rtol=1e-15)


def test_weight_decay_coupled_and_decoupled():
    theta0, g = np.array([2.0]), np.array([1.0])
    coupled = RMSpropSpec(alpha=0.0, eps=0.0, weight_decay=0.5)
    t1, _ = reference.step(theta0, g, reference.init_state(theta0, coupled), coupled, 0.1, 1)
    np.testing.assert_allclose(t1, [2.0 - 0.1 * 1.0], rtol=1e-15)  # g + wd*theta = 2 -> sign 1
    decoupled = coupled.replace(decoupled_weight_decay=True)
    t2, _ = reference.step(theta0, g, reference.init_state(theta0, decoupled), decoupled, 0.1, 1)
    np.testing.assert_allclose(t2, [2.0 - 0.1 * 0.5 * 2.0 - 0.1], rtol=1e-15)


def test_maximize_is_descent_on_the_negated_gradient():
    spec = RMSpropSpec(momentum=0.9, centered=True)
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=3) for _ in range(5)]
    up, _ = reference.run(np.ones(3), grads, spec.replace(maximize=True), [0.01] * 5)
    down, _ = reference.run(np.ones(3), [-g for g in grads], spec, [0.01] * 5)
    np.testing.assert_array_equal(up, down)


@pytest.mark.parametrize("spec", tiered(params(option_matrix(centered=True))))
def test_centered_variance_never_nan(spec):
    """A constant gradient makes v - gbar^2 cancel; the reference clamps instead of NaN."""
    theta, _ = reference.run(np.ones(5), [np.full(5, 0.1)] * 30, spec, [1e-3] * 30)
    assert np.all(np.isfinite(theta))


def test_inputs_are_not_modified():
    spec = RMSpropSpec(momentum=0.9, centered=True, amsgrad=True)
    theta, g = np.ones(3), np.full(3, 2.0)
    state = reference.init_state(theta, spec)
    copies = (theta.copy(), g.copy(), {k: v.copy() for k, v in state.items()})
    reference.step(theta, g, state, spec, 0.1, 1)
    np.testing.assert_array_equal(theta, copies[0])
    np.testing.assert_array_equal(g, copies[1])
    for key in state:
        np.testing.assert_array_equal(state[key], copies[2][key])


@pytest.mark.parametrize("flavor", ["pytorch", "keras", "timm", "sb3", "graves", "dqn", "hinton"])
def test_flavor_defaults_are_valid_specs(flavor):
    spec = resolve(flavor)
    assert spec.flavor == flavor and spec.lr > 0
