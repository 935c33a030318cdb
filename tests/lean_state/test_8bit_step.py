"""The lean-state step (8-bit and bfloat16) against the float64 reference, for every option;
memory per parameter; state dicts, resuming and switching precision; bad input."""

from __future__ import annotations

import io

import numba  # noqa: F401  (mandatory in the test extra: missing fails, never skips)
import numpy as np
import pytest
import torch

from rmsprop import reference
from rmsprop.testing import mixed_gradients
from rmsprop.torch import RMSprop
from rmsprop.torch.lean.storage import BLOCK, FORMAT_OF, VARIANCE_OF
from rmsprop.update import rmsprop_update, state_keys

from option_matrix import ALL_SPECS, numbered
from test_8bit_codes import book64

_OPTIONS = ("alpha", "eps", "weight_decay", "momentum", "centered", "maximize", "nesterov",
            "eps_in_sqrt", "initial_accumulator_value", "lr_in_momentum",
            "decoupled_weight_decay", "amsgrad", "bias_correction")


def kwargs_of(spec) -> dict:
    return {name: getattr(spec, name) for name in _OPTIONS}


def stored32(state: dict, name: str) -> np.ndarray:
    """One stored tensor decoded with the codebook written in the tests: the float32 codebook
    value times the float32 scale, rounded to float32 (the storage's definition)."""
    if name + ".codes" in state:
        codes = state[name + ".codes"].reshape(-1).numpy().astype(np.int64)
        scale = np.repeat(state[name + ".block_scale"].numpy(), BLOCK)[: codes.size]
        return book64(FORMAT_OF[name]).astype(np.float32)[codes] * scale
    return state[name].reshape(-1).float().numpy()


def stored64(state: dict, key: str) -> np.ndarray:
    """State tensor ``key`` (torch's name) as the step reads it, in float64: a centered
    variance ``v - gbar**2`` is turned back into v with the decoded gbar, in float32."""
    variance = VARIANCE_OF.get(key)
    if variance is not None and (variance in state or variance + ".codes" in state):
        gbar = stored32(state, "grad_avg")
        return (stored32(state, variance) + gbar * gbar).astype(np.float64)
    return stored32(state, key).astype(np.float64)


def stored_names(spec, precision: str) -> dict[str, str]:
    """torch's state names -> the names lean storage keeps them under."""
    return {key: VARIANCE_OF.get(key, key) if spec.centered else key for key in state_keys(spec)}


def rounding_bound(name: str, ref: np.ndarray, scale: np.ndarray, precision: str) -> np.ndarray:
    """One code spacing (stochastic rounding picks one of the two neighbours); ``scale``: the
    block's absmax."""
    if precision == "bf16":
        return 2.0**-7 * np.abs(ref) + 1e-30
    fmt = FORMAT_OF[name]
    subnormal_step = 2.0 ** (1 - fmt.bias - fmt.mantissa_bits) / fmt.top
    return (2.0**-fmt.mantissa_bits * np.abs(ref) + subnormal_step * scale) * (1 + 1e-5) \
        + 1e-6 * scale


