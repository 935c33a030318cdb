"""``rmsprop.optax.rmsprop``: the RMSProp family as an optax ``GradientTransformation``.

A drop-in for :func:`optax.rmsprop` (same positional arguments, defaults and sign: the updates
are the changes to *add* to the parameters), with every other option of :mod:`rmsprop.spec` as
a keyword. The math is :func:`rmsprop.update.rmsprop_terms` over ``jax.numpy``: the same
function as the float64 reference and the NumPy optimizer, not a copy of it.

No ``from __future__ import annotations`` here: optax's own tests read
``inspect.signature(rmsprop).parameters['learning_rate'].annotation`` and compare it with
``optax.ScalarOrSchedule``, which a string annotation never equals.
"""

import optax

from .._defaults import flavor_default
from .core import transformation
from .options import learning_rate_schedule, specs

__all__ = ["rmsprop"]


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: float = flavor_default(0.9),
    eps: float = flavor_default(1e-8),
    initial_scale: float = flavor_default(0.0),
    eps_in_sqrt: bool = flavor_default(True),
    centered: bool = flavor_default(False),
    momentum: float | None = None,
    nesterov: bool = flavor_default(False),
    bias_correction: bool = flavor_default(False),
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

    Complex parameters (pass the conjugate of ``jax.grad``'s result, as optax's own tests do):
    with ``flavor="optax"`` as :func:`optax.rmsprop` treats them,
    ``v <- decay*v + (1 - decay)*|g|^2`` with ``|g|^2 = Re(conj(g)*g)``, v real (optax stores
    it as a complex array with a zero imaginary part: same numbers, twice the memory),
    ``gbar`` and the momentum buffer complex, the centered form subtracting ``|gbar|^2``.
    With every other flavour, as :class:`rmsprop.torch.RMSprop` and ``torch.optim.RMSprop``
    treat them: the real and imaginary parts are two independent real parameters
    (``torch.view_as_real``), each with its own v; the state is stored as complex arrays of the
    parameter's shape holding the two parts' values.

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
       integer parameters are refused. The centered variance is clamped at 0 before the root,
       where optax can return
       NaN from rounding. Hyperparameters given as JAX arrays (as
       :func:`optax.inject_hyperparams` passes them) are used as arrays; an array ``momentum``
       or ``weight_decay`` always keeps its buffer or its term, which at 0 changes nothing.
       Under ``inject_hyperparams`` only the arguments you pass become hyperparameters in the
       state (optax's rmsprop also injects its defaults ``decay``, ``eps`` and
       ``initial_scale``): a default here stands for the flavour's value, not a number.
       Under ``jax.jit``, ``init`` cannot see the parameters' sharding (as with optax): call
       ``init`` outside ``jit``, or give ``jit`` the ``out_shardings``.
    """
    given = {
        "alpha": decay, "eps": eps, "initial_accumulator_value": initial_scale,
        "eps_in_sqrt": eps_in_sqrt, "centered": centered, "momentum": momentum,
        "nesterov": nesterov, "bias_correction": bias_correction, "weight_decay": weight_decay,
        "decoupled_weight_decay": decoupled_weight_decay, "amsgrad": amsgrad,
        "maximize": maximize, "lr_in_momentum": lr_in_momentum,
    }
    lr_schedule = learning_rate_schedule(learning_rate)
    options = specs(flavor, given)
    return transformation(
        options, lr_schedule, descent=True, complex_as_pairs=flavor != "optax",
        owner="rmsprop.optax.rmsprop",
    )
