"""Keras model configs (the JSON Keras saves) into reflstm layers and a graph of calls.

Both dialects are read: Keras 3's and tf_keras's. Only the layers listed in `_BUILDERS` are
built; any other class, and anything that would run code (Lambda, custom classes), is refused.
"""

import dataclasses

import numpy as np

from reflstm import layers as L
from reflstm.errors import refuse
from reflstm.lstm import LSTM
from reflstm.ops import OPERATIONS, Operation

__all__ = ["Graph", "Node", "Slot", "NO_MASK_ARGUMENT", "build_graph"]

NO_MASK_ARGUMENT = "no mask argument"  # a node whose call recorded no `mask`: masks propagate


@dataclasses.dataclass(frozen=True)
class Slot:
    """A tensor's place in an operation's recorded arguments: the node's `index`-th input."""

    index: int


@dataclasses.dataclass(frozen=True)
class Node:
    """One call of a layer: its inputs are (layer name, node index, tensor index) triples.

    `mask` is the recorded `mask` argument (Keras 3 functional graphs record it): a triple, None,
    or NO_MASK_ARGUMENT. `template` holds an Operation's arguments, with Slots for tensors.
    """

    layer: object
    inputs: tuple
    mask: object = NO_MASK_ARGUMENT
    template: object = None


@dataclasses.dataclass(frozen=True)
class Graph:
    """The layers of a model and how they are called; `inputs` are InputLayer names."""

    name: str
    nodes: dict  # (layer name, node index) -> Node
    inputs: tuple  # names of the input layers, in the model's input order
    outputs: tuple  # (layer name, node index, tensor index) of each model output
    input_shapes: dict  # input layer name -> shape with None for the batch (as saved), or None


def build_graph(model_config, weights, keras_version):
    """A Graph from a model config ({"class_name", "config"}) and {layer name: [arrays]}."""
    kind = model_config.get("class_name")
    config = model_config.get("config", {})
    if kind == "Sequential":
        return _sequential(config, weights, keras_version)
    if kind in ("Functional", "Model"):
        return _functional(config, weights, keras_version)
    raise refuse("model", "a Sequential or functional Keras model", f"a model of class {kind!r}")


def _sequential(config, weights, keras_version):
    layer_configs = list(config.get("layers", []))
    input_name, input_shape = "input", None
    if layer_configs and layer_configs[0].get("class_name") == "InputLayer":
        first = layer_configs.pop(0)["config"]
        input_name, input_shape = first["name"], _input_shape(first)
    elif layer_configs:
        build = layer_configs[0]["config"].get("batch_input_shape")
        input_shape = None if build is None else tuple(build)
    nodes, previous = {}, (input_name, 0, 0)
    for layer_config in layer_configs:
        layer = _build_layer(layer_config, weights, keras_version)
        nodes[(layer.name, 0)] = Node(layer, (previous,))
        previous = (layer.name, 0, 0)
    return Graph(config.get("name", "sequential"), nodes, (input_name,), (previous,),
                 {input_name: input_shape})


def _functional(config, weights, keras_version):
    nodes, input_shapes = {}, {}
    for layer_config in config.get("layers", []):
        if layer_config.get("class_name") == "InputLayer":
            inner = layer_config["config"]
            input_shapes[inner["name"]] = _input_shape(inner)
            continue
        if _is_operation(layer_config):
            layer = Operation(layer_config["config"]["name"], layer_config["class_name"],
                              layer_config["config"])
        else:
            layer = _build_layer(layer_config, weights, keras_version)
        for index, inbound in enumerate(layer_config.get("inbound_nodes", [])):
            nodes[(layer.name, index)] = _node(layer, inbound)
    inputs = tuple(name for name, _, _ in _triples(config["input_layers"]))
    outputs = tuple(_triples(config["output_layers"]))
    return Graph(config.get("name", "model"), nodes, inputs, outputs, input_shapes)


def _is_operation(layer_config):
    """A Keras 3 operation recorded in the graph, rather than a layer.

    .keras files say so in `module`; legacy .h5 files written by Keras 3 record no module, and
    there an operation is told by its config, which lacks the `trainable` every layer has.
    """
    module = layer_config.get("module")
    if module is not None:
        return str(module).startswith("keras.src.ops")
    return layer_config.get("class_name") in OPERATIONS and "trainable" not in layer_config.get("config", {})