def check_one_spec(spec, precision: str, rng, n: int = 3 * BLOCK + 37, steps: int = 2):
    """Each step equals "decode -> the update in float32 -> encode": the parameter bit for bit
    (the update of :mod:`rmsprop.update` run by NumPy in float32 on the decoded state, the
    compute precision of the kernel) and the stored state to one code spacing."""
    lr = 0.01
    p = torch.nn.Parameter(torch.tensor(rng.standard_normal(n), dtype=torch.float32))
    opt = RMSprop([p], lr=lr, **kwargs_of(spec), state_precision=precision, min_8bit_size=0)
    state = reference.init_state(p.detach().numpy(), spec)
    names = stored_names(spec, precision)
    for t, g in enumerate(mixed_gradients(rng, (n,), steps), start=1):
        if t > 1:  # the stored (rounded) state is what the next step reads
            state = {k: stored64(opt.state[p], k) for k in state_keys(spec)}
        state32 = {k: v.astype(np.float32) for k, v in state.items()}
        g32 = g.astype(np.float32)
        ref_param, ref_state = rmsprop_update(np, p.detach().numpy().copy(), g32, state32, spec,
                                              lr, t)
        p.grad = torch.tensor(g32)
        opt.step()
        np.testing.assert_array_equal(p.detach().numpy(), ref_param, err_msg=f"{spec} step {t}")
        assert set(n_ for n_ in names.values()) == {
            k.split(".")[0] for k in opt.state[p] if k != "step"}
        for key, name in names.items():
            ref = ref_state[key]
            if name in VARIANCE_OF.values():  # stored: v - gbar^2 of the new state
                w = ref - ref_state["grad_avg"] * ref_state["grad_avg"]
                ref = np.where(w < 0, np.float32(0), w)
            ref = ref.astype(np.float64)
            got = stored32(opt.state[p], name).astype(np.float64)
            if precision == "8bit":
                absmax = np.abs(np.pad(ref, (0, -n % BLOCK))).reshape(-1, BLOCK).max(axis=1)
                top = np.float32(FORMAT_OF[name].top)
                np.testing.assert_array_equal(opt.state[p][name + ".block_scale"].numpy(),
                                              absmax.astype(np.float32) / top,
                                              err_msg=f"{spec} {name} scale")
                scale = np.repeat(absmax, BLOCK)[:n]
            else:
                scale = np.zeros(n)
            excess = np.abs(got - ref) - rounding_bound(name, ref, scale, precision)
            assert excess.max() <= 0, f"{spec} {name} step {t}: over by {excess.max()}"


@pytest.mark.slow
@pytest.mark.parametrize("n, spec", numbered(ALL_SPECS))
def test_every_option_8bit_matches_reference_to_quantization_error(n, spec):
    check_one_spec(spec, "8bit", np.random.default_rng(n))


@pytest.mark.slow
@pytest.mark.parametrize("n, spec", numbered(ALL_SPECS)[::5])
def test_options_bf16_match_reference_to_rounding_error(n, spec):
    check_one_spec(spec, "bf16", np.random.default_rng(n))


def test_small_tensors_keep_full_state_and_the_fused_step():
    torch.manual_seed(0)
    big, small = torch.nn.Parameter(torch.randn(4096)), torch.nn.Parameter(torch.randn(4095))
    twin = torch.nn.Parameter(small.detach().clone())
    opt = RMSprop([big, small], lr=0.01, momentum=0.9, state_precision="8bit")
    ref = RMSprop([twin], lr=0.01, momentum=0.9, impl="fused")
    for _ in range(3):
        g = torch.randn(4095)
        big.grad, small.grad, twin.grad = torch.randn(4096), g, g.clone()
        opt.step()
        ref.step()
    assert "square_avg.codes" in opt.state[big] and "square_avg" not in opt.state[big]
    assert opt.state[small]["square_avg"].dtype == torch.float32
    assert torch.equal(small, twin)
    assert torch.equal(opt.state[small]["momentum_buffer"], ref.state[twin]["momentum_buffer"])


def state_bytes_per_param(**options) -> float:
    p = torch.nn.Parameter(torch.zeros(1 << 20))
    p.grad = torch.ones_like(p)
    opt = RMSprop([p], lr=1e-3, state_precision="8bit", **options)
    opt.step()
    return sum(t.nbytes for t in opt.state[p].values()) / p.numel()


@pytest.mark.parametrize("options, limit, float32", [
    ({}, 1.1, 4), ({"momentum": 0.9}, 2.1, 8), ({"momentum": 0.9, "centered": True}, 3.2, 12),
], ids=["plain", "momentum", "centered+momentum"])
def test_state_bytes_per_parameter(options, limit, float32):
    measured = state_bytes_per_param(**options)
    assert measured <= limit
    p = torch.nn.Parameter(torch.zeros(1 << 20))
    p.grad = torch.ones_like(p)
    full = RMSprop([p], lr=1e-3, **options)
    full.step()
    assert sum(t.nbytes for t in full.state[p].values()) / p.numel() >= float32


