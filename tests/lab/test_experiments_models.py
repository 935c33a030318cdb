"""The model-based experiments at demo settings: each writes a well-formed JSON whose verdict
follows from its own figures and thresholds (whatever the verdict is)."""

from __future__ import annotations

import pytest
import torch

from experiments_common import run_quick
from rmsprop.experiments import memory
from rmsprop.torch import RMSprop

# lr-jump and digits slow: the digits MLP they train, its batches and bands run in warmup
MODELS = ["cold-start", "warmup", pytest.param("lr-jump", marks=pytest.mark.slow),
          pytest.param("digits", marks=pytest.mark.slow),
          pytest.param("eps-placement", marks=pytest.mark.slow),
          pytest.param("memory", marks=pytest.mark.slow),
          pytest.param("rnn", marks=pytest.mark.slow),
          pytest.param("policy-gradient", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


@pytest.mark.parametrize("name", MODELS)
def test_runs_and_judges_itself(name, out):
    run_quick(name, out)


def test_memory_state_bytes_counts_every_tensor():
    p = torch.nn.Parameter(torch.zeros(10, 3))
    opt = RMSprop([p], lr=0.1, momentum=0.9, centered=True)
    p.grad = torch.ones_like(p)
    opt.step()
    # square_avg, grad_avg, momentum_buffer (30 float32 each) and the float32 step counter
    assert memory.state_bytes(opt) == 3 * 30 * 4 + 4


def test_memory_reads_the_process_resident_size():
    before = memory.rss_bytes()
    block = torch.ones(2**22)  # 16 MiB, written
    grown = memory.rss_bytes() - before
    assert block.sum() == 2**22
    assert 0.9 * block.nbytes <= grown <= 1.5 * block.nbytes
