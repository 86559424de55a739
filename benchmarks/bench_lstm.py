"""Speed of reflstm's LSTM against Keras, PyTorch and the bare matrix products, in one run.

    python benchmarks/bench_lstm.py [--repeats 7] [--dtype float32] [--json benchmarks/results.json]
    python benchmarks/bench_lstm.py --quick          # a tiny smoke run (the test suite runs it)

For each grid point (batch, timesteps, input_dim, units) it times, interleaved so that machine
drift hits every method alike (the order rotated every repeat), and reports medians and ratios
to the NumPy lower bound:

- trace:    reflstm's full trace of every step: i, f, c~, o, C, h (the default keep; the
            pre-activations are recomputed only when asked for)
- trace+z:  the trace with the pre-activation parts kept too (keep=LSTM.QUANTITIES)
- trace_hc: the trace of h and C only (keep=("h", "c"))
- outputs:  reflstm's outputs only (return_sequences=True)
- keras:    Keras 3 `predict` of the same layer (h only), when Keras is installed
- torch:    torch nn.LSTM on the CPU (h only), when torch is installed
- matmul:   the lower bound: the input projection as one product, then one recurrent product
            per step, done alone in NumPy
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

GRID = [(32, 100, 32, 64), (64, 200, 64, 256), (1, 1000, 16, 128), (512, 50, 32, 128)]
QUICK_GRID = [(4, 10, 3, 8)]


def weights(rng, input_dim, units, dtype):
    return [rng.normal(0, 0.3, s).astype(dtype) for s in ((input_dim, 4 * units), (units, 4 * units), (4 * units,))]


def methods(point, dtype, rng, with_frameworks):
    """{name: zero-argument callable} for one grid point."""
    import reflstm

    batch, timesteps, input_dim, units = point
    kernel, recurrent, bias = weights(rng, input_dim, units, dtype)
    x = rng.normal(size=(batch, timesteps, input_dim)).astype(dtype)
    ref = reflstm.LSTM(kernel, recurrent, bias, return_sequences=True)
    h = rng.normal(size=(batch, units)).astype(dtype)

    def matmul_bound():
        x.reshape(-1, input_dim) @ kernel
        for _ in range(timesteps):
            h @ recurrent

    table = {"trace": lambda: ref.trace(x), "trace+z": lambda: ref.trace(x, keep=ref.QUANTITIES),
             "trace_hc": lambda: ref.trace(x, keep=("h", "c")), "outputs": lambda: ref(x),
             "matmul": matmul_bound}
    if with_frameworks:
        table.update(_keras(kernel, recurrent, bias, x, dtype))
        table.update(_torch(kernel, recurrent, bias, x, dtype))
    return table


def _keras(kernel, recurrent, bias, x, dtype):
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError:
        return {}
    model = keras.Sequential([keras.Input(x.shape[1:], dtype=dtype),
                              keras.layers.LSTM(kernel.shape[1] // 4, return_sequences=True, dtype=dtype)])
    model.set_weights([kernel, recurrent, bias])
    model.predict(x, batch_size=len(x), verbose=0)  # build and trace the graph once
    return {"keras": lambda: model.predict(x, batch_size=len(x), verbose=0)}


def _torch(kernel, recurrent, bias, x, dtype):
    try:
        import torch
    except ImportError:
        return {}
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    module = torch.nn.LSTM(kernel.shape[0], kernel.shape[1] // 4, batch_first=True, dtype=torch_dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias))
        module.bias_hh_l0.zero_()
    x_t = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            module(x_t)

    return {"torch": run}


def measure(grid, repeats, dtype, with_frameworks, seed=0):
    rng = np.random.default_rng(seed)
    results = []
    for point in grid:
        table = methods(point, dtype, rng, with_frameworks)
        times = {name: [] for name in table}
        names = list(table)
        for repeat in range(repeats):
            # Interleaved: each repeat runs every method once, in an order rotated every repeat,
            # so that no method always runs right after the same other one (torch's and
            # TensorFlow's worker threads stay busy for a moment after their calls).
            for name in names[repeat % len(names):] + names[: repeat % len(names)]:
                start = time.perf_counter()
                table[name]()
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        results.append({"point": point, "dtype": dtype, "median_s": medians,
                        "ratio_to_matmul": {n: m / medians["matmul"] for n, m in medians.items()}})
    return results


def print_table(results):
    names = ["trace", "trace+z", "trace_hc", "outputs", "keras", "torch", "matmul"]
    print(f"{'batch,T,in,units':<20} " + " ".join(f"{n:>14}" for n in names))
    for r in results:
        cells = []
        for n in names:
            if n in r["median_s"]:
                cells.append(f"{r['median_s'][n] * 1e3:7.1f}ms {r['ratio_to_matmul'][n]:4.1f}x")
            else:
                cells.append(f"{'-':>14}")
        print(f"{','.join(map(str, r['point'])):<20} " + " ".join(f"{c:>14}" for c in cells))
    print("(median wall time; ratio to the NumPy matmul lower bound measured in the same run)")
    for r in results:
        if "keras" in r["median_s"]:
            ratios = ", ".join(f"{n} {r['median_s'][n] / r['median_s']['keras']:.2f}"
                               for n in ("trace", "trace+z", "trace_hc", "outputs"))
            print(f"{','.join(map(str, r['point']))}: / keras predict: {ratios}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="a tiny grid, 2 repeats, no frameworks")
    args = parser.parse_args(argv)
    grid = QUICK_GRID if args.quick else GRID
    repeats = 2 if args.quick else args.repeats
    results = measure(grid, repeats, args.dtype, with_frameworks=not args.quick)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}")
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "cores": os.cpu_count(), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
