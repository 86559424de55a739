"""Size and render time of the HTML report (`reflstm report`), in one run.

    python benchmarks/bench_report.py [--repeats 3] [--json benchmarks/report.json]
    python benchmarks/bench_report.py --quick        # one small point, one repeat

For each (timesteps, units) of one LSTM layer on one sample, float32 and float64, it measures:

- trace:   reflstm's trace of the sample (the baseline the report's own work is compared with)
- build:   reflstm.report(layer, x).html(): panels, heatmap PNGs, exact values, the page
- size:    the page in MB, and against the trace's six quantities as float32 .npy bytes
- render:  headless chromium (Debian's, through chromedriver) from navigation start until every
           heatmap is drawn (the page's data-ready flag), against an empty page in the same run

Medians over interleaved repeats. Needs selenium and /usr/bin/chromium, /usr/bin/chromedriver
for the render column (left out, with a note, without them).
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

GRID = [(100, 64), (1000, 128), (1000, 512)]
QUICK_GRID = [(20, 8)]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser():
    """A headless chromium, or None when it or selenium is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="reflstm-bench-chromium-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=1300,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.profile = profile
    return driver


def render_seconds(driver, path):
    """Seconds from navigation start until every report on the page says it has drawn."""
    driver.get("about:blank")
    driver.get(path.as_uri())
    while True:
        state = driver.execute_script(
            "const r = [...document.querySelectorAll('.reflstm-report')].map(e => e.dataset.ready || '');"
            "return [r, performance.now()];")
        ready, now_ms = state
        if all(ready):  # an empty page (no report) is ready at once
            if "error" in ready:
                raise RuntimeError(f"{path}: the report failed to draw")
            return now_ms / 1000
        time.sleep(0.01)


def measure(grid, repeats, seed=0):
    import reflstm

    rng = np.random.default_rng(seed)
    driver = browser()
    results = []
    folder = tempfile.mkdtemp(prefix="reflstm-bench-report-")
    blank = __import__("pathlib").Path(folder) / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    try:
        for timesteps, units in grid:
            for dtype in ("float32", "float64"):
                input_dim = 16
                layer = reflstm.LSTM(rng.normal(0, 0.3, (input_dim, 4 * units)).astype(dtype),
                                     rng.normal(0, 0.3 / np.sqrt(units), (units, 4 * units)).astype(dtype),
                                     rng.normal(0, 0.3, 4 * units).astype(dtype), return_sequences=True)
                x = rng.normal(size=(1, timesteps, input_dim)).astype(dtype)
                path = __import__("pathlib").Path(folder) / f"report_{timesteps}_{units}_{dtype}.html"
                times = {"trace": [], "build": [], "render": [], "blank": []}
                for _ in range(repeats):
                    start = time.perf_counter()
                    layer.trace(x)
                    times["trace"].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    page = reflstm.report(layer, x).html()
                    times["build"].append(time.perf_counter() - start)
                    path.write_text(page, encoding="utf-8")
                    if driver is not None:
                        times["render"].append(render_seconds(driver, path))
                        times["blank"].append(render_seconds(driver, blank))
                size = path.stat().st_size
                medians = {k: statistics.median(v) for k, v in times.items() if v}
                results.append({
                    "timesteps": timesteps, "units": units, "dtype": dtype, "median_s": medians,
                    "size_mb": size / 1e6, "size_to_trace_npy": size / (6 * timesteps * units * 4),
                })
    finally:
        if driver is not None:
            driver.quit()
            shutil.rmtree(driver.profile, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def print_table(results):
    print(f"{'T x units':<12} {'dtype':<8} {'trace':>8} {'build':>8} {'size':>9} {'size/npy':>9} "
          f"{'render':>8} {'blank':>7}")
    for r in results:
        m = r["median_s"]
        render = f"{m['render']:7.2f}s" if "render" in m else f"{'-':>8}"
        blank = f"{m['blank']:6.2f}s" if "blank" in m else f"{'-':>7}"
        print(f"{r['timesteps']}x{r['units']:<8} {r['dtype']:<8} {m['trace']:7.2f}s {m['build']:7.2f}s "
              f"{r['size_mb']:7.1f}MB {r['size_to_trace_npy']:8.2f}x {render} {blank}")
    print("(medians; size/npy: the page against the six quantities as float32 .npy; render: chromium "
          "from navigation start until every heatmap is drawn; blank: an empty page, same browser)")
    if not any("render" in r["median_s"] for r in results):
        print("(render left out: needs selenium and Debian's chromium + chromium-driver)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="one small point, one repeat")
    args = parser.parse_args(argv)
    results = measure(QUICK_GRID if args.quick else GRID, 1 if args.quick else args.repeats)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": os.cpu_count(), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
