"""Keras model configs (the JSON Keras saves) into a plan of layers, then a graph of calls.

Both dialects are read: Keras 3's and tf_keras's. A config is untrusted data, read in two steps:

1. `parse_model` reads it into a `Plan` with typed fields only (`reflstm.formats.fields`): every layer's
   class (nested cells and wrapped layers too, custom classes refused), its options, and the
   shape of every weight array its config predicts — known before any weight is read, so that
   a file reader can check each dataset against it first.
2. `Plan.build(weights)` checks the arrays against those shapes and builds the layers and the
   `Graph`, whose evaluation order is found without recursion (a cycle is refused as a cycle).

Only the layers listed in `_BUILDERS` are built. A layer that is not one of them, a Lambda
(whose Python code is never run), a class from outside Keras (never imported), a wrapper of any of
these, or a Keras 3 operation not in `reflstm.models.ops` is planned as not run
(`reflstm.models.not_run.NotRun`): its weights are read and checked as arrays like any other
layer's, but never interpreted, and running the model is refused by its name. A field that is
wrong, or an option of a layer reflstm builds that it does not model, is refused when the file is read.
"""

import dataclasses

import numpy as np

from reflstm.models import attention as A
from reflstm.models import conv as C
from reflstm.models import layers as L
from reflstm.errors import refuse, shape_pattern
from reflstm.formats.fields import Fields, kind_of
from reflstm.cells.gru import GRU
from reflstm.cells.lstm import LSTM
from reflstm.cells.simple_rnn import SimpleRNN
from reflstm.models.normalization import BatchNormalization, LayerNormalization
from reflstm.models.not_run import NotRun
from reflstm.models.ops import OPERATIONS, Operation
from reflstm.models.reshaping import Permute, Reshape

__all__ = ["Graph", "Node", "Slot", "Plan", "LayerPlan", "NO_MASK_ARGUMENT", "layer_entries", "parse_model"]

NO_MASK_ARGUMENT = "no mask argument"  # a node whose call recorded no `mask`: masks propagate
_FLOATS = (np.dtype("float32"), np.dtype("float64"))
# The values a layer reflstm does not run may store (a lookup's counts, a seed): numbers only.
NOT_RUN_KINDS = "biuf"


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
    order: tuple  # node keys in an order that evaluates every input before its reader


@dataclasses.dataclass(frozen=True, eq=False)
class LayerPlan:
    """A layer as its config describes it: the weight arrays it takes, and how to build it.

    `shapes` holds the shape of each weight array in the order Keras's ``get_weights()`` lists
    them, with None for a dimension the config leaves open (a kernel's input size). A layer
    reflstm does not run has `not_run`, the reason, and `shapes` None: any number of numeric
    arrays of any shape, kept as they are.
    """

    name: str
    kind: str
    shapes: "tuple | None"
    build: object  # (arrays) -> layer
    basis: str = ""  # the config values the shapes follow from, e.g. "units=8"
    not_run: str = ""

    def check(self, arrays):
        """Refuse arrays whose count, dtype or shape is not what the config predicts."""
        where = f"weights of layer {self.name!r}"
        if self.not_run:
            for k, array in enumerate(arrays):
                array = np.asarray(array)
                if array.dtype.kind not in NOT_RUN_KINDS or array.dtype.itemsize > 8:
                    raise refuse(f"{where}, array {k}", "numbers (booleans, integers or floats)", array)
            return
        if len(arrays) != len(self.shapes):
            raise refuse(where, f"{len(self.shapes)} arrays, as its config says", f"{len(arrays)}")
        dtypes = set()
        for k, (array, shape) in enumerate(zip(arrays, self.shapes)):
            array = np.asarray(array)
            if array.dtype not in _FLOATS:
                raise refuse(f"{where}, array {k}", "float32 or float64 values", array)
            if array.ndim != len(shape) or any(e is not None and e != s for s, e in zip(array.shape, shape)):
                raise refuse(f"{where}, array {k}", f"shape {shape_pattern(shape)}, as its config says "
                             f"({self.basis})", array)
            dtypes.add(array.dtype)
        if len(dtypes) > 1:
            raise refuse(where, "arrays of one dtype", ", ".join(sorted(map(str, dtypes))))


@dataclasses.dataclass(frozen=True, eq=False)
class _Call:
    """One recorded call, by layer name: input triples, mask argument, operation template, and
    `options`, the call's other arguments (such as Attention's use_causal_mask)."""

    inputs: tuple
    mask: object
    template: object
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """A model config, read and typed: its layers' plans and its calls, before any weight."""

    name: str
    layers: dict  # name -> LayerPlan, or an Operation
    calls: dict  # (name, node index) -> _Call
    inputs: tuple
    outputs: tuple
    input_shapes: dict
    # (name, class) of each layer in the order the model lists them (a functional model's input
    # layers included, a Sequential's not): the order tf_keras's .keras archives key groups by.
    listed: tuple = ()
    # (layer name, node index, tensor index) -> shape, None for open sizes, of the tensors whose
    # shapes Keras 3 records (a functional call's arguments, a Sequential layer's build_config):
    # what a summary shows past a layer reflstm does not run.
    tensor_shapes: dict = dataclasses.field(default_factory=dict)

    def build(self, weights):
        """The Graph, with every layer built from `weights` ({layer name: [arrays]}) once checked."""
        built = {}
        for name, plan in self.layers.items():
            if isinstance(plan, LayerPlan):
                arrays = list(weights.get(name, []))
                plan.check(arrays)
                built[name] = plan.build([np.asarray(a) for a in arrays])
            else:
                built[name] = plan
        nodes = {
            key: Node(_called(built[key[0]], call, key), call.inputs, call.mask,
                      call.template if isinstance(built[key[0]], Operation) else None)
            for key, call in self.calls.items()
        }
        order = _evaluation_order(self.calls, self.inputs, self.outputs)
        _check_tensor_indices(self.calls, self.outputs, {name: _output_count(layer) for name, layer in built.items()})
        for (name, index), call in self.calls.items():
            allowed = _input_counts(built[name])
            if allowed is not None and len(call.inputs) not in allowed:
                raise refuse(f"layer {name!r}: inbound node {index}",
                             f"{' or '.join(map(str, sorted(allowed)))} input tensors", f"{len(call.inputs)}")
        return Graph(self.name, nodes, self.inputs, self.outputs, self.input_shapes, order)


