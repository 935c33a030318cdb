"""The fused implementations through rmsprop.torch.RMSprop: what "auto" picks, the state it
keeps, the errors for what an implementation cannot run, lazy imports and numba's disk cache."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numba  # noqa: F401  (mandatory in the test extra: missing fails, never skips)
import pytest
import torch

import rmsprop.torch.kernels.capabilities as capabilities
from rmsprop.torch import RMSprop


def one_step(opt, params):
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()


@pytest.mark.parametrize(
    "dtype, state_dtype",
    [(torch.float32, torch.float32), (torch.float64, torch.float64),
     (torch.bfloat16, torch.float32), (torch.float16, torch.float32),
     (torch.complex64, torch.complex64)],
    ids=str,
)
def test_auto_picks_fused_on_cpu_and_says_so(dtype, state_dtype):
    """16-bit parameters get float32 state under the fused kernel (it computes in float32).
    (A flavour other than ``pytorch``: that one runs torch's own path, see the next test.)"""
    p = torch.nn.Parameter(torch.randn(4, 3).to(dtype))
    opt = RMSprop([p], momentum=0.9, centered=True, amsgrad=True, flavor="keras")
    assert opt.impl_of(opt.param_groups[0]) == "fused"
    one_step(opt, [p])
    for key in ("square_avg", "max_square_avg", "grad_avg", "momentum_buffer"):
        assert opt.state[p][key].dtype == state_dtype, key
    assert opt.state[p]["step"].item() == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64], ids=str)
def test_auto_runs_torchs_own_path_for_the_pytorch_flavour(dtype):
    """The default flavour is a drop-in: auto runs torch's for-loop on CPU (state in the
    parameter's dtype, as torch), and gives torch.optim.RMSprop's numbers bit for bit."""
    p = torch.nn.Parameter(torch.randn(4, 3).to(dtype))
    q = torch.nn.Parameter(p.detach().clone())
    opt = RMSprop([p], momentum=0.9, centered=True)
    ref = torch.optim.RMSprop([q], momentum=0.9, centered=True)
    assert opt.impl_of(opt.param_groups[0]) == "loop"
    for _ in range(3):
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
        opt.step()
        ref.step()
    assert torch.equal(p, q)
    for key in ("square_avg", "grad_avg", "momentum_buffer"):
        assert opt.state[p][key].dtype == dtype, key
        assert torch.equal(opt.state[p][key], ref.state[q][key]), key


def test_loop_keeps_state_in_the_parameter_dtype_as_torch():
    p = torch.nn.Parameter(torch.randn(4, dtype=torch.bfloat16))
    opt = RMSprop([p], impl="loop")
    one_step(opt, [p])
    assert opt.state[p]["square_avg"].dtype == torch.bfloat16


def test_foreach_argument_still_selects_torch_style_paths():
    p = torch.nn.Parameter(torch.randn(4))
    assert RMSprop([p], foreach=True).impl_of({"params": [p], "impl": "auto",
                                               "foreach": True}) == "foreach"
    with pytest.raises(ValueError, match="contradicts"):
        RMSprop([p], foreach=True, impl="fused")


def test_auto_falls_back_where_fused_cannot_run():
    """Tensors off the CPU (here: the meta device) or of a dtype the kernels do not store."""
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    opt = RMSprop([meta])
    assert opt.impl_of(opt.param_groups[0]) == "loop"


