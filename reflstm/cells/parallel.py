"""A batch's sequences side by side: the rows of a run split into blocks, one thread per block.

Every sequence of a batch has its own recurrence; no row of a step reads another row. So
`Recurrent._loop` runs its loop over time for a block of batch rows at a time, each block in its
own thread, and every row goes through the same operations as in an unsplit run.

What it buys: NumPy runs each array operation on one core, so a step's exp, tanh and products
over batch × units values (most of a float64 step) use one core of several. It releases the GIL
inside each operation, so two blocks in two threads use two cores.

The matrix library (OpenBLAS, or whichever NumPy was built with) would start threads of its own
for every product, and those, spinning while they wait, compete with ours. So a run's products
are made with the library held to one thread (threadpoolctl; refcounted, the library's own
setting given back when the last run in any thread ends). The setting is the process's: another
thread's products meanwhile run on one thread too. That also fixes their last bits: a
library's result can depend on how it splits a product among its threads and on how many rows
go in together. With one thread and the same blocks a run's products come out the same every
time, which is what lets a trace recompute its pre-activations bit for bit (`_Replay`, run with
the same `Plan`). Between a run split in blocks and one unsplit (another machine's core count,
REFLSTM_NUM_THREADS) they may differ in the last bits, as a batch chunked differently does.

Small steps stay in one block: below `MIN_BLOCK_VALUES` values per step and block, starting
threads and sharing the GIL cost more than they save; and a run whose every product is below
`MIN_HELD_PRODUCT` multiply-adds leaves the library alone (OpenBLAS splits no product below
4 × 65,536, so such bits do not depend on its threads, and holding it would cost more than the
product). REFLSTM_NUM_THREADS=1 in the environment keeps every run in the calling thread;
REFLSTM_NUM_THREADS=N uses at most N threads.
"""

import functools
import os
import threading
from contextlib import contextmanager, nullcontext
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from reflstm.errors import refuse

__all__ = ["Plan", "plan", "run"]

# The least batch rows × step width (gates × units) that one block of a step computes.
MIN_BLOCK_VALUES = 2**15
# The least multiply-adds of a run's largest product for which BLAS is held (OpenBLAS splits
# none below 4 * 65536).
MIN_HELD_PRODUCT = 2**16


class Plan(NamedTuple):
    """How a run of a batch goes: its blocks of batch rows, and whether BLAS is held to one thread."""

    blocks: list
    holds_blas: bool


def plan(batch, width, largest_product):
    """The `Plan` of a run over `batch` rows whose step is `width` values wide (gates × units) and
    whose largest matrix product is `largest_product` multiply-adds.

    One block per core while every block computes at least `MIN_BLOCK_VALUES` values a step, else
    one block; BLAS held when there are several blocks or the largest product reaches
    `MIN_HELD_PRODUCT`. Without threadpoolctl (or a BLAS it can see): one block, BLAS as it is.
    """
    if _blas() is None:
        return Plan([slice(0, batch)], False)
    count = max(1, min(cores(), batch * width // MIN_BLOCK_VALUES, batch))
    edges = [batch * k // count for k in range(count + 1)]
    holds = count > 1 or largest_product >= MIN_HELD_PRODUCT
    return Plan([slice(lo, hi) for lo, hi in pairwise(edges)], holds)


def run(the_plan, work, arguments):
    """work(*a) for each a in `arguments` (one per block of `the_plan`), each in its own thread
    (the first in this one), under the plan's hold on BLAS and this thread's NumPy error
    settings (np.errstate). Raises what any of them raised, once all have ended."""
    with _one_blas_thread() if the_plan.holds_blas else nullcontext():
        if len(arguments) == 1:
            work(*arguments[0])
            return
        errors, settings, call = [], np.geterr(), np.geterrcall()

        def guarded(*a):
            try:
                with np.errstate(call=call, **settings):  # a new thread starts with NumPy's defaults
                    work(*a)
            except BaseException as error:  # noqa: BLE001 -- raised again in the calling thread
                errors.append(error)

        threads = [threading.Thread(target=guarded, args=a, daemon=True) for a in arguments[1:]]
        for thread in threads:
            thread.start()
        guarded(*arguments[0])
        for thread in threads:
            thread.join()
    if errors:
        raise errors.pop()  # no local name: the traceback would hold it in a cycle


def cores():
    """The threads a run may use: the cores this process may run on, or fewer where the
    environment variable REFLSTM_NUM_THREADS says so (1: every run in the calling thread)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    limit = os.environ.get("REFLSTM_NUM_THREADS")
    if limit is None:
        return count
    if not (limit.isascii() and limit.strip().isdigit()) or int(limit) < 1:
        raise refuse("REFLSTM_NUM_THREADS", "a whole number of threads, 1 or more", repr(limit))
    return min(count, int(limit))


_lock = threading.Lock()
_held = {"runs": 0, "limiter": None}


@functools.cache
def _blas():
    """The threadpoolctl controller of the BLAS libraries NumPy uses; None without threadpoolctl
    or without a BLAS it can see. Looked up once (a forked child keeps it: the same libraries)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController().select(user_api="blas")
    return controller if controller.lib_controllers else None


@contextmanager
def _one_blas_thread():
    """BLAS on one thread from the first concurrent run's start to the last one's end (which may
    be in another thread than the start)."""
    blas = _blas()
    with _lock:
        if _held["runs"] == 0:
            _held["limiter"] = _from_any_thread(lambda: blas.limit(limits=1))
        _held["runs"] += 1
    try:
        yield
    finally:
        with _lock:
            _held["runs"] -= 1
            if _held["runs"] == 0:
                _from_any_thread(_held["limiter"].restore_original_limits)
                _held["limiter"] = None


def _from_any_thread(change):
    """change() of BLAS's thread count, from whichever thread this is. threadpoolctl lets only
    one thread change OpenBLAS's shared pool (the first that did, until released) and silently
    ignores the others; reflstm's changes are already one at a time (under `_lock`), so it
    releases that claim before and after each of them."""
    from threadpoolctl import OpenBLASController

    release = getattr(OpenBLASController, "clear_controlling_thread", None)  # where it has that claim
    if release is not None:
        release(force=True)
    try:
        return change()
    finally:
        if release is not None:
            release(force=True)


def _forked_child():
    """In a child forked while a run held BLAS (in another thread): the child has no such run,
    so it gives BLAS back its setting and starts counting afresh (with a lock of its own)."""
    global _lock
    _lock = threading.Lock()
    if _held["limiter"] is not None:
        _from_any_thread(_held["limiter"].restore_original_limits)
    _held.update(runs=0, limiter=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)
