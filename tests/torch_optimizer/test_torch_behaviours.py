"""The behaviours PyTorch's test/test_optim.py checks for every optimizer, checked for ours.

Each test runs ``rmsprop.torch.RMSprop`` next to ``torch.optim.RMSprop`` (bit-identical where
the options are torch's) or next to the float64 reference (``rmsprop.reference``, for the
options torch lacks): foreach == for-loop with a frozen layer, a 0-d parameter and steps
without gradients; complex == view_as_real; deterministic state dicts, ``weights_only``
loading and a non-tensor ``step``; zero gradients; hooks; named parameters; groups added
after steps; meta, empty, non-contiguous and mixed-dtype parameters; lr schedulers that move
``lr`` and ``momentum``; deepcopy and pickle.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.optim.swa_utils import SWALR, AveragedModel

from rmsprop import RMSpropSpec, reference, resolve
from option_matrix import ALL_SPECS, ill_conditioned, spec_id
from rmsprop.testing import option_matrix
from rmsprop.torch import RMSprop
from rmsprop.torch import rmsprop as functional_rmsprop

IMPLS = ("loop", "foreach")

# Options torch has: ours must give torch's numbers bit for bit.
TORCH_OPTIONS = [
    {},
    dict(momentum=0.9, centered=True, weight_decay=0.1),
    dict(momentum=0.5, maximize=True),
    dict(centered=True, weight_decay=0.1, maximize=True),
]


# A spread of the option matrix that holds every flag both ways (checked below). Its
# ill-conditioned specs are compared bit-for-bit only, not to the reference
# (tests/test_torch_reference.py covers them).
SAMPLE_SPECS = ALL_SPECS[::37]
REFERENCE_SPECS = [spec for spec in SAMPLE_SPECS if not ill_conditioned(spec)]
# Every extra option on at once.
EVERYTHING = dict(momentum=0.9, centered=True, nesterov=True, eps_in_sqrt=True,
                  initial_accumulator_value=1.0, lr_in_momentum=True, amsgrad=True,
                  bias_correction=True, weight_decay=0.01, decoupled_weight_decay=True)


def kwargs_of(spec: RMSpropSpec) -> dict:
    options = spec.options()
    options.pop("lr")
    return options


def assert_tree_equal(a, b, path="root"):
    """Equal structure and values; tensors bit-identical with the same dtype."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, (path, a.dtype, b.dtype)
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a.keys(), b.keys())
        for key in a:
            assert_tree_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b and type(a) is type(b), (path, a, b)


def assert_same_params_and_state(opt_a, opt_b):
    params_a = [p for g in opt_a.param_groups for p in g["params"]]
    params_b = [p for g in opt_b.param_groups for p in g["params"]]
    for pa, pb in zip(params_a, params_b, strict=True):
        assert torch.equal(pa, pb)
        assert_tree_equal(dict(opt_a.state[pa]), dict(opt_b.state[pb]))


def test_sample_holds_every_option_both_ways():
    for name in ("momentum", "nesterov", "centered", "eps_in_sqrt", "initial_accumulator_value",
                 "lr_in_momentum", "weight_decay", "decoupled_weight_decay", "amsgrad",
                 "bias_correction", "maximize"):
        assert len({getattr(spec, name) for spec in REFERENCE_SPECS}) == 2, name


# -- foreach == for-loop, with a frozen layer, a 0-d parameter and a step without grads ------


