"""Cold start and peak memory.

    python benchmarks/bench_start_memory.py [--repeats 3] [--json benchmarks/start_memory.json]

- Cold start: a saved two-layer model traced by `reflstm trace` in a fresh process, against
  loading the same file with Keras and predicting, in a fresh process: wall time and peak RSS
  (from the kernel's accounting of each child process).
- Peak memory of a trace (tracemalloc, which sees NumPy's allocations) against the size of
  what the trace keeps plus its input, for the default keep (i, f, c~, o, C, h), with the
  pre-activations kept too, and for keep=("h", "c"). What a trace keeps includes the copy of
  its input it holds to recompute pre-activations it did not keep.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np


def child_run(command):
    """(wall seconds, peak RSS in MiB) of `command` in a fresh process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        f"subprocess.run({command!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "wall = time.perf_counter() - start\n"
        "print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, check=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall, rss = out.stdout.split()
    return float(wall), float(rss)


def cold_start(repeats):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    folder = tempfile.mkdtemp()
    model = keras.Sequential([keras.Input((50, 16)), keras.layers.LSTM(64, return_sequences=True),
                              keras.layers.LSTM(64), keras.layers.Dense(1)])
    path, x_path = os.path.join(folder, "model.keras"), os.path.join(folder, "x.npy")
    model.save(path)
    np.save(x_path, np.random.default_rng(0).normal(size=(32, 50, 16)).astype("float32"))
    commands = {
        "reflstm trace": [sys.executable, "-m", "reflstm", "trace", path, "--input", x_path,
                          "--out", os.path.join(folder, "trace.npz")],
        "keras load + predict": [sys.executable, "-c", "import keras, numpy as np; "
                                 f"m = keras.saving.load_model({path!r}); m.predict(np.load({x_path!r}), verbose=0)"],
    }
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(child_run(command))
    return {name: {"wall_s": statistics.median(r[0] for r in rs), "peak_rss_mib": statistics.median(r[1] for r in rs)}
            for name, rs in runs.items()}


KEEPS = {"default": None, "with pre-activations": "all", "h, c": ("h", "c")}


def trace_memory(points=((64, 200, 64, 256), (512, 50, 32, 128)), dtype="float32"):
    import reflstm

    rows = []
    for batch, timesteps, input_dim, units in points:
        rng = np.random.default_rng(0)
        ref = reflstm.LSTM(rng.normal(0, 0.3, (input_dim, 4 * units)).astype(dtype),
                           rng.normal(0, 0.3, (units, 4 * units)).astype(dtype),
                           rng.normal(0, 0.3, 4 * units).astype(dtype))
        x = rng.normal(size=(batch, timesteps, input_dim)).astype(dtype)
        for keep_name, keep in KEEPS.items():
            tracemalloc.start()
            tr = ref.trace(x, keep=ref.QUANTITIES if keep == "all" else keep)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            trace_bytes = kept_bytes(tr)
            rows.append({"point": [batch, timesteps, input_dim, units], "keep": keep_name,
                         "trace_mib": trace_bytes / 2**20, "input_mib": x.nbytes / 2**20,
                         "peak_mib": peak / 2**20,
                         "ratio": (peak + x.nbytes) / (trace_bytes + x.nbytes)})
    return rows


def kept_bytes(trace):
    """Bytes of the arrays a trace holds (each array once, views counted by their base)."""
    arrays = list(trace.held.values()) + ([trace.replay.x] if trace.replay is not None else [])
    bases = {id(a.base if a.base is not None else a): (a.base if a.base is not None else a) for a in arrays}
    return sum(a.nbytes for a in bases.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--memory-only", action="store_true", help="skip the cold start")
    args = parser.parse_args(argv)
    start = {} if args.memory_only else cold_start(args.repeats)
    if start:
        print(f"{'cold start (2-layer model, 32x50x16)':<40} {'wall':>8} {'peak RSS':>10}")
    for name, r in start.items():
        print(f"{name:<40} {r['wall_s']:>7.2f}s {r['peak_rss_mib']:>7.0f}MiB")
    memory = trace_memory()
    print(f"{'trace memory (batch,T,in,units)':<24} {'keep':<22} {'kept':>8} {'peak':>8} "
          f"{'(peak+input)/(kept+input)':>27}")
    for r in memory:
        print(f"{','.join(map(str, r['point'])):<24} {r['keep']:<22} {r['trace_mib']:>6.0f}MiB "
              f"{r['peak_mib']:>6.0f}MiB {r['ratio']:>27.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cold_start": start, "trace_memory": memory}, f, indent=1)


if __name__ == "__main__":
    main()
