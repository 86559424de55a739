"""The reflstm command line, end to end, including its error paths."""

import os
import subprocess
import sys

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from reflstm import cli
from saved_models import build_model, model_inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A Keras 3 .keras and a tf_keras .h5 model (an LSTM stack and a Bidirectional), with inputs."""
    root = tmp_path_factory.mktemp("cli")
    paths = {}
    for key, (name, keras_version, fmt) in {
        "stack": ("lstm_stack", 3, "keras"),
        "bi": ("bidirectional_concat", 2, "h5"),
    }.items():
        model = build_model(name, keras_version)
        paths[key] = root / f"{key}.{fmt}"
        model.save(paths[key])
        paths[f"{key}_x"] = root / f"{key}_x.npy"
        np.save(paths[f"{key}_x"], model_inputs(model))
    paths["root"] = root
    return paths


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_names_layers_and_gate_columns(files, capsys):
    """inspect lists the layers, and for each LSTM which columns are i, f, c, o, with statistics."""
    code, out, _ = run(capsys, "inspect", files["stack"])
    assert code == 0
    for expected in ("'encoder': LSTM\n", "'second': LSTM\n", "LSTM 'encoder'",
                     "i    0:5", "f    5:10", "c    10:15", "o    15:20", "recurrent_kernel"):
        assert expected in out, expected
    assert "LSTMLayer" not in out and "Dropout (the identity at inference)" in out
    code, out, _ = run(capsys, "inspect", files["bi"])
    assert code == 0 and "LSTM 'bi' forward" in out and "LSTM 'bi' backward" in out


def test_trace_writes_every_quantity(files, capsys, tmp_path):
    """trace writes layer/quantity arrays equal to Model.trace, in float64 on request."""
    out_path = tmp_path / "trace.npz"
    code, out, _ = run(capsys, "trace", files["stack"], "--input", files["stack_x"], "--out", out_path)
    assert code == 0 and "wrote" in out
    saved = np.load(out_path)
    x = np.load(files["stack_x"])
    traces = reflstm.load(files["stack"]).trace(x)
    for layer in ("encoder", "second"):
        for quantity in ("i", "f", "c_tilde", "o", "c", "h"):
            np.testing.assert_array_equal(saved[f"{layer}/{quantity}"], getattr(traces[layer], quantity))
    code, _, _ = run(capsys, "trace", files["bi"], "--input", files["bi_x"], "--out", out_path,
                     "--layer", "bi", "--dtype", "float64")
    saved = np.load(out_path)
    assert code == 0 and sorted(saved)[0] == "bi/backward/c" and saved["bi/forward/h"].dtype == np.float64


@pytest.mark.parametrize("key", ["stack", "bi"])
def test_verify_agrees_with_keras(files, capsys, key):
    """verify runs Keras and reflstm and reports the largest differences, within tolerance."""
    code, out, _ = run(capsys, "verify", files[key], "--input", files[f"{key}_x"])
    assert code == 0, out
    assert "OK: largest difference" in out and "model output" in out
    code, out, _ = run(capsys, "verify", files[key])  # random input of the saved shape
    assert code == 0, out


def test_verify_fails_above_tolerance(files, capsys, monkeypatch):
    """verify exits 1 and says DIFFERENT when a difference exceeds the tolerance."""
    monkeypatch.setitem(cli.verify.TOLERANCE, np.dtype("float32"), -1.0)
    code, out, _ = run(capsys, "verify", files["stack"], "--input", files["stack_x"])
    assert code == 1 and "DIFFERENT" in out


def test_verify_without_keras_says_so(files, tmp_path):
    """Without Keras installed, verify says so plainly, in one line, and exits non-zero."""
    fake = tmp_path / "nokeras"
    (fake / "keras").mkdir(parents=True)
    (fake / "keras" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'keras'\", name='keras')\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run([sys.executable, "-m", "reflstm", "verify", str(files["stack"])],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "keras is not installed" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_explain_prints_the_steps_numbers(files, capsys):
    """explain prints one step's arithmetic, with the trace's own numbers."""
    code, out, _ = run(capsys, "explain", files["stack"], "--layer", "encoder", "--step", "1",
                       "--input", files["stack_x"], "--sample", "0", "--units", "2")
    assert code == 0
    tr = reflstm.load(files["stack"]).trace(np.load(files["stack_x"]))["encoder"]
    assert f"{tr.f[0, 1, 0]:.6f}" in out and f"{tr.c[0, 1, 1]:.6f}" in out
    assert "C_t = f*C_t-1 + i*c~" in out and "(3 more units not shown)" in out


def test_plot_writes_a_png(files, capsys, tmp_path):
    """plot writes a PNG of the gates and states."""
    png = tmp_path / "gates.png"
    code, _, _ = run(capsys, "plot", files["bi"], "--input", files["bi_x"], "--out", png)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def broken_files(root):
    text = root / "notes.keras"
    text.write_text("not a model")
    truncated = root / "truncated.keras"
    data = (root / "stack.keras").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    k = keras_module(3)
    lam = root / "lambda.keras"
    k.Sequential([k.Input((4, 2)), k.layers.LSTM(3), k.layers.Lambda(lambda t: t + 1)]).save(lam)
    wrong = root / "wrong_shape.npy"
    np.save(wrong, np.zeros((2, 6, 9), "float32"))
    pickled = root / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return text, truncated, lam, wrong, pickled


def test_error_paths_print_one_line(files, capsys):
    """Bad files and inputs: one line on stderr naming the problem, exit 2, no traceback."""
    text, truncated, lam, wrong, pickled = broken_files(files["root"])
    stack, x = files["stack"], files["stack_x"]
    cases = [
        (["inspect", files["root"] / "missing.keras"], "does not exist"),
        (["inspect", text], "neither"),
        (["inspect", truncated], "truncated or corrupted"),
        (["trace", lam, "--input", wrong, "--out", files["root"] / "t.npz"], "Lambda"),
        (["trace", stack, "--input", wrong, "--out", files["root"] / "t.npz"], "expected shape (batch, 6, 3)"),
        (["trace", stack, "--input", pickled, "--out", files["root"] / "t.npz"], "--input"),
        (["trace", stack, "--input", files["root"] / "none.npy", "--out", "t.npz"], "does not exist"),
        (["trace", stack, "--input", x, "--layer", "nope", "--out", "t.npz"], "--layer"),
        (["explain", stack, "--layer", "encoder", "--step", "99", "--input", x], "--step"),
    ]
    for argv, words in cases:
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert words in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_module_entry_point(files):
    """python -m reflstm runs the command line, with the one-line error contract."""
    result = subprocess.run([sys.executable, "-m", "reflstm", "inspect", "/no/such/file.keras"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("reflstm inspect: path: expected an existing model file")
    result = subprocess.run([sys.executable, "-m", "reflstm", "inspect", str(files["stack"])],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "LSTM 'encoder'" in result.stdout


def test_trace_in_chunks_is_the_blockwise_trace(files, capsys, tmp_path):
    """trace --chunk N streams N samples at a time to disk: each block equals that block's trace."""
    x = np.concatenate([np.load(files["stack_x"])] * 3)  # 12 samples
    x_path, out = tmp_path / "x12.npy", tmp_path / "t.npz"
    np.save(x_path, x)
    assert cli.main(["trace", str(files["stack"]), "--input", str(x_path), "--out", str(out), "--chunk", "5"]) == 0
    saved = np.load(out)
    model = reflstm.load(files["stack"])
    for start in (0, 5, 10):
        block = model.trace(x[start : start + 5])
        np.testing.assert_array_equal(saved["encoder/c"][start : start + 5], block["encoder"].c)
    assert saved["second/h"].shape == (12, 6, 4)
    assert not any(p.name.startswith(".reflstm-trace-") for p in tmp_path.iterdir())


