"""Load model files in a worker process with a memory cap and a timeout, and say what happened.

A hostile file must not take the test run down with it: every load runs in a worker process
whose address space is capped (RLIMIT_AS), and a load that runs past its timeout gets the
worker killed, after faulthandler has written where it was stuck. One worker serves many
loads, so a fuzzing campaign pays Python's start-up once, not once per file.

Outcomes (`Result.kind`):
  loaded             loaded, and predict (when asked) gave finite arrays of the expected shapes
  refused            ReflstmError from load
  refused_at_predict loaded, then ReflstmError from predict
  error              another exception type from load
  error_at_predict   loaded, then another exception type from predict
  bad_output         predict returned arrays of the wrong number, shape, or non-finite values
  secret             a loaded weight holds values planted in a file outside the model file
  memory             MemoryError (the cap was hit)
  hang               still running at the timeout (the worker is killed)
  crash              the worker died (a signal, or the kernel killed it)
"""

import dataclasses
import json
import os
import selectors
import subprocess
import sys
import tempfile

import numpy as np

# The worker's address space: numpy + h5py + reflstm need ~120 MB; a file that makes the loader
# allocate gigabytes hits this instead of the machine.
MEMORY_CAP = 1 << 30
# Values no real weight holds: 31337.0, 31337.25, ... planted in "secret" files that hostile
# models point at; a weight holding one was read from outside the model file.
SECRET_START, SECRET_STEP, SECRET_COUNT = 31337.0, 0.25, 4096
FAILURES = ("error", "error_at_predict", "bad_output", "secret", "memory", "hang", "crash")


def secret_values(count):
    """The first `count` planted values, as float32 (each exactly representable)."""
    return (SECRET_START + SECRET_STEP * np.arange(count)).astype("float32")  # (count,)


@dataclasses.dataclass
class Result:
    kind: str
    error_type: str = ""
    message: str = ""
    detail: str = ""  # for hang and crash: the worker's last stderr (faulthandler's traceback)

    def __str__(self):
        text = f"{self.kind}: {self.error_type} {self.message}".strip()
        return text + (f"\n{self.detail}" if self.detail else "")


class Sandbox:
    """A worker process that loads files on request; restarted after a hang or a crash."""

    def __init__(self, memory=MEMORY_CAP):
        self.memory = memory
        self._process = None
        self._stderr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _start(self):
        self.close()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(self.memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
        )

    def _stderr_tail(self, size=3000):
        self._stderr.seek(0, os.SEEK_END)
        end = self._stderr.tell()
        self._stderr.seek(max(0, end - size))
        return self._stderr.read().decode("utf-8", "replace")

    def load(self, path, *, limits=None, inputs=None, output_shapes=None, batch=None, timeout=30.0,
             save_outputs=None):
        """What loading `path` (then predicting `inputs`, a list of .npy paths) does: a Result.

        `limits` are reflstm.Limits fields; `output_shapes` the shapes predict must return (or
        `batch`, the leading size each output must have); `save_outputs` an .npz path where
        predict's outputs are written for the caller to compare.
        """
        if self._process is None or self._process.poll() is not None:
            self._start()
        job = dict(path=os.fspath(path), limits=limits, inputs=[os.fspath(p) for p in inputs or []],
                   output_shapes=output_shapes, batch=batch, timeout=timeout, save_outputs=save_outputs)
        self._stderr.seek(0)
        self._stderr.truncate()
        self._process.stdin.write((json.dumps(job) + "\n").encode())
        self._process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            # faulthandler writes the traceback at `timeout`; the worker is killed a little later.
            ready = selector.select(timeout + 5)
        if not ready:
            detail = self._stderr_tail()
            self.close()
            return Result("hang", message=f"no answer within {timeout + 5:.0f} s", detail=detail)
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            code = self._process.returncode
            detail = self._stderr_tail()
            self.close()
            return Result("crash", message=f"worker exited with {code}", detail=detail)
        return Result(**json.loads(line))


# ---- the worker -----------------------------------------------------------------------------