def train_with_frozen_layer(make_optimizer, dtype=torch.float64):
    """torch's _compare_between: 7 steps; no gradients at step 2 (a no-op), the second linear
    layer frozen at steps 3 and 4; a 0-d parameter. Returns the optimizer and, per parameter,
    the (gradient, lr) of each step it took."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(),
                                torch.nn.Linear(3, 1), torch.nn.Sigmoid()).to(dtype)
    scalar = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    params = [*model.parameters(), scalar]
    opt = make_optimizer(params)
    sched = lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + 0.3 * t))
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
    taken = [[] for _ in params]
    for i in range(7):
        opt.zero_grad()
        if i == 3:
            model[2].requires_grad_(False)
        if i == 5:
            model[2].requires_grad_(True)
        if i != 2:
            (model(x).sum() + 3 * scalar**2).backward()
        for j, p in enumerate(params):
            if p.grad is not None:
                taken[j].append((p.grad.double().numpy().copy(), opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return opt, params, taken


@pytest.mark.parametrize("kwargs", TORCH_OPTIONS, ids=str)
def test_frozen_layer_and_0d_param_match_torch(kwargs):
    runs = [train_with_frozen_layer(lambda ps: torch.optim.RMSprop(ps, foreach=f, **kwargs))[0]
            for f in (False, True)]
    runs += [train_with_frozen_layer(lambda ps: RMSprop(ps, impl=impl, **kwargs))[0]
             for impl in IMPLS]
    for opt in runs[1:]:
        assert_same_params_and_state(runs[0], opt)
    frozen_weight = runs[0].param_groups[0]["params"][2]
    assert runs[0].state[frozen_weight]["step"].item() == 4  # 7 steps, 3 without its grad


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=spec_id)
def test_frozen_layer_and_0d_param_every_option(spec):
    """loop and foreach bit-identical; each parameter equal to the reference run over the
    steps it took (t counts only those: bias correction sees it)."""
    results = [train_with_frozen_layer(lambda ps: RMSprop(ps, impl=impl, **kwargs_of(spec)))
               for impl in IMPLS]
    assert_same_params_and_state(results[0][0], results[1][0])
    if ill_conditioned(spec):
        return
    torch.manual_seed(1)
    initial = [p.detach().double().numpy() for p in torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1)).double().parameters()]
    initial.append(np.array(0.7))
    opt, params, taken = results[0]
    for p, theta0, steps in zip(params, initial, taken, strict=True):
        grads, lrs = [g for g, _ in steps], [lr for _, lr in steps]
        theta, state = reference.run(theta0, grads, spec, lrs)
        np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-12, atol=1e-15)
        assert opt.state[p]["step"].item() == len(steps)
        for key, value in state.items():
            np.testing.assert_allclose(opt.state[p][key].numpy(), value, rtol=1e-12,
                                       atol=1e-15, err_msg=key)


# -- complex parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("spec", SAMPLE_SPECS[::2], ids=spec_id)
def test_complex_is_view_as_real_and_split_parts(spec, impl):
    """A complex parameter moves as its view_as_real, and as its real and imaginary parts
    held as two real parameters, at every step (a real parameter in the same group)."""
    gen = torch.Generator().manual_seed(0)
    z = [torch.randn(10, 5, dtype=torch.complex64, generator=gen),
         torch.randn(10, dtype=torch.complex64, generator=gen)]
    real = torch.randn(10, 5, generator=gen)
    complex_params = [t.clone().requires_grad_() for t in (*z, real)]
    as_real_params = [torch.view_as_real(t).clone().requires_grad_() for t in z]
    as_real_params.append(real.clone().requires_grad_())
    split_params = [part.clone().requires_grad_() for t in z for part in (t.real, t.imag)]
    split_params.append(real.clone().requires_grad_())
    opts = [RMSprop(ps, lr=1e-2, impl=impl, **kwargs_of(spec))
            for ps in (complex_params, as_real_params, split_params)]
    for _ in range(4):
        grads = [torch.randn(t.shape, dtype=t.dtype, generator=gen) for t in (*z, real)]
        for p, g in zip(complex_params, grads):
            p.grad = g.clone()
        for p, g in zip(as_real_params, grads):
            p.grad = torch.view_as_real(g).clone() if g.is_complex() else g.clone()
        split_grads = [part.clone() for g in grads[:2] for part in (g.real, g.imag)]
        for p, g in zip(split_params, [*split_grads, grads[2].clone()]):
            p.grad = g
        for opt in opts:
            opt.step()
        for i in range(2):
            viewed = torch.view_as_real(complex_params[i].detach())
            assert torch.equal(viewed, as_real_params[i].detach())
            assert torch.equal(viewed[..., 0], split_params[2 * i].detach())
            assert torch.equal(viewed[..., 1], split_params[2 * i + 1].detach())
        assert torch.equal(complex_params[2], as_real_params[2])
        assert torch.equal(complex_params[2], split_params[4])


# -- state dicts --------------------------------------------------------------------------


def named(params, is_named):
    return [(f"name{i}", p) for i, p in enumerate(params)] if is_named else params


def quadratic_problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.nn.Parameter(torch.randn(2, 3, generator=gen))
    bias = torch.nn.Parameter(torch.randn(2, generator=gen))
    x = torch.randn(3, generator=gen)
    return weight, bias, x


def step_on(opt, weight, bias, x):
    opt.zero_grad()
    (weight.mv(x) + bias).pow(2).sum().backward()
    opt.step()


def without_param_names(state_dict):
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        group.pop("param_names", None)
    return state_dict


STATE_DICT_CASES = [
    dict(impl="loop"), dict(impl="foreach", momentum=0.9, centered=True),
    dict(impl="loop", flavor="keras", **EVERYTHING), dict(impl="foreach", **EVERYTHING),
]


@pytest.mark.parametrize("named0", [False, True])
@pytest.mark.parametrize("named1", [False, True])
@pytest.mark.parametrize("kwargs", STATE_DICT_CASES, ids=lambda k: k.get("flavor", k["impl"]))
def test_state_dict_is_deterministic(kwargs, named0, named1):
    """torch's test_state_dict_deterministic: an optimizer loaded from a deepcopy of another's
    state dict trains identically and ends with an equal state dict; repeated groups have
    identical representations."""
    weight, bias, x = quadratic_problem()
    opt = RMSprop(named([weight, bias], named0), lr=1e-2, **kwargs)
    for _ in range(10):
        step_on(opt, weight, bias, x)
    weight_c = torch.nn.Parameter(weight.detach().clone())
    bias_c = torch.nn.Parameter(bias.detach().clone())
    opt_c = RMSprop(named([weight_c, bias_c], named1), lr=1e-2, **kwargs)
    saved = copy.deepcopy(opt.state_dict())
    opt_c.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert_tree_equal(saved, opt.state_dict())  # loading did not touch the source
    for _ in range(10):
        step_on(opt, weight, bias, x)
        step_on(opt_c, weight_c, bias_c, x)
        assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)
    assert_tree_equal(without_param_names(opt.state_dict()),
                      without_param_names(opt_c.state_dict()))
    if named0 or named1:
        assert opt_c.state_dict()["param_groups"][0]["param_names"] == ["name0", "name1"]
    opt_c.param_groups.extend(opt_c.param_groups)
    assert_tree_equal(without_param_names(opt.state_dict())["param_groups"][-1],
                      without_param_names(opt_c.state_dict())["param_groups"][-1])


@pytest.mark.parametrize("is_named", [False, True])
def test_save_load_equality_with_weights_only(is_named):
    """A state dict with every extra option, a flavour and a tensor lr comes back from
    torch.load(weights_only=True) equal, and the loaded optimizer continues identically."""
    weight, bias, x = quadratic_problem()
    opt = RMSprop(named([weight, bias], is_named), lr=torch.tensor(1e-2), flavor="keras",
                  nonfinite="skip", **EVERYTHING)
    for _ in range(3):
        step_on(opt, weight, bias, x)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert_tree_equal(loaded, opt.state_dict())
    weight_c = torch.nn.Parameter(weight.detach().clone())
    bias_c = torch.nn.Parameter(bias.detach().clone())
    opt_c = RMSprop([weight_c, bias_c])  # a plain optimizer: the options come from the dict
    opt_c.load_state_dict(loaded)
    for _ in range(5):
        step_on(opt, weight, bias, x)
        step_on(opt_c, weight_c, bias_c, x)
    assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)


@pytest.mark.parametrize("kind", [float, int])
@pytest.mark.parametrize("kwargs", [{}, dict(bias_correction=True, momentum=0.9)], ids=str)
def test_non_tensor_step_loads_and_continues_identically(kind, kwargs):
    """An old state dict whose 'step' is a Python number (torch's test_load_nontensor_step):
    it loads, becomes a tensor of torch's step dtype, and the run continues as with the tensor
    (bias correction reads the step)."""
    weight, bias, x = quadratic_problem()
    opt = RMSprop([weight, bias], impl="loop", **kwargs)
    for _ in range(3):
        step_on(opt, weight, bias, x)
    state_dict = copy.deepcopy(opt.state_dict())
    for p_state in state_dict["state"].values():
        p_state["step"] = kind(p_state["step"].item())
    weight_c = torch.nn.Parameter(weight.detach().clone())
    bias_c = torch.nn.Parameter(bias.detach().clone())
    opt_c = RMSprop([weight_c, bias_c], impl="loop", **kwargs)
    opt_c.load_state_dict(state_dict)
    assert all(s["step"].dtype == torch.float32 and s["step"].item() == 3
               for s in opt_c.state.values())
    for _ in range(4):
        step_on(opt, weight, bias, x)
        step_on(opt_c, weight_c, bias_c, x)
    assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c)


def test_step_dtype_follows_default_dtype_as_torch():
    """torch keeps 'step' in float64 when float64 is the default dtype (_get_scalar_dtype),
    fresh or loaded from a number; ours too, with identical numbers."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        opts = []
        for make in (lambda ps: torch.optim.RMSprop(ps, momentum=0.9),
                     lambda ps: RMSprop(ps, momentum=0.9, impl="loop")):
            weight, bias, x = quadratic_problem()
            opt = make([weight, bias])
            for _ in range(3):
                step_on(opt, weight, bias, x)
            state_dict = opt.state_dict()
            for p_state in state_dict["state"].values():
                p_state["step"] = p_state["step"].item()
            opt.load_state_dict(state_dict)
            step_on(opt, weight, bias, x)
            opts.append(opt)
        assert_same_params_and_state(*opts)
        assert all(s["step"].dtype == torch.float64 for s in opts[1].state.values())
    finally:
        torch.set_default_dtype(previous)


def test_older_state_dict_without_new_flags_loads():
    """torch's test_can_load_older_state_dict: groups saved without the flags torch added
    later (maximize, foreach, differentiable, capturable) nor our options take this
    optimizer's values and the run goes on as before."""
    kwargs = dict(momentum=0.9, maximize=True, amsgrad=True, flavor="keras", impl="foreach")
    runs = []
    for strip in (False, True):
        weight, bias, x = quadratic_problem()
        opt = RMSprop([weight, bias], **kwargs)
        for _ in range(3):
            step_on(opt, weight, bias, x)
        state_dict = copy.deepcopy(opt.state_dict())
        if strip:
            keep = ("params", "lr", "alpha", "eps", "weight_decay", "momentum", "centered")
            for group in state_dict["param_groups"]:
                for key in [k for k in group if k not in keep]:
                    del group[key]
        opt.load_state_dict(state_dict)
        for _ in range(3):
            step_on(opt, weight, bias, x)
        runs.append(opt)
    assert_same_params_and_state(*runs)
    assert runs[1].param_groups[0]["amsgrad"] and runs[1].param_groups[0]["maximize"]


# -- gradients: zero, absent, set_to_none ------------------------------------------------------


@pytest.mark.parametrize("spec", list(option_matrix(weight_decay=0.0))[::5], ids=spec_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_zero_gradients_do_not_move_parameters(impl, spec):
    """torch's test_step_is_noop_for_zero_grads, over every option without weight decay:
    parameters stay bit-identical, the state is the reference's after a zero-gradient step."""
    param = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)
    before = param.detach().clone()
    opt = RMSprop([param], lr=1e-2, impl=impl, **kwargs_of(spec))
    for _ in range(2):
        opt.zero_grad(set_to_none=False)
        param.grad = torch.zeros_like(param)
        assert opt.step(lambda: torch.tensor([1.0])).item() == 1.0
    assert torch.equal(param.detach(), before), spec
    theta, state = reference.run(before.numpy(), [np.zeros((5, 1))] * 2, spec, [1e-2] * 2)
    for key, value in state.items():
        np.testing.assert_array_equal(opt.state[param][key].numpy(), value, err_msg=key)


def test_zero_grad_set_to_none_matches_torch():
    """zero_grad(set_to_none=False) leaves zero gradients: a step creates state and counts;
    set_to_none=True leaves none: a step is a no-op. Same as torch."""
    results = []
    for cls in (torch.optim.RMSprop, RMSprop):
        weight, bias, x = quadratic_problem()
        frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
        opt = cls([weight, bias, frozen], momentum=0.9, foreach=False)
        step_on(opt, weight, bias, x)
        opt.zero_grad(set_to_none=False)
        assert torch.equal(weight.grad, torch.zeros_like(weight))
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert weight.grad is None
        opt.step()
        assert len(opt.state[frozen]) == 0 and torch.equal(frozen, torch.ones(3))
        results.append(opt)
    assert_same_params_and_state(*results)
    assert results[1].state[results[1].param_groups[0]["params"][0]]["step"].item() == 2


# -- hooks --------------------------------------------------------------------------------


def hook_trace(cls):
    """What the step, state_dict and load_state_dict hooks see, for optimizer class ``cls``."""
    trace = []
    param = torch.nn.Parameter(torch.ones(2))
    param.grad = torch.ones(2)
    opt = cls([param], lr=0.01)
    other = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    pre = opt.register_step_pre_hook(lambda o, a, k: trace.append("pre"))
    post = opt.register_step_post_hook(lambda o, a, k: trace.append("post"))
    global_pre = register_optimizer_step_pre_hook(lambda o, a, k: trace.append("global-pre"))
    global_post = register_optimizer_step_post_hook(lambda o, a, k: trace.append("global-post"))
    try:
        opt.step()
        other.step()
    finally:
        global_pre.remove()
        global_post.remove()
    pre.remove()
    post.remove()
    opt.step()
    trace.append(("param", param.detach().clone()))

    opt.register_state_dict_pre_hook(lambda o: o.state.__setitem__("test", 1))

    def state_dict_post(o, state_dict):
        state_dict["ran_pre"] = state_dict["state"].pop("test", None) == 1
        return state_dict

    opt.register_state_dict_post_hook(state_dict_post)
    state_dict = opt.state_dict()
    trace.append(("ran_pre", state_dict.pop("ran_pre"), "test" in state_dict["state"]))

    def set_lr(value):
        def hook(o, sd):
            sd = copy.deepcopy(sd)
            sd["param_groups"][0]["lr"] = value
            return sd
        return hook

    opt.register_load_state_dict_pre_hook(set_lr(0.002))
    opt.register_load_state_dict_pre_hook(set_lr(0.003), prepend=True)
    opt.register_load_state_dict_post_hook(
        lambda o: trace.append(("post-load lr", o.param_groups[0]["lr"])))
    opt.load_state_dict(state_dict)
    trace.append(("lr", opt.param_groups[0]["lr"]))
    return trace


def test_hooks_run_as_in_torch():
    """Step pre/post hooks (local, global, removal), state_dict pre/post hooks and
    load_state_dict pre (prepend) / post hooks: the same trace as torch.optim.RMSprop."""
    ours, theirs = hook_trace(RMSprop), hook_trace(torch.optim.RMSprop)
    assert ours[:6] == ["global-pre", "pre", "post", "global-post", "global-pre",
                        "global-post"]
    assert ours[7:] == [("ran_pre", True, False), ("post-load lr", 0.002), ("lr", 0.002)]
    assert_tree_equal(ours, theirs)


# -- named parameters, param groups -------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_named_parameters_as_torch(impl):
    """Optimizers over named_parameters() keep the names in the state dict; a named state
    dict loads into an unnamed optimizer and back, across ours and torch's, and training
    continues identically."""
    def model():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2))

    x = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))

    def train(m, opt, n):
        for _ in range(n):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()

    runs = []
    for first, second in ((torch.optim.RMSprop, RMSprop), (RMSprop, torch.optim.RMSprop)):
        m = model()
        kw = dict(momentum=0.9, centered=True, foreach=impl == "foreach")
        opt = first(m.named_parameters(), **kw)
        train(m, opt, 3)
        names = opt.state_dict()["param_groups"][0]["param_names"]
        assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
        opt2 = second(m.parameters(), **kw)
        opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
        assert opt2.state_dict()["param_groups"][0]["param_names"] == names
        train(m, opt2, 3)
        runs.append((m, opt2))
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_add_param_group_after_steps_matches_torch(impl):
    runs = []
    for cls in (torch.optim.RMSprop, RMSprop):
        gen = torch.Generator().manual_seed(0)
        first = torch.nn.Parameter(torch.randn(4, 3, generator=gen))
        later = torch.nn.Parameter(torch.randn(5, generator=gen))
        opt = cls([first], lr=1e-2, momentum=0.9, foreach=impl == "foreach")
        for t in range(8):
            if t == 3:
                opt.add_param_group({"params": [later], "lr": 0.05, "centered": True})
            for p in opt.param_groups[-1]["params"] + [first]:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        runs.append(opt)
    assert_same_params_and_state(*runs)
    assert runs[1].state[runs[1].param_groups[1]["params"][0]]["step"].item() == 5


