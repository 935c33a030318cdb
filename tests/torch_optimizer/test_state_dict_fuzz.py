"""Property: a damaged state dict is either loaded and steps as a clean run does, or refused.

Hypothesis takes a saved ``optimizer.state_dict()`` and damages it one to three ways: drops
an entry, retypes a value, reshapes or retypes a tensor, sets a value out of range, adds a
key (unknown, or another optimizer's). Each damage carries its verdict, decided from torch's
semantics and the state schema (``rmsprop.torch.state_schema``), not from our loader:

* ``REFUSE``: ``load_state_dict`` must raise ``StateDictError`` and leave parameters, state
  and param groups bit for bit as they were;
* ``SAME``: the value means what the saved one did (a NumPy float for a float, a
  ``float64`` copy of a ``float32`` tensor, an extra key torch ignores, a setting the loading
  optimizer keeps as its own), so the load must succeed and the next step must be
  bit-identical to that of a clean load;
* ``fresh(i)``: parameter i's whole state is gone, which torch reads as a parameter that
  never stepped: the load must succeed and step as a clean load with parameter i's state
  cleared.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmsprop.errors import StateDictError
from rmsprop.torch import RMSprop

from reliability_common import snapshot

REFUSE, SAME = "refuse", "same"

CONFIGS = {
    "plain": dict(shapes=[(4, 3), (3,), (2,)], kwargs={}),
    "full": dict(shapes=[(4, 3), (3,), (2,)],
                 kwargs=dict(momentum=0.9, centered=True, amsgrad=True, weight_decay=0.01)),
    "8bit": dict(shapes=[(4100,), (7,), (2,)],
                 kwargs=dict(momentum=0.9, centered=True, state_precision="8bit")),
}


def build(config: str) -> RMSprop:
    """Two groups: [A], [B, C]; two steps taken, C never had a gradient (no state)."""
    shapes, kwargs = CONFIGS[config]["shapes"], CONFIGS[config]["kwargs"]
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    opt = RMSprop([{"params": params[:1]}, {"params": params[1:], "lr": 5e-3}], lr=1e-2,
                  **kwargs)
    for _ in range(2):
        for p in params[:2]:
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    return opt


_SAVED: dict[str, dict] = {}


def saved(config: str) -> dict:
    if config not in _SAVED:
        _SAVED[config] = copy.deepcopy(build(config).state_dict())
    return copy.deepcopy(_SAVED[config])


@dataclass
class Damage:
    what: str
    verdict: Any  # REFUSE, SAME or ("fresh", parameter index)
    apply: Callable[[dict], None]
    target: tuple = ()  # the entry it changes: ("group", g, key) or ("state", id, key)
    drops: bool = False  # it removes that entry: earlier damages to it no longer count


# -- the damages, each with its verdict -----------------------------------------------------

TORCH_GROUP_KEYS = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
OWN_SETTINGS = ("impl", "foreach", "state_precision", "min_8bit_size")
NUMERIC_KEYS = ("lr", "alpha", "eps", "weight_decay", "momentum", "initial_accumulator_value")
BOOL_KEYS = ("centered", "maximize", "nesterov", "eps_in_sqrt", "lr_in_momentum",
             "decoupled_weight_decay", "amsgrad", "bias_correction")
OUT_OF_RANGE = {
    "lr": [-1e-3, math.nan, math.inf, None, "0.01", 10**400],
    "alpha": [1.0, -0.5, math.nan, "x", None, 1.5],
    "eps": [-1e-8, math.nan, math.inf, None],
    "weight_decay": [-1.0, math.nan, "0", None],
    "momentum": [-0.1, math.inf, None, [0.9]],
    "initial_accumulator_value": [-1.0, math.nan],
    "nonfinite": ["ignore", None, 1],
    "flavor": ["adam", None],
    "skipped_steps": [-1, 1.5, "0", None],
}
FOREIGN_GROUP = {"betas": (0.9, 0.999), "dampening": 0.0, "lr_decay": 0.0, "rho": 0.9}
FOREIGN_STATE = ("exp_avg", "exp_avg_sq", "sum", "acc_delta")


def _set(container: Any, key: Any, value: Any) -> Callable[[dict], None]:
    return lambda sd: container(sd).__setitem__(key, value)


def group_damages(draw: Any, sd: dict, taken: set) -> Damage:
    picked: dict = {"taken": taken}
    damage = _group_damage(draw, sd, picked)
    damage.target = damage.target or ("group", picked.get("g"), picked.get("key"))
    return damage


def _group_damage(draw: Any, sd: dict, picked: dict) -> Damage:
    g = picked["g"] = draw(st.sampled_from([0, 1]))
    group = sd["param_groups"][g]
    at = lambda sd: sd["param_groups"][g]  # noqa: E731
    keys = [k for k in group if k != "param_names" and ("group", g, k) not in picked["taken"]]
    if not keys:
        return Damage(f"group {g}: nothing left to damage", SAME, lambda sd: None)
    key = picked["key"] = draw(st.sampled_from(sorted(keys)))
    value = group[key]
    kind = draw(st.sampled_from(["drop", "same", "bad", "foreign", "extra"]))
    if kind == "drop":
        if key == "params" or key in TORCH_GROUP_KEYS:
            verdict = REFUSE
        else:  # our options take the loading optimizer's values: the same construction
            verdict = SAME
        return Damage(f"group {g}: drop {key}", verdict, lambda sd: at(sd).pop(key),
                      ("group", g, key), drops=True)
    if kind == "foreign":
        name = draw(st.sampled_from(sorted(FOREIGN_GROUP)))
        return Damage(f"group {g}: {name} added", REFUSE, _set(at, name, FOREIGN_GROUP[name]),
                      ("group", g, name))
    if kind == "extra":
        return Damage(f"group {g}: unknown key", SAME, _set(at, "user_note", "kept as torch"),
                      ("group", g, "user_note"))
    if key in OWN_SETTINGS:  # how the group runs is the loading optimizer's own, whatever saved
        junk = draw(st.sampled_from(["bogus", None, True, -3, "8bit", "loop"]))
        return Damage(f"group {g}: {key}={junk!r}", SAME, _set(at, key, junk))
    if key == "params":
        ids = list(value)
        bad = draw(st.sampled_from(["abc", ids + [99], ids[:-1] or [5], [ids[0]] * len(ids),
                                    [str(i) for i in ids], None]))
        if bad == ids:
            return Damage("params unchanged", SAME, lambda sd: None)
        return Damage(f"group {g}: params={bad!r}", REFUSE, _set(at, "params", bad))
    if kind == "same":
        if key in NUMERIC_KEYS and isinstance(value, float):
            twin = draw(st.sampled_from([np.float64(value),
                                         torch.tensor(value, dtype=torch.float64)]))
        elif key in NUMERIC_KEYS and value == 0:
            twin = 0
        elif key in BOOL_KEYS:
            twin = np.bool_(value)
        elif key == "skipped_steps":
            twin = draw(st.integers(0, 5))  # a counter: not part of the numbers
        else:
            twin = copy.deepcopy(value)
        return Damage(f"group {g}: {key}={twin!r} (same value)", SAME, _set(at, key, twin))
    if key in BOOL_KEYS:
        bad = draw(st.sampled_from(["yes", None, 2, [True]]))
    elif key in OUT_OF_RANGE:
        bad = draw(st.sampled_from(OUT_OF_RANGE[key]))
    else:
        return Damage(f"group {g}: {key} untouched", SAME, lambda sd: None)
    return Damage(f"group {g}: {key}={bad!r}", REFUSE, _set(at, key, bad))


def state_damages(draw: Any, sd: dict, taken: set) -> Damage:
    picked: dict = {"taken": taken}
    damage = _state_damage(draw, sd, picked)
    damage.target = damage.target or ("state", picked.get("pid"), picked.get("key"))
    return damage


def _state_damage(draw: Any, sd: dict, picked: dict) -> Damage:
    ids = [k for k in (0, 1, 2) if isinstance(sd["state"].get(k), dict)]  # the parameters
    if not ids:
        return Damage("no state left to damage", SAME, lambda sd: None)
    pid = picked["pid"] = draw(st.sampled_from(sorted(ids)))
    state = sd["state"][pid]
    at = lambda sd: sd["state"][pid]  # noqa: E731
    # entries an earlier damage left as they were saved
    keys = [k for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)
            and (v.dim() > 0 or k == "step") and ("state", pid, k) not in picked["taken"]]
    if not keys:
        return Damage(f"state {pid}: nothing left to damage", SAME, lambda sd: None)
    key = picked["key"] = draw(st.sampled_from(sorted(keys)))
    value = state[key]
    kind = draw(st.sampled_from(["drop", "drop all", "retype", "reshape", "dtype", "range",
                                 "foreign", "unknown", "same"]))
    lean = isinstance(key, str) and key.endswith((".codes", ".block_scale"))
    if kind == "drop":
        if set(state) == {key}:  # the last entry: an empty state, a parameter never stepped
            return Damage(f"state {pid}: drop {key}, the last", ("fresh", pid),
                          lambda sd: at(sd).pop(key), ("state", pid), drops=True)
        return Damage(f"state {pid}: drop {key}", REFUSE, lambda sd: at(sd).pop(key),
                      ("state", pid, key), drops=True)
    if kind == "drop all":
        return Damage(f"state {pid}: dropped", ("fresh", pid), lambda sd: sd["state"].pop(pid),
                      ("state", pid), drops=True)
    if kind == "foreign":
        name = draw(st.sampled_from(FOREIGN_STATE))
        return Damage(f"state {pid}: {name}", REFUSE, _set(at, name, torch.zeros(1)),
                      ("state", pid, name))
    if kind == "unknown":
        return Damage(f"state {pid}: unknown entry", REFUSE, _set(at, "note", 1),
                      ("state", pid, "note"))
    if key == "step":
        step = float(value)
        if kind == "same":
            twin = draw(st.sampled_from([step, int(step)]))
            return Damage(f"state {pid}: step={twin!r}", SAME, _set(at, "step", twin))
        bad = draw(st.sampled_from(["7", None, [step], True, -1.0, math.nan, math.inf, 2.5,
                                    torch.tensor([step, step]), torch.tensor(-3.0)]))
        return Damage(f"state {pid}: step={bad!r}", REFUSE, _set(at, "step", bad))
    if kind == "retype":
        bad = draw(st.sampled_from([None, "x", 1.0, [0.0], {"a": 1}]))
        return Damage(f"state {pid}: {key}={bad!r}", REFUSE, _set(at, key, bad))
    if kind == "reshape":
        how = draw(st.sampled_from(["unsqueeze", "flatten-or-stack", "truncate"]))
        if how == "unsqueeze":
            bad = value.unsqueeze(0)
        elif how == "flatten-or-stack":
            bad = value.reshape(-1) if value.dim() > 1 else torch.stack([value, value])
        else:
            bad = value.reshape(-1)[:-1]
        return Damage(f"state {pid}: {key} {how}", REFUSE, _set(at, key, bad))
    if kind == "dtype":
        dtype = draw(st.sampled_from([torch.float64, torch.int32, torch.bool]))
        verdict = SAME if dtype == torch.float64 and not lean else REFUSE
        return Damage(f"state {pid}: {key} as {dtype}", verdict, _set(at, key, value.to(dtype)))
    if kind == "range":
        if key.endswith(".codes"):
            return Damage(f"state {pid}: {key} untouched", SAME, lambda sd: None)
        fill = draw(st.sampled_from([math.nan, math.inf, -math.inf, -1.0]))
        if fill == -1.0 and key in ("grad_avg", "momentum_buffer"):  # signed: a valid value
            fill = math.nan
        return Damage(f"state {pid}: {key} holds {fill}", REFUSE,
                      _set(at, key, torch.full_like(value, fill)))
    return Damage(f"state {pid}: {key} copied", SAME, _set(at, key, value.clone()))


def top_damages(draw: Any, sd: dict, taken: set) -> Damage:
    kind = draw(st.sampled_from(["hook entry", "unknown id", "state type", "groups type",
                                 "drop state", "drop groups", "extra top", "group count"]))
    if kind == "hook entry":  # torch's own hook tests keep such entries in optimizer.state
        return Damage("state['ran_hook'] = True", SAME,
                      lambda sd: sd["state"].__setitem__("ran_hook", True))
    if kind == "unknown id":
        return Damage("state for id 99", REFUSE,
                      lambda sd: sd["state"].__setitem__(99, {"step": torch.tensor(1.0)}))
    if kind == "state type":
        return Damage("state is a list", REFUSE, lambda sd: sd.__setitem__("state", []))
    if kind == "groups type":
        return Damage("param_groups is a dict", REFUSE,
                      lambda sd: sd.__setitem__("param_groups", {}))
    if kind == "drop state":
        return Damage("no state", REFUSE, lambda sd: sd.pop("state"))
    if kind == "drop groups":
        return Damage("no param_groups", REFUSE, lambda sd: sd.pop("param_groups"))
    if kind == "group count":
        return Damage("one group", REFUSE, lambda sd: sd["param_groups"].pop())
    return Damage("extra top-level key", SAME, lambda sd: sd.__setitem__("note", 1))


@st.composite
def damaged(draw: Any, config: str) -> tuple[dict, list[Damage]]:
    sd = saved(config)
    damages: list[Damage] = []
    taken: set = set()  # each entry is damaged once: a damage of a damaged value means little
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(sd.get("state"), dict) or not isinstance(sd.get("param_groups"), list) \
                or len(sd["param_groups"]) != 2 or not sd["state"]:
            break  # the structure is already broken: that damage decides
        where = draw(st.sampled_from(["group", "state", "top"]))
        pick = {"group": group_damages, "state": state_damages, "top": top_damages}[where]
        damage = pick(draw, sd, taken)
        # later damages see this one (a key dropped is not damaged again)
        damage.apply(sd)
        if damage.drops:  # what was done to the entry (or to a part of it) is gone with it
            n = len(damage.target)
            damages = [d for d in damages if d.target[:n] != damage.target]
        damages.append(damage)
        taken.add(damage.target)
    return sd, damages


def step_all(opt: RMSprop, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.randn(p.shape, generator=generator)
    opt.step()


def params_and_state(opt: RMSprop) -> Any:
    """Parameters and their state (param groups and other entries of ``opt.state`` aside:
    a counter or a user's key may differ)."""
    params, state, _ = snapshot(opt)
    return params, [entry for entry in state if entry[0].startswith("param ")]


@pytest.mark.parametrize("config", list(CONFIGS))
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_damaged_state_dict_loads_as_a_clean_one_or_is_refused(config, data):
    state_dict, damages = data.draw(damaged(config))
    verdicts = [d.verdict for d in damages]
    target = build(config)
    before = snapshot(target)
    try:
        target.load_state_dict(state_dict)
    except StateDictError:
        assert REFUSE in verdicts, [d.what for d in damages]
        assert snapshot(target) == before, [d.what for d in damages]
        return
    assert REFUSE not in verdicts, [d.what for d in damages]
    clean = build(config)
    clean.load_state_dict(saved(config))
    params = [p for g in clean.param_groups for p in g["params"]]
    for verdict in verdicts:
        if isinstance(verdict, tuple):  # the entry of a parameter that never stepped
            clean.state.pop(params[verdict[1]], None)
    step_all(target, seed=9)
    step_all(clean, seed=9)
    assert all(torch.isfinite(p).all() for g in target.param_groups for p in g["params"])
    assert params_and_state(target) == params_and_state(clean), [d.what for d in damages]
