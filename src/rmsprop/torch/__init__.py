"""RMSProp for PyTorch: ``rmsprop.torch.RMSprop`` replaces ``torch.optim.RMSprop``."""

from ..extras import require

require("rmsprop.torch", "torch", "torch")

from .functional import NonFiniteGradientError, rmsprop
from .optimizer import RMSprop

__all__ = ["RMSprop", "rmsprop", "NonFiniteGradientError"]