def _called(layer, call, key):
    """The layer as this call runs it: a layer with call options (Attention's use_causal_mask)
    takes the call's. Any other call option is refused, never ignored: ``training=True`` (Monte
    Carlo dropout, a BatchNormalization in training mode) would change what the call computes."""
    where = f"layer {key[0]!r}: inbound node {key[1]}"
    options = {key: value for key, value in call.options.items() if value is not None}  # unset
    training = options.pop("training", None)
    if training not in (None, False) and not isinstance(layer, NotRun):
        raise refuse(f"{where}: call argument 'training'", "false or none (reflstm is inference: "
                     "training=True makes Dropout and BatchNormalization compute as in training)",
                     repr(training))
    if hasattr(layer, "called_with"):
        return layer.called_with(options, where)
    if options and not isinstance(layer, (Operation, NotRun)):
        key_, value = next(iter(options.items()))
        raise refuse(f"{where}: call argument {key_!r}", "no call arguments but its inputs, mask, "
                     "initial_state and training (reflstm models none of this layer's others)", repr(value))
    return layer


def _output_count(layer):
    """How many tensors a layer's call returns: an LSTM with return_state three, and so on; a
    layer reflstm does not run, any number (None)."""
    if isinstance(layer, NotRun):
        return None
    if isinstance(layer, L.RecurrentLayer):
        return 1 + (len(layer.cell.STATES) if layer.cell.return_state else 0)
    if isinstance(layer, L.Bidirectional):
        merged = 2 if layer.merge_mode is None else 1
        return merged + (2 * len(layer.forward.STATES) if layer.forward.return_state else 0)
    return 1


def _input_counts(layer):
    """How many input tensors a call of `layer` takes (None: any number, as merges and
    operations do); a recurrent layer's extras are its initial states."""
    if isinstance(layer, L.RecurrentLayer):
        return {1, 1 + len(layer.cell.STATES)}
    if isinstance(layer, L.Bidirectional):
        return {1, 1 + 2 * len(layer.forward.STATES)}
    if isinstance(layer, L.Merge) and layer.kind == "Subtract" or isinstance(layer, A.Dot):
        return {2}
    if isinstance(layer, (A.Attention, A.AdditiveAttention)):
        return {2, 3}  # [query, value] or [query, value, key]
    if isinstance(layer, (L.Merge, L.Concatenate, Operation, NotRun)):
        return None
    return {1}


def _check_tensor_indices(calls, outputs, counts):
    """Every reference names a tensor its layer returns (an input layer returns one)."""
    references = [("the model's outputs", triple) for triple in outputs]
    for (name, index), call in calls.items():
        where = f"layer {name!r}: inbound node {index}"
        references += [(where, triple) for triple in call.inputs]
        if isinstance(call.mask, tuple):
            references.append((f"{where}: mask", call.mask))
    for where, (source, _, tensor) in references:
        count = counts.get(source, 1)
        if count is not None and tensor >= count:
            raise refuse(where, f"one of the {count} tensors layer {source!r} returns",
                         f"tensor {tensor}")


def parse_model(model_config, keras_version, limits, keras_backend="tensorflow"):
    """A Plan from a model config ({"class_name", "config"}); nothing but typed fields is kept."""
    top = Fields(model_config, "model config")
    kind = top.str("class_name")
    if kind == "Sequential":
        config = top.raw("config")
        if isinstance(config, list):  # Keras 1 to 2.2 saved a Sequential as its bare list of layers
            return _sequential(Fields({"layers": config}, "model config"), keras_version, limits, keras_backend)
        return _sequential(top.object("config"), keras_version, limits, keras_backend)
    if kind in ("Functional", "Model"):
        return _functional(top.object("config"), keras_version, limits, keras_backend)
    raise refuse("model config", "a Sequential or functional Keras model", f"a model of class {kind!r}")


def layer_entries(model_config):
    """The layer entries ({"class_name", "config", ...}) of a raw, unchecked model config: a
    Sequential's bare list or any model's "layers", the entries that are objects, for a glance
    before `parse_model` reads it (which Keras wrote it, a known bug)."""
    config = model_config.get("config") if isinstance(model_config, dict) else None
    entries = config.get("layers") if isinstance(config, dict) else config
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def _count(entries, what, limits):
    if len(entries) > limits.max_layers:
        raise refuse("model config", f"at most {limits.max_layers:,} {what} (raise "
                     "Limits.max_layers to allow more)", f"{len(entries):,}")


def _sequential(config, keras_version, limits, keras_backend):
    entries = config.list("layers", [])
    _count(entries, "layers", limits)
    entries = [_entry(entry, k) for k, entry in enumerate(entries)]
    if not [entry for entry in entries if entry.str("class_name") != "InputLayer"]:
        raise refuse("model config", "a Sequential model with at least one layer", "none")
    input_name, input_shape = "input", None
    if entries and entries[0].str("class_name") == "InputLayer":
        first = entries.pop(0).object("config")
        input_name, input_shape = first.str("name"), _input_shape(first)
    elif entries:
        input_shape = entries[0].object("config").shape("batch_input_shape")
    layers, calls, previous, shapes = {}, {}, (input_name, 0, 0), {}
    for entry in entries:
        built = entry.object("build_config", None)  # Keras 3: the shape the layer was built for
        if built is not None and built.raw("input_shape") is not None:
            shapes[previous] = _recorded_shape(built.raw("input_shape"), f"{built.where}: field 'input_shape'")
        plan = _layer_plan(entry, keras_version, keras_backend)
        _add(layers, plan.name, plan)
        calls[(plan.name, 0)] = _Call((previous,), NO_MASK_ARGUMENT, None)
        previous = (plan.name, 0, 0)
    listed = tuple((name, plan.kind) for name, plan in layers.items())
    return Plan(config.str("name", "sequential"), layers, calls, (input_name,), (previous,),
                {input_name: input_shape}, listed, shapes)