def test_more_error_paths(files, capsys, tmp_path):
    """Scalar inputs, missing output folders, wrong --direction or --units: one line, exit 2."""
    scalar = tmp_path / "scalar.npy"
    np.save(scalar, np.float32(1.0))
    stack, x = files["stack"], files["stack_x"]
    cases = [
        (["trace", stack, "--input", scalar, "--out", tmp_path / "t.npz"], "--input"),
        (["trace", stack, "--input", x, "--out", tmp_path / "missing" / "t.npz"], "--out"),
        (["plot", stack, "--input", x, "--out", tmp_path / "missing" / "p.png"], "--out"),
        (["explain", stack, "--layer", "encoder", "--step", "1", "--direction", "backward"], "--direction"),
        (["explain", stack, "--layer", "encoder", "--step", "1", "--units", "0"], "--units"),
    ]
    for argv, words in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and words in err and err.count("\n") == 1, (argv, err)
    code, out, _ = run(capsys, "trace", stack, "--input", x, "--out", tmp_path / "plain")
    assert code == 0 and "plain.npz" in out and (tmp_path / "plain.npz").exists()


def test_single_input_model_takes_a_nested_list(files):
    """A one-input model's predict takes its data as a nested list too."""
    model = reflstm.load(files["stack"])
    x = np.load(files["stack_x"])
    np.testing.assert_array_equal(model.predict(x.tolist()), model.predict(x))


