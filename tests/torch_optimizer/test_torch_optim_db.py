"""PyTorch's own RMSprop test inputs (``optim_db`` in ``torch.testing._internal``, shipped in
the wheel) driven through rmsprop.torch.RMSprop, as torch's test/test_optim.py drives them,
with torch.optim.RMSprop as the reference: every input torch runs, the ``foreach`` and
``differentiable`` variants included, gives torch's numbers; the step of a differentiable
optimizer passes gradcheck; torch's error inputs raise torch's errors at the same point.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing._internal.common_optimizers import (
    OptimizerErrorEnum,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

import rmsprop.torch as rt

pytestmark = pytest.mark.parity

(RMSPROP_INFO,) = [info for info in optim_db if info.optim_cls is torch.optim.RMSprop]


def all_inputs(dtype):
    """torch's inputs with each of its global flags that runs here set in turn."""
    return _get_optim_inputs_including_global_cliquey_kwargs("cpu", dtype, RMSPROP_INFO)


def _input_id(optim_input):
    return optim_input.desc.replace(" ", "")


def _run(cls, kwargs, init, grads):
    """Steps of ``cls`` on copies of ``init``; under ``differentiable`` the parameters are
    non-leaf clones, as torch's tests make them (a step writes them under grad mode)."""
    leaves = [p.clone().requires_grad_() for p in init]
    params = [p.clone() for p in leaves] if kwargs.get("differentiable") else leaves
    opt = cls(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("optim_input", all_inputs(torch.float32), ids=_input_id)
def test_torch_inputs_give_torchs_numbers(optim_input, dtype):
    """Every input of torch's RMSprop OptimizerInfo as torch's tests build them on CPU (each
    with differentiable=False and =True; torch adds foreach only where its foreach kernels
    run, test_parity_torch covers it), our class left to its default impl: 10 steps,
    parameters and state bit-identical to torch's."""
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(5, 4, generator=gen, dtype=dtype), torch.randn(3, generator=gen,
                                                                       dtype=dtype)]
    grads = [[torch.randn(p.shape, generator=gen, dtype=dtype) for p in init]
             for _ in range(10)]
    (theirs, their_opt), (ours, our_opt) = (
        _run(cls, dict(optim_input.kwargs), init, grads)
        for cls in (torch.optim.RMSprop, rt.RMSprop))
    for a, b in zip(theirs, ours):
        assert torch.equal(a.detach(), b.detach())
    for a, b in zip(theirs, ours):
        their_state, our_state = their_opt.state[a], our_opt.state[b]
        assert their_state.keys() == our_state.keys()
        for key in their_state:
            assert torch.equal(their_state[key].detach(), our_state[key].detach()), key


def _differentiable_inputs():
    return [i for i in all_inputs(torch.float64) if i.kwargs.get("differentiable")]


def _one_step(cls, kwargs, p, grad, square_avg, momentum_buffer, grad_avg):
    """One step as a function of the parameter, its gradient and its state (torch's
    TestDifferentiableOptimizer pattern): returns the new parameter and state tensors."""
    p = p.clone()
    p.grad = grad
    opt = cls([p], **kwargs)
    state = {"step": torch.zeros((), dtype=torch.float64), "square_avg": square_avg.clone()}
    if kwargs.get("momentum", 0) > 0:
        state["momentum_buffer"] = momentum_buffer.clone()
    if kwargs.get("centered"):
        state["grad_avg"] = grad_avg.clone()
    opt.state[p].update(state)
    opt.step()
    return (p,) + tuple(v for k, v in opt.state[p].items() if k != "step")


def _step_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    p, grad = (torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(2))
    square_avg = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    momentum_buffer = torch.randn(6, generator=gen, dtype=torch.float64)
    grad_avg = 1e-2 * torch.rand(6, generator=gen, dtype=torch.float64)  # v - gbar^2 > 0
    return [t.requires_grad_() for t in (p, grad, square_avg, momentum_buffer, grad_avg)]


@pytest.mark.parametrize("optim_input", _differentiable_inputs(), ids=_input_id)
def test_differentiable_step_passes_gradcheck(optim_input):
    """The step of a differentiable=True optimizer is differentiable with respect to the
    parameter, its gradient and its state: autograd's derivatives agree with finite
    differences (gradcheck), as torch's own differentiable-optimizer tests check."""
    kwargs = dict(optim_input.kwargs)
    assert torch.autograd.gradcheck(
        lambda *tensors: _one_step(rt.RMSprop, kwargs, *tensors), tuple(_step_inputs()))


