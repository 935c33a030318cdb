"""The option matrix of the tests, once, and its named subsets.

Every combination of the structural options is :func:`rmsprop.testing.option_matrix` (the
values per option are its ``FLAG_VALUES``; nesterov and the momentum form only with momentum,
the coupling only with a weight decay). The subsets here are projections of that one matrix
onto the options a test or a framework has, in the matrix's order, each combination once:

* :data:`ALL_SPECS`: the whole matrix, as :class:`rmsprop.RMSpropSpec`;
* :data:`WELL_CONDITIONED`: the matrix without the ill-conditioned corner
  (:func:`ill_conditioned`), for comparisons at a tolerance;
* :data:`TORCH_OPTIONS`: the options ``torch.optim.RMSprop`` has;
* :data:`KERAS`, :data:`TENSORFLOW`, :data:`SB3`, :data:`TIMM`, :data:`OPTAX`: the options of
  each framework's RMSProp that the flavour parity tests sweep, in our option names (each
  parity file spells them in its framework's names).

Parametrize with :func:`params` (or ``ids=combo_id``) so that a failure names its combination.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pytest

from rmsprop import RMSpropSpec
from rmsprop.testing import FLAG_VALUES, option_matrix

ALL_SPECS: list[RMSpropSpec] = list(option_matrix())


def _option(options: Any, name: str) -> Any:
    if isinstance(options, Mapping):
        if name == "initial_accumulator_value" and "initial_scale" in options:
            return options["initial_scale"]  # optax's name for v0
        return options.get(name, False)
    return getattr(options, name)


def ill_conditioned(options: RMSpropSpec | Mapping[str, Any]) -> bool:
    """Centered + bias correction from v0 = 0: at t = 1 the bias-corrected variance is
    v^ - gbar^^2 = g^2 - g^2, 0 in exact arithmetic, so the step is g/eps (or g/sqrt(eps))
    and the last bit of each side's own rounding of the cancellation decides it: there is no
    answer two implementations can agree on to a tolerance. Takes a spec or a dict of options
    (our names, or optax's ``initial_scale`` for v0)."""
    return bool(
        _option(options, "centered") and _option(options, "bias_correction")
        and _option(options, "initial_accumulator_value") == 0
    )


WELL_CONDITIONED: list[RMSpropSpec] = [spec for spec in ALL_SPECS if not ill_conditioned(spec)]


def project(names: Iterable[str], specs: Iterable[RMSpropSpec] = ALL_SPECS) -> list[dict]:
    """The distinct combinations of the options ``names`` over ``specs``, in their order."""
    names = tuple(names)
    seen, combos = set(), []
    for spec in specs:
        key = tuple(getattr(spec, name) for name in names)
        if key not in seen:
            seen.add(key)
            combos.append(dict(zip(names, key)))
    return combos


# Each framework's options (our names), as its parity tests sweep them.
TORCH_OPTIONS = project(("momentum", "centered", "weight_decay", "maximize"))
KERAS = project(("momentum", "centered", "weight_decay"))  # weight decay decoupled by Keras
SB3 = project(("momentum", "centered", "weight_decay"))  # weight decay coupled by SB3
TENSORFLOW = project(("momentum", "centered"))  # no weight decay in TF's RMSProp
TIMM = project(("momentum", "centered", "weight_decay", "decoupled_weight_decay",
                "lr_in_momentum"))
OPTAX = project(("momentum", "nesterov", "centered", "bias_correction",
                 "initial_accumulator_value", "eps_in_sqrt"))


def combo_id(combo: Mapping[str, Any]) -> str:
    """``momentum=0.9-centered=True-...``: a failure names its combination."""
    return "-".join(f"{key}={value}" for key, value in combo.items())


def spec_id(spec: RMSpropSpec) -> str:
    """The options of ``spec`` that are on (flags) or nonzero (numbers), or ``plain``."""
    options = {k: v for k, v in spec.options().items() if k not in ("lr", "flavor")}
    on = [k for k, v in options.items() if v is True]
    numbers = [f"{k}={v}" for k, v in options.items()
               if k in ("momentum", "weight_decay", "initial_accumulator_value") and v]
    return ",".join(on + numbers) or "plain"


def params(combos: Iterable[Any], id_of=None) -> list:
    """``pytest.param`` per combination (a dict or a spec), with its readable id."""
    combos = list(combos)
    if id_of is None:
        id_of = lambda c: spec_id(c) if isinstance(c, RMSpropSpec) else combo_id(c)  # noqa: E731
    return [pytest.param(c, id=id_of(c)) for c in combos]


def numbered(specs: Iterable[RMSpropSpec]) -> list:
    """``pytest.param(n, spec)`` per spec, ``n`` its position (a seed of its own, so that one
    combination's data does not depend on the others having run), with its readable id."""
    return [pytest.param(n, spec, id=spec_id(spec)) for n, spec in enumerate(specs)]


def _pairs(spec: RMSpropSpec) -> set[tuple]:
    values = sorted((name, repr(getattr(spec, name))) for name in FLAG_VALUES)
    return {(a, b) for i, a in enumerate(values) for b in values[i + 1:]}


def pairwise_cover(specs: Iterable[RMSpropSpec]) -> list[RMSpropSpec]:
    """A few of ``specs`` that hold every pair of option values ``specs`` hold (greedy: the
    one adding the most pairs first, the earliest on a tie; deterministic)."""
    specs = list(specs)
    index: dict[tuple, int] = {}
    masks = [sum(1 << index.setdefault(pair, len(index)) for pair in _pairs(spec))
             for spec in specs]
    missing = (1 << len(index)) - 1
    chosen = []
    while missing:
        best = max(range(len(specs)), key=lambda i: ((masks[i] & missing).bit_count(), -i))
        chosen.append(specs[best])
        missing &= ~masks[best]
    return chosen


def tiered(param_sets: Iterable[Any]) -> list:
    """``param_sets`` (``pytest.param`` with one spec among their values), those whose spec is
    outside the :func:`pairwise_cover` of all of them marked ``slow``: the fast tier runs every
    pair of option values, the full suite every combination."""
    param_sets = list(param_sets)
    spec_of = [next(v for v in p.values if isinstance(v, RMSpropSpec)) for p in param_sets]
    fast = {spec_id(spec) for spec in pairwise_cover(spec_of)}
    return [p if spec_id(spec) in fast else pytest.param(*p.values, id=p.id,
                                                           marks=[*p.marks, pytest.mark.slow])
            for p, spec in zip(param_sets, spec_of)]
