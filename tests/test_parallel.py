"""A batch split into blocks of rows, each block's loop over time in its own thread
(reflstm.cells.parallel), computes what Keras computes.

The layer tests' comparisons with the real Keras layers (Keras 3 and tf_keras, float64 and
float32, masks, go_backwards, initial and carried states, every cell) are collected again here,
with blocks forced down to one or two batch rows, so that every one of them runs on the threaded
path: a batch of 3 becomes blocks of 1 and 2 rows. The layer tests themselves run the one-block
path (their batches are far below `MIN_BLOCK_VALUES`).
"""

import gc
import os
import re
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

PLANS = []  # (batch, blocks) of every run planned under the fixture


@pytest.fixture(autouse=True)
def blocks_of_one_or_two_rows(monkeypatch, request):
    """Every run of a batch of two or more rows splits into two blocks (a batch of 3: 1 and 2
    rows), with BLAS held to one thread, as on a large batch."""
    monkeypatch.setattr(parallel, "MIN_BLOCK_VALUES", 1)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    real_plan = parallel.plan

    def recorded_plan(batch, width, largest_product):
        made = real_plan(batch, width, largest_product)
        PLANS.append((batch, len(made.blocks)))
        return made

    monkeypatch.setattr(parallel, "plan", recorded_plan)
    PLANS.clear()
    yield
    if request.node.function.__module__ != __name__:
        # A layer test collected again: every batch of two rows or more ran on two blocks.
        assert PLANS and all(blocks == min(batch, 2) for batch, blocks in PLANS)


def held_threads():
    """The thread counts of the BLAS libraries NumPy uses, now."""
    return [info["num_threads"] for info in parallel._blas().info()]


def test_blocks_cover_the_batch_in_order():
    """Blocks are consecutive slices of the batch, the larger last; one row is one block."""
    assert parallel.plan(3, 20, 500).blocks == [slice(0, 1), slice(1, 3)]
    assert parallel.plan(1, 20, 500).blocks == [slice(0, 1)]


def test_large_batches_split_and_small_ones_do_not(monkeypatch):
    """One block per core while each block computes MIN_BLOCK_VALUES values a step."""
    monkeypatch.setattr(parallel, "MIN_BLOCK_VALUES", 2**15)
    monkeypatch.setattr(parallel, "cores", lambda: 4)
    assert parallel.plan(512, 512, 2**24) == ([slice(128 * k, 128 * (k + 1)) for k in range(4)], True)
    assert parallel.plan(64, 1024, 2**24).blocks == [slice(0, 32), slice(32, 64)]
    assert parallel.plan(32, 256, 2**16) == ([slice(0, 32)], True)  # one block, products held
    assert parallel.plan(3, 20, 2**16 - 1) == ([slice(0, 3)], False)  # too small to hold BLAS for
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    assert len(parallel.plan(512, 512, 2**24).blocks) == 1


def test_blas_is_held_to_one_thread_only_while_a_plan_holds_it():
    """Inside a run that holds BLAS every block sees one thread; after it, BLAS's own setting."""
    before = held_threads()
    seen = []
    parallel.run(parallel.Plan([slice(0, 1), slice(1, 2)], True), lambda k: seen.append(held_threads()),
                 [(0,), (1,)])
    assert seen == [[1] * len(before)] * 2
    assert held_threads() == before
    parallel.run(parallel.Plan([slice(0, 1)], False), lambda: seen.append(held_threads()), [()])
    assert seen[-1] == before


def test_blas_is_held_from_whichever_thread_a_run_starts_in():
    """threadpoolctl lets only the first thread that changed OpenBLAS change it again; a run
    started in another thread after one in this thread still holds BLAS to one thread."""
    before = held_threads()
    parallel.run(parallel.Plan([slice(0, 1)], True), lambda: None, [()])  # held from this thread
    seen = []
    held = parallel.Plan([slice(0, 1)], True)
    other = threading.Thread(target=parallel.run, args=(held, lambda: seen.append(held_threads()), [()]))
    other.start()
    other.join()
    assert seen == [[1] * len(before)]
    assert held_threads() == before


