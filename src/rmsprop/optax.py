"""``rmsprop.optax.rmsprop``: the RMSProp family as an optax ``GradientTransformation``.

A drop-in for :func:`optax.rmsprop` (same positional arguments, defaults and sign: the updates
are the changes to *add* to the parameters), with every other option of :mod:`rmsprop.spec` as
a keyword. The math is :func:`rmsprop.update.rmsprop_terms` over ``jax.numpy``: the same
function as the float64 reference and the NumPy optimizer, not a copy of it.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, NamedTuple

from .extras import require

require("rmsprop.optax", "jax", "jax", "optax")

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._defaults import FlavorDefault, explicit
from .spec import RMSpropSpec, check_lr, resolve
from .update import init_state, rmsprop_terms, state_keys

__all__ = ["rmsprop", "RMSpropState"]

# Where optax's name for an option differs from the spec's (error messages use optax's).
_OPTAX_NAMES = {"alpha": "decay", "initial_accumulator_value": "initial_scale",
                "lr": "learning_rate"}
_NUMERIC = ("alpha", "eps", "initial_accumulator_value", "momentum", "weight_decay")
# Options whose value decides the state's structure: an array value (injected, possibly traced)
# counts as on, with a placeholder > 0 standing in for it in the structural spec.
_STRUCTURAL = ("momentum", "weight_decay")


class RMSpropState(NamedTuple):
    """The state of :func:`rmsprop`: the step count and one pytree per moment.

    The moments have the structure, shapes, dtypes and (outside ``jax.jit``) shardings of the
    parameters; the ones the options do not use are ``None``. Names as in ``torch.optim``.
    """

    count: jax.Array  # int32 scalar: the number of steps taken
    square_avg: optax.Updates  # v
    max_square_avg: optax.Updates | None = None  # running max of v (amsgrad)
    grad_avg: optax.Updates | None = None  # gbar (centered)
    momentum_buffer: optax.Updates | None = None  # b (momentum)


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: float = FlavorDefault(0.9),
    eps: float = FlavorDefault(1e-8),
    initial_scale: float = FlavorDefault(0.0),
    eps_in_sqrt: bool = FlavorDefault(True),
    centered: bool = FlavorDefault(False),
    momentum: float | None = None,
    nesterov: bool = FlavorDefault(False),
    bias_correction: bool = FlavorDefault(False),
    *,
    flavor: str = "optax",
    weight_decay: float | None = None,
    decoupled_weight_decay: bool | None = None,
    amsgrad: bool | None = None,
    maximize: bool | None = None,
    lr_in_momentum: bool | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RMSProp with every option of the family; a drop-in for :func:`optax.rmsprop`.

    Per parameter, at step t = 1, 2, ... (all options in :mod:`rmsprop.spec`)::

        v <- decay*v + (1 - decay)*g^2                          v starts at initial_scale
        u = g / sqrt(v + eps)     (or g / (sqrt(v) + eps) with eps_in_sqrt=False)
        b <- momentum*b + learning_rate*u;  update = -b        (no momentum: -learning_rate*u)

    with centering (``v - gbar^2``), bias correction, Nesterov, weight decay, AMSGrad and
    maximisation as options. Every argument optax has keeps optax's meaning and default; the
    defaults marked "flavour" become the preset's when ``flavor`` is not ``"optax"``.

    Args:
        learning_rate: a number >= 0, or a schedule ``count -> lr`` (called with the number of
            steps taken before this one, as optax does).
        decay: decay of the moving averages, in [0, 1) (flavour; the spec's ``alpha``).
        eps: added inside the root (or outside it with ``eps_in_sqrt=False``) (flavour).
        initial_scale: initial value of v (flavour; 1.0 for TF1, the spec's
            ``initial_accumulator_value``).
        eps_in_sqrt: ``sqrt(v + eps)`` instead of ``sqrt(v) + eps`` (flavour).
        centered: divide by the root of the variance estimate ``v - gbar^2`` (flavour).
        momentum: momentum factor; ``None`` is the flavour's (no momentum for ``"optax"``).
        nesterov: Nesterov momentum; needs ``momentum > 0`` (flavour).
        bias_correction: divide v (and gbar) by ``1 - decay**t`` (flavour).
        flavor: a framework preset, see :func:`rmsprop.flavors`.
        weight_decay: L2 penalty lambda, or decoupled decay; needs ``params`` in ``update``.
        decoupled_weight_decay: ``theta -= learning_rate*lambda*theta`` instead of L2.
        amsgrad: use the running maximum of v (Reddi et al., 2018).
        maximize: ascend the objective.
        lr_in_momentum: optax's and TF's momentum form ``b = momentum*b + lr*u`` (the default
            here); ``False`` gives torch's ``b = momentum*b + u; update = -lr*b``. The two
            agree for a constant learning rate and differ under a schedule.

    Returns:
        An :class:`optax.GradientTransformationExtraArgs` whose state is an
        :class:`RMSpropState`.

    Raises:
        ValueError, TypeError: at construction, for an invalid option (the message names it).

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> import rmsprop.optax
        >>> solver = rmsprop.optax.rmsprop(learning_rate=0.003)
        >>> params = jnp.array([1., 2., 3.])
        >>> state = solver.init(params)
        >>> for _ in range(5):
        ...     grad = jax.grad(lambda x: jnp.sum(x ** 2))(params)
        ...     updates, state = solver.update(grad, state, params)
        ...     params = optax.apply_updates(params, updates)
        >>> print(f"{float(jnp.sum(params ** 2)):.2f}")
        13.62

    References:
        Hinton, Neural Networks for Machine Learning, lecture 6.5, 2012.
        Graves, Generating Sequences With Recurrent Neural Networks, arXiv:1308.0850, 2013.
        Reddi, Kale and Kumar, On the Convergence of Adam and Beyond, ICLR 2018.

    .. warning:: Stricter than :func:`optax.rmsprop` on purpose: ``nesterov=True`` without a
       momentum > 0 is an error (optax silently ignores it), ``decay`` must be in [0, 1), and
       complex or integer parameters are refused (optax squares complex gradients as |g|^2;
       torch updates real and imaginary parts apart: split them into two real leaves to
       choose). The centered variance is clamped at 0 before the root, where optax can return
       NaN from rounding. Hyperparameters given as JAX arrays (as
       :func:`optax.inject_hyperparams` passes them) are used as arrays; an array ``momentum``
       or ``weight_decay`` always keeps its buffer or its term, which at 0 changes nothing.
       Under ``inject_hyperparams`` only the arguments you pass become hyperparameters in the
       state (optax's rmsprop also injects its defaults ``decay``, ``eps`` and
       ``initial_scale``): a default here stands for the flavour's value, not a number.
       Under ``jax.jit``, ``init`` cannot see the parameters' sharding (as with optax): call
       ``init`` outside ``jit``, or give ``jit`` the ``out_shardings``.
    """
    lr_schedule = _learning_rate(learning_rate)
    given = {
        "alpha": decay, "eps": eps, "initial_accumulator_value": initial_scale,
        "eps_in_sqrt": eps_in_sqrt, "centered": centered, "momentum": momentum,
        "nesterov": nesterov, "bias_correction": bias_correction, "weight_decay": weight_decay,
        "decoupled_weight_decay": decoupled_weight_decay, "amsgrad": amsgrad,
        "maximize": maximize, "lr_in_momentum": lr_in_momentum,
    }
    options = explicit(given)
    if options.get("nesterov") is True and momentum is None:  # optax's way to say "none"
        raise ValueError("nesterov=True requires momentum > 0, got momentum=None")
    numeric = {name: v for name, v in options.items() if name in _NUMERIC}
    arrays = {name: v for name, v in numeric.items() if isinstance(v, jax.Array)}
    for name, value in numeric.items():
        options[name] = _concrete_value(name, value) if name in arrays else _scalar(name, value)
    structure = {name: 1.0 for name in _STRUCTURAL if name in arrays}
    try:
        # lr is given on its own (it may be a schedule): 1.0 stands in for it in the spec.
        spec = resolve(flavor, lr=1.0, **options).replace(**structure)
    except (TypeError, ValueError) as error:
        raise type(error)(_in_optax_terms(str(error))) from None
    math_spec = _with_arrays(spec, arrays)
    keys = state_keys(spec)
    uses_params = spec.weight_decay != 0

    def init_fn(params: optax.Params) -> RMSpropState:
        leaves, treedef = _real_leaves(params, "params")
        per_leaf = [init_state(p, math_spec, jnp) for p in leaves]
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
                "rmsprop.optax.rmsprop with weight decay needs the parameters: call "
                "update(updates, state, params)"
            )
        grads, treedef = _real_leaves(updates, "updates")
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
            # The update is the change itself, -decay - delta, not (new param) - param, which
            # would round it to the spacing of the parameter's floats.
            decay, delta, new_state = rmsprop_terms(
                jnp, param_leaves[i], grad, leaf_state, math_spec, lr, step
            )
            update = -delta if decay is None else -decay - delta
            new_updates.append(jnp.asarray(update).astype(jnp.result_type(grad)))
            for key in keys:
                new_moments[key].append(new_state[key].astype(leaf_state[key].dtype))
        new_state_tree = RMSpropState(
            count=step,
            **{key: treedef.unflatten(new_moments[key]) for key in keys},
        )
        return treedef.unflatten(new_updates), new_state_tree

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _learning_rate(learning_rate: Any) -> Callable[[jax.Array], Any]:
    """``learning_rate`` as a schedule ``count -> lr``, validated where its value is known."""
    if callable(learning_rate):
        return learning_rate
    # A tracer (inject_hyperparams, or rmsprop() built inside jit) has no value to check
    # here; as with optax, a bad traced value is not caught.
    if not isinstance(learning_rate, jax.core.Tracer):
        try:
            check_lr(_scalar("lr", learning_rate))
        except (TypeError, ValueError) as error:
            raise type(error)(_in_optax_terms(str(error))) from None
    elif jnp.ndim(learning_rate) != 0:
        raise ValueError(
            f"learning_rate must be a scalar, got an array of shape {jnp.shape(learning_rate)}"
        )
    return lambda count: learning_rate