def test_momentum_is_used_not_ignored():
    """bitsandbytes' RMSprop8bit accepts momentum and ignores it; ours must not."""
    torch.manual_seed(0)
    results = {}
    for momentum in (0.0, 0.9):
        p = torch.nn.Parameter(torch.ones(8192))
        opt = RMSprop([p], lr=0.01, momentum=momentum, state_precision="8bit")
        for _ in range(5):
            p.grad = torch.ones_like(p)
            opt.step()
        results[momentum] = p.detach().clone()
    assert not torch.allclose(results[0.0], results[0.9])
    assert "momentum_buffer.codes" in opt.state[p]


@pytest.mark.parametrize("precision", ["8bit", "bf16"])
def test_the_result_does_not_depend_on_the_number_of_threads(precision):
    """Threads take runs of blocks in turn; each block's random bits depend on (parameter,
    step, state tensor, block) only, so any split gives the same bits."""
    from rmsprop.torch.kernels import fused_cpu

    numel = fused_cpu.MIN_PER_THREAD * 3 + 1000  # enough work for three threads
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            g = torch.Generator().manual_seed(0)
            p = torch.nn.Parameter(torch.randn(numel, generator=g))
            opt = RMSprop([p], lr=1e-2, momentum=0.9, centered=True, state_precision=precision)
            for _ in range(3):
                p.grad = torch.randn(numel, generator=g)
                opt.step()
            results.append((p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}))
    finally:
        torch.set_num_threads(threads)
    first_param, first_state = results[0]
    for param, state in results[1:]:
        assert torch.equal(param, first_param)
        assert state.keys() == first_state.keys()
        assert all(torch.equal(state[k], first_state[k]) for k in state)


def make_pair(precision: str, **options):
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 8))
    opt = RMSprop(model.parameters(), lr=1e-2, state_precision=precision, min_8bit_size=512,
                  **options)
    return model, opt


def run_steps(model, opt, seed: int, steps: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 64, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


def through_bytes(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("precision", ["8bit", "bf16"])
def test_state_dict_round_trip_continues_bit_for_bit(precision):
    options = {"momentum": 0.9, "centered": True, "amsgrad": True}
    model, opt = make_pair(precision, **options)
    run_steps(model, opt, seed=0, steps=3)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved = through_bytes(opt.state_dict())
    run_steps(model, opt, seed=1, steps=3)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, opt2 = make_pair(precision, **options)
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved)
    run_steps(model2, opt2, seed=1, steps=3)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), model2.parameters()):
        for key, value in opt.state[p].items():
            assert torch.equal(value, opt2.state[q][key]), key


def make_legacy(state: dict) -> dict[str, np.ndarray]:
    """Turn one parameter's 8-bit state into 0.1.0's layout in place (``".scale"``: the block
    absmax, read with the codebook divided by the format's top value); returns the values
    0.1.0 read from it."""
    values = {}
    for name in [k[: -len(".block_scale")] for k in state if k.endswith(".block_scale")]:
        fmt = FORMAT_OF[name]
        absmax = state.pop(name + ".block_scale") * np.float32(fmt.top)
        state[name + ".scale"] = absmax
        book = book64(fmt).astype(np.float32) / np.float32(fmt.top)  # 0.1.0's codebook
        codes = state[name + ".codes"].reshape(-1).numpy()
        values[name] = book[codes] * np.repeat(absmax.numpy(), BLOCK)[: codes.size]
    return values