def _functional(config, keras_version, limits, keras_backend):
    entries = config.list("layers", [])
    _count(entries, "layers", limits)
    layers, calls, input_shapes, listed, shapes = {}, {}, {}, [], {}
    for k, entry in enumerate(entries):
        entry = _entry(entry, k)
        if entry.str("class_name") == "InputLayer":
            inner = entry.object("config")
            name = inner.str("name")
            if name in input_shapes or name in layers:
                raise refuse("model config", "layer names used once", f"{name!r} twice")
            input_shapes[name] = _input_shape(inner)
            listed.append((name, "InputLayer"))
            continue
        if _is_operation(entry):
            inner = entry.object("config")
            name = inner.str("name")
            kind = entry.str("class_name")
            plan = Operation(name, kind, inner.raw_dict()) if kind in OPERATIONS else NotRun(
                name, kind, (), f"a Keras 3 operation reflstm does not compute (it computes "
                f"{', '.join(sorted(OPERATIONS))})")
        else:
            plan = _layer_plan(entry, keras_version, keras_backend)
            name = plan.name
        if name in input_shapes:
            raise refuse("model config", "layer names used once", f"{name!r} twice")
        _add(layers, name, plan)
        listed.append((name, entry.str("class_name")))
        inbound = entry.list("inbound_nodes", [])
        _count(range(len(calls) + len(inbound)), "layer calls", limits)
        for index, recorded in enumerate(inbound):
            calls[(name, index)] = _call(name, recorded, isinstance(plan, (Operation, NotRun)), shapes)
    inputs = tuple(name for name, _, _ in _triples(config.raw("input_layers"), "input_layers"))
    outputs = tuple(_triples(config.raw("output_layers"), "output_layers"))
    for name in inputs:
        if name not in input_shapes:
            raise refuse("model config: input_layers", "names of InputLayers", repr(name))
    return Plan(config.str("name", "model"), layers, calls, inputs, outputs, input_shapes, tuple(listed), shapes)


def _entry(entry, k):
    """Layer entry `k` of a model config, named by its position and, when it has one, its class."""
    entry = Fields(entry, f"layer {k} of the model")
    kind = entry.str("class_name")
    return Fields(entry.raw_dict(), f"layer {k} of the model (class {kind!r})")


def _add(layers, name, plan):
    if name in layers:
        raise refuse("model config", "layer names used once", f"{name!r} twice")
    layers[name] = plan


def _is_operation(entry):
    """A Keras 3 operation recorded in the graph, rather than a layer.

    .keras files say so in `module`; legacy .h5 files written by Keras 3 record no module, and
    there an operation is told by its config, which lacks the `trainable` every layer has.
    """
    module = entry.raw("module")
    if module is not None:
        return isinstance(module, str) and module.startswith("keras.src.ops")
    config = entry.raw("config")
    return entry.str("class_name") in OPERATIONS and isinstance(config, dict) and "trainable" not in config


