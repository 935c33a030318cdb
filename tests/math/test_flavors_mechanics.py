"""How flavours are applied: presets as defaults, explicit arguments win, clear errors, groups.

The numbers each flavour produces are checked against the frameworks in
tests/frameworks/test_parity_*.py and against the papers in tests/math/test_flavors_published.py.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch

import rmsprop
from rmsprop import FLAVORS, reference, resolve
from rmsprop.torch import RMSprop

SPEC_DEFAULTS = rmsprop.RMSpropSpec(lr=None).options()


def param(shape=(4, 3), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)


def group_spec(opt, i=0):
    return RMSprop.spec_of(opt.param_groups[i])


def test_flavors_lists_every_preset_with_one_line():
    listing = rmsprop.flavors()
    assert list(listing) == ["pytorch", "tensorflow", "keras", "optax", "timm", "sb3",
                             "graves", "dqn", "hinton"]
    for name, line in listing.items():
        assert isinstance(line, str) and line and "\n" not in line, name


def test_the_signature_keeps_torchs_defaults():
    """Drop-in: the printed defaults are torch.optim.RMSprop's."""
    ours = inspect.signature(RMSprop).parameters
    theirs = inspect.signature(torch.optim.RMSprop).parameters
    for name in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"):
        assert ours[name].default == theirs[name].default, name


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_a_flavor_sets_every_option_of_its_preset(flavor):
    preset = FLAVORS[flavor]
    lr = {"lr": 0.05} if preset.requires_lr else {}
    opt = RMSprop([param()], flavor=flavor, **lr)
    spec = group_spec(opt)
    for name, value in preset.preset.items():
        expected = lr["lr"] if name == "lr" and lr else value
        actual = opt.param_groups[0]["lr"] if name == "lr" else getattr(spec, name)
        assert actual == expected, (flavor, name)
    for name, value in SPEC_DEFAULTS.items():  # what the preset leaves alone keeps the default
        if name not in preset.preset and name not in ("lr", "flavor"):
            assert getattr(spec, name) == value, (flavor, name)
    assert spec.flavor == flavor


