"""The RMSProp family for JAX, as optax ``GradientTransformation``\\ s.

- :func:`rmsprop`: the whole optimizer, a drop-in for :func:`optax.rmsprop`.
- :func:`scale_by_rmsprop`: the normalisation without a learning rate, a drop-in for
  :func:`optax.scale_by_rms` and :func:`optax.scale_by_stddev`, to compose with
  :func:`optax.scale_by_learning_rate` in :func:`optax.chain`.

Both compute :func:`rmsprop.update.rmsprop_terms` over ``jax.numpy``: the same function as the
float64 reference and the NumPy optimizer, not a copy of it.
"""

from ..extras import require

require("rmsprop.optax", "jax", "jax", "optax")

from .alias import rmsprop
from .core import RMSpropState
from .scale import scale_by_rmsprop

__all__ = ["rmsprop", "scale_by_rmsprop", "RMSpropState"]