def _triple(value, where):
    """A [layer name, node index, tensor index] reference, typed."""
    if (
        not isinstance(value, (list, tuple)) or len(value) < 3 or not isinstance(value[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value[1:3])
    ):
        raise refuse(where, "a [layer name, node index, tensor index] reference", kind_of(value))
    return (value[0], value[1], value[2])


def _triples(entries, where):
    """input_layers / output_layers: one [name, node, tensor] or a list of them."""
    where = f"model config: {where}"
    if not isinstance(entries, (list, tuple)) or not entries:
        raise refuse(where, "a list of [layer name, node index, tensor index]", kind_of(entries))
    if isinstance(entries[0], str):
        entries = [entries]
    return [_triple(entry, where) for entry in entries]


def _call(layer_name, recorded, is_operation, shapes):
    """One recorded call: positional tensors, then initial_state, and the mask; the shapes Keras 3
    records for its tensors go into `shapes`."""
    where = f"layer {layer_name!r}: inbound node"
    if isinstance(recorded, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        call = Fields(recorded, where)
        tensors = []
        template = _template(call.list("args", []), tensors, where, shapes)
        kwargs = call.object("kwargs", None) or Fields({}, where)
        initial_state = kwargs.raw("initial_state")
        state_tensors = []
        if initial_state is not None:
            _template(initial_state, state_tensors, f"{where}: initial_state", shapes)
        mask = _mask_argument(kwargs.raw("mask", NO_MASK_ARGUMENT), where)
        options = {}
        for key in kwargs.raw_dict():
            if key in ("initial_state", "mask"):
                continue
            found = []
            options[key] = _template(kwargs.raw(key), found, f"{where}: {key}")
            if found:
                raise refuse(where, "tensor arguments inputs, initial_state and mask", f"call argument {key!r}")
        if not tensors:
            raise refuse(where, "a call with at least one input tensor", "none")
        return _Call(tuple(tensors + state_tensors), mask, template if is_operation else None, options)
    # tf_keras: [[name, node, tensor, kwargs], ...]; initial_state tensors arrive in kwargs.
    if not isinstance(recorded, (list, tuple)):
        raise refuse(where, "a list of [layer name, node index, tensor index, kwargs]", kind_of(recorded))
    found, options = [], {}
    for entry in recorded:
        found.append(_triple(entry, where))
        kwargs = entry[3] if len(entry) > 3 else {}
        if not isinstance(kwargs, dict):
            raise refuse(where, "call arguments as a JSON object", kind_of(kwargs))
        states = kwargs.get("initial_state") or []
        if not isinstance(states, (list, tuple)):
            states = [states]
        found += [_triple(state, f"{where}: initial_state") for state in states]
        # tf_keras repeats a call's other arguments on each input's entry.
        options.update({key: value for key, value in kwargs.items() if key not in ("initial_state", "mask")
                        and (value is None or isinstance(value, (bool, int, float, str)))})
    if not found:
        raise refuse(where, "a call with at least one input tensor", "none")
    return _Call(tuple(found), NO_MASK_ARGUMENT, None, options)


def _mask_argument(mask, where):
    if mask is NO_MASK_ARGUMENT or mask is None:
        return mask
    if isinstance(mask, (list, tuple)):
        if any(item is not None for item in mask[1:]):
            # A recorded list of masks for several inputs (Attention's [query_mask, value_mask]
            # passed by hand) would need every one; only the first input's is carried.
            raise refuse(f"{where}: mask", "one recorded mask, for the first input",
                         f"a list of {len(mask)} masks")
        if not mask:
            return None
        mask = mask[0]
    if mask is None:
        return None
    found = []
    _template(mask, found, f"{where}: mask")
    if len(found) != 1 or not _is_tensor(mask):
        raise refuse(f"{where}: mask", "one recorded tensor or null", kind_of(mask))
    return found[0]


def _is_tensor(value):
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _template(value, tensors, where, shapes=None):
    """`value` with each recorded tensor replaced by a Slot, collecting the tensors in order (and
    into `shapes`, each one's recorded shape).

    Besides tensors, a recorded argument may be a number, a boolean, a string or null, or a
    list of these; anything else is refused. (Recursion is bounded by Limits.max_json_depth.)
    """
    if _is_tensor(value):
        tensor = Fields(Fields(value, where).raw("config"), f"{where}: tensor")
        tensors.append(_triple(tensor.raw("keras_history"), f"{where}: keras_history"))
        if shapes is not None and tensor.raw("shape") is not None:
            shapes[tensors[-1]] = _recorded_shape(tensor.raw("shape"), f"{tensor.where}: field 'shape'")
        return Slot(len(tensors) - 1)
    if isinstance(value, (list, tuple)):
        return [_template(item, tensors, where, shapes) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise refuse(where, "tensors, numbers, booleans, strings or lists of them", kind_of(value))


def _recorded_shape(value, where):
    """A tensor shape Keras recorded: a list (maybe empty) of positive integers or nulls."""
    if not isinstance(value, (list, tuple)) or not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in value
    ):
        raise refuse(where, "a shape: a list of positive integers or nulls", kind_of(value))
    return tuple(value)


def _input_shape(config):
    shape = config.shape("batch_shape")
    return shape if shape is not None else config.shape("batch_input_shape")


def _evaluation_order(calls, inputs, outputs):
    """Node keys in an order where every node comes after the nodes it reads (depth-first, with
    an explicit stack: no recursion a file could drive). A cycle is refused."""
    sources = {(name, 0) for name in inputs}
    order, state = [], {}  # state: 1 while a node's inputs are being ordered, 2 once it is placed
    for name, index, _ in outputs:
        stack = [((name, index), False)]
        while stack:
            key, ready = stack.pop()
            if ready:
                state[key] = 2
                order.append(key)
                continue
            if key in sources or state.get(key) == 2:
                continue
            if state.get(key) == 1:
                raise refuse("model config", "a graph without cycles",
                             f"a cycle through layer {key[0]!r} (call {key[1]})")
            if key not in calls:
                raise refuse("model config", f"a recorded call {key[1]} of layer {key[0]!r}",
                             "none (a layer reads a call the config does not have)")
            state[key] = 1
            stack.append((key, True))
            call = calls[key]
            needed = list(call.inputs) + ([call.mask] if isinstance(call.mask, tuple) else [])
            stack.extend(((source, node), False) for source, node, _ in reversed(needed))
    return tuple(order)


# ---- Layers ------------------------------------------------------------------------------------

def _layer_plan(entry, keras_version, keras_backend="tensorflow"):
    """The LayerPlan of one layer entry ({"class_name", "config", ...}) of a model config."""
    kind = entry.str("class_name")
    config = entry.object("config")
    name = config.str("name")
    config = Fields(config.raw_dict(), f"layer {name!r}")
    builders = _builders(keras_version)
    try:
        if kind == "Lambda":
            raise _NotRunnable("its Python code is never run")
        _refuse_custom(entry, kind)
        builder = builders.get(kind)
        if builder is None:
            raise _NotRunnable("a layer reflstm does not compute")
        _refuse_mixed_precision(name, config)
        # Only Keras 3's recurrent layers compute differently on its backends (their masked steps);
        # Keras 1 and 2 ran these layers as TensorFlow does.
        recurrent = kind in (*_RECURRENT, "RNN", "Bidirectional")
        backend = {"keras_backend": keras_backend} if keras_version == 3 and recurrent else {}
        shapes, build = builder(name, config, keras_version, **backend)
    except _NotRunnable as why:
        reason = str(why)

        def keep(arrays):
            return NotRun(name, kind, tuple(a.view() for a in arrays), reason)

        return LayerPlan(name, kind, None, keep, not_run=reason)
    basis = ", ".join(f"{key}={config.raw(key)!r}" for key in _SHAPE_FIELDS if key in config)
    if "cell" in config or "layer" in config:
        inner = config.raw("cell") or config.raw("layer")
        inner = inner.get("config", {}) if isinstance(inner, dict) else {}
        basis = basis or ", ".join(f"{key}={inner[key]!r}" for key in _SHAPE_FIELDS if key in inner)
    return LayerPlan(name, kind, tuple(shapes), build, basis)


# The config fields that decide a layer's weight shapes, named when a shape disagrees.
_SHAPE_FIELDS = ("units", "use_bias", "reset_after", "input_dim", "output_dim", "bias", "consume_less")


def _builders(keras_version):
    """The layer builders for configs written by Keras `keras_version` (1, 2 or 3)."""
    if keras_version == 1:
        from reflstm.formats.keras1 import BUILDERS  # Keras 1's names, read with this module's helpers

        return BUILDERS
    return _BUILDERS


class _NotRunnable(Exception):
    """Why a layer is kept but not run (a Lambda, a custom or unknown class, a wrapper of one)."""


def _refuse_custom(entry, kind, where=""):
    """A class from outside Keras (a `module` or `registered_name` of its own) is never run, nor
    imported: the layer holding it is kept as not run."""
    module, registered = entry.raw("module"), entry.raw("registered_name")
    if module not in (None, "keras.layers") or registered not in (None, kind):
        raise _NotRunnable(f"{where}class {kind!r} is a custom class from module {str(module)[:60]!r}, "
                           f"registered as {str(registered)[:60]!r} (never imported nor run)")


def _nested(config, key, kinds, layer_name):
    """A layer nested in a config (a cell, a wrapped layer), checked as a top-level one is."""
    entry = config.object(key)
    kind = entry.str("class_name")
    where = f"layer {layer_name!r}: {key}"
    _refuse_custom(entry, kind, f"its {key}'s ")
    if kind not in kinds:
        raise _NotRunnable(f"its {key} is a {kind!r}; reflstm runs it around {' or '.join(kinds)}")
    inner = Fields(entry.object("config").raw_dict(), where)
    _refuse_mixed_precision(layer_name, inner)
    return kind, inner


def _refuse_mixed_precision(name, config):
    dtype = config.raw("dtype")
    if isinstance(dtype, dict):
        dtype = Fields(dtype, f"layer {name!r}: field 'dtype'").raw("config")
        dtype = dtype.get("name") if isinstance(dtype, dict) else dtype
    if dtype is not None and not isinstance(dtype, str):
        raise refuse(f"layer {name!r}: field 'dtype'", "a dtype name or policy", kind_of(dtype))
    if isinstance(dtype, str) and dtype.startswith("mixed"):
        raise refuse(f"layer {name!r}", "one dtype for weights and computation", f"policy {dtype!r}")


def _activation(config, key, default, layer_name):
    """An activation from a config: a name, null (linear), or Keras 3's serialized built-in."""
    value = config.raw(key, default)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(
        value.get("config"), str
    ) and str(value.get("module", "")).startswith("keras"):
        return value["config"]
    if isinstance(value, dict):  # a serialized custom function: the layer is kept, not run
        raise _NotRunnable(f"its {key} is a custom function (never run)")
    raise refuse(f"layer {layer_name!r}: field {key!r}", "a built-in Keras activation", kind_of(value))


def _lstm(name, config, keras_version, go_backwards=None, zero_output_for_mask=None, keras_backend="tensorflow"):
    """Shapes and builder of an LSTM (or RNN(LSTMCell)) config."""
    cell = config
    if "cell" in config:
        _, cell = _nested(config, "cell", ("LSTMCell",), name)
    units = cell.int("units", minimum=1)
    use_bias = cell.bool("use_bias", True)
    options = _recurrent_options(name, config, keras_version, go_backwards, zero_output_for_mask, keras_backend)
    options.update(
        activation=_activation(cell, "activation", "tanh", name),
        recurrent_activation=_activation(cell, "recurrent_activation", "sigmoid", name),
    )
    shapes = [(None, 4 * units), (units, 4 * units)] + ([(4 * units,)] if use_bias else [])

    def build(arrays):
        return LSTM(arrays[0], arrays[1], arrays[2] if use_bias else None, **options)

    return shapes, build


def _gru(name, config, keras_version, go_backwards=None, zero_output_for_mask=None, keras_backend="tensorflow"):
    """Shapes and builder of a GRU (or RNN(GRUCell)) config."""
    cell = config
    if "cell" in config:
        _, cell = _nested(config, "cell", ("GRUCell",), name)
    units = cell.int("units", minimum=1)
    use_bias = cell.bool("use_bias", True)
    # Keras 3 and tf_keras always save reset_after (their default is True); a Keras 2 config
    # without it was written before Keras 2.1.3 added it, by a GRU that reset before U.
    reset_after = cell.bool("reset_after", keras_version == 3)
    options = _recurrent_options(name, config, keras_version, go_backwards, zero_output_for_mask, keras_backend)
    options.update(
        activation=_activation(cell, "activation", "tanh", name),
        recurrent_activation=_activation(cell, "recurrent_activation", "sigmoid", name),
        reset_after=reset_after,
    )
    # keras/src/layers/rnn/gru.py GRUCell.build: reset_after keeps an input and a recurrent bias.
    bias_shape = (2, 3 * units) if reset_after else (3 * units,)
    shapes = [(None, 3 * units), (units, 3 * units)] + ([bias_shape] if use_bias else [])

    def build(arrays):
        return GRU(arrays[0], arrays[1], arrays[2] if use_bias else None, **options)

    return shapes, build


def _simple_rnn(name, config, keras_version, go_backwards=None, zero_output_for_mask=None,
                keras_backend="tensorflow"):
    """Shapes and builder of a SimpleRNN (or RNN(SimpleRNNCell)) config."""
    cell = config
    if "cell" in config:
        _, cell = _nested(config, "cell", ("SimpleRNNCell",), name)
    units = cell.int("units", minimum=1)
    use_bias = cell.bool("use_bias", True)
    options = _recurrent_options(name, config, keras_version, go_backwards, zero_output_for_mask, keras_backend)
    options.update(activation=_activation(cell, "activation", "tanh", name))
    shapes = [(None, units), (units, units)] + ([(units,)] if use_bias else [])

    def build(arrays):
        return SimpleRNN(arrays[0], arrays[1], arrays[2] if use_bias else None, **options)

    return shapes, build


def _recurrent_options(name, config, keras_version, go_backwards, zero_output_for_mask,
                       keras_backend="tensorflow"):
    """The options the shared loop takes, from a recurrent layer's config."""
    if config.bool("time_major"):
        raise refuse(f"layer {name!r}", "a batch-major layer (time_major=False)", "time_major=True")
    return dict(
        return_sequences=config.bool("return_sequences"),
        return_state=config.bool("return_state"),
        go_backwards=config.bool("go_backwards") if go_backwards is None else go_backwards,
        stateful=config.bool("stateful"),  # zero state at load, as Keras reloads it (reflstm.models.model)
        zero_output_for_mask=(config.bool("zero_output_for_mask") if zero_output_for_mask is None
                              else zero_output_for_mask),
        keras_version=keras_version,
        # Both change what masked steps output (reflstm.cells.recurrent, Recurrent._mask_rule).
        unroll=config.bool("unroll"),
        keras_backend=keras_backend,
    )


# The recurrent layers by Keras class, and RNN by the class of its cell.
_RECURRENT = {"LSTM": _lstm, "GRU": _gru, "SimpleRNN": _simple_rnn}
_CELLS = {"LSTMCell": _lstm, "GRUCell": _gru, "SimpleRNNCell": _simple_rnn}


def _recurrent(kind, name, config):
    """The shapes-and-builder function of a recurrent layer of class `kind`; RNN by its cell."""
    if kind != "RNN":
        return _RECURRENT[kind]
    cell_kind, _ = _nested(config, "cell", tuple(_CELLS), name)
    return _CELLS[cell_kind]


def _recurrent_layer(kind):
    def builder(name, config, keras_version, keras_backend="tensorflow"):
        shapes, build = _recurrent(kind, name, config)(name, config, keras_version, keras_backend=keras_backend)
        keras_class = f"RNN({_nested(config, 'cell', tuple(_CELLS), name)[0]})" if kind == "RNN" else kind
        return shapes, lambda arrays: L.RecurrentLayer(name, build(arrays), keras_class)

    return builder


def _bidirectional(name, config, keras_version, keras_backend="tensorflow"):
    kinds = (*_RECURRENT, "RNN")
    forward_kind, forward_config = _nested(config, "layer", kinds, name)
    backward_kind, backward_config = forward_kind, forward_config
    if config.raw("backward_layer") is not None:
        backward_kind, backward_config = _nested(config, "backward_layer", kinds, name)
    # keras bidirectional.py: both directions get zero_output_for_mask = return_sequences, and
    # the backward layer processes the steps in reverse.
    zero = forward_config.bool("return_sequences")
    forward = _recurrent(forward_kind, name, forward_config)(
        name, forward_config, keras_version, zero_output_for_mask=zero, keras_backend=keras_backend)
    going_back = not forward_config.bool("go_backwards")
    backward = _recurrent(backward_kind, name, backward_config)(
        name, backward_config, keras_version, go_backwards=going_back, zero_output_for_mask=zero,
        keras_backend=keras_backend)
    return _bidirectional_plan(name, config, forward, backward)


def _bidirectional_plan(name, config, forward, backward):
    """A Bidirectional's shapes and builder from its directions' (shapes, build), the forward
    direction's arrays first, and its merge_mode."""
    merge_mode = config.str("merge_mode", "concat", choices=("concat", "sum", "mul", "ave"), optional=True)
    (forward_shapes, build_forward), (backward_shapes, build_backward) = forward, backward
    half = len(forward_shapes)

    def build(arrays):
        return L.Bidirectional(name, build_forward(arrays[:half]), build_backward(arrays[half:]), merge_mode)

    return forward_shapes + backward_shapes, build


def _dense(name, config, keras_version):
    units = config.int("units", minimum=1)
    use_bias = config.bool("use_bias", True)
    activation = _activation(config, "activation", "linear", name) or "linear"
    shapes = [(None, units)] + ([(units,)] if use_bias else [])

    def build(arrays):
        return L.Dense(name, arrays[0], arrays[1] if use_bias else None, activation, keras_version)

    return shapes, build


def _time_distributed(name, config, keras_version):
    _, inner = _nested(config, "layer", ("Dense",), name)
    shapes, build = _dense(name, inner, keras_version)
    return shapes, build


def _embedding(name, config, keras_version):
    input_dim, output_dim = config.int("input_dim", minimum=1), config.int("output_dim", minimum=1)
    mask_zero = config.bool("mask_zero")
    return [(input_dim, output_dim)], lambda arrays: L.Embedding(name, arrays[0], mask_zero)


def _no_weights(make):
    """A builder for a layer without weights: `make(name, config, keras_version)` -> layer."""

    def builder(name, config, keras_version):
        layer = make(name, config, keras_version)  # read every field now, before any weight
        return [], lambda arrays: layer

    return builder


# Keras 1's Merge modes, by the layer of today's Keras that computes each (dot and cos are not run).
MERGE_MODES = {"sum": "Add", "mul": "Multiply", "ave": "Average", "max": "Maximum", "concat": "Concatenate"}


def _merge(name, config, keras_version):
    """Keras 1's Merge layer (kept in Keras 2.0-2.2 as a legacy layer). A mode given as Python
    code (mode_type "lambda") is never run."""
    if config.raw("layers") is not None:
        raise refuse(f"layer {name!r}", "a Merge of tensors in a functional model",
                     "a Merge of Sequential models (Keras 1's branched Sequential), which reflstm does not "
                     "read: rebuild it as a functional model with a Concatenate or Add layer")
    # Keras 1 stored a Python function as marshalled bytecode ("lambda") or a global's name
    # ("function"): never run. output_shape is not needed; output_mask would change the mask.
    for key, field in (("mode_type", "mode"), ("output_mask_type", "output_mask")):
        kind = config.str(key, "raw")
        if kind != "raw" or (field == "output_mask" and config.raw(field) is not None):
            raise refuse(f"layer {name!r}: field {field!r}", "a named merge mode and no custom output_mask "
                         "(a Python function is never run)", f"{key} {kind!r}")
    mode = config.str("mode", "sum")
    if mode not in MERGE_MODES:
        raise refuse(f"layer {name!r}: field 'mode'", f"one of {', '.join(map(repr, MERGE_MODES))}",
                     repr(mode) + (" (not run by reflstm)" if mode in ("dot", "cos") else ""))
    if mode == "concat":
        layer = L.Concatenate(name, config.int("concat_axis", -1), min(keras_version, 2))
    else:
        layer = L.Merge(name, MERGE_MODES[mode], min(keras_version, 2))
    return [], lambda arrays: layer


# ---- Normalization and reshaping layers (reflstm.models.normalization, .reshaping) ----------

_MAX_AXES = 32  # more axes than any tensor a Keras model passes between layers


def _axes(config, key, default, name):
    """An axis or a list of distinct axes, each an integer from -_MAX_AXES to _MAX_AXES - 1."""
    value = config.raw(key, default)
    axes = value if isinstance(value, (list, tuple)) else [value]
    if (not axes or len(axes) > _MAX_AXES or any(
        isinstance(a, bool) or not isinstance(a, int) or not -_MAX_AXES <= a < _MAX_AXES for a in axes
    ) or len(set(axes)) != len(axes)):
        raise refuse(f"layer {name!r}: field {key!r}", f"an axis or a list of distinct axes (integers "
                     f"from -{_MAX_AXES} to {_MAX_AXES - 1})", kind_of(value))
    return tuple(axes)


def _epsilon(config, name):
    epsilon = config.number("epsilon", 1e-3)
    if not 0 < epsilon < float("inf"):
        raise refuse(f"layer {name!r}: field 'epsilon'", "a positive number", kind_of(epsilon))
    return float(epsilon)


def _config_dtype(config):
    """The layer's float dtype from its config's dtype (a name or a policy), float32 by default."""
    dtype = config.raw("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config").get("name") if isinstance(dtype.get("config"), dict) else None
    return np.dtype("float64") if dtype == "float64" else np.dtype("float32")


def _same_shapes(name, arrays):
    if len({a.shape for a in arrays}) > 1:
        raise refuse(f"weights of layer {name!r}", "arrays of one shape (one value per channel)",
                     [a.shape for a in arrays])


def _batch_normalization(name, config, keras_version):
    """gamma (scale), beta (center), moving_mean, moving_variance: Keras's weight order."""
    axes = _axes(config, "axis", -1, name)
    if len(axes) != 1:
        raise refuse(f"layer {name!r}: field 'axis'", "one axis", kind_of(config.raw("axis")))
    if config.bool("renorm"):
        raise refuse(f"layer {name!r}", "renorm=False (batch renormalization is not modelled)", "renorm=True")
    if config.raw("virtual_batch_size") is not None:
        raise refuse(f"layer {name!r}", "virtual_batch_size=None (ghost batches are not modelled)",
                     kind_of(config.raw("virtual_batch_size")))
    epsilon, center, scale = _epsilon(config, name), config.bool("center", True), config.bool("scale", True)
    # keras/src/layers/normalization/batch_normalization.py: `synchronized` acts in training only.
    config.bool("synchronized")

    def build(arrays):
        _same_shapes(name, arrays)
        arrays = list(arrays)
        gamma = arrays.pop(0) if scale else None
        beta = arrays.pop(0) if center else None
        return BatchNormalization(name, axes[0], epsilon, gamma, beta, *arrays, keras_version)

    return [(None,)] * (scale + center + 2), build


def _layer_normalization(name, config, keras_version):
    """gamma (scale, or Keras 3's rms_scaling), then beta (center without rms_scaling)."""
    axes = _axes(config, "axis", -1, name)
    # keras/src/layers/normalization/layer_normalization.py build sorts the axes; tf_keras does not.
    axes = tuple(sorted(axes)) if keras_version == 3 else axes
    rms_scaling = config.bool("rms_scaling")
    if rms_scaling and keras_version != 3:
        raise refuse(f"layer {name!r}: field 'rms_scaling'", "false (only Keras 3 has it)", "true")
    epsilon, center, scale = _epsilon(config, name), config.bool("center", True), config.bool("scale", True)
    has_gamma, has_beta = scale or rms_scaling, center and not rms_scaling
    dtype = _config_dtype(config)

    def build(arrays):
        _same_shapes(name, arrays)
        gamma = arrays[0] if has_gamma else None
        beta = arrays[-1] if has_beta else None
        return LayerNormalization(name, axes, epsilon, gamma, beta, keras_version, rms_scaling,
                                  arrays[0].dtype if arrays else dtype)

    return [(None,) * len(axes)] * (has_gamma + has_beta), build


def _reshape(name, config, keras_version):
    """target_shape: positive sizes and at most one -1 (Reshape never allocates beyond its input)."""
    shape = config.list("target_shape")
    if not 0 < len(shape) <= _MAX_AXES or any(
        isinstance(d, bool) or not isinstance(d, int) or not (d == -1 or 1 <= d < 2**31) for d in shape
    ) or shape.count(-1) > 1:
        raise refuse(f"layer {name!r}: field 'target_shape'", f"at most {_MAX_AXES} positive sizes "
                     "(below 2**31), with at most one -1", kind_of(config.raw("target_shape")))
    layer = Reshape(name, tuple(shape), keras_version)
    return [], lambda arrays: layer


def _permute(name, config, keras_version):
    dims = config.list("dims")
    if not 0 < len(dims) <= _MAX_AXES or any(isinstance(d, bool) or not isinstance(d, int) for d in dims) \
            or sorted(dims) != list(range(1, len(dims) + 1)):
        raise refuse(f"layer {name!r}: field 'dims'", f"a permutation of 1..n (n at most {_MAX_AXES})",
                     kind_of(config.raw("dims")))
    layer = Permute(name, tuple(dims), keras_version)
    return [], lambda arrays: layer


# Window sizes, strides, dilations, paddings and repeats a file may declare: each makes predict
# allocate in proportion to it, so a million steps, far beyond use, is the most read.
_MAX_STEPS = 10**6


def _steps(config, key, default):
    """A Conv1D or pooling size: an integer, or the list of one that Keras saves for a tuple."""
    value = config.raw(key, default)
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return Fields({key: value}, config.where).int(key, minimum=1, maximum=_MAX_STEPS)


def _pair(config, key, default):
    """ZeroPadding1D's padding or Cropping1D's cropping: an integer for both ends, or [left, right]."""
    value = config.raw(key, default)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        ends = Fields({"left": value[0], "right": value[1]}, f"{config.where}: field {key!r}")
        return tuple(ends.int(end, minimum=0, maximum=_MAX_STEPS) for end in ("left", "right"))
    if isinstance(value, (list, tuple)):
        raise refuse(f"{config.where}: field {key!r}", "an integer or a list of 2", kind_of(value))
    both = config.int(key, default, minimum=0, maximum=_MAX_STEPS)
    return both, both


def _channels_last(config):
    """The one data_format read; channels_first is refused by name."""
    config.str("data_format", "channels_last", choices=("channels_last",), optional=True)


def _conv1d(name, config, keras_version):
    _channels_last(config)
    filters, groups = config.int("filters", minimum=1), config.int("groups", 1, minimum=1)
    if filters % groups:
        raise refuse(f"layer {name!r}: field 'groups'", f"a divisor of filters ({filters})", str(groups))
    kernel_size = _steps(config, "kernel_size", None)
    dilation_rate = _steps(config, "dilation_rate", 1)
    if dilation_rate * (kernel_size - 1) + 1 > _MAX_STEPS:
        raise refuse(f"layer {name!r}", f"a dilated kernel of at most {_MAX_STEPS:,} steps",
                     f"kernel_size {kernel_size} with dilation_rate {dilation_rate}")
    options = dict(
        strides=_steps(config, "strides", 1),
        padding=config.str("padding", "valid", choices=("valid", "same", "causal")),
        dilation_rate=dilation_rate,
        groups=groups,
        activation=_activation(config, "activation", "linear", name) or "linear",
        keras_version=keras_version,
    )
    use_bias = config.bool("use_bias", True)
    shapes = [(kernel_size, None, filters)] + ([(filters,)] if use_bias else [])

    def build(arrays):
        return C.Conv1D(name, arrays[0], arrays[1] if use_bias else None, **options)

    return shapes, build


def _pooling(make):
    """MaxPooling1D or AveragePooling1D: strides default to pool_size, as Keras's do."""

    def pooling(name, config, keras_version):
        _channels_last(config)
        pool_size = _steps(config, "pool_size", 2)
        strides = pool_size if config.raw("strides") is None else _steps(config, "strides", None)
        return make(name, pool_size, strides, config.str("padding", "valid", choices=("valid", "same")))

    return _no_weights(pooling)


def _global_pooling(make):
    def pooling(name, config, keras_version):
        _channels_last(config)
        return make(name, config.bool("keepdims", False))

    return _no_weights(pooling)


_CONV_BUILDERS = {
    "Conv1D": _conv1d,
    "MaxPooling1D": _pooling(C.MaxPooling1D),
    "AveragePooling1D": _pooling(C.AveragePooling1D),
    "GlobalMaxPooling1D": _global_pooling(C.GlobalMaxPooling1D),
    "GlobalAveragePooling1D": _global_pooling(C.GlobalAveragePooling1D),
    "ZeroPadding1D": _no_weights(lambda name, c, kv: C.ZeroPadding1D(name, *_pair(c, "padding", 1))),
    "Cropping1D": _no_weights(lambda name, c, kv: C.Cropping1D(name, *_pair(c, "cropping", (1, 1)))),
    "UpSampling1D": _no_weights(lambda name, c, kv: C.UpSampling1D(name, _steps(c, "size", 2))),
}


def _attention_options(name, config, keras_version):
    """What Attention and AdditiveAttention share: dropout (training only) and causal."""
    dropout = config.number("dropout", 0.0)
    if not 0 <= dropout <= 1:
        raise refuse(f"layer {name!r}: field 'dropout'", "a number from 0 to 1", kind_of(dropout))
    # tf_keras base_dense_attention.py still reads the `causal` older tf.keras saved (its
    # get_config no longer writes it); Keras 3 has only the call's use_causal_mask.
    causal = config.bool("causal")
    if causal and keras_version == 3:
        raise refuse(f"layer {name!r}: field 'causal'", "false in a Keras 3 config (Keras 3 takes "
                     "use_causal_mask in the call)", "true")
    return causal


def _attention(name, config, keras_version):
    use_scale = config.bool("use_scale", False)
    score_mode = config.str("score_mode", "dot", choices=("dot", "concat"))
    causal = _attention_options(name, config, keras_version)
    # keras/src/layers/attention/attention.py build: scale, then concat_score_weight, both scalars.
    shapes = [()] * (use_scale + (score_mode == "concat"))

    def build(arrays):
        scale = arrays[0] if use_scale else None
        concat_score_weight = arrays[-1] if score_mode == "concat" else None
        return A.Attention(name, causal, scale, concat_score_weight)

    return shapes, build


def _additive_attention(name, config, keras_version):
    use_scale = config.bool("use_scale", True)
    # Keras 3's AdditiveAttention drops score_mode from its config and never reads it.
    config.str("score_mode", "dot", choices=("dot",))
    causal = _attention_options(name, config, keras_version)
    shapes = [(None,)] if use_scale else []  # scale (dim,)

    def build(arrays):
        return A.AdditiveAttention(name, causal, arrays[0] if use_scale else None)

    return shapes, build


def _dot(name, config, keras_version):
    axes = config.raw("axes")
    pair = [axes, axes] if isinstance(axes, int) and not isinstance(axes, bool) else axes
    # An axis is checked against the inputs' ranks at the call; a rank is at most this anyway.
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(a, int) and not isinstance(a, bool) and abs(a) <= 64 for a in pair)):
        raise refuse(f"layer {name!r}: field 'axes'", "an integer or a list of two (each within ±64)",
                     kind_of(axes))
    return A.Dot(name, tuple(pair), config.bool("normalize"), keras_version)


