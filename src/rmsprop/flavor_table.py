"""The flavour documentation page (docs/flavors.md), generated from the presets in code.

``python -m rmsprop.flavor_table > docs/flavors.md`` rewrites the page; a test checks that
the page in the repository is exactly what this module generates, so the page and
:data:`rmsprop.spec.FLAVORS` cannot drift apart.

What a preset cannot say (which options the original framework itself offers) is in
:data:`FRAMEWORK_OFFERS`; a test checks it against the presets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import FLAVORS, Flavor, RMSpropSpec

__all__ = ["FRAMEWORK_OFFERS", "Offers", "flavor_table_markdown", "flavor_page_markdown"]


@dataclass(frozen=True)
class Offers:
    """What the original (framework, paper or release) offers besides lr, rho and eps.

    Args:
        momentum: ``"option"``, ``"fixed"`` (part of the algorithm) or ``"none"``.
        centered: ``"option"``, ``"always"`` or ``"none"``.
        weight_decay: ``"coupled"`` (L2 added to the gradient), ``"decoupled"``, ``"both"``
            (coupled by default, decoupled on request) or ``"none"``.
        extras: further options of the original that the flavour reproduces.
    """

    momentum: str
    centered: str
    weight_decay: str
    extras: str = ""


FRAMEWORK_OFFERS: dict[str, Offers] = {
    "pytorch": Offers("option", "option", "coupled", "maximize"),
    "tensorflow": Offers("option", "option", "none"),
    "keras": Offers("option", "option", "decoupled"),
    "optax": Offers("option", "option", "none",
                    "nesterov, bias_correction, initial_scale, eps_in_sqrt"),
    "timm": Offers("option", "option", "both", "lr_in_momentum, decoupled_decay"),
    "sb3": Offers("option", "option", "coupled"),
    "graves": Offers("fixed", "always", "none"),
    "dqn": Offers("none", "always", "coupled", "weight cost wc (L2, 0 by default)"),
    "hinton": Offers("none", "none", "none"),
}

_DEFAULTS = RMSpropSpec(lr=None)


def _option(flavor: Flavor, name: str) -> Any:
    return flavor.preset.get(name, getattr(_DEFAULTS, name))


def _number(value: float) -> str:
    return f"{value:g}"


def _eps_cell(flavor: Flavor) -> str:
    return "inside: √(v + ε)" if _option(flavor, "eps_in_sqrt") else "outside: √v + ε"


def _momentum_form(flavor: Flavor) -> str:
    if _option(flavor, "lr_in_momentum"):
        return "TF: b ← μb + η·u; θ −= b"
    return "torch: b ← μb + u; θ −= η·b"


def _momentum_cell(flavor: Flavor, offers: Offers) -> str:
    form = _momentum_form(flavor)
    if offers.momentum == "fixed":
        return f"{form}, μ = {_number(_option(flavor, 'momentum'))} (part of the algorithm)"
    if offers.momentum == "none":
        return f"none in the original (momentum > 0 here: {form})"
    return form


def _centered_cell(flavor: Flavor, offers: Offers) -> str:
    formula = "√(v − ḡ² + ε)" if _option(flavor, "eps_in_sqrt") else "√(v − ḡ²) + ε"
    if offers.centered == "always":
        return f"always: {formula}"
    if offers.centered == "none":
        return f"not in the original (centered=True here: {formula})"
    return f"option: {formula}"


def _decay_cell(flavor: Flavor, offers: Offers) -> str:
    decoupled = "decoupled: θ ← θ·(1 − η·λ) before the step"
    coupled = "coupled (L2): g ← g + λθ"
    here = decoupled if _option(flavor, "decoupled_weight_decay") else coupled
    if offers.weight_decay == "none":
        return f"none in the original (weight_decay > 0 here: {here})"
    if offers.weight_decay == "both":
        return f"{here}; decoupled_weight_decay=True: decoupled"
    return here


def _defaults_cell(flavor: Flavor) -> str:
    lr = "required" if flavor.requires_lr else _number(_option(flavor, "lr"))
    return f"{lr} / {_number(_option(flavor, 'alpha'))} / {_number(_option(flavor, 'eps'))}"


def flavor_table_markdown() -> str:
    """The difference table: one row per flavour of :data:`rmsprop.spec.FLAVORS`."""
    header = (
        "| flavour | reproduces | ε placement | v₀ | momentum form | centered | weight decay "
        "| defaults lr / ρ / ε |"
    )
    lines = [header, "|" + "---|" * 8]
    for name, flavor in FLAVORS.items():
        offers = FRAMEWORK_OFFERS[name]
        cells = [
            f"`{name}`",
            flavor.reproduces,
            _eps_cell(flavor),
            _number(_option(flavor, "initial_accumulator_value")),
            _momentum_cell(flavor, offers),
            _centered_cell(flavor, offers),
            _decay_cell(flavor, offers),
            _defaults_cell(flavor),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _presets_markdown() -> str:
    lines = ["| flavour | preset (options of `RMSpropSpec`) | other options of the original |",
             "|---|---|---|"]
    for name, flavor in FLAVORS.items():
        preset = ", ".join(f"`{key}={value!r}`" for key, value in flavor.preset.items())
        extras = FRAMEWORK_OFFERS[name].extras or "—"
        lines.append(f"| `{name}` | {preset} | {extras} |")
    return "\n".join(lines) + "\n"


def _centered_markdown() -> str:
    lines = ["| flavour | what the original does | what we do |", "|---|---|---|"]
    for name, flavor in FLAVORS.items():
        note = flavor.centered_note or "uncentered in the original; with centered=True as pytorch"
        lines.append(f"| `{name}` | {note} | v − ḡ² clamped at 0, then the flavour's root |")
    return "\n".join(lines) + "\n"


def _sources_markdown() -> str:
    return "".join(f"- `{name}`: {flavor.source}\n" for name, flavor in FLAVORS.items())


_INTRO = """\
# Flavours: every framework's RMSProp as a preset

