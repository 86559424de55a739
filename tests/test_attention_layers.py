"""Attention, AdditiveAttention and Dot in whole saved models, against Keras 3 and tf_keras.

Each model is a seq2seq-style graph around LSTMs over masked inputs (padding and holes), built
in the real Keras with random weights (the attention scales too), saved, and loaded by reflstm.
"""

import numpy as np
import pytest

import reflstm
from keras_layers import keras_module
from saved_models import FEATURES, TIMESTEPS, model_inputs
from layer_checks import assert_every_layer_matches_keras
from test_files import FORMAT_IDS, FORMATS, assert_close, keras_predict, save
from test_model_backward import assert_backward_matches_tape

TARGET_STEPS = 4
GRADIENT_TOLERANCE = 1e-10


def _encoder_decoder(k, dtype):
    """Masked source and target, each read by an LSTM returning sequences."""
    source = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    target = k.Input((TARGET_STEPS, 2), dtype=dtype)
    encoder = k.layers.LSTM(5, return_sequences=True, name="encoder", dtype=dtype)(k.layers.Masking(dtype=dtype)(source))
    decoder = k.layers.LSTM(5, return_sequences=True, name="decoder", dtype=dtype)(k.layers.Masking(dtype=dtype)(target))
    return [source, target], encoder, decoder


def _luong(k, dtype):
    """Attention([decoder, encoder]) joined to the decoder, then an LSTM that reads the query mask."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    context = k.layers.Attention(name="attention", dtype=dtype)([decoder, encoder])
    joined = k.layers.Concatenate(dtype=dtype)([decoder, context])
    y = k.layers.LSTM(3, return_sequences=True, name="reader", dtype=dtype)(joined)
    return k.Model(inputs, k.layers.Dense(2, dtype=dtype)(y))


def _luong_scaled(k, dtype):
    """Attention with use_scale, and a key of its own: [query, value, key]."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    key = k.layers.Dense(5, activation="tanh", name="key", dtype=dtype)(encoder)
    context = k.layers.Attention(use_scale=True, name="attention", dtype=dtype)([decoder, encoder, key])
    return k.Model(inputs, k.layers.Dense(2, dtype=dtype)(k.layers.Concatenate(dtype=dtype)([decoder, context])))


def _concat_scores(k, dtype):
    """Attention with use_scale and score_mode="concat" (scale and concat_score_weight)."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    context = k.layers.Attention(use_scale=True, score_mode="concat", name="attention", dtype=dtype)(
        [decoder, encoder])
    y = k.layers.LSTM(3, name="reader", dtype=dtype)(context)
    return k.Model(inputs, k.layers.Dense(2, dtype=dtype)(y))


def _bahdanau(k, dtype):
    """AdditiveAttention with use_scale (a scale per feature), [query, value, key]."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    key = k.layers.LSTM(5, return_sequences=True, name="key", dtype=dtype)(encoder)
    context = k.layers.AdditiveAttention(use_scale=True, name="additive", dtype=dtype)([decoder, encoder, key])
    y = k.layers.LSTM(3, return_sequences=True, name="reader", dtype=dtype)(context)
    return k.Model(inputs, k.layers.Dense(2, dtype=dtype)(y))