def test_add_param_group_after_steps_every_option():
    """A group with its own flavour and options joins after 3 steps: its parameter follows
    the reference from its own t = 1 (with the constructor's momentum and Nesterov, which
    keras' preset does not set); the first group is untouched by the join."""
    gen = np.random.default_rng(0)
    init = [gen.normal(size=(4, 3)), gen.normal(size=(5,))]
    params = [torch.tensor(a, requires_grad=True) for a in init]
    opt = RMSprop([params[0]], lr=1e-2, momentum=0.9, nesterov=True, impl="loop")
    grads = [[gen.normal(size=a.shape) for a in init] for _ in range(8)]
    for t, step_grads in enumerate(grads):
        if t == 3:
            opt.add_param_group({"params": [params[1]], "flavor": "keras", "lr": 0.05,
                                 "amsgrad": True, "centered": True, "bias_correction": True,
                                 "initial_accumulator_value": 1.0})
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    specs = [resolve("pytorch", lr=1e-2, momentum=0.9, nesterov=True),
             resolve("keras", lr=0.05, amsgrad=True, centered=True, bias_correction=True,
                     initial_accumulator_value=1.0, momentum=0.9, nesterov=True)]
    for i, (spec, start) in enumerate(zip(specs, (0, 3))):
        assert RMSprop.spec_of(opt.param_groups[i]) == spec.replace(lr=None)
        steps = [g[i] for g in grads[start:]]
        theta, _ = reference.run(init[i], steps, spec, [spec.lr] * len(steps))
        np.testing.assert_allclose(params[i].detach().numpy(), theta, rtol=1e-12, atol=1e-15)


