"""The optax ``GradientTransformation`` around :func:`rmsprop.update.rmsprop_terms`.

One transformation serves both public functions: :func:`rmsprop.optax.rmsprop` (the whole
optimizer: the updates are the changes to add to the parameters) and
:func:`rmsprop.optax.scale_by_rmsprop` (the normalisation alone, learning rate 1, sign kept,
for ``optax.scale_by_learning_rate`` to finish).
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..spec import RMSpropSpec
from ..update import init_state, rmsprop_terms, state_keys
from .leaves import as_pairs, checked_leaves, from_pairs, is_complex
from .options import Specs, with_arrays

__all__ = ["RMSpropState", "transformation"]


class RMSpropState(NamedTuple):
    """The state of :func:`rmsprop.optax.rmsprop` and :func:`rmsprop.optax.scale_by_rmsprop`:
    the step count and one pytree per moment.

    The moments have the structure, shapes and (outside ``jax.jit``) shardings of the
    parameters, and their dtypes, except that v and its maximum are real for a complex
    parameter under optax's convention (they hold ``|g|^2``); the ones the options do not use
    are ``None``. Names as in ``torch.optim``.
    """

    # shadows tuple.count on purpose: optax's own states name their step counter `count`
    count: jax.Array  # type: ignore[assignment]  # int32 scalar: the number of steps taken
    square_avg: optax.Updates  # v
    max_square_avg: optax.Updates | None = None  # running max of v (amsgrad)
    grad_avg: optax.Updates | None = None  # gbar (centered)
    momentum_buffer: optax.Updates | None = None  # b (momentum)


def transformation(
    specs: Specs,
    lr_schedule: Callable[[jax.Array], Any],
    *,
    descent: bool,
    complex_as_pairs: bool,
    owner: str,
) -> optax.GradientTransformationExtraArgs:
    """The transformation computing the update of ``specs``.

    Args:
        specs: the options (see :func:`rmsprop.optax.options.specs`).
        lr_schedule: ``count -> lr`` (the number of steps taken before this one).
        descent: return the change to add to the parameters, ``-(decay + delta)``; otherwise
            ``delta`` itself (a normalisation, with ``lr_schedule`` giving 1).
        complex_as_pairs: update a complex leaf as real and imaginary parts apart (torch's
            convention) instead of through ``|g|^2`` (optax's).
        owner: the public name, for error messages.
    """
    spec = specs.spec
    keys = state_keys(spec)
    uses_params = spec.weight_decay != 0

    def pairs(leaf: Any) -> bool:
        return complex_as_pairs and is_complex(leaf)

    def init_fn(params: optax.Params) -> RMSpropState:
        leaves, treedef = checked_leaves(params, "params", owner)
        math_spec = with_arrays(spec, specs.arrays)
        per_leaf = []
        for p in leaves:
            if pairs(p):
                state = init_state(as_pairs(p), math_spec, jnp)
                per_leaf.append({k: from_pairs(v, jnp.result_type(p)) for k, v in state.items()})
            else:
                per_leaf.append(init_state(p, math_spec, jnp))
        moments = {key: treedef.unflatten([s[key] for s in per_leaf]) for key in keys}
        return RMSpropState(count=jnp.zeros([], jnp.int32), **moments)

    def update_fn(
        updates: optax.Updates,
        state: RMSpropState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, RMSpropState]:
        del extra_args
        if uses_params and params is None:
            raise ValueError(
                f"{owner} with weight decay needs the parameters: call "
                "update(updates, state, params)"
            )
        grads, treedef = checked_leaves(updates, "updates", owner)
        moments = {key: treedef.flatten_up_to(getattr(state, key)) for key in keys}
        # without weight decay the parameter is not read: 0.0 stands in for it
        param_leaves = treedef.flatten_up_to(params) if uses_params else [0.0] * len(grads)
        step = optax.safe_increment(state.count)
        lr = lr_schedule(state.count)
        new_updates = []
        new_moments: dict[str, list[Any]] = {key: [] for key in keys}
        for i, grad in enumerate(grads):
            leaf_state = {key: moments[key][i] for key in keys}
            if jnp.shape(grad) != jnp.shape(leaf_state["square_avg"]):
                raise ValueError(
                    f"updates leaf {i} has shape {jnp.shape(grad)}, its state has shape "
                    f"{jnp.shape(leaf_state['square_avg'])}: updates must match params"
                )
            update, new_state = _compiled_leaf_step(
                param_leaves[i], grad, leaf_state, lr, step, specs.arrays,
                spec=spec, descent=descent, pairs=pairs(grad),
            )
            new_updates.append(update)
            for key in keys:
                new_moments[key].append(new_state[key])
        new_state_tree = RMSpropState(
            count=step,
            **{key: treedef.unflatten(new_moments[key]) for key in keys},
        )
        return treedef.unflatten(new_updates), new_state_tree

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Compiled even when called eagerly: XLA rounds some operations (pow) differently in a compiled
# program than op by op, so an eager step gives the numbers of a jitted one. Module-level and
# keyed on the (hashable) spec, so transformations rebuilt at every step (inject_hyperparams)
# share one compilation.
@functools.partial(jax.jit, static_argnames=("spec", "descent", "pairs"))
def _compiled_leaf_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    lr: Any,
    step: Any,
    arrays: dict[str, Any],
    *,
    spec: RMSpropSpec,
    descent: bool,
    pairs: bool,
) -> tuple[Any, dict[str, Any]]:
    return _leaf_step(param, grad, state, with_arrays(spec, arrays), lr, step, descent, pairs)


def _leaf_step(
    param: Any,
    grad: Any,
    state: dict[str, Any],
    spec: RMSpropSpec,
    lr: Any,
    step: Any,
    descent: bool,
    pairs: bool,
) -> tuple[Any, dict[str, Any]]:
    """One leaf's update and new state, in the dtypes of ``grad`` and ``state``."""
    dtypes = {key: value.dtype for key, value in state.items()}
    grad_dtype = jnp.result_type(grad)
    if pairs:
        param = as_pairs(param)
        grad = as_pairs(grad)
        state = {key: as_pairs(value) for key, value in state.items()}
    decay, delta, new_state = rmsprop_terms(jnp, param, grad, state, spec, lr, step)
    if descent:
        # The update is the change itself, -decay - delta, not (new param) - param, which
        # would round it to the spacing of the parameter's floats.
        update = -delta if decay is None else -decay - delta
    else:
        update = delta
    if pairs:
        return from_pairs(update, grad_dtype), {
            key: from_pairs(value, dtypes[key]) for key, value in new_state.items()
        }
    return jnp.asarray(update).astype(grad_dtype), {
        key: value.astype(dtypes[key]) for key, value in new_state.items()
    }
