"""The 8-bit code formats and the block encoder, against float64 definitions written here."""

from __future__ import annotations

import functools

import numba
import numpy as np
import pytest
import torch

from rmsprop.torch.lean.storage import BLOCK, SIGNED, UNSIGNED, QuantizedTensor

FORMATS = [UNSIGNED, SIGNED]


def minifloat_values(exponent_bits: int, mantissa_bits: int) -> np.ndarray:
    """Every magnitude of an IEEE-style minifloat with bias 2**e, subnormals at field 0."""
    values = []
    for e_field in range(2**exponent_bits):
        for m_field in range(2**mantissa_bits):
            if e_field == 0:
                values.append(m_field / 2**mantissa_bits * 2.0 ** (1 - 2**exponent_bits))
            else:
                values.append((1 + m_field / 2**mantissa_bits) * 2.0 ** (e_field - 2**exponent_bits))
    return np.array(values)


def book64(fmt) -> np.ndarray:
    magnitudes = minifloat_values(fmt.exponent_bits, fmt.mantissa_bits)
    return np.concatenate([magnitudes, -magnitudes]) if fmt.signed else magnitudes


def dequantize64(q: QuantizedTensor) -> np.ndarray:
    codes = q.codes.reshape(-1).numpy().astype(np.int64)
    scale = np.repeat(q.scale.numpy().astype(np.float64), BLOCK)[: codes.size]
    return book64(q.format)[codes] * scale


def wide_values(rng, n: int, signed: bool) -> np.ndarray:
    """Magnitudes over 12 decades (so every binade and the subnormal range are hit)."""
    x = 10.0 ** rng.uniform(-10, 2, size=n)
    return x * rng.choice([-1.0, 1.0], size=n) if signed else x


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_codebook_is_the_minifloat(fmt):
    expected = book64(fmt)
    assert fmt.codebook.dtype == np.float32 and fmt.codebook.shape == (256,)
    np.testing.assert_array_equal(fmt.codebook, expected.astype(np.float32))
    magnitudes = expected[: fmt.max_magnitude_code + 1]
    assert magnitudes[0] == 0 and magnitudes[-1] == fmt.top and np.all(np.diff(magnitudes) > 0)


