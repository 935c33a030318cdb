"""The cold-start guard: warm_start, the automatic bias correction, and the experiment.

``python tests/checkpoint/test_cold_start.py`` prints the experiment's table: train, save the
parameters only, resume four ways (fresh state, the guard's re-estimation ``warm_start``, the automatic
guard, full state) and measure the largest parameter update and the loss spike of the first
10 resumed steps.
"""

from __future__ import annotations

import copy
import re
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

if __name__ == "__main__":  # run as a script: the shared helpers are in tests/
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoint_common import one_thread  # noqa: E402,F401 (an autouse fixture)
import rmsprop.checkpoint as ckpt
from rmsprop.torch import NonFiniteGradientError, RMSprop
from rmsprop.torch.warm_start import ColdStartWarning, _real, guard_horizon

DATA = torch.Generator().manual_seed(0)
X = torch.randn(512, 10, generator=DATA)
Y = torch.sin(X @ torch.randn(10, 1, generator=DATA)) + 0.1 * torch.randn(512, 1, generator=DATA)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))


def batch(index: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.randperm(len(X), generator=torch.Generator().manual_seed(1000 + index))[:size]
    return X[rows], Y[rows]


def closure_over(
    model: torch.nn.Module, optimizer: Any, indices: list[int]
) -> Callable[[], torch.Tensor]:
    """A closure for ``step`` / ``warm_start`` that takes the batches ``indices`` in turn."""
    batches = iter(indices)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        x, y = batch(next(batches))
        loss = F.mse_loss(model(x), y)
        loss.backward()
        return loss

    return closure


# -- warm_start ----------------------------------------------------------------------------------

WARM_OPTIONS = [
    {},
    {"centered": True, "amsgrad": True, "momentum": 0.9},
    {"maximize": True, "weight_decay": 0.1, "centered": True},
    {"bias_correction": True, "centered": True},
]


@pytest.mark.parametrize(
    "options", WARM_OPTIONS,
    ids=["plain", "centered-amsgrad-momentum", "maximize-l2", "bias-correction"],
)
def test_warm_start_sets_the_mean_of_the_squared_gradients(options: dict[str, Any]) -> None:
    k, alpha = 5, 0.99
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = RMSprop(model.parameters(), alpha=alpha, **options)
    losses = optimizer.warm_start(closure_over(model, optimizer, list(range(k))), steps=k)
    assert len(losses) == k
    for p, p0 in zip(model.parameters(), before):
        assert torch.equal(p, p0)

    # The float64 oracle: the effective gradient of each batch, averaged.
    reference = make_model().double()
    sums = [np.zeros(p.shape) for p in reference.parameters()]
    squares = [np.zeros(p.shape) for p in reference.parameters()]
    for index in range(k):
        x, y = batch(index)
        loss = F.mse_loss(reference(x.double()), y.double())
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        for i, (g, p) in enumerate(zip(grads, reference.parameters())):
            g = g.numpy() * (-1 if options.get("maximize") else 1)
            g = g + options.get("weight_decay", 0) * p.detach().numpy()
            sums[i] += g
            squares[i] += g * g
    # v is stored as (1 - alpha^k) * mean with step k, bias-corrected from there (with
    # bias_correction, or under the cold-start guard): the value divided by is the mean.
    scale = 1 - alpha**k
    for p, total, total_sq in zip(model.parameters(), sums, squares):
        state = optimizer.state[p]
        np.testing.assert_allclose(
            state["square_avg"].numpy(), scale * total_sq / k, rtol=2e-5, atol=1e-12
        )
        if options.get("centered"):  # not re-estimated: agreeing batches give v - gbar^2 = 0
            assert not state["grad_avg"].any()
        if options.get("amsgrad"):
            assert torch.equal(state["max_square_avg"], state["square_avg"])
        if options.get("momentum"):
            assert not state["momentum_buffer"].any()
        assert float(state["step"]) == k
        assert state.get("cold_start_guard", False) is not options.get("bias_correction", False)


def test_warm_start_changes_nothing_when_a_gradient_is_not_finite() -> None:
    model = make_model()
    optimizer = RMSprop(model.parameters())
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        optimizer.zero_grad()
        poison = float("nan") if len(calls) == 2 else 1.0
        loss = F.mse_loss(model(batch(0)[0]), batch(0)[1]) * poison
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteGradientError, match="optimizer state is unchanged"):
        optimizer.warm_start(closure, steps=3)
    assert len(optimizer.state) == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-1, ValueError),
                                          (2.5, TypeError), (True, TypeError), ("3", TypeError)])
