"""Real Keras layers to compare against: Keras 3 (`keras`) and Keras 2 (`tf_keras`).

Every layer gets random weights that differ per gate and a non-zero bias, so that a wrong gate
order, a transposed matrix or a dropped bias changes the answer.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

KERAS_VERSIONS = (3, 2)
# float64 layers prove the arithmetic is the same; float32 layers that we match Keras's own dtype.
TOLERANCE = {"float64": 1e-12, "float32": 2e-6}


def keras_module(keras_version):
    if keras_version == 3:
        import keras
    else:
        import tf_keras as keras
    return keras


def random_weights(rng, input_dim, units, dtype, use_bias=True, scale=0.6):
    """kernel, recurrent_kernel, bias: every gate block drawn on its own, with its own offset."""
    offsets = rng.uniform(-0.3, 0.3, size=4)
    kernel = np.concatenate(
        [rng.normal(offsets[k], scale, (input_dim, units)) for k in range(4)], axis=1
    )
    recurrent = np.concatenate(
        [rng.normal(-offsets[k], scale, (units, units)) for k in range(4)], axis=1
    )
    bias = rng.uniform(-1, 1, 4 * units) + np.repeat([0.25, 1.0, -0.25, 0.5], units)
    weights = [kernel.astype(dtype), recurrent.astype(dtype)]
    if use_bias:
        weights.append(bias.astype(dtype))
    return weights


def make_layer(
    keras_version, input_dim, units, dtype="float64", seed=0, rnn_cell=False, weights=None, **options
):
    """A built Keras LSTM layer (or RNN(LSTMCell)) with random per-gate weights (or `weights`)."""
    keras = keras_module(keras_version)
    rng = np.random.default_rng(seed)
    cell_options = {
        k: options.pop(k)
        for k in ("activation", "recurrent_activation", "use_bias", "unit_forget_bias",
                  "dropout", "recurrent_dropout", "implementation")
        if k in options
    }
    if rnn_cell:
        layer = keras.layers.RNN(keras.layers.LSTMCell(units, dtype=dtype, **cell_options),
                                 dtype=dtype, **options)
    else:
        layer = keras.layers.LSTM(units, dtype=dtype, **cell_options, **options)
    batch = 3 if options.get("stateful") else None
    layer.build((batch, None, input_dim))
    if weights is None:
        weights = random_weights(rng, input_dim, units, dtype, cell_options.get("use_bias", True))
    layer.set_weights([np.asarray(w, dtype) for w in weights])
    return layer


def call_keras(layer, x, mask=None, initial_state=None, training=None):
    """layer(x, ...) with its results as NumPy arrays (a list when the layer returns several)."""
    import tensorflow as tf

    kwargs = {}
    if mask is not None:
        kwargs["mask"] = tf.constant(mask, dtype=tf.bool)
    if initial_state is not None:
        kwargs["initial_state"] = [tf.constant(s) for s in initial_state]
    if training is not None:
        kwargs["training"] = training
    result = layer(tf.constant(x), **kwargs)
    if isinstance(result, (list, tuple)):
        return [np.asarray(r) for r in result]
    return np.asarray(result)
