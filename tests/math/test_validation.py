"""Every invalid input gets a clear exception naming the argument, at construction."""

from __future__ import annotations

import math

import pytest
import torch

from rmsprop import RMSpropSpec, resolve
from rmsprop.torch import RMSprop

NEGATIVE = ["lr", "eps", "momentum", "weight_decay", "initial_accumulator_value"]


def build_spec(**kwargs):
    return RMSpropSpec(**kwargs)


def build_torch(**kwargs):
    return RMSprop([torch.nn.Parameter(torch.zeros(2))], **kwargs)


BUILDERS = pytest.mark.parametrize("build", [build_spec, build_torch], ids=["spec", "torch"])


@BUILDERS
@pytest.mark.parametrize("name", NEGATIVE)
def test_negative(build, name):
    with pytest.raises(ValueError, match=rf"{name}.*-0\.5|-0\.5.*{name}") as info:
        build(**{name: -0.5})
    assert name in str(info.value) and "-0.5" in str(info.value)


@BUILDERS
@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_alpha_outside_unit_interval(build, alpha):
    with pytest.raises(ValueError, match="alpha") as info:
        build(alpha=alpha)
    assert str(alpha) in str(info.value)


@BUILDERS
def test_alpha_zero_is_valid(build):
    build(alpha=0.0)


@BUILDERS
@pytest.mark.parametrize("momentum", [0.0, None])
def test_nesterov_without_momentum(build, momentum):
    kwargs = {"nesterov": True}
    if momentum is not None:
        kwargs["momentum"] = momentum
    with pytest.raises(ValueError, match="nesterov.*momentum"):
        build(**kwargs)


@BUILDERS
def test_unknown_flavor_lists_valid_ones(build):
    with pytest.raises(ValueError, match="flavor") as info:
        build(flavor="pytorchh")
    message = str(info.value)
    assert "'pytorchh'" in message
    for valid in ("pytorch", "tensorflow", "keras", "optax", "timm", "sb3", "graves", "dqn"):
        assert valid in message


def test_unknown_impl_lists_valid_ones():
    with pytest.raises(ValueError, match="impl") as info:
        build_torch(impl="fastest")
    assert "'fastest'" in str(info.value) and "loop" in str(info.value)
    assert "foreach" in str(info.value)


@BUILDERS
def test_unknown_nonfinite_lists_valid_ones(build):
    with pytest.raises(ValueError, match="nonfinite") as info:
        build(nonfinite="ignore")
    assert "'ignore'" in str(info.value) and "skip" in str(info.value)


@BUILDERS
@pytest.mark.parametrize("name", ["lr", "alpha", "eps", "weight_decay", "momentum",
                                  "initial_accumulator_value"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_hyperparameters(build, name, value):
    with pytest.raises(ValueError, match=name) as info:
        build(**{name: value})
    assert str(value) in str(info.value)


@BUILDERS
def test_numpy_bools_are_bools(build):
    """NumPy 2 names its bool scalar numpy.bool; it and 0-d bool arrays are taken (optax does)."""
    import numpy as np

    for value in (np.True_, (np.arange(3) > -1).all(), np.array(True)):
        build(centered=value, amsgrad=value)
    spec = RMSpropSpec(centered=np.True_)
    assert spec.centered is True
    with pytest.raises(TypeError, match="centered"):
        build(centered=np.array([True]))


@BUILDERS
@pytest.mark.parametrize("name,value", [("lr", "0.1"), ("alpha", None if False else [0.9]),
                                        ("momentum", "a"), ("centered", "yes"),
                                        ("amsgrad", 1), ("eps_in_sqrt", 0.0)])
def test_wrong_types(build, name, value):
    with pytest.raises(TypeError, match=name):
        build(**{name: value})


def test_tensor_lr():
    with pytest.raises(ValueError, match="lr"):
        build_torch(lr=torch.tensor(-1.0))
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        build_torch(lr=torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="lr"):
        build_torch(lr=torch.tensor(float("nan")))


@pytest.mark.parametrize("name", ["capturable", "differentiable"])
@pytest.mark.parametrize("impl", ["fused", "triton"])
def test_torch_flags_on_the_fused_kernels_say_so(name, impl):
    """capturable and differentiable run on torch's paths; the fused kernels refuse them
    (before: both were refused everywhere)."""
    with pytest.raises(ValueError, match=f"{name}=True .*impl='{impl}'"):
        build_torch(**{name: True}, impl=impl)
    with pytest.raises(ValueError, match=f"{name}=True needs state_precision='fp32'"):
        build_torch(**{name: True}, state_precision="8bit")


@pytest.mark.parametrize("name", ["capturable", "differentiable"])
def test_torch_flags_must_be_bools(name):
    with pytest.raises(TypeError, match=f"{name} must be a bool, got 'yes'"):
        build_torch(**{name: "yes"})


def test_foreach_must_be_a_bool_in_a_param_group_too():
    p = torch.nn.Parameter(torch.zeros(2))
    for build in (lambda: RMSprop([p], foreach="x"),
                  lambda: RMSprop([{"params": [p], "foreach": "x"}])):
        with pytest.raises(TypeError, match="foreach must be a bool or None, got 'x'"):
            build()


def test_foreach_contradicting_impl():
    with pytest.raises(ValueError, match="foreach=True contradicts impl='loop'"):
        build_torch(foreach=True, impl="loop")


def test_invalid_param_group_option():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        RMSprop([{"params": [p]}, {"params": [q], "alpha": 2.0}])
    opt = RMSprop([p])
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [q], "momentum": -1.0})


def test_flavor_requiring_lr():
    for flavor in ("tensorflow", "optax"):
        with pytest.raises(ValueError, match="lr"):
            resolve(flavor)
        with pytest.raises(ValueError, match="lr"):
            build_torch(flavor=flavor)
        assert resolve(flavor, lr=0.1).lr == 0.1
