"""Real Keras models, built with Keras 3 or tf_keras, given random weights, and saved to files.

Every weight array is drawn anew (so every gate differs) and biases are non-zero. The inputs
have padded steps and holes, so that Masking and Embedding(mask_zero) produce real masks.
"""

import numpy as np

from keras_layers import keras_module

BATCH, TIMESTEPS, FEATURES, VOCABULARY = 4, 6, 3, 12


def _lstm_stack(k, dtype):
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.LSTM(5, return_sequences=True, name="encoder", dtype=dtype)(x)
    x = k.layers.Dropout(0.3, dtype=dtype)(x)
    x = k.layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid", name="second",
                      dtype=dtype)(x)
    x = k.layers.TimeDistributed(k.layers.Dense(2, dtype=dtype), dtype=dtype)(x)
    return k.Model(inp, x)


def _sequential(k, dtype):
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES), dtype=dtype),
        k.layers.Masking(dtype=dtype),
        k.layers.LSTM(5, return_sequences=True, go_backwards=True, name="backwards", dtype=dtype),
        k.layers.SpatialDropout1D(0.2, dtype=dtype),
        k.layers.LSTM(3, name="last", dtype=dtype),
        k.layers.Dense(2, activation="softmax", dtype=dtype),
    ])


def _bidirectional(merge_mode, return_sequences=True):
    def build(k, dtype):
        inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
        x = k.layers.Masking(dtype=dtype)(inp)
        y = k.layers.Bidirectional(
            k.layers.LSTM(3, return_sequences=return_sequences, dtype=dtype),
            merge_mode=merge_mode, name="bi", dtype=dtype,
        )(x)
        outputs = list(y) if merge_mode is None else [k.layers.Dense(2, dtype=dtype)(y)]
        return k.Model(inp, outputs)

    return build


def _bidirectional_state(k, dtype):
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    y, fh, fc, bh, bc = k.layers.Bidirectional(
        k.layers.LSTM(3, return_state=True, dtype=dtype), name="bi", dtype=dtype
    )(x)
    joined = k.layers.Concatenate(dtype=dtype)([y, fh, bc])
    return k.Model(inp, k.layers.Dense(2, activation="tanh", dtype=dtype)(joined))


def _embedding(k, dtype):
    inp = k.Input((TIMESTEPS,), dtype="int32")
    x = k.layers.Embedding(VOCABULARY, 4, mask_zero=True, dtype=dtype)(inp)
    x = k.layers.LSTM(5, name="reader", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(3, activation="softmax", dtype=dtype)(x))


def _branches(k, dtype):
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    a = k.layers.LSTM(4, return_sequences=True, name="left", dtype=dtype)(x)
    b = k.layers.RNN(k.layers.LSTMCell(4, dtype=dtype), return_sequences=True, go_backwards=True,
                     name="right", dtype=dtype)(x)
    added = k.layers.Add(dtype=dtype)([a, b])
    joined = k.layers.Concatenate(dtype=dtype)([added, a])
    y = k.layers.LSTM(3, name="top", dtype=dtype)(joined)
    return k.Model(inp, k.layers.Activation("relu", dtype=dtype)(k.layers.Dense(2, dtype=dtype)(y)))


def _repeat(k, dtype):
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    h = k.layers.LSTM(4, name="summary", dtype=dtype)(inp)
    x = k.layers.RepeatVector(3, dtype=dtype)(h)
    x = k.layers.LSTM(2, return_sequences=True, name="unrolled", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(1, dtype=dtype)(k.layers.Flatten(dtype=dtype)(x)))


def _encoder_decoder(k, dtype):
    source = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    target = k.Input((4, 2), dtype=dtype)
    _, h, c = k.layers.LSTM(4, return_state=True, name="encoder", dtype=dtype)(source)
    y = k.layers.LSTM(4, return_sequences=True, name="decoder", dtype=dtype)(target, initial_state=[h, c])
    return k.Model([source, target], k.layers.Dense(2, dtype=dtype)(y))


def _merges(k, dtype):
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    a = k.layers.LSTM(3, return_sequences=True, name="a", dtype=dtype)(x)
    b = k.layers.LSTM(3, return_sequences=True, go_backwards=True, name="b", dtype=dtype)(x)
    merged = [layer(dtype=dtype)([a, b]) for layer in (k.layers.Subtract, k.layers.Multiply,
                                                        k.layers.Average, k.layers.Maximum, k.layers.Minimum)]
    y = k.layers.LSTM(2, name="top", dtype=dtype)(k.layers.Concatenate(dtype=dtype)(merged))
    return k.Model(inp, y)