# For each flavour, explicit values that differ from its preset, including values equal to
# torch's signature defaults (which must not be mistaken for "not given").
EXPLICIT = [
    ("keras", dict(alpha=0.99, eps=1e-8, lr=1e-2)),
    ("tensorflow", dict(lr=0.1, alpha=0.99, eps=1e-8, initial_accumulator_value=0.0)),
    ("timm", dict(eps_in_sqrt=False, lr_in_momentum=False, momentum=0.9)),
    ("dqn", dict(centered=False)),
    ("graves", dict(momentum=0.0, centered=False, eps_in_sqrt=False)),
    ("sb3", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("optax", dict(lr=0.3, nesterov=True, momentum=0.5, bias_correction=True)),
    ("pytorch", dict(eps_in_sqrt=True, initial_accumulator_value=1.0)),
]


@pytest.mark.parametrize("flavor,explicit", EXPLICIT, ids=[f for f, _ in EXPLICIT])
def test_explicit_arguments_win_over_the_preset(flavor, explicit):
    opt = RMSprop([param()], flavor=flavor, **explicit)
    spec = group_spec(opt)
    for name, value in explicit.items():
        actual = opt.param_groups[0]["lr"] if name == "lr" else getattr(spec, name)
        assert actual == value, name
    assert spec == resolve(flavor, **explicit).replace(lr=None)


def test_dqn_with_centered_false_computes_the_uncentered_update():
    """Explicit centered=False under flavor="dqn": the numbers are the uncentered update with
    the rest of the dqn preset (eps 0.01 inside the root, rho 0.95)."""
    p = param()
    opt = RMSprop([p], flavor="dqn", centered=False)
    spec = resolve("dqn", centered=False)
    rng = np.random.default_rng(0)
    theta, state = p.detach().numpy().copy(), None
    state = reference.init_state(theta, spec)
    for t in range(1, 21):
        grad = rng.normal(size=theta.shape) * 10 ** rng.uniform(-3, 1, size=theta.shape)
        p.grad = torch.tensor(grad)
        opt.step()
        theta, state = reference.step(theta, grad, state, spec, 2.5e-4, t)
    assert "grad_avg" not in opt.state[p]
    np.testing.assert_allclose(p.detach().numpy(), theta, rtol=1e-12)


@pytest.mark.parametrize("flavor", ["tensorflow", "optax"])
def test_flavors_without_a_default_lr_require_one(flavor):
    with pytest.raises(ValueError, match=r"\blr\b"):
        RMSprop([param()], flavor=flavor)
    with pytest.raises(ValueError, match=r"\blr\b"):
        resolve(flavor)
    RMSprop([param()], flavor=flavor, lr=1e-3)  # given: fine


def test_an_unknown_flavor_lists_the_valid_ones():
    with pytest.raises(ValueError, match="flavor") as info:
        RMSprop([param()], flavor="tensorfow")
    message = str(info.value)
    assert "tensorfow" in message
    for name in FLAVORS:
        assert name in message
    with pytest.raises(ValueError, match="flavor"):
        resolve("Keras")


def test_a_param_group_can_have_its_own_flavor():
    """One optimizer, two groups: the second is exactly a flavor="tensorflow" optimizer."""
    a, b = param(seed=1), param(seed=2)
    a2, b2 = (x.detach().clone().requires_grad_(True) for x in (a, b))
    mixed = RMSprop(
        [{"params": [a]}, {"params": [b], "flavor": "tensorflow", "lr": 0.05, "momentum": 0.9}],
        lr=0.01,
    )
    alone_a = RMSprop([a2], lr=0.01)
    alone_b = RMSprop([b2], flavor="tensorflow", lr=0.05, momentum=0.9)
    assert group_spec(mixed, 0) == group_spec(alone_a)
    assert group_spec(mixed, 1) == group_spec(alone_b)
    assert group_spec(mixed, 1).eps_in_sqrt and group_spec(mixed, 1).lr_in_momentum
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        for x, y in ((a, a2), (b, b2)):
            x.grad = torch.randn(x.shape, generator=gen, dtype=torch.float64)
            y.grad = x.grad.clone()
        mixed.step()
        alone_a.step()
        alone_b.step()
    torch.testing.assert_close(a, a2, rtol=0, atol=0)
    torch.testing.assert_close(b, b2, rtol=0, atol=0)
    assert torch.equal(mixed.state[b]["square_avg"], alone_b.state[b2]["square_avg"])


def test_a_group_flavor_yields_to_the_groups_own_options():
    opt = RMSprop([{"params": [param()], "flavor": "keras", "alpha": 0.5, "eps": 1e-3}])
    spec = group_spec(opt)
    assert (spec.alpha, spec.eps, spec.eps_in_sqrt, spec.decoupled_weight_decay) == (
        0.5, 1e-3, True, True)
    assert opt.param_groups[0]["lr"] == 1e-2  # no lr in the group: the optimizer's


def test_a_group_with_an_unknown_flavor_is_refused():
    with pytest.raises(ValueError, match="flavor"):
        RMSprop([{"params": [param()], "flavor": "nope"}])


def test_the_flavor_survives_a_state_dict_round_trip():
    p = param()
    opt = RMSprop([p], flavor="timm", momentum=0.9)
    p.grad = torch.ones_like(p)
    opt.step()
    q = p.detach().clone().requires_grad_(True)
    restored = RMSprop([q])  # constructed with the default flavour
    # deepcopy, as a save/load would: torch's load_state_dict keeps the tensors it is given
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert group_spec(restored) == group_spec(opt)
    for x in (p, q):
        x.grad = torch.full_like(x, 0.5)
    opt.step()
    restored.step()
    assert torch.equal(p, q)
