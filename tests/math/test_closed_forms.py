"""rmsprop.numpy.RMSprop and the float64 reference against closed forms derived by hand.

Each test picks inputs for which the update's recursion has a closed form, derived below
from the equations of :mod:`rmsprop.spec` (docs/design.md, "The update"):

* a constant gradient g from v0: v_t = rho^t v0 + (1 - rho^t) g^2;
* with bias correction from v0 = 0: v^_t = v_t / (1 - rho^t) = g^2, so every step is
  lr g / (|g| + eps);
* centered, constant g, from v0 = 0: gbar_t = (1 - rho^t) g and v_t - gbar_t^2 =
  rho^t (1 - rho^t) g^2; with bias correction the variance is g^2 - g^2 = 0 and the step is
  lr g / eps (or lr g / sqrt(eps));
* alpha = 0, eps = 0: v = g^2 and u = g/|g| = sign(g): the step is lr (sign descent), and
  momentum's buffer is a geometric sum, b_t = sum_k mu^(t-k) (times lr_k in the tf form);
* amsgrad after one large gradient and then small ones: vmax stays v_1;
* decoupled weight decay with sign steps: theta_t = q theta_(t-1) - lr, q = 1 - lr wd.

Where the inputs are dyadic (few significant bits: powers of two, rho = 1/2) float64
computes them exactly and the comparison is for equality; elsewhere it is to a few float64
roundings per step (rtol 1e-13).
"""

from __future__ import annotations

import numpy as np
import pytest

from rmsprop import RMSpropSpec, reference
from rmsprop.numpy import RMSprop

BACKENDS = ("numpy", "reference")
RTOL = 1e-13


def run(backend: str, theta0, grads, lrs, **options):
    """``len(lrs)`` steps from ``theta0``; ``grads`` is a list (one per step) or a function
    of the current parameter. Returns the final parameter and state."""
    theta = np.array(theta0, dtype=np.float64)
    grad_of = grads if callable(grads) else (lambda _, t: np.asarray(grads[t], np.float64))
    if backend == "numpy":
        opt = RMSprop([theta], lr=lrs[0], **options)
        for t, lr in enumerate(lrs):
            opt.lr = lr
            opt.step([grad_of(theta.copy(), t)])
        state = {k: v for k, v in opt.state[0].items() if k != "step"}
        assert opt.state[0]["step"] == len(lrs)
        return theta, state
    spec = RMSpropSpec(lr=lrs[0], **options)
    state = reference.init_state(theta, spec)
    for t, lr in enumerate(lrs):
        theta, state = reference.step(theta, grad_of(theta, t), state, spec, lr, t + 1)
    return theta, state


