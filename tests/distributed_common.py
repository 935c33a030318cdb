"""The training problem of tests/test_distributed.py, and the worker its two processes run.

One small MLP, fixed data, and a global batch of 8 rows per step. Rank r of 2 trains on rows
4r..4r+3 of the batch with a mean loss, and DDP / FSDP2 average the two gradients; the
single-process runs train on the whole batch either at once (``micro_batches=1``) or as two
halves with the loss halved (``micro_batches=2``), which accumulates exactly the sum of the
two halved gradients DDP and FSDP2 form (halving is exact in floating point), so those runs
must agree bit for bit.

``python tests/distributed_common.py OUT ONE_RANK_DIR`` with RANK set is one rank of the group
(which meets through a file in OUT: no port to choose, none another process can take first):
it runs every distributed check once and rank 0 writes the results to OUT/results.pt for the
test module to compare.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from checkpoint_common import cpu_impls
from rmsprop.torch import RMSprop

WORLD_SIZE = 2
STEPS = 6  # per segment: a run, or each half of a checkpointed run
CONFIGS: dict[str, dict[str, Any]] = {
    "pytorch": {"lr": 1e-2},
    "everything": {
        # (not centered: with bias correction the first centered step divides by eps alone)
        "lr": 1e-2, "momentum": 0.9, "nesterov": True, "amsgrad": True,
        "weight_decay": 1e-2, "bias_correction": True, "nonfinite": "skip",
    },
    "tensorflow": {"flavor": "tensorflow", "lr": 1e-2, "momentum": 0.5, "centered": True},
}
CHECKPOINT_CONFIG = "everything"

_DATA = torch.Generator().manual_seed(1)
X = torch.randn(40, 8, generator=_DATA)
Y = torch.randn(40, 4, generator=_DATA)


def impls() -> list[str]:
    """The implementations that run on CPU tensors here."""
    return cpu_impls()


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    start = (step * 8) % len(X)
    return X[start : start + 8], Y[start : start + 8]


def local_half(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch(step)
    return x[4 * rank : 4 * rank + 4], y[4 * rank : 4 * rank + 4]


def train_single(model: Any, optimizer: Any, first: int, steps: int, micro_batches: int) -> None:
    """Single-process training on the global batches ``first .. first + steps - 1``."""
    for step in range(first, first + steps):
        optimizer.zero_grad()
        if micro_batches == 1:
            F.mse_loss(model(batch(step)[0]), batch(step)[1]).backward()
        else:
            for rank in range(WORLD_SIZE):
                x, y = local_half(step, rank)
                (F.mse_loss(model(x), y) / WORLD_SIZE).backward()
        optimizer.step()


def train_rank(model: Any, optimizer: Any, rank: int, first: int, steps: int) -> None:
    """One rank's share of distributed training (the wrapper averages the gradients)."""
    for step in range(first, first + steps):
        optimizer.zero_grad()
        x, y = local_half(step, rank)
        F.mse_loss(model(x), y).backward()
        optimizer.step()


def single_process(config: str, impl: str, steps: int, micro_batches: int) -> list[torch.Tensor]:
    model = make_model()
    optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[config])
    train_single(model, optimizer, 0, steps, micro_batches)
    return [p.detach().clone() for p in model.parameters()]


# -- the worker (runs in each of the two processes) ---------------------------------------------


def _full(tensor: Any) -> torch.Tensor:
    """A plain tensor: a DTensor gathered (a collective: every rank must call it)."""
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().clone()


def _sharded_model() -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    fully_shard(model[0])
    fully_shard(model[2])
    fully_shard(model)
    return model


def _state_dicts(model: Any, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
    }


def dcp_load(model: Any, optimizer: Any, directory: str) -> None:
    """Load a torch.distributed.checkpoint directory into ``model`` and ``optimizer``
    (resharding to however many ranks run now)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = _state_dicts(model, optimizer)
    dcp.load(state, checkpoint_id=directory)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])


def dcp_save(model: Any, optimizer: Any, directory: str) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save(_state_dicts(model, optimizer), checkpoint_id=directory)


def full_optimizer_state(optimizer: Any) -> list[dict[str, Any]]:
    """Every parameter's state as plain tensors, in parameter order (collective for DTensors);
    entries that are no tensors (the cold-start guard's flag) as they are."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return [{key: _full(value) if isinstance(value, torch.Tensor) else value
             for key, value in sorted(optimizer.state[p].items())}
            for p in params]