def test_an_error_in_a_block_is_raised_and_blas_given_back():
    """A block that raises: the run raises it, after the other blocks end, and BLAS is given back."""
    before = held_threads()

    def work(k):
        if k == 1:
            raise ValueError("block 1 failed")

    with pytest.raises(ValueError, match="block 1 failed"):
        parallel.run(parallel.Plan([slice(0, 1), slice(1, 2)], True), work, [(0,), (1,)])
    assert held_threads() == before


def test_the_callers_numpy_error_settings_hold_in_every_block():
    """np.errstate(invalid="raise") around a call raises for a NaN made in the second block's
    thread (+inf and -inf in one sample's x), as it does without blocks."""
    rng = np.random.default_rng(0)
    layer = reflstm.LSTM(np.abs(rng.normal(size=(2, 16))), rng.normal(size=(4, 16)), rng.normal(size=16))
    x = rng.normal(size=(3, 4, 2))
    x[2, 1] = [np.inf, -np.inf]  # x_t W = inf - inf = NaN in batch row 2, block 1
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        layer(x)
    assert PLANS[-1] == (3, 2)


def test_runs_in_several_threads_at_once_give_blas_back_after_the_last():
    """Traces from four threads at once (as dask's threaded scheduler runs them) each get the
    numbers a trace alone gets (a consistency check: the same plan, the same bits), and BLAS
    gets its own setting back after the last."""
    before = held_threads()
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
    assert held_threads() == before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_replayed_preactivations_of_a_large_batch_are_the_recorded_ones(dtype):
    """At sizes where BLAS would split a product among its threads (batch 512, 256 units), the
    pre-activations a trace recomputes are, bit for bit, those a trace that kept them recorded:
    the replay runs the run's blocks under the same hold on BLAS."""
    rng = np.random.default_rng(2)
    units = 256
    layer = reflstm.LSTM(rng.normal(size=(8, 4 * units)).astype(dtype),
                         (0.05 * rng.normal(size=(units, 4 * units))).astype(dtype),
                         rng.normal(size=4 * units).astype(dtype))
    x = rng.normal(size=(512, 3, 8)).astype(dtype)
    recorded = layer.trace(x, keep=("h", "z_x", "z_h"))
    replayed = layer.trace(x, keep=("h",))
    np.testing.assert_array_equal(replayed.z_x, recorded.z_x)
    np.testing.assert_array_equal(replayed.z_h, recorded.z_h)


def test_a_small_batch_of_long_sequences_replays_exactly_beside_a_held_run(monkeypatch):
    """Batch 8 of 512 steps (float32): one block, but its input projection is a large product
    (4096 × 64 by 64 × 64) that BLAS would split among its threads. It is held too, so a trace
    made while another thread's run holds BLAS, and replayed after that run ended, recomputes
    the very pre-activations a trace that kept them recorded."""
    monkeypatch.setattr(parallel, "MIN_BLOCK_VALUES", 2**15)  # the real rule: one block here
    rng = np.random.default_rng(1)
    units, features = 16, 64
    layer = reflstm.LSTM(rng.normal(size=(features, 4 * units)).astype("float32"),
                         (0.1 * rng.normal(size=(units, 4 * units))).astype("float32"),
                         rng.normal(size=4 * units).astype("float32"))
    x = rng.normal(size=(8, 512, features)).astype("float32")
    started, release = threading.Event(), threading.Event()

    def held_run():
        started.set()
        release.wait(30)

    other = threading.Thread(target=parallel.run, args=(parallel.Plan([slice(0, 1)], True), held_run, [()]))
    other.start()
    started.wait(30)
    recorded = layer.trace(x, keep=("h", "c", "z_x", "z_h"))
    replaying = layer.trace(x, keep=("h", "c"))
    release.set()
    other.join()
    assert PLANS[-1] == (8, 1)
    np.testing.assert_array_equal(replaying.z_x, recorded.z_x)
    np.testing.assert_array_equal(replaying.z_h, recorded.z_h)