@pytest.mark.parametrize("route", ["load_state_dict", "rmsprop.checkpoint"])
def test_state_of_the_first_8bit_format_loads_with_its_values(route, tmp_path):
    """0.1.0 stored each block's absmax as ``".scale"`` and read codes with a codebook divided
    by the format's top value: such state loads into this format (``".block_scale"``), through
    ``load_state_dict`` and through ``rmsprop.checkpoint``, with every value within two ulps of
    what 0.1.0 read, the caller's dict untouched, and the step goes on."""
    from rmsprop import checkpoint

    options = {"momentum": 0.9, "centered": True, "amsgrad": True}
    model, opt = make_pair("8bit", **options)
    run_steps(model, opt, seed=0, steps=3)
    params = list(model.parameters())
    old_values = {}
    if route == "load_state_dict":
        legacy = opt.state_dict()
        for index, state in legacy["state"].items():
            old_values.update({(index, k): v for k, v in make_legacy(state).items()})
        saved = through_bytes(legacy)
        keys_before = {i: sorted(s) for i, s in saved["state"].items()}
    else:
        for index, p in enumerate(params):
            old_values.update({(index, k): v for k, v in make_legacy(opt.state[p]).items()})
        checkpoint.save(tmp_path / "run.ckpt", opt, model)

    model2, opt2 = make_pair("8bit", **options)
    if route == "load_state_dict":
        model2.load_state_dict(model.state_dict())
        opt2.load_state_dict(saved)
        assert {i: sorted(s) for i, s in saved["state"].items()} == keys_before  # untouched
    else:
        checkpoint.load(tmp_path / "run.ckpt", opt2, model2)
    loaded = opt2.state_dict()["state"]
    assert old_values and all(not k.endswith(".scale") for s in loaded.values() for k in s)
    for (index, name), old in old_values.items():
        new = stored32(loaded[index], name)
        np.testing.assert_allclose(new, old, rtol=2.5e-7, atol=0, err_msg=name)
    run_steps(model2, opt2, seed=1, steps=2)
    assert all(torch.isfinite(p).all() for p in model2.parameters())


def test_bf16_model_keeps_float32_scales_through_load():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5000, dtype=torch.bfloat16))
    opt = RMSprop([p], lr=1e-2, momentum=0.9, state_precision="8bit")
    p.grad = torch.randn_like(p)
    opt.step()
    opt2 = RMSprop([p], lr=1e-2, momentum=0.9, state_precision="8bit")
    opt2.load_state_dict(through_bytes(opt.state_dict()))
    for key, value in opt.state[p].items():
        assert value.dtype == opt2.state[p][key].dtype and torch.equal(value, opt2.state[p][key])


@pytest.mark.parametrize("source, target", [
    ("fp32", "8bit"), ("8bit", "fp32"), ("8bit", "bf16"), ("bf16", "8bit"), ("fp32", "bf16"),
])
def test_switching_precision_on_resume(source, target):
    options = {"momentum": 0.9, "centered": True}
    model, opt = make_pair(source, **options)
    run_steps(model, opt, seed=0, steps=3)
    model2, opt2 = make_pair(target, **options)
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(through_bytes(opt.state_dict()))
    assert all(g["state_precision"] == target for g in opt2.param_groups)
    big = next(p for p in model2.parameters() if p.numel() >= 512)
    big_src = next(p for p in model.parameters() if p.numel() >= 512)
    state = opt2.state[big]
    # centered lean state keeps v - gbar^2 ("variance"), float32 state torch's square_avg
    if target == "8bit":
        assert state["variance.codes"].dtype == torch.uint8 and "square_avg" not in state
    elif target == "bf16":
        assert state["variance"].dtype == torch.bfloat16 and "square_avg" not in state
    else:
        assert state["square_avg"].dtype == torch.float32 and "variance" not in state
    assert not any(k.endswith(".codes") for k in state) or target == "8bit"
    # the values survive the conversion (to one rounding of the coarser storage)
    for key in ("square_avg", "grad_avg", "momentum_buffer"):
        a, b = stored64(opt.state[big_src], key), stored64(state, key)
        tolerance = 2.0**-4 if "8bit" in (source, target) else 2.0**-8
        scale = np.abs(a).max()
        assert np.all(np.abs(a - b) <= tolerance * np.abs(a) + 1e-3 * scale), key
    run_steps(model2, opt2, seed=1, steps=2)  # and training goes on
    assert all(p.isfinite().all() for p in model2.parameters())


def test_complex_parameters_as_real_pairs():
    torch.manual_seed(0)
    z = torch.nn.Parameter(torch.randn(3000, dtype=torch.complex64))
    pair = torch.nn.Parameter(torch.view_as_real(z.detach()).clone())
    opt = RMSprop([z], lr=1e-2, momentum=0.9, state_precision="8bit", min_8bit_size=0)
    twin = RMSprop([pair], lr=1e-2, momentum=0.9, state_precision="8bit", min_8bit_size=0)
    for _ in range(3):
        g = torch.randn(3000, dtype=torch.complex64)
        z.grad, pair.grad = g, torch.view_as_real(g).clone()
        opt.step()
        twin.step()
    assert torch.equal(torch.view_as_real(z.detach()), pair.detach())