def test_warm_start_rejects_a_bad_number_of_steps(steps: Any, error: type) -> None:
    optimizer = RMSprop(make_model().parameters())
    with pytest.raises(error, match=re.escape(f"{steps!r}")):
        optimizer.warm_start(lambda: None, steps=steps)
    with pytest.raises(TypeError, match="closure must be callable"):
        optimizer.warm_start(None, steps=2)


def test_warm_start_takes_numpy_ints_and_refuses_a_closure_without_backward() -> None:
    model = make_model()
    optimizer = RMSprop(model.parameters())
    with pytest.raises(RuntimeError, match="no gradient"):
        optimizer.warm_start(lambda: model(X).sum(), steps=2)
    assert not optimizer.state
    optimizer.warm_start(closure_over(model, optimizer, [0, 1]), steps=np.int64(2))
    assert all("square_avg" in optimizer.state[p] for p in model.parameters())


@pytest.mark.parametrize("options", [{}, {"centered": True, "momentum": 0.9, "amsgrad": True}])
def test_warm_start_of_complex_params_is_that_of_their_real_pairs(options) -> None:
    """Complex parameters are pairs of real ones (as in the step): v is the mean of the
    squared real and imaginary parts, with no warning about discarded imaginary parts."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, dtype=torch.complex64, generator=g) for _ in range(3)]
    z = torch.nn.Parameter(torch.zeros(6, dtype=torch.complex64))
    pair = torch.nn.Parameter(torch.zeros(6, 2))
    states = []
    for p, as_param in ((z, lambda t: t), (pair, torch.view_as_real)):
        optimizer = RMSprop([p], **options)
        batches = iter(grads)

        def closure():
            p.grad = as_param(next(batches)).clone()
            return 0.0

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            optimizer.warm_start(closure, steps=3)
        states.append(optimizer.state[p])
    assert set(states[0]) == set(states[1])
    for key in states[1]:
        if key == "cold_start_guard":  # warm_start's estimate continues under the guard
            assert states[0][key] is states[1][key] is True
            continue
        assert torch.equal(_real(states[0][key]), states[1][key]), key


# -- the automatic guard ---------------------------------------------------------------------------


def _run(
    optimizer: Any, params: list[torch.Tensor], grads: list[list[torch.Tensor]]
) -> list[list[torch.Tensor]]:
    """Set each step's gradients and step; the parameters after every step."""
    trajectory = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
        trajectory.append([p.detach().clone() for p in params])
    return trajectory


def _grads(steps: int, shapes: list[torch.Size], seed: int = 5) -> list[list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(shape, generator=generator) * 0.1 for shape in shapes]
            for _ in range(steps)]


def _restored_model(tmp_path: Path, **load_options: Any) -> torch.nn.Module:
    trained = make_model()
    ckpt.save(tmp_path / "weights.ckpt", model=trained)
    model = make_model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    ckpt.load(tmp_path / "weights.ckpt", model=model, **load_options)
    return model


def _copy_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]


@pytest.mark.parametrize("impl", ["loop", "foreach"])  # the implementations torch has
def test_an_ordinary_run_is_bit_identical_to_torch_even_with_restored_params_elsewhere(
    tmp_path, impl
) -> None:
    _restored = _restored_model(tmp_path)  # marks exist in this process, on other tensors
    model = make_model()
    ours, theirs = _copy_params(model), _copy_params(model)
    grads = _grads(30, [p.shape for p in ours])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)
        a = _run(RMSprop(ours, lr=1e-2, momentum=0.5, impl=impl), ours, grads)
    b = _run(torch.optim.RMSprop(theirs, lr=1e-2, momentum=0.5), theirs, grads)
    for x, y in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(x, y))
    assert _restored is not None