G = np.array([3.0, -0.5, 1e-3, -20.0])
THETA0 = np.array([1.0, -2.0, 0.5, 4.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("v0", [0.0, 1.0])
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_constant_gradient(backend, v0, eps_in_sqrt):
    """v_t = rho^t v0 + (1 - rho^t) g^2; theta_T = theta0 - lr sum_t g / d(v_t)."""
    rho, eps, lr, steps = 0.9, 1e-3, 0.01, 30
    theta, state = run(backend, THETA0, [G] * steps, [lr] * steps, alpha=rho, eps=eps,
                       initial_accumulator_value=v0, eps_in_sqrt=eps_in_sqrt)
    v = [rho**t * v0 + (1 - rho**t) * G**2 for t in range(1, steps + 1)]
    d = [np.sqrt(vt + eps) if eps_in_sqrt else np.sqrt(vt) + eps for vt in v]
    np.testing.assert_allclose(state["square_avg"], v[-1], rtol=RTOL)
    np.testing.assert_allclose(theta, THETA0 - lr * sum(G / dt for dt in d), rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_bias_correction_makes_v_hat_g_squared(backend, eps_in_sqrt):
    """From v0 = 0 with a constant g, v^_t = g^2 at every t: T equal steps lr g/(|g| + eps),
    although v_t itself is (1 - rho^t) g^2, far from g^2 early on."""
    rho, eps, lr, steps = 0.99, 1e-2, 0.01, 10
    theta, state = run(backend, THETA0, [G] * steps, [lr] * steps, alpha=rho, eps=eps,
                       bias_correction=True, eps_in_sqrt=eps_in_sqrt)
    d = np.sqrt(G**2 + eps) if eps_in_sqrt else np.abs(G) + eps
    np.testing.assert_allclose(theta, THETA0 - steps * lr * G / d, rtol=RTOL)
    np.testing.assert_allclose(state["square_avg"], (1 - rho**steps) * G**2, rtol=RTOL)


DYADIC_G = np.array([3.0, -0.5, 2.0**-10, -20.0])  # 3 significant bits at most


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_centered_bias_corrected_constant_gradient_has_variance_zero(backend, eps_in_sqrt):
    """Centered, bias-corrected, from v0 = 0, constant g: v^ - gbar^^2 = g^2 - g^2 = 0, the
    step is lr g/eps (eps outside) or lr g/sqrt(eps) (inside). With rho = 1/2 and powers of two
    float64 computes every quantity exactly: equality."""
    eps, lr, steps = 2.0**-20, 2.0**-12, 10
    theta, state = run(backend, THETA0, [DYADIC_G] * steps, [lr] * steps, alpha=0.5, eps=eps,
                       centered=True, bias_correction=True, eps_in_sqrt=eps_in_sqrt)
    denominator = np.sqrt(eps) if eps_in_sqrt else eps
    np.testing.assert_array_equal(theta, THETA0 - steps * lr * DYADIC_G / denominator)
    np.testing.assert_array_equal(state["grad_avg"], (1 - 0.5**steps) * DYADIC_G)


@pytest.mark.parametrize("backend", BACKENDS)
def test_centered_constant_gradient_without_bias_correction(backend):
    """v_t - gbar_t^2 = (1 - rho^t) g^2 - (1 - rho^t)^2 g^2 = rho^t (1 - rho^t) g^2."""
    rho, eps, lr, steps = 0.9, 1e-4, 0.01, 12
    theta, state = run(backend, THETA0, [G] * steps, [lr] * steps, alpha=rho, eps=eps,
                       centered=True)
    s = [rho**t * (1 - rho**t) * G**2 for t in range(1, steps + 1)]
    expected = THETA0 - lr * sum(G / (np.sqrt(st) + eps) for st in s)
    np.testing.assert_allclose(theta, expected, rtol=1e-12)  # s cancels 1 - rho^t: ~10 ulp
    np.testing.assert_allclose(state["grad_avg"], (1 - rho**steps) * G, rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("maximize", [False, True])
def test_sign_descent_on_a_quadratic(backend, maximize):
    """f(theta) = 3 theta^2 / 2 in one coordinate, alpha = 0, eps = 0: the step is
    lr sign(f'(theta)) = lr sign(theta), so from theta0 = 1 with lr = 1/8, theta_t = 1 - t/8
    exactly (ascent, maximize: 1 + t/8)."""
    steps, lr = 7, 0.125
    theta, _ = run(backend, [1.0], lambda theta, t: 3.0 * theta, [lr] * steps, alpha=0.0,
                   eps=0.0, maximize=maximize)
    np.testing.assert_array_equal(theta, [1.0 + (1 if maximize else -1) * steps * lr])


MU = 0.9


def torch_form_sum(steps: int, nesterov: bool) -> float:
    """sum_t b_t with b_t = (1 - mu^t)/(1 - mu) (nesterov: sum_t 1 + mu b_t)."""
    total = (steps - MU * (1 - MU**steps) / (1 - MU)) / (1 - MU)
    return steps + MU * total if nesterov else total


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("lr_in_momentum", [False, True])
def test_momentum_is_a_geometric_sum_under_a_constant_lr(backend, nesterov, lr_in_momentum):
    """alpha = 0, eps = 0, constant g: u = sign(g) and b_t = sum_(k<t) mu^k u: both forms
    move theta by lr u sum_t b_t (nesterov: lr u sum_t (1 + mu b_t))."""
    steps, lr = 25, 0.01
    theta, state = run(backend, THETA0, [G] * steps, [lr] * steps, alpha=0.0, eps=0.0,
                       momentum=MU, nesterov=nesterov, lr_in_momentum=lr_in_momentum)
    np.testing.assert_allclose(theta, THETA0 - lr * np.sign(G) * torch_form_sum(steps, nesterov),
                               rtol=RTOL)
    buffer = np.sign(G) * (1 - MU**steps) / (1 - MU)
    np.testing.assert_allclose(state["momentum_buffer"], lr * buffer if lr_in_momentum
                               else buffer, rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lr_in_momentum", [False, True])
def test_momentum_forms_under_a_geometric_schedule(backend, lr_in_momentum):
    """lr_t = lr0 gamma^(t-1), u = sign(g). Torch form: step_t = lr_t (1 - mu^t)/(1 - mu),
    summing to lr0/(1-mu) [(1-gamma^T)/(1-gamma) - mu (1-(gamma mu)^T)/(1-gamma mu)]. TF form:
    b_t = sum_(k<=t) mu^(t-k) lr_k, summing to
    lr0/(1-mu) [(1-gamma^T)/(1-gamma) - mu (gamma^T - mu^T)/(gamma - mu)]."""
    steps, lr0, gamma = 20, 0.01, 0.8
    lrs = [lr0 * gamma**t for t in range(steps)]
    theta, _ = run(backend, THETA0, [G] * steps, lrs, alpha=0.0, eps=0.0, momentum=MU,
                   lr_in_momentum=lr_in_momentum)
    head = (1 - gamma**steps) / (1 - gamma)
    if lr_in_momentum:
        tail = MU * (gamma**steps - MU**steps) / (gamma - MU)
    else:
        tail = MU * (1 - (gamma * MU) ** steps) / (1 - gamma * MU)
    np.testing.assert_allclose(theta, THETA0 - np.sign(G) * lr0 / (1 - MU) * (head - tail),
                               rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_amsgrad_keeps_the_largest_second_moment(backend):
    """g_1 = 10, then g = 1: v_t = rho^(t-1) v_1 + (1 - rho^(t-1)) falls from v_1 = 10 (1 - rho)
    towards 1 (v_1 > 1 with rho = 0.5), so vmax stays v_1 and every step divides by
    sqrt(v_1) + eps."""
    rho, eps, lr, steps = 0.5, 1e-3, 0.01, 12
    grads = [np.array([10.0])] + [np.array([1.0])] * (steps - 1)
    theta, state = run(backend, [0.0], grads, [lr] * steps, alpha=rho, eps=eps, amsgrad=True)
    v1 = (1 - rho) * 100.0
    d = np.sqrt(v1) + eps
    np.testing.assert_allclose(theta, [-lr * (10.0 + (steps - 1)) / d], rtol=RTOL)
    np.testing.assert_allclose(state["max_square_avg"], [v1], rtol=RTOL)
    v_last = rho ** (steps - 1) * v1 + (1 - rho ** (steps - 1))
    np.testing.assert_allclose(state["square_avg"], [v_last], rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoupled_weight_decay_is_a_geometric_shrink(backend):
    """alpha = 0, eps = 0, g > 0 constant: theta_t = q theta_(t-1) - lr with q = 1 - lr wd,
    so theta_T = q^T theta0 - lr (1 - q^T)/(1 - q)."""
    lr, wd, steps = 0.01, 0.5, 40
    theta, _ = run(backend, [3.0], [np.array([2.0])] * steps, [lr] * steps, alpha=0.0,
                   eps=0.0, weight_decay=wd, decoupled_weight_decay=True)
    q = 1 - lr * wd
    np.testing.assert_allclose(theta, [q**steps * 3.0 - lr * (1 - q**steps) / (1 - q)],
                               rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coupled_weight_decay_enters_the_gradient(backend):
    """One step from v0 = 0 with g' = g + wd theta: v_1 = (1 - rho) g'^2 and
    theta_1 = theta0 - lr g' / (sqrt(v_1) + eps)."""
    rho, eps, lr, wd = 0.9, 0.1, 0.01, 0.5
    theta, state = run(backend, THETA0, [G], [lr], alpha=rho, eps=eps, weight_decay=wd)
    g = G + wd * THETA0
    np.testing.assert_allclose(state["square_avg"], (1 - rho) * g**2, rtol=RTOL)
    np.testing.assert_allclose(theta, THETA0 - lr * g / (np.sqrt((1 - rho) * g**2) + eps),
                               rtol=RTOL)
