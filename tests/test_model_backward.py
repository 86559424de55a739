"""Model.backward against tf.GradientTape through whole Keras models (float64)."""

import numpy as np
import pytest

import reflstm
from saved_models import build_model, model_inputs

FLOAT_MODELS = ["lstm_stack", "sequential", "bidirectional_concat", "bidirectional_sum",
                "bidirectional_mul", "bidirectional_ave", "bidirectional_none", "bidirectional_last_step",
                "bidirectional_state", "branches", "repeat_flatten", "encoder_decoder", "merges",
                # GRU (both reset_after modes), SimpleRNN, RNN of their cells, Bidirectional of
                # each, return_state and a GRU state starting another GRU
                "gru_family", "gru_bidirectional", "gru_encoder_decoder"]


def tape_gradients(model, x, d_outputs):
    import tensorflow as tf

    xs = [tf.constant(a) for a in (x if isinstance(x, list) else [x])]
    with tf.GradientTape() as tape:
        for a in xs:
            tape.watch(a)
        out = model(xs if len(xs) > 1 else xs[0], training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        loss = sum(tf.reduce_sum(o * d) for o, d in zip(outs, d_outputs))
    return [np.asarray(g) for g in tape.gradient(loss, xs)]


def assert_backward_matches_tape(model, x, tolerance=1e-10):
    """reflstm's Model.backward of a Keras model equals GradientTape's input gradients, for random
    gradients of each of its outputs."""
    ref = reflstm.Model.from_keras(model)
    outputs = ref.predict(x)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    rng = np.random.default_rng(7)
    d_outputs = [rng.normal(size=o.shape) for o in outputs]
    expected = tape_gradients(model, x, d_outputs)
    actual = ref.backward(x, d_outputs if len(d_outputs) > 1 else d_outputs[0])
    for ours, theirs in zip(actual if isinstance(actual, list) else [actual], expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("keras_version", [3, 2], ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_model_gradients_match_gradient_tape(name, keras_version):
    """Input gradients through masks, Bidirectional merges, merges, RepeatVector, Flatten, states,
    and every recurrent layer kind."""
    model = build_model(name, keras_version, "float64", seed=1)
    assert_backward_matches_tape(model, model_inputs(model))


def test_token_inputs_have_no_gradient():
    """An Embedding's integer ids get no gradient (None), the model's output still does."""
    model = build_model("embedding", 3, "float64")
    x = model_inputs(model)
    ref = reflstm.Model.from_keras(model)
    assert ref.backward(x, np.ones_like(ref.predict(x))) is None
