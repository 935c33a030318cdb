"""impl="triton" under a param group's plan (rmsprop.torch.group_plan), run by Triton's
interpreter on CPU tensors: the tables built once and kept on the device, the numbers of the
per-call Triton path bit for bit (rmsprop.torch.functional.rmsprop on its own copies, which
tests/kernels/test_triton_interpreted.py checks against update.py and the reference)."""

from __future__ import annotations

import pytest
import torch

from plan_common import PerCall, assert_same, count_builds, grads_for, make_params, step_both
from triton_common import interpreted_triton_kernel
from rmsprop.torch import RMSprop
from rmsprop.torch import group_plan

pytest.importorskip("triton")

# The interpreter runs each 2048-element block in Python: small tensors (one over a block).
SHAPES = [(3,), (5000,), (4, 5), (0,), (100,)]
OPTIONS = [
    {},
    {"momentum": 0.5, "nesterov": True, "centered": True, "amsgrad": True,
     "bias_correction": True, "weight_decay": 0.01},
]


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    yield from interpreted_triton_kernel()


@pytest.fixture
def builds(monkeypatch):
    """How many plans the optimizer builds."""
    return count_builds(monkeypatch)


def kept_tables(opt):
    """The device tables of the optimizer's one plan (one storage group)."""
    (plan,) = group_plan.plans_of(opt).values()
    (group,) = plan.kernel.groups
    return group.device_tables


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_one_plan_serves_every_step_with_the_per_call_numbers(options, builds):
    params = make_params(shapes=SHAPES)
    opt = RMSprop(params, lr=1e-2, impl="triton", **options)
    per_call = PerCall(params, options, impl="triton")
    for step in range(3):
        opt.zero_grad()  # set_to_none: new gradients, so new addresses, at every step
        step_both(opt, params, per_call, grads_for(params, step))
    assert builds["n"] == 1


def test_the_tables_stay_on_the_device_until_the_gradients_move():
    params = make_params(shapes=SHAPES)
    opt = RMSprop(params, lr=1e-2, impl="triton", momentum=0.9)
    per_call = PerCall(params, {"momentum": 0.9}, impl="triton")
    step_both(opt, params, per_call, grads_for(params, 0))
    first = dict(kept_tables(opt))
    for step in (1, 2):  # gradients written in place: the same addresses
        grads = grads_for(params, step)
        for p, g in zip(params, grads):
            p.grad.copy_(g)
        opt.step()
        per_call.step(grads)
        assert_same(opt, params, per_call)
        assert all(kept_tables(opt)[key] is first[key] for key in first)
    step_both(opt, params, per_call, grads_for(params, 3))  # new gradient tensors
    kept = kept_tables(opt)
    assert kept["addresses"] is not first["addresses"]
    assert kept["block_tensor"] is first["block_tensor"]
    assert kept["addresses"][1].tolist() == [p.grad.data_ptr() for p in params]


def test_a_flat_group_steps_as_the_ordinary_one():
    ordinary, flat = make_params(shapes=SHAPES), make_params(shapes=SHAPES)
    ours = RMSprop(ordinary, lr=1e-2, impl="triton", momentum=0.9)
    theirs = RMSprop(flat, lr=1e-2, impl="triton", momentum=0.9, flat=True)
    for step in range(3):
        for opt, params in ((ours, ordinary), (theirs, flat)):
            opt.zero_grad()
            for p, g in zip(params, grads_for(params, step)):
                p.grad = g
            opt.step()
    for p, q in zip(ordinary, flat):
        assert torch.equal(p.detach(), q.detach())
        for key in ("square_avg", "momentum_buffer", "step"):
            assert torch.equal(ours.state[p][key], theirs.state[q][key]), key


def test_a_failed_upload_keeps_nothing_and_changes_nothing(monkeypatch, triton_interpreter):
    """A copy to the device that fails (out of memory) at the first planned step: the step
    raises, the parameters, state and counters are as they were, no table is kept half-made,
    and the next step is the first step's numbers."""
    params = make_params(shapes=SHAPES)
    opt = RMSprop(params, lr=1e-2, impl="triton", momentum=0.9)
    per_call = PerCall(params, {"momentum": 0.9}, impl="triton")
    real, calls = triton_interpreter._copy_to, {"n": 0}

    def failing(device, array):
        calls["n"] += 1
        if calls["n"] == 4:  # after three of the tables
            raise RuntimeError("out of memory (a test)")
        return real(device, array)

    monkeypatch.setattr(triton_interpreter, "_copy_to", failing)
    for p, g in zip(params, grads_for(params, 0)):
        p.grad = g.clone()
    with pytest.raises(RuntimeError, match="out of memory"):
        opt.step()
    assert kept_tables(opt) == {}
    monkeypatch.undo()
    step_both(opt, params, per_call, grads_for(params, 0))

