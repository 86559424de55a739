"""reflstm.report: the data the HTML page ships equals the trace (and Keras's layers), sizes are
bounded, bad arguments are refused. The page itself is tested in a browser in test_report_browser."""

import base64
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import reflstm
from keras_layers import call_keras, make_layer
from reflstm.analysis.explain import step_numbers
from reflstm.explorer.png import encode_png
from saved_models import build_model, model_inputs

FLOAT64 = 1e-12


def decode(encoded):
    """A shipped array, read back from its base64 bytes."""
    dtype = {"f8": "<f8", "f4": "<f4", "u1": "u1"}[encoded["dtype"]]
    return np.frombuffer(base64.b64decode(encoded["b64"]), dtype).reshape(encoded["shape"])


def shipped(report):
    """The report's data as the page's script reads it: parsed from the HTML itself."""
    page = report.html()
    start = page.index('class="reflstm-data">') + len('class="reflstm-data">')
    return json.loads(page[start : page.index("</script>", start)].replace("<\\/", "</"))


def panels(data):
    return {p["title"]: p for layer in data["layers"] for p in layer["panels"]}


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_shipped_h_equals_the_keras_layer(keras_version):
    """A report of a layer made from a real Keras LSTM ships h_t equal to what Keras returns."""
    keras_layer = make_layer(keras_version, 3, 5, return_sequences=True)
    x = np.random.default_rng(2).normal(size=(2, 7, 3))
    expected = call_keras(keras_layer, x)  # (batch, timesteps, units)
    data = shipped(reflstm.report(reflstm.LSTM.from_keras(keras_layer), x, sample=1))
    (p,) = panels(data).values()
    np.testing.assert_allclose(decode(p["states"]["h_t"]), expected[1], rtol=0, atol=FLOAT64)


@pytest.mark.parametrize("kind, options", [
    ("LSTM", {}), ("GRU", {"reset_after": True}), ("GRU", {"reset_after": False}), ("SimpleRNN", {}),
], ids=["lstm", "gru_reset_after", "gru_reset_before", "simple_rnn"])
def test_every_shipped_number_is_the_step_tables(kind, options):
    """Every array shipped (gates' parts and values, states) is step_numbers', as explain prints them."""
    layer = getattr(reflstm, kind).from_keras(make_layer(3, 3, 4, kind=kind, go_backwards=True, **options))
    x = np.random.default_rng(3).normal(size=(2, 6, 3))
    mask = np.ones((2, 6), bool)
    mask[1, 2] = False
    data = shipped(reflstm.report(layer, x, sample=1, mask=mask))
    (p,) = panels(data).values()
    gates, states = step_numbers(layer.trace(x, mask=mask), 1)
    assert p["go_backwards"] is True and p["kind"] == kind
    for gate, columns in gates.items():
        assert set(p["gates"][gate]) == set(columns)
        for column, values in columns.items():
            assert np.array_equal(decode(p["gates"][gate][column]), values), (gate, column)
    for name, values in states.items():
        assert np.array_equal(decode(p["states"][name]), values), name
    assert decode(p["mask"]).tolist() == [1, 1, 0, 1, 1, 1][::-1]  # processing order


def test_png_encoder_reads_back_with_another_decoder():
    """encode_png's file decodes (matplotlib's reader) to the very pixels given."""
    from matplotlib import image

    rgb = np.random.default_rng(4).integers(0, 256, (7, 11, 3)).astype(np.uint8)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"reflstm-png-{os.getpid()}.png")
    with open(path, "wb") as file:
        file.write(encode_png(rgb))
    try:
        read = image.imread(path)
    finally:
        os.remove(path)
    assert np.array_equal(np.round(read[..., :3] * 255).astype(np.uint8), rgb)


def test_heatmap_pixels_are_the_values_colours():
    """Each heatmap pixel (step x, unit y) is its value's colour: 0 is white on the diverging scale."""
    layer = reflstm.SimpleRNN.from_keras(make_layer(3, 3, 4, kind="SimpleRNN"))
    x = np.zeros((1, 5, 3))
    data = shipped(reflstm.report(layer, x))
    heatmap = panels(data)["SimpleRNN"]["heatmaps"][0]
    png = base64.b64decode(heatmap["png"])
    width, height = np.frombuffer(png[16:24], ">u4")
    assert (width, height) == (5, 4)
    start = png.index(b"IDAT") + 4
    rows = np.frombuffer(zlib.decompress(png[start : start + int.from_bytes(png[start - 8 : start - 4], "big")]),
                         np.uint8).reshape(4, 1 + 15)
    h = layer.trace(x).h[0]  # (timesteps, units)
    top = np.percentile(np.abs(h), 99.5)
    white = np.isclose(h, 0, atol=top / 1000)
    assert (rows[:, 1:].reshape(4, 5, 3)[white.T] == 247).all()  # DIVERGING's middle stop
    assert heatmap["scale"] == ["diverging", -top, top]