def _triples(entries):
    """input_layers / output_layers: one [name, node, tensor] or a list of them."""
    if entries and isinstance(entries[0], str):
        entries = [entries]
    return [(name, node, tensor) for name, node, tensor in entries]


def _node(layer, inbound):
    """A Node from one recorded call: positional tensors, then initial_state, and the mask."""
    if isinstance(inbound, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        tensors = []
        template = _template(inbound.get("args", []), tensors)
        kwargs = dict(inbound.get("kwargs", {}))
        kwargs.pop("training", None)
        tensors += _keras_tensors(kwargs.pop("initial_state", None) or [])
        mask = kwargs.pop("mask", NO_MASK_ARGUMENT)
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if isinstance(mask, dict):
            mask = _keras_tensors(mask)[0]
        for key, value in kwargs.items():
            if _keras_tensors(value):
                raise refuse(f"layer {layer.name!r}", "tensor arguments inputs, initial_state and mask",
                             f"call argument {key!r}")
        return Node(layer, tuple(tensors), mask, template if isinstance(layer, Operation) else None)
    # tf_keras: [[name, node, tensor, kwargs], ...]; initial_state tensors arrive in kwargs.
    found = []
    for name, node, tensor, *rest in inbound:
        found.append((name, node, tensor))
        kwargs = rest[0] if rest else {}
        for state in kwargs.get("initial_state", None) or []:
            found.append(tuple(state[:3]))
    return Node(layer, tuple(found))


def _template(value, tensors):
    """`value` with each recorded tensor replaced by a Slot, collecting the tensors in order."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        tensors.append(tuple(value["config"]["keras_history"]))
        return Slot(len(tensors) - 1)
    if isinstance(value, (list, tuple)):
        return [_template(item, tensors) for item in value]
    return value


def _keras_tensors(value):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [tuple(value["config"]["keras_history"])]
        return []
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _keras_tensors(item)]
    return []


def _input_shape(input_config):
    shape = input_config.get("batch_shape") or input_config.get("batch_input_shape")
    return None if shape is None else tuple(shape)


def _build_layer(layer_config, weights, keras_version):
    kind, config = layer_config.get("class_name"), layer_config.get("config", {})
    name = config.get("name", "?")
    if kind == "Lambda":
        raise refuse(
            f"layer {name!r}",
            "layers reflstm can run without executing code from the file",
            "a Lambda layer (its Python code is never run)",
        )
    builder = _BUILDERS.get(kind)
    custom = layer_config.get("registered_name") not in (None, kind) or layer_config.get(
        "module"
    ) not in (None, "keras.layers")
    if builder is None or custom:
        raise refuse(
            f"layer {name!r}",
            f"one of the supported layers ({', '.join(sorted(_BUILDERS))})",
            f"class {kind!r}" + (" (a custom class is never run)" if builder else ""),
        )
    arrays = weights.get(name, [])
    _refuse_mixed_precision(name, config)
    return builder(name, config, arrays, keras_version)


def _refuse_mixed_precision(name, config):
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if isinstance(dtype, str) and dtype.startswith("mixed"):
        raise refuse(f"layer {name!r}", "one dtype for weights and computation", f"policy {dtype!r}")


def _activation(name, value):
    """An activation from a config: a name, or Keras 3's serialized built-in function."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(
        value.get("config"), str
    ) and str(value.get("module", "")).startswith("keras"):
        return value["config"]
    raise refuse(f"activation of layer {name!r}", "a built-in Keras activation", repr(value)[:80])


def _expect_weights(name, arrays, count):
    if len(arrays) not in count:
        raise refuse(
            f"weights of layer {name!r}",
            f"{' or '.join(map(str, count))} arrays",
            f"{len(arrays)}",
        )


