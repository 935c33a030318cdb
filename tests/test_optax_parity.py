"""rmsprop.optax.rmsprop against optax.rmsprop, over every combination of optax's arguments.

Both run jitted in float32 on the problems of ``optax_common`` (mixed-magnitude gradients, a
learning rate that changes every step, 50 steps); every parameter must agree to float32
rounding at every step.
"""

from __future__ import annotations

import inspect

import optax
import pytest

import rmsprop.optax as ro
from optax_common import MATRIX_PROBLEM, PROBLEM, STEPS, max_error, run_pair, schedule_of
from option_matrix import OPTAX, ill_conditioned

pytestmark = pytest.mark.parity

RTOL = 1e-5  # |ours - optax| / max(|optax|, 1), elementwise, at every step

NAMES = ("eps_in_sqrt", "centered", "momentum", "nesterov", "bias_correction", "initial_scale")
# optax.rmsprop's arguments (momentum None for none), the whole optax subset of the matrix.
COMBOS = [
    (o["eps_in_sqrt"], o["centered"], o["momentum"] or None, o["nesterov"], o["bias_correction"],
     o["initial_accumulator_value"])
    for o in OPTAX
]


def _decay(args: dict) -> float:
    # The first step of the ill-conditioned form divides by the root of g^2 - g^2 (+eps): exact
    # only with a decay whose complement is a power of two (see optax_common); with 0.9 both
    # sides would divide by rounding noise.
    return 0.5 if ill_conditioned(args) else 0.9


@pytest.mark.parametrize(
    "combo", COMBOS, ids=[",".join(f"{n}={v}" for n, v in zip(NAMES, c)) for c in COMBOS]
)
def test_matches_optax_rmsprop(combo):
    args = dict(zip(NAMES, combo))
    args["decay"] = _decay(args)
    args["eps"] = 1e-6  # a size at which eps inside and outside the root both matter here
    lr = schedule_of(MATRIX_PROBLEM)
    ours, theirs = run_pair(
        ro.rmsprop(lr, **args), optax.rmsprop(lr, **args), MATRIX_PROBLEM, pass_params=False
    )
    assert len(ours) == STEPS >= 50
    err = max_error(ours, theirs)
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


def test_defaults_and_positional_arguments_match_optax():
    lr = schedule_of(PROBLEM)
    assert max_error(*run_pair(ro.rmsprop(lr), optax.rmsprop(lr))) <= RTOL
    positional = (lr, 0.95, 1e-6, 1.0, False, True, 0.9, True, True)
    assert max_error(*run_pair(ro.rmsprop(*positional), optax.rmsprop(*positional))) <= RTOL
    assert max_error(*run_pair(ro.rmsprop(1e-3), optax.rmsprop(1e-3))) <= RTOL


@pytest.mark.parametrize(
    "changed",
    [{"eps_in_sqrt": False}, {"centered": True}, {"momentum": 0.9}, {"bias_correction": True},
     {"initial_scale": 1.0}, {"decay": 0.95}, {"eps": 1e-4},
     {"lr_in_momentum": False, "momentum": 0.9}],
    ids=lambda d: ",".join(d),
)
def test_the_comparison_tells_a_changed_option_apart(changed):
    """Each option moves the numbers far beyond the tolerance, so the matrix above bites."""
    lr = schedule_of(MATRIX_PROBLEM)
    base = {"eps": 1e-6, **({"momentum": 0.9} if "lr_in_momentum" in changed else {})}
    ours, theirs = run_pair(
        ro.rmsprop(lr, **{**base, **changed}), optax.rmsprop(lr, **base), MATRIX_PROBLEM
    )
    assert max_error(ours, theirs) > 30 * RTOL


def test_signature_is_optax_rmsprop_with_keyword_only_extras():
    ours = list(inspect.signature(ro.rmsprop).parameters.values())
    theirs = list(inspect.signature(optax.rmsprop).parameters.values())
    assert [(p.name, p.kind) for p in ours[: len(theirs)]] == [(p.name, p.kind) for p in theirs]
    for a, b in zip(ours, theirs):
        assert a.default == b.default, a.name
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(theirs):])


@pytest.mark.parametrize("decoupled", [False, True])
def test_updates_with_weight_decay_are_the_change_itself(decoupled):
    """The update is -decay - delta, not (new param) - param: the latter rounds it to the
    spacing of the parameter's floats (0.3 % here, params at 1000)."""
    import jax.numpy as jnp
    import numpy as np

    params = {"w": jnp.array([1000.0, -1000.0, 1000.0], dtype=jnp.float32)}
    grads = {"w": jnp.array([0.5, 0.25, -0.5], dtype=jnp.float32)}
    tx = ro.rmsprop(1e-3, weight_decay=1e-4, decoupled_weight_decay=decoupled)
    updates, _ = tx.update(grads, tx.init(params), params)
    p, g = np.float64(params["w"]), np.float64(grads["w"])
    if decoupled:  # the RMSProp step of g alone, plus the decay of theta
        exact = -1e-3 * g / (np.sqrt(0.1 * g * g) + 1e-8) - 1e-3 * 1e-4 * p
    else:  # optax's own recipe: add_decayed_weights, then rmsprop
        g = g + 1e-4 * p
        exact = -1e-3 * g / (np.sqrt(0.1 * g * g) + 1e-8)
        reference = optax.chain(optax.add_decayed_weights(1e-4), optax.rmsprop(1e-3))
        theirs, _ = reference.update(grads, reference.init(params), params)
        np.testing.assert_allclose(updates["w"], theirs["w"], rtol=1e-6)
    np.testing.assert_allclose(np.float64(updates["w"]), exact, rtol=1e-5)  # was 3e-3 off
