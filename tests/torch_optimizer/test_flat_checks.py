"""What the per-step checks of a flat group must see (issue 19): whatever changes between two
steps of a planned flat group, the next step has the numbers of the same optimizer with
``flat=False`` (run side by side on copies, with the same changes, its plan dropped before every
step so that none of the checks under test runs there), bit for bit; and the planned kernel
gives the same bits on one thread as on several. Every test runs with the C++ loop of
:mod:`rmsprop.torch.native` and with its Python stand-in."""

from __future__ import annotations

import pytest
import torch

from rmsprop.torch import RMSprop
from rmsprop.torch import group_plan
from rmsprop.torch.kernels import plan as kernel_plan

from native_common import PATHS, use_path



@pytest.fixture(autouse=True, params=PATHS)
def checks_path(request, monkeypatch):
    use_path(monkeypatch, request.param)
    return request.param


SHAPES = [(3,), (700,), (4, 5), (1000,), (1000,)]  # the last two: one shape, for a swap


def make_params(seed=0, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def grads_for(params, step):
    gen = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=gen) for p in params]


def change(event, params, opt, step):
    """``event`` done to one side between two steps."""
    if event == "grad_replaced":  # p.grad = another tensor, the view left behind
        params[1].grad = params[1].grad * 0.5
    elif event == "grad_none":  # this parameter does not step
        params[2].grad = None
    elif event == "grad_none_then_new":  # p.grad = None, then a new gradient arrives
        params[0].grad = None
        params[0].grad = torch.full_like(params[0], 0.25 * step)
    elif event == "data_moved_out":
        params[1].data = params[1].data.clone()
    elif event == "data_swapped":  # both stay inside the buffer, at each other's place
        params[3].data, params[4].data = params[4].data, params[3].data
    elif event == "option":  # a scheduler writing into param_groups
        opt.param_groups[0]["momentum"] = 0.5
        opt.param_groups[0]["alpha"] = 0.9
    elif event == "centered":  # an option that changes which state the kernel walks
        opt.param_groups[0]["centered"] = True
    elif event == "lr":
        opt.param_groups[0]["lr"] = 3e-3
    elif event == "zero_grad_module":  # set_to_none on every gradient, then new ones
        for p in params:
            p.grad = None


EVENTS = ["grad_replaced", "grad_none", "grad_none_then_new", "data_moved_out", "data_swapped",
          "option", "centered", "lr", "zero_grad_module"]


@pytest.mark.parametrize("event", EVENTS)
def test_a_change_between_steps_gives_the_numbers_of_flat_false(event):
    sides = []
    for flat in (False, True):
        params = make_params()
        sides.append((params, RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, flat=flat)))
    for step in range(6):
        grads = grads_for(sides[0][0], step)
        for (params, opt), flat in zip(sides, (False, True)):
            opt.zero_grad()
            for p, g in zip(params, grads):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            if step in (2, 4):  # after a step that kept (or built) the plan
                change(event, params, opt, step)
            if not flat:  # the reference plans every step afresh: no check involved
                group_plan.forget(opt)
            opt.step()
        for i, (p, q) in enumerate(zip(*(params for params, _ in sides))):
            assert torch.equal(p, q), (step, i)
            state_p, state_q = sides[0][1].state[p], sides[1][1].state[q]
            assert state_p.keys() == state_q.keys(), (step, i)
            for key in state_p:
                assert torch.equal(state_p[key], state_q[key]), (step, i, key)


def test_zero_grad_sees_a_parameter_moved_out_of_the_buffer():
    """A group whose parameters left the buffer is an ordinary one: ``zero_grad()`` sets its
    gradients to ``None`` (torch's default) instead of zeroing views in place."""
    params = make_params()
    opt = RMSprop(params, lr=1e-2, impl="fused", flat=True)
    for p, g in zip(params, grads_for(params, 0)):
        p.grad = g
    opt.step()
    params[2].data = params[2].data.clone()
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_the_planned_kernel_gives_the_same_bits_on_one_thread_and_on_several(monkeypatch):
    shapes = [(70_001,), (3,), (100_000,), (60_000,)]  # work enough for two threads
    results = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for serial_below in (1 << 40, 0):
            monkeypatch.setattr(kernel_plan, "SERIAL_BELOW", serial_below)
            params = make_params(shapes=shapes)
            opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, centered=True)
            for step in range(3):
                for p, g in zip(params, grads_for(params, step)):
                    p.grad = g
                opt.step()
            (plan,) = group_plan.plans_of(opt).values()
            assert plan.kernel.serial == (serial_below > 0)
            results.append(params)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(p, q) for p, q in zip(*results))


@pytest.mark.parametrize("flat", [False, True])
def test_a_graph_saved_before_a_step_is_told_the_parameters_changed(flat):
    """As torch's in-place updates do: backward through a graph that saved a parameter before
    a step raises, rather than differentiating with values the step overwrote (the flat kernel
    writes the buffer, but the parameters' own version counters are the ones autograd saved)."""
    lin = torch.nn.Linear(3, 2)
    opt = RMSprop(lin.parameters(), lr=1e-2, impl="fused", flat=flat)
    x = torch.randn(4, 3, requires_grad=True)  # its gradient needs the weight: saved
    lin(x).sum().backward()
    opt.step()  # builds the plan
    saved = lin(x).sum()  # saves the weight
    versions = [p._version for p in lin.parameters()]
    opt.step()  # the planned step
    assert all(p._version > v for p, v in zip(lin.parameters(), versions))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()


@pytest.mark.parametrize("edit", ["replace", "swap"])
def test_an_edited_param_list_gives_the_numbers_of_flat_false(edit):
    """``param_groups[0]["params"]`` changed in place (same list object): the flat layout no
    longer matches the group, which then steps as an ordinary one."""
    def run(flat):
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(3,), (5,), (5,)]]
        extra = torch.nn.Parameter(torch.randn(5, generator=gen))
        opt = RMSprop(params, lr=1e-2, impl="fused", flat=flat)
        for step in range(5):
            step_gen = torch.Generator().manual_seed(100 + step)
            for p in params + [extra]:
                p.grad = torch.randn(p.shape, generator=step_gen)
            if step == 2:
                listed = opt.param_groups[0]["params"]
                if edit == "replace":
                    listed[1] = extra
                else:
                    listed[1], listed[2] = listed[2], listed[1]
            if not flat:
                group_plan.forget(opt)
            opt.step()
        return [p.detach() for p in params + [extra]]

    for i, (a, b) in enumerate(zip(run(False), run(True))):
        assert torch.equal(a, b), i


def test_an_empty_parameter_keeps_the_group_flat():
    """data_ptr() of an empty tensor is 0 wherever its view lies: the layout must not take it
    for a parameter moved out of the buffer (and the numbers stay those of flat=False)."""
    sides = []
    for flat in (False, True):
        params = [torch.nn.Parameter(torch.linspace(-1, 1, 4)), torch.nn.Parameter(torch.ones(0)),
                  torch.nn.Parameter(torch.linspace(0, 2, 3))]
        opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, flat=flat)
        for step in range(3):
            for p in params:
                p.grad = torch.full_like(p, 0.5 - step)
            opt.step()
        sides.append((params, opt))
    plan = group_plan.plans_of(sides[1][1])[id(sides[1][1].param_groups[0])]
    assert plan.layout is not None
    for p, q in zip(sides[0][0], sides[1][0]):
        assert torch.equal(p, q)