def _causal(k, dtype):
    """Causal self-attention over the decoder (rows wholly masked where a left pad meets the
    causal mask), then causal AdditiveAttention without scale over the longer encoder."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    dot = k.layers.Attention(name="causal", dtype=dtype)([decoder, decoder], use_causal_mask=True)
    additive = k.layers.AdditiveAttention(use_scale=False, name="causal_additive", dtype=dtype)(
        [dot, encoder], use_causal_mask=True)
    y = k.layers.LSTM(3, return_sequences=True, name="reader", dtype=dtype)(additive)
    return k.Model(inputs, k.layers.Dense(2, dtype=dtype)(y))


def _dot(k, dtype):
    """Dot(axes=(2, 2), normalize=True) between two LSTMs' sequences; Dot(axes=-1) of two states
    ((batch, 1)); Dot(axes=(2, 1)) of a sequence and a vector."""
    inputs, encoder, decoder = _encoder_decoder(k, dtype)
    similarity = k.layers.Dot(axes=(2, 2), normalize=True, name="cosine", dtype=dtype)([decoder, encoder])
    y = k.layers.LSTM(3, return_sequences=True, name="reader", dtype=dtype)(similarity)
    last = k.layers.LSTM(5, name="last", dtype=dtype)(encoder)
    first = k.layers.LSTM(5, name="first", dtype=dtype)(decoder)
    product = k.layers.Dot(axes=-1, name="product", dtype=dtype)([last, first])
    state = k.layers.Dense(3, dtype=dtype)(first)
    sequence_by_state = k.layers.Dot(axes=(2, 1), name="weighted", dtype=dtype)([y, state])  # (batch, 4)
    return k.Model(inputs, [k.layers.Dense(2, dtype=dtype)(k.layers.Flatten(dtype=dtype)(y)), product,
                            sequence_by_state])


MODELS = {
    "luong": _luong,
    "luong_scaled_key": _luong_scaled,
    "concat_scores": _concat_scores,
    "bahdanau": _bahdanau,
    "causal": _causal,
    "dot": _dot,
}


def build(name, keras_version, dtype="float32", seed=0):
    """The Keras model `name` with random weights, every array drawn anew (scales included)."""
    model = MODELS[name](keras_module(keras_version), dtype)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("keras_version, fmt", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_attention_model_matches_keras(name, keras_version, fmt, tmp_path):
    """predict, and every layer's output inside the model, equal Keras's, from the saved file."""
    model = build(name, keras_version)
    ref = reflstm.load(save(model, tmp_path, keras_version, fmt))
    assert_every_layer_matches_keras(model, ref, model_inputs(model), keras_version, "float32")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", list(MODELS))
def test_float64_attention_models_match_to_1e_12(name, keras_version, tmp_path):
    """Saved float64 models agree with Keras (called eagerly) to ~1e-12, every layer too."""
    model = build(name, keras_version, "float64")
    ref = reflstm.load(save(model, tmp_path, keras_version, "keras" if keras_version == 3 else "h5"))
    assert_every_layer_matches_keras(model, ref, model_inputs(model), keras_version, "float64")


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", list(MODELS))
def test_attention_gradients_match_gradient_tape(name, keras_version):
    """Model.backward through the attention layers equals tf.GradientTape's input gradients."""
    model = build(name, keras_version, "float64", seed=1)
    assert_backward_matches_tape(model, model_inputs(model), GRADIENT_TOLERANCE)


def test_tf_keras_causal_field_is_the_causal_mask():
    """tf_keras's older config field `causal` masks as the call's use_causal_mask does."""
    model = build("causal", 2)
    x = model_inputs(model)
    weights = {layer.name: layer.get_weights() for layer in model.layers}
    predictions = {}
    for causal in (True, False):
        config = {"class_name": "Functional", "config": model.get_config()}
        for entry in config["config"]["layers"]:
            if entry["class_name"] in ("Attention", "AdditiveAttention"):
                entry["config"]["causal"] = causal
                for inbound in entry["inbound_nodes"][0]:
                    inbound[3] = {}  # tf_keras repeats {"use_causal_mask": true} on each input
        predictions[causal] = reflstm.Model(config, weights, 2).predict(x)
    assert_close([predictions[True]], keras_predict(model, x), "float32")
    assert not np.allclose(predictions[False], predictions[True])  # the mask mattered


def test_attention_scores_as_an_output_are_refused(tmp_path):
    """return_attention_scores=True (a second output) is refused by name, not dropped."""
    k = keras_module(3)
    query, value = k.Input((TARGET_STEPS, 3)), k.Input((TIMESTEPS, 3))
    _, scores = k.layers.Attention(name="attention")([query, value], return_attention_scores=True)
    path = save(k.Model([query, value], scores), tmp_path, 3, "keras")
    with pytest.raises(reflstm.ReflstmError, match="return_attention_scores"):
        reflstm.load(path)