def _gru_family(k, dtype):
    """GRU in both reset_after modes, RNN(GRUCell), SimpleRNN, RNN(SimpleRNNCell) and an LSTM, masked."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.GRU(5, return_sequences=True, name="gru", dtype=dtype)(x)
    x = k.layers.GRU(4, return_sequences=True, reset_after=False, go_backwards=True,
                     recurrent_activation="hard_sigmoid", name="gru_before", dtype=dtype)(x)
    x = k.layers.RNN(k.layers.GRUCell(4, reset_after=False, dtype=dtype), return_sequences=True,
                     name="gru_cell", dtype=dtype)(x)
    x = k.layers.LSTM(3, return_sequences=True, name="lstm", dtype=dtype)(x)
    x = k.layers.SimpleRNN(4, return_sequences=True, name="simple", dtype=dtype)(x)
    x = k.layers.RNN(k.layers.SimpleRNNCell(3, activation="relu", dtype=dtype), name="simple_cell",
                     dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(x))


def _gru_bidirectional(k, dtype):
    """Bidirectional GRU and SimpleRNN (RNN of their cells too) in every merge mode, masked."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    wrapped = {
        "bi_concat": (k.layers.GRU(3, return_sequences=True, dtype=dtype), "concat"),
        "bi_sum": (k.layers.GRU(3, return_sequences=True, reset_after=False, dtype=dtype), "sum"),
        "bi_mul": (k.layers.SimpleRNN(3, return_sequences=True, dtype=dtype), "mul"),
        "bi_ave": (k.layers.RNN(k.layers.SimpleRNNCell(3, dtype=dtype), return_sequences=True,
                                dtype=dtype), "ave"),
        "bi_none": (k.layers.RNN(k.layers.GRUCell(3, dtype=dtype), return_sequences=True,
                                 dtype=dtype), None),
    }
    outputs = []
    for name, (layer, merge_mode) in wrapped.items():
        y = k.layers.Bidirectional(layer, merge_mode=merge_mode, name=name, dtype=dtype)(x)
        outputs += list(y) if merge_mode is None else [y]
    joined = k.layers.Concatenate(dtype=dtype)(outputs)
    return k.Model(inp, k.layers.GRU(2, name="top", dtype=dtype)(joined))


def _gru_encoder_decoder(k, dtype):
    """A GRU encoder's state starts a GRU decoder; Bidirectional(GRU) and SimpleRNN return_state."""
    source = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    target = k.Input((4, 2), dtype=dtype)
    masked = k.layers.Masking(dtype=dtype)(source)
    _, h = k.layers.GRU(4, return_state=True, name="encoder", dtype=dtype)(masked)
    y = k.layers.GRU(4, return_sequences=True, name="decoder", dtype=dtype)(target, initial_state=h)
    starts = [k.layers.Dense(3, activation="tanh", dtype=dtype)(h) for _ in range(2)]
    both, forward_h, backward_h = k.layers.Bidirectional(
        k.layers.GRU(3, return_state=True, reset_after=False, dtype=dtype), name="bi_state", dtype=dtype
    )(masked, initial_state=starts)
    _, simple_h = k.layers.SimpleRNN(2, return_state=True, name="simple_state", dtype=dtype)(masked)
    summary = k.layers.Concatenate(dtype=dtype)([both, forward_h, backward_h, simple_h])
    return k.Model([source, target], [k.layers.Dense(2, dtype=dtype)(y),
                                      k.layers.Dense(1, dtype=dtype)(summary)])


# --- Conv1D, pooling and the 1-D shape layers around recurrent layers (reflstm.models.conv) ---


def _conv_lstm(k, dtype):
    """The issue's example: Conv1D -> LSTM -> Dense, the mask ending at the Conv1D."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.Conv1D(5, 3, activation="relu", name="conv", dtype=dtype)(x)
    x = k.layers.LSTM(4, name="lstm", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(x))


def _causal_pooling(k, dtype):
    """Conv1D(causal, dilation 2) -> MaxPooling1D -> GRU, and AveragePooling1D(same) -> LSTM."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh", name="causal",
                        dtype=dtype)(inp)
    a = k.layers.MaxPooling1D(2, name="max_pool", dtype=dtype)(x)
    a = k.layers.GRU(3, name="gru", dtype=dtype)(a)
    b = k.layers.AveragePooling1D(3, strides=2, padding="same", name="average_pool", dtype=dtype)(x)
    b = k.layers.LSTM(3, name="lstm", dtype=dtype)(b)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(k.layers.Concatenate(dtype=dtype)([a, b])))


