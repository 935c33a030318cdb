"""impl="triton" run by Triton's interpreter on CPU tensors, against update.py and the reference.

``TRITON_INTERPRET=1`` must be set when the kernel module is decorated, so the fixture below
sets it for this module (and reloads the kernel module if something imported it compiled).
The interpreter is slow (tens of milliseconds per program): small tensors, few examples.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fused_common import SPECS_ONE_V0, ALL_SPECS, random_params, run_and_check
from option_matrix import numbered
from triton_common import interpreted_triton_kernel
from rmsprop.spec import RMSpropSpec

pytest.importorskip("triton")


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    yield from interpreted_triton_kernel()


@pytest.mark.slow
@pytest.mark.parametrize("n, spec", numbered(SPECS_ONE_V0))
def test_every_option_combination_float32(n, spec):
    """Every option combination (v0 aside: it only sets the initial state), 2 steps with a
    changing lr over two tensors in one launch: bit-identical to update.py in float32, and
    within float32 rounding of the reference."""
    params = random_params(np.random.default_rng(n), [(3, 5), ()], torch.float32)
    run_and_check("triton", spec, params, steps=2, seed=n)


@settings(max_examples=16, deadline=None)
@given(
    spec=st.sampled_from(ALL_SPECS),
    shapes=st.lists(st.lists(st.integers(0, 5), max_size=2).map(tuple), min_size=1, max_size=3),
    dtypes=st.sampled_from([
        (torch.float64, torch.float64), (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32), (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float16),
    ]),
    steps=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.5, 0.9, 0.99]),
)
def test_random_shapes_dtypes_and_options(spec, shapes, dtypes, steps, seed, alpha):
    """float64 (to 1e-12 of the reference), 16-bit parameters with float32 or 16-bit state:
    bit-identical to update.py in the compute dtype rounded to the storage dtype."""
    param_dtype, state_dtype = dtypes
    params = random_params(np.random.default_rng(seed), shapes, param_dtype)
    run_and_check("triton", spec.replace(alpha=alpha), params, steps, seed,
                  state_dtype=state_dtype)


def test_blocks_of_several_tensors_in_one_launch(triton_interpreter):
    """Tensors longer than a block (the unit of a program) next to small ones."""
    spec = RMSpropSpec(momentum=0.9, centered=True, amsgrad=True, bias_correction=True,
                       initial_accumulator_value=1.0)
    rng = np.random.default_rng(5)
    shapes = [(triton_interpreter.BLOCK + 3,), (4,), (2, 3)]
    run_and_check("triton", spec, random_params(rng, shapes, torch.float32), steps=2, seed=5)


def test_triton_and_fused_agree_exactly():
    """Two kernels, one math: the same bits (numba and the Triton interpreter)."""
    from rmsprop.torch.functional import rmsprop as step

    spec = RMSpropSpec(momentum=0.9, centered=True, nesterov=True, weight_decay=0.1,
                       bias_correction=True, eps_in_sqrt=True)
    results = []
    for impl in ("triton", "fused"):
        torch.manual_seed(0)
        p = torch.randn(40, dtype=torch.bfloat16)
        v, gbar, b = torch.ones(40), torch.zeros(40), torch.zeros(40)
        steps = [torch.zeros(())]
        for k in range(3):
            g = torch.randn(40, dtype=torch.bfloat16)
            step([p], [g], [v], steps, grad_avgs=[gbar], momentum_buffers=[b], spec=spec,
                 lr=0.01 * (k + 1), impl=impl)
        results.append((p, v, gbar, b))
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    from rmsprop.torch import RMSprop

    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="impl='triton' runs on CUDA tensors"):
        RMSprop([torch.nn.Parameter(torch.randn(3))], impl="triton")
