"""Every backend against every other, one table: for each option, the relation each pair of
backends must satisfy (docs/design.md, "The kernels' contract").

Backends (each runs three steps with a changing lr from the same start):

* ``reference``: :mod:`rmsprop.reference`, float64 (the oracle);
* ``numpy``: :func:`rmsprop.update.rmsprop_update` over float32 NumPy arrays;
* ``jax``: the same function over float32 ``jax.numpy`` arrays (eager);
* ``loop``, ``foreach``: torch's replay (:mod:`rmsprop.torch.kernels.inplace`);
* ``fused``: the numba kernel; ``triton``: the Triton kernel under ``TRITON_INTERPRET=1``;
* ``8bit``: the fused kernel with 8-bit state; one step only, from the zero state (which every
  code format holds exactly), so that what it checks is the decode and the update, not the
  rounding of the stored state.

Relations: ``bit`` (identical bits) or ``ulp N``: ``|a - b| <= N`` units in the last place of
float32 at the largest number of the float64 trajectory (each parameter value and each step's
change). The element function (:mod:`rmsprop.element`) is what
``numpy``, ``jax``, ``fused``, ``triton`` and ``8bit`` run, so they are bit-identical, but for
JAX: XLA turns a division by a constant (bias correction) into a product with its reciprocal.
Torch's replay rounds in torch's op order, and float32 against float64 is rounding.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

from rmsprop import reference
from rmsprop.spec import RMSpropSpec
from rmsprop.torch.functional import rmsprop as functional_rmsprop
from rmsprop.update import init_state, rmsprop_update, state_keys

WD = 1e-2  # small beside |g| ~ 1: coupled weight decay cannot cancel the gradient
OPTIONS = {
    "plain": {},
    "maximize": {"maximize": True},
    "l2": {"weight_decay": WD},
    "decoupled": {"weight_decay": WD, "decoupled_weight_decay": True},
    "amsgrad": {"amsgrad": True},
    "centered": {"centered": True},
    "bias_correction": {"bias_correction": True},
    "eps_in_sqrt": {"eps_in_sqrt": True},
    "v0": {"initial_accumulator_value": 1.0},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "tf_momentum": {"momentum": 0.9, "lr_in_momentum": True},
    "tf_nesterov": {"momentum": 0.9, "lr_in_momentum": True, "nesterov": True},
    "everything": {"momentum": 0.9, "nesterov": True, "centered": True, "amsgrad": True,
                   "weight_decay": WD, "decoupled_weight_decay": True,
                   "bias_correction": True, "initial_accumulator_value": 1.0},
}

# The relations. Pairs sharing the element function are bit-identical for every option;
# torch's replay against the element function, and any float32 backend against float64, are
# within a few ulp over three steps of well-conditioned data.
ELEMENT = ("numpy", "fused", "triton")
BIT = "bit"
RELATIONS: list[tuple[str, str, str | int]] = [
    *[(a, b, BIT) for i, a in enumerate(ELEMENT) for b in ELEMENT[i + 1:]],
    ("numpy", "jax", 2),  # XLA divides by a constant as a product with its reciprocal
    ("fused", "8bit", BIT),
    ("loop", "foreach", BIT),
    *[("numpy", torch_impl, 8) for torch_impl in ("loop", "foreach")],
    # three steps of about five roundings each, at the scale of :func:`_scale`
    *[("reference", b, 16) for b in (*ELEMENT, "jax", "loop", "foreach")],
]
STEPS = 3
LRS = [1e-2, 3e-2, 5e-3]


def _data(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(96).astype(np.float32)
    grads = [rng.standard_normal(96).astype(np.float32) for _ in range(STEPS)]
    return theta, grads


def _run_xp(xp, spec: RMSpropSpec, theta, grads, lrs):
    param = xp.asarray(theta)
    state = init_state(param, spec, xp)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        param, state = rmsprop_update(xp, param, xp.asarray(g), state, spec, lr, t)
    return np.asarray(param)


def _run_torch(impl: str, spec: RMSpropSpec, theta, grads, lrs):
    p = torch.tensor(theta)
    v0 = spec.initial_accumulator_value
    state = {key: [torch.full_like(p, v0 if "square" in key else 0.0)]
             for key in state_keys(spec)}
    steps = [torch.zeros((), dtype=torch.float32)]
    for g, lr in zip(grads, lrs):
        functional_rmsprop(
            [p], [torch.tensor(g)], state["square_avg"], steps,
            max_square_avgs=state.get("max_square_avg"), grad_avgs=state.get("grad_avg"),
            momentum_buffers=state.get("momentum_buffer"), spec=spec, lr=lr, impl=impl)
    return p.numpy()


def _run_8bit(spec: RMSpropSpec, theta, grads, lrs):
    from rmsprop.torch import RMSprop

    p = torch.nn.Parameter(torch.tensor(theta))
    options = {k: v for k, v in spec.options().items() if k not in ("flavor", "nonfinite")}
    opt = RMSprop([p], **options, impl="fused", state_precision="8bit", min_8bit_size=0)
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy()


@pytest.fixture(scope="module")
def triton_interpreted():
    pytest.importorskip("triton")
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    from rmsprop.torch.kernels import triton_kernel

    if type(triton_kernel._rmsprop_kernel).__name__ != "InterpretedFunction":
        importlib.reload(triton_kernel)
    yield
    if previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = previous


def _run(backend: str, spec: RMSpropSpec, request) -> np.ndarray:
    theta, grads = _data()
    # 8-bit: one step from the zero state (see the module docstring); the others: three
    steps = 1 if "8bit" in request.node.callspec.id else STEPS
    grads, lrs = grads[:steps], LRS[:steps]
    if backend == "reference":
        return reference.run(theta, grads, spec, lrs)[0]
    if backend == "numpy":
        return _run_xp(np, spec, theta, grads, lrs)
    if backend == "jax":
        jnp = pytest.importorskip("jax.numpy")
        return _run_xp(jnp, spec, theta, grads, lrs)
    if backend == "8bit":
        return _run_8bit(spec, theta, grads, lrs)
    if backend == "triton":
        request.getfixturevalue("triton_interpreted")
    return _run_torch(backend, spec, theta, grads, lrs)


def _scale(spec: RMSpropSpec, steps: int) -> np.ndarray:
    """Per element, the largest number the update handles: every parameter value and every
    step's change along the float64 trajectory (a momentum step can be larger than a small
    parameter, and larger than the net change of three steps)."""
    theta, grads = _data()
    theta = theta.astype(np.float64)
    scale = np.abs(theta)
    state = reference.init_state(theta, spec)
    for t, (g, lr) in enumerate(zip(grads[:steps], LRS[:steps]), start=1):
        new, state = reference.step(theta, g, state, spec, lr, t)
        scale = np.max([scale, np.abs(new), np.abs(new - theta)], axis=0)
        theta = new
    return scale


def _ulps(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``|a - b|`` in float32 ulps of ``scale``."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(
        scale.astype(np.float32))


CASES = [
    pytest.param(name, a, b, relation, id=f"{name}-{a}-vs-{b}")
    for name in OPTIONS for a, b, relation in RELATIONS
    if not (b == "8bit" and OPTIONS[name].get("initial_accumulator_value"))  # v0 != 0
]


@pytest.mark.parametrize(("option", "a", "b", "relation"), CASES)
def test_backends_agree(option, a, b, relation, request):
    spec = RMSpropSpec(**OPTIONS[option])
    ours_a, ours_b = _run(a, spec, request), _run(b, spec, request)
    if relation == BIT:
        assert ours_b.dtype == np.float32 and ours_a.dtype == np.float32
        differ = ours_a.view(np.uint32) != ours_b.view(np.uint32)
        assert not differ.any(), (
            f"{option}: {a} and {b} differ at {np.flatnonzero(differ)[:5]}: "
            f"{ours_a[differ][:5]} vs {ours_b[differ][:5]}")
    else:
        ulps = _ulps(ours_a, ours_b, _scale(spec, STEPS))
        assert ulps.max() <= relation, (
            f"{option}: {a} vs {b} differ by {ulps.max()} ulp (allowed {relation})")