def test_group_of_another_flavor_keeps_the_constructor_options():
    """A group with its own flavour takes that flavour's preset, yet the options the
    constructor set (maximize, nonfinite, momentum) still apply to it, as torch's constructor
    arguments apply to every group; the group's own options win."""
    gen = np.random.default_rng(1)
    init = [gen.normal(size=(3,)), gen.normal(size=(3,))]
    params = [torch.tensor(a, requires_grad=True) for a in init]
    opt = RMSprop([{"params": [params[0]]},
                   {"params": [params[1]], "flavor": "keras", "alpha": 0.8}],
                  lr=0.05, momentum=0.9, maximize=True, nonfinite="raise", impl="loop")
    keras_group = opt.param_groups[1]
    assert keras_group["maximize"] and keras_group["nonfinite"] == "raise"
    assert keras_group["momentum"] == 0.9 and keras_group["alpha"] == 0.8
    assert keras_group["eps"] == 1e-7 and keras_group["eps_in_sqrt"]
    grads = [[gen.normal(size=(3,)) for _ in range(2)] for _ in range(5)]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    spec = resolve("keras", lr=0.05, momentum=0.9, maximize=True, nonfinite="raise",
                   alpha=0.8)
    theta, _ = reference.run(init[1], [g[1] for g in grads], spec, [0.05] * 5)
    np.testing.assert_allclose(params[1].detach().numpy(), theta, rtol=1e-12)
    params[1].grad = torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64)
    with pytest.raises(FloatingPointError):
        opt.step()


