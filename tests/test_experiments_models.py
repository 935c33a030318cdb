"""The model-based experiments on shortened runs: each claim's figure against its bar."""

from __future__ import annotations

import math

import pytest
import torch

from experiments_common import run_quick
from rmsprop.experiments import memory
from rmsprop.experiments._digits import mlp
from rmsprop.torch import RMSprop


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


def test_cold_start(out):
    r = run_quick("cold-start", out)
    f = r.figures
    # Independent bound: with v = 0 the first update moves each coordinate by at most
    # lr * g / sqrt((1 - alpha) g^2) = 10 lr, so its norm is at most 10 lr sqrt(n).
    n = sum(p.numel() for p in mlp().parameters())
    bound = 10 * 1e-3 * math.sqrt(n)
    assert 0.8 * bound <= f["first_update_params_only"] <= bound * (1 + 1e-6)
    assert f["first_update_ratio"] >= 5
    assert f["spike_params_only"] >= 2 and f["spike_full"] <= 1.2
    if f["guard_available"]:
        assert f["spike_guard"] <= 1.5
    assert r.passed


def test_memory(out):
    r = run_quick("memory", out)
    f = r.figures
    assert 1.0 <= f["ratio_RMSProp"] <= 1.01
    assert 1.99 <= f["ratio_RMSProp_momentum"] <= 2.01
    assert 1.99 <= f["ratio_RMSProp_centered"] <= 2.01
    assert 2.0 <= f["ratio_Adam"] <= 2.01
    assert f["ratio_SGD"] == 0
    if "ratio_RMSProp_8bit" in f:
        assert f["ratio_RMSProp_8bit"] < 0.35  # codes + block scales; small tensors stay fp32
    assert r.passed


def test_memory_state_bytes_counts_every_tensor():
    p = torch.nn.Parameter(torch.zeros(10, 3))
    opt = RMSprop([p], lr=0.1, momentum=0.9, centered=True)
    p.grad = torch.ones_like(p)
    opt.step()
    # square_avg, grad_avg, momentum_buffer (30 float32 each) and the float32 step counter
    assert memory.state_bytes(opt) == 3 * 30 * 4 + 4


def test_digits(out):
    r = run_quick("digits", out)
    f = r.figures
    assert abs(f["rmsprop_test_acc"] - f["adam_test_acc"]) <= 0.02
    assert min(f["rmsprop_test_acc"], f["adam_test_acc"]) >= 0.9
    assert r.passed


@pytest.mark.slow
def test_warmup(out):
    r = run_quick("warmup", out)
    f = r.figures
    # v reaches 90% of E[g^2] after about ln(0.1)/ln(rho) steps: 22 and 229
    assert 11 <= f["steps_to_90pct_rho_0.9"] <= 44
    assert 115 <= f["steps_to_90pct_rho_0.99"] <= 458
    assert f["steps_to_90pct_rho_0.999"] is None  # 2301 in theory: not within 1000 steps
    assert f["update_jump"] >= 5 and f["spike_abrupt"] >= 2
    assert r.passed


@pytest.mark.slow
def test_rnn(out):
    r = run_quick("rnn", out)
    f = r.figures
    assert f["rmsprop_val_loss"] < f["sgd_val_loss"]
    assert f["rmsprop_val_loss"] <= 1.10 * f["adam_val_loss"]
    assert f["rmsprop_val_loss"] < math.log(60) - 1  # well below a uniform guess
    assert r.passed


def test_policy_gradient(out):
    r = run_quick("policy-gradient", out)
    f = r.figures
    assert f["rmsprop_return"] >= 110  # 5x a random policy
    assert f["rmsprop_return"] >= 0.8 * f["adam_return"]
    assert r.passed
