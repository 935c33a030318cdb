"""rmsprop.torch.RMSprop under DDP and FSDP2, and its state through torch.distributed.checkpoint.

Two processes on this CPU (gloo, 127.0.0.1) are started once for the module and run every
check in tests/distributed_common.py; the tests here compare their results with
single-process training in this process:

- DDP and FSDP2 (DTensor parameters and state) give the parameters of single-process
  training to float32 rounding, and bit for bit those of single-process training that
  accumulates the two half-batch gradients (the sum the two ranks form), for every
  implementation and three option sets;
- a checkpoint two ranks save mid-run loads in one process, and one that one process saves
  loads on two ranks; training continues bit-identical to an uninterrupted run;
- a NaN in one rank's shard makes both ranks skip the step (nonfinite="skip");
- the fused kernel, handed the local shards, refuses a gradient sharded unlike its parameter;
- warm_start under FSDP2 estimates what it estimates in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from checkpoint_common import one_thread  # noqa: F401 (an autouse fixture)
from distributed_common import (
    CHECKPOINT_CONFIG,
    CONFIGS,
    STEPS,
    dcp_load,
    dcp_save,
    full_optimizer_state,
    impls,
    make_model,
    single_process,
    train_single,
)
from rmsprop.torch import RMSprop

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).resolve().parents[1] / "distributed_common.py"
TIMEOUT_S = 300


def _assert_states_equal(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert sorted(a) == sorted(e)
        for key in e:
            if isinstance(e[key], torch.Tensor):
                assert torch.equal(a[key], e[key]), key
            else:  # the cold-start guard's flag, which warm_start sets
                assert a[key] == e[key], key


def _assert_bitwise(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e), (a - e).abs().max()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Run the two-process group once; return its results and its output folder."""
    out = tmp_path_factory.mktemp("distributed")
    one_rank = out / "one_rank"
    with warnings.catch_warnings():  # "no process group: saving in a single process"
        warnings.simplefilter("ignore", UserWarning)
        for impl in impls():
            model = make_model()
            optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[CHECKPOINT_CONFIG])
            train_single(model, optimizer, 0, STEPS, micro_batches=2)
            dcp_save(model, optimizer, str(one_rank / impl))
    env = {
        **os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
    }
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo's connections on the loopback device
    ranks = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), str(one_rank)],
            env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = []
    try:
        for rank in ranks:
            outputs.append(rank.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
                rank.wait()
    if any(rank.returncode != 0 for rank in ranks):
        pytest.fail("the distributed worker failed:\n" + "\n---\n".join(o[-4000:] for o in outputs))
    return torch.load(out / "results.pt"), out


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("impl", impls())
@pytest.mark.parametrize("wrapper", ["ddp", "fsdp"])
def test_matches_single_process(group, wrapper: str, impl: str, config: str) -> None:
    results, _ = group
    distributed = results[wrapper, impl, config]
    torch.testing.assert_close(distributed, single_process(config, impl, STEPS, micro_batches=1))
    _assert_bitwise(distributed, single_process(config, impl, STEPS, micro_batches=2))
    assert any(not torch.equal(p, q) for p, q in zip(distributed, make_model().parameters()))


@pytest.mark.parametrize("impl", impls())
def test_checkpoint_of_two_ranks_loads_on_one(group, impl: str) -> None:
    results, out = group
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[CHECKPOINT_CONFIG])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp_load(model, optimizer, str(out / f"two_ranks_{impl}"))
    _assert_bitwise([p.detach() for p in model.parameters()], results["saved_params", impl])
    _assert_states_equal(full_optimizer_state(optimizer), results["saved_state", impl])
    train_single(model, optimizer, STEPS, STEPS, micro_batches=2)
    resumed = [p.detach() for p in model.parameters()]
    uninterrupted = single_process(CHECKPOINT_CONFIG, impl, 2 * STEPS, micro_batches=2)
    _assert_bitwise(resumed, uninterrupted)
    torch.testing.assert_close(
        resumed, single_process(CHECKPOINT_CONFIG, impl, 2 * STEPS, micro_batches=1)
    )


@pytest.mark.parametrize("impl", impls())
def test_checkpoint_of_one_rank_loads_on_two(group, impl: str) -> None:
    results, _ = group
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[CHECKPOINT_CONFIG])
    train_single(model, optimizer, 0, STEPS, micro_batches=2)
    _assert_states_equal(results["loaded_state", impl], full_optimizer_state(optimizer))
    uninterrupted = single_process(CHECKPOINT_CONFIG, impl, 2 * STEPS, micro_batches=2)
    _assert_bitwise(results["one_to_two", impl], uninterrupted)


@pytest.mark.parametrize("impl", impls())
def test_nan_in_one_shard_skips_the_step_on_every_rank(group, impl: str) -> None:
    results, _ = group
    for bad_rank, value in ((0, "nan"), (1, "nan"), (1, "inf")):
        assert results["nan_skip", impl, bad_rank, value] == {"skipped": 1, "unchanged": True}, \
            (bad_rank, value)


@pytest.mark.parametrize("impl", impls())
def test_warm_start_under_fsdp2_matches_one_process(group, impl: str) -> None:
    results, _ = group
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl=impl, centered=True)
    batches = iter(range(3))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        step = next(batches)
        train_loss = 0.0
        from distributed_common import local_half

        for rank in range(2):
            x, y = local_half(step, rank)
            loss = torch.nn.functional.mse_loss(model(x), y) / 2
            loss.backward()
            train_loss += loss.item()
        return train_loss

    optimizer.warm_start(closure, steps=3)
    _assert_states_equal(results["warm_start", impl], full_optimizer_state(optimizer))
    untouched = [p.detach() for p in make_model().parameters()]
    _assert_bitwise(results["warm_start_params", impl], untouched)


@pytest.mark.skipif("fused" not in impls(), reason="no fused implementation")
def test_the_fused_kernel_refuses_a_gradient_laid_out_unlike_its_parameter(group) -> None:
    results, _ = group
    assert "placements (Shard(dim=0),)" in results["layout_refused"]
    assert "the fused kernels need them alike" in results["layout_refused"]
