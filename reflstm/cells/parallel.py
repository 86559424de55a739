"""A batch's sequences side by side: the rows of a run split into blocks, one thread per block.

Every sequence of a batch has its own recurrence; no row of a step reads another row. So
`Recurrent._run` may run its loop over time for a block of batch rows at a time, each block in
its own thread, and get, row for row, the very numbers one block would: every array operation of
a step works row by row (the matrix products as well: a row of x W or h U is the same whatever
other rows are multiplied beside it, and the trace's replay uses the same blocks anyway).

What it buys: NumPy runs each array operation on one core, so a step's exp, tanh and products
over batch × units values (most of a float64 step) use one core of several. It releases the
GIL inside each operation, so two blocks in two threads use two cores. The matrix library
(OpenBLAS, or whichever NumPy was built with) would start threads of its own for every product,
and those, spinning while they wait, compete with ours; while blocks run side by side it is held
to one thread per product (threadpoolctl), and given back its own setting when the last block
ends. Another thread of the same process multiplying matrices meanwhile also gets one thread.

Small steps stay in one block: below `MIN_BLOCK_VALUES` values per step and block, starting
threads and sharing the GIL cost more than they save. REFLSTM_NUM_THREADS=1 in the environment
keeps every run in the calling thread (and BLAS as it is); REFLSTM_NUM_THREADS=N uses at most N.
"""

import os
import threading
from contextlib import contextmanager
from itertools import pairwise

from reflstm.errors import refuse

__all__ = ["blocks", "run"]

# The least batch rows × step width (gates × units) that one block of a step computes.
MIN_BLOCK_VALUES = 2**15


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
    if not limit.strip().isdigit() or int(limit) < 1:
        raise refuse("REFLSTM_NUM_THREADS", "a whole number of threads, 1 or more", repr(limit))
    return min(count, int(limit))


def blocks(batch, width):
    """The batch rows of each block, as slices: one block per core while every block computes at
    least `MIN_BLOCK_VALUES` values a step (batch rows × width), else one block."""
    count = max(1, min(cores(), batch * width // MIN_BLOCK_VALUES, batch))
    if count > 1 and _blas_limiter() is None:
        count = 1  # without a way to hold BLAS to one thread, threads of ours only slow it down
    edges = [batch * k // count for k in range(count + 1)]
    return [slice(lo, hi) for lo, hi in pairwise(edges)]


def run(work, arguments):
    """work(*a) for each a in `arguments`, each in its own thread (the first in this one), and
    BLAS held to one thread while more than one runs. Raises what any of them raised."""
    if len(arguments) == 1:
        work(*arguments[0])
        return
    errors = []

    def guarded(*a):
        try:
            work(*a)
        except BaseException as error:  # raised again in the calling thread
            errors.append(error)

    with _one_blas_thread():
        threads = [threading.Thread(target=guarded, args=a, daemon=True) for a in arguments[1:]]
        for thread in threads:
            thread.start()
        guarded(*arguments[0])
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


_lock = threading.Lock()
_limiters = {}  # process id -> threadpoolctl controller of the BLAS libraries, or None
_active = {"runs": 0, "limit": None}


def _blas_limiter():
    """This process's threadpoolctl view of the BLAS libraries NumPy uses, or None without
    threadpoolctl (looked up once per process: a forked child looks again)."""
    pid = os.getpid()
    with _lock:
        if pid not in _limiters:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _limiters[pid] = None
            else:
                _limiters[pid] = ThreadpoolController().select(user_api="blas")
        return _limiters[pid]


@contextmanager
def _one_blas_thread():
    """BLAS on one thread from the first concurrent run's start to the last one's end."""
    limiter = _blas_limiter()
    with _lock:
        if _active["runs"] == 0:
            _active["limit"] = limiter.limit(limits=1)
        _active["runs"] += 1
    try:
        yield
    finally:
        with _lock:
            _active["runs"] -= 1
            if _active["runs"] == 0:
                _active["limit"].restore_original_limits()
                _active["limit"] = None