@pytest.mark.parametrize("impl", ["fused", "triton"])
def test_explicit_impl_that_cannot_run_is_refused_at_construction(impl, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    with pytest.raises(ValueError, match=f"impl='{impl}' runs on"):
        RMSprop([meta], impl=impl)


def test_missing_package_is_refused_at_construction(monkeypatch):
    monkeypatch.setattr(capabilities, "missing_package",
                        lambda impl: f"impl={impl!r} needs the numba package")
    with pytest.raises(ValueError, match="needs the numba package"):
        RMSprop([torch.nn.Parameter(torch.randn(3))], impl="fused")
    opt = RMSprop([torch.nn.Parameter(torch.randn(3))])  # auto does without it
    assert opt.impl_of(opt.param_groups[0]) == "loop"


def test_params_changed_after_construction_fail_at_the_step_before_any_change():
    p = torch.nn.Parameter(torch.randn(3))
    q = torch.nn.Parameter(torch.randn(3))
    opt = RMSprop([q, p], impl="fused", momentum=0.9)
    one_step(opt, [q, p])
    before_q, state_q = q.detach().clone(), {k: v.clone() for k, v in opt.state[q].items()}
    p.data = p.data.double()  # its float32 state is not what the kernel reads for float64
    p.grad = torch.ones(3, dtype=torch.float64)
    q.grad = torch.ones(3)
    state_p = {k: v.clone() for k, v in opt.state[p].items()}
    with pytest.raises(ValueError, match="float64 parameter with torch.float32 state"):
        opt.step()
    for key, value in state_p.items():
        assert torch.equal(opt.state[p][key], value), key
    assert torch.equal(q, before_q)
    for key, value in state_q.items():
        assert torch.equal(opt.state[q][key], value), key


def test_fused_trains_a_model_like_loop_and_like_torch():
    """A small network, 30 steps under a scheduler: parameters and state within float32
    rounding of the loop implementation (bit-identical to torch.optim.RMSprop)."""
    def train(make_opt):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                    torch.nn.Linear(16, 2))
        opt = make_opt(model.parameters())
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
        gen = torch.Generator().manual_seed(1)
        for _ in range(30):
            x, y = torch.randn(32, 6, generator=gen), torch.randn(32, 2, generator=gen)
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            sched.step()
        return model, opt

    options = dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-3)
    fused_model, fused_opt = train(lambda ps: RMSprop(ps, impl="fused", **options))
    assert fused_opt.impl_of(fused_opt.param_groups[0]) == "fused"
    loop_model, _ = train(lambda ps: RMSprop(ps, impl="loop", **options))
    torch_model, _ = train(lambda ps: torch.optim.RMSprop(ps, foreach=False, **options))
    for a, b, c in zip(fused_model.parameters(), loop_model.parameters(),
                       torch_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert torch.equal(b, c)


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_torch_api_imports_neither_numba_nor_our_triton_kernel():
    """The kernels are imported on first use. (triton itself may be: torch.compiler.disable,
    which keeps the raw-memory kernels out of torch.compile, imports torch._dynamo, which
    imports triton where installed; constructing any torch optimizer does the same.)"""
    out = _run("""
        import sys
        import rmsprop.torch
        print(sorted(m for m in ("numba", "rmsprop.torch.kernels.fused_cpu",
                                 "rmsprop.torch.kernels.triton_kernel") if m in sys.modules))
    """)
    assert out == "[]"


@pytest.mark.slow
def test_compiled_kernels_are_cached_on_disk_for_the_next_process():
    """numba's cache=True: a second process loads the kernel instead of compiling it."""
    code = """
        import torch
        from rmsprop.torch import RMSprop
        from rmsprop.torch.kernels import fused_cpu
        p = torch.nn.Parameter(torch.randn(10, dtype=torch.float64))
        opt = RMSprop([p], impl="fused", amsgrad=True, momentum=0.5)
        p.grad = torch.ones_like(p)
        opt.step()
        kernel = fused_cpu._kernel_for(True, False, True, "f64", "f64")
        print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
    """
    _run(code)  # compiles (and writes the cache) unless an earlier run did
    hits, misses = map(int, _run(code).split())
    assert (hits, misses) == (1, 0)


def test_a_graph_that_saved_the_old_parameter_fails_loudly_after_a_step():
    """As after torch's own in-place update: the fused kernel bumps the version counter."""
    p = torch.nn.Parameter(torch.randn(3))
    opt = RMSprop([p], impl="fused")
    loss = (p * p).sum()  # saves p for backward
    p.grad = torch.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_forked_child_can_step_after_the_parent_did():
    """Hogwild-style training forks after the first steps: the child must not wait on the
    parent's worker threads (which do not exist in it)."""
    import multiprocessing

    p = torch.nn.Parameter(torch.randn(300_000))
    opt = RMSprop([p], impl="fused")
    one_step(opt, [p])  # two threads: the pool now exists in this process

    def child():
        # Only the step: torch's own OpenMP ops on large tensors hang in a forked child
        # (libgomp is not fork-safe), whatever the optimizer; the gradient is already set.
        opt.step()

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=120)
    alive = process.is_alive()
    if alive:
        process.kill()
    assert not alive and process.exitcode == 0


