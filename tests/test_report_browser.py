"""The report in a real browser: Debian's chromium, driven through chromedriver with selenium.

One headless browser serves the module. Each page must log no console error and make no network
request besides the file itself; every heatmap must be drawn; the value under the pointer and the
step selector's arithmetic must be the trace's and `reflstm explain`'s.
"""

import json
import os
import shutil
import tempfile
import time

import numpy as np
import pytest

import reflstm
from keras_layers import make_layer
from reflstm.analysis.explain import step_table
from saved_models import build_model, model_inputs

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver; "
                ".ci/run installs them)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install 'reflstm[test]')")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="reflstm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=1300,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The pages and the traces they show: a model (Bidirectional, masked, with attribution), a
    GRU family (both reset modes, go_backwards, SimpleRNN), and two notebook views in one page."""
    root = tmp_path_factory.mktemp("report")
    found = {}
    bi_keras = build_model("bidirectional_concat", 3, dtype="float64")
    bi = reflstm.Model.from_keras(bi_keras)
    x = model_inputs(bi_keras).astype(np.float64)
    reflstm.report(bi, x, sample=2, attribute=True).save(root / "bi.html")
    found["bi"] = (root / "bi.html", {f"bi ({d})": getattr(bi.trace(x)["bi"], d) for d in ("forward", "backward")}, 2)
    gru_keras = build_model("gru_family", 3, dtype="float64")
    family = reflstm.Model.from_keras(gru_keras)
    xg = model_inputs(gru_keras).astype(np.float64)
    reflstm.report(family, xg, sample=1).save(root / "family.html")
    found["family"] = (root / "family.html", family.trace(xg), 1)
    lstm = reflstm.LSTM.from_keras(make_layer(3, 3, 4, return_sequences=True))
    gru = reflstm.GRU.from_keras(make_layer(3, 3, 5, kind="GRU"))
    xs = np.random.default_rng(6).normal(size=(2, 7, 3))
    traces = {"first": lstm.trace(xs), "second": gru.trace(xs), "bi": bi.trace(x)["bi"]}
    body = "".join(f"<h1>cell {name}</h1>{trace._repr_html_()}" for name, trace in traces.items())
    (root / "notebook.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    found["notebook"] = (root / "notebook.html", traces, 0)
    return found


def open_page(browser, path):
    """Load `path`, wait until every report has drawn, and return (console entries, requested URLs)."""
    browser.get("about:blank")
    browser.get_log("browser"), browser.get_log("performance")  # drop what came before
    browser.get(path.as_uri())
    for _ in range(400):
        ready = browser.execute_script("return [...document.querySelectorAll('.reflstm-report')].map(r => r.dataset.ready || '')")
        if ready and all(ready):
            break
        time.sleep(0.05)
    assert ready and all(state == "1" for state in ready), ready
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    return browser.get_log("browser"), requests


def report_roots(browser):
    return browser.find_elements("css selector", ".reflstm-report")


def panel_of(root, title):
    return root.find_element("css selector", f".panel[data-title='{title}']")


@pytest.mark.parametrize("page", ["bi", "family", "notebook"])
def test_no_console_error_no_request_every_heatmap_drawn(browser, pages, page):
    """No console message at error level, no request but the file, every layer's quantities drawn."""
    path, traces, _ = pages[page]
    console, requests = open_page(browser, path)
    assert [entry for entry in console if entry["level"] in ("SEVERE", "WARNING")] == []
    assert requests == [path.as_uri()]
    kinds = {"Trace": 6, "GRUTrace": 4, "SimpleRNNTrace": 1, "BidirectionalTrace": 12}
    expected = sum(kinds[type(t).__name__] for t in traces.values())
    drawn = browser.execute_script("""
        return [...document.querySelectorAll('canvas.heat:not([data-quantity=input])')].map(c => {
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const colours = new Set();
          for (let k = 0; k < d.length; k += 4) colours.add(d[k] * 65536 + d[k + 1] * 256 + d[k + 2]);
          return [c.dataset.panel, c.dataset.quantity, c.width, colours.size];
        });""")
    assert len(drawn) == expected
    assert all(width > 0 and colours > 1 for _, _, width, colours in drawn), drawn


def point_at(browser, canvas, t, unit, timesteps, units):
    from selenium.webdriver import ActionChains

    box = canvas.rect
    dx = (t + 0.5) / timesteps * box["width"] - box["width"] / 2
    dy = (unit + 0.5) / units * box["height"] - box["height"] / 2
    ActionChains(browser).move_to_element_with_offset(canvas, int(round(dx)), int(round(dy))).perform()


