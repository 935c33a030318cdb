"""The no-arithmetic streams kernel of the step benchmark moves the step's streams, and the
benchmark reports each step as a fraction of it (timings replaced by fixed ones: nothing timed
is asserted)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from rmsprop.benchmark import step_time
from rmsprop.benchmark._streams import MAX_STATES, move_streams


@pytest.mark.parametrize("k", range(1, MAX_STATES + 1))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_stream_is_read_and_written(k, dtype):
    rng = np.random.default_rng(k)
    n = 1003  # not a multiple of any vector width
    theta, g, *states = (rng.standard_normal(n).astype(dtype) for _ in range(2 + k))
    before = [a.copy() for a in (theta, g, *states)]
    move_streams(theta, g, states)
    old_theta, old_g, *old_states = before
    np.testing.assert_array_equal(theta, old_g + old_states[-1])  # g and the last state read
    np.testing.assert_array_equal(states[0], old_theta)  # theta read, the first state written
    for j in range(1, k):
        np.testing.assert_array_equal(states[j], old_states[j - 1])
    np.testing.assert_array_equal(g, old_g)  # g is only read


def test_one_thread_moves_the_same_and_gives_the_threads_back():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(4099).astype(np.float32) for _ in range(4)]
    copies = [a.copy() for a in arrays]
    before = numba.get_num_threads()
    move_streams(arrays[0], arrays[1], arrays[2:], threads=1)
    move_streams(copies[0], copies[1], copies[2:])
    for a, b in zip(arrays, copies):
        np.testing.assert_array_equal(a, b)
    assert numba.get_num_threads() == before


def test_bad_arrays_are_refused_before_anything_moves():
    a, b, c = np.ones(8, np.float32), np.ones(8, np.float32), np.ones(9, np.float32)
    with pytest.raises(ValueError, match="one size and dtype"):
        move_streams(a, b, [c])
    with pytest.raises(ValueError, match="states: 1 to 4"):
        move_streams(a, b, [])
    with pytest.raises(ValueError, match="contiguous"):
        move_streams(np.ones(16, np.float32)[::2], b, [np.ones(8, np.float32)])
    assert (a == 1).all() and (b == 1).all()


def _fixed(contenders, warmup, repeats, device):
    """Each contender at a fixed rate: the one-thread streams kernel at 2 GB/s, the parallel
    one at 1.5 GB/s, everything else 1 GB/s."""
    rates = {"streams-numba-1thread": 2e9, "streams-numba": 1.5e9}
    return {c.name: [c.bytes / rates.get(c.name, 1e9)] * repeats for c in contenders}


@pytest.mark.parametrize("config, streams", [("plain", 5), ("momentum", 7)])
def test_each_step_is_reported_against_the_streams_kernel(monkeypatch, capsys, config,
                                                          streams):
    monkeypatch.setattr(step_time, "measure", _fixed)
    case = step_time.run_case("2000x1k", config, warmup=0, repeats=3, scale=0.01, peers=False)
    results = case["results"]
    kernel = results["streams-numba-1thread"]  # the faster of the two is the reference
    assert case["streams_reference"] == "streams-numba-1thread"
    assert kernel["kind"] == results["streams-numba"]["kind"] == "ceiling"
    per_param = 4 * streams  # float32: each stream one read or one write of 4 bytes
    assert kernel["bytes"] == case["params"] * per_param == results["torch-loop"]["bytes"]
    assert case["streams_ms"] == pytest.approx(kernel["median_ms"])
    for name, r in results.items():
        assert r["streams_fraction"] == pytest.approx(kernel["median_ms"] / r["median_ms"])
    assert results["rmsprop-fused"]["streams_fraction"] == pytest.approx(0.5)
    assert results["streams-numba"]["streams_fraction"] == pytest.approx(0.75)
    assert kernel["flags"] == []  # the ceiling is not flagged above the triad's bandwidth
    step_time.print_case(case)
    printed = capsys.readouterr().out
    assert "of streams" in printed and f"the step's {streams} streams" in printed


def test_the_issue_layouts_are_known():
    assert {"64x250k", "2000x1k", "transformer"} <= set(step_time.LAYOUTS)
    assert [len(step_time.LAYOUTS[name]()) for name in ("64x250k", "2000x1k")] == [64, 2000]
