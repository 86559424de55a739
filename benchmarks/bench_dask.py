"""reflstm.dask scaling: a trace written to zarr by 1 and by 2 worker processes.

    python benchmarks/bench_dask.py [--repeats 3] [--quick] [--json benchmarks/dask_scaling.json]

An LSTM (64 units, float32, random weights distinct per gate, non-zero bias) traces 2048
sequences of 200 steps of 32 features, read from a zarr store in chunks of 128 sequences, and
writes all six quantities to a fresh zarr store in a temporary folder, as `reflstm trace
--input X.zarr --out T.zarr` does. Each configuration (a dask.distributed LocalCluster of 1
or 2 single-threaded worker processes; and, for comparison, 2 local threads) runs in turn,
repeat after repeat (interleaved) after one untimed warm-up run each, and the table gives the median wall time of each, the
throughput, and the scaling ratio (1 worker's median / 2 workers' median; 2.0 is perfect).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

SIZES = {"batch": 2048, "timesteps": 200, "features": 32, "units": 64, "chunk": 128}
QUICK = {"batch": 64, "timesteps": 20, "features": 4, "units": 8, "chunk": 16}
QUANTITIES = 6  # an LSTM's i, f, c_tilde, o, c, h


def lstm(features, units, seed=0):
    """A float32 reflstm.LSTM with every gate's weights drawn apart and a non-zero bias."""
    import reflstm

    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 0.3, (features, 4 * units)).astype(np.float32)  # (input_dim, 4 * units)
    recurrent = rng.normal(0, 0.3, (units, 4 * units)).astype(np.float32)  # (units, 4 * units)
    bias = rng.uniform(-1, 1, 4 * units).astype(np.float32)  # (4 * units,)
    return reflstm.LSTM(kernel, recurrent, bias, return_sequences=True)


def bytes_per_sequence(sizes, itemsize=4):
    """What one sequence costs in storage: its trace (timesteps × units × quantities × itemsize)
    plus its input (timesteps × features × itemsize)."""
    return sizes["timesteps"] * (sizes["units"] * QUANTITIES + sizes["features"]) * itemsize


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (a smoke run)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else SIZES
    repeats = 1 if args.quick else args.repeats

    import dask
    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster

    import reflstm.dask as rd

    layer = lstm(sizes["features"], sizes["units"])
    times = {"1 process": [], "2 processes": [], "2 threads": []}
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as folder:
        rng = np.random.default_rng(1)
        shape = (sizes["batch"], sizes["timesteps"], sizes["features"])
        source = zarr.create_array(os.path.join(folder, "X.zarr"), shape=shape, dtype="float32",
                                   chunks=(sizes["chunk"],) + shape[1:])
        source[:] = rng.normal(0, 1, shape).astype(np.float32)  # (batch, timesteps, features)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as one, \
             LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as two, \
             Client(one, set_as_default=False) as client_one, Client(two, set_as_default=False) as client_two:
            runs = {"1 process": client_one.as_current, "2 processes": client_two.as_current,
                    "2 threads": lambda: dask.config.set(scheduler="threads", num_workers=2)}
            for repeat in range(-1, repeats):  # repeat -1 warms each up (workers import, model shipped)
                for label, scheduler in runs.items():
                    out = os.path.join(folder, f"T-{repeat + 1}-{label.replace(' ', '-')}.zarr")
                    with scheduler():
                        start = time.perf_counter()
                        rd.to_zarr(rd.trace(layer, da.from_zarr(source)), out)
                        if repeat >= 0:
                            times[label].append(time.perf_counter() - start)
                    shutil.rmtree(out)
    medians = {label: statistics.median(t) for label, t in times.items()}
    written = sizes["batch"] * bytes_per_sequence(sizes)
    print(f"reflstm.dask: LSTM {sizes['units']} units, float32, {sizes['batch']} sequences x "
          f"{sizes['timesteps']} steps x {sizes['features']} features, chunks of {sizes['chunk']}; "
          f"{bytes_per_sequence(sizes):,} bytes per sequence (trace + input), "
          f"{written / 2**20:,.0f} MiB in all; median of {repeats}, interleaved")
    print(f"{'scheduler':<14} {'median s':>9} {'sequences/s':>12}  runs (s)")
    for label, median in medians.items():
        print(f"{label:<14} {median:>9.2f} {sizes['batch'] / median:>12,.0f}  "
              + ", ".join(f"{t:.2f}" for t in times[label]))
    ratio = medians["1 process"] / medians["2 processes"]
    print(f"scaling, 1 process / 2 processes: {ratio:.2f}x (2.00 is perfect); cores here: {os.cpu_count()}")
    results = {"sizes": sizes, "bytes_per_sequence": bytes_per_sequence(sizes), "times_s": times,
               "median_s": medians, "scaling_1_to_2_processes": ratio, "cpu_count": os.cpu_count()}
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