def test_non_contiguous_parameter():
    torch.manual_seed(0)
    base = torch.randn(128, 96)
    p = torch.nn.Parameter(base.t())  # a transposed view: not contiguous
    q = torch.nn.Parameter(base.t().contiguous())
    opt = RMSprop([p], lr=1e-2, state_precision="8bit", min_8bit_size=0)
    ref = RMSprop([q], lr=1e-2, state_precision="8bit", min_8bit_size=0)
    for _ in range(2):
        g = torch.randn(96, 128)
        p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    assert torch.equal(p.detach(), q.detach())


@pytest.mark.parametrize("kwargs, message", [
    ({"state_precision": "int8"}, "state_precision"),
    ({"state_precision": 8}, "state_precision"),
    ({"state_precision": "8bit", "impl": "foreach"}, "state_precision='8bit' needs impl"),
    ({"state_precision": "bf16", "foreach": True}, "state_precision='bf16' needs impl"),
    ({"min_8bit_size": -1}, "min_8bit_size"),
])
def test_bad_settings_are_refused_at_construction(kwargs, message):
    p = torch.nn.Parameter(torch.zeros(10))
    error = TypeError if kwargs.get("min_8bit_size") == "x" else ValueError
    with pytest.raises(error, match=message):
        RMSprop([p], **kwargs)


def test_bad_settings_messages_list_the_valid_values():
    with pytest.raises(ValueError, match="'fp32', 'bf16', '8bit'"):
        RMSprop([torch.nn.Parameter(torch.zeros(3))], state_precision="fp8")
    with pytest.raises(TypeError, match="min_8bit_size"):
        RMSprop([torch.nn.Parameter(torch.zeros(3))], min_8bit_size=2.5)
    with pytest.raises(ValueError, match="float64"):
        RMSprop([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))],
                state_precision="8bit")


def test_auto_picks_the_lean_kernel_and_per_group_precision():
    a, b = torch.nn.Parameter(torch.randn(5000)), torch.nn.Parameter(torch.randn(5000))
    opt = RMSprop([{"params": [a]}, {"params": [b], "state_precision": "fp32"}], lr=1e-2,
                  state_precision="8bit")
    a.grad, b.grad = torch.randn(5000), torch.randn(5000)
    opt.step()
    assert "square_avg.codes" in opt.state[a]
    assert opt.state[b]["square_avg"].dtype == torch.float32


def test_warm_start_writes_through_to_8bit_state():
    """warm_start writes torch's tensors: the 8-bit state is decoded for it and stored again
    by the next step, holding the re-estimated v (as a float32 optimizer gets it)."""
    x = torch.randn(32, 128, generator=torch.Generator().manual_seed(0))
    v, b = {}, {}
    for precision, warm in (("fp32", True), ("8bit", True), ("8bit", False)):
        torch.manual_seed(0)
        model = torch.nn.Linear(128, 64)
        opt = RMSprop(model.parameters(), lr=1e-3, momentum=0.9, state_precision=precision,
                      min_8bit_size=0)

        def closure():
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        if warm:
            opt.warm_start(closure, steps=3)
        opt.step(closure)
        state = opt.state[model.weight]
        assert ("square_avg.codes" in state) == (precision == "8bit")
        # what the step divides by: warm_start's estimate continues bias-corrected (the guard)
        guard = 1 - 0.99 ** float(state["step"]) if state.get("cold_start_guard") else 1.0
        v[precision, warm] = stored64(state, "square_avg") / guard
        b[precision, warm] = stored64(state, "momentum_buffer")
    for values in (v, b):
        reference = values["fp32", True]
        distance = {key: np.linalg.norm(value - reference) / np.linalg.norm(reference)
                    for key, value in values.items()}
        assert distance["8bit", True] < 0.1, distance
    # without warm_start v stays far from the re-estimated one
    assert np.linalg.norm(v["8bit", False] - v["fp32", True]) > 0.5 * np.linalg.norm(
        v["fp32", True])


def snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            [{k: v.clone() for k, v in opt.state[p].items()} for p in params])


def assert_same(before, after):
    for a, b in zip(before[0], after[0]):
        assert torch.equal(a, b)
    for a, b in zip(before[1], after[1]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["8bit", "bf16"])
@pytest.mark.parametrize("saved_size, size", [(5000, 6000), (5000, 5100), (6000, 5000)])
def test_state_of_another_size_is_refused_before_loading(precision, saved_size, size):
    """The lean kernel addresses state by the parameter's size: state saved for another size
    must be refused with a clear error, never stepped (that wrote past the buffers)."""
    source = torch.nn.Parameter(torch.randn(saved_size))
    source.grad = torch.randn(saved_size)
    saved = RMSprop([source], momentum=0.9, state_precision=precision)
    saved.step()
    p = torch.nn.Parameter(torch.randn(size))
    p.grad = torch.randn(size)
    opt = RMSprop([p], momentum=0.9, state_precision=precision)
    opt.step()
    before = snapshot(opt, [p])
    with pytest.raises(ValueError, match=rf"parameter 0 \(shape \({size},\)\).*{saved_size}"):
        opt.load_state_dict(saved.state_dict())
    assert_same(before, snapshot(opt, [p]))


def test_a_step_refused_in_one_group_changes_no_group():
    a = torch.nn.Parameter(torch.randn(5000))
    b = torch.nn.Parameter(torch.randn(5000))
    opt = RMSprop([{"params": [a]}, {"params": [b]}], momentum=0.9, state_precision="8bit")
    for p in (a, b):
        p.grad = torch.randn(5000)
    opt.step()
    b.data = b.data.double()  # a dtype the lean kernel does not take
    b.grad = torch.randn(5000, dtype=torch.float64)
    a.grad = torch.randn(5000)
    before = snapshot(opt, [a])
    with pytest.raises(ValueError, match="float64"):
        opt.step()
    assert_same(before, snapshot(opt, [a]))


@pytest.mark.parametrize("precision", ["8bit", "bf16"])
def test_switching_centered_on_keeps_v(precision):
    """Turning ``centered`` on mid-run starts gbar at 0 (as torch): the variance is v itself,
    not a fresh v0, so the next step is the float32 step to quantization error."""
    steps = {}
    for storage in ("fp32", precision):
        g = torch.Generator().manual_seed(0)
        p = torch.nn.Parameter(torch.randn(8192, generator=g))
        opt = RMSprop([p], lr=1e-2, state_precision=storage)
        for t in range(21):
            if t == 20:
                opt.param_groups[0]["centered"] = True
            before = p.detach().clone()
            p.grad = torch.randn(8192, generator=g) * 0.1
            opt.step()
        steps[storage] = (p.detach() - before).abs().mean().item()
        assert "grad_avg" in opt.state[p] or "grad_avg.codes" in opt.state[p]
    assert abs(steps[precision] / steps["fp32"] - 1) < 0.03, steps


@pytest.mark.parametrize("foreach", [True, False])
def test_torch_state_dicts_load_into_a_lean_optimizer(foreach):
    """A state dict of torch.optim.RMSprop(foreach=...) loads: the lean group keeps its own
    impl (lean state needs the fused kernel) and the state is quantized."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5000))
    q = torch.nn.Parameter(p.detach().clone())
    torch_opt = torch.optim.RMSprop([p], lr=1e-2, momentum=0.9, foreach=foreach)
    p.grad = torch.randn(5000)
    torch_opt.step()
    opt = RMSprop([q], lr=1e-2, momentum=0.9, state_precision="8bit")
    opt.load_state_dict(torch_opt.state_dict())
    assert opt.param_groups[0]["foreach"] is None and opt.param_groups[0]["impl"] == "auto"
    assert "square_avg.codes" in opt.state[q]
    decoded = stored64(opt.state[q], "square_avg")
    exact = torch_opt.state[p]["square_avg"].double().numpy()
    assert np.abs(decoded - exact).max() <= 0.07 * np.abs(exact).max()