def test_model_layers_bidirectional_go_backwards_and_attribution():
    """A model's every recurrent layer is shown; a Bidirectional's directions side by side, the
    backward one labelled go_backwards; attribution and half-lives are reflstm's own."""
    keras_model = build_model("gru_family", 3, dtype="float64")
    model = reflstm.Model.from_keras(keras_model)
    x = model_inputs(keras_model).astype(np.float64)
    data = shipped(reflstm.report(model, x, sample=2, attribute=True))
    assert [layer["name"] for layer in data["layers"]] == list(model.recurrent_layers)
    shown = panels(data)
    assert shown["gru_before"]["go_backwards"] is True and shown["gru"]["go_backwards"] is False
    assert [h["label"] for h in shown["gru"]["heatmaps"]] == ["z", "r", "h~", "h_t"]
    assert [h["label"] for h in shown["lstm"]["heatmaps"]] == ["i", "f", "c~", "o", "C_t", "h_t"]
    expected = reflstm.attribute(model, x[2:3]).values[0].sum(axis=1)
    np.testing.assert_array_equal(decode(shown["gru"]["attribution"]), expected)
    np.testing.assert_array_equal(decode(shown["gru_before"]["attribution"]), expected[::-1])
    np.testing.assert_array_equal(decode(shown["lstm"]["half_life"]),
                                  reflstm.memory_horizon(model, x[2:3], layer="lstm").half_life())
    assert shown["simple"]["half_life"] is None and "SimpleRNN" in shown["simple"]["half_life_note"]
    assert "summed over input features" in data["attribution_what"]
    assert [row[0] for row in data["summary"]] == [row[0] for row in model.summary_rows()]

    bi = reflstm.Model.from_keras(build_model("bidirectional_concat", 2, dtype="float64"))
    data = shipped(reflstm.report(bi, x[:, :, :3]))
    (layer,) = data["layers"]
    assert layer["kind"] == "Bidirectional(LSTM)"
    assert [(p["title"], p["go_backwards"]) for p in layer["panels"]] == [("bi (forward)", False), ("bi (backward)", True)]
    trace = bi.trace(x[:, :, :3])["bi"]
    np.testing.assert_array_equal(decode(layer["panels"][1]["states"]["h_t"]), trace.backward.h[0])


def test_tokens_from_a_vocabulary():
    """A model reading ids shows each step's token, in processing order."""
    keras_model = build_model("embedding", 3)
    model = reflstm.Model.from_keras(keras_model)
    ids = model_inputs(keras_model)
    vocabulary = [f"w{k}" for k in range(12)]
    data = shipped(reflstm.report(model, ids, sample=1, vocabulary=vocabulary))
    assert panels(data)["reader"]["input"]["tokens"] == [f"w{i}" for i in ids[1]]


def test_a_large_layer_stays_bounded_and_says_what_it_left_out():
    """1,000 steps x 512 units: a file of bounded size, exact numbers for a window, said on the page."""
    rng = np.random.default_rng(5)
    units = 512
    layer = reflstm.LSTM(*(w.astype(np.float32) for w in (
        rng.normal(0, 0.3, (8, 4 * units)), rng.normal(0, 0.05, (units, 4 * units)), rng.normal(0, 0.5, 4 * units))),
        return_sequences=True)
    x = rng.normal(size=(1, 1000, 8)).astype(np.float32)
    rep = reflstm.report(layer, x)
    page = rep.html()
    (p,) = rep.panels
    assert p.shipped_values() <= reflstm.explorer.panels.MAX_VALUES
    assert p.window[0] == 0 and 0 < p.window[1] < 1000
    assert len(page) < 25_000_000
    assert f"exact numbers shipped for steps 0..{p.window[1] - 1} of 1000" in page


@pytest.mark.parametrize("call, argument", [
    (lambda layer, x: reflstm.report(layer, x, sample=5), "sample"),
    (lambda layer, x: reflstm.report(layer, x, layer="encoder"), "layer"),
    (lambda layer, x: reflstm.report(layer, x, max_values=0), "max_values"),
    (lambda layer, x: reflstm.report(layer, x, exact_steps=(3, 1)), "exact_steps"),
    (lambda layer, x: reflstm.report(layer, x, max_values=100, exact_steps=(0, 6)), "exact_steps"),
    (lambda layer, x: reflstm.report(layer, x, vocabulary=["a"]), "vocabulary"),
    (lambda layer, x: reflstm.report("model.keras", x), "target"),
], ids=["sample", "layer_of_a_layer", "max_values", "exact_steps_order", "exact_steps_budget",
        "vocabulary_without_ids", "target"])
def test_refusals_name_the_argument(call, argument):
    """Bad arguments are refused with the argument's name, what was expected and what was received."""
    layer = reflstm.LSTM.from_keras(make_layer(3, 3, 4))
    with pytest.raises(reflstm.ReflstmError, match=f"^{argument}: expected .*, received"):
        call(layer, np.zeros((2, 6, 3)))


def test_model_refusals():
    """A Model: an unknown layer name, a mask, too short a vocabulary are refused by name."""
    keras_model = build_model("embedding", 3)
    model = reflstm.Model.from_keras(keras_model)
    ids = model_inputs(keras_model)
    for kwargs, argument in [({"layer": "nope"}, "layer"), ({"mask": np.ones((4, 6), bool)}, "mask"),
                             ({"vocabulary": ["a", "b"]}, "vocabulary")]:
        with pytest.raises(reflstm.ReflstmError, match=f"^{argument}: expected"):
            reflstm.report(model, ids, **kwargs)


DISPLAY = """
import sys, numpy as np, reflstm
model = reflstm.load(sys.argv[1])
x = np.load(sys.argv[2])
pages = [t._repr_html_() for t in model.trace(x).values()]
pages.append(reflstm.report(model, x, attribute=True)._repr_html_())
layer = model.layer("bi").forward
pages.append(layer.trace(x)._repr_html_())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "torch", "jax", "onnx"))
print(len(pages), all("reflstm-report" in p for p in pages), heavy)
"""


def test_display_imports_no_framework(tmp_path):
    """Displaying traces (Bidirectional included) and a report imports no Keras, TensorFlow or torch."""
    keras_model = build_model("bidirectional_concat", 3)
    keras_model.save(tmp_path / "bi.keras")
    np.save(tmp_path / "x.npy", model_inputs(keras_model))
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(reflstm.__file__)))}
    out = subprocess.run([sys.executable, "-c", DISPLAY, str(tmp_path / "bi.keras"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "3 True []"
