"""A tiny run of the benchmark scripts, so that they cannot rot (timings are not asserted)."""

import importlib.util
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_smoke(capsys):
    """bench_lstm --quick runs every reflstm method and the matmul bound and prints the table."""
    results = load("bench_lstm").main(["--quick"])
    assert {"trace", "outputs", "matmul"} <= set(results[0]["median_s"])
    assert "ratio to the NumPy matmul lower bound" in capsys.readouterr().out


def test_trace_memory_smoke():
    """The memory measurement runs and sees a trace at least as large as its arrays."""
    rows = load("bench_start_memory").trace_memory(points=((2, 5, 3, 4),))
    assert rows[0]["peak_mib"] >= rows[0]["trace_mib"] * 0.99


def test_report_benchmark_smoke(capsys):
    """bench_report --quick builds a report and (with chromium) times its drawing; nothing asserted on time."""
    results = load("bench_report").main(["--quick"])
    assert {"trace", "build"} <= set(results[0]["median_s"]) and results[0]["size_mb"] > 0
    assert "size/npy" in capsys.readouterr().out


def test_dask_benchmark_smoke(capsys):
    """bench_dask --quick traces a small zarr store with 1 and 2 worker processes and 2 threads."""
    results = load("bench_dask").main(["--quick"])
    assert set(results["median_s"]) == {"1 process", "2 processes", "2 threads"}
    assert results["bytes_per_sequence"] == 20 * (8 * 6 + 4) * 4
    assert "scaling, 1 process / 2 processes" in capsys.readouterr().out
