"""Model: a whole Keras model (Sequential or functional) run layer by layer in NumPy."""

import contextlib

import numpy as np

from reflstm.formats.config import NO_MASK_ARGUMENT, Slot, parse_model
from reflstm.errors import ReflstmError, describe, refuse
from reflstm.models.layers import Bidirectional, RecurrentLayer
from reflstm.cells.lstm import LSTM
from reflstm.models.not_run import NotRun
from reflstm.models.ops import Operation
from reflstm.formats.untrusted import Limits, over_budget

__all__ = ["Model"]

# predict() works through a batch this many samples at a time, so memory stays bounded.
BLOCK = 64
# summary() finds output shapes by running zeros of the saved input shapes, if that many values at most.
SUMMARY_VALUES = 2**20


class Model:
    """A Keras model's forward pass: `predict` equals Keras's ``model.predict``.

    Build one with `reflstm.load` (a saved file) or `Model.from_keras` (a live model). The
    layers it can run are those of `reflstm.formats.config`; masks travel between them as in Keras.
    A model holding a layer reflstm does not run (a Lambda, a custom or unknown class: `not_run`)
    loads all the same: `summary`, `layer` and the recurrent layers' own traces work, while
    `predict`, `trace` and `backward` are refused, naming that layer, before anything is computed.

    A model with stateful layers (``stateful=True``) keeps their states between calls, as
    Keras does: loaded from a file it starts from zeros (Keras saves no state, and reloads with
    zeros); every `predict` batch and every `trace` starts from the states the last one ended
    in; `reset_state` sets them back to zeros. Its batch size is the one the file fixes
    (``batch_shape`` / ``batch_input_shape``), `batch_size`, and every call takes batches of
    exactly that size, as Keras requires.
    """

    saved_by = None  # which Keras wrote the file `reflstm.load` read, e.g. "Keras 2.1.6 (tensorflow backend)"

    def __init__(self, model_config, weights, keras_version, limits=None, keras_backend="tensorflow"):
        self._config, self._weights = model_config, weights
        self.keras_version = keras_version
        # Which Keras 3 backend's masked steps the recurrent layers reproduce (reflstm.cells.recurrent);
        # a file does not record it, so `reflstm.load` takes it as an option.
        self.keras_backend = keras_backend
        self._limits = limits or Limits()
        plan = parse_model(model_config, keras_version, self._limits, keras_backend)
        self.graph = plan.build(weights)
        self._listed, self._tensor_shapes = plan.listed, plan.tensor_shapes
        self.name = self.graph.name
        self.layers = {}
        for node in self.graph.nodes.values():
            if not isinstance(node.layer, Operation):
                self.layers.setdefault(node.layer.name, node.layer)
        self.batch_size = self._start_stateful_layers()

    @classmethod
    def from_keras(cls, model):
        """The reflstm Model of a live Keras 3 or tf_keras model (reads its config and weights)."""
        from reflstm.frameworks.keras import keras_backend_of, keras_version_of

        keras_version = keras_version_of(model, "model", "model")
        if not hasattr(model, "layers") or not hasattr(model, "get_config"):
            raise refuse("model", "a Keras 3 or tf_keras model", f"an object of class {type(model).__name__}")
        kind = "Sequential" if type(model).__name__ == "Sequential" else "Functional"
        weights = {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers}
        made = cls({"class_name": kind, "config": model.get_config()}, weights, keras_version,
                   keras_backend=keras_backend_of(model, keras_version))
        made._take_keras_states(model)
        return made

    def _take_keras_states(self, model):
        """The states the live model's stateful layers carry now (Recurrent.from_keras reads them)."""
        from reflstm.frameworks.keras import layer_arguments

        for name, layer in self.stateful_layers.items():
            keras_layer = model.get_layer(name)
            if isinstance(layer, Bidirectional):
                keras_layers = (keras_layer.forward_layer, keras_layer.backward_layer)
            else:
                keras_layers = (keras_layer,)
            for cell, source in zip(layer.cells, keras_layers):
                _, states = layer_arguments(source, type(cell).__name__)
                if states is not None:
                    if any(np.shape(s) != c.shape for s, c in zip(states, cell.states)):
                        raise refuse(f"states of layer {name!r}", f"shape {cell.states[0].shape}",
                                     [np.shape(s) for s in states])
                    cell.states = [np.array(s, dtype=cell.dtype) for s in states]

    def astype(self, dtype):
        """The same model with every weight cast to `dtype` (float64 for a high-precision reference)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise refuse("dtype", "float32 or float64", str(dtype))
        weights = {
            name: [w.astype(dtype) if w.dtype.kind == "f" else w for w in arrays]
            for name, arrays in self._weights.items()
        }
        made = Model(self._config, weights, self.keras_version, self._limits, self.keras_backend)
        for name, layer in self.stateful_layers.items():  # the same carried states, cast
            for ours, theirs in zip(made.layers[name].cells, layer.cells):
                ours.states = [s.astype(dtype) for s in theirs.states]
        return made

    @property
    def stateful_layers(self):
        """{name: layer} of the recurrent layers with ``stateful=True``, in model order."""
        return {n: l for n, l in self.recurrent_layers.items() if l.stateful}

    @property
    def states(self):
        """{layer name: [states]} of the stateful layers: what the next call starts from (each
        (batch_size, units); an LSTM's [h, c], a Bidirectional's forward then backward)."""
        return {n: l.states for n, l in self.stateful_layers.items()}

    def reset_state(self):
        """Set the carried states of every stateful layer to zeros, as after loading the file.

        Every state of every stateful layer (h, and C for an LSTM; both directions of a
        Bidirectional) becomes zeros of shape (batch_size, units); nothing else changes (weights,
        batch size). A model without stateful layers is left as it is. This is tf_keras's
        ``model.reset_states()``; Keras 3 has no model-wide method, and its users call
        ``layer.reset_state()`` on each stateful layer (here ``m.layers[name].reset_state()``).
        """
        for layer in self.stateful_layers.values():
            layer.reset_state()

    reset_states = reset_state  # tf_keras's name

    def _start_stateful_layers(self):
        """The fixed batch size of a model with stateful layers (None without), their states
        set to zeros of it: Keras builds a stateful layer's states from the input's batch size."""
        stateful = self.stateful_layers
        if not stateful:
            return None
        for name in stateful:
            calls = sum(1 for key in self.graph.nodes if key[0] == name)
            if calls > 1:
                raise refuse(f"layer {name!r}", "a stateful layer called once in the model",
                             f"{calls} calls of it (a shared stateful layer is not modelled)")
        sizes = {shape[0] for shape in self.graph.input_shapes.values()
                 if shape is not None and shape[0] is not None}
        if len(sizes) != 1:
            raise refuse(f"layer {next(iter(stateful))!r}",
                         "a stateful layer in a model whose input fixes the batch size (batch_shape, "
                         "or batch_input_shape), as Keras requires to build it",
                         "no fixed batch size" if not sizes else f"batch sizes {sorted(sizes)}")
        (batch,) = sizes
        # The batch size is the file's word: the states it asks for count against the weights' budget.
        size = sum(len(cell.STATES) * batch * cell.units * cell.dtype.itemsize
                   for layer in stateful.values() for cell in layer.cells)
        if size > self._limits.max_weight_bytes:
            raise over_budget(f"states of the stateful layers (batch size {batch:,})", "max_weight_bytes",
                              self._limits.max_weight_bytes, size)
        for layer in stateful.values():
            for cell in layer.cells:
                cell.states = [np.zeros((batch, cell.units), cell.dtype) for _ in cell.STATES]
        return batch

    def _check_stateful_batch(self, inputs, call):
        """A stateful model runs batches of its batch size only: refuse any other, before any run."""
        if self.batch_size is not None and inputs[0].shape[0] != self.batch_size:
            raise refuse("x", f"{self.batch_size} samples, the batch size of this stateful model "
                         f"({call})", f"{inputs[0].shape[0]} samples")

    def _carried(self):
        """The carried states of every stateful layer's cells (lists, never changed in place)."""
        return [(cell, cell.states) for layer in self.stateful_layers.values() for cell in layer.cells]

    @contextlib.contextmanager
    def _states_kept_on_error(self):
        """A call that fails part way (a bad token id in its third batch) leaves the states as they were."""
        carried = self._carried()
        try:
            yield
        except BaseException:
            _restore(carried)
            raise

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

    @property
    def not_run(self):
        """{name: why} of the layers reflstm keeps but does not run, in model order."""
        return {n: f"{l.kind}: {l.reason}" for n, l in self.layers.items() if isinstance(l, NotRun)}

    def check_runnable(self, call="run it"):
        """Refuse to run (`call`, in words) a model that holds layers reflstm does not run,
        naming every one; predict, trace and backward call it before anything else."""
        not_run = self.not_run
        if not_run:
            names = "; ".join(f"layer {n!r} ({why})" for n, why in not_run.items())
            raise refuse("model", f"layers reflstm runs, to {call} (a recurrent layer runs alone: "
                         "Model.layer(name), or reflstm trace --layer NAME --layer-input H.npy)", names)

    def layer(self, name):
        """The reflstm layer called `name`: for an LSTM, GRU or SimpleRNN (or RNN of their cell) the
        `reflstm.LSTM` (`GRU`, `SimpleRNN`) itself, with its weights and options, to run or trace
        alone on the array that reaches it in the model; for a Bidirectional the model's
        `Bidirectional` layer, whose `.forward` and `.backward` are those (the backward one with
        go_backwards set, as Keras builds it) and which is called as ``layer([x], [mask])``; for
        another layer the model's layer object (a `NotRun` for one reflstm does not run).
        """
        if name not in self.layers:
            raise refuse("name", f"one of the model's layers ({', '.join(map(repr, self.layers))})", repr(name))
        layer = self.layers[name]
        return layer.cell if isinstance(layer, RecurrentLayer) else layer

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

        A stateful model runs x in consecutive batches of its `batch_size` (the default here;
        another is refused), each starting from the states the one before ended in, and keeps
        the last one's states for the next call: Keras's ``predict(x, batch_size=B)`` does the
        same, and fails on any other batch size or on a last batch of fewer than B samples
        (refused here before anything runs).
        """
        self.check_runnable("predict")
        inputs = self._inputs(x)
        total = inputs[0].shape[0]
        if self.batch_size is not None:
            if batch_size not in (None, self.batch_size):
                raise refuse("batch_size", f"None or {self.batch_size}, the batch size of this "
                             "stateful model", repr(batch_size))
            if total % self.batch_size:
                raise refuse("x", f"a multiple of {self.batch_size} samples (this stateful model "
                             f"runs batches of {self.batch_size}, as Keras does)", f"{total} samples")
            batch_size = self.batch_size
        batch_size = BLOCK if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise refuse("batch_size", "a positive integer or None", repr(batch_size))
        with self._states_kept_on_error():
            chunks = [
                self._run([a[start : start + batch_size] for a in inputs], traces=None)
                for start in range(0, max(total, 1), batch_size)
            ]
        outputs = [np.concatenate(parts, axis=0) for parts in zip(*chunks)]
        return outputs[0] if len(outputs) == 1 else outputs

    def trace(self, x, keep=None):
        """{layer name: trace} for every recurrent layer: a `Trace` for an LSTM, a `GRUTrace` for a
        GRU, a `SimpleRNNTrace` for a SimpleRNN, a `BidirectionalTrace` for a Bidirectional.

        `keep`: the names of the quantities the traces hold (see `reflstm.LSTM.trace`); each
        layer keeps those it has (``keep=("h", "c")`` keeps a GRU's h), and a name no recurrent
        layer of the model has is refused. None: every layer's default.

        A layer called more than once in the graph (a shared layer) keeps its last call's trace.

        A trace is one call: on a stateful model x is one batch of `batch_size` samples, the
        trace starts from the carried states (its ``h0``, ``c0``) and carries its final states
        into the next call, as a `predict` batch does.
        """
        traces = {}
        self.check_runnable("trace it")
        keep = self._check_keep(keep)
        inputs = self._inputs(x)
        self._check_stateful_batch(inputs, "a trace is one call; predict takes several batches in turn")
        with self._states_kept_on_error():
            self._run(inputs, traces=traces, keep=keep)
        return traces

    def _check_keep(self, keep):
        """`keep` as a tuple of names some recurrent layer of the model has, or refused."""
        if keep is None:
            return None
        cells = [cell for layer in self.recurrent_layers.values() for cell in layer.cells]
        names = list(dict.fromkeys(name for cell in cells for name in cell.QUANTITIES))
        if isinstance(keep, str) or not isinstance(keep, (list, tuple)) or not all(
                name in names for name in keep):
            raise refuse("keep", "a tuple of names of quantities the model's recurrent layers "
                         f"trace ({', '.join(map(repr, names))})", describe(keep))
        return tuple(keep)

    def layer_outputs(self, x):
        """{layer name: what the layer returned} for every layer the model runs on x, in
        evaluation order: one array, or a list for a layer that returns several (an LSTM with
        return_state). A layer called more than once keeps its first call's.

        For each layer, what Keras's intermediate model ``keras.Model(model.inputs,
        model.get_layer(name).output)`` predicts. One call, as `trace` is (a stateful model:
        one batch, carried on).
        """
        self.check_runnable("run its layers")
        inputs = self._inputs(x)
        self._check_stateful_batch(inputs, "this is one call; predict takes several batches in turn")
        results = {}
        with self._states_kept_on_error():
            self._run(inputs, traces=None, results=results)
        found = {}
        for (name, _), (outputs, _) in results.items():
            if name in self.layers and name not in found:
                found[name] = outputs[0] if len(outputs) == 1 else list(outputs)
        return found

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
        Gradients flow back through every layer the Model runs, the recurrent ones (LSTM, GRU,
        SimpleRNN, RNN of their cells, Bidirectional of any) by their `backward`
        (`reflstm.cells.backward`).

        On a stateful model x is one batch of `batch_size` samples: the gradients are those of
        the call `predict` would make next, from the carried states, which stay as they were.
        """
        self.check_runnable("take its gradients")
        inputs = self._inputs(x)
        self._check_stateful_batch(inputs, "the gradients of one call")
        carried = self._carried()
        try:
            return self._backward(inputs, d_outputs, carried)
        finally:
            _restore(carried)

    def _backward(self, inputs, d_outputs, carried):
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
            _restore(carried)  # a stateful layer's backward pass reruns its call from them
            for source, d in zip(node.inputs, node.layer.vjp(arrays, masks, d_out)):
                add(source, d)
        result = [grads.get((name, 0, 0)) for name in self.graph.inputs]
        return result[0] if len(result) == 1 else result

    def _run(self, inputs, traces, record=None, results=None, keep=None):
        """Evaluate the graph; each node once, inputs as given, masks as Keras propagates them.

        With `record` (a list), append (node key, node, input arrays, input masks, output count)
        in evaluation order, for the backward pass. With `results` (a dict), leave every node's
        (outputs, masks) in it, by node key.
        """
        results = {} if results is None else results
        results.update({(name, 0): ([array], [None]) for name, array in zip(self.graph.inputs, inputs)})

        def output(name, node_index, tensor):  # every reference was checked when the Graph was built
            outputs, masks = results[(name, node_index)]
            return outputs[tensor], masks[tensor]

        # Graph.order puts every node after the nodes it reads: one pass, no recursion.
        for key in self.graph.order:
            node = self.graph.nodes[key]
            results[key], arrays, masks = self._call(node, output, traces, keep)
            if record is not None:
                record.append((key, node, arrays, list(masks), len(results[key][0])))
        return [output(*triple)[0] for triple in self.graph.outputs]

    def _call(self, node, output, traces, keep=None):
        """One node's (outputs, masks), from `output(name, node, tensor)` of the nodes it reads;
        also its input arrays and masks as the call saw them."""
        arrays, masks = map(list, zip(*(output(*source) for source in node.inputs))) if node.inputs else ([], [])
        layer = node.layer
        if node.mask is not NO_MASK_ARGUMENT and masks:
            # Keras 3 functional graphs record the mask each layer was called with.
            masks[0] = None if node.mask is None else output(*node.mask)[0]
        if isinstance(layer, Operation):
            return ([layer(_fill(node.template, arrays))], [None]), arrays, masks
        if isinstance(layer, (RecurrentLayer, Bidirectional)):
            # keras/src/layers/layer.py __call__, "Populate mask argument(s)": Keras 3 fills in
            # `mask` only for a call with one tensor argument, so a recurrent layer given an
            # initial_state runs unmasked unless the call passed a mask itself; its output
            # still carries the input's mask.
            unmasked = (self.keras_version == 3 and len(arrays) > 1
                        and node.mask is NO_MASK_ARGUMENT)
            result = layer(arrays, masks, traces, use_mask=not unmasked, keep=keep)
            if unmasked:
                masks = [None] + masks[1:]  # as the backward pass must see the call
            return result, arrays, masks
        return layer(arrays, masks), arrays, masks

    def summary_rows(self):
        """What `summary` lists, as data: (name, Keras class, output shape, parameter count, runs)
        for every layer in the model's order, a functional model's input layers included (as
        Keras lists them). An output shape has None for the batch (and any size the input leaves
        open), a list of shapes for a layer with several outputs, "multiple" for a layer called
        with different shapes, "?" where it cannot be known; `runs` is False for a layer reflstm
        keeps but does not run."""
        shapes = self._output_shapes()
        rows = []
        for name, kind in self._listed:  # (name, Keras class) in the config's order
            if name in self.graph.input_shapes:
                shape = self.graph.input_shapes[name]
                rows.append((name, "InputLayer", "?" if shape is None else tuple(shape), 0, True))
            elif name in self.layers:
                layer = self.layers[name]
                count = sum(int(np.size(w)) for w in self._weights.get(name, []))
                rows.append((name, kind, shapes.get(name, "?"), count, not isinstance(layer, NotRun)))
        return rows

    def summary(self):
        """The model's layers as Keras's ``model.summary()`` lists them, to line the two up: name
        (class), output shape (None for the batch), parameter count, and the total; a layer
        reflstm does not run is marked, with why below. Returns the text (print it)."""
        rows = self.summary_rows()
        cells = [(f"{name} ({kind})" + ("" if runs else " [not run]"), _shape_words(shape), f"{count:,}")
                 for name, kind, shape, count, runs in rows]
        heads = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(c[k]) for c in [heads, *cells]) for k in range(3)]
        line = "=" * (sum(widths) + 4)
        text = [f"Model: {self.name!r}" + (f" (saved by {self.saved_by})" if self.saved_by else ""),
                f"{heads[0]:<{widths[0]}}  {heads[1]:<{widths[1]}}  {heads[2]:>{widths[2]}}", line]
        text += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in cells]
        text += [line, f"Total params: {sum(row[3] for row in rows):,}"]
        text += [f"Not run: {name!r} ({why})" for name, why in self.not_run.items()]
        return "\n".join(text)

    def _output_shapes(self):
        """{layer name: output shape} found by running the layers reflstm runs on two small batches
        of zeros (batch 1 with 2 steps, then 2 with 3, where the input leaves them open): a size
        that differs between the two is open (None). Past a layer reflstm does not run, the run
        goes on from the shapes Keras 3 recorded for its outputs; where none is, it is "?"."""
        runs = []
        carried = self._carried()
        try:
            for fill in (2, 3):
                def zeros(shape):  # (batch, ...), the open sizes filled, or None if too large
                    shape = [(self.batch_size or fill - 1) if k == 0 else (fill if s is None else s)
                             for k, s in enumerate(shape)]
                    return np.zeros(shape, np.float32) if np.prod(shape, dtype=float) <= SUMMARY_VALUES else None

                inputs = [zeros(self.graph.input_shapes[name] or ()) for name in self.graph.inputs]
                runs.append(self._shapes_of(inputs, zeros))
        finally:
            _restore(carried)
        shapes = {}
        for key, first in runs[0].items():
            second = runs[1].get(key)
            if first is None or second is None:
                shape = "?"
            else:
                shape = [tuple(a if a == b else None for a, b in zip(x, y)) for x, y in zip(first, second)]
                shape = shape[0] if len(shape) == 1 else shape
            shapes[key[0]] = shape if shapes.get(key[0], shape) == shape else "multiple"
        return shapes

    def _shapes_of(self, inputs, zeros):
        """{node key: [output shapes], or None where they are not known} from running `inputs`;
        a node that cannot run gives `zeros(shape)` of the shapes Keras 3 recorded for its outputs."""
        results = {(name, 0): ([array], [None]) for name, array in zip(self.graph.inputs, inputs)
                   if array is not None}
        shapes = {}

        def output(name, node_index, tensor):
            outputs, masks = results.get((name, node_index)) or ([], [])
            if tensor >= len(outputs) or outputs[tensor] is None:
                raise ReflstmError("not known")
            return outputs[tensor], masks[tensor]

        for key in self.graph.order:
            try:
                results[key] = self._call(self.graph.nodes[key], output, None)[0]
            except (ReflstmError, IndexError):  # a layer not run, or one that refuses zeros
                recorded = [self._tensor_shapes.get((*key, k)) for k in range(len(self._tensor_shapes) + 1)]
                count = recorded.index(None)  # the outputs recorded, from the first on
                results[key] = ([zeros(shape) for shape in recorded[:count]], [None] * count)
            outputs = results[key][0]
            shapes[key] = [np.shape(o) for o in outputs] if outputs and all(o is not None for o in outputs) else None
        return shapes


def _restore(carried):
    """Put back the states `Model._carried` recorded."""
    for cell, states in carried:
        cell.states = states


def _fill(template, arrays):
    """An operation's recorded arguments with its input arrays put back in their Slots."""
    if isinstance(template, Slot):
        return arrays[template.index]
    if isinstance(template, list):
        return [_fill(item, arrays) for item in template]
    return template


def _shape_words(shape):
    """An output shape as Keras prints it: (None, 6, 8), a list of them, or a word."""
    if isinstance(shape, list):
        return "[" + ", ".join(map(_shape_words, shape)) + "]"
    if isinstance(shape, tuple):
        return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    return str(shape)


def _shape_text(shape):
    return "(" + ", ".join("batch" if i == 0 else str(s) for i, s in enumerate(shape)) + ")"
