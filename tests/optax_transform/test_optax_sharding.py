"""Sharded parameters: the optimizer state follows their sharding, and a jitted step gives the
same numbers as on one device.

JAX reads ``XLA_FLAGS`` once, when it starts, so the check runs in a fresh Python process with
``--xla_force_host_platform_device_count=4`` (four CPU devices); the test only starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STEPS = 5


@pytest.mark.slow  # 3-6 s (a compiler or a subprocess): the whole suite runs it
def test_state_follows_sharding_and_sharded_step_equals_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sharded == one device" in result.stdout, result.stdout


def _main() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import rmsprop.optax as ro

    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
    shardings = {
        "w": NamedSharding(mesh, P("data", "model")),
        "b": NamedSharding(mesh, P("model")),
        "s": NamedSharding(mesh, P()),
    }
    rng = np.random.default_rng(0)
    host = {"w": rng.normal(size=(8, 6)), "b": rng.normal(size=(4,)), "s": np.float64(0.5)}
    host = {k: np.asarray(v, np.float32) for k, v in host.items()}
    x = rng.normal(size=(8, 6)).astype(np.float32)

    def loss(params):
        return jnp.sum(jnp.sin(params["w"] * x)) + jnp.sum(params["b"] ** 2) * params["s"]

    opt = ro.rmsprop(
        optax.exponential_decay(1e-2, 2, 0.5), momentum=0.9, centered=True, amsgrad=True,
        weight_decay=1e-2, bias_correction=True,
    )

    @jax.jit
    def step(params, state):
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    def check_follows(params, state):
        moments = [state.square_avg, state.max_square_avg, state.grad_avg, state.momentum_buffer]
        for name, sharding in shardings.items():
            assert params[name].sharding == sharding, (name, params[name].sharding)
            for moment in moments:
                assert moment[name].sharding == sharding, (name, moment[name].sharding)
                assert len(moment[name].addressable_shards) == 4

    sharded = {k: jax.device_put(v, shardings[k]) for k, v in host.items()}
    sharded_state = opt.init(sharded)
    check_follows(sharded, sharded_state)
    one = jax.devices()[0]
    single = {k: jax.device_put(v, one) for k, v in host.items()}
    single_state = opt.init(single)
    for _ in range(STEPS):
        sharded, sharded_state = step(sharded, sharded_state)
        check_follows(sharded, sharded_state)
        single, single_state = step(single, single_state)
        assert single["w"].sharding.device_set == {one}
    for name in host:
        # elementwise math: the shards compute bitwise what one device does
        np.testing.assert_array_equal(sharded[name], single[name])
        assert not np.allclose(single[name], host[name])  # it moved
    for a, b in zip(jax.tree.leaves(sharded_state), jax.tree.leaves(single_state)):
        np.testing.assert_array_equal(a, b)
    print("sharded == one device")


if __name__ == "__main__":
    _main()
