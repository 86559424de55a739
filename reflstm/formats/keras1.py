"""Keras 1 layer configs (Keras 1.0–1.2, 2016–2017), read into reflstm's layers.

Keras 1 named things differently and stored recurrent weights per gate. Each builder here reads
a Keras 1 config with Keras 1's names and defaults and predicts the arrays as Keras 1 stored
them, then builds the layer today's Keras would compute the same thing with:

    Keras 1                            today
    output_dim                         units
    inner_activation ("hard_sigmoid")  recurrent_activation, Keras 2's hard_sigmoid (0.2 x + 0.5)
    bias (Dense)                       use_bias
    LSTM, GRU: one (W, U, b) per gate  kernel, recurrent_kernel, bias (reflstm.frameworks.legacy
                                       has the layouts); a GRU is reset_after=False
    consume_less="gpu" (LSTM, GRU)     one W, U and b, already in today's gate order
    Merge(mode=sum|mul|ave|max|concat) Add, Multiply, Average, Maximum, Concatenate

Keras 1 computed a masked step as tf_keras does with zero_output_for_mask=False (the previous
output, zeros before the first unmasked step), Bidirectional included: Keras 1's Bidirectional
did not zero its masked steps. (Keras 1's TensorFlow loop output its state h there instead of
zeros, which differs only when a stateful layer's later call starts with masked steps.)
Its backends (Theano, TensorFlow) computed the same for these layers, and Keras 1's
hard_sigmoid is tf_keras's. Options that only mattered in training (init, W_regularizer,
dropout_W, ...) are not read.
"""

from reflstm.models import layers as L
from reflstm.formats.config import (
    _BUILDERS, _activation, _bidirectional_plan, _merge, _nested, _no_weights, _recurrent_options, layer_entries,
)
from reflstm.cells.gru import GRU
from reflstm.cells.lstm import LSTM
from reflstm.cells.simple_rnn import SimpleRNN
from reflstm.frameworks.legacy import KERAS1_ORDERS, keras1_weights

__all__ = ["BUILDERS", "uses_keras1_names"]

# The semantics of masks, activations and merges: Keras 1 computed them as tf_keras does.
_SEMANTICS = 2


def _options(name, config, go_backwards, zero_output_for_mask, activations):
    """The shared loop's options from a Keras 1 recurrent config (Keras 1 had no return_state
    and never zeroed masked steps), with its activations (field: default) under today's names."""
    options = _recurrent_options(name, config, _SEMANTICS, go_backwards, zero_output_for_mask)
    names = {"activation": "activation", "inner_activation": "recurrent_activation"}
    for key, default in activations.items():
        options[names[key]] = _activation(config, key, default, name)
    return options


def _gated(cell, **fixed):
    """The reader of Keras 1's LSTM or GRU: one (W, U, b) per gate, in Keras 1's order (see
    reflstm.frameworks.legacy), or with consume_less="gpu" one W, U and b already in today's."""
    kind = cell.__name__
    gates = len(KERAS1_ORDERS[kind][0])

    def read(name, config, go_backwards=None, zero_output_for_mask=False):
        units = config.int("output_dim", minimum=1)
        concatenated = config.str("consume_less", "cpu", choices=("cpu", "mem", "gpu")) == "gpu"
        options = _options(name, config, go_backwards, zero_output_for_mask,
                           {"activation": "tanh", "inner_activation": "hard_sigmoid"})
        if concatenated:
            shapes = [(None, gates * units), (units, gates * units), (gates * units,)]
        else:
            shapes = [(None, units), (units, units), (units,)] * gates

        def build(arrays):
            return cell(*(arrays if concatenated else keras1_weights(kind, arrays)), **fixed, **options)

        return shapes, build

    return read


def _simple_rnn(name, config, go_backwards=None, zero_output_for_mask=False):
    units = config.int("output_dim", minimum=1)
    options = _options(name, config, go_backwards, zero_output_for_mask, {"activation": "tanh"})

    def build(arrays):
        return SimpleRNN(*arrays, **options)

    return [(None, units), (units, units), (units,)], build


