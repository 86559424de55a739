"""Real Keras layers to compare against: Keras 3 (`keras`) and Keras 2 (`tf_keras`).

LSTM by default; `kind="GRU"` or `kind="SimpleRNN"` builds those layers.

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


def random_cell_weights(rng, kind, input_dim, units, dtype, use_bias=True, reset_after=True, scale=0.6):
    """GRU or SimpleRNN kernel, recurrent_kernel, bias: each gate block drawn on its own.

    A GRU with reset_after gets two different bias rows (input and recurrent), neither zero.
    """
    if kind == "LSTM":
        return random_weights(rng, input_dim, units, dtype, use_bias, scale)
    blocks = {"GRU": 3, "SimpleRNN": 1}[kind]
    offsets = rng.uniform(-0.3, 0.3, size=blocks)
    kernel = np.concatenate([rng.normal(offsets[k], scale, (input_dim, units)) for k in range(blocks)], axis=1)
    recurrent = np.concatenate([rng.normal(-offsets[k], scale, (units, units)) for k in range(blocks)], axis=1)
    shift = np.repeat([0.5, -0.5, 0.25][:blocks], units)
    bias = rng.uniform(-1, 1, blocks * units) + shift
    if kind == "GRU" and reset_after:
        bias = np.stack([bias, rng.uniform(-1, 1, blocks * units) - shift])
    weights = [kernel.astype(dtype), recurrent.astype(dtype)]
    if use_bias:
        weights.append(bias.astype(dtype))
    return weights


# The options that belong to each kind's cell (the rest are the RNN layer's).
CELL_OPTIONS = {
    "LSTM": ("activation", "recurrent_activation", "use_bias", "unit_forget_bias", "dropout",
             "recurrent_dropout", "implementation"),
    "GRU": ("activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout",
            "implementation", "reset_after"),
    "SimpleRNN": ("activation", "use_bias", "dropout", "recurrent_dropout"),
}


def make_layer(
    keras_version, input_dim, units, dtype="float64", seed=0, rnn_cell=False, weights=None,
    kind="LSTM", **options
):
    """A built Keras LSTM, GRU or SimpleRNN layer (or RNN(its cell)) with random per-gate
    weights (or `weights`)."""
    keras = keras_module(keras_version)
    rng = np.random.default_rng(seed)
    cell_options = {k: options.pop(k) for k in CELL_OPTIONS[kind] if k in options}
    if rnn_cell:
        cell = getattr(keras.layers, f"{kind}Cell")(units, dtype=dtype, **cell_options)
        layer = keras.layers.RNN(cell, dtype=dtype, **options)
    else:
        layer = getattr(keras.layers, kind)(units, dtype=dtype, **cell_options, **options)
    batch = 3 if options.get("stateful") else None
    layer.build((batch, None, input_dim))
    if weights is None:
        weights = random_cell_weights(
            rng, kind, input_dim, units, dtype, cell_options.get("use_bias", True),
            cell_options.get("reset_after", True),
        )
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
