"""impl="fused" (numba, one pass over memory) against the float64 reference, every option."""

from __future__ import annotations

import numba  # noqa: F401  (mandatory in the test extra: missing fails, never skips)
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fused_common import ALL_SPECS, new_state, random_params, run_and_check
from option_matrix import numbered, tiered
from rmsprop.spec import RMSpropSpec

from rmsprop.torch.kernels import fused_cpu

HALF = (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("n, spec", tiered(numbered(ALL_SPECS)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_every_option_combination(dtype, n, spec):
    """The whole option matrix, 3 steps with a changing lr, three tensors in one call (a 0-d
    one among them): each step bit-identical to update.py in the dtype, and within float32
    rounding (float32) or 1e-12 (float64) of the reference."""
    params = random_params(np.random.default_rng(n), [(3, 5), (), (7,)], dtype)
    run_and_check("fused", spec, params, steps=3, seed=n)


# 16-bit storage: two memory layouts (no optional state; all of it), each option otherwise;
# every layout is a kernel to compile (about a second each in a fresh checkout).
HALF_SPECS = [spec for spec in ALL_SPECS
              if spec.amsgrad == spec.centered == (spec.momentum > 0)]
DTYPE_PAIRS = [
    (torch.float32, torch.float32), (torch.float64, torch.float64),
    (torch.bfloat16, torch.float32), (torch.float16, torch.float32),
    (torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
]

shapes = st.lists(
    st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    dtypes=st.sampled_from(DTYPE_PAIRS),
    data=st.data(),
    shapes=shapes,
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.5, 0.9, 0.99]),
    eps=st.sampled_from([1e-8, 1e-3, 0.1]),
)
def test_random_shapes_dtypes_and_options(dtypes, data, shapes, steps, seed, alpha, eps):
    """Random shapes (empty and 0-d included), options and schedules; 16-bit parameters with
    float32 state (what the optimizer creates) or with state of their own dtype (what
    load_state_dict leaves): within one unit in the last place of the stored type."""
    param_dtype, state_dtype = dtypes
    full = param_dtype in (torch.float32, torch.float64)
    spec = data.draw(st.sampled_from(ALL_SPECS if full else HALF_SPECS), label="spec")
    spec = spec.replace(alpha=alpha, eps=eps)
    params = random_params(np.random.default_rng(seed), shapes, param_dtype)
    run_and_check("fused", spec, params, steps, seed, state_dtype=state_dtype)


def test_chunk_boundaries_and_many_tensors():
    """A tensor longer than a chunk (the parallel unit) and a hundred small ones in one call."""
    spec = RMSpropSpec(momentum=0.9, centered=True, amsgrad=True)
    rng = np.random.default_rng(3)
    shapes = [(fused_cpu.CHUNK * 2 + 5,)] + [(int(n),) for n in rng.integers(1, 50, 100)]
    run_and_check("fused", spec, random_params(rng, shapes, torch.float32), steps=2, seed=3)


LAYOUTS = {
    # dense: walked in place
    "transposed": lambda: torch.randn(8, 6, dtype=torch.float64).t(),
    "channels_last": lambda: torch.randn(2, 3, 4, 5, dtype=torch.float64).to(
        memory_format=torch.channels_last),
    # not dense, or state laid out unlike the param: walked on contiguous copies
    "sliced": lambda: torch.randn(10, 9, dtype=torch.float64)[::2, 1::3],
    "state_unlike_param": lambda: torch.randn(8, 6, dtype=torch.float64).t(),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_non_contiguous_tensors_give_the_contiguous_result(layout):
    """Same numbers as the same values laid out contiguously, written into the original
    tensors (not into copies)."""
    from rmsprop.torch.functional import rmsprop as step

    spec = RMSpropSpec(momentum=0.9, centered=True, weight_decay=0.1)
    param = LAYOUTS[layout]()
    dense = param.contiguous()
    grads = [torch.randn(param.shape, dtype=torch.float64) for _ in range(3)]
    state = new_state([param], spec, torch.float64)
    if layout == "state_unlike_param":
        state = {key: [x.contiguous() for x in value] for key, value in state.items()}
    state_dense = new_state([dense], spec, torch.float64)
    for p, s in ((param, state), (dense, state_dense)):
        for g in grads:
            step([p], [g], s["square_avg"], s["steps"], grad_avgs=s["grad_avg"],
                 momentum_buffers=s["momentum_buffer"], spec=spec, lr=0.01, impl="fused")
    assert not torch.equal(param, LAYOUTS[layout]())  # it moved
    assert torch.equal(param, dense)
    for key in ("square_avg", "grad_avg", "momentum_buffer"):
        assert torch.equal(state[key][0], state_dense[key][0]), key


def test_version_counters_are_bumped():
    """Autograd sees the kernel's in-place writes to the parameters, as it sees torch's
    in-place ops (a backward through a graph that saved the old value then fails loudly)."""
    spec = RMSpropSpec(momentum=0.9)
    p, g = torch.randn(5), torch.randn(5)
    state = new_state([p], spec, torch.float32)
    versions = (p._version, g._version)
    from rmsprop.torch.functional import rmsprop as step

    step([p], [g], state["square_avg"], state["steps"],
         momentum_buffers=state["momentum_buffer"], spec=spec, lr=0.1, impl="fused")
    assert p._version > versions[0]
    assert g._version == versions[1]


def test_a_missing_state_list_is_a_clear_error_before_anything_changes():
    spec = RMSpropSpec(momentum=0.9)
    p, g = torch.randn(5), torch.randn(5)
    v, step_t = torch.zeros(5), [torch.zeros(())]
    before = p.clone()
    from rmsprop.torch.kernels import KERNELS, TensorLists

    with pytest.raises(ValueError, match="momentum_buffers"):
        KERNELS["fused"](TensorLists([p], [g], [v], step_t), spec, 0.1, None)
    with pytest.raises(ValueError, match="square_avgs"):
        KERNELS["fused"](TensorLists([p], [g], [torch.zeros(4)], step_t), RMSpropSpec(), 0.1,
                         None)
    with pytest.raises(ValueError, match="state dtypes"):
        KERNELS["fused"](TensorLists([p], [g], [v.double()], step_t), RMSpropSpec(), 0.1, None)
    assert torch.equal(p, before) and torch.equal(v, torch.zeros(5))


# -- the 16-bit conversions, exhaustively against torch's ------------------------------------


def _convert(fn, values: np.ndarray) -> np.ndarray:
    from numba import njit

    @njit
    def apply(x):
        out = np.empty(x.size, np.uint16)
        for i in range(x.size):
            out[i] = fn(x[i])
        return out

    return apply(values)


def _widen(fn, bits: np.ndarray) -> np.ndarray:
    from numba import njit

    @njit
    def apply(x):
        out = np.empty(x.size, np.float32)
        for i in range(x.size):
            out[i] = fn(x[i])
        return out

    return apply(bits)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16_bit_conversions_match_torch(dtype):
    """Every 16-bit pattern widens exactly; float32 values (ties, subnormals, overflow, inf,
    NaN, random bits) round to nearest even exactly as ``tensor.to(dtype)``."""
    from numba import njit

    from rmsprop.torch.kernels.numba_support import narrow, widen

    fmt = "bf16" if dtype == torch.bfloat16 else "f16"  # the kernels' load and store
    to_f32, from_f32 = njit(lambda x: widen(x, fmt)), njit(lambda x: narrow(x, fmt))
    every = np.arange(2**16, dtype=np.uint16)
    widened = _widen(to_f32, every)
    expected = torch.from_numpy(every.view(np.int16)).view(dtype).float().numpy()
    same = (widened.view(np.uint32) == expected.view(np.uint32)) | (
        np.isnan(widened) & np.isnan(expected))
    assert same.all()

    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    # exact midpoints between neighbouring 16-bit values, and their neighbours
    halfway = (expected[np.isfinite(expected)].astype(np.float64)[:-1]
               + expected[np.isfinite(expected)].astype(np.float64)[1:]) / 2
    values = np.concatenate([
        random_bits.view(np.float32), halfway.astype(np.float32),
        np.nextafter(halfway.astype(np.float32), np.float32(np.inf)),
        np.nextafter(halfway.astype(np.float32), np.float32(-np.inf)),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 65504, 65520, 3.4e38],
                 dtype=np.float32),
    ])
    ours = _convert(from_f32, values)
    theirs = torch.from_numpy(values).to(dtype).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(values)
    assert np.array_equal(ours[~nan], theirs[~nan])
    assert np.isnan(torch.from_numpy(ours[nan].view(np.int16)).view(dtype).float().numpy()).all()


def test_division_by_zero_follows_ieee_as_the_reference():
    """eps = 0 with v = 0 (allowed when asked for): 0/0 is NaN and g/0 is inf, as in the
    reference and in torch, not an exception."""
    from rmsprop import reference
    from rmsprop.torch.functional import rmsprop as step

    spec = RMSpropSpec(eps=0.0, alpha=0.5)
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    g = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    state = new_state([p], spec, torch.float64)
    expected, _ = reference.step(p.numpy().copy(), g.numpy(), {"square_avg": np.zeros(3)},
                                 spec, 0.1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        step([p], [g], state["square_avg"], state["steps"], spec=spec, lr=0.1, impl="fused")
    np.testing.assert_array_equal(p.numpy(), expected)
    assert np.isnan(p[0]) and np.isfinite(p[1:]).all()


def test_the_result_does_not_depend_on_the_number_of_threads():
    """The chunk list is split among torch.get_num_threads() threads; elements are
    independent, so any split gives the same bits."""
    from rmsprop.torch.functional import rmsprop as step

    spec = RMSpropSpec(momentum=0.9, centered=True)
    shapes = [(fused_cpu.CHUNK * 3 + 7,), (5, 1000), (3,)]
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            params = random_params(np.random.default_rng(0), shapes, torch.float32)
            state = new_state(params, spec, torch.float32)
            grads = random_params(np.random.default_rng(1), shapes, torch.float32)
            for _ in range(2):
                step(params, grads, state["square_avg"], state["steps"],
                     grad_avgs=state["grad_avg"], momentum_buffers=state["momentum_buffer"],
                     spec=spec, lr=0.01, impl="fused")
            results.append(params)
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_tensors_off_the_cpu_are_refused_before_any_memory_is_touched():
    """The kernel reads raw addresses: a meta (or CUDA) tensor anywhere must be a ValueError,
    never a read of a bad address."""
    from rmsprop.torch.kernels import KERNELS, TensorLists

    p, g, v = torch.randn(4), torch.randn(4), torch.zeros(4)
    meta = torch.empty(4, device="meta")
    step_t = [torch.zeros(())]
    for lists in ([[meta], [g], [v]], [[p], [meta], [v]], [[p], [g], [meta]]):
        with pytest.raises(ValueError, match="meta"):
            KERNELS["fused"](TensorLists(*lists, step_t), RMSpropSpec(), 0.1, None)
    assert torch.equal(v, torch.zeros(4))