def test_a_cold_start_on_restored_params_is_bias_corrected_then_ordinary(tmp_path) -> None:
    alpha = 0.5
    horizon = guard_horizon(alpha)
    assert horizon == 25 and alpha**horizon <= 2**-25 < alpha ** (horizon - 1)
    model = _restored_model(tmp_path)
    params = list(model.parameters())
    grads = _grads(horizon + 5, [p.shape for p in params])
    start = [p.detach().clone() for p in params]
    with pytest.warns(ColdStartWarning, match="restored without optimizer state") as caught:
        guarded = _run(RMSprop(params, lr=1e-2, alpha=alpha), params, grads)
    assert len(caught) == 1  # once, not every step

    # The same run written out by hand: bias correction for the first `horizon` steps.
    reference = [torch.nn.Parameter(p.clone()) for p in start]
    optimizer = RMSprop(reference, lr=1e-2, alpha=alpha, bias_correction=True)
    expected = _run(optimizer, reference, grads[:horizon])
    optimizer.param_groups[0]["bias_correction"] = False
    expected += _run(optimizer, reference, grads[horizon:])
    for x, y in zip(guarded, expected):
        assert all(torch.equal(p, q) for p, q in zip(x, y))
    # Its end is seamless: 1 - alpha^t rounds to 1 in float32 from the horizon on.
    always = [torch.nn.Parameter(p.clone()) for p in start]
    corrected = _run(RMSprop(always, lr=1e-2, alpha=alpha, bias_correction=True), always, grads)
    for x, y in zip(guarded, corrected):
        assert all(torch.equal(p, q) for p, q in zip(x, y))
    # First step: lr*g/(|g| + eps), lr per element (to float32 rounding of theta), where a
    # cold start takes lr/sqrt(1 - alpha) = 1.41 lr.
    first = max((p - q).abs().max().item() for p, q in zip(guarded[0], start))
    assert abs(first - 1e-2) < 1e-6


@pytest.mark.parametrize("how", ["full state", "warm_start", "cold_start_guard=False", "v0 = 1"])
def test_no_guard_and_no_warning_where_there_is_no_cold_start(tmp_path, how: str) -> None:
    model = _restored_model(tmp_path, cold_start_guard=(how != "cold_start_guard=False"))
    params = list(model.parameters())
    options = {"flavor": "tensorflow", "lr": 1e-2} if how == "v0 = 1" else {"lr": 1e-2}
    optimizer = RMSprop(params, **options)
    if how == "full state":
        donor = RMSprop(_copy_params(model), **options)
        _run(donor, donor.param_groups[0]["params"], _grads(3, [p.shape for p in params], seed=9))
        ckpt.save(tmp_path / "full.ckpt", donor, None)
        ckpt.load(tmp_path / "full.ckpt", optimizer)
    elif how == "warm_start":
        optimizer.warm_start(closure_over(model, optimizer, [0, 1, 2]), steps=3)
    reference_params = _copy_params(model)
    reference = RMSprop(reference_params, **options)
    reference.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # torch would share tensors
    grads = _grads(5, [p.shape for p in params])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)
        a = _run(optimizer, params, grads)
    b = _run(reference, reference_params, grads)
    for x, y in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(x, y))


def test_load_state_dict_during_the_guard_ends_it(tmp_path) -> None:
    model = _restored_model(tmp_path)
    params = list(model.parameters())
    optimizer = RMSprop(params, lr=1e-2)
    with pytest.warns(ColdStartWarning):
        _run(optimizer, params, _grads(2, [p.shape for p in params]))
    donor_params = _copy_params(model)
    donor = RMSprop(donor_params, lr=1e-2)
    _run(donor, donor_params, _grads(4, [p.shape for p in params], seed=8))
    optimizer.load_state_dict(copy.deepcopy(donor.state_dict()))
    with torch.no_grad():
        for p, q in zip(params, donor_params):
            p.copy_(q)
    grads = _grads(3, [p.shape for p in params], seed=7)
    a = _run(optimizer, params, grads)
    b = _run(donor, donor_params, grads)
    for x, y in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(x, y))


@pytest.mark.parametrize("through", ["checkpoint", "state_dict"])
def test_a_run_saved_during_the_guard_resumes_guarded(tmp_path, through: str) -> None:
    """The guard is part of the state (GUARD_KEY): saved mid-guard, the run resumes exactly
    as it would have continued, still bias-corrected until the horizon."""
    model = _restored_model(tmp_path)
    params = list(model.parameters())
    optimizer = RMSprop(params, lr=1e-2, alpha=0.5)
    grads = _grads(8, [p.shape for p in params])
    with pytest.warns(ColdStartWarning):
        _run(optimizer, params, grads[:3])
    assert all(optimizer.state[p]["cold_start_guard"] is True for p in params)
    resumed_params = _copy_params(model)
    resumed = RMSprop(resumed_params, lr=1e-2, alpha=0.5)
    if through == "checkpoint":
        ckpt.save(tmp_path / "mid.ckpt", optimizer, None)
        ckpt.load(tmp_path / "mid.ckpt", resumed)
    else:
        resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    a = _run(optimizer, params, grads[3:])
    b = _run(resumed, resumed_params, grads[3:])
    for x, y in zip(a, b):
        assert all(torch.equal(p, q) for p, q in zip(x, y))


# -- the experiment ------------------------------------------------------------------------------

LR, ALPHA, TRAIN_STEPS, RESUMED_STEPS, WARM_BATCHES, RESUMES = 3e-3, 0.99, 600, 10, 50, 8
WAYS = ("fresh state", "warm_start", "automatic guard", "full state")


