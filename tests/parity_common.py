"""Shared inputs and comparisons of the flavour parity tests (tests/test_parity_*.py).

Each parity test runs a real framework's RMSProp and ``rmsprop.torch.RMSprop(flavor=...)`` on
the same problem: three float32 tensors (shapes (7, 5), () and (3,)), 50 steps of gradients
whose magnitudes span 1e-3 to 1e1, and a learning rate that changes every step. The
gradients come from a seeded NumPy generator and do not depend on the parameters, so both
sides see exactly the same inputs.

A gradient element keeps its own scale over the steps (log-uniform in [1e-3, 1e1]), jittered
within a factor 3 every step, with a per-element bias of its sign: small elements keep a small
second moment, so where eps sits (inside or outside the root) changes the numbers, and the
gradient average of the centered form is not negligible. The sign bias points each
parameter's drift away from 0, so that no parameter comes near 0 (where an elementwise
relative error means nothing).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

from rmsprop.torch import RMSprop

STEPS = 50
SHAPES = ((7, 5), (), (3,))
IMPLS = ("loop", "foreach")
RTOL = 1e-4  # parameters agree to this relative error, elementwise, at every step
GRAD_LOW, GRAD_HIGH = 1e-3, 1e1

Trajectory = list[list[np.ndarray]]  # [step][tensor]


def require(module: str) -> Any:
    """Import a framework; under CI a missing one fails the test, elsewhere it skips it."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@dataclass(frozen=True, eq=False)
class Problem:
    """What both sides of a parity test see (all float32); hashed by identity (for caches)."""

    params0: tuple[np.ndarray, ...]
    grads: tuple[tuple[np.ndarray, ...], ...]  # [step][tensor]
    lrs: tuple[float, ...]  # float32-representable, one per step


def make_problem(seed: int = 0, steps: int = STEPS, base_lr: float = 3e-3) -> Problem:
    """Parameters of magnitude 1 to 2, mixed-magnitude gradients, a per-step learning rate."""
    rng = np.random.default_rng(seed)
    params0, scales, biases = [], [], []
    for shape in SHAPES:
        sign = rng.choice([-1.0, 1.0], size=shape)
        params0.append((sign * rng.uniform(1.0, 2.0, size=shape)).astype(np.float32))
        scales.append(np.exp(rng.uniform(np.log(GRAD_LOW), np.log(GRAD_HIGH), size=shape)))
        # P(gradient > 0): the drift of a descent step points away from 0, so parameters
        # keep their sign and an elementwise relative error stays meaningful.
        biases.append(np.where(sign > 0, rng.uniform(0.2, 0.5, size=shape),
                               rng.uniform(0.5, 0.8, size=shape)))
    grads = []
    for _ in range(steps):
        step = []
        for shape, scale, bias in zip(SHAPES, scales, biases):
            jitter = np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=shape))
            magnitude = np.clip(scale * jitter, GRAD_LOW, GRAD_HIGH)
            sign = np.where(rng.uniform(size=shape) < bias, 1.0, -1.0)
            step.append((sign * magnitude).astype(np.float32))
        grads.append(tuple(step))
    lrs = base_lr * np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=steps))
    return Problem(
        tuple(params0), tuple(grads), tuple(float(x) for x in lrs.astype(np.float32))
    )


PROBLEM = make_problem()


def run_ours(problem: Problem, impl: str, flavor: str, **options: Any) -> Trajectory:
    """``rmsprop.torch.RMSprop(flavor=flavor, **options)``, lr set every step."""
    params = [torch.tensor(p, requires_grad=True) for p in problem.params0]
    opt = RMSprop(params, lr=problem.lrs[0], flavor=flavor, impl=impl, **options)
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


def run_torch_optimizer(
    problem: Problem, make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
) -> Trajectory:
    """A torch optimizer class of another project (timm, SB3) on the problem."""
    params = [torch.tensor(p, requires_grad=True) for p in problem.params0]
    opt = make(params)
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


def max_relative_error(ours: Trajectory, theirs: Trajectory) -> float:
    """max over steps and elements of |ours - theirs| / |theirs| (float64 arithmetic)."""
    assert len(ours) == len(theirs)
    worst = 0.0
    for ours_step, theirs_step in zip(ours, theirs):
        for a, b in zip(ours_step, theirs_step):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            assert a.shape == b.shape and a.dtype == b.dtype
            if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
                return float("inf")
            worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b), initial=0.0)))
    return worst


def assert_parity(ours: Trajectory, theirs: Trajectory, rtol: float = RTOL) -> float:
    """Every parameter agrees to ``rtol`` relative at every step; returns the worst error."""
    for step in theirs:
        for b in step:
            assert np.asarray(b).dtype == np.float32, "the framework did not run in float32"
    err = max_relative_error(ours, theirs)
    assert err <= rtol, f"max relative error {err:.3g} > {rtol:g}"
    return err


def assert_detected(ours: Trajectory, theirs: Trajectory, rtol: float = RTOL) -> None:
    """The comparison tells a wrong option apart: the error exceeds 3x the tolerance."""
    err = max_relative_error(ours, theirs)
    assert err > 3 * rtol, f"a wrong option went unnoticed (max relative error {err:.3g})"


def cancellation_problem(size: int = 1024, steps: int = 200) -> Problem:
    """A constant gradient per element (0.5 to 20): the centered variance v - gbar^2 decays
    like rho^t to 0 and is soon below the rounding of v, so rounding decides its sign. With
    rho = 0.9 a framework that does not clamp it takes the root of a negative number (NaN)
    on some elements after about 130 steps."""
    grad = np.linspace(0.5, 20.0, size).astype(np.float32)
    lr = float(np.float32(1e-4))
    return Problem((np.ones(size, np.float32),), tuple((grad,) for _ in range(steps)),
                   (lr,) * steps)


def is_finite(trajectory: Trajectory) -> bool:
    return all(np.all(np.isfinite(p)) for step in trajectory for p in step)
