"""Attribution over time steps and the forget-gate memory horizon."""

import numpy as np
import pytest

import reflstm
from keras_layers import call_keras, make_layer, random_weights
from trained_models import LAG, TIMESTEPS as LAG_TIMESTEPS, lag_task, trained_lag_model

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5


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


def test_gradient_matches_keras_gradient_tape():
    """The saliency of a final-h unit equals tf.GradientTape's gradient through the Keras layer."""
    import tensorflow as tf

    layer = make_layer(3, INPUT_DIM, UNITS, "float64", seed=3, return_state=True, go_backwards=True)
    x = inputs()
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        _, h, _ = layer(x_t)
        value = tf.reduce_sum(h[:, 1])
    expected = np.asarray(tape.gradient(value, x_t))
    a = reflstm.attribute(reflstm.LSTM.from_keras(layer), x, unit=1, method="gradient")
    np.testing.assert_allclose(a.values, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.target, call_keras(layer, x)[1][:, 1], rtol=1e-12)
    gxi = reflstm.attribute(reflstm.LSTM.from_keras(layer), x, unit=1, method="gradient_x_input")
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


@pytest.fixture(scope="module")
def lag_model():
    return trained_lag_model()


def test_attribution_finds_the_lag_the_task_depends_on(lag_model):
    """A Keras LSTM trained to predict step t from the input at t-2: every method puts t-2 first."""
    x, y = lag_task(64, seed=9)
    assert float(np.mean((lag_model.predict(x, verbose=0) - y) ** 2)) < 0.05  # it learned the task
    layer, dense = lag_model.get_layer("lstm"), lag_model.get_layer("readout")
    ref = reflstm.LSTM.from_keras(layer)
    readout = dense.get_weights()
    for method in ("gradient", "gradient_x_input", "integrated_gradients", "occlusion"):
        a = reflstm.attribute(ref, x, method=method, readout=readout)
        lags, shares = a.per_lag()
        assert lags[np.argmax(shares)] == LAG, (method, a.table())
    # Occlusion also runs on the whole model, read from Keras without TensorFlow in the loop.
    model = reflstm.Model.from_keras(lag_model)
    lags, shares = reflstm.attribute(model, x, method="occlusion").per_lag()
    assert lags[np.argmax(shares)] == LAG


def test_command_line(lag_model, tmp_path, capsys):
    """reflstm attribute prints the per-lag table (t-2 first here), writes .npz and a PNG."""
    from reflstm import cli

    path, x_path = tmp_path / "lag.keras", tmp_path / "x.npy"
    lag_model.save(path)
    np.save(x_path, lag_task(32, seed=10)[0])
    out, png = tmp_path / "a.npz", tmp_path / "a.png"
    assert cli.main(["attribute", str(path), "--input", str(x_path), "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "completeness" in text and "half-life" in text
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


def test_memory_horizon_of_a_loaded_model(tmp_path):
    """memory_horizon takes a loaded Model: forget gates computed from Keras's own h_t and weights."""
    from keras_layers import keras_module

    k = keras_module(3)
    inp = k.Input((TIMESTEPS, INPUT_DIM), dtype="float64")
    seq = k.layers.LSTM(UNITS, return_sequences=True, name="lstm", dtype="float64")(inp)
    model = k.Model(inp, k.layers.Dense(1, name="readout", dtype="float64")(seq))
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    x = inputs()
    h = np.asarray(k.Model(inp, seq)(x))  # Keras's h_t at every step
    kernel, recurrent, bias = model.get_layer("lstm").get_weights()
    f_columns = slice(UNITS, 2 * UNITS)
    h_prev = np.concatenate([np.zeros((BATCH, 1, UNITS)), h[:, :-1]], axis=1)
    f = 1 / (1 + np.exp(-(x @ kernel[:, f_columns] + h_prev @ recurrent[:, f_columns] + bias[f_columns])))
    expected = np.concatenate([np.cumprod(f[:, :0:-1], axis=1)[:, ::-1], np.ones((BATCH, 1, UNITS))], axis=1)
    horizon = reflstm.memory_horizon(reflstm.load(tmp_path / "m.keras"), x)
    np.testing.assert_allclose(horizon.retention, expected, rtol=1e-10)
    with pytest.raises(reflstm.ReflstmError, match="layer"):
        reflstm.memory_horizon(reflstm.load(tmp_path / "m.keras"), x, layer="readout")


def test_options_that_do_not_apply_are_refused():
    """mask or readout with a Model, readout with a function, and a non-boolean mask are refused."""
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
