"""Conv1D, pooling and the 1-D shape layers (reflstm.models.conv) against Keras 3 and tf_keras:
saved models around recurrent layers, every layer's output, and gradients against GradientTape."""

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from reflstm.models.conv import AveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from saved_models import CONV_MODELS, build_model, model_inputs
from layer_checks import assert_every_layer_matches_keras
from test_files import FORMAT_IDS, FORMATS, keras_eager, save
from test_model_backward import assert_backward_matches_tape, tape_gradients

GRADIENT_TOLERANCE = 1e-10  # float64, through every layer of the model
KERAS = [3, 2]
KERAS_IDS = ["keras3", "tf_keras"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("keras_version, fmt", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("name", list(CONV_MODELS))
def test_saved_model_and_every_layer_match_keras(name, keras_version, fmt, dtype, tmp_path):
    """predict and every layer's output equal Keras's, read back from the saved file."""
    model = build_model(name, keras_version, dtype)
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    assert_every_layer_matches_keras(model, ref, model_inputs(model), keras_version, dtype)


@pytest.mark.parametrize("keras_version", KERAS, ids=KERAS_IDS)
@pytest.mark.parametrize("name", list(CONV_MODELS))
def test_model_gradients_match_gradient_tape(name, keras_version):
    """Model.backward through Conv1D, pooling, padding, cropping and upsampling equals GradientTape."""
    model = build_model(name, keras_version, "float64", seed=1)
    x = model_inputs(model)
    assert_backward_matches_tape(model, x, GRADIENT_TOLERANCE)


# --- one layer at a time, against the live Keras layer ----------------------------------------

LAYERS = {
    "conv_valid": ("Conv1D", dict(filters=4, kernel_size=3)),
    "conv_same_even_kernel": ("Conv1D", dict(filters=3, kernel_size=4, padding="same")),
    "conv_same_strides_3": ("Conv1D", dict(filters=3, kernel_size=2, strides=3, padding="same")),
    "conv_causal_dilated": ("Conv1D", dict(filters=2, kernel_size=3, padding="causal", dilation_rate=3)),
    "conv_causal_strided": ("Conv1D", dict(filters=3, kernel_size=4, padding="causal", strides=2)),
    "conv_same_dilated": ("Conv1D", dict(filters=2, kernel_size=2, padding="same", dilation_rate=2)),
    "conv_strided_no_bias": ("Conv1D", dict(filters=3, kernel_size=2, strides=2, use_bias=False)),
    "conv_groups_3": ("Conv1D", dict(filters=6, kernel_size=2, groups=3, activation="tanh")),
    "max_pool_overlapping": ("MaxPooling1D", dict(pool_size=3, strides=1)),
    "max_pool_same": ("MaxPooling1D", dict(pool_size=2, strides=3, padding="same")),
    "average_pool_same": ("AveragePooling1D", dict(pool_size=4, strides=2, padding="same")),
    "average_pool_valid": ("AveragePooling1D", dict(pool_size=2)),
    "global_max": ("GlobalMaxPooling1D", dict()),
    "global_average_keepdims": ("GlobalAveragePooling1D", dict(keepdims=True)),
    "zero_padding": ("ZeroPadding1D", dict(padding=(0, 3))),
    "cropping": ("Cropping1D", dict(cropping=(2, 0))),
    "up_sampling": ("UpSampling1D", dict(size=3)),
}


def one_layer_model(keras_version, kind, options, x, seed=3):
    """A Keras model of one layer on inputs like `x` (float64), its weights random and distinct."""
    k = keras_module(keras_version)
    inp = k.Input(x.shape[1:], dtype="float64")
    model = k.Model(inp, getattr(k.layers, kind)(dtype="float64", **options)(inp))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.2, 0.5, w.shape) for w in model.get_weights()])
    return model


def tied_inputs(seed=5):
    """(3, 9, 6) float64 with exact ties along the steps, where max pooling must pick one step."""
    x = np.random.default_rng(seed).normal(size=(3, 9, 6))
    x[0, 3] = x[0, 4] = x[0, 5]  # three tied steps
    x[1, :4, :2] = 1.5  # ties within and across windows
    return x


@pytest.mark.parametrize("keras_version", KERAS, ids=KERAS_IDS)
@pytest.mark.parametrize("case", list(LAYERS))
def test_one_layer_and_its_gradient_match_keras(case, keras_version):
    """Each option of each layer, forward to 1e-12 and gradient to 1e-10 (ties as TensorFlow)."""
    kind, options = LAYERS[case]
    x = tied_inputs()
    model = one_layer_model(keras_version, kind, options, x)
    ref = reflstm.Model.from_keras(model)
    np.testing.assert_allclose(ref.predict(x), keras_eager(model, x), rtol=1e-12, atol=1e-12)
    assert_backward_matches_tape(model, x, GRADIENT_TOLERANCE)


