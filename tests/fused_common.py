"""Shared by tests/test_fused_*.py and tests/test_triton_*.py: run a fused implementation step by
step through the functional API and check every step.

Each step starts from the implementation's own parameters and state and is checked twice:

* exactly, against :func:`rmsprop.update.rmsprop_update` run by NumPy on arrays of the
  kernel's compute dtype (float64 for float64 state, else float32), its results rounded to the
  storage dtypes by torch: the kernels do the same operations in the same order, so they must
  agree bit for bit, whatever the conditioning of the data;
* against the float64 oracle :func:`rmsprop.reference.step` from the same start, within
  float32 rounding (or 1e-12 at float64): ``|ours - ref| <= rtol * (|old| + |ref - old|)``,
  plus one unit in the last place for 16-bit storage. This one only on data where float32
  rounding cannot be amplified (no coupled weight decay, where ``g + wd*theta`` can cancel).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from option_matrix import WELL_CONDITIONED
from rmsprop import reference
from rmsprop.testing import lr_schedule, mixed_gradients
from rmsprop.torch.functional import rmsprop as functional_rmsprop
from rmsprop.update import rmsprop_update, state_keys

# Without the ill-conditioned corner (option_matrix.ill_conditioned): the last bit of a
# cancellation decides it.
ALL_SPECS = WELL_CONDITIONED
# The kernel variants do not depend on v0 (it only sets the initial state).
SPECS_ONE_V0 = [spec for spec in ALL_SPECS if spec.initial_accumulator_value == 1.0]

LIST_OF = {"square_avg": "square_avgs", "max_square_avg": "max_square_avgs",
           "grad_avg": "grad_avgs", "momentum_buffer": "momentum_buffers"}
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}
# Units in the last place of the 16-bit types: 2**(exponent - mantissa bits).
MANTISSA_BITS = {torch.bfloat16: 7, torch.float16: 10}
MIN_NORMAL_EXPONENT = {torch.bfloat16: -126, torch.float16: -14}


def ulp(x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The spacing of ``dtype`` (bfloat16 or float16) around the float64 values ``x``."""
    exponent = np.floor(np.log2(np.maximum(np.abs(x), np.finfo(np.float64).tiny)))
    exponent = np.maximum(exponent, MIN_NORMAL_EXPONENT[dtype])
    return np.exp2(exponent - MANTISSA_BITS[dtype])


def new_state(params: Sequence[torch.Tensor], spec, state_dtype: torch.dtype) -> dict:
    """The state before step 1, as the optimizer creates it."""
    v0 = spec.initial_accumulator_value
    state = {"steps": [torch.zeros((), dtype=torch.float32) for _ in params]}
    for key in state_keys(spec):
        fill = v0 if key in ("square_avg", "max_square_avg") else 0.0
        state[key] = [torch.full_like(p, fill, dtype=state_dtype) for p in params]
    return state


def as64(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).numpy().copy()


def check_step(spec, before, after, expected, param_dtype, state_dtype, what: str) -> None:
    """One step's results against the reference's from the same start."""
    for name, old, ours, ref, dtype in (
        [("param", before["param"], after["param"], expected[0], param_dtype)]
        + [(key, before[key], after[key], expected[1][key], state_dtype) for key in expected[1]]
    ):
        err = np.abs(ours - ref)
        compute = torch.float64 if state_dtype == torch.float64 else torch.float32
        tol = RTOL[compute] * (np.abs(old) + np.abs(ref - old))
        tol = np.maximum(tol, RTOL[compute] * 1e-6)  # tiny values: absolute floor
        if dtype in MANTISSA_BITS:  # rounded to a 16-bit type on the store
            tol = tol + ulp(ref, dtype)
        bad = ~(err <= tol)
        if bad.any():
            i = np.flatnonzero(bad.ravel())[0]
            raise AssertionError(
                f"{what}: {name} differs at {int(bad.sum())} of {bad.size} elements, first at "
                f"{i}: ours {ours.ravel()[i]!r}, reference {ref.ravel()[i]!r}, before "
                f"{old.ravel()[i]!r}, tolerance {tol.ravel()[i]!r}; {spec}"
            )