@functools.lru_cache(maxsize=None)
def _kernel_decoder(signed: bool):
    from rmsprop.torch.lean.kernel_cpu import decode_signed, decode_unsigned

    @numba.njit
    def decode_all(codes, scale):
        out = np.empty(codes.size, np.float32)
        for i in range(codes.size):
            s = scale[i // BLOCK]
            out[i] = decode_signed(codes[i], s, -s) if signed else decode_unsigned(codes[i], s)
        return out

    return decode_all


def dequantize_in_kernel(q: QuantizedTensor) -> torch.Tensor:
    """``q`` decoded by the fused kernel's decoder (code value times block scale)."""
    values = _kernel_decoder(q.format.signed)(q.codes.reshape(-1).numpy(), q.scale.numpy())
    return torch.from_numpy(values).reshape(q.codes.shape)


@pytest.fixture(params=[False, True], ids=["ieee", "flush-denormal"])
def flush_denormal(request):
    """Run with float32 subnormals flushed to zero too (torch.set_flush_denormal, which some
    users turn on for speed)."""
    if request.param and not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    yield request.param
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_kernel_decodes_every_code_to_its_codebook_value(fmt, flush_denormal):
    """The fused kernel computes each code's value from its bits (no table): every one of the
    256 codes must give the float64 minifloat, exact in float32, bit for bit, also with
    subnormals flushed to zero (so the decoding must not pass through one)."""
    codes = torch.arange(256, dtype=torch.uint8)
    if not fmt.signed:
        codes = codes[: fmt.max_magnitude_code + 1]
    q = QuantizedTensor(codes, torch.ones(1), fmt)
    expected = book64(fmt)[codes.numpy()].astype(np.float32)
    assert np.array_equal(expected.astype(np.float64), book64(fmt)[codes.numpy()])  # exact
    decoded = dequantize_in_kernel(q).numpy()
    np.testing.assert_array_equal(decoded.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_round_to_nearest_is_the_nearest_code(fmt):
    rng = np.random.default_rng(1)
    x = wide_values(rng, 20 * BLOCK + 77, fmt.signed)
    q = QuantizedTensor.quantize(torch.tensor(x, dtype=torch.float32), fmt, stochastic=False)
    x32 = torch.tensor(x, dtype=torch.float32).double().numpy()
    blocks = np.pad(np.abs(x32), (0, -x32.size % BLOCK)).reshape(-1, BLOCK)
    # the scale: the block's absmax over the format's top value, in float32
    np.testing.assert_array_equal(q.scale.numpy(),
                                  blocks.max(axis=1).astype(np.float32) / np.float32(fmt.top))
    scale = np.repeat(q.scale.numpy().astype(np.float64), BLOCK)[: x.size]
    candidates = book64(fmt)[None, :] * scale[:, None]
    distance = np.abs(candidates - x32[:, None])
    got = dequantize64(q)
    np.testing.assert_allclose(np.abs(got - x32), distance.min(axis=1), rtol=1e-6, atol=0)
    # error bound of the format: half a spacing, 2**-(m+1) relative in the normal range
    step_sub = 2.0 ** (1 - fmt.bias - fmt.mantissa_bits) * scale
    bound = 2.0 ** -(fmt.mantissa_bits + 1) * np.abs(x32) + step_sub / 2
    assert np.all(np.abs(got - x32) <= bound * (1 + 1e-6))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_stochastic_rounding_picks_a_neighbour_and_is_unbiased(fmt):
    rng = np.random.default_rng(2)
    x = wide_values(rng, 4 * BLOCK, fmt.signed)
    x[::BLOCK] = 1e3  # the block max, so every block has the same scale
    x32 = torch.tensor(x, dtype=torch.float32)
    draws = np.stack([dequantize64(QuantizedTensor.quantize(x32, fmt, seed=s))
                      for s in range(400)])
    ref = x32.double().numpy()
    scale = float(np.float32(1e3) / np.float32(fmt.top))
    book = np.sort(book64(fmt) * scale)
    below = book[np.clip(np.searchsorted(book, ref, side="right") - 1, 0, book.size - 1)]
    above = book[np.clip(np.searchsorted(book, ref, side="left"), 0, book.size - 1)]
    tol = 1e-6 * np.abs(ref) + 1e-12
    assert np.all((np.abs(draws - below) <= tol) | (np.abs(draws - above) <= tol))
    gap = above - below
    mean = draws.mean(axis=0)
    # 400 Bernoulli draws: the mean is within 5 standard errors of x (sd <= gap/2 / 20)
    assert np.all(np.abs(mean - ref) <= 5 * gap / 2 / 20 + tol)


def test_stochastic_rounding_is_a_function_of_the_seed():
    x = torch.randn(3 * BLOCK)
    a = QuantizedTensor.quantize(x, SIGNED, seed=7)
    b = QuantizedTensor.quantize(x, SIGNED, seed=7)
    c = QuantizedTensor.quantize(x, SIGNED, seed=8)
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, c.codes)


def test_round_to_nearest_freezes_an_ema_that_stochastic_rounding_keeps_moving():
    """v <- 0.99 v + 0.01 * 2 from v = 1 (the block max pinned at 4): each step moves v by
    at most 1 % of the gap, below half a code spacing (3-6 %). To nearest, v never leaves its
    code; stochastically it reaches the fixed point 2 (the 'stuck EMA')."""
    rho, target = 0.99, 2.0
    results = {}
    for stochastic in (False, True):
        v = torch.ones(BLOCK)
        v[0] = 4.0
        for step in range(600):
            new = rho * v + (1 - rho) * target
            new[0] = 4.0
            q = QuantizedTensor.quantize(new, UNSIGNED, seed=step, stochastic=stochastic)
            v = q.dequantize()
        results[stochastic] = float(v[1:].mean())
    assert results[False] < 1.1  # frozen near its start
    assert abs(results[True] - target) < 0.05 * target


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_value_poisons_its_block_only(bad):
    x = torch.rand(3 * BLOCK)
    x[BLOCK + 5] = bad
    q = QuantizedTensor.quantize(x, UNSIGNED)
    back = q.dequantize()
    assert torch.isnan(q.scale[1]) and back[BLOCK : 2 * BLOCK].isnan().all()
    assert back[:BLOCK].isfinite().all() and back[2 * BLOCK :].isfinite().all()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_blocks_at_the_ends_of_float32_stay_finite(fmt):
    """A block whose absmax / top overflows float32 keeps a finite scale (float32's max: the
    largest values read at most 6.25 % low), and a block of subnormals is stored as zeros
    (where ``top / absmax`` overflows), rather than every element reading as inf, NaN or the
    absmax."""
    f32max = float(np.finfo(np.float32).max)
    rng = np.random.default_rng(4)
    big = rng.uniform(0.0, 1.0, 2 * BLOCK) * 1e30
    big[3], big[BLOCK + 7] = 3.3e38, f32max
    tiny = np.zeros(BLOCK)
    tiny[5:50] = 2e-39
    x = np.concatenate([big, tiny])
    if fmt.signed:
        x = x * rng.choice([-1.0, 1.0], size=x.size)
    x32 = torch.tensor(x, dtype=torch.float32)
    for stochastic in (False, True):
        q = QuantizedTensor.quantize(x32, fmt, stochastic=stochastic)
        back = q.dequantize().double().numpy()
        ref = x32.double().numpy()
        assert np.isfinite(back).all()
        np.testing.assert_array_equal(q.scale.numpy()[:2], np.float32(f32max))
        step = 2.0 ** (1 - fmt.bias - fmt.mantissa_bits) * f32max  # the subnormal spacing
        assert np.all(np.abs(back - ref) <= 2.0**-fmt.mantissa_bits * np.abs(ref) + step)
        for i in (3, BLOCK + 7):
            assert 0.93 * abs(ref[i]) <= abs(back[i]) <= abs(ref[i])
        np.testing.assert_array_equal(back[2 * BLOCK:], 0.0)
        torch.testing.assert_close(dequantize_in_kernel(q), q.dequantize(), rtol=0, atol=0)


def test_a_huge_square_average_steps_finite_in_8_bits():
    """v of about 3.4e38 (finite in float32) must not turn its block to NaN at 8 bits."""
    from rmsprop.torch import RMSprop

    for precision in ("fp32", "8bit"):
        p = torch.nn.Parameter(torch.ones(4 * BLOCK))
        opt = RMSprop([p], lr=1e-3, alpha=0.01, state_precision=precision, min_8bit_size=0)
        p.grad = torch.full_like(p, 1e-3)
        p.grad[0] = 1.84e19
        opt.step()
        p.grad = torch.full_like(p, 1e-3)
        opt.step()
        assert torch.isfinite(p).all(), precision


def test_zero_block_and_filled_values_are_exact():
    rng = np.random.default_rng(5)
    wide = [float(x) for x in np.float32(wide_values(rng, 200, signed=False))]
    cases = [(UNSIGNED, v) for v in [0.0, 1.0, 0.37, 1e-30, 1.7e38] + wide]
    cases += [(SIGNED, v) for v in [0.0, -1.0, 0.37, -2.5e-12] + wide[:50]]
    for fmt, value in cases:
        q = QuantizedTensor.filled(torch.Size([BLOCK + 3]), value, fmt, "cpu")
        expected = torch.full((BLOCK + 3,), value)
        assert torch.equal(q.dequantize(), expected), (fmt.name, value)
        assert torch.equal(dequantize_in_kernel(q), expected), (fmt.name, value)
    f32max = float(np.finfo(np.float32).max)
    for fmt, value in [(UNSIGNED, 1.8e38), (UNSIGNED, 3.3e38), (SIGNED, -f32max)]:
        q = QuantizedTensor.filled(torch.Size([BLOCK]), value, fmt, "cpu")  # top code
        back = q.dequantize().double()
        assert torch.equal(dequantize_in_kernel(q).double(), back)
        assert back.isfinite().all() and torch.all(back * np.sign(value) <= abs(value))
        assert torch.all(back * np.sign(value) >= (0.93 if abs(value) > 3.19e38 else 0.9999)
                         * abs(value))
    q = QuantizedTensor.quantize(torch.zeros(BLOCK + 3), SIGNED)
    assert torch.equal(q.dequantize(), torch.zeros(BLOCK + 3))
