"""From R: the README's reticulate recipe, run by a real R, compared with what Keras returned.

R's reticulate (Debian's 1.28) cannot pass arrays to NumPy 2, so R runs reflstm in its own
Python environment with numpy<2: REFLSTM_R_PYTHON names its python (.ci/run makes one); without
it, one is made once in ~/.cache/reflstm. Skipped only where R or reticulate is not installed.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_layers import keras_module

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "r" / "hidden_states.R"
SAMPLES, TIMESTEPS, FEATURES, UNITS = 3, 6, 3, 4
FLOAT32_TOLERANCE = 2e-6


def r_python():
    """A python with numpy<2 for reticulate: REFLSTM_R_PYTHON, or a venv made once in a cache."""
    if os.environ.get("REFLSTM_R_PYTHON"):
        return os.environ["REFLSTM_R_PYTHON"]
    venv = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "reflstm" / "r-python"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy<2", "h5py", "scipy"],
                                capture_output=True, text=True)
        if result.returncode:
            shutil.rmtree(venv)
            pytest.fail(f"could not make the numpy<2 environment for R: {result.stderr[-500:]}")
    return str(python)


@pytest.fixture(scope="module")
def rscript():
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed (apt-get install --no-install-recommends r-base-core r-cran-reticulate)")
    if subprocess.run([rscript, "-e", "library(reticulate)"], capture_output=True).returncode:
        pytest.skip("R's reticulate is not installed (apt-get install --no-install-recommends r-cran-reticulate)")
    return rscript


def test_hidden_output_at_every_step_from_r(rscript, tmp_path):
    """R loads a saved model, traces it, and gets Keras's h at every step and its final c."""
    k = keras_module(3)
    inp = k.Input((TIMESTEPS, FEATURES))
    sequence, _, c = k.layers.LSTM(UNITS, return_sequences=True, return_state=True, name="lstm")(inp)
    model = k.Model(inp, k.layers.Dense(1, name="readout")(sequence))
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    model.save(tmp_path / "model.keras")
    x = rng.normal(0, 1, (SAMPLES, TIMESTEPS, FEATURES)).astype("float32")
    keras_h, keras_c = (np.asarray(a) for a in k.Model(inp, [sequence, c])(x))
    np.savetxt(tmp_path / "x.txt", x.ravel(), fmt="%.9g")  # row-major, one number a line
    np.save(tmp_path / "keras_h.npy", keras_h)
    np.save(tmp_path / "keras_c.npy", keras_c)

    env = dict(os.environ, RETICULATE_PYTHON=r_python(), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [rscript, str(SCRIPT), str(tmp_path / "model.keras"), str(tmp_path / "x.txt"),
         str(tmp_path / "keras_h.npy"), str(tmp_path / "keras_c.npy")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    def number(label):
        return float(re.search(re.escape(label) + r"\s*([0-9.e+-]+)", out).group(1))

    assert re.search(r"numpy 1\.", out), out
    assert f"dim(h) = {SAMPLES} x {TIMESTEPS} x {UNITS}" in out
    assert number("max |h - Keras| over every step:") < FLOAT32_TOLERANCE, out
    assert number("max |c at the last step - Keras's final c|:") < FLOAT32_TOLERANCE, out
    assert f"plain vector of {UNITS} units; h[1, 3, , drop = FALSE] keeps dim 1 x 1 x {UNITS}" in out
    step3 = re.search(r"h of sample 1 at step 3: (.*)", out).group(1).split()
    np.testing.assert_allclose(np.array(step3, float), keras_h[0, 2], atol=1e-6)  # 1-based step 3
    assert number("array() instead of array_reshape(): max |h - Keras| =") > 1e-2, out
