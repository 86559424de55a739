"""Files written by Keras 1 and by standalone Keras 2.0–2.2, loaded by reflstm.

The files are written as those versions wrote them (tests/old_keras_files.py), from tf_keras
models with the same computation (hard_sigmoid, GRUs that reset before U); each file is first
read back by tf_keras's own `load_weights`, whose legacy converter gives the original weights
only if the file is laid out as Keras 1 laid it out. reflstm's predictions are compared with
tf_keras's. Real files from public projects are in test_published_files.py.
"""

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from old_keras_files import save_keras1, save_keras2_early
from saved_models import BATCH, FEATURES, TIMESTEPS, VOCABULARY, model_inputs

TOLERANCE = 2e-6


def _stack(k):
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES)),
        k.layers.Masking(),
        k.layers.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_1"),
        k.layers.Dropout(0.3, name="dropout_1"),
        k.layers.GRU(4, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid",
                     name="gru_1"),
        k.layers.SimpleRNN(3, go_backwards=True, name="simplernn_1"),
        k.layers.Dense(2, activation="softmax", name="dense_1"),
    ])


def _embedding(k):
    return k.Sequential([
        k.Input((TIMESTEPS,), dtype="int32"),
        k.layers.Embedding(VOCABULARY, 4, mask_zero=True, name="embedding_1"),
        k.layers.LSTM(5, go_backwards=True, recurrent_activation="hard_sigmoid", name="lstm_1"),
        k.layers.Dense(3, activation="tanh", name="dense_1"),
    ])


def _functional(k):
    a, b = k.Input((TIMESTEPS, FEATURES), name="input_1"), k.Input((TIMESTEPS, FEATURES), name="input_2")
    la = k.layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_1")(
        k.layers.Masking(name="masking_1")(a))
    lb = k.layers.GRU(4, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid",
                      name="gru_1")(b)
    joined = k.layers.Concatenate(name="merge_1")([la, lb])
    summed = k.layers.Add(name="merge_2")([la, lb])
    out1 = k.layers.TimeDistributed(k.layers.Dense(2, name="dense_1"), name="timedistributed_1")(joined)
    out2 = k.layers.LSTM(3, recurrent_activation="hard_sigmoid", name="lstm_2")(summed)
    return k.Model([a, b], [out1, out2])


def _bidirectional(k):
    x = k.Input((TIMESTEPS, FEATURES), name="input_1")
    masked = k.layers.Masking(name="masking_1")(x)
    last = k.layers.Bidirectional(k.layers.LSTM(3, recurrent_activation="hard_sigmoid", name="lstm_1"),
                                  merge_mode="sum", name="bidirectional_1")(masked)
    sequence = k.layers.Bidirectional(
        k.layers.GRU(3, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid",
                     name="gru_1"), name="bidirectional_2")(x)
    return k.Model(x, [last, sequence])


KERAS1_MODELS = {"stack": _stack, "embedding": _embedding, "functional": _functional,
                 "bidirectional": _bidirectional}


def build(make, seed=0):
    model = make(keras_module(2))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def predictions(model, x):
    out = model.predict(x, verbose=0)
    return out if isinstance(out, list) else [out]


def read_back_by_tf_keras(model, path):
    """tf_keras's load_weights (with its Keras 1 converter) gives the model's own weights back."""
    clone = keras_module(2).models.clone_model(model)
    clone.load_weights(path)
    for mine, theirs in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def assert_close(actual, expected):
    actual = actual if isinstance(actual, list) else [actual]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("backend", ["theano", "tensorflow"])
@pytest.mark.parametrize("consume_less", ["cpu", "gpu"])
@pytest.mark.parametrize("name", list(KERAS1_MODELS))
def test_keras1_file_predicts_as_keras(name, consume_less, backend, tmp_path):
    model = build(KERAS1_MODELS[name])
    path = save_keras1(model, tmp_path / "model.h5", backend=backend, consume_less=consume_less,
                       input_dtype="int32" if name == "embedding" else "float32")
    read_back_by_tf_keras(model, path)
    ref = reflstm.load(path)
    assert ref.keras_version == 1
    x = model_inputs(model)
    assert_close(ref.predict(x), predictions(model, x))


def test_keras1_bidirectional_keeps_masked_steps_as_keras1_did(tmp_path):
    """Keras 1's Bidirectional did not zero masked steps (tf_keras's does): its sequence is the
    forward layer's and the reversed go_backwards layer's outputs, joined."""
    k = keras_module(2)
    x_in = k.Input((TIMESTEPS, FEATURES))
    masked = k.layers.Masking()(x_in)
    wrapped = k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid",
                                                   name="lstm_1"), name="bidirectional_1")
    model = k.Model(x_in, wrapped(masked))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    # Without keras_version (as no Keras 1 full model was saved, but a hand-made file may be), its
    # Keras 1 names tell.
    path = save_keras1(model, tmp_path / "model.h5", version=None)
    x = model_inputs(model)
    # The same two directions as plain layers, masked steps keeping the previous output.
    forward = k.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid")
    backward = k.layers.LSTM(3, return_sequences=True, go_backwards=True, recurrent_activation="hard_sigmoid")
    f_out, b_out = forward(masked), backward(masked)
    forward.set_weights(wrapped.forward_layer.get_weights())
    backward.set_weights(wrapped.backward_layer.get_weights())
    f, b = k.Model(x_in, [f_out, b_out]).predict(x, verbose=0)
    expected = np.concatenate([f, b[:, ::-1]], axis=-1)
    assert not np.allclose(expected, predictions(model, x)[0])  # tf_keras's zeros differ
    assert_close(reflstm.load(path).predict(x), [expected])


