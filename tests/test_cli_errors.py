"""The command line's answers to bad paths and bad arguments (issue 9), run as `python -m reflstm`.

Each case: exit status 2, exactly one line on stderr, no traceback, nothing written.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saved_models import build_model, model_inputs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A Keras 3 .keras model, an input for it, a folder, a regular file and a symlink loop."""
    root = tmp_path_factory.mktemp("cli_errors")
    model = build_model("lstm_stack", 3)
    model.save(root / "stack.keras")
    np.save(root / "x.npy", model_inputs(model))
    (root / "folder").mkdir()
    (root / "regular").write_text("a regular file, not a folder")
    os.symlink(root / "loop", root / "loop")
    return root


def reflstm(*argv, cwd=None):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "reflstm", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=cwd)


def assert_one_line_error(result, *words):
    """Exit 2, one stderr line holding `words`, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word.lower() in result.stderr.lower(), (word, result.stderr)


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_trace_out_that_is_a_directory_is_refused(files):
    """trace --out DIR, where DIR is an existing folder, is refused; no DIR.npz appears beside it."""
    before = listing(files)
    result = reflstm("trace", files / "stack.keras", "--input", files / "x.npy", "--out", files / "folder")
    assert_one_line_error(result, "--out")
    assert listing(files) == before and listing(files / "folder") == []


@pytest.mark.parametrize("where", ["under_a_file", "under_proc"])
@pytest.mark.parametrize("command", ["trace", "plot", "attribute_out", "attribute_plot"])
def test_output_in_a_folder_that_cannot_be_written_is_refused_up_front(files, command, where):
    """An output path under a regular file, or under /proc, is refused (exit 2) before any work."""
    out = files / "regular" / "out.npz" if where == "under_a_file" else Path("/proc/reflstm-out.npz")
    if command == "plot":
        out = out.with_suffix(".png")
    model, x = files / "stack.keras", files / "x.npy"
    argv = {
        "trace": ["trace", model, "--input", x, "--out", out],
        "plot": ["plot", model, "--input", x, "--out", out],
        "attribute_out": ["attribute", model, "--input", x, "--method", "gradient", "--out", out],
        "attribute_plot": ["attribute", model, "--input", x, "--method", "gradient", "--plot",
                           out.with_suffix(".png")],
    }[command]
    result = reflstm(*argv)
    assert_one_line_error(result, "--plot" if command == "attribute_plot" else "--out")


def test_plot_to_a_format_matplotlib_lacks_is_refused_up_front(files, tmp_path):
    """plot --out x.xyz is refused (exit 2, one line naming --out), and nothing is written."""
    result = reflstm("plot", files / "stack.keras", "--input", files / "x.npy", "--out", tmp_path / "gates.xyz")
    assert_one_line_error(result, "--out")
    assert listing(tmp_path) == []


def test_attribute_plot_to_an_unknown_format_is_refused(files, tmp_path):
    """attribute --plot a.xyz is refused up front too."""
    result = reflstm("attribute", files / "stack.keras", "--input", files / "x.npy", "--method", "gradient",
                     "--plot", tmp_path / "a.xyz")
    assert_one_line_error(result, "--plot")


ARGPARSE_ERRORS = {
    "no_command": [],
    "unknown_command": ["frobnicate"],
    "missing_required_option": ["trace", "MODEL"],
    "unknown_option": ["inspect", "MODEL", "--colour", "red"],
    "bad_int": ["explain", "MODEL", "--layer", "encoder", "--step", "three"],
    "bad_choice": ["trace", "MODEL", "--input", "X", "--out", "t.npz", "--dtype", "float16"],
    "missing_file_argument": ["inspect"],
}


@pytest.mark.parametrize("case", list(ARGPARSE_ERRORS))
def test_argument_errors_print_one_line(files, case):
    """argparse's own errors (missing option, unknown option, bad int, ...) exit 2 in one line."""
    argv = [str(files / "stack.keras") if a == "MODEL" else str(files / "x.npy") if a == "X" else a
            for a in ARGPARSE_ERRORS[case]]
    assert_one_line_error(reflstm(*argv))


def test_help_still_prints_usage(files):
    """--help is not an error: usage on stdout, exit 0."""
    result = reflstm("--help")
    assert result.returncode == 0 and "usage" in result.stdout.lower()


def test_directory_as_model_path_is_not_a_file(files):
    """A folder given as the model is reported as not a file, not as missing."""
    result = reflstm("inspect", files / "folder")
    assert_one_line_error(result)
    assert "does not exist" not in result.stderr
    assert "not a file" in result.stderr.lower() or "directory" in result.stderr.lower() or \
        "folder" in result.stderr.lower()


def test_symlink_loop_as_model_path_is_refused_in_one_line(files):
    """A symlink loop as the model is refused in one line, and not called missing."""
    result = reflstm("inspect", files / "loop")
    assert_one_line_error(result)
    assert "does not exist" not in result.stderr


def test_missing_model_is_still_said_to_not_exist(files):
    """A path with nothing there keeps its message: it does not exist."""
    assert_one_line_error(reflstm("inspect", files / "absent.keras"), "does not exist")
