"""BatchNormalization, LayerNormalization, Reshape and Permute in saved models, against Keras.

Models are built in Keras 3 and tf_keras with random weights (the moving variances positive),
saved as .keras and .h5, and loaded by reflstm: predict and every layer's output equal Keras's,
and Model.backward equals tf.GradientTape.
"""

import numpy as np
import pytest

import reflstm
from keras_layers import TOLERANCE, keras_module
from saved_models import FEATURES, TIMESTEPS, model_inputs
from layer_checks import assert_every_layer_matches_keras
from test_files import FORMAT_IDS, FORMATS, assert_close, keras_eager, keras_predict, save
from test_model_backward import assert_backward_matches_tape, tape_gradients

GRADIENT_TOLERANCE = 1e-10


def _norm_stack(k, dtype):
    """Masked steps through LayerNormalization and BatchNormalization into an LSTM."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.LSTM(5, return_sequences=True, name="first", dtype=dtype)(x)
    x = k.layers.LayerNormalization(name="layer_norm", dtype=dtype)(x)
    x = k.layers.LSTM(4, return_sequences=True, name="second", dtype=dtype)(x)
    x = k.layers.BatchNormalization(name="batch_norm", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, name="out", dtype=dtype)(x))


def _masked_batch_norm(k, dtype):
    """Masking -> LSTM -> BatchNormalization(center=False) -> LSTM: the mask passes BN."""
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES), dtype=dtype),
        k.layers.Masking(dtype=dtype),
        k.layers.LSTM(5, return_sequences=True, name="first", dtype=dtype),
        k.layers.BatchNormalization(center=False, epsilon=1e-2, name="batch_norm", dtype=dtype),
        k.layers.LSTM(3, name="last", dtype=dtype),
        k.layers.Dense(2, name="out", dtype=dtype),
    ])


def _norm_options(k, dtype):
    """BatchNormalization over the steps (axis=1, scale=False); LayerNormalization over two axes,
    without beta, and with an epsilon below the one tf_keras fuses."""
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES), dtype=dtype),
        k.layers.LSTM(4, return_sequences=True, name="lstm", dtype=dtype),
        k.layers.BatchNormalization(axis=1, scale=False, name="over_steps", dtype=dtype),
        k.layers.LayerNormalization(axis=[1, 2], center=False, name="two_axes", dtype=dtype),
        k.layers.LayerNormalization(scale=False, epsilon=1e-6, name="small_epsilon", dtype=dtype),
        k.layers.Dense(2, name="out", dtype=dtype),
    ])


def _reshape_permute(k, dtype):
    """Dense -> Reshape(-1, 8) -> Permute -> LSTM -> Reshape -> Dense."""
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES), dtype=dtype),
        k.layers.Dense(4, name="dense", dtype=dtype),
        k.layers.Reshape((-1, 8), name="reshape", dtype=dtype),
        k.layers.Permute((2, 1), name="permute", dtype=dtype),
        k.layers.LSTM(3, return_sequences=True, name="lstm", dtype=dtype),
        k.layers.Reshape((4, 6), name="regroup", dtype=dtype),
        k.layers.Dense(2, name="out", dtype=dtype),
    ])


MODELS = {
    "norm_stack": _norm_stack,
    "masked_batch_norm": _masked_batch_norm,
    "norm_options": _norm_options,
    "reshape_permute": _reshape_permute,
}


def build(name, keras_version, dtype="float32", seed=0):
    """Keras model `name` with random weights; moving variances drawn positive, away from zero."""
    model = MODELS[name](keras_module(keras_version), dtype)
    rng = np.random.default_rng(seed)
    model.set_weights([
        rng.uniform(0.3, 2.0, w.shape) if "moving_variance" in w.name else rng.normal(0, 0.5, w.shape)
        for w in model.weights
    ])
    return model



@pytest.mark.parametrize("keras_version, fmt", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_saved_model_and_every_layer_match_keras(name, keras_version, fmt, tmp_path):
    """predict and each layer's output equal Keras's from the saved file."""
    model = build(name, keras_version)
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    assert_every_layer_matches_keras(model, ref, model_inputs(model), keras_version, "float32")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", list(MODELS))
def test_float64_models_match_to_1e_12(name, keras_version, tmp_path):
    """Saved float64 models agree with Keras called eagerly to ~1e-12, every layer too."""
    model = build(name, keras_version, "float64")
    ref = reflstm.load(save(model, tmp_path, keras_version, "keras" if keras_version == 3 else "h5"))
    assert_every_layer_matches_keras(model, ref, model_inputs(model), keras_version, "float64")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_match_gradient_tape(name, keras_version):
    """Model.backward through the normalisations, Reshape and Permute equals tf.GradientTape (float64)."""
    model = build(name, keras_version, "float64", seed=1)
    x = model_inputs(model)
    assert_backward_matches_tape(model, x, GRADIENT_TOLERANCE)


def test_rms_scaling_layer_norm_matches_keras_3():
    """Keras 3's deprecated rms_scaling divides by sqrt(variance + epsilon) and has no beta."""
    import keras

    with pytest.warns(UserWarning, match="rms_scaling"):
        layer = keras.layers.LayerNormalization(rms_scaling=True, dtype="float64")
    model = keras.Sequential([keras.Input((TIMESTEPS, FEATURES), dtype="float64"), layer])
    model.set_weights([np.random.default_rng(0).normal(size=(FEATURES,))])
    x = model_inputs(model)
    ref = reflstm.Model.from_keras(model)
    np.testing.assert_allclose(ref.predict(x), keras_eager(model, x), rtol=TOLERANCE["float64"],
                               atol=TOLERANCE["float64"])
    (expected,) = tape_gradients(model, x, [np.cos(np.arange(x.size)).reshape(x.shape)])
    np.testing.assert_allclose(ref.backward(x, np.cos(np.arange(x.size)).reshape(x.shape)), expected,
                               rtol=GRADIENT_TOLERANCE, atol=GRADIENT_TOLERANCE)


