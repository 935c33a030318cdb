"""rmsprop: the RMSProp optimizer family, exact, fast, lean and safe.

- ``rmsprop.torch.RMSprop``: a drop-in for ``torch.optim.RMSprop`` with every option.
- ``rmsprop.reference``: the float64 NumPy oracle of the update.
- ``rmsprop.RMSpropSpec`` and ``rmsprop.flavors()``: the options and the framework presets.

Framework modules (``rmsprop.torch``, ``rmsprop.optax``) are imported on their own, so that
``import rmsprop`` needs only NumPy.
"""

from .spec import FLAVORS, RMSpropSpec, flavors, resolve

__version__ = "0.2.0"

__all__ = ["RMSpropSpec", "FLAVORS", "flavors", "resolve", "__version__"]
