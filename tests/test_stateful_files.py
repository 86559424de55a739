"""Stateful models in saved files: zero states at load, states carried across calls as Keras does.

Every model is built with a fixed batch size, given random weights (distinct per gate, non-zero
biases), saved while its layers carry non-zero states, and then run by Keras batch after batch
— `predict` over several batches, a second `predict`, `reset_state(s)`, a third — and by
reflstm from the saved file doing the same.
"""

import json

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from reflstm import cli

BATCH, TIMESTEPS, FEATURES = 3, 5, 2
TOLERANCE = {"float32": 2e-6, "float64": 1e-12}
FORMATS = {"keras3-keras": (3, "keras"), "keras3-h5": (3, "h5"), "tf_keras-h5": (2, "h5")}


def _input(k, dtype):
    return k.Input(batch_shape=(BATCH, TIMESTEPS, FEATURES), dtype=dtype)


def _lstm(k, dtype):
    """A masked stateful LSTM: the state carried out of a call is the one after its last unmasked step."""
    inp = _input(k, dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.LSTM(4, stateful=True, return_sequences=True, name="lstm", dtype=dtype)(x)
    return k.Model(inp, k.layers.TimeDistributed(k.layers.Dense(2, dtype=dtype), dtype=dtype)(x))


def _gru(k, dtype):
    """A Sequential stateful GRU (reset_after, two bias rows) reading the last step only."""
    return k.Sequential([
        _input(k, dtype),
        k.layers.GRU(4, stateful=True, name="gru", dtype=dtype),
        k.layers.Dense(2, activation="tanh", dtype=dtype),
    ])


def _simple_rnn(k, dtype):
    """A stateful SimpleRNN going backwards, with masks: its state runs from the last step back."""
    inp = _input(k, dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    y = k.layers.SimpleRNN(3, stateful=True, go_backwards=True, return_sequences=True,
                           name="simple", dtype=dtype)(x)
    return k.Model(inp, y)


def _bidirectional(k, dtype):
    """Bidirectional(stateful LSTM): each direction carries its own states."""
    inp = _input(k, dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    y = k.layers.Bidirectional(k.layers.LSTM(3, stateful=True, return_sequences=True, dtype=dtype),
                               name="bi", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(y))


def _stack(k, dtype):
    """Two stacked stateful LSTMs, a non-stateful GRU beside them."""
    inp = _input(k, dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.LSTM(5, stateful=True, return_sequences=True, name="first", dtype=dtype)(x)
    a = k.layers.LSTM(3, stateful=True, recurrent_activation="hard_sigmoid", name="second",
                      dtype=dtype)(x)
    b = k.layers.GRU(3, name="plain", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(k.layers.Concatenate(dtype=dtype)([a, b])))


MODELS = {"lstm": _lstm, "gru": _gru, "simple_rnn": _simple_rnn, "bidirectional": _bidirectional,
          "stack": _stack}


def build(name, keras_version, dtype="float32", seed=0):
    model = MODELS[name](keras_module(keras_version), dtype)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def inputs(seed, batches=2, dtype="float32"):
    """`batches` batches of sequences with right and left padding and a hole (Masking masks them)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batches * BATCH, TIMESTEPS, FEATURES))
    x[0, 3:] = 0
    x[1, :2] = 0
    x[-1, 2] = 0
    return x.astype(dtype)


def reset(model):
    """Keras 3's layer.reset_state(), tf_keras's model.reset_states()."""
    if hasattr(model, "reset_states"):
        model.reset_states()
    else:
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()


def keras_states(model):
    layers = [layer for layer in model.layers if getattr(layer, "stateful", False)]
    held = []
    for layer in layers:
        for part in (layer.forward_layer, layer.backward_layer) if hasattr(layer, "forward_layer") else (layer,):
            held += [np.asarray(s) for s in part.states]
    return held


def sequence(run, reset_model, xs):
    """Outputs of run(x1), run(x2), then reset, run(x3): the calls both sides make."""
    first, second = run(xs[0]), run(xs[1])
    reset_model()
    return [first, second, run(xs[2])]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{(name, format id): (path, Keras's outputs of the sequence, reflstm of the live model)}."""
    root = tmp_path_factory.mktemp("stateful")
    xs = [inputs(seed) for seed in (1, 2, 3)]
    cache = {}

    def get(name, fmt_id):
        if (name, fmt_id) not in cache:
            keras_version, fmt = FORMATS[fmt_id]
            model = build(name, keras_version)
            model.predict(inputs(9), batch_size=BATCH, verbose=0)  # saved while carrying states
            assert any(np.any(s) for s in keras_states(model))
            path = root / f"{name}-{fmt_id}.{fmt}"
            model.save(path)
            reset(model)
            run = lambda x: np.asarray(model.predict(x, batch_size=BATCH, verbose=0))  # noqa: E731
            first = run(xs[0])
            live = reflstm.Model.from_keras(model)  # carrying the states Keras carries now
            second = run(xs[1])
            reset(model)
            cache[(name, fmt_id)] = (path, [first, second, run(xs[2])], live, model)
        return cache[(name, fmt_id)]

    get.xs = xs
    return get


def assert_close(actual, expected, dtype="float32"):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("fmt_id", list(FORMATS))
@pytest.mark.parametrize("name", list(MODELS))
def test_successive_predicts_match_keras(saved, name, fmt_id):
    """Loaded with zero states; predict carries states batch to batch and call to call; reset_state zeros them."""
    path, expected, _, _ = saved(name, fmt_id)
    ref = reflstm.load(path)
    assert ref.batch_size == BATCH and ref.stateful_layers
    assert all(not np.any(s) for states in ref.states.values() for s in states)
    ours = sequence(ref.predict, ref.reset_state, saved.xs)
    for a, e in zip(ours, expected):
        assert_close(a, e)
    # The carried states matter: from zeros, the second batch and the second call come out otherwise.
    fresh = reflstm.load(path)
    assert np.abs(fresh.predict(saved.xs[0][BATCH:]) - expected[0][BATCH:]).max() > 1e-3
    assert np.abs(fresh.predict(saved.xs[1]) - expected[1]).max() > 1e-3


@pytest.mark.parametrize("name", ["lstm", "bidirectional", "stack"])
def test_live_model_carries_keras_states(saved, name):
    """Model.from_keras takes the states the live Keras model carries: its next predict is Keras's."""
    _, expected, live, _ = saved(name, "keras3-keras")
    assert any(np.any(s) for states in live.states.values() for s in states)
    assert_close(live.predict(saved.xs[1]), expected[1])


@pytest.mark.parametrize("fmt_id", ["keras3-keras", "tf_keras-h5"])
@pytest.mark.parametrize("name", ["stack", "bidirectional"])
def test_traces_carry_states_like_predict(saved, name, fmt_id):
    """trace is one call: batch after batch each trace starts from the last one's states (h0, c0),
    and its layer outputs are Keras's layer outputs in predict over those batches."""
    path, _, _, model = saved(name, fmt_id)
    keras_version = FORMATS[fmt_id][0]
    k = keras_module(keras_version)
    ref = reflstm.load(path)
    x = saved.xs[0]
    traces = [ref.trace(x[s : s + BATCH]) for s in range(0, len(x), BATCH)]
    layer_name = "second" if name == "stack" else "bi"
    layer = ref.layers[layer_name]
    first, later = (t[layer_name] for t in traces)
    if name == "stack":
        np.testing.assert_array_equal(later.h0, first.h[:, -1])  # the state at the last step
        assert not np.any(first.h0)
    else:
        np.testing.assert_array_equal(later.backward.c0, first.backward.c[:, -1])
    reset(model)
    intermediate = k.Model(model.inputs, model.get_layer(layer_name).output)
    expected = np.asarray(intermediate.predict(x, batch_size=BATCH, verbose=0))
    reset(model)
    ours = np.concatenate([layer.outputs_from_trace(t[layer_name])[0] for t in traces])
    assert_close(ours, expected)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["stack", "bidirectional", "gru"])
def test_float64_successive_calls_match_to_1e_12(name, keras_version, tmp_path):
    """Float64 stateful models agree with Keras's successive calls to ~1e-12."""
    model = build(name, keras_version, "float64")
    path = tmp_path / ("m.keras" if keras_version == 3 else "m.h5")
    model.save(path)
    ref = reflstm.load(path)
    xs = [inputs(seed, batches=1, dtype="float64") for seed in (1, 2, 3)]
    # Called eagerly: Keras's graph-mode predict rounds float64 at ~1e-8 (see the README).
    expected = sequence(lambda x: np.asarray(model(x, training=False)), lambda: reset(model), xs)
    for a, e in zip(sequence(ref.predict, ref.reset_state, xs), expected):
        assert a.dtype == np.float64
        assert_close(a, e, "float64")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
def test_initial_state_on_a_stateful_layer(keras_version, tmp_path):
    """A stateful decoder given an encoder's states: Keras 3 starts every call from them; tf_keras
    only while its carried states are all zeros (tf_keras base_rnn.py _process_inputs)."""
    k = keras_module(keras_version)
    source = k.Input(batch_shape=(BATCH, TIMESTEPS, FEATURES))
    target = k.Input(batch_shape=(BATCH, 3, 2))
    _, h, c = k.layers.LSTM(4, return_state=True, name="encoder")(source)
    y = k.layers.LSTM(4, stateful=True, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    model = k.Model([source, target], y)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(tmp_path / ("m.keras" if keras_version == 3 else "m.h5"))
    ref = reflstm.load(next(tmp_path.iterdir()))
    xs = [[inputs(seed, batches=1), rng.normal(size=(BATCH, 3, 2)).astype("float32")] for seed in (1, 2, 3)]
    expected = sequence(lambda x: np.asarray(model(x)), lambda: reset(model), xs)
    ours = sequence(ref.predict, ref.reset_state, xs)
    for a, e in zip(ours, expected):
        assert_close(a, e)
    fresh = reflstm.load(next(tmp_path.iterdir())).predict(xs[1])
    assert (np.abs(ours[1] - fresh).max() > 1e-3) == (keras_version == 2)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", ["lstm", "bidirectional"])
def test_gradients_from_the_carried_states(saved, name, keras_version):
    """Model.backward differentiates the next call from the carried states (TensorFlow's gradient),
    and leaves those states as they were."""
    import tensorflow as tf

    path, _, _, model = saved(name, "keras3-keras" if keras_version == 3 else "tf_keras-h5")
    ref = reflstm.load(path)
    reset(model)
    ref.predict(saved.xs[0])
    model.predict(saved.xs[0], batch_size=BATCH, verbose=0)
    x = saved.xs[1][:BATCH]
    d = np.random.default_rng(5).normal(size=(BATCH, TIMESTEPS, 2)).astype("float32")
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        y = model(x_tf, training=False)
        loss = tf.reduce_sum(y * tf.constant(d, y.dtype))
    expected = tape.gradient(loss, x_tf).numpy()
    before = {n: [s.copy() for s in states] for n, states in ref.states.items()}
    gradient = ref.backward(x, d)
    for n, states in ref.states.items():
        for a, b in zip(states, before[n]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5)
    assert_close(ref.predict(x), np.asarray(y))  # the call Keras made, from the same states
    reset(model)


def test_reset_state_names_and_layer_states(saved):
    """reset_state and tf_keras's reset_states zero every stateful layer; a layer resets alone too."""
    path, _, _, _ = saved("stack", "keras3-keras")
    ref = reflstm.load(path)
    assert ref.reset_states == ref.reset_state
    ref.predict(saved.xs[0])
    assert set(ref.states) == {"first", "second"}
    assert [s.shape for s in ref.layers["first"].states] == [(BATCH, 5), (BATCH, 5)]
    ref.layers["first"].reset_state()
    assert not np.any(ref.states["first"]) and np.any(ref.states["second"])
    ref.reset_states()
    assert not any(np.any(s) for states in ref.states.values() for s in states)
    assert ref.layers["plain"].states is None  # not stateful: nothing carried


def test_astype_keeps_the_carried_states(saved):
    """astype gives the same model in another dtype, carrying the same states."""
    path, expected, _, _ = saved("stack", "keras3-keras")
    ref = reflstm.load(path)
    ref.predict(saved.xs[0])
    wide = ref.astype("float64")
    assert wide.states["first"][1].dtype == np.float64
    np.testing.assert_allclose(wide.predict(saved.xs[1]), expected[1], atol=1e-5)


def test_batches_of_another_size_are_refused(saved):
    """A stateful model takes whole batches of its batch size only, refused before any state moves."""
    path, _, _, _ = saved("lstm", "keras3-keras")
    ref = reflstm.load(path)
    x = saved.xs[0]
    with pytest.raises(reflstm.ReflstmError, match="a multiple of 3 samples"):
        ref.predict(x[:4])
    with pytest.raises(reflstm.ReflstmError, match="batch_size: expected None or 3"):
        ref.predict(x, batch_size=6)
    with pytest.raises(reflstm.ReflstmError, match="expected 3 samples, the batch size"):
        ref.trace(x)
    with pytest.raises(reflstm.ReflstmError, match="expected 3 samples, the batch size"):
        ref.backward(x, np.ones((6, TIMESTEPS, 2), "float32"))
    assert not any(np.any(s) for states in ref.states.values() for s in states)


def test_a_failed_call_leaves_the_states(saved, monkeypatch):
    """A predict that fails in its second batch leaves the states where the last call left them."""
    path, _, _, _ = saved("lstm", "keras3-keras")
    ref = reflstm.load(path)
    ref.predict(saved.xs[0])
    before = [s.copy() for s in ref.states["lstm"]]
    run, calls = ref._run, []

    def fail_in_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("second batch")
        return run(*args, **kwargs)

    monkeypatch.setattr(ref, "_run", fail_in_second_batch)
    with pytest.raises(RuntimeError, match="second batch"):
        ref.predict(saved.xs[1])
    for a, b in zip(ref.states["lstm"], before):
        np.testing.assert_array_equal(a, b)


def test_stateful_layer_without_a_fixed_batch_size_is_refused(saved):
    """A stateful layer in a model whose input leaves the batch size open is refused, as Keras
    cannot build it; a batch size whose states exceed the weights' budget is refused unallocated."""
    _, _, _, model = saved("lstm", "keras3-keras")
    config = model.get_config()
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    config["layers"][0]["config"]["batch_shape"] = [None, TIMESTEPS, FEATURES]
    with pytest.raises(reflstm.ReflstmError, match="'lstm'.*fixes the batch size"):
        reflstm.Model({"class_name": "Functional", "config": config}, weights, 3)
    config["layers"][0]["config"]["batch_shape"] = [2**40, TIMESTEPS, FEATURES]
    with pytest.raises(reflstm.ReflstmError, match=r"states of the stateful layers \(batch size 1,099,511,627,776\)"
                       ".*max_weight_bytes"):
        reflstm.Model({"class_name": "Functional", "config": config}, weights, 3)


def test_shared_stateful_layer_is_refused():
    """A stateful layer called twice in one model is refused: which call's states carry on is not modelled."""
    k = keras_module(3)
    a, b = _input(k, "float32"), _input(k, "float32")
    shared = k.layers.LSTM(3, stateful=True, name="shared")
    model = k.Model([a, b], k.layers.Add()([shared(a), shared(b)]))
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    with pytest.raises(reflstm.ReflstmError, match="'shared'.*called once.*2 calls"):
        reflstm.Model({"class_name": "Functional", "config": model.get_config()}, weights, 3)


def test_bidirectional_directions_must_agree_on_stateful(saved):
    """A Bidirectional whose backward layer is not stateful when its forward one is is refused,
    as Keras's Bidirectional refuses it."""
    _, _, _, model = saved("bidirectional", "keras3-keras")
    config = model.get_config()
    entry = next(e for e in config["layers"] if e["class_name"] == "Bidirectional")
    backward = json.loads(json.dumps(entry["config"]["layer"]))
    backward["config"].update(stateful=False, go_backwards=True, name="backward_lstm")
    entry["config"]["backward_layer"] = backward
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    with pytest.raises(reflstm.ReflstmError, match="'bi'.*both stateful or both not"):
        reflstm.Model({"class_name": "Functional", "config": config}, weights, 3)


# --- the command line ------------------------------------------------------------------------


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt_id", ["keras3-keras", "tf_keras-h5"])
def test_cli_inspect_says_stateful(saved, fmt_id, capsys):
    """inspect shows a stateful model, names its stateful layers and batch size, and says commands start from zeros."""
    path, _, _, _ = saved("stack", fmt_id)
    code, out, err = run(capsys, "inspect", path)
    assert code == 0, err
    assert ("stateful: layers 'first', 'second' carry their states from one batch of 3 samples to the "
            "next; every command starts them at zero") in out
    assert "layer 'first': LSTM (stateful)" in out and "layer 'plain': GRU\n" in out
    assert "reflstm.LSTM(units=5" in out and "stateful" in out.split("LSTM 'first'")[1].split("\n")[0]


def test_cli_trace_and_verify_run_batch_after_batch(saved, capsys, tmp_path):
    """trace runs the input batch after batch from zero states, as predict; verify agrees with Keras."""
    path, _, _, _ = saved("bidirectional", "tf_keras-h5")
    x = saved.xs[0]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "t.npz"
    code, _, err = run(capsys, "trace", path, "--input", tmp_path / "x.npy", "--out", out)
    assert code == 0, err
    ref = reflstm.load(path)
    traces = [ref.trace(x[s : s + BATCH]) for s in range(0, len(x), BATCH)]
    np.testing.assert_array_equal(np.load(out)["bi/backward/c"],
                                  np.concatenate([t["bi"].backward.c for t in traces]))
    code, out_text, err = run(capsys, "verify", path, "--input", tmp_path / "x.npy")
    assert code == 0 and "OK: largest difference" in out_text, out_text + err
    code, _, err = run(capsys, "trace", path, "--input", tmp_path / "x.npy", "--out", out, "--chunk", "2")
    assert code == 2 and "--chunk: expected 3 or none, the batch size of this stateful model" in err
    np.save(tmp_path / "x4.npy", x[:4])
    code, _, err = run(capsys, "trace", path, "--input", tmp_path / "x4.npy", "--out", out)
    assert code == 2 and "expected a multiple of 3 samples" in err


def test_cli_explain_and_attribute_on_a_stateful_model(saved, capsys):
    """explain shows one batch from zero states (random input of the batch size); attribute is refused."""
    path, _, _, _ = saved("stack", "keras3-keras")
    code, out, err = run(capsys, "explain", path, "--layer", "second", "--step", "1", "--sample", "2")
    assert code == 0 and "sample 2, step 1" in out, err
    code, _, err = run(capsys, "attribute", path, "--input", path)
    assert code == 2 and "a model without stateful layers" in err and err.count("\n") == 1
    with pytest.raises(reflstm.ReflstmError, match="a Model without stateful layers"):
        reflstm.attribute(reflstm.load(path), saved.xs[0][:BATCH])
