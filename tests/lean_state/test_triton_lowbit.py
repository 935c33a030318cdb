"""Lean state (8-bit, bfloat16) in the Triton kernel, run by Triton's interpreter on CPU
tensors, against the numba kernel (the CPU implementation of the same format): the same
parameters, codes and scales bit for bit, step after step, and state dicts that move between
the two. The numba kernel is itself checked against the float64 reference in
tests/test_8bit_step.py; this file checks that the GPU kernel is the same function.

``TRITON_INTERPRET=1`` must be set when the kernel modules are decorated: the fixture sets it
and reloads them if they were imported compiled (as tests/kernels/test_triton_interpreted.py does).
"""

from __future__ import annotations

import importlib
import io
import os
import types

import numba  # noqa: F401  (mandatory in the test extra: missing fails, never skips)
import pytest
import torch

pytest.importorskip("triton")

from rmsprop.torch import RMSprop  # noqa: E402
from rmsprop.torch.lean import optimizer as lean_state  # noqa: E402
from rmsprop.torch.kernels import capabilities  # noqa: E402

ROWS_BLOCK = 8 * 256  # elements per program of the Triton kernel (ROWS quantization blocks)
SHAPES = [(2 * 256 + 17,), (3, 5), (ROWS_BLOCK + 1,)]  # short last blocks; two programs


@pytest.fixture(autouse=True, scope="module")
def lowbit():
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    from rmsprop.torch.kernels import triton_kernel
    from rmsprop.torch.lean import kernel_triton as triton_lowbit

    if type(triton_kernel._rmsprop_kernel).__name__ != "InterpretedFunction":
        importlib.reload(triton_kernel)
    if (type(triton_lowbit._lowbit_kernel).__name__ != "InterpretedFunction"
            or triton_lowbit.rmsprop_element is not triton_kernel.rmsprop_element):
        importlib.reload(triton_lowbit)
    assert triton_lowbit.ROWS * 256 == ROWS_BLOCK
    yield triton_lowbit
    if previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = previous


def gradients(shape, step: int, dtype=torch.float32) -> torch.Tensor:
    """Values over fourteen decades (the codes' subnormal range included), some exact zeros."""
    gen = torch.Generator().manual_seed(100 + step)
    magnitude = 10.0 ** (torch.rand(shape, generator=gen) * 14 - 10)
    g = torch.randn(shape, generator=gen) * magnitude
    g[torch.rand(shape, generator=gen) < 0.05] = 0.0
    return g.to(dtype)


def make_params(dtype=torch.float32, shapes=SHAPES) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=gen).to(dtype)) for shape in shapes]


def run(impl: str, params, options: dict, steps: range, opt=None, **settings):
    opt = opt or RMSprop(params, impl=impl, **options, **settings)
    for t in steps:
        for p in params:
            p.grad = gradients(p.shape, t, p.dtype)
        opt.step()
    return opt


def assert_same(a: RMSprop, b: RMSprop, pa, pb) -> None:
    """Parameters and every state tensor (codes, scales, bfloat16 bits, step) bit for bit."""
    for x, y in zip(pa, pb):
        assert torch.equal(x.detach().view(-1).view(torch.uint8),
                           y.detach().view(-1).view(torch.uint8))
    for x, y in zip(pa, pb):
        sa, sb = a.state[x], b.state[y]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            u, w = sa[key], sb[key]
            assert u.dtype == w.dtype and u.shape == w.shape, key
            assert torch.equal(u.reshape(-1).view(torch.uint8),
                               w.reshape(-1).view(torch.uint8)), key


