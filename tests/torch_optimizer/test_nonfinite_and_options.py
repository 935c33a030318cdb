"""Non-finite gradient policies, per-group options, schedulers and full-option state dicts."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from rmsprop import reference
from rmsprop.torch import NonFiniteGradientError, RMSprop

EXTRA = dict(momentum=0.9, centered=True, nesterov=True, eps_in_sqrt=True,
             initial_accumulator_value=1.0, lr_in_momentum=True, amsgrad=True,
             bias_correction=True, weight_decay=0.01, decoupled_weight_decay=True)


def snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in params},
            [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups])


def assert_unchanged(before, after):
    for a, b in zip(before[0], after[0]):
        assert torch.equal(a, b)
    assert before[1].keys() == after[1].keys()
    for pid in before[1]:
        assert before[1][pid].keys() == after[1][pid].keys()
        for key in before[1][pid]:
            assert torch.equal(before[1][pid][key], after[1][pid][key]), key


def setup(impl, policy, **kw):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    opt = RMSprop(params, lr=1e-2, impl=impl, nonfinite=policy, **{**EXTRA, **kw})
    return params, opt


def fill_grads(params, bad=None):
    for i, p in enumerate(params):
        p.grad = torch.randn_like(p)
        if bad is not None and i == 1:
            p.grad[2] = bad


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("first", [True, False], ids=["first-step", "later-step"])
def test_raise_changes_nothing(impl, bad, first):
    params, opt = setup(impl, "raise")
    if not first:
        for _ in range(3):
            fill_grads(params)
            opt.step()
    fill_grads(params, bad)
    before = snapshot(opt, params)
    with pytest.raises(NonFiniteGradientError):
        opt.step()
    assert_unchanged(before, snapshot(opt, params))
    if first:
        assert all(len(opt.state[p]) == 0 for p in params)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_skip_changes_nothing_but_counts(impl, bad):
    params, opt = setup(impl, "skip")
    for _ in range(3):
        fill_grads(params)
        opt.step()
    fill_grads(params, bad)
    before = snapshot(opt, params)
    opt.step()
    assert_unchanged(before, snapshot(opt, params))
    assert opt.skipped_steps == 1
    assert opt.state_dict()["param_groups"][0]["skipped_steps"] == 1
    # the next finite step proceeds as if the skipped one never happened
    fill_grads(params)
    opt.step()
    assert opt.state[params[0]]["step"].item() == 4


def test_each_policy_answers_for_its_own_groups():
    """A NaN in a "skip" group skips the step even when another group says "raise"; a NaN
    in the "raise" group raises and names it."""
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = RMSprop([{"params": [a], "nonfinite": "skip"}, {"params": [b], "nonfinite": "raise"}])
    a.grad = torch.tensor([1.0, float("nan"), 1.0, 1.0])
    b.grad = torch.ones(4)
    opt.step()
    assert opt.skipped_steps == 1
    assert torch.equal(a, torch.ones(4)) and torch.equal(b, torch.ones(4))
    a.grad = torch.ones(4)
    b.grad = torch.tensor([1.0, 1.0, float("inf"), 1.0])
    with pytest.raises(NonFiniteGradientError, match="param group 1"):
        opt.step()
    assert torch.equal(a, torch.ones(4)) and not opt.state[a]


def test_propagate_is_torch_behaviour():
    p = torch.nn.Parameter(torch.ones(3))
    q = p.detach().clone().requires_grad_()
    ours, theirs = RMSprop([p]), torch.optim.RMSprop([q])
    for x in (p, q):
        x.grad = torch.tensor([1.0, math.nan, math.inf])
    ours.step()
    theirs.step()
    torch.testing.assert_close(p, q, equal_nan=True)
    assert math.isnan(p[1].item())


def test_maximize_never_mutates_the_gradient():
    for impl in ("loop", "foreach"):
        p = torch.nn.Parameter(torch.randn(6))
        opt = RMSprop([p], maximize=True, weight_decay=0.1, impl=impl)
        g = torch.randn(6)
        p.grad = g.clone()
        opt.step()
        assert torch.equal(p.grad, g)


def run_groups(opts_per_group, steps=8, seed=0):
    """Two groups with different options, against the reference run per group."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=(3, 2)), rng.normal(size=(4,))]
    params = [torch.tensor(x, requires_grad=True) for x in init]
    opt = RMSprop([{"params": [params[0]], **opts_per_group[0]},
                   {"params": [params[1]], **opts_per_group[1]}], lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    grads = [[rng.normal(size=x.shape) for x in init] for _ in range(steps)]
    lrs = []
    for step_grads in grads:
        lrs.append([g["lr"] for g in opt.param_groups])
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
        sched.step()
    return init, params, opt, grads, lrs


def test_options_differ_per_param_group_and_follow_scheduler():
    groups = [dict(nesterov=True, momentum=0.9, amsgrad=True),
              dict(centered=True, eps_in_sqrt=True, lr_in_momentum=True, momentum=0.5,
                   bias_correction=True, initial_accumulator_value=1.0)]
    init, params, opt, grads, lrs = run_groups(groups)
    for i, group in enumerate(opt.param_groups):
        spec = RMSprop.spec_of(group)
        theta, state = init[i], reference.init_state(init[i], spec)
        for t, step_grads in enumerate(grads, start=1):
            theta, state = reference.step(theta, step_grads[i], state, spec, lrs[t - 1][i], t)
        np.testing.assert_allclose(params[i].detach().numpy(), theta, rtol=1e-12)
    assert lrs[0] == [0.05, 0.05] and lrs[-1] == [0.0125, 0.0125]


def test_group_flavor_supplies_its_presets():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = RMSprop([{"params": [p]}, {"params": [q], "flavor": "tensorflow", "alpha": 0.8}],
                  lr=0.1)
    tf_group = opt.param_groups[1]
    assert tf_group["eps_in_sqrt"] and tf_group["initial_accumulator_value"] == 1.0
    assert tf_group["alpha"] == 0.8 and tf_group["eps"] == 1e-10 and tf_group["lr"] == 0.1
    assert opt.param_groups[0]["alpha"] == 0.99 and not opt.param_groups[0]["eps_in_sqrt"]


def test_tensor_lr_matches_float_lr():
    results = []
    for lr in (0.01, torch.tensor(0.01)):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(5))
        opt = RMSprop([p], lr=lr, momentum=0.9)
        for _ in range(5):
            p.grad = torch.ones(5)
            opt.step()
        results.append(p.detach())
    assert torch.equal(*results)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_extra_options_survive_a_state_dict_round_trip(impl):
    """A reload reproduces the run: options torch lacks are saved in the param groups."""
    def fresh():
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]

    gen = torch.Generator().manual_seed(1)
    grads = [[torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
             for _ in range(20)]

    def run(params, opt, part):
        for step_grads in part:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()

    straight = fresh()
    opt = RMSprop(straight, lr=1e-2, impl=impl, flavor="keras", **EXTRA)
    run(straight, opt, grads)

    resumed = fresh()
    opt = RMSprop(resumed, lr=1e-2, impl=impl, flavor="keras", **EXTRA)
    run(resumed, opt, grads[:10])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    # a plain optimizer: everything comes back from the state dict
    reloaded = RMSprop(resumed, impl=impl)
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    group = reloaded.param_groups[0]
    assert group["flavor"] == "keras" and group["amsgrad"] and group["lr_in_momentum"]
    run(resumed, reloaded, grads[10:])
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_load_state_dict_validates_before_changing_anything():
    p = torch.nn.Parameter(torch.randn(3))
    opt = RMSprop([p], momentum=0.9)
    p.grad = torch.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["alpha"] = 1.5
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match="alpha"):
        opt.load_state_dict(sd)
    assert_unchanged(before, snapshot(opt, [p]))
    assert opt.param_groups[0]["alpha"] == 0.99