# Keras 1's LSTM listed its gates i, c, f, o (today's blocks are i, f, c, o); its GRU z, r, h,
# with r applied before U_h (today's reset_after=False).
_lstm = _gated(LSTM)
_gru = _gated(GRU, reset_after=False)
_RECURRENT = {"LSTM": _lstm, "GRU": _gru, "SimpleRNN": _simple_rnn}


def _recurrent_layer(kind):
    def builder(name, config, keras_version):
        shapes, build = _RECURRENT[kind](name, config)
        return shapes, lambda arrays: L.RecurrentLayer(name, build(arrays), kind)

    return builder


def _bidirectional(name, config, keras_version):
    """Keras 1.2's Bidirectional: the wrapped layer and its copy with go_backwards flipped, their
    arrays forward first; masked steps are not zeroed (Keras 1 had no zero_output_for_mask)."""
    kind, inner = _nested(config, "layer", tuple(_RECURRENT), name)
    forward = _RECURRENT[kind](name, inner)
    backward = _RECURRENT[kind](name, inner, go_backwards=not inner.bool("go_backwards"))
    return _bidirectional_plan(name, config, forward, backward)


def _dense(name, config, keras_version):
    units = config.int("output_dim", minimum=1)
    use_bias = config.bool("bias", True)
    function = _activation(config, "activation", "linear", name) or "linear"

    def build(arrays):
        return L.Dense(name, arrays[0], arrays[1] if use_bias else None, function, _SEMANTICS)

    return [(None, units)] + ([(units,)] if use_bias else []), build


def _time_distributed(name, config, keras_version):
    _, inner = _nested(config, "layer", ("Dense",), name)
    return _dense(name, inner, keras_version)


def _activation_layer(name, config, keras_version):
    return L.Activation(name, _activation(config, "activation", None, name) or "linear", _SEMANTICS)


# Config fields only Keras 1 wrote, and fields only later Kerases write.
_KERAS1_FIELDS = {"inner_activation", "init", "input_dtype", "consume_less", "W_regularizer", "p"}
_LATER_FIELDS = {"units", "kernel_initializer", "embeddings_initializer", "rate", "dtype", "batch_shape"}


def uses_keras1_names(model_config):
    """Whether a model config from a file that does not say which Keras wrote it is Keras 1's.

    Keras 2 and 3 always record their version, so tf_keras reads such a file as Keras 1; here a
    config is taken for Keras 1's unless its layers (or the layers they wrap) use later names.
    """
    fields = set()
    for entry in layer_entries(model_config):
        inner = entry.get("config")
        if isinstance(inner, dict):
            fields.update(inner)
            wrapped = inner.get("layer")
            if isinstance(wrapped, dict) and isinstance(wrapped.get("config"), dict):
                fields.update(wrapped["config"])
    return bool(fields & _KERAS1_FIELDS) or not fields & _LATER_FIELDS


BUILDERS = {
    "LSTM": _recurrent_layer("LSTM"),
    "GRU": _recurrent_layer("GRU"),
    "SimpleRNN": _recurrent_layer("SimpleRNN"),
    "Bidirectional": _bidirectional,
    "Dense": _dense,
    "TimeDistributed": _time_distributed,
    "TimeDistributedDense": _dense,  # Keras 1's Dense over every step (deprecated in favour of the above)
    "Merge": _merge,
    "Activation": _no_weights(_activation_layer),
    # Read from the same fields as today's (Embedding's input_dim, output_dim, mask_zero; Masking's
    # mask_value; RepeatVector's n); Keras 1's Dropout p is not needed at inference.
    **{kind: _BUILDERS[kind] for kind in ("Embedding", "Masking", "Dropout", "SpatialDropout1D", "Flatten",
                                          "RepeatVector")},
}