def _lstm(name, config, arrays, keras_version, go_backwards=None, zero_output_for_mask=None):
    """A reflstm.LSTM from an LSTM (or LSTMCell inside RNN) config and its arrays."""
    cell = config["cell"]["config"] if "cell" in config else config
    if "cell" in config and config["cell"].get("class_name") != "LSTMCell":
        raise refuse(f"layer {name!r}", "RNN(LSTMCell)", f"RNN({config['cell'].get('class_name')})")
    if config.get("stateful"):
        raise refuse(
            f"layer {name!r}", "stateful=False in a whole model (convert a stateful layer with "
            "reflstm.LSTM.from_keras)", "stateful=True",
        )
    if config.get("time_major"):
        raise refuse(f"layer {name!r}", "a batch-major layer (time_major=False)", "time_major=True")
    use_bias = cell.get("use_bias", True)
    _expect_weights(name, arrays, (3,) if use_bias else (2,))
    return LSTM(
        arrays[0],
        arrays[1],
        arrays[2] if use_bias else None,
        activation=_activation(name, cell.get("activation", "tanh")),
        recurrent_activation=_activation(name, cell.get("recurrent_activation", "sigmoid")),
        return_sequences=bool(config.get("return_sequences", False)),
        return_state=bool(config.get("return_state", False)),
        go_backwards=bool(config.get("go_backwards", False) if go_backwards is None else go_backwards),
        zero_output_for_mask=bool(
            config.get("zero_output_for_mask", False)
            if zero_output_for_mask is None
            else zero_output_for_mask
        ),
        keras_version=keras_version,
    )


def _lstm_layer(name, config, arrays, keras_version):
    return L.LSTMLayer(name, _lstm(name, config, arrays, keras_version))


def _bidirectional(name, config, arrays, keras_version):
    inner = config["layer"]
    if inner.get("class_name") not in ("LSTM", "RNN"):
        raise refuse(f"layer {name!r}", "Bidirectional(LSTM)", f"Bidirectional({inner.get('class_name')})")
    forward_config = inner["config"]
    backward_config = (config.get("backward_layer") or inner)["config"]
    half = len(arrays) // 2
    # keras bidirectional.py: both directions get zero_output_for_mask = return_sequences, and
    # the backward layer processes the steps in reverse.
    zero = bool(forward_config.get("return_sequences", False))
    forward = _lstm(name, forward_config, arrays[:half], keras_version, zero_output_for_mask=zero)
    backward = _lstm(
        name, backward_config, arrays[half:], keras_version,
        go_backwards=not forward.go_backwards, zero_output_for_mask=zero,
    )
    merge_mode = config.get("merge_mode", "concat")
    if merge_mode not in ("concat", "sum", "mul", "ave", None):
        raise refuse(f"merge_mode of layer {name!r}", "concat, sum, mul, ave or None", repr(merge_mode))
    return L.Bidirectional(name, forward, backward, merge_mode)


def _dense(name, config, arrays, keras_version):
    use_bias = config.get("use_bias", True)
    _expect_weights(name, arrays, (2,) if use_bias else (1,))
    return L.Dense(name, np.asarray(arrays[0]), np.asarray(arrays[1]) if use_bias else None,
                   _activation(name, config.get("activation", "linear")) or "linear", keras_version)


def _time_distributed(name, config, arrays, keras_version):
    inner = config["layer"]
    if inner.get("class_name") != "Dense":
        raise refuse(f"layer {name!r}", "TimeDistributed(Dense)", f"TimeDistributed({inner.get('class_name')})")
    dense = _dense(name, inner["config"], arrays, keras_version)
    return dataclasses.replace(dense, name=name)


def _embedding(name, config, arrays, keras_version):
    _expect_weights(name, arrays, (1,))
    return L.Embedding(name, np.asarray(arrays[0]), bool(config.get("mask_zero", False)))


_BUILDERS = {
    "LSTM": _lstm_layer,
    "RNN": _lstm_layer,
    "Bidirectional": _bidirectional,
    "Dense": _dense,
    "TimeDistributed": _time_distributed,
    "Embedding": _embedding,
    "Masking": lambda name, config, arrays, kv: L.Masking(name, float(config.get("mask_value", 0.0))),
    "Dropout": lambda name, config, arrays, kv: L.Identity(name),
    "SpatialDropout1D": lambda name, config, arrays, kv: L.Identity(name),
    "Activation": lambda name, config, arrays, kv: L.Activation(
        name, _activation(name, config["activation"]) or "linear", kv
    ),
    "Flatten": lambda name, config, arrays, kv: L.Flatten(name),
    "RepeatVector": lambda name, config, arrays, kv: L.RepeatVector(name, int(config["n"])),
    "Concatenate": lambda name, config, arrays, kv: L.Concatenate(name, int(config.get("axis", -1)), kv),
    **{
        kind: (lambda kind: lambda name, config, arrays, kv: L.Merge(name, kind, kv))(kind)
        for kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
    },
}
