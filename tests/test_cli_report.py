"""reflstm report on the command line: the page it writes, and its refusals (one line, exit 2,
nothing written)."""

import numpy as np
import pytest

import reflstm
from reflstm import cli
from saved_models import build_model, model_inputs
from test_report import decode, panels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A Keras 3 model reading token ids (with a vocabulary) and a tf_keras Bidirectional one."""
    root = tmp_path_factory.mktemp("cli_report")
    paths = {"root": root}
    for key, (name, keras_version, fmt) in {"ids": ("embedding", 3, "keras"),
                                            "bi": ("bidirectional_concat", 2, "h5")}.items():
        model = build_model(name, keras_version)
        paths[key] = root / f"{key}.{fmt}"
        model.save(paths[key])
        paths[f"{key}_x"] = root / f"{key}_x.npy"
        np.save(paths[f"{key}_x"], model_inputs(model))
    paths["vocabulary"] = root / "vocabulary.txt"
    paths["vocabulary"].write_text("\n".join(f"tok{k}" for k in range(12)) + "\n", encoding="utf-8")
    return paths


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def page_data(path):
    page = path.read_text(encoding="utf-8")
    start = page.index('class="reflstm-data">') + len('class="reflstm-data">')
    import json

    return json.loads(page[start : page.index("</script>", start)].replace("<\\/", "</"))


def test_report_writes_the_page_of_the_models_traces(files, capsys, tmp_path):
    """The page holds the model's traces for the sample, the tokens from the vocabulary, attribution."""
    out = tmp_path / "report.html"
    code, printed, _ = run(capsys, "report", files["ids"], "--input", files["ids_x"], "--out", out,
                           "--sample", 2, "--attribute", "--vocabulary", files["vocabulary"])
    assert code == 0 and f"wrote {out}" in printed
    data = page_data(out)
    x = np.load(files["ids_x"])
    trace = reflstm.load(files["ids"]).trace(x)["reader"]
    shown = panels(data)["reader"]
    np.testing.assert_array_equal(decode(shown["states"]["C_t"]), trace.c[2])
    assert shown["input"]["tokens"] == [f"tok{i}" for i in x[2]]
    assert shown["attribution"] is not None and "Keras" in data["notes"][0]


def test_report_of_one_bidirectional_layer(files, capsys, tmp_path):
    """--layer picks the layer; a Bidirectional shows both directions."""
    out = tmp_path / "bi.html"
    code, _, _ = run(capsys, "report", files["bi"], "--input", files["bi_x"], "--out", out, "--layer", "bi")
    assert code == 0
    assert [p["title"] for p in page_data(out)["layers"][0]["panels"]] == ["bi (forward)", "bi (backward)"]


def test_png_and_svg_of_one_panel(files, capsys, tmp_path):
    """--png / --svg draw --panel (a Bidirectional's backward C_t here) for a paper; no page without --out."""
    png, svg = tmp_path / "c.png", tmp_path / "c.svg"
    code, printed, _ = run(capsys, "report", files["bi"], "--input", files["bi_x"], "--panel", "bi/backward/c",
                           "--png", png, "--svg", svg, "--sample", 1)
    assert code == 0 and printed.count("wrote") == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bi (backward): cell state" in svg.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c.svg"]


@pytest.mark.parametrize("extra, option", [
    ([], "--out"),
    (["--out", "{root}/r.html", "--panel", "reader/c"], "--panel"),
    (["--png", "{root}/p.png", "--panel", "reader/z"], "--panel"),
    (["--png", "{root}/p.png", "--panel", "nothere/c"], "--panel"),
    (["--svg", "{root}/p.png"], "--svg"),
    (["--out", "{root}/report.txt"], "--out"),
    (["--out", "{root}/missing/report.html"], "--out"),
    (["--out", "{root}/r.html", "--sample", "9"], "--sample"),
    (["--out", "{root}/r.html", "--layer", "dense"], "--layer"),
    (["--out", "{root}/r.html", "--vocabulary", "{root}/none.txt"], "--vocabulary"),
    (["--out", "{root}/r.html", "--vocabulary", "{root}/latin1.txt"], "--vocabulary"),
    (["--out", "{root}/r.html", "--vocabulary", "{root}/short.txt"], "vocabulary"),
], ids=["nothing_to_write", "panel_without_figure", "panel_quantity", "panel_layer", "svg_suffix", "out_suffix", "out_folder", "sample", "layer", "vocabulary_missing", "vocabulary_not_utf8",
        "vocabulary_short"])
def test_refusals_one_line_exit_2_nothing_written(files, capsys, tmp_path, extra, option):
    """Bad options: one line on stderr naming the option, exit 2, no file left behind."""
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "short.txt").write_text("a\nb\n")
    argv = [a.format(root=tmp_path) for a in extra]
    before = set(tmp_path.iterdir())
    code, out, err = run(capsys, "report", files["ids"], "--input", files["ids_x"], *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"reflstm report: {option}: expected"), err
    assert set(tmp_path.iterdir()) == before
