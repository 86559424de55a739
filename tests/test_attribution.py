"""Attribution over time steps, for the LSTM, GRU and SimpleRNN, and the memory horizon (forget
gates of an LSTM, update gates of a GRU)."""

import numpy as np
import pytest

import reflstm
from keras_layers import call_keras, make_layer, random_cell_weights, random_weights
from trained_models import LAG, TIMESTEPS as LAG_TIMESTEPS, lag_task, trained_lag_model

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5
CELLS = ("LSTM", "GRU", "SimpleRNN")


def lstm(seed=0, **options):
    return reflstm.LSTM(*random_weights(np.random.default_rng(seed), INPUT_DIM, UNITS, "float64"), **options)


def inputs(seed=1):
    return np.random.default_rng(seed).normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))


def test_integrated_gradients_are_complete():
    """IG attributions add up to f(x) - f(baseline), closer with more path steps."""
    ref, x = lstm(), inputs()
    errors = [reflstm.attribute(ref, x, unit=2, steps=n).completeness_error for n in (16, 64, 256)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4, errors
    a = reflstm.attribute(ref, x, unit=2, steps=256)
    np.testing.assert_allclose(a.values.sum(axis=(1, 2)), a.target - a.baseline_target, atol=1e-3)


@pytest.mark.parametrize("kind", CELLS)
def test_gradient_matches_keras_gradient_tape(kind):
    """The saliency of a final-h unit equals tf.GradientTape's gradient through the Keras layer."""
    import tensorflow as tf

    layer = make_layer(3, INPUT_DIM, UNITS, "float64", seed=3, kind=kind, return_state=True, go_backwards=True)
    x = inputs()
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        h = layer(x_t)[1]
        value = tf.reduce_sum(h[:, 1])
    expected = np.asarray(tape.gradient(value, x_t))
    ref = getattr(reflstm, kind).from_keras(layer)
    a = reflstm.attribute(ref, x, unit=1, method="gradient")
    np.testing.assert_allclose(a.values, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.target, call_keras(layer, x)[1][:, 1], rtol=1e-12)
    gxi = reflstm.attribute(ref, x, unit=1, method="gradient_x_input")
    np.testing.assert_allclose(gxi.values, x * expected, rtol=1e-10, atol=1e-10)


def test_occlusion_is_the_change_in_output():
    """Occluding a window changes f by exactly what the window's cells add up to."""
    ref, x = lstm(return_state=True), inputs()
    a = reflstm.attribute(ref, x, unit=0, method="occlusion", window=2)
    hidden = x.copy()
    hidden[:, 2:4] = 0
    change = ref(x)[1][:, 0] - ref(hidden)[1][:, 0]
    np.testing.assert_allclose(a.values[:, 2:4].sum(axis=(1, 2)), change, rtol=1e-12)


def test_readout_target_is_the_dense_output():
    """With readout=(kernel, bias) the target is the Dense layer's output."""
    ref, x = lstm(return_state=True), inputs()
    rng = np.random.default_rng(4)
    kernel, bias = rng.normal(size=(UNITS, 3)), rng.normal(size=3)
    a = reflstm.attribute(ref, x, unit=2, method="gradient", readout=(kernel, bias))
    np.testing.assert_allclose(a.target, ref(x)[1] @ kernel[:, 2] + bias[2], rtol=1e-12)


def test_memory_horizon_is_the_product_of_forget_gates():
    """retention[t] = product of the forget gates after t; masked steps keep C (factor 1)."""
    ref, x = lstm(), inputs()
    mask = np.ones((BATCH, TIMESTEPS), bool)
    mask[0, 3] = False
    horizon = reflstm.memory_horizon(ref, x, mask=mask)
    f = ref.trace(x, mask=mask).f
    for t in range(TIMESTEPS):
        factors = np.where(mask[:, t + 1 :, None], f[:, t + 1 :], 1)
        np.testing.assert_allclose(horizon.retention[:, t], np.prod(factors, axis=1), rtol=1e-12)
    # By hand: zero weights give f = 1/2, so half of C is forgotten per step: half-life 1 step.
    zero = reflstm.LSTM(np.zeros((2, 12)), np.zeros((3, 12)), np.zeros(12))
    h = reflstm.memory_horizon(zero, np.ones((1, 5, 2)))
    np.testing.assert_allclose(h.retention[0, :, 0], [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1])
    np.testing.assert_allclose(h.half_life(), 1.0)


def test_function_target_and_whole_model_gradients():
    """A user function of the output, and a whole Model's output, through their exact gradients."""
    import tensorflow as tf

    from saved_models import build_model, model_inputs

    model = build_model("branches", 3, "float64", seed=2)
    x = model_inputs(model)
    ref = reflstm.Model.from_keras(model)
    # f(y) = y0 * y1 on the model's output (batch, 2): gradient (y1, y0).
    function = lambda y: (y[:, 0] * y[:, 1], np.stack([y[:, 1], y[:, 0]], axis=1))  # noqa: E731
    a = reflstm.attribute(ref, x, method="gradient", function=function)
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y = model(x_t, training=False)
        value = tf.reduce_sum(y[:, 0] * y[:, 1])
    np.testing.assert_allclose(a.values, np.asarray(tape.gradient(value, x_t)), rtol=1e-10, atol=1e-10)
    ig = reflstm.attribute(ref, x, unit=1, steps=128)
    assert ig.completeness_error < 1e-3


def test_bad_arguments_are_refused():
    """Unknown methods, bad units and baselines, and token-id inputs for gradients are refused."""
    ref, x = lstm(), inputs()
    with pytest.raises(reflstm.ReflstmError, match="method"):
        reflstm.attribute(ref, x, method="shap")
    with pytest.raises(reflstm.ReflstmError, match="unit"):
        reflstm.attribute(ref, x, unit=UNITS)
    with pytest.raises(reflstm.ReflstmError, match="baseline"):
        reflstm.attribute(ref, x, baseline=np.zeros((1, 2, 3)))
    from saved_models import build_model, model_inputs

    model = reflstm.Model.from_keras(build_model("embedding", 3))
    ids = model_inputs(build_model("embedding", 3))
    with pytest.raises(reflstm.ReflstmError, match="token ids"):
        reflstm.attribute(model, ids, method="gradient")
    lags, shares = reflstm.attribute(model, ids, method="occlusion").per_lag()  # occlusion works
    assert np.isclose(shares.sum(), 1.0)


@pytest.fixture(scope="module", params=CELLS)
def lag_model(request):
    """The forecaster of examples/forecast_lag.py with an LSTM, a GRU or a SimpleRNN."""
    return trained_lag_model(cell=request.param)


def recurrent_layer(model):
    """The trained model's recurrent layer, and its kind ("LSTM", "GRU" or "SimpleRNN")."""
    layer = model.layers[0]
    return layer, type(layer).__name__


def test_attribution_finds_the_lag_the_task_depends_on(lag_model):
    """A Keras LSTM, GRU or SimpleRNN trained to predict step t from the input at t-2: every
    method puts t-2 first."""
    x, y = lag_task(64, seed=9)
    assert float(np.mean((lag_model.predict(x, verbose=0) - y) ** 2)) < 0.05  # it learned the task
    (layer, kind), dense = recurrent_layer(lag_model), lag_model.get_layer("readout")
    ref = getattr(reflstm, kind).from_keras(layer)
    readout = dense.get_weights()
    for method in ("gradient", "gradient_x_input", "integrated_gradients", "occlusion"):
        a = reflstm.attribute(ref, x, method=method, readout=readout)
        lags, shares = a.per_lag()
        assert lags[np.argmax(shares)] == LAG, (method, a.table())
    # Occlusion also runs on the whole model, read from Keras without TensorFlow in the loop.
    model = reflstm.Model.from_keras(lag_model)
    lags, shares = reflstm.attribute(model, x, method="occlusion").per_lag()
    assert lags[np.argmax(shares)] == LAG


# What `reflstm attribute` says about the memory half-life of each kind of layer.
HALF_LIFE_LINES = {
    "LSTM": "LSTM layer 'lstm': forget-gate half-life per unit (steps back until half of C_t is forgotten): ",
    "GRU": "GRU layer 'gru': update-gate half-life per unit (steps back until half of h_t is replaced): ",
    "SimpleRNN": "no half-life: layer 'simplernn' is a SimpleRNN; a SimpleRNN has no gate that keeps its state",
}


def test_command_line(lag_model, tmp_path, capsys):
    """reflstm attribute prints the per-lag table (t-2 first here) and the layer's half-life (or
    that a SimpleRNN has none), writes .npz and a PNG."""
    from reflstm import cli

    name, kind = recurrent_layer(lag_model)[0].name, recurrent_layer(lag_model)[1]

    path, x_path = tmp_path / "lag.keras", tmp_path / "x.npy"
    lag_model.save(path)
    np.save(x_path, lag_task(32, seed=10)[0])
    out, png = tmp_path / "a.npz", tmp_path / "a.png"
    assert cli.main(["attribute", str(path), "--input", str(x_path), "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "completeness" in text and HALF_LIFE_LINES[kind] in text
    assert "t is the predicted step, 1 step after the last input step (input step 7, which is t-1)" in text
    assert f"largest: t-{LAG} (input step {LAG_TIMESTEPS - LAG})" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("t-")]
    assert rows[0][:2] == ["t-1", str(LAG_TIMESTEPS - 1)] and rows[LAG - 1][:2] == [f"t-{LAG}", str(LAG_TIMESTEPS - LAG)]
    feature_rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["0"], ["1"])]
    assert float(feature_rows[0][1].rstrip("%")) > 80, text  # the task reads feature 0 only
    saved = np.load(out)
    top = np.argmax(saved["shares"])
    assert saved["lags"][top] == LAG and saved["input_steps"][top] == LAG_TIMESTEPS - LAG
    assert "t is the predicted step" in str(saved["t"]) and int(saved["horizon"]) == 1
    assert saved["feature_lag_shares"].shape == (2, LAG_TIMESTEPS) and np.argmax(saved["feature_shares"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    for method in ("occlusion", "gradient"):
        assert cli.main(["attribute", str(path), "--input", str(x_path), "--method", method]) == 0
    assert cli.main(["attribute", str(path), "--input", str(x_path), "--layer", "nope"]) == 2
    assert "--layer" in capsys.readouterr().err
    assert cli.main(["attribute", str(path), "--input", str(x_path), "--layer", name, "--method", "gradient"]) == 0
    text = capsys.readouterr().out
    assert f"attribution of {kind} layer {name!r} final hidden unit 0" in text and HALF_LIFE_LINES[kind] in text
    assert cli.main(["attribute", str(path), "--input", str(x_path), "--horizon", "3"]) == 0
    text = capsys.readouterr().out
    assert "3 steps after the last input step (input step 7, which is t-3)" in text
    assert f"largest: t-{LAG + 2} (input step {LAG_TIMESTEPS - LAG})" in text


def test_command_line_refuses_options_of_other_methods(lag_model, tmp_path, capsys):
    """--window without occlusion, --steps without integrated gradients, a negative horizon: exit 2."""
    from reflstm import cli

    path, x_path = tmp_path / "lag.keras", tmp_path / "x.npy"
    lag_model.save(path)
    np.save(x_path, lag_task(4, seed=10)[0])
    for extra, words in [(["--window", "2"], "--window"), (["--steps", "8", "--method", "occlusion"], "--steps"),
                         (["--horizon", "-1"], "--horizon")]:
        assert cli.main(["attribute", str(path), "--input", str(x_path), *extra]) == 2, extra
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and words in err, (extra, err)


def test_plot_without_matplotlib_fails_before_any_work(tmp_path, capsys, monkeypatch):
    """attribute --plot says matplotlib is missing before reading the model or printing a table."""
    import sys

    from reflstm import cli

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    png = tmp_path / "a.png"
    code = cli.main(["attribute", str(tmp_path / "no-model.keras"), "--input", str(tmp_path / "none.npy"),
                     "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("reflstm attribute: matplotlib:") and not png.exists()


def test_lags_are_counted_from_the_predicted_step():
    """Input step s of T is lag t-(T-1-s+H): the last input step is t-1 by default, t with horizon 0."""
    ref, x = lstm(return_state=True), inputs()
    a = reflstm.attribute(ref, x, method="gradient")
    lags, shares = a.per_lag()
    np.testing.assert_array_equal(lags, np.arange(1, TIMESTEPS + 1))
    assert [a.step_of_lag(lag) for lag in (1, TIMESTEPS)] == [TIMESTEPS - 1, 0]
    by_step = np.abs(a.values).sum(axis=2)  # (batch, timesteps)
    np.testing.assert_allclose(shares, (by_step / by_step.sum(axis=1, keepdims=True)).mean(axis=0)[::-1])
    now = reflstm.attribute(ref, x, method="gradient", horizon=0)
    assert now.per_lag()[0][0] == 0 and now.table().splitlines()[2].split()[:2] == ["t", str(TIMESTEPS - 1)]
    assert "t is the last input step" in now.table()
    three = reflstm.attribute(ref, x, method="gradient", horizon=3)
    assert three.table().splitlines()[2].split()[:2] == ["t-3", str(TIMESTEPS - 1)]
    with pytest.raises(reflstm.ReflstmError, match="horizon"):
        reflstm.attribute(ref, x, horizon=-1)


def test_shares_per_feature_and_lag_add_up():
    """per_feature_lag's rows add up to per_feature, its columns to per_lag, and all to 1."""
    ref, x = lstm(return_state=True), inputs()
    a = reflstm.attribute(ref, x, unit=1, method="gradient_x_input")
    features, lags, shares = a.per_feature_lag()
    assert shares.shape == (INPUT_DIM, TIMESTEPS) and list(features) == list(range(INPUT_DIM))
    np.testing.assert_allclose(shares.sum(axis=1), a.per_feature()[1], rtol=1e-12)
    np.testing.assert_allclose(shares.sum(axis=0), a.per_lag()[1], rtol=1e-12)
    assert np.isclose(shares.sum(), 1.0)
    size = np.abs(a.values)  # by hand, for feature 2 at the last input step (lag t-1)
    by_hand = (size[:, -1, 2] / size.sum(axis=(1, 2))).mean()
    np.testing.assert_allclose(shares[2, 0], by_hand, rtol=1e-12)
    assert a.feature_table().splitlines()[0].split()[:4] == ["feature", "share", "t-1", "t-2"]


def test_options_of_other_methods_are_refused():
    """steps is integrated gradients' own, window occlusion's own: given elsewhere, refused."""
    ref, x = lstm(), inputs()
    with pytest.raises(reflstm.ReflstmError, match="window"):
        reflstm.attribute(ref, x, window=2)
    with pytest.raises(reflstm.ReflstmError, match="steps"):
        reflstm.attribute(ref, x, method="occlusion", steps=8)
    with pytest.raises(reflstm.ReflstmError, match="steps"):
        reflstm.attribute(ref, x, steps=0)


# The gate whose product is the retention, and its columns in the layer's weights.
KEEPING_GATE_COLUMNS = {"LSTM": slice(UNITS, 2 * UNITS), "GRU": slice(0, UNITS)}  # f of ifco; z of zrh


@pytest.mark.parametrize("kind", list(KEEPING_GATE_COLUMNS))
def test_memory_horizon_of_a_loaded_model(kind, tmp_path):
    """memory_horizon takes a loaded Model: the retention is the product of the forget (LSTM) or
    update (GRU) gates computed from Keras's own h_t and weights; its first LSTM or GRU is taken
    past a SimpleRNN, which is refused by name."""
    from keras_layers import keras_module

    k = keras_module(3)
    inp = k.Input((TIMESTEPS, INPUT_DIM), dtype="float64")
    simple = k.layers.SimpleRNN(2, name="simple", dtype="float64")(inp)
    seq = getattr(k.layers, kind)(UNITS, return_sequences=True, name="gated", dtype="float64")(inp)
    readout = k.layers.Dense(1, name="readout", dtype="float64")
    model = k.Model(inp, [readout(seq), simple])
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    x = inputs()
    h = np.asarray(k.Model(inp, seq)(x))  # Keras's h_t at every step
    kernel, recurrent, bias = model.get_layer("gated").get_weights()
    columns = KEEPING_GATE_COLUMNS[kind]
    bias = np.atleast_2d(bias).sum(axis=0)  # a GRU's input and recurrent bias add up in z
    h_prev = np.concatenate([np.zeros((BATCH, 1, UNITS)), h[:, :-1]], axis=1)
    gate = 1 / (1 + np.exp(-(x @ kernel[:, columns] + h_prev @ recurrent[:, columns] + bias[columns])))
    expected = np.concatenate([np.cumprod(gate[:, :0:-1], axis=1)[:, ::-1], np.ones((BATCH, 1, UNITS))], axis=1)
    loaded = reflstm.load(tmp_path / "m.keras")
    horizon = reflstm.memory_horizon(loaded, x)
    np.testing.assert_allclose(horizon.retention, expected, rtol=1e-10)
    assert horizon.gate == {"LSTM": "f", "GRU": "z"}[kind]
    with pytest.raises(reflstm.ReflstmError, match="layer"):
        reflstm.memory_horizon(loaded, x, layer="readout")
    with pytest.raises(reflstm.ReflstmError, match="'simple', a SimpleRNN"):
        reflstm.memory_horizon(loaded, x, layer="simple")


def test_memory_horizon_of_a_gru_is_the_product_of_update_gates():
    """Zero kernels and a constant bias make z constant: retention is z^k exactly, k steps back;
    a masked step keeps h (factor 1)."""
    units = 2
    bias = np.zeros((2, 3 * units))
    bias[0, :units] = np.log([3.0, 1.0])  # z = σ(log 3) = 3/4 in unit 0, σ(0) = 1/2 in unit 1
    bias[1, :units] = [0.0, 0.0]
    bias[:, units:] = [[0.4, -0.3, 0.2, 0.7], [-0.5, 0.1, 0.6, -0.2]]  # r and h̃: no effect on z
    gru = reflstm.GRU(np.zeros((3, 3 * units)), np.zeros((units, 3 * units)), bias)
    x = np.random.default_rng(2).normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 1, 1]], bool)
    horizon = reflstm.memory_horizon(gru, x, mask=mask)
    k = np.arange(4, -1, -1)[:, None]  # steps after t
    np.testing.assert_allclose(horizon.retention[0], [3 / 4, 1 / 2] ** k, rtol=1e-14)
    masked_k = np.array([3, 2, 2, 1, 0])[:, None]  # step 2 is masked: it counts 1 for the steps before it
    np.testing.assert_allclose(horizon.retention[1], [3 / 4, 1 / 2] ** masked_k, rtol=1e-14)
    assert horizon.gate == "z"
    # unit 0: 0.75^3 < 1/2 < 0.75^2, reached 3 steps back, or 4 across the masked step; unit 1: 1 step back
    np.testing.assert_allclose(horizon.half_life(), [(3 + 4) / 2, 1])


def test_memory_horizon_of_a_simple_rnn_is_refused():
    """A SimpleRNN has no gate that keeps its state: memory_horizon refuses it and says why."""
    rnn = reflstm.SimpleRNN(*random_cell_weights(np.random.default_rng(0), "SimpleRNN", INPUT_DIM, UNITS, "float64"))
    with pytest.raises(reflstm.ReflstmError, match="SimpleRNN has no gate that keeps its state"):
        reflstm.memory_horizon(rnn, inputs())


def test_options_that_do_not_apply_are_refused():
    """mask or readout with a Model, readout with a function, a non-boolean mask and a stateful
    layer are refused."""
    from saved_models import build_model, model_inputs

    model = reflstm.Model.from_keras(build_model("lstm_stack", 3))
    x = model_inputs(build_model("lstm_stack", 3))
    with pytest.raises(reflstm.ReflstmError, match="mask / readout"):
        reflstm.attribute(model, x, mask=np.ones(x.shape[:2], bool))
    ref, xs = lstm(), inputs()
    with pytest.raises(reflstm.ReflstmError, match="readout"):
        reflstm.attribute(ref, xs, function=lambda y: (y[:, 0], y * 0), readout=(np.eye(UNITS), np.zeros(UNITS)))
    with pytest.raises(reflstm.ReflstmError, match="mask"):
        reflstm.attribute(ref, xs, method="gradient", mask=np.full(xs.shape[:2], 2.0))
    with pytest.raises(reflstm.ReflstmError, match="stateful"):  # its output would depend on earlier calls
        reflstm.attribute(lstm(stateful=True), xs, method="gradient")