def _masked_pooling(k, dtype):
    """Masking -> LSTM(return_sequences) -> GlobalAveragePooling1D (the mask reaches it), beside
    GlobalMaxPooling1D(keepdims), which Keras runs unmasked."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Masking(dtype=dtype)(inp)
    x = k.layers.LSTM(5, return_sequences=True, name="lstm", dtype=dtype)(x)
    average = k.layers.GlobalAveragePooling1D(name="average", dtype=dtype)(x)
    largest = k.layers.GlobalMaxPooling1D(keepdims=True, name="largest", dtype=dtype)(x)
    largest = k.layers.Flatten(dtype=dtype)(largest)
    return k.Model(inp, k.layers.Dense(2, dtype=dtype)(k.layers.Concatenate(dtype=dtype)([average, largest])))


def _shape_stack(k, dtype):
    """ZeroPadding1D, UpSampling1D, Cropping1D, a grouped Conv1D and a strided "same" one, an LSTM."""
    inp = k.Input((TIMESTEPS, FEATURES + 1), dtype=dtype)
    x = k.layers.ZeroPadding1D((1, 2), name="pad", dtype=dtype)(inp)
    x = k.layers.UpSampling1D(2, name="up", dtype=dtype)(x)
    x = k.layers.Cropping1D((3, 1), name="crop", dtype=dtype)(x)
    x = k.layers.Conv1D(6, 2, groups=2, name="grouped", dtype=dtype)(x)
    x = k.layers.Conv1D(5, 3, strides=2, padding="same", activation="sigmoid", name="strided", dtype=dtype)(x)
    x = k.layers.MaxPooling1D(3, strides=1, padding="same", name="max_same", dtype=dtype)(x)
    x = k.layers.LSTM(3, return_sequences=True, name="lstm", dtype=dtype)(x)
    return k.Model(inp, k.layers.GlobalAveragePooling1D(keepdims=True, name="average", dtype=dtype)(x))


CONV_MODELS = {
    "conv_lstm": _conv_lstm,
    "causal_pooling": _causal_pooling,
    "masked_pooling": _masked_pooling,
    "shape_stack": _shape_stack,
}


MODELS = {
    "lstm_stack": _lstm_stack,
    "sequential": _sequential,
    **{f"bidirectional_{mode}": _bidirectional(mode) for mode in ("concat", "sum", "mul", "ave")},
    "bidirectional_none": _bidirectional(None),
    "bidirectional_last_step": _bidirectional("concat", return_sequences=False),
    "bidirectional_state": _bidirectional_state,
    "embedding": _embedding,
    "branches": _branches,
    "repeat_flatten": _repeat,
    "encoder_decoder": _encoder_decoder,
    "merges": _merges,
    "gru_family": _gru_family,
    "gru_bidirectional": _gru_bidirectional,
    "gru_encoder_decoder": _gru_encoder_decoder,
    **CONV_MODELS,
}


def _lambda_before_lstm(k, dtype):
    """A Lambda (never run by reflstm) before an LSTM and a Bidirectional(GRU)."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype=dtype)
    x = k.layers.Lambda(lambda t: 2 * t + 1, name="scale", dtype=dtype)(inp)
    x = k.layers.LSTM(5, return_sequences=True, name="lstm", dtype=dtype)(x)
    x = k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True, dtype=dtype), name="bi", dtype=dtype)(x)
    return k.Model(inp, k.layers.Dense(2, name="head", dtype=dtype)(x))


def _unknown_layers(k, dtype):
    """Keras layers reflstm does not compute (PReLU, with weights; GaussianNoise) around an LSTM."""
    return k.Sequential([
        k.Input((TIMESTEPS, FEATURES), dtype=dtype),
        k.layers.Dense(4, name="project", dtype=dtype),
        k.layers.PReLU(name="prelu", dtype=dtype),
        k.layers.LSTM(4, return_sequences=True, name="lstm", dtype=dtype),
        k.layers.GaussianNoise(0.1, name="noise", dtype=dtype),
        k.layers.Dense(2, name="head", dtype=dtype),
    ])


# Models holding layers reflstm does not run: they load, but predict is refused (tests/test_partial_models.py).
PARTIAL_MODELS = {"lambda_before_lstm": _lambda_before_lstm, "unknown_layers": _unknown_layers}


def build_model(name, keras_version, dtype="float32", seed=0):
    """A Keras model of kind `name` with random weights (distinct per gate, non-zero biases)."""
    k = keras_module(keras_version)
    model = {**MODELS, **PARTIAL_MODELS}[name](k, dtype)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def model_inputs(model, seed=1):
    """Inputs for `model`: padded and holed sequences, or token ids with zeros for Embedding."""
    rng = np.random.default_rng(seed)
    inputs = []
    for tensor in model.inputs:
        shape = (BATCH,) + tuple(tensor.shape[1:])
        dtype = np.dtype(tensor.dtype if isinstance(tensor.dtype, str) else tensor.dtype.name)
        if dtype.kind == "i":
            ids = rng.integers(1, VOCABULARY, shape)
            ids[0, 4:] = 0
            ids[1, :2] = 0
            ids[2, 3] = 0
            inputs.append(ids.astype(dtype))
        else:
            x = rng.normal(0, 1, shape)
            x[0, 4:] = 0  # right padding
            x[1, :2] = 0  # left padding
            x[2, 2] = 0  # a hole
            inputs.append(x.astype(dtype))
    return inputs if len(inputs) > 1 else inputs[0]