OPTIONS = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "tf-momentum": {"momentum": 0.9, "lr_in_momentum": True, "nesterov": True},
    "centered": {"centered": True},
    "amsgrad": {"amsgrad": True},
    "everything": {"momentum": 0.5, "centered": True, "amsgrad": True, "bias_correction": True,
                   "weight_decay": 0.1, "eps_in_sqrt": True},
    "decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True,
                  "bias_correction": True, "initial_accumulator_value": 0.1, "alpha": 0.9},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_8bit_step_is_the_numba_step(name):
    """Three steps, three tensors (short blocks, two programs): parameters, codes and scales
    bit for bit, stochastic rounding (the random stream) included."""
    options = {"lr": 0.01, **OPTIONS[name]}
    pf, pt = make_params(), make_params()
    fused = run("fused", pf, options, range(3), state_precision="8bit", min_8bit_size=0)
    triton_ = run("triton", pt, options, range(3), state_precision="8bit", min_8bit_size=0)
    assert any(key.endswith(".codes") for key in triton_.state[pt[0]])
    assert_same(fused, triton_, pf, pt)


@pytest.mark.parametrize("name", ["plain", "everything"])
def test_bf16_state_is_the_numba_step(name):
    options = {"lr": 0.01, **OPTIONS[name]}
    pf, pt = make_params(), make_params()
    fused = run("fused", pf, options, range(3), state_precision="bf16")
    triton_ = run("triton", pt, options, range(3), state_precision="bf16")
    assert triton_.state[pt[0]]["grad_avg" if name == "everything" else "square_avg"].dtype \
        == torch.bfloat16
    assert_same(fused, triton_, pf, pt)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.complex64])