<!-- Generated by `python -m rmsprop.flavor_table > docs/flavors.md` from
     rmsprop.spec.FLAVORS; tests/math/test_flavor_table.py fails when this page is stale. -->

`rmsprop.torch.RMSprop(params, flavor=NAME, ...)` starts from the preset of `NAME` and then
applies every argument you pass yourself: an explicit argument always wins over the preset
(`flavor="dqn", centered=False` is uncentered). A flavour whose original has no default
learning rate (`tensorflow`, `optax`) raises a `ValueError` when `lr` is missing.
`rmsprop.flavors()` lists the names with one line each. A param group may name its own
`flavor`; the group's own options win over that preset in the same way.

The update, with ε inside or outside the root, is (u is the normalised gradient)

    v ← ρ·v + (1 − ρ)·g²            (v starts at v₀)
    ḡ ← ρ·ḡ + (1 − ρ)·g             (centered only)
    s = max(v − ḡ², 0) if centered else v
    u = g / (√s + ε)   or   g / √(s + ε)
    θ ← θ − η·u                     (no momentum)

and the two momentum forms are equal for a constant learning rate and differ under a
schedule. Each row below is proven against the original by a test that runs it (parameters
agree to 1e-4 relative at float32 over 50 steps of gradients from 1e-3 to 1e1 with a learning
rate that changes every step; `pytorch` is bit-identical): tests/frameworks/test_parity_*.py runs
torch.optim.RMSprop, TensorFlow's raw ops and tf.compat.v1.train.RMSPropOptimizer, Keras 3,
optax, timm and stable-baselines3; tests/math/test_flavors_published.py checks `graves`, `dqn`
and `hinton` against their equations at float64 to 1e-12.

## Differences

"""

_AFTER_TABLE = """
TensorFlow (and timm, which copies it) update the accumulator as v ← v + (g² − v)(1 − ρ);
we compute ρ·v + (1 − ρ)·g². The two are equal up to float32 rounding and the parity tests
pass well inside their tolerance with either order, so there is no option for it.

## Presets

"""

_CENTERED = """
## Centered variants: cancellation in v − ḡ²

In exact arithmetic v − ḡ² ≥ 0, but in floating point it is the difference of two close
numbers once the gradient is nearly constant, and rounding can make it negative. Every
flavour here clamps it at 0 before the root, so a centered step never returns NaN from
cancellation; wherever the original's value is a number and v − ḡ² ≥ 0 the clamp changes
nothing. The originals do not clamp:

"""

_SOURCES = """
## Sources

Read from the projects' own code (torch 2.13, TensorFlow 2.21, Keras 3.15, optax 0.2.8,
timm 1.0, stable-baselines3 2.9) and from the papers:

"""


def flavor_page_markdown() -> str:
    """The whole of docs/flavors.md."""
    return (
        _INTRO + flavor_table_markdown() + _AFTER_TABLE + _presets_markdown() + _CENTERED
        + _centered_markdown() + _SOURCES + _sources_markdown()
    )


if __name__ == "__main__":
    print(flavor_page_markdown(), end="")