def _config(layer):
    """A one-layer Sequential config around a Keras 3 layer's config, and its weights."""
    import keras

    model = keras.Sequential([keras.Input((TIMESTEPS, 4)), layer])
    return {"class_name": "Sequential", "config": model.get_config()}, {layer.name: layer.get_weights()}


def _refusal(layer, field, value):
    config, weights = _config(layer)
    config["config"]["layers"][1]["config"][field] = value
    with pytest.raises(reflstm.ReflstmError) as raised:
        reflstm.Model(config, weights, 3)
    return str(raised.value)


@pytest.mark.parametrize("field, value, words", [
    ("renorm", True, "renorm=False"),
    ("virtual_batch_size", 2, "virtual_batch_size=None"),
    ("axis", [1, 2], "one axis"),
    ("axis", True, "an axis or a list"),
    ("epsilon", -1e-3, "a positive number"),
], ids=["renorm", "virtual_batch_size", "two_axes", "boolean_axis", "negative_epsilon"])
def test_batch_norm_options_not_modelled_are_refused(field, value, words):
    """A BatchNormalization field reflstm does not model, or out of bounds, is refused by name."""
    import keras

    assert words in _refusal(keras.layers.BatchNormalization(), field, value)


@pytest.mark.parametrize("layer, field, value, words", [
    ("Reshape", "target_shape", [-1, -1], "at most one -1"),
    ("Reshape", "target_shape", [2**40, 1], "below 2**31"),
    ("Reshape", "target_shape", list(range(1, 40)), "at most 32"),
    ("Permute", "dims", [1, 3], "a permutation"),
    ("Permute", "dims", [True, 2], "a permutation"),
    ("LayerNormalization", "axis", [-1, -1], "distinct axes"),
    ("LayerNormalization", "axis", 10**9, "integers from -32"),
], ids=["two_inferred", "huge_size", "too_many_axes", "not_a_permutation", "boolean_dim",
        "repeated_axis", "huge_axis"])
def test_shape_fields_out_of_bounds_are_refused(layer, field, value, words):
    """Sizes, axes and permutations a file declares are typed and bounded before anything runs."""
    import keras

    made = {"Reshape": lambda: keras.layers.Reshape((4, 6)), "Permute": lambda: keras.layers.Permute((2, 1)),
            "LayerNormalization": lambda: keras.layers.LayerNormalization()}[layer]()
    assert words in _refusal(made, field, value)


def test_tf_keras_reshape_refuses_a_mask():
    """tf_keras's Reshape does not support masking: a mask reaching it is refused, not dropped."""
    from reflstm.models.reshaping import Reshape

    x = np.ones((2, 3, 4))
    with pytest.raises(reflstm.ReflstmError, match="does not support masking"):
        Reshape("reshape", (12,), 2)([x], [np.ones((2, 3), bool)])


def test_keras_3_reshape_ends_the_mask():
    """Keras 3's Reshape does not support masking: its output has no mask."""
    from reflstm.models.reshaping import Reshape

    x = np.arange(24.0).reshape(2, 3, 4)
    (y,), (mask,) = Reshape("reshape", (4, 3), 3)([x], [np.ones((2, 3), bool)])
    assert mask is None and y.shape == (2, 4, 3)


def test_keras_3_model_runs_unmasked_after_permute(tmp_path):
    """In a Keras 3 model the LSTM after a Permute runs every step: the mask ended there."""
    import keras

    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)), keras.layers.Masking(),
        keras.layers.LSTM(4, return_sequences=True), keras.layers.Permute((1, 2)), keras.layers.LSTM(3),
    ])
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape) for w in model.get_weights()])
    x = model_inputs(model)
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    assert_close([ref.predict(x)], keras_predict(model, x), "float32")


def test_tf_keras_batch_norm_of_4d_inputs_is_refused():
    """tf_keras fuses batch normalisation of 4-D inputs (another association): refused, not guessed."""
    from reflstm.models.normalization import BatchNormalization

    ones = np.ones(3)
    layer = BatchNormalization("bn", -1, 1e-3, ones, ones, ones, ones, 2)
    with pytest.raises(reflstm.ReflstmError, match="fuses"):
        layer([np.ones((2, 4, 5, 3))], [None])
