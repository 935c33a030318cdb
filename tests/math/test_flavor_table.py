"""docs/flavors.md is generated from the presets in code and cannot drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rmsprop.flavor_table import (
    FRAMEWORK_OFFERS, flavor_page_markdown, flavor_table_markdown,
)
from rmsprop.spec import FLAVORS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "flavors.md"
REGENERATE = "python -m rmsprop.flavor_table > docs/flavors.md"


def test_the_page_is_exactly_what_the_presets_generate():
    assert PAGE.read_text(encoding="utf-8") == flavor_page_markdown(), (
        f"docs/flavors.md is stale: run `{REGENERATE}`"
    )
    assert flavor_table_markdown() in PAGE.read_text(encoding="utf-8")


def test_the_module_entry_point_prints_the_page():
    out = subprocess.run(
        [sys.executable, "-m", "rmsprop.flavor_table"], capture_output=True, check=True,
    ).stdout.decode("utf-8")
    assert out == flavor_page_markdown()


def rows():
    lines = flavor_table_markdown().splitlines()[2:]
    return {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in lines}


def test_one_row_per_flavor_and_every_flavor_documented():
    assert list(rows()) == list(FLAVORS)
    assert set(FRAMEWORK_OFFERS) == set(FLAVORS)


@pytest.mark.parametrize("name", list(FLAVORS))
def test_each_row_says_what_the_preset_does(name):
    preset = FLAVORS[name].preset
    cells = rows()[name]
    eps_cell, v0_cell, momentum_cell, centered_cell, decay_cell, defaults_cell = cells[2:8]
    assert eps_cell.startswith("inside" if preset.get("eps_in_sqrt") else "outside")
    assert float(v0_cell) == preset.get("initial_accumulator_value", 0.0)
    assert ("TF:" in momentum_cell) == bool(preset.get("lr_in_momentum"))
    assert centered_cell.startswith("always") == bool(preset.get("centered"))
    assert decay_cell.startswith("decoupled") == bool(preset.get("decoupled_weight_decay"))
    lr, alpha, eps = defaults_cell.rstrip(" |").split(" / ")
    assert lr == "required" if FLAVORS[name].requires_lr else float(lr) == preset["lr"]
    assert (float(alpha), float(eps)) == (preset["alpha"], preset["eps"])


@pytest.mark.parametrize("name", list(FLAVORS))
def test_what_the_original_offers_agrees_with_the_preset(name):
    offers, preset = FRAMEWORK_OFFERS[name], FLAVORS[name].preset
    assert (offers.weight_decay == "decoupled") == bool(preset.get("decoupled_weight_decay"))
    assert (offers.centered == "always") == bool(preset.get("centered"))
    assert (offers.momentum == "fixed") == (preset.get("momentum", 0.0) > 0)
