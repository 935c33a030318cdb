"""What the checkpoint, cold-start and distributed tests share: the implementations that run
on CPU here, running torch on one thread, and a small trained run with its snapshots.

Their tensors are tiny, so torch's intra-op threads only add contention (ten times slower on
two busy cores), and their bit-for-bit comparisons need one thread count throughout a test.
The numba kernel (``impl="fused"``) can reset torch's thread count on its first call (seen
with numba's OpenMP threading layer, which shares the OpenMP runtime with torch), so it is
started before the thread count is set.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from rmsprop.torch import RMSprop
from rmsprop.torch.functional import choose_impl
from rmsprop.torch.kernels import KERNELS


def cpu_impls() -> list[str]:
    """The implementations that can update CPU tensors here (``triton`` only under
    ``TRITON_INTERPRET=1``)."""
    runnable = []
    for name in KERNELS:
        try:
            choose_impl(name, None, [torch.zeros(1)])
        except ValueError:
            continue
        runnable.append(name)
    return runnable


def start_fused_runtime() -> None:
    if "fused" in cpu_impls():
        model = torch.nn.Linear(64, 64)  # big enough for the kernel's parallel loop
        model(torch.ones(2, 64)).sum().backward()
        RMSprop(model.parameters(), impl="fused").step()


@pytest.fixture(autouse=True)
def one_thread():
    start_fused_runtime()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a small run, and its state compared bit for bit ---------------------------------------------


def make_model(out_features: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(),
        torch.nn.Linear(6, out_features),
    )
    return model


DATA = torch.Generator().manual_seed(3)
X = torch.randn(64, 4, generator=DATA)
Y = torch.randn(64, 3, generator=DATA)


def train(model: torch.nn.Module, optimizer: Any, first: int, steps: int) -> None:
    for step in range(first, first + steps):
        rows = slice((step * 8) % 64, (step * 8) % 64 + 8)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(X[rows]), Y[rows]).backward()
        for group in optimizer.param_groups:  # a schedule: lr changes every step
            group["lr"] = 1e-2 * (1 + step % 3) / 2
        optimizer.step()


def trained(options: dict[str, Any], impl: str, steps: int = 4) -> tuple[torch.nn.Module, Any]:
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl=impl, **options)
    train(model, optimizer, 0, steps)
    return model, optimizer


def snapshot(optimizer: Any, model: torch.nn.Module | None) -> dict[str, Any]:
    state = {
        index: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
        for index, s in optimizer.state_dict()["state"].items()
    }
    groups = copy.deepcopy(optimizer.state_dict()["param_groups"])
    model_state = {k: v.clone() for k, v in model.state_dict().items()} if model else {}
    return {"state": state, "groups": groups, "model": model_state}


def same_bits(x: torch.Tensor, y: torch.Tensor, equal_nan: bool = False) -> bool:
    """``torch.equal``, or with ``equal_nan`` also NaN where the other has NaN."""
    if torch.equal(x, y):
        return True
    if not equal_nan or x.shape != y.shape or x.dtype != y.dtype:
        return False
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(0), y.nan_to_num(0))


def assert_unchanged(before: dict[str, Any], optimizer: Any, model: torch.nn.Module | None,
                     equal_nan: bool = False) -> None:
    after = snapshot(optimizer, model)
    assert after["groups"] == before["groups"]
    assert sorted(after["state"]) == sorted(before["state"])
    for index, entries in before["state"].items():
        assert sorted(after["state"][index]) == sorted(entries)
        for key, value in entries.items():
            other = after["state"][index][key]
            assert (same_bits(other, value, equal_nan) if torch.is_tensor(value)
                    else other == value)
    assert sorted(after["model"]) == sorted(before["model"])
    for key, value in before["model"].items():
        assert same_bits(after["model"][key], value, equal_nan), key


def assert_same_run(a: tuple[torch.nn.Module, Any], b: tuple[torch.nn.Module, Any],
                    equal_nan: bool = False) -> None:
    for (name, x), y in zip(a[0].state_dict().items(), b[0].state_dict().values()):
        assert same_bits(x, y, equal_nan), name
    assert_unchanged(snapshot(a[1], None), b[1], None, equal_nan)
