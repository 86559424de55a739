"""import reflstm stays light."""

import subprocess
import sys

HEAVY = ("tensorflow", "keras", "tf_keras", "torch", "onnx", "scipy")


def test_import_reflstm_imports_no_framework():
    """Importing reflstm and running an LSTM loads no framework (and not even SciPy)."""
    code = (
        "import sys, numpy as np, reflstm\n"
        "reflstm.LSTM(np.ones((2, 8)), np.ones((2, 8)), np.ones(8)).trace(np.ones((1, 3, 2)))\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_gru_and_simple_rnn_import_no_framework():
    """Running a GRU (both reset_after modes) and a SimpleRNN loads no framework either."""
    code = (
        "import sys, numpy as np, reflstm\n"
        "reflstm.GRU(np.ones((2, 6)), np.ones((2, 6)), np.ones((2, 6))).trace(np.ones((1, 3, 2)))\n"
        "reflstm.GRU(np.ones((2, 6)), np.ones((2, 6)), np.ones(6), reset_after=False)(np.ones((1, 3, 2)))\n"
        "reflstm.SimpleRNN(np.ones((2, 2)), np.ones((2, 2)), np.ones(2)).trace(np.ones((1, 3, 2)))\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
