"""A batch split into blocks of rows, each block's loop over time in its own thread
(reflstm.cells.parallel), computes what Keras computes.

The layer tests' comparisons with the real Keras layers (Keras 3 and tf_keras, float64 and
float32, masks, go_backwards, initial and carried states, every cell) are collected again here,
with blocks forced down to one or two batch rows, so that every one of them runs on the threaded
path: a batch of 3 becomes blocks of 1 and 2 rows. The layer tests themselves run the one-block
path (their batches are far below `MIN_BLOCK_VALUES`).
"""

import os
import threading

import numpy as np
import pytest

import reflstm
from reflstm.cells import parallel

# Collected again under this module's fixture: the same assertions against Keras, on blocks.
from test_lstm import test_matches_keras as test_lstm_matches_keras  # noqa: F401
from test_lstm import test_stateful as test_lstm_stateful  # noqa: F401
from test_gru import test_matches_keras as test_gru_matches_keras  # noqa: F401
from test_gru import test_stateful as test_gru_stateful  # noqa: F401
from test_gru import test_gates_match_keras_cell as test_gru_gates_match_keras_cell  # noqa: F401
from test_simple_rnn import test_matches_keras as test_simple_rnn_matches_keras  # noqa: F401
from test_simple_rnn import test_stateful as test_simple_rnn_stateful  # noqa: F401
from test_trace import test_gates_match_keras_cell as test_lstm_gates_match_keras_cell  # noqa: F401
from test_keep import (  # noqa: F401
    test_recomputed_preactivations_are_the_recorded_ones as test_replay_on_blocks_is_the_recorded_run,
)

BLOCK_COUNTS = []  # how many blocks each run under the fixture used


@pytest.fixture(autouse=True)
def blocks_of_one_or_two_rows(monkeypatch, request):
    """Every run of a batch of two or more rows splits into two blocks (a batch of 3: 1 and 2
    rows), and BLAS is held to one thread while they run, as on a large batch."""
    monkeypatch.setattr(parallel, "MIN_BLOCK_VALUES", 1)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    real_run = parallel.run

    def counting_run(work, arguments):
        BLOCK_COUNTS.append(len(arguments))
        return real_run(work, arguments)

    monkeypatch.setattr(parallel, "run", counting_run)
    BLOCK_COUNTS.clear()
    yield
    if request.node.function.__module__ != __name__ and "one_sample" not in request.node.name:
        # A layer test collected again: the path it ran was the threaded one.
        assert BLOCK_COUNTS and max(BLOCK_COUNTS) == 2


def test_blocks_cover_the_batch_in_order():
    assert parallel.blocks(3, 20) == [slice(0, 1), slice(1, 3)]
    assert parallel.blocks(1, 20) == [slice(0, 1)]


def test_large_batches_split_and_small_ones_do_not(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_BLOCK_VALUES", 2**15)
    monkeypatch.setattr(parallel, "cores", lambda: 4)
    assert parallel.blocks(512, 512) == [slice(128 * k, 128 * (k + 1)) for k in range(4)]
    assert parallel.blocks(64, 1024) == [slice(0, 32), slice(32, 64)]
    assert len(parallel.blocks(32, 256)) == 1
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    assert len(parallel.blocks(512, 512)) == 1


def test_blas_is_held_to_one_thread_only_while_blocks_run():
    limiter = parallel._blas_limiter()
    before = [info["num_threads"] for info in limiter.info()]
    seen = []

    def work(k):
        seen.append([info["num_threads"] for info in parallel._blas_limiter().info()])

    parallel.run(work, [(0,), (1,)])
    assert seen == [[1] * len(before)] * 2
    assert [info["num_threads"] for info in limiter.info()] == before


def test_an_error_in_a_block_is_raised_and_blas_given_back():
    limiter = parallel._blas_limiter()
    before = [info["num_threads"] for info in limiter.info()]

    def work(k):
        if k == 1:
            raise ValueError("block 1 failed")

    with pytest.raises(ValueError, match="block 1 failed"):
        parallel.run(work, [(0,), (1,)])
    assert [info["num_threads"] for info in limiter.info()] == before


def test_runs_in_several_threads_at_once_give_blas_back_after_the_last():
    """Two traces at once from two threads (as dask's threaded scheduler runs them): each gets
    Keras's numbers (here: the same as alone), and BLAS gets its own setting back at the end."""
    limiter = parallel._blas_limiter()
    before = [info["num_threads"] for info in limiter.info()]
    rng = np.random.default_rng(0)
    layer = reflstm.LSTM(rng.normal(size=(3, 16)), rng.normal(size=(4, 16)), rng.normal(size=16),
                         return_sequences=True)
    xs = [rng.normal(size=(5, 6, 3)) for _ in range(4)]
    alone = [layer(x) for x in xs]
    results = [None] * len(xs)

    def trace(k):
        results[k] = layer.trace(xs[k]).h

    threads = [threading.Thread(target=trace, args=(k,)) for k in range(len(xs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, expected in zip(results, alone):
        np.testing.assert_array_equal(got, expected)
    assert [info["num_threads"] for info in limiter.info()] == before


def test_without_threadpoolctl_a_run_stays_in_one_block(monkeypatch):
    monkeypatch.setattr(parallel, "_limiters", {os.getpid(): None})
    assert parallel.blocks(3, 20) == [slice(0, 3)]


REAL_CORES = parallel.cores  # before the fixture replaces it


@pytest.mark.parametrize("setting, expected", [("1", 1), ("2", 2), ("64", None)])
def test_reflstm_num_threads_caps_the_blocks(monkeypatch, setting, expected):
    monkeypatch.setenv("REFLSTM_NUM_THREADS", setting)
    available = len(os.sched_getaffinity(0))
    assert REAL_CORES() == min(available, expected or available)


@pytest.mark.parametrize("setting", ["0", "-1", "two", ""])
def test_a_bad_reflstm_num_threads_is_refused(monkeypatch, setting):
    monkeypatch.setenv("REFLSTM_NUM_THREADS", setting)
    with pytest.raises(reflstm.ReflstmError, match=f"REFLSTM_NUM_THREADS: expected a whole number of threads, "
                                                    f"1 or more, received {setting!r}"):
        REAL_CORES()
