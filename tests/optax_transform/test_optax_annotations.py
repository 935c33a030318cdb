"""optax's introspection sees rmsprop.optax's signatures as it sees its own.

optax's tests (contrib/_common_test.py,
test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such) run the schedule
check only for an optimizer whose ``learning_rate`` annotation *is* ``optax.ScalarOrSchedule``
or ``optax.Schedule``: a string annotation (``from __future__ import annotations``) made them
skip ours. The check is re-expressed here.

jax and optax are imported inside the fixture, so that collecting this file is cheap.
"""

import inspect
import types
import typing

import numpy as np
import pytest


@pytest.fixture(scope="module")
def lib():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import rmsprop.optax as ro

    return types.SimpleNamespace(jax=jax, jnp=jnp, optax=optax, ro=ro)


def test_learning_rate_annotation_is_optax_scalar_or_schedule(lib):
    annotation = inspect.signature(lib.ro.rmsprop).parameters["learning_rate"].annotation
    assert annotation is lib.optax.ScalarOrSchedule
    assert annotation == inspect.signature(lib.optax.rmsprop).parameters[
        "learning_rate"].annotation


@pytest.mark.parametrize("name", ["rmsprop", "scale_by_rmsprop"])
def test_every_annotation_is_an_object(lib, name):
    """No string annotations: each resolves without get_type_hints (it resolves too)."""
    function = getattr(lib.ro, name)
    for parameter in inspect.signature(function).parameters.values():
        assert not isinstance(parameter.annotation, str), parameter.name
    assert not isinstance(inspect.signature(function).return_annotation, str)
    typing.get_type_hints(function)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_accepts_a_learning_rate_schedule_as_optax_tests_it(lib, momentum):
    """optax's check: with the annotation seen, a constant schedule gives the numbers of the
    constant learning rate over 10 steps of the parabola (optax's tolerance, rtol 1e-6)."""
    jax, jnp, optax = lib.jax, lib.jnp, lib.optax
    annotation = inspect.signature(lib.ro.rmsprop).parameters["learning_rate"].annotation
    assert annotation in (optax.ScalarOrSchedule, optax.Schedule)
    target = jnp.array([1.0, -1.0, 1.0])

    def objective(params):
        return jnp.sum((params - target) ** 2)

    results = []
    for learning_rate in (optax.constant_schedule(1e-3), 1e-3):
        tx = lib.ro.rmsprop(learning_rate=learning_rate, momentum=momentum)
        params = jnp.array([-1.0, 10.0, 1.0])
        state = tx.init(params)
        for _ in range(10):
            updates, state = tx.update(jax.grad(objective)(params), state, params)
            params = optax.apply_updates(params, updates)
        results.append(np.asarray(params))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    assert not np.allclose(results[1], [-1.0, 10.0, 1.0])  # it moved