def _arrays(value, seen, depth=0):
    """Every NumPy array reachable from `value` (a Model, its layers, their weights)."""
    if isinstance(value, np.ndarray):
        yield value
        return
    if depth > 8 or id(value) in seen or isinstance(value, (str, bytes, int, float, type)):
        return
    seen.add(id(value))
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    elif hasattr(value, "__dict__"):
        children = list(vars(value).values())
    else:
        children = [getattr(value, s, None) for s in getattr(type(value), "__slots__", ())]
    for child in children:
        yield from _arrays(child, seen, depth + 1)


def _holds_secret(model):
    high = SECRET_START + SECRET_STEP * SECRET_COUNT
    for array in _arrays(model, set()):
        if array.dtype.kind not in "fiuc" or array.size == 0:
            continue
        values = np.abs(np.asarray(array).ravel()).astype("float64")
        hits = (values >= SECRET_START) & (values < high)
        if hits.any() and np.all(np.mod(values[hits] - SECRET_START, SECRET_STEP) == 0):
            return True
    return False


def _weights_are_tame(model):
    for array in _arrays(model, set()):
        if array.dtype.kind == "f" and array.size and not (np.abs(array) < 1e6).all():
            return False
    return True


def _run(job, reflstm):
    kwargs = {}
    # Where reflstm has no Limits yet, the file is loaded without them: what that does is the test.
    if job["limits"] is not None and hasattr(reflstm, "Limits"):
        kwargs["limits"] = reflstm.Limits(**job["limits"])
    try:
        model = reflstm.load(job["path"], **kwargs)
    except reflstm.ReflstmError as error:
        return dict(kind="refused", error_type=type(error).__name__, message=str(error)[:2000])
    except MemoryError as error:
        return dict(kind="memory", error_type="MemoryError", message=str(error)[:500])
    except BaseException as error:  # noqa: BLE001 -- every other type is what we are looking for
        return dict(kind="error", error_type=type(error).__name__, message=str(error)[:500])
    if _holds_secret(model):
        return dict(kind="secret", message="a weight holds a value planted outside the model file")
    if not job["inputs"]:
        return dict(kind="loaded")
    x = [np.load(p) for p in job["inputs"]]
    try:
        outputs = model.predict(x if len(x) > 1 else x[0])
    except reflstm.ReflstmError as error:
        return dict(kind="refused_at_predict", error_type=type(error).__name__, message=str(error)[:2000])
    except MemoryError as error:
        return dict(kind="memory", error_type="MemoryError", message=f"at predict: {error}"[:500])
    except BaseException as error:  # noqa: BLE001
        return dict(kind="error_at_predict", error_type=type(error).__name__, message=str(error)[:500])
    outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]
    if job["save_outputs"]:
        np.savez(job["save_outputs"], *outputs)
    shapes = [list(o.shape) for o in outputs]
    if job["output_shapes"] is not None and shapes != [list(s) for s in job["output_shapes"]]:
        return dict(kind="bad_output", message=f"output shapes {shapes}, expected {job['output_shapes']}")
    if job["batch"] is not None and any(o.ndim == 0 or o.shape[0] != job["batch"] for o in outputs):
        return dict(kind="bad_output", message=f"output shapes {shapes}, expected a batch of {job['batch']}")
    if not all(o.dtype.kind == "f" for o in outputs):
        return dict(kind="bad_output", message=f"non-float output ({[o.dtype.name for o in outputs]})")
    if not all(np.isfinite(o).all() for o in outputs) and _weights_are_tame(model):
        # Non-finite weights (a flipped exponent bit) may honestly give non-finite outputs.
        return dict(kind="bad_output", message="non-finite output from finite weights")
    return dict(kind="loaded")


def _worker(memory):
    import faulthandler
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the results
    import reflstm

    faulthandler.enable()
    for line in sys.stdin:
        job = json.loads(line)
        faulthandler.dump_traceback_later(job["timeout"], exit=False)
        result = _run(job, reflstm)
        faulthandler.cancel_dump_traceback_later()
        results.write(json.dumps(result) + "\n")
        results.flush()


if __name__ == "__main__":
    _worker(int(sys.argv[1]))