def emulate(spec, before: dict, grad: torch.Tensor, lr: float, t: int, compute, param_dtype,
            state_dtype) -> dict:
    """update.py run by NumPy in the compute dtype, rounded to the storage dtypes by torch."""
    as_compute = lambda x: x.detach().to(compute).numpy()  # noqa: E731 (16-bit widen exactly)
    keys = [key for key in before if key != "param"]
    param, state = rmsprop_update(
        np, as_compute(before["param"]), as_compute(grad),
        {key: as_compute(before[key]) for key in keys}, spec, float(lr), t,
    )
    out = {"param": torch.from_numpy(np.asarray(param)).to(param_dtype)}
    for key in keys:
        out[key] = torch.from_numpy(np.asarray(state[key])).to(state_dtype)
    return out


def assert_bit_identical(ours: dict, emulated: dict, what: str) -> None:
    for key, value in emulated.items():
        a, b = ours[key].to(torch.float64).numpy(), value.to(torch.float64).numpy()
        if not np.array_equal(a.ravel(), b.ravel(), equal_nan=True):
            i = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))).ravel())[0]
            raise AssertionError(
                f"{what}: {key} is not bit-identical to update.py in the compute dtype at "
                f"{i}: ours {a.ravel()[i]!r}, update.py {b.ravel()[i]!r}"
            )


def run_and_check(
    impl: str,
    spec,
    params: list[torch.Tensor],
    steps: int,
    seed: int,
    state_dtype: torch.dtype | None = None,
) -> dict:
    """Run ``steps`` steps of ``impl`` with mixed-magnitude gradients and a changing lr,
    checking each (see the module docstring). ``params`` are updated in place; returns the
    state."""
    rng = np.random.default_rng(seed)
    param_dtype = params[0].dtype
    state_dtype = state_dtype or param_dtype
    compute = torch.float64 if state_dtype == torch.float64 else torch.float32
    state = new_state(params, spec, state_dtype)
    grads = [mixed_gradients(rng, tuple(p.shape), steps, low=1e-2, high=1e1) for p in params]
    lrs = lr_schedule(rng, steps)
    keys = state_keys(spec)
    near_reference = not (spec.weight_decay and not spec.decoupled_weight_decay)
    for k, lr in enumerate(lrs):
        step_grads = [torch.tensor(g[k]).to(p.dtype).reshape(p.shape)
                      for g, p in zip(grads, params)]
        grads_before = [g.clone() for g in step_grads]
        befores = [{"param": p.clone(), **{key: state[key][i].clone() for key in keys}}
                   for i, p in enumerate(params)]
        functional_rmsprop(
            params, step_grads, state["square_avg"], state["steps"],
            max_square_avgs=state.get("max_square_avg"), grad_avgs=state.get("grad_avg"),
            momentum_buffers=state.get("momentum_buffer"), spec=spec, lr=lr, impl=impl,
        )
        for g, g0 in zip(step_grads, grads_before):
            assert torch.equal(g, g0), "the gradient was modified"
        for i, p in enumerate(params):
            t = int(state["steps"][i].item())
            assert t == k + 1
            what = f"{impl} step {t}, tensor {i} {tuple(p.shape)} {param_dtype}/{state_dtype}"
            ours = {"param": p, **{key: state[key][i] for key in keys}}
            before = befores[i]
            assert_bit_identical(
                ours, emulate(spec, before, step_grads[i], lr, t, compute, param_dtype,
                              state_dtype), f"{what}; {spec}")
            if near_reference or compute == torch.float64:
                b64 = {key: as64(x) for key, x in before.items()}
                expected = reference.step(b64["param"], as64(step_grads[i]),
                                          {key: b64[key] for key in keys}, spec, lr, t)
                check_step(spec, b64, {key: as64(x) for key, x in ours.items()}, expected,
                           param_dtype, state_dtype, what)
    return state


def random_params(rng: np.random.Generator, shapes, dtype: torch.dtype) -> list[torch.Tensor]:
    return [torch.tensor(rng.normal(size=shape)).to(dtype) for shape in shapes]