@pytest.mark.parametrize("group", [{"momentum": -1.0}, {"alpha": 1.0}, {"impl": "fastest"},
                                   {"capturable": True, "impl": "fused"},
                                   {"differentiable": True, "impl": "fused"}],
                         ids=lambda g: next(iter(g)))
def test_refused_param_group_leaves_the_optimizer_as_it_was(group):
    """An invalid group raises a ValueError naming the option, and is not added: the
    optimizer goes on exactly as one that never saw it (capturable and differentiable on
    the fused kernel are refused in a group as in the constructor, never ignored)."""
    runs = []
    for add in (False, True):
        p = torch.nn.Parameter(torch.arange(3.0))
        opt = RMSprop([p], momentum=0.9, impl="loop")
        if add:
            q = torch.nn.Parameter(torch.zeros(2))
            with pytest.raises(ValueError, match=next(iter(group))):
                opt.add_param_group({"params": [q], **group})
            assert len(opt.param_groups) == 1
        for _ in range(3):
            p.grad = torch.ones(3)
            opt.step()
        runs.append(opt)
    assert_same_params_and_state(*runs)


# -- unusual parameters -------------------------------------------------------------------


def unusual_params():
    gen = torch.Generator().manual_seed(3)
    return [
        torch.randn(10, 5, 2, generator=gen)[..., 0],                  # non-contiguous
        torch.randn(2, 3, 4, 5, generator=gen).to(memory_format=torch.channels_last),
        torch.empty(0),                                                 # zero elements
        torch.empty(3, 0, 2),
        torch.randn((), generator=gen),                                 # 0-d
        torch.randn(6, generator=gen).to(torch.float16),
        torch.randn(6, generator=gen).to(torch.bfloat16),
        torch.randn(6, generator=gen).double(),
    ]