_BUILDERS = {
    "LSTM": _recurrent_layer("LSTM"),
    "GRU": _recurrent_layer("GRU"),
    "SimpleRNN": _recurrent_layer("SimpleRNN"),
    "RNN": _recurrent_layer("RNN"),
    "Bidirectional": _bidirectional,
    "Dense": _dense,
    "TimeDistributed": _time_distributed,
    "Embedding": _embedding,
    "Masking": _no_weights(lambda name, c, kv: L.Masking(name, float(c.number("mask_value", 0.0)))),
    "Dropout": _no_weights(lambda name, c, kv: L.Identity(name)),
    "SpatialDropout1D": _no_weights(lambda name, c, kv: L.Identity(name)),
    "Activation": _no_weights(
        lambda name, c, kv: L.Activation(name, _activation(c, "activation", None, name) or "linear", kv)
    ),
    "Flatten": _no_weights(lambda name, c, kv: L.Flatten(name)),
    # A file's n must not make predict allocate without bound: a million steps is far beyond use.
    "RepeatVector": _no_weights(lambda name, c, kv: L.RepeatVector(name, c.int("n", minimum=1, maximum=10**6))),
    "Concatenate": _no_weights(lambda name, c, kv: L.Concatenate(name, c.int("axis", -1), kv)),
    "Attention": _attention,
    "AdditiveAttention": _additive_attention,
    "Dot": _no_weights(_dot),
    "Merge": _merge,  # Keras 2.0-2.2's legacy Merge (Keras 1's own)
    **{
        kind: _no_weights((lambda kind: lambda name, c, kv: L.Merge(name, kind, kv))(kind))
        for kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
    },
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "Reshape": _reshape,
    "Permute": _permute,
    **_CONV_BUILDERS,  # Conv1D, pooling and the 1-D shape layers (reflstm.models.conv)
}
