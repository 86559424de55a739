"""Reading a live Keras 3 or tf_keras LSTM, GRU or SimpleRNN layer into reflstm's arguments.

Nothing here imports Keras or TensorFlow: the layer object the caller holds is read through its
attributes, its Keras version is told by the package its class comes from, and a Keras 3 layer's
backend is asked of the `keras` module that made it (already imported, since the layer exists).
"""

import sys

import numpy as np

from reflstm.errors import refuse
from reflstm.cells.recurrent import KERAS_BACKENDS

__all__ = ["layer_arguments", "lstm_arguments", "gru_arguments", "simple_rnn_arguments", "keras_version_of",
           "keras_backend_of"]

# The modules whose layer and cell classes reflstm reproduces, by layer kind and Keras version
# (the layer class is named as the kind, its cell kind + "Cell").
_MODULES = {
    "LSTM": {
        3: ("keras.src.layers.rnn.lstm",),
        2: ("tf_keras.src.layers.rnn.lstm", "tf_keras.src.layers.rnn.lstm_v1"),
    },
    "GRU": {
        3: ("keras.src.layers.rnn.gru",),
        2: ("tf_keras.src.layers.rnn.gru", "tf_keras.src.layers.rnn.gru_v1"),
    },
    "SimpleRNN": {
        3: ("keras.src.layers.rnn.simple_rnn",),
        2: ("tf_keras.src.layers.rnn.simple_rnn",),
    },
}
_RNN_MODULES = {3: ("keras.src.layers.rnn.rnn",), 2: ("tf_keras.src.layers.rnn.base_rnn",)}

# tf_keras's activation names that resolve to TensorFlow functions, by those functions' names
# (tf.nn.silu calls itself "swish").
_TF_FUNCTIONS_IN_TF_KERAS = ("leaky_relu", "relu6", "log_softmax", "swish")
# tf_keras activation layers that an activation name builds with their default arguments.
_TF_KERAS_ACTIVATION_LAYERS = ("ReLU", "ELU", "LeakyReLU", "Softmax", "ThresholdedReLU")


def lstm_arguments(layer):
    """The `reflstm.LSTM` keyword arguments of a Keras layer, and its states if stateful (else None)."""
    arguments, cell, states = _arguments(layer, "LSTM")
    arguments["recurrent_activation"] = _activation_name(
        cell.recurrent_activation, arguments["keras_version"], "recurrent_activation"
    )
    return arguments, states


def gru_arguments(layer):
    """The `reflstm.GRU` keyword arguments of a Keras layer, and its state if stateful (else None)."""
    arguments, cell, states = _arguments(layer, "GRU")
    arguments["recurrent_activation"] = _activation_name(
        cell.recurrent_activation, arguments["keras_version"], "recurrent_activation"
    )
    arguments["reset_after"] = bool(cell.reset_after)
    return arguments, states


def simple_rnn_arguments(layer):
    """The `reflstm.SimpleRNN` keyword arguments of a Keras layer, and its state if stateful."""
    arguments, _, states = _arguments(layer, "SimpleRNN")
    return arguments, states


def layer_arguments(layer, kind):
    """The keyword arguments of reflstm's `kind` ("LSTM", "GRU", "SimpleRNN") for a Keras layer,
    and its states if stateful (else None)."""
    readers = {"LSTM": lstm_arguments, "GRU": gru_arguments, "SimpleRNN": simple_rnn_arguments}
    return readers[kind](layer)


def _arguments(layer, kind):
    """The arguments every recurrent layer takes, its cell, and its states if stateful."""
    keras_version = keras_version_of(layer, "layer", f"{kind} layer")
    cell = _cell(layer, kind, keras_version)
    if getattr(cell, "kernel", None) is None:
        raise refuse(
            "layer",
            "a built layer (call it on an input, or build it, first)",
            f"the unbuilt layer {layer.name!r}",
        )
    _refuse_mixed_precision(layer)
    if getattr(layer, "time_major", False):
        raise refuse("layer", "a batch-major layer (time_major=False)", "time_major=True")
    keras_backend = keras_backend_of(layer, keras_version)
    kernel = _numpy(cell.kernel)
    _refuse_float64_not_computed(layer, cell, kind, keras_backend, kernel.dtype)

    arguments = dict(
        kernel=kernel,
        recurrent_kernel=_numpy(cell.recurrent_kernel),
        bias=_numpy(cell.bias) if cell.use_bias else None,
        activation=_activation_name(cell.activation, keras_version, "activation"),
        return_sequences=bool(layer.return_sequences),
        return_state=bool(layer.return_state),
        go_backwards=bool(layer.go_backwards),
        stateful=bool(layer.stateful),
        zero_output_for_mask=bool(getattr(layer, "zero_output_for_mask", False)),
        unroll=bool(getattr(layer, "unroll", False)),
        keras_version=keras_version,
        keras_backend=keras_backend,
    )
    states = None
    if layer.stateful:
        held = getattr(layer, "states", None)
        if held is not None and all(s is not None for s in held):
            states = [_numpy(s) for s in held]
    return arguments, cell, states


def keras_version_of(obj, argument, what):
    """3 for an object of the `keras` package, 2 for one of `tf_keras`; else a clear error."""
    package = type(obj).__module__.split(".")[0]
    if package == "keras":
        return 3
    if package == "tf_keras":
        return 2
    raise refuse(
        argument,
        f"a Keras 3 (keras) or Keras 2 (tf_keras) {what}",
        f"an object of class {type(obj).__module__}.{type(obj).__qualname__}",
    )


