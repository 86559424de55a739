"""Numbers and files that Keras 1 and Keras 2.0–2.2 computed and wrote, in other projects.

- tests/published/kerasjs_keras{1,2}_rnn_cases.json: keras-js's layer test cases (MIT, see
  tests/published/SOURCES.md): random weights and inputs, and what Keras 1.x (January 2017)
  and Keras 2.0.8–2.1 predicted from them, rounded to 6 decimals. Each case is read as the
  model config Keras 1 or 2 would have saved, through reflstm's file path (config and weights),
  and its predictions compared with Keras's.
- Saved models with stored predictions from deeplearning4j's test resources (Apache-2.0): not
  kept in this repository (files fetched from public repositories are not committed); the test
  runs when a folder holding them is named by REFLSTM_PUBLISHED, and skips otherwise.
"""

import json
import os
import pathlib

import numpy as np
import pytest

import reflstm

HERE = pathlib.Path(__file__).parent / "published"
# keras-js rounded every number (weights, inputs, expected outputs) to 6 decimals.
TOLERANCE = 1e-5


def _cases(keras_version):
    data = json.loads((HERE / f"kerasjs_keras{keras_version}_rnn_cases.json").read_text())
    return [(keras_version, name, case) for name, case in data["cases"].items()]


CASES = _cases(1) + _cases(2)


def _array(entry):
    return np.asarray(entry["data"], dtype="float32").reshape(entry["shape"])


def _layer_config(description, keras_version, name):
    """The config Keras `keras_version` saved for a layer built as `description` says."""
    kind, args, kwargs = description["class_name"], description["args"], dict(description["kwargs"])
    if kind in ("Bidirectional", "TimeDistributed"):
        kwargs["layer"] = {"class_name": args[0]["class_name"],
                           "config": _layer_config(args[0], keras_version, f"{name}_inner")}
    elif args:
        kwargs["output_dim" if keras_version == 1 else "units"] = args[0]
    return {"name": name, **kwargs}


@pytest.mark.parametrize("keras_version, name, case", CASES, ids=[f"keras{v}-{n}" for v, n, _ in CASES])
def test_kerasjs_case(keras_version, name, case):
    x = _array(case["input"])[None]
    config = _layer_config(case["layer"], keras_version, "layer")
    config["batch_input_shape"] = case["batch_shape"] or [None, *x.shape[1:]]
    model_config = {"class_name": "Sequential", "config": [{"class_name": case["layer"]["class_name"],
                                                             "config": config}]}
    weights = {"layer": [_array(w) for w in case["weights"]]}
    ref = reflstm.Model(model_config, weights, keras_version)
    for _ in range(case["predict_calls"]):  # a stateful layer: the second call is the one stored
        out = ref.predict(x)
    np.testing.assert_allclose(out[0], _array(case["expected"]), rtol=0, atol=TOLERANCE)


# deeplearning4j's saved models and the predictions stored beside them (SOURCES.md says which).
DL4J = {
    "dl4j_keras1_tf_lstm_dense.h5": ("dl4j_keras1_tf_lstm_dense_io.h5", 1),
    "dl4j_keras1_th_lstm_dense.h5": ("dl4j_keras1_th_lstm_dense_io.h5", 1),
    "dl4j_keras2_tf_simplernn_dense.h5": ("dl4j_keras2_tf_simplernn_dense_io.h5", 2),
    "dl4j_keras2_tf_simplernn_flatten_dense.h5": ("dl4j_keras2_tf_simplernn_flatten_dense_io.h5", 2),
    "dl4j_keras2_tf_lstm_dense.h5": ("dl4j_keras2_tf_lstm_dense_io.h5", 2),
}
PUBLISHED = pathlib.Path(os.environ.get("REFLSTM_PUBLISHED", HERE / "absent"))


def _published(name):
    if not (PUBLISHED / name).exists():
        pytest.skip(f"{name} (deeplearning4j's test resources, Apache-2.0) is not committed here; set "
                    "REFLSTM_PUBLISHED to a folder holding it (tests/published/SOURCES.md says where it comes from)")
    return PUBLISHED / name


@pytest.mark.parametrize("name", list(DL4J))
def test_dl4j_saved_model(name):
    import h5py

    path = _published(name)
    io_name, keras_version = DL4J[name]
    with h5py.File(_published(io_name), "r") as f:
        x = np.asarray(next(iter(f["inputs"].values())))
        expected = np.asarray(next(iter(f["predictions"].values())))
    ref = reflstm.load(path)
    assert ref.keras_version == keras_version
    np.testing.assert_allclose(ref.predict(x), expected, rtol=2e-6, atol=2e-6)


def test_dl4j_keras1_weights_only():
    """Keras 1.2.2's save_weights file (no keras_version) with its to_json architecture."""
    import h5py

    weights = _published("dl4j_keras1_tf_lstm_dense_weights.h5")
    ref = reflstm.load(weights, architecture=_published("dl4j_keras1_tf_lstm_dense_config.json"))
    assert ref.keras_version == 1
    with h5py.File(_published("dl4j_keras1_tf_lstm_dense_io.h5"), "r") as f:
        x, expected = np.asarray(f["inputs/lstm_input_1"]), np.asarray(f["predictions/dense_1"])
    np.testing.assert_allclose(ref.predict(x), expected, rtol=2e-6, atol=2e-6)


def test_dl4j_keras2_theano_two_lstms_over_four_steps():
    """Keras 2.0.8 on Theano: save_weights + to_json, 283 four-step sequences and their predictions."""
    weights = _published("dl4j_keras2_th_lstm2_weights.h5")
    ref = reflstm.load(weights, architecture=_published("dl4j_keras2_th_lstm2_config.json"))
    rows = np.loadtxt(_published("dl4j_keras2_th_lstm2_sequences.csv"), delimiter=";", dtype="float32")
    x = rows[:, :12].reshape(-1, 4, 12)
    expected = np.load(_published("dl4j_keras2_th_lstm2_predictions.npy"))
    np.testing.assert_allclose(ref.predict(x)[:, 0], expected, rtol=0, atol=1e-6)