@pytest.mark.parametrize("version", ["2.0.8", "2.1.2", "2.2.4"])
def test_keras2_early_sequential_file(version, tmp_path):
    """Keras 2.0-2.2 saved a Sequential as a bare list, and a GRU config without reset_after
    (before 2.1.3) meant reset_after=False."""
    model = build(lambda k: k.Sequential([
        k.Input((TIMESTEPS, FEATURES)),
        k.layers.Masking(name="masking_1"),
        k.layers.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_1"),
        k.layers.GRU(4, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid",
                     name="gru_1"),
        k.layers.Bidirectional(k.layers.GRU(3, reset_after=version == "2.2.4"), name="bidirectional_1"),
        k.layers.Dense(2, name="dense_1"),
    ]))
    path = save_keras2_early(model, tmp_path / "model.h5", version, reset_after_key=version == "2.2.4")
    read_back_by_tf_keras(model, path)
    ref = reflstm.load(path)
    assert ref.keras_version == 2
    x = model_inputs(model)
    assert_close(ref.predict(x), predictions(model, x))


def test_keras1_lambda_merge_is_refused(tmp_path):
    model = build(_functional)
    path = save_keras1(model, tmp_path / "model.h5")
    import h5py, json

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        merge = next(e for e in config["config"]["layers"] if e["class_name"] == "Merge")
        merge["config"].update(mode="<marshalled python code>", mode_type="lambda")
        f.attrs["model_config"] = json.dumps(config).encode()
    with pytest.raises(reflstm.ReflstmError, match="layer 'merge_1': field 'mode'.*never run.*lambda"):
        reflstm.load(path)


def test_keras_2_0_1_gru_with_its_bug_is_refused(tmp_path):
    """Keras 2.0.0/2.0.1's GRU(implementation=1) computed its candidate from the reset gate's
    input kernel (fixed in 2.0.2): refused, not silently computed as today's GRU."""
    model = build(lambda k: k.Sequential([
        k.Input((TIMESTEPS, FEATURES)), k.layers.GRU(3, reset_after=False, implementation=1, name="gru_1")]))
    path = save_keras2_early(model, tmp_path / "model.h5", "2.0.1")
    with pytest.raises(reflstm.ReflstmError, match="layer 'gru_1'.*Keras 2.0.1's GRU with implementation=1"):
        reflstm.load(path)
    reflstm.load(save_keras2_early(model, tmp_path / "fixed.h5", "2.0.2"))


def test_keras1_time_distributed_dense(tmp_path):
    """Keras 1's TimeDistributedDense layer: a Dense over every step, its W and b."""
    model = build(lambda k: k.Sequential([
        k.Input((TIMESTEPS, FEATURES)), k.layers.Masking(name="masking_1"),
        k.layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="lstm_1"),
        k.layers.TimeDistributed(k.layers.Dense(2, name="dense_1"), name="timedistributed_1")]))
    path = save_keras1(model, tmp_path / "model.h5")
    import h5py, json

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        entry = config["config"][-1]
        entry.update(class_name="TimeDistributedDense",
                     config={**entry["config"]["layer"]["config"], "name": "timedistributed_1", "input_length": None})
        f.attrs["model_config"] = json.dumps(config).encode()
    x = model_inputs(model)
    assert_close(reflstm.load(path).predict(x), predictions(model, x))


def test_inspect_says_which_keras_wrote_the_file(tmp_path):
    import subprocess, sys

    model = build(_stack)
    for path, says in [(save_keras1(model, tmp_path / "k1.h5"), "saved by Keras 1.2.2"),
                       (save_keras2_early(model, tmp_path / "k2.h5", "2.1.6"), "saved by Keras 2.1.6 (tensorflow backend)")]:
        run = subprocess.run([sys.executable, "-m", "reflstm", "inspect", str(path)], capture_output=True, text=True)
        assert run.returncode == 0 and says in run.stdout.splitlines()[0], run.stdout + run.stderr


def test_keras1_merge_of_sequential_branches_is_refused_by_name():
    """Keras 1's Sequential whose first layer merges Sequential branches is named, not misread."""
    branch = {"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"name": "dense_1", "output_dim": 2, "batch_input_shape": [None, 3]}}]}
    config = {"class_name": "Sequential", "config": [
        {"class_name": "Merge", "config": {"name": "merge_1", "mode": "concat", "layers": [branch, branch]}}]}
    with pytest.raises(reflstm.ReflstmError, match="layer 'merge_1'.*Merge of Sequential models"):
        reflstm.Model(config, {}, 1)
