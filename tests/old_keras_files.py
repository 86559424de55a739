"""Files as Keras 1 and standalone Keras 2.0–2.2 wrote them, from a live tf_keras model.

Those Keras versions do not install on Python 3.11, so these writers follow their source: Keras
1.2's `save_model` (keras/models.py) and its layers' `get_config` (keras/layers/recurrent.py,
core.py, embeddings.py, wrappers.py, engine/topology.py Merge), and Keras 2.0–2.2's saving.py. The
tf_keras model supplies the weights and the expected predictions; that the weights are laid out
as Keras 1 laid them out is checked by tf_keras itself, whose `load_weights` converts a Keras 1
file (one without a keras_version attribute) with its own legacy converter.

Real files written by those versions are in tests/data/published (see its SOURCES.md).
"""

import json
import re

import h5py
import numpy as np

# Keras 1's LSTM listed its per-gate arrays in the gate order i, c, f, o; today's blocks are i, f, c, o.
_KERAS1_GATES = {"LSTM": ("icfo", "ifco"), "GRU": ("zrh", "zrh")}


def _split(kernel, recurrent, bias, kind, name):
    """Keras 1's per-gate arrays [W_g, U_g, b_g, ...] and their names, from today's three."""
    stored, today = _KERAS1_GATES[kind]
    blocks = [np.split(a, len(today), axis=-1) for a in (kernel, recurrent, bias)]
    arrays, names = [], []
    for gate in stored:
        k = today.index(gate)
        arrays += [blocks[0][k], blocks[1][k], blocks[2][k]]
        names += [f"{name}_W_{gate}", f"{name}_U_{gate}", f"{name}_b_{gate}"]
    return arrays, names


def _keras1_recurrent(layer, name, consume_less="cpu"):
    """(config, arrays, weight names) of a recurrent layer as Keras 1.2 saved it."""
    kind = type(layer).__name__
    config = layer.get_config()
    units = config["units"]
    keras1 = {
        "name": name, "trainable": True, "output_dim": units,
        "init": "glorot_uniform", "inner_init": "orthogonal", "activation": config["activation"],
        "W_regularizer": None, "U_regularizer": None, "b_regularizer": None,
        "dropout_W": 0.0, "dropout_U": 0.0,
        "return_sequences": config["return_sequences"], "go_backwards": config["go_backwards"],
        "stateful": False, "unroll": False, "consume_less": consume_less,
        "input_dim": int(layer.get_weights()[0].shape[0]), "input_length": None,
    }
    weights = layer.get_weights()
    if kind == "SimpleRNN":
        return keras1, weights, [f"{name}_W", f"{name}_U", f"{name}_b"]
    keras1["inner_activation"] = config["recurrent_activation"]
    if kind == "LSTM":
        keras1["forget_bias_init"] = "one"
    if consume_less == "gpu":
        return keras1, weights, [f"{name}_W", f"{name}_U", f"{name}_b"]
    arrays, names = _split(*weights, kind, name)
    return keras1, arrays, names


def _keras1_dense(layer, name):
    config = layer.get_config()
    keras1 = {
        "name": name, "trainable": True, "output_dim": config["units"], "init": "glorot_uniform",
        "activation": config["activation"], "W_regularizer": None, "b_regularizer": None,
        "activity_regularizer": None, "W_constraint": None, "b_constraint": None,
        "bias": config["use_bias"], "input_dim": int(layer.kernel.shape[0]),
    }
    return keras1, layer.get_weights(), [f"{name}_W", f"{name}_b"][: len(layer.get_weights())]


def keras1_layer(layer, consume_less="cpu"):
    """(class_name, config, arrays, weight names) of one tf_keras layer as Keras 1.2 saved it."""
    kind, name = type(layer).__name__, layer.name
    if kind in ("LSTM", "GRU", "SimpleRNN"):
        return (kind, *_keras1_recurrent(layer, name, consume_less))
    if kind == "Dense":
        return (kind, *_keras1_dense(layer, name))
    if kind == "TimeDistributed":
        inner, arrays, names = _keras1_dense(layer.layer, layer.layer.name)
        return kind, {"name": name, "trainable": True, "layer": {"class_name": "Dense", "config": inner}}, arrays, names
    if kind == "Bidirectional":
        # Keras 1.2 wrappers.py: the wrapped layer's copy and a reversed copy, named forward_* and
        # backward_*; their weights forward first.
        inner_kind = type(layer.forward_layer).__name__
        wrapped = layer.layer.name
        forward, arrays_f, names_f = _keras1_recurrent(layer.forward_layer, f"forward_{wrapped}", consume_less)
        _, arrays_b, names_b = _keras1_recurrent(layer.backward_layer, f"backward_{wrapped}", consume_less)
        forward["name"], forward["go_backwards"] = wrapped, False
        config = {"name": name, "trainable": True, "layer": {"class_name": inner_kind, "config": forward},
                  "merge_mode": layer.merge_mode}
        return kind, config, arrays_f + arrays_b, names_f + names_b
    if kind == "Embedding":
        config = layer.get_config()
        keras1 = {"name": name, "trainable": True, "input_dim": config["input_dim"],
                  "output_dim": config["output_dim"], "init": "uniform", "input_length": layer.input_shape[1],
                  "activity_regularizer": None, "W_constraint": None, "mask_zero": config["mask_zero"],
                  "W_regularizer": None, "dropout": 0.0}
        return kind, keras1, layer.get_weights(), [f"{name}_W"]
    if kind == "Masking":
        return kind, {"name": name, "trainable": True, "mask_value": layer.mask_value}, [], []
    if kind == "Dropout":
        return kind, {"name": name, "trainable": True, "p": layer.rate}, [], []
    if kind in ("Concatenate", "Add", "Multiply", "Average", "Maximum"):
        mode = {"Concatenate": "concat", "Add": "sum", "Multiply": "mul", "Average": "ave", "Maximum": "max"}[kind]
        config = {"name": name, "mode": mode, "concat_axis": getattr(layer, "axis", -1), "dot_axes": -1,
                  "mode_type": "raw", "output_shape": None, "output_shape_type": "raw",
                  "output_mask": None, "output_mask_type": "raw", "arguments": {}}
        return "Merge", config, [], []
    raise ValueError(f"no Keras 1 form written for {kind}")