@pytest.mark.parametrize("optim_input", _differentiable_inputs(), ids=_input_id)
def test_differentiable_step_has_torchs_gradients(optim_input):
    """The gradients through one step equal those through torch.optim.RMSprop's step."""
    kwargs = dict(optim_input.kwargs)
    inputs = _step_inputs(seed=1)
    weights = torch.randn(6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gradients = []
    for cls in (torch.optim.RMSprop, rt.RMSprop):
        outputs = _one_step(cls, kwargs, *inputs)
        loss = sum((weights * out).sum() for out in outputs)
        gradients.append(torch.autograd.grad(loss, inputs, allow_unused=True))
    for theirs, ours in zip(*gradients):
        if theirs is None:
            assert ours is None
        else:
            torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, options", [("foreach", {"foreach": True}),
                                           ("amsgrad", {"amsgrad": True, "momentum": 0.9}),
                                           ("tensorflow", {"flavor": "tensorflow",
                                                           "centered": True})])
def test_differentiable_beyond_torchs_options_passes_gradcheck(name, options):
    """Our foreach path and our extra options are differentiable too (torch has neither):
    the step's derivatives agree with finite differences."""
    kwargs = {"differentiable": True, "lr": 0.1, **options}
    assert torch.autograd.gradcheck(
        lambda *tensors: _one_step(rt.RMSprop, kwargs, *tensors), tuple(_step_inputs()))


@pytest.mark.parametrize("differentiable", [False, True])
def test_the_step_is_recorded_only_when_differentiable(differentiable):
    """Without the flag the step runs under no_grad (torch's rule): the parameter keeps the
    history it had (a leaf stays a leaf; an in-place update under grad mode would raise);
    with it, the update is in its history (torch's optimizers take non-leaf tensors then)."""
    q = torch.randn(3, requires_grad=True)
    if differentiable:
        q = q.clone()
    q.grad = torch.ones(3)
    rt.RMSprop([q], differentiable=differentiable).step()
    recorded = q.grad_fn is not None and q.grad_fn.name() != "CloneBackward0"
    assert recorded == differentiable


@pytest.mark.parametrize("dtype", [torch.float32], ids=str)
def test_torch_error_inputs_raise_torchs_errors(dtype):
    """torch's error inputs (construction and step errors, warnings too), as its test_errors
    runs them: the same exception type matching torch's regex, at the same point."""
    errors = RMSPROP_INFO.optim_error_inputs_func(device="cpu", dtype=dtype)
    assert errors
    for error in errors:
        optim_input = error.optimizer_error_input
        params, kwargs = optim_input.params, optim_input.kwargs
        if error.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            check = pytest.warns if issubclass(error.error_type, Warning) else pytest.raises
            with check(error.error_type, match=error.error_regex):
                rt.RMSprop(params, **kwargs)
        else:
            opt = rt.RMSprop(params, **kwargs)
            check = pytest.warns if issubclass(error.error_type, Warning) else pytest.raises
            with check(error.error_type, match=error.error_regex):
                opt.step()


def test_capturable_on_cpu_is_refused_as_torch_refuses_it():
    """capturable=True on CPU: both accept the constructor and raise the same AssertionError
    at the first step; ours before anything changes (no state created, parameter as it was)."""
    messages = []
    for cls in (torch.optim.RMSprop, rt.RMSprop):
        p = torch.nn.Parameter(torch.randn(4))
        p.grad = torch.randn(4)
        before = p.detach().clone()
        opt = cls([p], capturable=True, momentum=0.9)
        with pytest.raises(AssertionError) as raised:
            opt.step()
        messages.append(str(raised.value))
        if cls is rt.RMSprop:
            assert torch.equal(p.detach(), before)
            assert not opt.state[p]
    assert messages[0] == messages[1]


def test_numpy_bools_are_accepted_for_the_torch_flags():
    np = pytest.importorskip("numpy")
    p = torch.randn(3).clone().requires_grad_()
    q = p.clone()
    q.grad = torch.ones(3)
    opt = rt.RMSprop([q], differentiable=np.True_, capturable=np.False_)
    assert opt.defaults["differentiable"] is True and opt.defaults["capturable"] is False
    opt.step()
    assert q.grad_fn is not None  # the step was recorded