def test_max_pooling_gradient_goes_to_the_first_tied_step():
    """Hand-derived: windows [1 3 3], [3 3 2], [3 2 3], [2 3 0] send their gradient to steps 1, 1, 2, 4."""
    layer = MaxPooling1D("pool", pool_size=3, strides=1, padding="valid")
    x = np.array([1.0, 3, 3, 2, 3, 0])[None, :, None]
    (dx,) = layer.vjp([x], [None], [np.ones((1, 4, 1))])
    np.testing.assert_array_equal(dx.ravel(), [0, 2, 1, 0, 1, 0])


def test_global_max_pooling_shares_the_gradient_among_ties():
    """Hand-derived: three tied maxima get a third each, as tf.reduce_max's gradient gives."""
    layer = GlobalMaxPooling1D("pool", keepdims=False)
    x = np.array([1.0, 3, 3, 2, 3, 0])[None, :, None]
    (dx,) = layer.vjp([x], [None], [np.ones((1, 1))])
    np.testing.assert_allclose(dx.ravel(), [0, 1 / 3, 1 / 3, 0, 1 / 3, 0], rtol=1e-15)


def test_average_pooling_same_divides_by_real_steps():
    """Hand-derived: "same" windows at the edges average only the steps they cover."""
    layer = AveragePooling1D("pool", pool_size=3, strides=1, padding="same")
    x = np.array([3.0, 6, 9, 12])[None, :, None]
    (y,), _ = layer([x], [None])
    np.testing.assert_allclose(y.ravel(), [4.5, 6, 9, 10.5], rtol=1e-15)


@pytest.mark.parametrize("keras_version", KERAS, ids=KERAS_IDS)
def test_layers_without_masking_end_the_mask(keras_version):
    """A masked input to Conv1D reaches the LSTM unmasked, as in Keras (Keras 3 warns, tf_keras not)."""
    model = build_model("conv_lstm", keras_version, "float64")
    x = model_inputs(model)
    ref = reflstm.Model.from_keras(model)
    record = []
    ref._run(ref._inputs(x), traces=None, record=record)
    masks_into = {key[0]: masks[0] for key, node, arrays, masks, _ in record}
    assert masks_into["conv"] is not None and masks_into["lstm"] is None
    np.testing.assert_allclose(ref.predict(x), keras_eager(model, x), rtol=1e-12, atol=1e-12)


# --- configs reflstm refuses --------------------------------------------------------------------


def one_layer_config(kind, config):
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 6, 4]}},
        {"class_name": kind, "config": {"name": "layer", **config}},
    ]}}


REFUSED = {
    "channels_first": ("MaxPooling1D", dict(data_format="channels_first"), "channels_last"),
    "huge_upsampling": ("UpSampling1D", dict(size=10**9), "at most 1,000,000"),
    "huge_padding": ("ZeroPadding1D", dict(padding=[0, 10**9]), "at most 1,000,000"),
    "huge_dilated_kernel": ("Conv1D", dict(filters=2, kernel_size=[1000], dilation_rate=[10**4]),
                            "dilated kernel of at most"),
    "groups_not_dividing_filters": ("Conv1D", dict(filters=5, kernel_size=2, groups=2), "a divisor of filters"),
    "string_strides": ("AveragePooling1D", dict(pool_size=2, strides="2"), "an integer"),
    "zero_pool_size": ("MaxPooling1D", dict(pool_size=[0]), "at least 1"),
    "unknown_padding": ("Conv1D", dict(filters=2, kernel_size=2, padding="full"), "'causal'"),
    "three_croppings": ("Cropping1D", dict(cropping=[1, 1, 1]), "a list of 2"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_configs_out_of_bounds_are_refused(case):
    """Fields a file declares are typed and bounded before any array is allocated."""
    kind, config, message = REFUSED[case]
    with pytest.raises(reflstm.ReflstmError, match=message):
        reflstm.Model(one_layer_config(kind, config), {}, 3)


def test_inputs_too_short_for_the_window_are_refused():
    """A "valid" window longer than the input is refused by the layer's name, not an empty array."""
    layer = MaxPooling1D("pool", pool_size=5, strides=1, padding="valid")
    with pytest.raises(reflstm.ReflstmError, match="layer 'pool'.*at least 5 steps"):
        layer([np.zeros((1, 4, 2))], [None])


@pytest.mark.parametrize("keras_version", KERAS, ids=KERAS_IDS)
def test_attribution_through_conv_and_pooling_matches_gradient_tape(keras_version):
    """reflstm.attribute on a Conv1D -> LSTM model: the gradient of one output unit, as GradientTape's."""
    model = build_model("conv_lstm", keras_version, "float64", seed=2)
    x = model_inputs(model)
    attribution = reflstm.attribute(reflstm.Model.from_keras(model), x, unit=1, method="gradient")
    d_output = np.zeros((len(x), 2))
    d_output[:, 1] = 1
    (expected,) = tape_gradients(model, x, [d_output])
    np.testing.assert_allclose(attribution.values, expected, rtol=GRADIENT_TOLERANCE, atol=GRADIENT_TOLERANCE)
