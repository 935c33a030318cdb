"""What the tests of a param group's plan share (rmsprop.torch.group_plan): parameters and
gradients made from seeds, a counter of plan builds, and the per-call path as the reference."""

from __future__ import annotations

import torch

from rmsprop.spec import RMSpropSpec
from rmsprop.torch import group_plan
from rmsprop.torch.functional import rmsprop as functional_rmsprop
from rmsprop.update import state_keys

SHAPES = [(3,), (70_001,), (4, 5), (0,), (1000,)]  # one over a chunk, an empty one


def count_builds(monkeypatch):
    """How many plans the optimizer builds: ``{"n": count}``, counted from now (for a
    fixture ``builds`` of the test modules)."""
    count = {"n": 0}
    original = group_plan.GroupPlan.build.__func__

    def counting(cls, *args, **kwargs):
        count["n"] += 1
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(group_plan.GroupPlan, "build", classmethod(counting))
    return count


def make_params(seed=0, shapes=SHAPES, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def grads_for(params, step, seed=1):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]


class PerCall:
    """The path before plans: rmsprop.torch.functional.rmsprop (``impl``) with its own
    state."""

    def __init__(self, params, options, impl="fused"):
        self.impl = impl
        self.spec = RMSpropSpec(lr=1e-2, **options)
        self.params = [p.detach().clone() for p in params]
        v0 = self.spec.initial_accumulator_value
        self.state = {key: [torch.full_like(p, v0 if "square" in key else 0.0)
                            for p in self.params] for key in state_keys(self.spec)}
        self.steps = [torch.zeros(()) for _ in self.params]

    def step(self, grads, lr=1e-2, active=None):
        active = range(len(self.params)) if active is None else active
        pick = lambda lst: [lst[i] for i in active] if lst else None  # noqa: E731
        functional_rmsprop(
            pick(self.params), pick(grads), pick(self.state["square_avg"]), pick(self.steps),
            max_square_avgs=pick(self.state.get("max_square_avg")),
            grad_avgs=pick(self.state.get("grad_avg")),
            momentum_buffers=pick(self.state.get("momentum_buffer")),
            spec=self.spec, lr=lr, impl=self.impl)


def assert_same(opt, params, per_call):
    for i, (p, q) in enumerate(zip(params, per_call.params)):
        assert torch.equal(p.detach(), q), f"param {i}"
        state = opt.state[p]
        for key, tensors in per_call.state.items():
            assert torch.equal(state[key], tensors[i]), (i, key)
        assert torch.equal(state["step"], per_call.steps[i]), (i, "step")


def step_both(opt, params, per_call, grads):
    """One step of ``opt`` (gradients ``grads``, fresh tensors) and of the per-call
    reference; then the same numbers in both."""
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    per_call.step(grads)
    assert_same(opt, params, per_call)
