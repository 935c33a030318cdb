"""Default arguments that the chosen flavour replaces.

A signature such as ``rmsprop(learning_rate, decay=0.9, ...)`` must show the defaults of the
framework it copies, yet ``flavor="tensorflow"`` must bring TensorFlow's defaults instead. The
default is therefore a :class:`FlavorDefault`: it prints and compares as the value it stands
for, and :func:`explicit` drops it, so only the options the user gave override the preset.

It is deliberately not a ``float``: ``optax.inject_hyperparams`` turns every numeric argument
into an array, and an array can no longer say that it was a default.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar, cast

__all__ = ["FlavorDefault", "flavor_default", "explicit"]

_T = TypeVar("_T")


class FlavorDefault:
    """A default that the flavour's preset replaces; shows and compares as ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __eq__(self, other: Any) -> bool:
        other = other.value if isinstance(other, FlavorDefault) else other
        return self.value == other

    def __hash__(self) -> int:
        return hash(self.value)


def flavor_default(value: _T) -> _T:
    """``FlavorDefault(value)``, typed as ``value``: the signature reads as the framework's
    (``lr: float = 0.01``) and :func:`explicit` still tells the default from a choice."""
    return cast(_T, FlavorDefault(value))


def explicit(given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``given`` that the user set (neither ``None`` nor a flavour default)."""
    return {
        name: value
        for name, value in given.items()
        if value is not None and not isinstance(value, FlavorDefault)
    }