@pytest.mark.parametrize("kwargs", TORCH_OPTIONS, ids=str)
def test_unusual_parameters_match_torch(kwargs):
    """Non-contiguous, channels_last, zero-element, 0-d and mixed-dtype (float16, bfloat16,
    float64) parameters in one group: loop and foreach give the numbers and state of torch's
    for-loop and foreach (in the parameter's dtype and memory format). On CPU torch's own two
    differ in the last bit for float16/bfloat16, so ours do too; elsewhere all four agree."""
    runs = []
    for make in [lambda ps, f=f: torch.optim.RMSprop(ps, foreach=f, **kwargs)
                 for f in (False, True)] + [lambda ps, i=i: RMSprop(ps, impl=i, **kwargs)
                                            for i in IMPLS]:
        params = [t.clone(memory_format=torch.preserve_format).requires_grad_()
                  for t in unusual_params()]
        gen = torch.Generator().manual_seed(4)
        opt = make(params)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            opt.step()
        runs.append(opt)
    torch_loop, torch_foreach, ours_loop, ours_foreach = runs
    assert_same_params_and_state(torch_loop, ours_loop)
    assert_same_params_and_state(torch_foreach, ours_foreach)
    for p, q in zip(ours_loop.param_groups[0]["params"], ours_foreach.param_groups[0]["params"]):
        if p.dtype not in (torch.float16, torch.bfloat16):
            assert torch.equal(p, q)
            assert_tree_equal(dict(ours_loop.state[p]), dict(ours_foreach.state[q]))
    ours = ours_foreach
    channels_last = ours.param_groups[0]["params"][1]
    assert ours.state[channels_last]["square_avg"].is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("impl", IMPLS)
