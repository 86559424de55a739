"""Model: a whole Keras model (Sequential or functional) run layer by layer in NumPy."""

import numpy as np

from reflstm.config import NO_MASK_ARGUMENT, Slot, parse_model
from reflstm.errors import refuse
from reflstm.layers import Bidirectional, RecurrentLayer
from reflstm.lstm import LSTM
from reflstm.ops import Operation
from reflstm.untrusted import Limits

__all__ = ["Model"]

# predict() works through a batch this many samples at a time, so memory stays bounded.
BLOCK = 64


class Model:
    """A Keras model's forward pass: `predict` equals Keras's ``model.predict``.

    Build one with `reflstm.load` (a saved file) or `Model.from_keras` (a live model). The
    layers it can run are those of `reflstm.config`; masks travel between them as in Keras.
    """

    saved_by = None  # which Keras wrote the file `reflstm.load` read, e.g. "Keras 2.1.6 (tensorflow backend)"

    def __init__(self, model_config, weights, keras_version, limits=None):
        self._config, self._weights = model_config, weights
        self.keras_version = keras_version
        self._limits = limits or Limits()
        self.graph = parse_model(model_config, keras_version, self._limits).build(weights)
        self.name = self.graph.name
        self.layers = {}
        for node in self.graph.nodes.values():
            if not isinstance(node.layer, Operation):
                self.layers.setdefault(node.layer.name, node.layer)

    @classmethod
    def from_keras(cls, model):
        """The reflstm Model of a live Keras 3 or tf_keras model (reads its config and weights)."""
        from reflstm.keras import keras_version_of

        keras_version = keras_version_of(model, "model", "model")
        if not hasattr(model, "layers") or not hasattr(model, "get_config"):
            raise refuse("model", "a Keras 3 or tf_keras model", f"an object of class {type(model).__name__}")
        kind = "Sequential" if type(model).__name__ == "Sequential" else "Functional"
        weights = {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers}
        return cls({"class_name": kind, "config": model.get_config()}, weights, keras_version)

    def astype(self, dtype):
        """The same model with every weight cast to `dtype` (float64 for a high-precision reference)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise refuse("dtype", "float32 or float64", str(dtype))
        weights = {
            name: [w.astype(dtype) if w.dtype.kind == "f" else w for w in arrays]
            for name, arrays in self._weights.items()
        }
        return Model(self._config, weights, self.keras_version, self._limits)

    @property
    def recurrent_layers(self):
        """{name: layer} of the recurrent layers (LSTM, GRU, SimpleRNN, RNN of their cells, and
        Bidirectional of any of them), in model order: the layers `trace` records."""
        return {n: l for n, l in self.layers.items() if isinstance(l, (RecurrentLayer, Bidirectional))}

    @property
    def lstm_layers(self):
        """{name: layer} of the LSTM and Bidirectional(LSTM) layers, in model order."""
        return {n: l for n, l in self.recurrent_layers.items()
                if isinstance(l.forward if isinstance(l, Bidirectional) else l.cell, LSTM)}

    def __repr__(self):
        kinds = ", ".join(f"{name}: {type(layer).__name__}" for name, layer in self.layers.items())
        return f"reflstm.Model({self.name!r}, keras_version={self.keras_version}, layers=[{kinds}])"

    def predict(self, x, batch_size=None):
        """What Keras's ``model.predict(x)`` returns; x is one array, or a list for several inputs.

        The batch is processed `batch_size` samples at a time (64 by default), so memory stays
        bounded however large the batch. Block by block the arithmetic is the same as one pass;
        only the rounding of NumPy's matrix products can differ in the last bit, since BLAS
        rounds by how many rows it multiplies at once (as Keras's own predict does with its
        batch_size).
        """
        inputs = self._inputs(x)
        total = inputs[0].shape[0]
        batch_size = BLOCK if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise refuse("batch_size", "a positive integer or None", repr(batch_size))
        chunks = [
            self._run([a[start : start + batch_size] for a in inputs], traces=None)
            for start in range(0, max(total, 1), batch_size)
        ]
        outputs = [np.concatenate(parts, axis=0) for parts in zip(*chunks)]
        return outputs[0] if len(outputs) == 1 else outputs

    def trace(self, x):
        """{layer name: trace} for every recurrent layer: a `Trace` for an LSTM, a `GRUTrace` for a
        GRU, a `SimpleRNNTrace` for a SimpleRNN, a `BidirectionalTrace` for a Bidirectional.

        A layer called more than once in the graph (a shared layer) keeps its last call's trace.
        """
        traces = {}
        self._run(self._inputs(x), traces=traces)
        return traces

    def _inputs(self, x):
        if len(self.graph.inputs) == 1:
            # One input: a list is that input's data, unless it is a list of one array.
            single = isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray)
            arrays = [x[0] if single else x]
        else:
            arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(arrays) != len(self.graph.inputs):
            raise refuse("x", f"{len(self.graph.inputs)} input arrays", f"{len(arrays)}")
        checked = []
        for name, array in zip(self.graph.inputs, arrays):
            array = np.asarray(array)
            if array.dtype.kind not in "biuf":
                raise refuse(f"input {name!r}", "an array of numbers", array)
            if array.ndim < 2 or array.shape[0] == 0:
                raise refuse(f"input {name!r}", "a batch of at least one sample, (batch, ...)", array)
            shape = self.graph.input_shapes.get(name)
            if shape is not None and (
                array.ndim != len(shape)
                or any(s is not None and s != a for s, a in zip(shape[1:], array.shape[1:]))
            ):
                raise refuse(f"input {name!r}", f"shape {_shape_text(shape)}", array)
            checked.append(array)
        if len({a.shape[0] for a in checked}) > 1:
            raise refuse("x", "the same batch size for every input", [a.shape for a in checked])
        return checked

    def backward(self, x, d_outputs):
        """Gradients of sum(output * d_output) over the model's outputs, for each float input.

        d_outputs is shaped like what `predict` returns (a list for several outputs). Returns
        the gradient of each model input (a list for several), None for token-id inputs.
        Gradients flow back through every layer the Model runs, LSTMs by `LSTM.backward`; a GRU
        or SimpleRNN on the way is refused (their backward pass is not written yet).
        """
        inputs = self._inputs(x)
        record = []
        outputs = self._run(inputs, traces=None, record=record)
        d_list = list(d_outputs) if isinstance(d_outputs, (list, tuple)) else [d_outputs]
        if len(d_list) != len(outputs):
            raise refuse("d_outputs", f"{len(outputs)} arrays, one per model output", f"{len(d_list)}")
        grads = {}  # (layer, node, tensor) -> accumulated gradient

        def add(key, value):
            if value is not None:
                grads[key] = value if key not in grads else grads[key] + value

        for triple, out, d in zip(self.graph.outputs, outputs, d_list):
            d = np.asarray(d, out.dtype)
            if d.shape != out.shape:
                raise refuse("d_outputs", f"shape {out.shape}", d)
            add(triple, d)
        for key, node, arrays, masks, n_outputs in reversed(record):
            d_out = [grads.get((key[0], key[1], k)) for k in range(n_outputs)]
            if all(d is None for d in d_out) or isinstance(node.layer, Operation):
                continue
            for source, d in zip(node.inputs, node.layer.vjp(arrays, masks, d_out)):
                add(source, d)
        result = [grads.get((name, 0, 0)) for name in self.graph.inputs]
        return result[0] if len(result) == 1 else result

    def _run(self, inputs, traces, record=None):
        """Evaluate the graph; each node once, inputs as given, masks as Keras propagates them.

        With `record` (a list), append (node key, node, input arrays, input masks, output count)
        in evaluation order, for the backward pass.
        """
        results = {(name, 0): ([array], [None]) for name, array in zip(self.graph.inputs, inputs)}

        def output(name, node_index, tensor):  # every reference was checked when the Graph was built
            outputs, masks = results[(name, node_index)]
            return outputs[tensor], masks[tensor]

        # Graph.order puts every node after the nodes it reads: one pass, no recursion.
        for key in self.graph.order:
            node = self.graph.nodes[key]
            arrays, masks = map(list, zip(*(output(*source) for source in node.inputs))) if node.inputs else ([], [])
            layer = node.layer
            if node.mask is not NO_MASK_ARGUMENT and masks:
                # Keras 3 functional graphs record the mask each layer was called with.
                masks[0] = None if node.mask is None else output(*node.mask)[0]
            if isinstance(layer, Operation):
                results[key] = ([layer(_fill(node.template, arrays))], [None])
            elif isinstance(layer, (RecurrentLayer, Bidirectional)):
                # keras/src/layers/layer.py __call__, "Populate mask argument(s)": Keras 3 fills in
                # `mask` only for a call with one tensor argument, so a recurrent layer given an
                # initial_state runs unmasked unless the call passed a mask itself; its output
                # still carries the input's mask.
                unmasked = (self.keras_version == 3 and len(arrays) > 1
                            and node.mask is NO_MASK_ARGUMENT)
                results[key] = layer(arrays, masks, traces, use_mask=not unmasked)
                if unmasked:
                    masks = [None] + masks[1:]  # as the backward pass must see the call
            else:
                results[key] = layer(arrays, masks)
            if record is not None:
                record.append((key, node, arrays, list(masks), len(results[key][0])))
        return [output(*triple)[0] for triple in self.graph.outputs]


def _fill(template, arrays):
    """An operation's recorded arguments with its input arrays put back in their Slots."""
    if isinstance(template, Slot):
        return arrays[template.index]
    if isinstance(template, list):
        return [_fill(item, arrays) for item in template]
    return template


def _shape_text(shape):
    return "(" + ", ".join("batch" if i == 0 else str(s) for i, s in enumerate(shape)) + ")"
