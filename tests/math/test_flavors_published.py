"""The paper flavours against their published equations, written out here in NumPy float64.

The equations are transcribed from the sources, independently of rmsprop.reference and
rmsprop.update, and compared with rmsprop.torch.RMSprop(flavor=...) at float64 to 1e-12
relative over 100 steps of mixed-magnitude gradients (1e-3 to 1e1).

- graves: Graves (2013), "Generating Sequences With Recurrent Neural Networks",
  arXiv:1308.0850, section 4, eq. 38-41, with aleph = 0.95, beth = 0.9, gimel = 1e-4,
  daleth = 1e-4.
- dqn: the DeepMind DQN release (Mnih et al. 2015, dqn/NeuralQLearner.lua, qLearnMinibatch):
  centered, 0.95 for both averages, 0.01 inside the root, lr 2.5e-4, no momentum.
- hinton: the article's statement of Hinton's lecture 6.5 (eps outside, defaults
  1e-3 / 0.9 / 1e-8, no momentum).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmsprop.torch import RMSprop

STEPS = 100
SHAPE = (7, 5)
RTOL = 1e-12


def gradients(seed: int = 0) -> list[np.ndarray]:
    """Per-element scales log-uniform in [1e-3, 1e1], jittered every step, random signs."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e1), size=SHAPE))
    grads = []
    for _ in range(STEPS):
        jitter = np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=SHAPE))
        sign = rng.choice([-1.0, 1.0], size=SHAPE)
        grads.append(sign * np.clip(scale * jitter, 1e-3, 1e1))
    return grads


W0 = np.random.default_rng(1).choice([-1.0, 1.0], size=SHAPE) * np.random.default_rng(
    2).uniform(1.0, 2.0, size=SHAPE)
GRADS = gradients()


def graves_2013(w, grads, gimels, aleph=0.95, beth=0.9, daleth=1e-4):
    """Eq. 38-41: n = aleph n + (1-aleph) e^2;  g = aleph g + (1-aleph) e;
    Delta = beth Delta - gimel e / sqrt(n - g^2 + daleth);  w = w + Delta.
    ``gimels`` holds gimel per step (the paper's is constant, 1e-4)."""
    n = np.zeros_like(w)
    g = np.zeros_like(w)
    delta = np.zeros_like(w)
    for e, gimel in zip(grads, gimels):
        n = aleph * n + (1 - aleph) * e**2
        g = aleph * g + (1 - aleph) * e
        delta = beth * delta - gimel * e / np.sqrt(n - g**2 + daleth)
        w = w + delta
    return w


def dqn_release(w, grads, lrs):
    """NeuralQLearner.lua: g = 0.95 g + 0.05 dw;  g2 = 0.95 g2 + 0.05 dw^2;
    tmp = sqrt(g2 - g^2 + 0.01);  w = w + lr dw / tmp. There dw is the negative loss gradient;
    with e = -dw the loss gradient: g flips sign, g^2 and g2 do not, so w = w - lr e / tmp."""
    g = np.zeros_like(w)
    g2 = np.zeros_like(w)
    for e, lr in zip(grads, lrs):
        g = 0.95 * g + 0.05 * e
        g2 = 0.95 * g2 + 0.05 * e * e
        w = w - lr * e / np.sqrt(g2 - g * g + 0.01)
    return w


def dqn_annealed_lrs(lr_start=2.5e-4, lr_end=1e-5, lr_endt=60):
    """The release's linearly annealed learning rate (per step, from lr_start to lr_end)."""
    return [max((lr_start - lr_end) * (lr_endt - t) / lr_endt + lr_end, lr_end)
            for t in range(STEPS)]


def hinton_lecture(w, grads, eta=1e-3, rho=0.9, eps=1e-8):
    """v = rho v + (1 - rho) g^2;  w = w - eta g / (sqrt(v) + eps), v0 = 0."""
    v = np.zeros_like(w)
    for e in grads:
        v = rho * v + (1 - rho) * e * e
        w = w - eta * e / (np.sqrt(v) + eps)
    return w


def run_ours(flavor, impl, lrs=None, **options):
    """rmsprop.torch.RMSprop at float64, flavour defaults unless ``lrs`` is given."""
    param = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    if lrs is not None:
        options["lr"] = lrs[0]
    opt = RMSprop([param], flavor=flavor, impl=impl, **options)
    for t, grad in enumerate(GRADS):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        param.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
    return param.detach().numpy()


def assert_close(ours, published):
    assert np.all(np.abs(published - W0) > 1e-6), "the test must move every parameter"
    np.testing.assert_allclose(ours, published, rtol=RTOL, atol=0)


@pytest.mark.parametrize("impl", ("loop", "foreach"))
def test_graves_is_eq_38_to_41(impl):
    assert_close(run_ours("graves", impl), graves_2013(W0, GRADS, [1e-4] * STEPS))


@pytest.mark.parametrize("impl", ("loop", "foreach"))
def test_graves_with_a_schedule_keeps_the_rate_inside_delta(impl):
    """Eq. 40 with gimel_t in place of gimel: the rate scales the new term of Delta only."""
    lrs = dqn_annealed_lrs(1e-4, 1e-5)
    assert_close(run_ours("graves", impl, lrs=lrs), graves_2013(W0, GRADS, lrs))


@pytest.mark.parametrize("impl", ("loop", "foreach"))
def test_dqn_is_the_release_update(impl):
    assert_close(run_ours("dqn", impl), dqn_release(W0, GRADS, [2.5e-4] * STEPS))


@pytest.mark.parametrize("impl", ("loop", "foreach"))
def test_dqn_with_the_release_lr_annealing(impl):
    lrs = dqn_annealed_lrs()
    assert_close(run_ours("dqn", impl, lrs=lrs), dqn_release(W0, GRADS, lrs))


@pytest.mark.parametrize("impl", ("loop", "foreach"))
def test_hinton_is_the_lecture_update(impl):
    assert_close(run_ours("hinton", impl), hinton_lecture(W0, GRADS))


def test_the_published_forms_tell_the_flavours_apart():
    """The comparison is sharp: a neighbouring form of each is far outside the tolerance."""
    graves = graves_2013(W0, GRADS, [1e-4] * STEPS)
    lrs = dqn_annealed_lrs(1e-4, 1e-5)  # the momentum forms differ only under a schedule
    dqn = dqn_release(W0, GRADS, [2.5e-4] * STEPS)
    for ours, published in [
        (run_ours("graves", "loop", lrs=lrs, lr_in_momentum=False),
         graves_2013(W0, GRADS, lrs)),
        (run_ours("graves", "loop", eps_in_sqrt=False), graves),
        (run_ours("graves", "loop", centered=False), graves),
        (run_ours("dqn", "loop", eps_in_sqrt=False), dqn),
        (run_ours("dqn", "loop", centered=False), dqn),
        (run_ours("pytorch", "loop", lr=2.5e-4, alpha=0.95, eps=0.01, centered=True), dqn),
    ]:
        assert np.max(np.abs(ours - published) / np.abs(published)) > 1e3 * RTOL