@pytest.mark.parametrize("page, title, quantity, field, t, unit", [
    ("bi", "bi (backward)", "C_t", "c", 4, 2),
    ("bi", "bi (forward)", "f", "f", 1, 0),
    ("family", "gru_before", "h~", "h_tilde", 3, 1),
    ("family", "simple", "h_t", "h", 5, 3),
], ids=["bi_backward_C", "bi_forward_f", "gru_go_backwards_candidate", "simple_rnn_h"])
def test_the_value_under_the_pointer_is_the_traces(browser, pages, page, title, quantity, field, t, unit):
    """Pointing at cell (step, unit) of a heatmap shows that cell's exact trace value."""
    path, traces, sample = pages[page]
    open_page(browser, path)
    trace = traces[title]
    timesteps, units = trace.h.shape[1:]
    canvas = panel_of(report_roots(browser)[0], title).find_element(
        "css selector", f"canvas.heat[data-quantity='{quantity}']")
    point_at(browser, canvas, t, unit, timesteps, units)
    readout = panel_of(report_roots(browser)[0], title).find_element("css selector", ".readout")
    assert f"step {t}" in readout.text and f"unit {unit}" in readout.text
    value = float(readout.find_element("css selector", ".value").text)
    assert value == getattr(trace, field)[sample, t, unit]


def set_number(browser, element, value):
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                           element, str(value))


def table_for_unit(trace, sample, t, unit):
    """explain's table of step t, cut to its header and the rows of `unit` (and any note after)."""
    lines = step_table(trace, sample, t).split("\n")
    body_start = 3 if lines[0].startswith("(pre") else 2
    per_unit = {"Trace": 6, "GRUTrace": 4, "SimpleRNNTrace": 1}[type(trace).__name__]
    rows = lines[body_start + unit * per_unit : body_start + (unit + 1) * per_unit]
    notes = [line for line in lines[body_start + trace.units * per_unit :] if line.startswith("(step masked")]
    return "\n".join(lines[:body_start] + rows + notes)


@pytest.mark.parametrize("page, title, t, unit", [
    ("bi", "bi (backward)", 0, 2),
    ("bi", "bi (backward)", 3, 1),  # sample 2 has a hole at input step 2, processing step 3: masked
    ("family", "gru", 2, 4),
    ("family", "gru_before", 5, 0),
    ("family", "simple", 1, 2),
    ("family", "lstm", 4, 1),
])
def test_the_step_selector_shows_explains_numbers(browser, pages, page, title, t, unit):
    """Choosing a step and a unit shows exactly the rows `reflstm explain` prints for them."""
    path, traces, sample = pages[page]
    open_page(browser, path)
    panel = panel_of(report_roots(browser)[0], title)
    set_number(browser, panel.find_element("css selector", "input.step"), t)
    set_number(browser, panel.find_element("css selector", "input.unit"), unit)
    shown = panel.find_element("css selector", "pre.arith").get_attribute("textContent")
    assert shown == table_for_unit(traces[title], sample, t, unit)


def test_two_notebook_views_do_not_interfere(browser, pages):
    """Notebook views in one page (a Trace, a GRUTrace, then a BidirectionalTrace) each draw,
    point and select within their own root."""
    path, traces, _ = pages["notebook"]
    open_page(browser, path)
    first, second, bi = report_roots(browser)
    assert [p.get_attribute("data-title") for p in bi.find_elements("css selector", ".panel")] == ["forward", "backward"]
    for root, trace in zip((first, second), traces.values()):
        panel = root.find_element("css selector", ".panel")
        set_number(browser, panel.find_element("css selector", "input.step"), 5)
        set_number(browser, panel.find_element("css selector", "input.unit"), 3)
        assert panel.find_element("css selector", "pre.arith").get_attribute("textContent") == table_for_unit(trace, 0, 5, 3)
        canvas = panel.find_element("css selector", "canvas.heat[data-quantity='h_t']")
        point_at(browser, canvas, 6, 2, 7, trace.units)
        assert float(panel.find_element("css selector", ".readout .value").text) == trace.h[0, 6, 2]
    assert first.find_element("css selector", "input.unit").get_attribute("value") == "3"
    assert "z" not in [h.get_attribute("data-quantity") for h in first.find_elements("css selector", "canvas.heat")]


def test_most_active_units_rank_by_mean_absolute_h(browser, pages):
    """The most-active list ranks units by mean |h_t| over the chosen steps."""
    path, traces, sample = pages["family"]
    open_page(browser, path)
    panel = panel_of(report_roots(browser)[0], "lstm")
    set_number(browser, panel.find_element("css selector", "input.from"), 1)
    to = panel.find_element("css selector", "input.to")
    browser.execute_script("arguments[0].value = 4; arguments[0].dispatchEvent(new Event('change'));", to)
    ranked = [int(b.get_attribute("data-unit")) for b in panel.find_elements("css selector", ".ranked button")]
    means = np.abs(traces["lstm"].h[sample, 1:5]).mean(axis=0)
    assert ranked == sorted(range(len(means)), key=lambda u: (-means[u], u))