def _write(path, model_config, layers, attributes):
    """An HDF5 file as Keras's save_model wrote it: attributes, model_config, model_weights."""
    with h5py.File(path, "w") as f:
        for key, value in attributes.items():
            f.attrs[key] = value.encode("utf8")
        f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [name.encode("utf8") for name, _, _ in layers]
        for name, arrays, names in layers:
            group = weights.create_group(name)
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for array, weight_name in zip(arrays, names):
                group.create_dataset(weight_name, data=array)


def save_keras1(model, path, backend="theano", consume_less="cpu", input_dtype="float32", version="1.2.2"):
    """`model` (tf_keras) saved as Keras 1.2 saved it: keras_version "1.x" (save_model wrote it from
    1.0.7 on) and no backend attribute, Keras 1 names, per-gate arrays; a Sequential as its bare
    list of layers, a functional model as "Model". `backend` only names the weights' form: Theano
    names have no ":0"."""
    sequential = type(model).__name__ == "Sequential"
    entries, layers = [], []
    config = model.get_config()
    for k, layer in enumerate(model.layers):
        if type(layer).__name__ == "InputLayer":
            shape = [None, *layer.get_config()["batch_input_shape"][1:]]
            entry = {"class_name": "InputLayer", "name": layer.name, "inbound_nodes": [],
                     "config": {"batch_input_shape": shape, "input_dtype": input_dtype, "sparse": False,
                                "name": layer.name}}
            entries.append(entry)
            layers.append((layer.name, [], []))
            continue
        kind, keras1, arrays, names = keras1_layer(layer, consume_less)
        if sequential and k == 0:
            keras1["batch_input_shape"] = [None, *model.input_shape[1:]]
            keras1["input_dtype"] = input_dtype
        entry = {"class_name": kind, "config": keras1}
        if not sequential:
            recorded = next(e for e in config["layers"] if e["name"] == layer.name)["inbound_nodes"]
            entry.update(name=layer.name, inbound_nodes=[[triple[:3] for triple in node] for node in recorded])
        entries.append(entry)
        layers.append((layer.name, arrays, names))
    if sequential:
        model_config = {"class_name": "Sequential", "config": entries}
    else:
        model_config = {"class_name": "Model", "config": {
            "name": model.name, "layers": entries,
            "input_layers": [t[:3] for t in config["input_layers"]],
            "output_layers": [t[:3] for t in config["output_layers"]],
        }}
    if backend == "tensorflow":
        layers = [(name, arrays, [f"{n}:0" for n in names]) for name, arrays, names in layers]
    _write(path, model_config, layers, {"keras_version": version} if version else {})
    return path


# Keys a standalone Keras 2.1 LSTM/GRU config had (keras/layers/recurrent.py get_config).
_KERAS21_RECURRENT = {
    "name", "trainable", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
    "units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
    "recurrent_initializer", "bias_initializer", "unit_forget_bias", "kernel_regularizer",
    "recurrent_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
    "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout", "implementation",
}


def save_keras2_early(model, path, keras_version="2.1.6", reset_after_key=False):
    """A tf_keras Sequential saved as standalone Keras 2.0–2.2 saved it: the config a bare list of
    layers (the first carrying batch_input_shape), keras_version "2.x", names "lstm_1/kernel:0",
    and GRU configs without reset_after (added in Keras 2.1.3) unless `reset_after_key`."""
    entries, layers = [], []
    for k, layer in enumerate(model.layers):
        config = dict(layer.get_config())
        kind = type(layer).__name__
        if kind in ("LSTM", "GRU", "SimpleRNN"):
            keep = _KERAS21_RECURRENT | ({"reset_after"} if reset_after_key else set())
            config = {key: value for key, value in config.items() if key in keep}
        config.pop("dtype", None)
        if k == 0:
            config["batch_input_shape"] = [None, *model.input_shape[1:]]
            config["dtype"] = "float32"
        entries.append({"class_name": kind, "config": config})
        # Keras 2.1 named a weight by its layer ("lstm_1/kernel:0"), with no cell in between.
        names = [re.sub(r"/(lstm|gru|simple_rnn)_cell(_\d+)?/", "/", w.name) for w in layer.weights]
        layers.append((layer.name, layer.get_weights(), names))
    _write(path, {"class_name": "Sequential", "config": entries}, layers,
           {"keras_version": keras_version, "backend": "tensorflow"})
    return path