def keras_backend_of(obj, keras_version):
    """"tensorflow", "jax" or "torch": the backend of the Keras that made `obj` (tf_keras: TensorFlow)."""
    if keras_version == 2:
        return "tensorflow"
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None else None
    if backend not in KERAS_BACKENDS:
        raise refuse(
            "layer",
            "a layer of Keras 3 on one of the backends " + ", ".join(KERAS_BACKENDS),
            f"{getattr(obj, 'name', '?')!r} of Keras 3 on the {backend!r} backend",
        )
    return backend


def _refuse_float64_not_computed(layer, cell, kind, keras_backend, kernel_dtype):
    """Refuse a layer declared float64 that its Keras 3 backend does not compute in float64.

    What the constructor cannot see: on JAX without jax_enable_x64 the weights are already
    float32 (Keras truncates them; the layer still says float64), and on torch an LSTM or GRU
    that Keras runs through its cell even unmasked — an RNN around the cell, ``use_cudnn=False``
    or ``recurrent_dropout`` (keras/src/layers/rnn/lstm.py, gru.py inner_loop). The rest is
    refused by `reflstm.cells.recurrent._float64_refusal` when the layer is made.
    """
    declared = str(getattr(layer, "variable_dtype", None) or getattr(layer, "dtype", ""))
    name = getattr(layer, "name", "?")
    if keras_backend == "jax" and "float64" in (declared, str(kernel_dtype)):
        raise refuse(
            "layer",
            "a float32 layer on Keras 3's JAX backend, which does not compute float64 (without "
            "jax_enable_x64 it stores and computes the layer in float32; with it ops.matmul "
            "rounds to float32): build the layer with dtype='float32'",
            f"{name!r} declared {declared}, holding {kernel_dtype} weights",
        )
    if keras_backend != "torch" or kernel_dtype != np.float64 or kind == "SimpleRNN":
        return
    through_cell = [
        why for why, applies in (
            ("an RNN around the cell", type(layer).__name__ == "RNN"),
            ("use_cudnn=False", getattr(layer, "use_cudnn", "auto") is False),
            ("recurrent_dropout", bool(getattr(cell, "recurrent_dropout", 0))),
        ) if applies
    ]
    if through_cell:
        raise refuse(
            "layer",
            f"a float64 {kind} that Keras 3 on torch runs through its own loop (its cell's "
            "ops.matmul rounds each product to float32), or a float32 layer",
            f"{name!r} with {' and '.join(through_cell)}",
        )


def _cell(layer, kind, keras_version):
    """The cell of a `kind` layer ("LSTM", "GRU", "SimpleRNN") or of an RNN wrapping that cell."""
    modules = _MODULES[kind][keras_version]
    layer_class = type(layer)
    where = f"layer {getattr(layer, 'name', '?')!r} of class {layer_class.__name__}"
    if layer_class.__name__ == kind and layer_class.__module__ in modules:
        return layer.cell
    if layer_class.__name__ == "RNN" and layer_class.__module__ in _RNN_MODULES[keras_version]:
        cell = layer.cell
        cell_class = type(cell)
        if cell_class.__name__ == f"{kind}Cell" and cell_class.__module__ in modules:
            return cell
        where += f" with a cell of class {cell_class.__name__}"
    if layer_class.__name__ == "Bidirectional":
        where += " (convert its forward_layer and backward_layer one at a time)"
    raise refuse("layer", f"a Keras {kind} layer or RNN({kind}Cell)", where)


def _refuse_mixed_precision(layer):
    compute, variable = getattr(layer, "compute_dtype", None), getattr(layer, "variable_dtype", None)
    if variable is None:  # tf_keras names the variable dtype `dtype`
        variable = getattr(layer, "dtype", None)
    if compute is not None and variable is not None and str(compute) != str(variable):
        raise refuse(
            "layer",
            "one dtype for weights and computation",
            f"a mixed-precision layer (weights {variable}, computation {compute})",
        )


def _activation_name(fn, keras_version, argument):
    """The name, in Keras `keras_version`'s activation table, of the activation object `fn`."""
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", None)
    if keras_version == 3 and module.startswith("keras.src.activations"):
        return name
    if keras_version == 2 and module.startswith("tf_keras.src.activations"):
        return name
    if keras_version == 2 and module.startswith("tensorflow.") and name in _TF_FUNCTIONS_IN_TF_KERAS:
        return name
    # tanh and sigmoid given as TensorFlow or keras.ops functions (Keras's cuDNN check lists them).
    if module.startswith(("tensorflow.", "keras.src.ops")) and name in ("tanh", "sigmoid"):
        return name
    kind = type(fn)
    if (
        keras_version == 2
        and kind.__module__.startswith("tf_keras.src.layers.activation")
        and kind.__name__ in _TF_KERAS_ACTIVATION_LAYERS
    ):
        if _config(fn) != _config(kind()):
            raise refuse(
                argument,
                f"a {kind.__name__} activation layer with its default arguments",
                f"one configured as {_config(fn)}",
            )
        return kind.__name__
    raise refuse(argument, f"a built-in Keras {keras_version} activation", describe_callable(fn))


def describe_callable(fn):
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{name}"


def _config(activation_layer):
    config = dict(activation_layer.get_config())
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    return {key: np.asarray(value).tolist() for key, value in config.items()}


def _numpy(variable):
    """A Keras 3 or TensorFlow variable's value as a NumPy array."""
    return np.array(variable.numpy() if hasattr(variable, "numpy") else variable)
