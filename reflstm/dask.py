"""reflstm.dask: traces and predictions of datasets larger than one machine, on dask.

    import dask.array as da, reflstm.dask
    x = da.from_zarr("X.zarr")                    # (batch, timesteps, features), chunked by batch
    traces = reflstm.dask.trace("model.keras", x)  # {"lstm/h": lazy dask array, ...}
    reflstm.dask.to_zarr(traces, "T.zarr")         # computed here, on the scheduler in use

Every sequence's trace is independent of every other's, so a dataset chunked along the batch
axis traces chunk by chunk, each chunk on whichever worker dask gives it: a task runs
`reflstm.Model.trace` on one chunk, exactly as a single machine would on that chunk. The time
axis stays whole (the recurrence runs through it) and so does the feature axis: an input
chunked along either is rechunked to whole, with a warning.

How the model reaches the workers, once per worker and never with every task:

- A `Model` or layer object becomes one key of the graph, which every chunk's task depends on.
  dask.distributed computes that key on one worker and copies it to each other worker that
  runs a task, where it stays while tasks need it: one copy and one rebuild per worker process
  (with the local threaded scheduler nothing is copied at all). It crosses as its recipe (the
  Keras config and the weights, or a layer's constructor arguments), since that is what a
  model is made from. dask's multiprocessing scheduler (``scheduler="processes"``) ships every
  task's inputs with the task; use dask.distributed's LocalCluster for local processes.
- A file path (or a `ModelFile`) travels in every task as a few bytes; each worker process
  loads the file itself the first time a task needs it and keeps it (keyed by the file's
  path, size and modification time). The file must be at that path on every worker, as the
  input and output stores must be.

Why one key rather than a broadcast (``client.scatter``): it works the same on every dask
scheduler, and the copy goes only to workers that run tasks.

The arrays' dtype, shape and chunks are declared when the graph is built: a trace of one
sequence of zeros, run here before anything is scheduled (no chunk of the data is read),
gives every quantity's shape per sequence and dtype.

dask, dask.distributed and zarr are the ``reflstm[dask]`` extra; `import reflstm` does not
import this module.
"""

import dataclasses
import inspect
import os
import shutil
import tempfile
import threading
import uuid
import warnings

import numpy as np

import dask
import dask.array as da

from reflstm import __version__
from reflstm.cells.recurrent import Recurrent
from reflstm.errors import refuse
from reflstm.models.layers import Bidirectional
from reflstm.models.model import Model

__all__ = ["ModelFile", "Traces", "trace", "predict", "to_zarr", "from_zarr"]