def test_a_forked_child_gives_blas_back_and_counts_afresh():
    """A child forked while a run holds BLAS (here: this thread, inside the hold) has no such run:
    it starts with BLAS at its own setting and no run counted."""
    before, blas = held_threads(), parallel._blas()
    read, write = os.pipe()
    with parallel._one_blas_thread():
        pid = os.fork()
        if pid == 0:  # the child: report on the parent's libraries (inherited), then leave at once
            now = [info["num_threads"] for info in blas.info()]
            ok = parallel._held == {"runs": 0, "limiter": None} and now == before
            os.write(write, b"1" if ok else repr((parallel._held, now, before)).encode())
            os._exit(0)
    os.close(write)
    assert os.read(read, 1000) == b"1"
    os.waitpid(pid, 0)
    assert held_threads() == before


def test_a_run_leaves_nothing_for_the_garbage_collector():
    """The loop's scratch is freed when a call returns (no reference cycles keep it)."""
    rng = np.random.default_rng(0)
    layer = reflstm.GRU(rng.normal(size=(3, 15)), rng.normal(size=(5, 15)), rng.normal(size=(2, 15)))
    x = rng.normal(size=(4, 6, 3))
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            layer(x)
            layer.trace(x, keep=("h",)).recurrent_part
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("cls", [reflstm.LSTM, reflstm.GRU, reflstm.SimpleRNN])
def test_a_batch_of_no_sequences_gives_empty_arrays(cls):
    """A batch of 0 sequences: empty arrays of the shapes of any other batch (it raised
    ZeroDivisionError before). Not compared with Keras: its TensorFlow ops fail on an empty
    batch in some graph states ("Biases must be 1D")."""
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[cls.__name__]
    layer = cls(rng.normal(size=(4, 5 * gates)), rng.normal(size=(5, 5 * gates)),
                return_sequences=True, return_state=True)
    output, *states = layer(np.zeros((0, 6, 4)))
    assert output.shape == (0, 6, 5) and [s.shape for s in states] == [(0, 5)] * len(cls.STATES)
    assert layer.trace(np.zeros((0, 6, 4))).h.shape == (0, 6, 5)


REAL_CORES = parallel.cores  # before the fixture replaces it


@pytest.mark.parametrize("setting, expected", [("1", 1), ("2", 2), ("64", None)])
def test_reflstm_num_threads_caps_the_threads(monkeypatch, setting, expected):
    """REFLSTM_NUM_THREADS=N: at most N threads (never more than the cores there are)."""
    monkeypatch.setenv("REFLSTM_NUM_THREADS", setting)
    available = len(os.sched_getaffinity(0))
    assert REAL_CORES() == min(available, expected or available)


@pytest.mark.parametrize("setting", ["0", "-1", "two", "", "\u00b2"])
def test_a_bad_reflstm_num_threads_is_refused(monkeypatch, setting):
    """Anything but a whole number of threads, 1 or more, is refused by name."""
    monkeypatch.setenv("REFLSTM_NUM_THREADS", setting)
    message = f"REFLSTM_NUM_THREADS: expected a whole number of threads, 1 or more, received {setting!r}"
    with pytest.raises(reflstm.ReflstmError, match=re.escape(message)):
        REAL_CORES()


def test_without_threadpoolctl_a_run_stays_in_one_block_and_leaves_blas_alone(monkeypatch):
    """Without a way to hold BLAS (no threadpoolctl, or no BLAS it can see), threads of ours
    would only compete with BLAS's: one block."""
    monkeypatch.setattr(parallel, "_blas", lambda: None)
    assert parallel.plan(3, 20, 2**24) == ([slice(0, 3)], False)