def test_16_bit_and_complex_parameters(dtype):
    options = {"lr": 0.01, "momentum": 0.9, "centered": True}
    shapes = [(300,), (ROWS_BLOCK // 2 + 3,)]
    pf, pt = make_params(dtype, shapes), make_params(dtype, shapes)
    fused = run("fused", pf, options, range(2), state_precision="8bit", min_8bit_size=0)
    triton_ = run("triton", pt, options, range(2), state_precision="8bit", min_8bit_size=0)
    assert_same(fused, triton_, pf, pt)


def test_small_parameters_keep_full_state_beside_8bit_ones():
    """min_8bit_size: the large tensor's state is 8-bit (Triton lean kernel), the small ones
    float32 (Triton float32 kernel), both as the CPU kernels give them."""
    options = {"lr": 0.01, "momentum": 0.9}
    pf, pt = make_params(), make_params()
    fused = run("fused", pf, options, range(2), state_precision="8bit", min_8bit_size=1000)
    triton_ = run("triton", pt, options, range(2), state_precision="8bit", min_8bit_size=1000)
    assert "square_avg.codes" in triton_.state[pt[2]] and "square_avg" in triton_.state[pt[1]]
    assert_same(fused, triton_, pf, pt)


@pytest.mark.parametrize("first, then", [("fused", "triton"), ("triton", "fused")])
def test_a_state_dict_moves_between_the_kernels(first, then):
    """Two steps on one kernel, the state dict saved (torch.save) and loaded into an optimizer
    on the other, two more steps: the numbers of a run that stayed on the first kernel."""
    options = {"lr": 0.01, "momentum": 0.9, "centered": True, "amsgrad": True,
               "bias_correction": True}
    settings = {"state_precision": "8bit", "min_8bit_size": 0}
    stay = make_params()
    stayed = run(first, stay, options, range(4), **settings)

    moved = make_params()
    before = run(first, moved, options, range(2), **settings)
    buffer = io.BytesIO()
    torch.save(before.state_dict(), buffer)
    buffer.seek(0)
    after = RMSprop(moved, impl=then, **options, **settings)
    after.load_state_dict(torch.load(buffer, weights_only=True))
    run(then, moved, options, range(2, 4), opt=after)
    assert_same(stayed, after, stay, moved)


def test_round_to_nearest(lowbit):
    """The kernel's other rounding (``stochastic=False``), called directly as fused_lowbit's
    step_lowbit is: the same codes."""
    from rmsprop.spec import RMSpropSpec
    from rmsprop.torch.lean.kernel_cpu import step_lean
    from rmsprop.torch.lean.storage import QuantizedTensor, FORMAT_OF

    spec = RMSpropSpec(momentum=0.9, centered=True)
    results = []
    for step in (step_lean, lowbit.step_lean_triton):
        params = [p.detach() for p in make_params()]
        stored = []
        for i, p in enumerate(params):
            state = {}
            for key in ("square_avg", "grad_avg", "momentum_buffer"):
                values = gradients(p.shape, 7 + i)
                values = values.abs() if key == "square_avg" else values
                q = QuantizedTensor.quantize(values, FORMAT_OF[key], seed=3, stochastic=False)
                state[key] = (q.codes, q.scale)
            stored.append(state)
        for t in (1, 2):
            grads = [gradients(p.shape, t) for p in params]
            step(params, grads, stored, spec, 0.01, [t] * 3, [0, 1, 2], "8bit", stochastic=False)
        results.append((params, stored))
    (pf, sf), (pt, st) = results
    for x, y in zip(pf, pt):
        assert torch.equal(x, y)
    for a, b in zip(sf, st):
        for key in a:
            assert torch.equal(a[key][0], b[key][0]) and torch.equal(a[key][1], b[key][1])


def test_the_kernel_is_chosen_by_impl_and_device():
    cuda = types.SimpleNamespace(is_cuda=True, is_cpu=False)
    cpu = torch.zeros(1)
    assert lean_state.kernel_of("auto", cuda) == "triton"
    assert lean_state.kernel_of("auto", cpu) == "fused"
    assert lean_state.kernel_of("triton", cpu) == "triton"
    assert lean_state.kernel_of("fused", cpu) == "fused"


def test_the_triton_step_runs_the_triton_kernel(lowbit, monkeypatch):
    calls = []
    original = lowbit.step_lean_triton
    monkeypatch.setattr(lowbit, "step_lean_triton",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    run("triton", make_params(), {"lr": 0.01}, range(1), state_precision="8bit",
        min_8bit_size=0)
    assert calls == [1]


def test_refusals_name_the_kernel_and_what_is_missing(monkeypatch):
    p = torch.nn.Parameter(torch.zeros(3))
    monkeypatch.setattr(capabilities, "missing_package",
                        lambda impl: f"impl={impl!r} needs the triton package" if impl == "triton"
                        else None)
    with pytest.raises(ValueError, match="state_precision='8bit': impl='triton' needs the triton"):
        RMSprop([p], impl="triton", state_precision="8bit")
    RMSprop([p], impl="fused", state_precision="8bit")  # numba is there
    monkeypatch.undo()
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match="CPU tensors .* or CUDA tensors .*a parameter on meta"):
        RMSprop([meta], state_precision="8bit")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="state_precision='bf16': impl='triton' runs on CUDA"):
        RMSprop([p], impl="triton", state_precision="bf16")


def test_the_gpu_suite_times_the_triton_8bit_kernel(lowbit, monkeypatch):
    """benchmarks/gpu.sh's "rmsprop-8bit" row: the Triton lean kernel (here interpreted)."""
    from rmsprop.benchmark import gpu, step_time

    from rmsprop.torch.lean import kernel_cpu as fused_lowbit

    calls = []
    original = lowbit.step_lean_triton
    monkeypatch.setattr(lowbit, "step_lean_triton",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    monkeypatch.setattr(fused_lowbit, "step_lean", None)  # a call would fail
    monkeypatch.setattr(step_time, "measure", lambda contenders, warmup, repeats, device: {
        c.name: [1e-3] * repeats for c in contenders})
    report = gpu.run_suite(["64x1M"], ["momentum"], device="cpu", warmup=0, repeats=1,
                           scale=0.001, max_tensors=2, names=["rmsprop-8bit"])
    row = {r["name"]: r for r in report["cases"][0]["rows"]}["rmsprop-8bit"]
    assert row["status"] == "ok", row
    # theta, g (12 bytes) and two 8-bit state tensors (1 byte + a scale per 256) read, written
    assert row["bytes"] == 12 * 2000 + 2 * 2 * (1000 + 4 * 4) * 2
    assert calls  # (the step that built the state)


def test_centered_variance_rounded_below_zero_is_stored_as_zero(lowbit):
    """Centered state, variance 0 and a gradient equal to the stored gbar: mathematically the
    new variance ``v - gbar**2`` is 0, rounding makes it slightly negative for some elements,
    and both kernels store 0 there (the same codes)."""
    from rmsprop.spec import RMSpropSpec
    from rmsprop.torch.lean.kernel_cpu import step_lean
    from rmsprop.torch.lean.storage import QuantizedTensor, FORMAT_OF

    spec = RMSpropSpec(centered=True, alpha=0.9)
    n = 4 * 256
    gbar = QuantizedTensor.quantize(gradients((n,), 3), FORMAT_OF["grad_avg"], stochastic=False)
    results = []
    for step in (step_lean, lowbit.step_lean_triton):
        param = torch.zeros(n)
        stored = [{"square_avg": (torch.zeros(n, dtype=torch.uint8), torch.ones(4)),
                   "grad_avg": (gbar.codes.clone(), gbar.scale.clone())}]
        step([param], [gbar.dequantize()], stored, spec, 0.01, [1], [0], "8bit")
        results.append(stored[0])
    for key in ("square_avg", "grad_avg"):
        assert torch.equal(results[0][key][0], results[1][key][0])
        assert torch.equal(results[0][key][1], results[1][key][1])


def test_a_nonfinite_gradient_makes_the_same_nan_blocks():
    """nonfinite="propagate": a NaN and an inf gradient make their blocks' scales NaN in both
    kernels, and every other block is the same bit for bit. This is the bound the module
    documents for a GPU, whose NaNs carry another payload: codes inside a NaN block may
    differ, what they decode to (NaN) may not."""
    options = {"lr": 0.01, "momentum": 0.9, "centered": True, "nonfinite": "propagate"}
    results = []
    for impl in ("fused", "triton"):
        params = make_params(shapes=[(4 * 256,)])
        opt = run(impl, params, options, range(1), state_precision="8bit", min_8bit_size=0)
        g = gradients((4 * 256,), 1)
        g[3], g[600] = float("nan"), float("inf")
        params[0].grad = g
        opt.step()
        results.append((params[0].detach(), opt.state[params[0]]))
    (pf, sf), (pt, st) = results
    assert torch.equal(pf.isnan(), pt.isnan()) and torch.equal(pf.nan_to_num(), pt.nan_to_num())
    for name in ("variance", "grad_avg", "momentum_buffer"):
        scale_f, scale_t = sf[name + ".block_scale"], st[name + ".block_scale"]
        assert scale_f.isnan().tolist() == scale_t.isnan().tolist() == [True, False, True, False]
        finite = ~scale_f.isnan()
        assert torch.equal(scale_f[finite], scale_t[finite])
        codes_f, codes_t = sf[name + ".codes"].view(4, 256), st[name + ".codes"].view(4, 256)
        assert torch.equal(codes_f[finite], codes_t[finite])


@pytest.mark.slow  # 3-6 s (a compiler or a subprocess): the whole suite runs it
def test_the_gpu_kernel_needs_no_numba():
    """A GPU machine with Triton and without numba runs 8-bit state: the Triton lean kernel
    and the refusal checks import nothing of numba (shown with numba made unimportable)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['numba'] = None\n"
            "import torch\n"
            "from rmsprop.torch.lean import kernel_triton\n"
            "from rmsprop.torch import RMSprop\n"
            "p = torch.nn.Parameter(torch.zeros(3))\n"
            "RMSprop([p], impl='triton', state_precision='8bit')\n"
            "assert 'numba' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