def test_version(capsys):
    """reflstm --version prints the version."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"reflstm {reflstm.__version__}"


def test_every_argument_has_help():
    """Every option and positional argument of every command says what it is."""
    import argparse

    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
    assert ".npy" in cli.INPUT_HELP and ".csv" in cli.INPUT_HELP and ".npz" in cli.INPUT_HELP


def write_csv(path, x, header=None):
    rows = x.reshape(-1, x.shape[-1])  # one row per sample and step, sample-major
    np.savetxt(path, rows, delimiter=",", fmt="%.9g", header=header or "", comments="")


def test_inputs_from_csv_and_npz(files, capsys, tmp_path):
    """--input takes a .csv (rows per sample and step, or 'sample'/'step' columns) and a one-array .npz."""
    x = np.load(files["stack_x"])  # (4, 6, 3)
    expected = reflstm.load(files["stack"]).trace(x)["encoder"].h
    plain, named, shuffled, npz = (tmp_path / n for n in ("x.csv", "named.csv", "shuffled.csv", "x.npz"))
    write_csv(plain, x)
    write_csv(named, x, header="a,b,c")
    sample, step = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    table = np.column_stack([x.reshape(-1, 3), step.ravel(), sample.ravel()])[::-1]  # any row order
    np.savetxt(shuffled, table, delimiter=",", fmt="%.9g", header='"f0","f1","f2","step","sample"', comments="")
    np.savez(npz, anything=x)
    for source in (plain, named, shuffled, npz):
        out = tmp_path / f"out_{source.name}.npz"
        code, _, err = run(capsys, "trace", files["stack"], "--input", source, "--out", out, "--layer", "encoder")
        assert code == 0, (source, err)
        np.testing.assert_allclose(np.load(out)["encoder/h"], expected, rtol=1e-6, err_msg=str(source))


def test_bad_inputs_say_what_was_expected(files, capsys, tmp_path):
    """Wrong CSV layouts, several-array .npz and unknown formats: one line saying what was expected."""
    x = np.load(files["stack_x"])
    two = tmp_path / "two.npz"
    np.savez(two, x=x, y=x)
    wide, short, holes, unknown = (tmp_path / n for n in ("wide.csv", "short.csv", "holes.csv", "x.dat"))
    write_csv(wide, np.zeros((4, 6, 5)))
    write_csv(short, np.zeros((1, 5, 3)))
    holes.write_text("1,2,3\n4,NA,6\n")
    unknown.write_text("1,2,3\n")
    cases = [
        (two, "an .npz holding one array", "2 arrays: 'x', 'y'"),
        (wide, "3 columns, one per feature", "with 5 columns"),
        (short, "a multiple of 6 rows", "with 5 rows"),
        (holes, "no empty cells, no NA", "line 2"),
        (unknown, ".npy file, an .npz holding one array, or a .csv file", "none of these"),
    ]
    for path, expected, received in cases:
        code, out, err = run(capsys, "trace", files["stack"], "--input", path, "--out", tmp_path / "t.npz")
        assert code == 2 and err.count("\n") == 1 and expected in err and received in err, (path, err)
        assert "allow_pickle" not in err and not (tmp_path / "t.npz").exists()


def test_trace_to_a_folder_of_csv_files(files, capsys, tmp_path):
    """trace --out FOLDER/ writes layer_quantity.csv files: sample, step, unit_0.. equal to the .npz."""
    npz, folder = tmp_path / "t.npz", tmp_path / "csv"
    assert run(capsys, "trace", files["bi"], "--input", files["bi_x"], "--out", npz, "--chunk", "3")[0] == 0
    code, out, _ = run(capsys, "trace", files["bi"], "--input", files["bi_x"], "--out", f"{folder}/", "--chunk", "3")
    assert code == 0 and "12 CSV files" in out
    saved = np.load(npz)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"bi_{d}_{q}.csv" for d in ("forward", "backward") for q in ("i", "f", "c_tilde", "o", "c", "h"))
    for key in saved:
        path = folder / (key.replace("/", "_") + ".csv")
        header = path.read_text().splitlines()[0]
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        batch, timesteps, units = saved[key].shape
        assert header == ",".join(["sample", "step"] + [f"unit_{u}" for u in range(units)])
        np.testing.assert_array_equal(table[:, :2], [[b, t] for b in range(batch) for t in range(timesteps)])
        np.testing.assert_array_equal(table[:, 2:].astype(saved[key].dtype), saved[key].reshape(-1, units))
    existing = tmp_path / "existing"  # a bare existing folder is refused: .npz or CSV, say which
    existing.mkdir()
    code, out, err = run(capsys, "trace", files["stack"], "--input", files["stack_x"], "--out", existing)
    assert code == 2 and "directory" in err and "--format csv" in err and err.count("\n") == 1
    assert not list(existing.iterdir()) and not list(tmp_path.glob("existing*.npz"))
    assert run(capsys, "trace", files["stack"], "--input", files["stack_x"], "--out", f"{existing}/")[0] == 0
    assert (existing / "encoder_c_tilde.csv").exists()
    code, _, err = run(capsys, "trace", files["stack"], "--input", files["stack_x"], "--out", npz, "--format", "csv")
    assert code == 2 and "a folder for CSV files" in err


# --- GRU and SimpleRNN ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gru_file(tmp_path_factory):
    """A Keras 3 .keras model with GRUs (both reset_after), an LSTM and SimpleRNNs, and its input."""
    root = tmp_path_factory.mktemp("cli_gru")
    model = build_model("gru_family", 3)
    path, x_path = root / "gru.keras", root / "gru_x.npy"
    model.save(path)
    np.save(x_path, model_inputs(model))
    return path, x_path


def test_inspect_shows_gru_columns_and_both_bias_rows(gru_file, capsys):
    """inspect shows a GRU's z, r, h columns, its input and recurrent bias rows, and SimpleRNN's block."""
    code, out, _ = run(capsys, "inspect", gru_file[0])
    assert code == 0
    for expected in ("'gru': GRU\n", "'gru_cell': RNN(GRUCell)\n", "'simple_cell': RNN(SimpleRNNCell)\n",
                     "GRU 'gru'", "gate columns (order z, r, h)", "z    0:5", "r    5:10", "h    10:15",
                     "bias (input, row 0)", "bias (recurrent, row 1)", "SimpleRNN 'simple'",
                     "gate columns (order h)"):
        assert expected in out, expected
    block = out[out.index("GRU 'gru_before'"):out.index("GRU 'gru_cell'")]  # reset_after=False
    assert "z    0:4" in block and "bias (input" not in block and " bias " in block


def test_trace_writes_gru_and_simple_rnn_quantities(gru_file, capsys, tmp_path):
    """trace writes z, r, h_tilde, h for a GRU and h for a SimpleRNN, equal to Model.trace."""
    out_path = tmp_path / "trace.npz"
    code, _, _ = run(capsys, "trace", gru_file[0], "--input", gru_file[1], "--out", out_path)
    assert code == 0
    saved = np.load(out_path)
    traces = reflstm.load(gru_file[0]).trace(np.load(gru_file[1]))
    for quantity in ("z", "r", "h_tilde", "h"):
        np.testing.assert_array_equal(saved[f"gru/{quantity}"], getattr(traces["gru"], quantity))
    np.testing.assert_array_equal(saved["simple/h"], traces["simple"].h)
    assert {k for k in saved if k.startswith("simple/")} == {"simple/h"}
    assert {k for k in saved if k.startswith("lstm/")} == {f"lstm/{q}" for q in cli.layers.QUANTITIES}


def test_explain_prints_a_gru_steps_numbers(gru_file, capsys):
    """explain prints a GRU step's parts, gates and h_t with the trace's numbers, both reset modes."""
    trace = reflstm.load(gru_file[0]).trace(np.load(gru_file[1]))
    for layer in ("gru", "gru_before"):
        code, out, _ = run(capsys, "explain", gru_file[0], "--layer", layer, "--step", "2",
                           "--input", gru_file[1], "--units", "2")
        assert code == 0
        tr = trace[layer]
        h_part = tr.preactivation("h")
        for value in (tr.z[0, 2, 0], tr.r[0, 2, 1], tr.h_tilde[0, 2, 1], tr.h[0, 2, 1]):
            assert f"{value:.6f}" in out
        assert f"{h_part.total[0, 2, 0]:.5f}" in out and "h_t = z*h_t-1 + (1-z)*h~" in out
    assert "r*(h_t-1 U_h + b'_h)" not in out and "(r*h_t-1) U_h" in out  # gru_before: reset_after=False
    code, out, _ = run(capsys, "explain", gru_file[0], "--layer", "simple", "--step", "1",
                       "--input", gru_file[1], "--units", "4")
    assert code == 0 and f"{trace['simple'].h[0, 1, 3]:.6f}" in out and "h_t = g(x_t W + h_t-1 U + b)" in out


def test_plot_and_verify_a_gru_model(gru_file, capsys, tmp_path):
    """plot draws a GRU's panels; verify compares every recurrent layer with Keras."""
    png = tmp_path / "gru.png"
    code, _, _ = run(capsys, "plot", gru_file[0], "--input", gru_file[1], "--layer", "gru", "--out", png)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "verify", gru_file[0], "--input", gru_file[1])
    assert code == 0, out
    for layer in ("gru", "gru_before", "gru_cell", "lstm", "simple", "simple_cell"):
        assert f"layer {layer!r} outputs" in out