# What each trace key's array is indexed by.
DIMENSIONS = ("batch", "timesteps", "units")


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A model file that each worker process loads itself, once (then keeps, per process).

    Args:
        path: the model file (.keras or .h5), at the same path on every worker.
        architecture: the model's JSON, when the file holds only its weights (`reflstm.load`).
        dtype: "float32" or "float64" to cast the weights to (`Model.astype`), or None.
    """

    path: str
    architecture: "str | None" = None
    dtype: "str | None" = None

    def get(self):
        """The Model, loaded by this process the first time it is asked for."""
        stat = os.stat(self.path)
        key = (os.path.abspath(self.path), self.architecture, self.dtype, stat.st_size, stat.st_mtime_ns)
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = self._load()
                MADE["loaded"] += 1
            return _CACHE[key]

    def _load(self):
        from reflstm.formats.files import load

        model = load(self.path, architecture=self.architecture)
        return model if self.dtype is None else model.astype(self.dtype)


# This process's models loaded from files, and how many models it loaded or rebuilt (the
# tests read MADE on every worker to check "once per worker").
_CACHE, _CACHE_LOCK = {}, threading.Lock()
MADE = {"loaded": 0, "rebuilt": 0}


class _Shipped:
    """A Model or layer in a dask graph: pickled as its recipe, rebuilt once where it lands."""

    def __init__(self, made):
        self.made = made
        self.token = uuid.uuid4().hex

    def get(self):
        return self.made

    def __reduce__(self):
        return _rebuild, (_recipe(self.made), self.token)

    def __dask_tokenize__(self):
        return self.token


def _rebuild(recipe, token):
    shipped = _Shipped(_made_from(recipe))
    shipped.token = token
    MADE["rebuilt"] += 1
    return shipped


def _recipe(made):
    """What `made` is built from, as plain data: a Model's config and weights, a layer's arguments."""
    if isinstance(made, Model):
        return ("model", made._config, made._weights, made.keras_version, made._limits, made.keras_backend)
    if isinstance(made, Bidirectional):
        return ("bidirectional", made.name, _recipe(made.forward), _recipe(made.backward), made.merge_mode)
    return ("layer", type(made), (made.kernel, made.recurrent_kernel, made.bias), _options(made))


def _made_from(recipe):
    kind, *parts = recipe
    if kind == "model":
        return Model(*parts)
    if kind == "bidirectional":
        name, forward, backward, merge_mode = parts
        return Bidirectional(name, _made_from(forward), _made_from(backward), merge_mode)
    cls, weights, options = parts
    return cls(*weights, **options)


def _options(cell):
    """A reflstm recurrent layer's keyword arguments (activations, flags, Keras version and
    backend), read back from the attributes of the same names."""
    parameters = inspect.signature(type(cell).__init__).parameters.values()
    return {p.name: getattr(cell, p.name) for p in parameters if p.kind is p.KEYWORD_ONLY}


class Traces(dict):
    """{key: lazy dask array (batch, timesteps, units)}, keys 'layer/quantity' as `reflstm
    trace` writes them ('layer/forward/quantity' for a Bidirectional's directions; just
    'quantity' for a lone LSTM, GRU or SimpleRNN). `attributes[key]` describes each array (the
    layer's Keras class, units and options), for `to_zarr`."""

    def __init__(self, arrays, attributes):
        super().__init__(arrays)
        self.attributes = attributes


def trace(model_or_layer, x, keep=None):
    """Every recurrent layer's trace of a dask array, lazily: a `Traces` of dask arrays.

    Args:
        model_or_layer: a `reflstm.Model`, a model file (str or Path, or a `ModelFile`), a
            reflstm LSTM, GRU or SimpleRNN, or a model's Bidirectional layer (`Model.layer`).
        x: a dask array (batch, timesteps, features), or (batch, timesteps) of token ids; a list
            of them for a model with several inputs. Chunked along the batch axis (the others
            are rechunked to whole); several inputs are rechunked to the first one's batch chunks.
        keep: the quantities to trace (e.g. ``("h", "c")``), passed to the trace; None for all.

    Returns:
        `Traces`: {'layer/quantity': dask array (batch, timesteps, units)} with the dtype and
        chunks declared; chunk k of every array is Model.trace of chunk k of x. Masks (Masking,
        Embedding(mask_zero)) act as in `Model.trace`: each chunk carries its own.

    A stateful model or layer is refused: its trace of chunk k starts from where chunk k - 1
    ended, so the chunks could not run apart, in any order, as dask runs them.
    """
    made, source = _source(model_or_layer)
    keep = _check_keep(made, keep)
    inputs = _batch_chunked(made, x)
    layout = _layout(made, _probe_trace(made, inputs, keep), keep)

    def lazy(parts):
        arrays, attributes = {}, {}
        for key, (name, direction, quantity, shape, dtype, config) in layout.items():
            arrays[key] = _stack(parts, key, shape, dtype)
            attributes[key] = {**config, "quantity": quantity, "dtype": str(dtype)}
            if name is not None:
                attributes[key]["layer"] = name
            if direction is not None:
                attributes[key]["direction"] = direction
        return Traces(arrays, attributes)

    return lazy(_parts(_trace_block, source, inputs, keep, _block_layout(layout)))


def predict(model, x):
    """What `Model.predict` returns, lazily: one dask array (a list for several outputs).

    `model` and `x` as for `trace` (a model or a model file; not a lone layer). Chunk k of each
    output is Model.predict of chunk k of x (which runs it 64 samples at a time, as on one machine).
    """
    made, source = _source(model)
    if not isinstance(made, Model):
        raise refuse("model", "a reflstm.Model or a model file (a lone layer's result is its trace's h)",
                     f"a {type(made).__name__}")
    inputs = _batch_chunked(made, x)
    probe = made.predict([np.zeros((1,) + a.shape[1:], a.dtype) for a in inputs])
    probe = probe if isinstance(probe, list) else [probe]
    parts = _parts(_predict_block, source, inputs)
    outputs = [_stack(parts, k, p.shape[1:], p.dtype) for k, p in enumerate(probe)]
    return outputs if len(outputs) > 1 else outputs[0]


def _source(model_or_layer):
    """(the model or layer here, what the tasks get): a `_Shipped` object or a `ModelFile`."""
    if isinstance(model_or_layer, (str, os.PathLike)):
        model_or_layer = ModelFile(os.fspath(model_or_layer))
    if isinstance(model_or_layer, ModelFile):
        made, source = model_or_layer.get(), model_or_layer
    elif isinstance(model_or_layer, (Model, Recurrent, Bidirectional)):
        made, source = model_or_layer, _Shipped(model_or_layer)
    else:
        raise refuse("model_or_layer", "a reflstm.Model, a model file path, a ModelFile, a reflstm "
                     "LSTM, GRU or SimpleRNN, or a Bidirectional layer", f"a {type(model_or_layer).__name__}")
    if isinstance(made, Model):
        made.check_runnable("trace it")
        stateful = list(made.stateful_layers)
    else:
        stateful = [getattr(made, "name", type(made).__name__)] if made.stateful else []
    if stateful:
        raise refuse("model_or_layer", "a model without stateful layers (a stateful layer's trace of each "
                     "chunk starts from where the chunk before ended, so chunks cannot run apart, as dask "
                     "runs them; trace it on one machine with Model.trace, batch after batch)",
                     f"stateful layer{'s' if len(stateful) > 1 else ''} {', '.join(map(repr, stateful))}")
    return made, source


def _batch_chunked(made, x):
    """x as a list of dask arrays, each chunked along the batch axis only, the same chunks."""
    several = isinstance(x, (list, tuple))
    arrays = list(x) if several else [x]
    count = len(made.graph.inputs) if isinstance(made, Model) else 1
    if len(arrays) != count:
        raise refuse("x", f"{count} dask arrays, one per model input", f"{len(arrays)}")
    checked = []
    for k, array in enumerate(arrays):
        label = f"x[{k}]" if several else "x"
        if not isinstance(array, da.Array):
            raise refuse(label, "a dask array chunked along the batch axis (da.from_zarr(path), or "
                         "da.from_array(x, chunks=(n, -1, -1)))", f"a {type(array).__name__}")
        if array.ndim < 2 or array.dtype.kind not in "biuf":
            raise refuse(label, "a dask array of numbers (batch, timesteps, ...)",
                         f"shape {array.shape} and dtype {array.dtype}")
        if any(np.isnan(c) for c in array.chunks[0]):
            raise refuse(label, "known chunk sizes (call x.compute_chunk_sizes() first)", "unknown (nan)")
        if array.shape[0] == 0:
            raise refuse(label, "at least one sample", "an array of 0 samples")
        whole = {axis: -1 for axis in range(1, array.ndim) if len(array.chunks[axis]) > 1}
        if whole:
            warnings.warn(f"reflstm.dask: {label} is chunked along axes {sorted(whole)}; rechunked to "
                          "whole (a trace needs every step and feature of a sequence in one chunk)",
                          stacklevel=3)
        batch_chunks = checked[0].chunks[0] if checked else array.chunks[0]
        if array.shape[0] != sum(batch_chunks):
            raise refuse("x", "the same batch size for every input", [a.shape for a in arrays])
        if whole or array.chunks[0] != batch_chunks:
            array = array.rechunk({0: batch_chunks, **whole})
        checked.append(array)
    return checked


def _probe_trace(made, inputs, keep):
    """The trace of one sequence of zeros, computed here: every quantity's shape and dtype."""
    zeros = [np.zeros((1,) + a.shape[1:], a.dtype) for a in inputs]
    return _run_trace(made, zeros, keep)


def _run_trace(made, arrays, keep):
    """{layer name (None for a lone layer): its trace} of `arrays` (the model's inputs)."""
    if isinstance(made, Model):
        return made.trace(arrays, keep=keep)
    if isinstance(made, Bidirectional):  # the layer leaves its trace as in a model
        traces = {}
        made(arrays, [None], traces, keep=keep)
        return traces
    (x,) = arrays
    return {None: made.trace(x, keep=keep)}


def _directions(made):
    """(layer name, direction, layer, cell) of every recurrent layer traced, in model order; name
    None for a lone layer, direction None but in a Bidirectional."""
    layers = made.recurrent_layers if isinstance(made, Model) else {getattr(made, "name", None): made}
    found = []
    for name, layer in layers.items():
        if isinstance(layer, Bidirectional):
            found += [(name, "forward", layer, layer.forward), (name, "backward", layer, layer.backward)]
        else:
            found.append((name, None, layer, layer if isinstance(layer, Recurrent) else layer.cell))
    return found


def _check_keep(made, keep):
    """keep: None, or quantities the traced layers have, with a trace that takes keep."""
    if keep is None:
        return None
    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    every = {q for *_, cell in _directions(made) for q in _quantities(cell, None)}
    unknown = [q for q in keep if q not in every]
    if unknown:
        raise refuse("keep", f"quantities the traced layers have ({', '.join(sorted(every))})",
                     ", ".join(map(repr, unknown)))
    return keep


def _layout(made, traces, keep):
    """{key: (layer name, direction, quantity, shape per sequence, dtype, layer config)}."""
    layout = {}
    for name, direction, layer, cell in _directions(made):
        one = traces[name] if direction is None else getattr(traces[name], direction)
        for quantity in _quantities(cell, keep):
            key = "/".join(part for part in (name, direction, quantity) if part is not None)
            value = getattr(one, quantity)
            layout[key] = (name, direction, quantity, value.shape[1:], value.dtype, _config(layer, cell))
    return layout


def _quantities(cell, keep):
    """The quantities a layer's trace holds (its gates, then its states), those in `keep` if given."""
    every = tuple(cell.GATE_FIELDS) + tuple(cell.STATES)
    return every if keep is None else tuple(q for q in every if q in keep)


def _config(layer, cell):
    """The layer's description as zarr attributes: Keras class, units and options (JSON)."""
    kind = type(cell).__name__
    keras_class = getattr(layer, "keras_class", "") or kind
    options = {k: (v if isinstance(v, (str, int, float, type(None))) else str(v))
               for k, v in _options(cell).items()}
    options["use_bias"] = cell.bias is not None
    if isinstance(layer, Bidirectional):
        keras_class = f"Bidirectional({kind})"
        options["merge_mode"] = layer.merge_mode
    return {"keras_class": keras_class, "units": int(cell.units), "options": options,
            "reflstm_version": __version__}


def _block_layout(layout):
    """What a task needs of the layout: key -> (layer name, direction, quantity)."""
    return {key: entry[:3] for key, entry in layout.items()}


def _parts(function, source, inputs, *arguments):
    """One delayed task per batch chunk: function(model source, *arguments, *that chunk's inputs)."""
    token = uuid.uuid4().hex
    model = dask.delayed(source, name=f"reflstm-model-{token}") if isinstance(source, _Shipped) else source
    blocks = [array.to_delayed().ravel() for array in inputs]
    call = dask.delayed(function, pure=True)
    return [(chunk, call(model, *arguments, *(b[k] for b in blocks),
                              dask_key_name=f"reflstm-{function.__name__.strip('_')}-{token}-{k}"))
            for k, chunk in enumerate(inputs[0].chunks[0])]


def _stack(parts, item, shape, dtype):
    """The dask array of `item` of every part, (batch,) + shape, stacked along the batch."""
    return da.concatenate([da.from_delayed(part[item], (size,) + tuple(shape), dtype=dtype)
                           for size, part in parts], axis=0)


def _trace_block(source, keep, layout, *arrays):
    """One chunk's trace, as {key: array}: what runs on a worker."""
    traces = _run_trace(source.get(), list(arrays), keep)
    out = {}
    for key, (name, direction, quantity) in layout.items():
        one = traces[name] if direction is None else getattr(traces[name], direction)
        out[key] = np.ascontiguousarray(getattr(one, quantity))
    return out


def _predict_block(source, *arrays):
    """One chunk's predict, as a list of outputs: what runs on a worker."""
    outputs = source.get().predict(list(arrays))
    return outputs if isinstance(outputs, list) else [outputs]


def to_zarr(traces, store, compute=True):
    """Write `traces` (from `trace`) as a zarr store: one array per key, at group path
    'layer/quantity', chunked as the traces are along the batch axis (made regular, as zarr
    needs, when they are not) and whole along the others.

    Each array's attributes: the layer's ``keras_class``, ``units`` and ``options``, its
    ``layer``, ``direction`` (a Bidirectional's), ``quantity``, ``dtype``, ``reflstm_version``;
    its dimension names are batch, timesteps, units. The root group's attributes hold
    ``reflstm_version``.

    `store` is a path (str or Path) or a zarr store. A path is written beside its final place
    and renamed into it when every chunk is written, so a failed run leaves nothing; an
    existing path is refused. All arrays are computed in one pass (each chunk's trace once), on
    whichever dask scheduler is in use. With compute=False, returns the dask `Delayed` of the
    writes (the store then is written in place, not renamed).
    """
    import zarr

    if not isinstance(traces, dict) or not traces or not all(isinstance(v, da.Array) for v in traces.values()):
        raise refuse("traces", "the dict of dask arrays that reflstm.dask.trace returns", type(traces).__name__)
    attributes = getattr(traces, "attributes", {})
    path = os.fspath(store) if isinstance(store, (str, os.PathLike)) else None
    if path is not None and os.path.exists(path):
        raise refuse("store", "a path where nothing exists yet", f"{path!r}, which exists")
    target = path
    if path is not None and compute:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise refuse("store", "a path in an existing folder", repr(path))
        target = tempfile.mkdtemp(dir=folder, prefix=f".{os.path.basename(path)}.")
        os.rmdir(target)  # zarr creates it
    try:
        group = zarr.open_group(store if path is None else target, mode="w-",
                                attributes={"reflstm_version": __version__})
        sources, targets = [], []
        for key, array in traces.items():
            array = _regular(array)
            sources.append(array)
            described = {"reflstm_version": __version__, "dtype": str(array.dtype), **attributes.get(key, {})}
            targets.append(group.create_array(
                key, shape=array.shape, dtype=array.dtype, chunks=tuple(c[0] for c in array.chunks),
                attributes=described, dimension_names=DIMENSIONS[:array.ndim] if array.ndim == 3 else None))
        written = da.store(sources, targets, lock=False, compute=compute)
        if not compute:
            return written
        if path is not None:
            os.replace(target, path)
    except BaseException:
        if path is not None and compute and os.path.exists(target):
            shutil.rmtree(target)
        raise
    return None


def _regular(array):
    """`array` with chunks zarr can store: equal along the batch axis but the last, whole elsewhere."""
    batch = array.chunks[0]
    size = max(batch)
    regular = all(c == size for c in batch[:-1]) and batch[-1] <= size
    whole = all(len(c) == 1 for c in array.chunks[1:])
    return array if regular and whole else array.rechunk({0: size, **{k: -1 for k in range(1, array.ndim)}})


def from_zarr(path, name="x"):
    """The array stored at `path` (a zarr array, or a group holding exactly one) as a dask array
    with the store's chunks: the input `trace` reads. `name` is the argument named in errors."""
    import zarr

    try:
        node = zarr.open(os.fspath(path), mode="r")
    except (FileNotFoundError, ValueError, TypeError, OSError) as error:
        raise refuse(name, "a zarr array (or a zarr group holding one array)",
                     f"{os.fspath(path)!r} ({str(error)[:100] or type(error).__name__})") from None
    if isinstance(node, zarr.Group):
        arrays = [a for _, a in node.arrays()]
        if len(arrays) != 1:
            raise refuse(name, "a zarr array, or a zarr group holding exactly one array",
                         f"{os.fspath(path)!r}, a group of {len(arrays)} arrays")
        node = arrays[0]
    if node.ndim < 2 or node.dtype.kind not in "biuf" or node.shape[0] == 0:
        raise refuse(name, "a zarr array of numbers, (batch, timesteps, features) or (batch, timesteps)",
                     f"{os.fspath(path)!r}, of shape {node.shape} and dtype {node.dtype}")
    return da.from_zarr(node)