def _bf16_run(steps: int, seed: int, params=None, optimizer=None):
    if params is None:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(1000, dtype=torch.bfloat16))]
        optimizer = RMSprop(params, lr=0.01, momentum=0.9, impl="fused")
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
        optimizer.step()
    return params, optimizer


def test_a_reload_keeps_the_float32_state_of_16_bit_params():
    """torch's load_state_dict casts state to the parameter's dtype; the fused kernel keeps
    float32 state for bfloat16 parameters, and a reload must not lower it (nor the run)."""
    uninterrupted, _ = _bf16_run(20, 2, *_bf16_run(5, 1))
    params, optimizer = _bf16_run(5, 1)
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
    reloaded = RMSprop(resumed, lr=0.01, momentum=0.9, impl="fused")
    reloaded.load_state_dict(optimizer.state_dict())
    assert {k: v.dtype for k, v in reloaded.state[resumed[0]].items()} == {
        "step": torch.float32, "square_avg": torch.float32, "momentum_buffer": torch.float32}
    _bf16_run(20, 2, resumed, reloaded)
    assert torch.equal(resumed[0], uninterrupted[0])


def test_a_state_dict_keeps_the_loading_optimizers_impl():
    """impl is how this process runs the step: a state dict saved with impl="triton" (a GPU
    machine) or "foreach" loads on this CPU machine with the optimizer's own impl."""
    for saved_impl in ("triton", "foreach"):
        p = torch.nn.Parameter(torch.randn(100))
        p.grad = torch.randn(100)
        optimizer = RMSprop([p], impl="fused")
        optimizer.step()
        state_dict = optimizer.state_dict()
        state_dict["param_groups"][0]["impl"] = saved_impl
        optimizer.load_state_dict(state_dict)
        assert optimizer.param_groups[0]["impl"] == "fused"
        optimizer.step()


@pytest.mark.slow
def test_a_compiled_training_step_runs_the_default_impl():
    """torch.compile of a whole training step, in a fresh process (dynamo used to crash
    tracing numba's dispatcher on the first fused step of a process): the fused kernel runs
    eagerly inside it (a graph break) and gives the numbers of the eager step."""
    out = _run("""
        import warnings
        import torch
        from rmsprop.torch import RMSprop
        warnings.simplefilter("ignore")  # dynamo's recompilation notes
        for precision in ("fp32", "8bit"):
            torch.manual_seed(0)
            models = [torch.nn.Linear(64, 80) for _ in range(2)]
            models[1].load_state_dict(models[0].state_dict())
            optimizers = [RMSprop(m.parameters(), lr=0.01, momentum=0.9,
                                  state_precision=precision, min_8bit_size=0) for m in models]
            x = torch.randn(16, 64)

            def train_step(model, optimizer):
                optimizer.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                optimizer.step()
                return loss

            compiled = torch.compile(train_step)
            for _ in range(3):
                compiled(models[0], optimizers[0])
                train_step(models[1], optimizers[1])
            print(max((p - q).abs().max().item()
                      for p, q in zip(models[0].parameters(), models[1].parameters())))
    """)
    assert all(float(line) < 1e-6 for line in out.splitlines()), out
