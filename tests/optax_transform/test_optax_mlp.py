"""A jitted JAX training loop with rmsprop.optax.rmsprop reaches the loss that
rmsprop.torch.RMSprop reaches on the same MLP, data and initial weights.

A two-layer tanh MLP on fixed synthetic regression data, float32, 20 full-batch steps. Both
sides start from the same NumPy weights; gradients come from each framework's own autodiff, so
float32 rounding differs from the first step and compounds through training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import rmsprop.optax as ro
from rmsprop.torch import RMSprop

STEPS = 20
LOSS_RTOL = 1e-5  # relative, on the loss at every step
WEIGHT_RTOL = 1e-4  # on the final weights: |jax - torch| / max(|torch|, 0.1), elementwise

CONFIGS = {
    "pytorch-defaults": dict(flavor="pytorch", lr=1e-2, options={}),
    "optax-momentum-centered": dict(
        flavor="optax", lr=3e-3, options=dict(momentum=0.9, centered=True)),
    "keras-decoupled-decay-nesterov": dict(
        flavor="keras", lr=3e-3, options=dict(momentum=0.5, nesterov=True, weight_decay=0.1)),
}


def _data_and_weights():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=(8, 1))).astype(np.float32)
    weights = {
        "w1": (rng.normal(size=(8, 16)) / np.sqrt(8)).astype(np.float32),
        "b1": np.zeros(16, np.float32),
        "w2": (rng.normal(size=(16, 1)) / 4).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    return x, y, weights


def _train_jax(x, y, weights, flavor, lr, options):
    def loss_fn(p):
        hidden = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((hidden @ p["w2"] + p["b2"] - y) ** 2)

    opt = ro.rmsprop(lr, flavor=flavor, **options)

    @jax.jit
    def train_step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    params = {k: jnp.asarray(v) for k, v in weights.items()}
    state = opt.init(params)
    losses = []
    for _ in range(STEPS):
        params, state, loss = train_step(params, state)
        losses.append(float(loss))
    return np.array(losses), {k: np.asarray(v) for k, v in params.items()}


def _train_torch(x, y, weights, flavor, lr, options):
    params = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    opt = RMSprop(list(params.values()), lr=lr, flavor=flavor, **options)
    xt, yt = torch.tensor(x), torch.tensor(y)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        hidden = torch.tanh(xt @ params["w1"] + params["b1"])
        loss = torch.mean((hidden @ params["w2"] + params["b2"] - yt) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), {k: v.detach().numpy() for k, v in params.items()}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_jitted_mlp_training_reaches_the_torch_loss(config):
    x, y, weights = _data_and_weights()
    jax_losses, jax_params = _train_jax(x, y, weights, **CONFIGS[config])
    torch_losses, torch_params = _train_torch(x, y, weights, **CONFIGS[config])
    assert torch_losses[-1] < 0.7 * torch_losses[0]  # it trains
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=LOSS_RTOL)
    for name in weights:
        assert jax_params[name].dtype == np.float32
        error = np.abs(jax_params[name] - torch_params[name]) / np.maximum(
            np.abs(torch_params[name]), 0.1)
        assert error.max() <= WEIGHT_RTOL, (name, error.max())