def _fused_refuses_unlike_layouts() -> str:
    """The fused kernel on a sharded parameter with a replicated gradient: the error it raises."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from rmsprop import RMSpropSpec
    from rmsprop.torch import rmsprop

    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    param = distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)])
    grad = distribute_tensor(torch.ones(4, 2), mesh, [Replicate()])
    try:
        rmsprop([param], [grad], [torch.zeros_like(param)], [torch.zeros(())],
                spec=RMSpropSpec(), lr=0.1, impl="fused")
    except ValueError as error:
        return str(error)
    return "no error"


def _worker(out_dir: str, one_rank_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank = int(os.environ["RANK"])
    rendezvous = Path(out_dir, "rendezvous").as_uri()  # a FileStore, created by the first rank
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    results: dict[Any, Any] = {}
    for impl in impls():
        for config in CONFIGS:
            model = DistributedDataParallel(make_model())
            optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[config])
            train_rank(model, optimizer, rank, 0, STEPS)
            results["ddp", impl, config] = [_full(p) for p in model.parameters()]

            model = _sharded_model()
            optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[config])
            train_rank(model, optimizer, rank, 0, STEPS)
            results["fsdp", impl, config] = [_full(p) for p in model.parameters()]

        # Two ranks save mid-run (the test loads it in one process) ...
        model = _sharded_model()
        optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[CHECKPOINT_CONFIG])
        train_rank(model, optimizer, rank, 0, STEPS)
        dcp_save(model, optimizer, os.path.join(out_dir, f"two_ranks_{impl}"))
        results["saved_params", impl] = [_full(p) for p in model.parameters()]
        results["saved_state", impl] = full_optimizer_state(optimizer)
        # ... and load what one process saved mid-run, then train the second half.
        model = _sharded_model()
        optimizer = RMSprop(model.parameters(), impl=impl, **CONFIGS[CHECKPOINT_CONFIG])
        dcp_load(model, optimizer, os.path.join(one_rank_dir, impl))
        results["loaded_state", impl] = full_optimizer_state(optimizer)
        train_rank(model, optimizer, rank, STEPS, STEPS)
        results["one_to_two", impl] = [_full(p) for p in model.parameters()]

        # A NaN (or inf) in one rank's shard only, on either rank: both ranks must skip the
        # step together (gloo's MAX all-reduce drops a NaN held by rank 1).
        for bad_rank, value in ((0, "nan"), (1, "nan"), (1, "inf")):
            model = _sharded_model()
            optimizer = RMSprop(model.parameters(), impl=impl, nonfinite="skip")
            train_rank(model, optimizer, rank, 0, 1)
            before = [_full(p) for p in model.parameters()]
            optimizer.zero_grad()
            F.mse_loss(model(local_half(1, rank)[0]), local_half(1, rank)[1]).backward()
            if rank == bad_rank:
                model[0].weight.grad.to_local().view(-1)[0] = float(value)
            optimizer.step()
            results["nan_skip", impl, bad_rank, value] = {
                "skipped": optimizer.skipped_steps,
                "unchanged": all(torch.equal(a, _full(p))
                                 for a, p in zip(before, model.parameters())),
            }

        # warm_start re-estimates v from the averaged gradients, as in one process.
        model = _sharded_model()
        optimizer = RMSprop(model.parameters(), impl=impl, centered=True)
        batches = iter(range(3))

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            x, y = local_half(next(batches), rank)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss

        optimizer.warm_start(closure, steps=3)
        results["warm_start", impl] = full_optimizer_state(optimizer)
        results["warm_start_params", impl] = [_full(p) for p in model.parameters()]

    results["layout_refused"] = _fused_refuses_unlike_layouts()
    if rank == 0:
        torch.save(results, Path(out_dir) / "results.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
