"""The arguments of the optax port, checked and turned into an :class:`RMSpropSpec`.

optax names some options differently from the spec (``decay`` is ``alpha``, ...): error
messages use optax's names. Numeric options may be JAX arrays (``optax.inject_hyperparams``
passes them, traced under ``jit``); they stay arrays in the spec the math reads.
"""

import copy
import re
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._defaults import explicit
from ..spec import RMSpropSpec, check_lr, resolve

__all__ = ["Specs", "learning_rate_schedule", "specs", "with_arrays", "in_optax_terms"]

# Where optax's name for an option differs from the spec's (error messages use optax's).
OPTAX_NAMES = {"alpha": "decay", "initial_accumulator_value": "initial_scale",
               "lr": "learning_rate"}
_NUMERIC = ("alpha", "eps", "initial_accumulator_value", "momentum", "weight_decay")
# Options whose value decides the state's structure: an array value (injected, possibly traced)
# counts as on, with a placeholder > 0 standing in for it in the structural spec.
_STRUCTURAL = ("momentum", "weight_decay")


class Specs(NamedTuple):
    """The options: ``spec`` with Python numbers (hashable; it decides the state's structure),
    and ``arrays``, the hyperparameters given as JAX arrays (injected), which the math reads
    in their place (:func:`with_arrays`)."""

    spec: RMSpropSpec
    arrays: dict[str, jax.Array]


def specs(flavor: str, given: Mapping[str, Any], **fixed: Any) -> Specs:
    """The :class:`Specs` of ``flavor`` with the options of ``given`` the user set on top.

    ``given`` maps the spec's option names to the arguments (``None`` and flavour defaults
    count as not given); ``fixed`` are options the caller sets whatever the flavour says.
    Raises ``TypeError``/``ValueError`` naming the option in optax's terms.
    """
    options = explicit(given)
    if options.get("nesterov") is True and given.get("momentum") is None:
        raise ValueError("nesterov=True requires momentum > 0, got momentum=None")
    numeric = {name: v for name, v in options.items() if name in _NUMERIC}
    arrays = {name: v for name, v in numeric.items() if isinstance(v, jax.Array)}
    for name, value in numeric.items():
        options[name] = _concrete_value(name, value) if name in arrays else scalar(name, value)
    structure = {name: 1.0 for name in _STRUCTURAL if name in arrays}
    try:
        # lr is given on its own (it may be a schedule): 1.0 stands in for it in the spec.
        spec = resolve(flavor, **{"lr": 1.0, **options, **fixed}).replace(**structure)
    except (TypeError, ValueError) as error:
        raise type(error)(in_optax_terms(str(error))) from None
    return Specs(spec, arrays)


def learning_rate_schedule(learning_rate: Any) -> Callable[[jax.Array], Any]:
    """``learning_rate`` as a schedule ``count -> lr``, validated where its value is known."""
    if callable(learning_rate):
        return learning_rate
    # A tracer (inject_hyperparams, or rmsprop() built inside jit) has no value to check
    # here; as with optax, a bad traced value is not caught.
    if not isinstance(learning_rate, jax.core.Tracer):
        try:
            check_lr(scalar("lr", learning_rate))
        except (TypeError, ValueError) as error:
            raise type(error)(in_optax_terms(str(error))) from None
    elif jnp.ndim(learning_rate) != 0:
        raise ValueError(
            f"learning_rate must be a scalar, got an array of shape {jnp.shape(learning_rate)}"
        )
    return lambda count: learning_rate


def scalar(name: str, value: Any) -> Any:
    """A NumPy or JAX scalar array as a Python float (for the spec's checks); others as is."""
    if not isinstance(value, (np.ndarray, jax.Array)):
        return value
    if value.ndim != 0:
        raise ValueError(
            f"{OPTAX_NAMES.get(name, name)} must be a scalar, got an array of shape "
            f"{value.shape}"
        )
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(
            f"{OPTAX_NAMES.get(name, name)} must be a real number, got dtype {value.dtype}"
        )
    return float(value)


def _concrete_value(name: str, value: jax.Array) -> Any:
    """What the spec validates for an array option: its value if known, else a placeholder."""
    if isinstance(value, jax.core.Tracer):  # traced under jit: checked when it was concrete
        if value.ndim != 0:
            raise ValueError(
                f"{OPTAX_NAMES.get(name, name)} must be a scalar, got an array of shape "
                f"{value.shape}"
            )
        return getattr(RMSpropSpec, name) if name not in _STRUCTURAL else 1.0
    return scalar(name, value)


def with_arrays(spec: RMSpropSpec, arrays: dict[str, jax.Array]) -> RMSpropSpec:
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


def in_optax_terms(message: str) -> str:
    """A spec error message with the spec's option names replaced by optax's."""
    for spec_name, optax_name in OPTAX_NAMES.items():
        message = re.sub(rf"\b{spec_name}\b", optax_name, message)
    return message
