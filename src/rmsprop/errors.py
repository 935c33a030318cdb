"""Errors shared by the backends (importing this module needs no framework)."""

from __future__ import annotations

__all__ = ["NonFiniteGradientError", "StateDictError"]


class NonFiniteGradientError(FloatingPointError):
    """A gradient held NaN or inf under ``nonfinite="raise"``; nothing was changed."""


class StateDictError(ValueError):
    """``load_state_dict`` refused a state dict (another optimizer's, a missing or malformed
    entry); the message names the group, the parameter and the field. Nothing was changed."""
