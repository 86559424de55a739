"""reflstm.explorer.figure: one panel of a trace to PNG and SVG, its pixels following the values."""

import io
import re
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import reflstm
from reflstm.models.layers import BidirectionalTrace
from reflstm.explorer.figure import panel_figure, save_panel

pytest.importorskip("matplotlib", reason="figures need matplotlib (the plot extra)")

BATCH, TIMESTEPS, FEATURES, UNITS = 2, 12, 3, 6
DPI = 100
SVG = "{http://www.w3.org/2000/svg}"


def _lstm(seed=0, **options):
    """An LSTM with distinct weights per gate and a non-zero bias."""
    rng = np.random.default_rng(seed)
    return reflstm.LSTM(rng.normal(0, 0.6, (FEATURES, 4 * UNITS)), rng.normal(0, 0.6, (UNITS, 4 * UNITS)),
                        rng.uniform(-1, 1, 4 * UNITS) + np.repeat([0.25, 1.0, -0.25, 0.5], UNITS),
                        return_sequences=True, **options)


def _x(seed=1):
    return np.random.default_rng(seed).normal(0, 1, (BATCH, TIMESTEPS, FEATURES))


def _read_png(path):
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]  # (height, width, 3) floats in [0, 1]


def _cell_pixels(figure, image, sample_rows, sample_cols):
    """The PNG's colour at the centre of heatmap cell (row, col), located from the drawn axes."""
    figure.savefig(io.BytesIO(), format="png", dpi=DPI)  # lays the figure out as save_panel did
    box = figure.axes[0].get_window_extent()  # pixels, origin at the bottom left
    height = image.shape[0]
    rows, cols = len(sample_rows), len(sample_cols)
    colours = np.empty((rows, cols, 3))
    for a, unit in enumerate(sample_rows):
        for b, step in enumerate(sample_cols):
            x = box.x0 + (step + 0.5) / TIMESTEPS * box.width
            y = box.y1 - (unit + 0.5) / UNITS * box.height
            colours[a, b] = image[int(height - y), int(x)]
    return colours


def test_png_pixels_are_the_values_colours(tmp_path):
    """Every cell's centre pixel is the colour map's colour of that unit's value at that step."""
    trace = _lstm().trace(_x())
    path = save_panel(trace, "c", tmp_path / "c.png", sample=1, layer="lstm", dpi=DPI)
    image = _read_png(path)
    figure = panel_figure(trace, "c", sample=1, layer="lstm")
    assert image.shape[:2] == (round(figure.get_figheight() * DPI), round(figure.get_figwidth() * DPI))
    mapped = figure.axes[0].images[0]
    expected = mapped.to_rgba(trace.c[1].T)[..., :3]  # (units, timesteps, 3)
    pixels = _cell_pixels(figure, image, range(UNITS), range(TIMESTEPS))
    np.testing.assert_allclose(pixels, expected, atol=2 / 255)


def test_the_most_open_unit_is_the_brightest_row(tmp_path):
    """A forget gate held open in one unit (bias +8) draws that unit's row brightest (viridis: yellow)."""
    lstm = _lstm()
    bias = lstm.bias.copy()
    bias[UNITS + 4] = 8.0  # b_f of unit 4
    trace = _lstm().__class__(lstm.kernel, lstm.recurrent_kernel, bias, return_sequences=True).trace(_x())
    path = save_panel(trace, "f", tmp_path / "f.png", layer="lstm", dpi=DPI)
    pixels = _cell_pixels(panel_figure(trace, "f", layer="lstm"), _read_png(path), range(UNITS),
                          range(TIMESTEPS))
    brightness = pixels.mean(axis=(1, 2))  # per unit
    assert np.argmax(brightness) == 4
    assert trace.f[0, :, 4].min() > 0.99


def test_masked_steps_are_hatched(tmp_path):
    """Masked steps carry hatching and a legend entry; unmasked cells keep their plain colour."""
    mask = np.ones((BATCH, TIMESTEPS), bool)
    mask[0, 9:] = False
    trace = _lstm().trace(_x(), mask=mask)
    figure = panel_figure(trace, "h", sample=0)
    hatched = [p for p in figure.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 3
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["masked step (state carried)"]
    path = save_panel(trace, "h", tmp_path / "h.png", dpi=DPI)
    image = _read_png(path)
    pixels = _cell_pixels(figure, image, range(UNITS), range(9))
    expected = figure.axes[0].images[0].to_rgba(trace.h[0, :9].T)[..., :3]
    np.testing.assert_allclose(pixels, expected, atol=2 / 255)


def test_go_backwards_is_drawn_in_input_order():
    """A go_backwards trace is flipped back: column p is input step p, and the axis says so."""
    trace = _lstm(go_backwards=True).trace(_x())
    figure = panel_figure(trace, "o", go_backwards=True)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), trace.o[0, ::-1].T)
    assert figure.axes[0].get_xlabel() == "input step (read last to first)"


def test_bidirectional_needs_a_direction():
    """A Bidirectional trace is drawn one direction at a time; the backward one in input order."""
    forward, backward = _lstm().trace(_x()), _lstm(go_backwards=True).trace(_x())
    trace = BidirectionalTrace(forward=forward, backward=backward)
    figure = panel_figure(trace, "i", direction="backward", layer="bi")
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), backward.i[0, ::-1].T)
    assert figure.axes[0].get_title(loc="left").startswith("bi (backward): input gate")
    with pytest.raises(reflstm.ReflstmError, match="^direction: expected 'forward' or 'backward'"):
        panel_figure(trace, "i")


def test_svg_is_vector_with_text_as_text(tmp_path):
    """The SVG parses, keeps its labels as <text> (not glyph paths), and embeds the cells as one image."""
    trace = _lstm().trace(_x())
    tokens = [f"tok{t}" for t in range(TIMESTEPS)]
    path = save_panel(trace, "f", tmp_path / "f.svg", layer="lstm", step_labels=tokens)
    root = ElementTree.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    for words in ("lstm: forget gate fₜ, sample 0", "input step", "unit", "tok0", "tok11"):
        assert words in texts
    assert len(list(root.iter(f"{SVG}image"))) == 2  # the heatmap and the colour bar
    assert "Date" not in open(path).read() and "<dc:date>" not in open(path).read()


REFUSALS = {
    "unknown_quantity": (dict(quantity="z"), "quantity: expected one of this LSTM trace's quantities"),
    "sample_out_of_range": (dict(sample=BATCH), f"sample: expected a sample in 0..{BATCH - 1}"),
    "direction_for_one_direction": (dict(direction="forward"), "direction: expected None"),
    "wrong_number_of_labels": (dict(step_labels=["a"]), f"step_labels: expected one label per step ({TIMESTEPS})"),
    "jpeg": (dict(path="panel.jpg"), "path: expected a file name ending in .png or .svg"),
    "missing_folder": (dict(path="nowhere/panel.png"), "path: expected a file to write in an existing folder"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_write_nothing(case, tmp_path, monkeypatch):
    """Bad arguments are ReflstmErrors naming the argument; nothing is written."""
    monkeypatch.chdir(tmp_path)
    options, message = REFUSALS[case]
    arguments = dict(trace=_lstm().trace(_x()), quantity="f", path="panel.png") | options
    with pytest.raises(reflstm.ReflstmError, match=f"^{re.escape(message)}"):
        save_panel(**arguments)
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    """Without matplotlib, the refusal says which extra to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(reflstm.ReflstmError, match=r"pip install 'reflstm\[plot\]'"):
        save_panel(_lstm().trace(_x()), "f", tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
