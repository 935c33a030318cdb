"""``rmsprop.optax.scale_by_rmsprop``: the family's normalisation without a learning rate.

The optax way to build an optimizer from parts: ``optax.chain(scale_by_rmsprop(...),
optax.scale_by_learning_rate(lr))``. It is :func:`optax.scale_by_rms` (and, with
``centered=True``, :func:`optax.scale_by_stddev`) with the rest of the family as options; the
math is :func:`rmsprop.update.rmsprop_terms` at learning rate 1, as for
:func:`rmsprop.optax.rmsprop`.

No ``from __future__ import annotations``: signatures keep real annotation objects for optax's
introspection.
"""

import optax

from .._defaults import flavor_default
from .core import transformation
from .options import specs

__all__ = ["scale_by_rmsprop"]

_OWNER = "rmsprop.optax.scale_by_rmsprop"


def scale_by_rmsprop(
    decay: float = flavor_default(0.9),
    eps: float = flavor_default(1e-8),
    initial_scale: float = flavor_default(0.0),
    eps_in_sqrt: bool = flavor_default(True),
    bias_correction: bool = flavor_default(False),
    *,
    centered: bool = flavor_default(False),
    momentum: float | None = None,
    nesterov: bool = flavor_default(False),
    amsgrad: bool | None = None,
    weight_decay: float | None = None,
    maximize: bool | None = None,
    flavor: str = "optax",
) -> optax.GradientTransformationExtraArgs:
    r"""Rescale updates by the root of their moving average of squares (RMSProp's
    normalisation); a drop-in for :func:`optax.scale_by_rms` and :func:`optax.scale_by_stddev`.

    Per parameter, at step t = 1, 2, ... (all options in :mod:`rmsprop.spec`)::

        v <- decay*v + (1 - decay)*g^2                   v starts at initial_scale
        u = g / sqrt(v + eps)     (or g / (sqrt(v) + eps) with eps_in_sqrt=False)
        output u                   (momentum: b <- momentum*b + u; output b)

    with centering (``v - gbar^2``), bias correction, AMSGrad, L2 weight decay, Nesterov
    (output ``u + momentum*b``) and maximisation as options. The output has the sign of the
    gradient, as optax's scalers: ``optax.scale_by_learning_rate(lr)`` turns it into the
    change to add to the parameters.

    Composition (``lr`` a number or a schedule):

    - ``chain(scale_by_rmsprop(...), scale_by_learning_rate(lr))`` is
      ``rmsprop.optax.rmsprop(lr, ...)`` without momentum, and with ``momentum`` is torch's
      momentum form ``b <- momentum*b + u; theta -= lr*b``
      (``rmsprop.optax.rmsprop(..., lr_in_momentum=False)``).
    - optax's and TensorFlow's form ``b <- momentum*b + lr*u`` (what :func:`optax.rmsprop`
      computes) puts the learning rate inside the buffer: chain ``optax.trace(momentum)``
      *after* ``scale_by_learning_rate``. The two forms agree for a constant learning rate and
      differ under a schedule; ``momentum`` here is always the first, whatever the flavour.
    - decoupled weight decay (``theta -= lr*wd*theta``, Keras's) needs the learning rate:
      chain ``optax.add_decayed_weights(wd)`` between this and ``scale_by_learning_rate``.
      ``weight_decay`` here is L2 (``g <- g + wd*theta``), and a flavour whose decay is
      decoupled (``keras``) refuses it.

    Args:
        decay: decay of the moving averages, in [0, 1) (flavour; the spec's ``alpha``).
        eps: added inside the root (or outside it with ``eps_in_sqrt=False``) (flavour).
        initial_scale: initial value of v (flavour; the spec's ``initial_accumulator_value``).
        eps_in_sqrt: ``sqrt(v + eps)`` instead of ``sqrt(v) + eps`` (flavour).
        bias_correction: divide v (and gbar) by ``1 - decay**t`` (flavour).
        centered: divide by the root of the variance estimate ``v - gbar^2``, as
            :func:`optax.scale_by_stddev` (flavour).
        momentum: momentum factor of the buffer ``b <- momentum*b + u``; ``None``: none.
        nesterov: output ``u + momentum*b`` (needs ``momentum > 0``) (flavour).
        amsgrad: use the running maximum of v (Reddi et al., 2018).
        weight_decay: L2 penalty lambda, added to the gradient; needs ``params`` in
            ``update``.
        maximize: ascend the objective (the gradient is negated).
        flavor: a framework preset, see :func:`rmsprop.flavors`; its learning rate and
            momentum form do not apply here.

    Complex parameters as in :func:`rmsprop.optax.rmsprop`: through ``|g|^2`` for
    ``flavor="optax"`` (as :func:`optax.scale_by_rms`), as two real parts for the others.

    Returns:
        An :class:`optax.GradientTransformationExtraArgs` whose state is an
        :class:`rmsprop.optax.RMSpropState`.

    Raises:
        ValueError, TypeError: at construction, for an invalid option (the message names it).

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import rmsprop.optax
        >>> tx = optax.chain(rmsprop.optax.scale_by_rmsprop(centered=True),
        ...                  optax.scale_by_learning_rate(0.1))
        >>> params = jnp.array([1., -2.])
        >>> updates, state = tx.update(jnp.array([0.5, 0.25]), tx.init(params))
        >>> print(jnp.round(updates, 4))  # -0.1 * g / sqrt(0.1*g^2 - (0.1*g)^2 + eps)
        [-0.3333 -0.3333]

    References:
        Hinton, Neural Networks for Machine Learning, lecture 6.5, 2012.
        Graves, Generating Sequences With Recurrent Neural Networks, arXiv:1308.0850, 2013.
        Reddi, Kale and Kumar, On the Convergence of Adam and Beyond, ICLR 2018.
    """
    given = {
        "alpha": decay, "eps": eps, "initial_accumulator_value": initial_scale,
        "eps_in_sqrt": eps_in_sqrt, "bias_correction": bias_correction, "centered": centered,
        "momentum": momentum, "nesterov": nesterov, "amsgrad": amsgrad,
        "weight_decay": weight_decay, "maximize": maximize,
    }
    options = specs(flavor, given, lr_in_momentum=False)
    if options.spec.decoupled_weight_decay and options.spec.weight_decay != 0:
        raise ValueError(
            f"{_OWNER}: flavor={flavor!r} decays the weights decoupled "
            f"(theta -= lr*wd*theta), which needs the learning rate this transformation "
            f"does not have (weight_decay={weight_decay!r}); chain "
            "optax.add_decayed_weights(weight_decay) before optax.scale_by_learning_rate"
        )
    return transformation(
        options, lambda count: 1.0, descent=False, complex_as_pairs=flavor != "optax",
        owner=_OWNER,
    )