def test_meta_parameters_step_as_torch(impl):
    """Parameters on the meta device (deferred initialisation): a step runs and creates
    the same state (keys, shapes, dtypes, devices) as torch's."""
    states = []
    for make in (lambda ps: torch.optim.RMSprop(ps, momentum=0.9, centered=True,
                                                foreach=impl == "foreach"),
                 lambda ps: RMSprop(ps, momentum=0.9, centered=True, impl=impl)):
        with torch.device("meta"):
            model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
            for p in model.parameters():
                p.grad = torch.rand_like(p)
        opt = make(model.parameters())
        opt.step()
        states.append([{k: (v.shape, v.dtype, v.device.type) for k, v in opt.state[p].items()}
                       for p in model.parameters()])
    assert states[0] == states[1]
    assert states[1][0]["square_avg"][2] == "meta"


# -- lr schedulers --------------------------------------------------------------------------


def run_scheduled(cls, make_scheduler, impl, steps=25, plateau=False, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = cls(model.parameters(), lr=1e-2, foreach=impl == "foreach", **kwargs)
    scheduler = make_scheduler(opt)
    gen = torch.Generator().manual_seed(1)
    seen = []
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=gen), torch.randn(16, 3, generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        opt.step()
        scheduler.step(loss.item()) if plateau else scheduler.step()
    return model, opt, seen


SCHEDULERS = {
    "OneCycleLR": (lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=25,
                                                     base_momentum=0.8, max_momentum=0.95),
                   dict(momentum=0.9), False),
    "CyclicLR": (lambda o: lr_scheduler.CyclicLR(o, base_lr=1e-3, max_lr=0.05, step_size_up=4,
                                                 base_momentum=0.8, max_momentum=0.9),
                 dict(momentum=0.9, centered=True), False),
    "ReduceLROnPlateau": (lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=1,
                                                                   threshold=0.5),
                          dict(weight_decay=0.1), True),
    "SWALR": (lambda o: SWALR(o, swa_lr=0.03, anneal_epochs=5, anneal_strategy="cos"),
              dict(), False),
    "SequentialLR": (lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=5),
            lr_scheduler.ExponentialLR(o, gamma=0.9)], milestones=[5]),
                     dict(momentum=0.5, maximize=True), False),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_lr_schedulers_match_torch(name, impl):
    """Schedulers that set lr, and OneCycleLR / CyclicLR with cycle_momentum, which set each
    group's 'momentum' (they need 'momentum' in the optimizer's defaults): the same lr and
    momentum sequence and bit-identical training as torch.optim.RMSprop."""
    make_scheduler, kwargs, plateau = SCHEDULERS[name]
    torch_run = run_scheduled(torch.optim.RMSprop, make_scheduler, impl, plateau=plateau,
                              **kwargs)
    our_run = run_scheduled(RMSprop, make_scheduler, impl, plateau=plateau, **kwargs)
    assert our_run[2] == torch_run[2]
    assert len(set(our_run[2])) > 3  # the schedule moved
    for a, b in zip(torch_run[0].parameters(), our_run[0].parameters()):
        assert torch.equal(a, b)
    assert_same_params_and_state(torch_run[1], our_run[1])