def _scalar(name: str, value: Any) -> Any:
    """A NumPy or JAX scalar array as a Python float (for the spec's checks); others as is."""
    if not isinstance(value, (np.ndarray, jax.Array)):
        return value
    if value.ndim != 0:
        raise ValueError(
            f"{_OPTAX_NAMES.get(name, name)} must be a scalar, got an array of shape "
            f"{value.shape}"
        )
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(
            f"{_OPTAX_NAMES.get(name, name)} must be a real number, got dtype {value.dtype}"
        )
    return float(value)


def _concrete_value(name: str, value: jax.Array) -> Any:
    """What the spec validates for an array option: its value if known, else a placeholder."""
    if isinstance(value, jax.core.Tracer):  # traced under jit: checked when it was concrete
        if value.ndim != 0:
            raise ValueError(
                f"{_OPTAX_NAMES.get(name, name)} must be a scalar, got an array of shape "
                f"{value.shape}"
            )
        return getattr(RMSpropSpec, name) if name not in _STRUCTURAL else 1.0
    return _scalar(name, value)


def _with_arrays(spec: RMSpropSpec, arrays: dict[str, jax.Array]) -> RMSpropSpec:
    """``spec`` holding some numeric options as JAX arrays (validated above, when concrete).

    Why bypass the dataclass's checks: they need Python floats, and a hyperparameter injected
    by ``optax.inject_hyperparams`` is a tracer inside ``jit``.
    """
    if not arrays:
        return spec
    with_arrays = copy.copy(spec)
    for name, value in arrays.items():
        object.__setattr__(with_arrays, name, value)
    return with_arrays


def _real_leaves(tree: Any, what: str) -> tuple[list[Any], Any]:
    """The leaves and structure of ``tree``; a clear error for a leaf that is not real float."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = []
    for path, leaf in path_leaves:
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"rmsprop.optax.rmsprop does not support complex parameters: "
                f"{what}{jax.tree_util.keystr(path)} has dtype {dtype}. optax.rmsprop squares "
                "them as |g|^2, torch.optim.RMSprop updates real and imaginary parts apart; "
                "split them into two real leaves"
            )
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"rmsprop.optax.rmsprop needs floating-point leaves: "
                f"{what}{jax.tree_util.keystr(path)} has dtype {dtype} "
                "(leave it out with optax.masked)"
            )
        leaves.append(leaf)
    return leaves, treedef


def _in_optax_terms(message: str) -> str:
    """A spec error message with the spec's option names replaced by optax's."""
    for spec_name, optax_name in _OPTAX_NAMES.items():
        message = re.sub(rf"\b{spec_name}\b", optax_name, message)
    return message