def _full_loss(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return F.mse_loss(model(X), Y).item()


def cold_start_experiment(directory: Path) -> dict[str, dict[str, Any]]:
    """Train, save, resume each way from the same point over ``RESUMES`` batch sequences.

    Returns, per way, the largest parameter update (max |delta theta| over all elements and
    the first ``RESUMED_STEPS`` steps) and the loss spike (the highest full-data loss over
    those steps minus the loss at the resume point), each per resume and as their mean.
    """
    model = make_model()
    optimizer = RMSprop(model.parameters(), lr=LR, alpha=ALPHA, impl="loop")
    for index in range(TRAIN_STEPS):
        optimizer.zero_grad()
        F.mse_loss(model(batch(index)[0]), batch(index)[1]).backward()
        optimizer.step()
    ckpt.save(directory / "full.ckpt", optimizer, model)
    ckpt.save(directory / "weights.ckpt", model=model)

    results: dict[str, dict[str, Any]] = {}
    for way in WAYS:
        updates, spikes = [], []
        for resume in range(RESUMES):
            first_batch = TRAIN_STEPS + 1000 * resume
            resumed = make_model()
            if way == "full state":
                resumed_optimizer = RMSprop(resumed.parameters(), lr=LR, alpha=ALPHA, impl="loop")
                ckpt.load(directory / "full.ckpt", resumed_optimizer, resumed)
            else:
                ckpt.load(directory / "weights.ckpt", model=resumed,
                          cold_start_guard=(way == "automatic guard"))
                resumed_optimizer = RMSprop(resumed.parameters(), lr=LR, alpha=ALPHA, impl="loop")
            if way == "warm_start":
                warm = list(range(100_000 + first_batch, 100_000 + first_batch + WARM_BATCHES))
                closure = closure_over(resumed, resumed_optimizer, warm)
                resumed_optimizer.warm_start(closure, steps=WARM_BATCHES)
            start_loss, largest, highest = _full_loss(resumed), 0.0, -np.inf
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ColdStartWarning)
                for index in range(first_batch, first_batch + RESUMED_STEPS):
                    before = [p.detach().clone() for p in resumed.parameters()]
                    resumed_optimizer.zero_grad()
                    F.mse_loss(resumed(batch(index)[0]), batch(index)[1]).backward()
                    resumed_optimizer.step()
                    moves = [(p - q).abs().max().item()
                             for p, q in zip(resumed.parameters(), before)]
                    largest = max(largest, *moves)
                    highest = max(highest, _full_loss(resumed))
            updates.append(largest)
            spikes.append(highest - start_loss)
        results[way] = {
            "max_update": statistics.mean(updates), "max_update_per_resume": updates,
            "loss_spike": statistics.mean(spikes), "loss_spike_per_resume": spikes,
            "resume_loss": start_loss,
        }
    return results


def _table(results: dict[str, dict[str, Any]]) -> str:
    full = results["full state"]
    lines = [f"{'resume':16s} {'max update':>11s} {'x full':>7s} "
             f"{'loss spike':>11s} {'x full':>7s}"]
    for way, r in results.items():
        lines.append(
            f"{way:16s} {r['max_update']:11.3e} {r['max_update'] / full['max_update']:7.2f} "
            f"{r['loss_spike']:11.3e} {r['loss_spike'] / full['loss_spike']:7.2f}"
        )
    lines.append(f"(lr {LR}, alpha {ALPHA}, {TRAIN_STEPS} training steps, means over {RESUMES} "
                 f"resumes of {RESUMED_STEPS} steps, warm_start over {WARM_BATCHES} batches, "
                 f"loss at the resume point {full['resume_loss']:.4e})")
    return "\n".join(lines)


def test_cold_start_experiment(tmp_path) -> None:
    results = cold_start_experiment(tmp_path)
    print("\n" + _table(results))
    full = results["full state"]
    cold = results["fresh state"]
    # The cold start is real: its first step is lr/sqrt(1 - alpha) = 10 lr in every element,
    # and the loss jumps.
    assert abs(cold["max_update"] - LR / (1 - ALPHA) ** 0.5) < 1e-3 * LR
    assert cold["max_update"] > 2 * full["max_update"]
    assert cold["loss_spike"] > 10 * full["loss_spike"] > 0
    for way in ("warm_start", "automatic guard"):
        guarded = results[way]
        assert 0.5 < guarded["max_update"] / full["max_update"] < 2.0, way
        assert guarded["loss_spike"] < 2.0 * full["loss_spike"], way


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        print(_table(cold_start_experiment(Path(folder))))