@pytest.mark.parametrize("lr_in_momentum", [False, True])
def test_one_cycle_momentum_with_extra_options_follows_reference(lr_in_momentum):
    """OneCycleLR moves lr and momentum every step; with Nesterov, AMSGrad, bias correction
    and either momentum form, ours follows the reference run with the same per-step lr and
    momentum."""
    gen = np.random.default_rng(2)
    init = gen.normal(size=(4, 3))
    param = torch.tensor(init, requires_grad=True)
    kwargs = dict(momentum=0.9, nesterov=True, amsgrad=True, bias_correction=True,
                  lr_in_momentum=lr_in_momentum)
    opt = RMSprop([param], lr=1e-2, impl="foreach", **kwargs)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)
    theta, state = init, reference.init_state(init, resolve(**kwargs))
    momenta = set()
    for t in range(1, 13):
        g = gen.normal(size=init.shape)
        group = opt.param_groups[0]
        momenta.add(group["momentum"])
        spec = resolve(lr=group["lr"], **{**kwargs, "momentum": group["momentum"]})
        theta, state = reference.step(theta, g, state, spec, group["lr"], t)
        param.grad = torch.tensor(g)
        opt.step()
        sched.step()
    assert len(momenta) > 5
    np.testing.assert_allclose(param.detach().numpy(), theta, rtol=1e-12)
    for key, value in state.items():
        np.testing.assert_allclose(opt.state[param][key].numpy(), value, rtol=1e-12)


def test_swa_averaged_model_with_our_optimizer():
    """torch.optim.swa_utils: AveragedModel + SWALR around ours average the same weights as
    around torch's."""
    averages = []
    for cls in (torch.optim.RMSprop, RMSprop):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        swa_model = AveragedModel(model)
        opt = cls(model.parameters(), lr=0.05, momentum=0.9, foreach=False)
        swa_sched = SWALR(opt, swa_lr=0.01, anneal_epochs=3)
        gen = torch.Generator().manual_seed(1)
        for epoch in range(8):
            opt.zero_grad()
            model(torch.randn(8, 4, generator=gen)).pow(2).mean().backward()
            opt.step()
            if epoch >= 4:
                swa_model.update_parameters(model)
                swa_sched.step()
        averages.append([p.detach().clone() for p in swa_model.parameters()])
    for a, b in zip(*averages):
        assert torch.equal(a, b)


# -- copying --------------------------------------------------------------------------------


def test_deepcopy_and_pickle_continue_identically():
    """deepcopy keeps every public attribute; a pickled (params, optimizer) pair, with every
    extra option and a flavour, continues exactly as the original."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, generator=gen)),
              torch.nn.Parameter(torch.randn(5, generator=gen))]
    opt = RMSprop(params, lr=1e-2, flavor="timm", impl="foreach", nonfinite="skip",
                  **EVERYTHING)
    grads = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(6)]

    def run(ps, o, part):
        for step_grads in part:
            for p, g in zip(ps, step_grads):
                p.grad = g.clone()
            o.step()

    run(params, opt, grads[:3])
    public = {k for k in opt.__dict__ if not k.startswith("_")}
    assert public == {k for k in copy.deepcopy(opt).__dict__ if not k.startswith("_")}
    params_c, opt_c = pickle.loads(pickle.dumps((params, opt)))
    params_d, opt_d = copy.deepcopy((params, opt))
    for ps, o in ((params, opt), (params_c, opt_c), (params_d, opt_d)):
        run(ps, o, grads[3:])
    assert_same_params_and_state(opt, opt_c)
    assert_same_params_and_state(opt, opt_d)
    assert opt_c.param_groups[0]["flavor"] == "timm"


def test_repr_shows_every_option():
    opt = RMSprop([torch.nn.Parameter(torch.ones(2))], flavor="keras", amsgrad=True)
    text = repr(opt)
    for fragment in ("RMSprop (", "flavor: keras", "amsgrad: True", "eps_in_sqrt: True",
                     "nonfinite: propagate", "lr: 0.001"):
        assert fragment in text, fragment


# -- the functional form ------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("missing,spec", [
    ("momentum_buffers", RMSpropSpec(momentum=0.9)),
    ("grad_avgs", RMSpropSpec(centered=True)),
    ("max_square_avgs", RMSpropSpec(amsgrad=True)),
    ("square_avgs", RMSpropSpec()),
])
def test_functional_missing_state_list_is_a_clear_error(missing, spec, impl):
    """A state list the options need, left out of the functional form, is a ValueError naming
    it, raised before anything changes (it used to skip the update silently)."""
    param, grad = torch.ones(3), torch.ones(3)
    lists = dict(square_avgs=[torch.zeros(3)], max_square_avgs=[torch.zeros(3)],
                 grad_avgs=[torch.zeros(3)], momentum_buffers=[torch.zeros(3)])
    lists[missing] = []
    steps = [torch.zeros(())]
    with pytest.raises(ValueError, match=missing):
        functional_rmsprop([param], [grad], lists.pop("square_avgs"), steps, **lists,
                           spec=spec, lr=0.1, impl=impl)
    assert torch.equal(param, torch.ones(3)) and steps[0].item() == 0
