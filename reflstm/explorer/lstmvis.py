"""LSTMVis's project files: every gate and the cell state of each recurrent layer, not only h_t.

LSTMVis (Strobelt, Gehrmann, Pfister, Rush; github.com/HendrikStrobelt/LSTMVis, BSD-3) is a
server that shows a recurrent layer's states over a text. It reads a project folder; the format
below is taken from its source at commit e0628caf16265feb61193251dc1c9b3e1af444ad (2021): the
README's "Adding Your Own Data", docs/chapter/config_states.md, docs/chapter/meta.md,
docs/keras.md, ``lstm_server.py`` (``create_data_handlers``) and ``lstmdata/data_handler.py``
(``LSTMDataHandler.__init__``, ``get_states``, ``get_words``):

- ``lstm.yml``, the config, read with ``yaml.load`` (so JSON-quoted strings are fine):
  ``name``, ``description``; ``files``: {reference name: file name}, where names ending in
  ``.h5``/``.hdf5`` are opened as HDF5 files and names ending in ``.dict``/``.txt`` read as
  dictionaries; ``word_sequence``: {``file``, ``path``, ``dict_file``}, required: the handler
  reads it unconditionally; ``states``: {``file``: the default states file, ``types``: a list of
  {``type``, ``layer``, ``path``, optional ``file``, ``unsigned``, ``transform``}}, each source
  then named ``file::path``; optional ``meta``: {name: {``file``, ``path``, ``vis``: {``type``:
  ``scalar`` or ``discrete``, ``range``}}}.
- a states HDF5 file: one 2-D dataset per source, (positions, cells); position p is the state
  after reading word p of the word sequence (the Keras tutorial, docs/keras.md, flattens
  (samples, timesteps, cells) to (samples * timesteps, cells), samples one after another).
  LSTMVis applies tanh to the values unless the type says ``transform: none`` (values already in
  [-1, 1], or [0, 1] with ``unsigned: true``). Its own Torch extractor (model/get_states.lua)
  names them ``output1, states1, output2, ...``: ``output`` for h_t, ``states`` for C_t. The
  client shows ``type`` and ``layer`` as text only ("layer 1 forget gate"), so gates get their
  own type names.
- a word-id HDF5 file: a 1-D dataset, one word id per position.
- a dict file, one ``word id`` line per word (``line.split()`` must give exactly two fields; a
  line starting with a space is the space token). A word can hold no other whitespace.

What `export_lstmvis` writes into FOLDER:

    lstm.yml       the config
    states.hdf5    per recurrent layer L (1, 2, ... in model order) and direction:
                   output{L}       what Keras returns for each step (return_sequences=True)
                   states{L}       C_t (LSTM)
                   input_gate{L}, forget_gate{L}, candidate{L}, output_gate{L}   (LSTM)
                   update_gate{L}, reset_gate{L}, candidate{L}                   (GRU)
                   a Bidirectional's as output{L}_forward, output{L}_backward, ...
    words.hdf5     word_ids (the word sequence), and the annotations sample, step, masked
    words.dict     id -> word

Every dataset is (batch * timesteps, units) in the model's float dtype, samples one after
another and steps in INPUT order: a ``go_backwards`` layer's (and a Bidirectional's backward)
steps are flipped back, so that row p is the state after the layer read input step p, aligned
with word p. The words are the token ids (through the vocabulary when one is given) for a model
that reads token ids, else the step numbers ``t0, t1, ...``.
"""

import dataclasses
import json
import os
import tempfile

import numpy as np

from reflstm import __version__
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace, Trace
from reflstm.errors import refuse

__all__ = ["export_lstmvis", "read_vocabulary", "SOURCES", "CHUNK"]

# Each trace kind's sources: (trace field, dataset name, LSTMVis type).
SOURCES = {
    Trace: (("output", "output", "output"), ("c", "states", "state"), ("i", "input_gate", "input gate"),
            ("f", "forget_gate", "forget gate"), ("c_tilde", "candidate", "candidate"),
            ("o", "output_gate", "output gate")),
    GRUTrace: (("output", "output", "output"), ("z", "update_gate", "update gate"),
               ("r", "reset_gate", "reset gate"), ("h_tilde", "candidate", "candidate")),
    SimpleRNNTrace: (("output", "output", "output"),),
}
# Samples traced at a time, so that memory stays at one chunk's trace.
CHUNK = 64
FILES = {"states": "states.hdf5", "word_ids": "words.hdf5", "words": "words.dict"}
CONFIG = "lstm.yml"


@dataclasses.dataclass(frozen=True)
class _Source:
    """One dataset of the states file, and what LSTMVis is told about it."""

    path: str  # the dataset's name, e.g. "forget_gate1" or "output2_backward"
    type: str  # LSTMVis's type, e.g. "forget gate (backward)"
    layer: int  # LSTMVis's layer number: 1, 2, ... over the model's recurrent layers
    low: float  # the smallest value written
    high: float  # the largest value written


def export_lstmvis(model, x, folder, layer=None, vocabulary=None, name=None):
    """Write the LSTMVis project of `model` run on `x` into `folder` (the format: module docstring).

    Args:
        model: a `reflstm.Model` (from `reflstm.load`) with one input, or one reflstm.LSTM, GRU
            or SimpleRNN.
        x: the input, (batch, timesteps, features), or token ids (batch, timesteps) for a model
            that reads them.
        folder: the project folder; created if absent (its parent must exist). Files of the
            same names in it are replaced; nothing is written if anything fails.
        layer: only this recurrent layer (one of ``model.recurrent_layers``).
        vocabulary: for token ids, the words: a sequence of strings, word k for id k
            (`read_vocabulary` reads one from a file).
        name: the project's name in LSTMVis (the folder's name by default).

    Returns:
        The config written to ``lstm.yml``, as a dict.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise refuse("x", "an array of numbers (batch, timesteps, ...) with at least one sample and step", x)
    tokens = x.dtype.kind in "iu" and x.ndim == 2
    if vocabulary is not None:
        if not tokens:
            raise refuse("vocabulary", "none for an input of features (a vocabulary names token ids: "
                         "an integer input (batch, timesteps))", f"an input {x.shape} of {x.dtype}")
        vocabulary = _checked_vocabulary(vocabulary, x)
    folder = os.fspath(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise refuse("folder", "a folder for the LSTMVis project", f"{folder!r}, which is a file")
    if not os.path.isdir(parent):
        raise refuse("folder", "a folder inside an existing folder", repr(folder))
    layers, run, chunk = _layers(model, layer, x.shape[0])

    import h5py

    with tempfile.TemporaryDirectory(dir=parent, prefix=".reflstm-lstmvis-") as scratch:
        with h5py.File(os.path.join(scratch, FILES["states"]), "w") as states:
            sources, mask = _write_states(states, run, x, layers, chunk)
        if tokens and mask.shape[1] != x.shape[1]:
            raise refuse("layer", f"a layer that runs one step per input token ({x.shape[1]} steps)",
                         f"{mask.shape[1]} steps in {', '.join(repr(n) for n, _, _ in layers)}")
        if tokens:
            word_ids = x
            words = vocabulary if vocabulary is not None else [str(i) for i in range(int(x.max()) + 1)]
        else:
            word_ids = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)  # (batch, timesteps)
            words = [f"t{t}" for t in range(mask.shape[1])]
        with h5py.File(os.path.join(scratch, FILES["word_ids"]), "w") as file:
            file["word_ids"] = word_ids.reshape(-1).astype(np.int64)
            sample, step = np.indices(mask.shape).reshape(2, -1)  # each (batch * timesteps,)
            file["sample"], file["step"] = sample, step
            file["masked"] = (~mask).reshape(-1).astype(np.int8)
        with open(os.path.join(scratch, FILES["words"]), "w", encoding="utf-8") as file:
            file.writelines(f"{word} {word_id}\n" for word_id, word in enumerate(words))
        title = name or os.path.basename(os.path.abspath(folder))
        config = _config(title, model, layers, sources, mask.shape)
        with open(os.path.join(scratch, CONFIG), "w", encoding="utf-8") as file:
            file.write(_yaml(config))
        os.makedirs(folder, exist_ok=True)
        for file_name in (*FILES.values(), CONFIG):
            os.replace(os.path.join(scratch, file_name), os.path.join(folder, file_name))
    return config


def read_vocabulary(path):
    """The words of a vocabulary file: UTF-8, one per line, line k (from 0) the word of token id k."""
    from reflstm.formats.untrusted import regular_file

    regular_file(path, "--vocabulary", "text file, one word per line")
    try:
        with open(path, encoding="utf-8", newline="") as file:
            text = file.read()
    except UnicodeDecodeError as error:
        raise refuse("--vocabulary", "a UTF-8 text file, one word per line", f"{path!r} ({error})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _checked_vocabulary(vocabulary, ids):
    """The words as a list: one for every id in `ids`, each one that LSTMVis's dict file holds."""
    if isinstance(vocabulary, (str, bytes)):
        raise refuse("vocabulary", "a sequence of words (word k for token id k)", vocabulary)
    words = list(vocabulary)
    for word_id, word in enumerate(words):
        # LSTMVis reads each dict line with line.split(), so a word holds no whitespace, except the
        # one-space word, which lstmdata/data_handler.py reads from a line that starts with a space.
        if not isinstance(word, str) or not word or (word != " " and any(c.isspace() for c in word)):
            raise refuse(f"vocabulary word {word_id}", "a word without whitespace (or a single space), "
                         "as LSTMVis's dict file holds them", repr(word))
    if ids.min() < 0 or ids.max() >= len(words):
        raise refuse("vocabulary", f"a word for every token id in x (ids {ids.min()}..{ids.max()})",
                     f"{len(words)} words")
    return words


def _layers(model, layer, batch):
    """([(name, number, [(direction, go_backwards), ...])], run(chunk) -> {name: trace}, chunk)."""
    from reflstm.cells.recurrent import Recurrent

    if isinstance(model, Recurrent):
        if layer is not None:
            raise refuse("layer", "none for a single layer", repr(layer))
        name = type(model).__name__.lower()
        chunk = batch if model.stateful else CHUNK  # a stateful layer: one call, carried on
        return [(name, 1, [(None, model.go_backwards)])], lambda part: {name: model.trace(part)}, chunk
    if not hasattr(model, "recurrent_layers"):
        raise refuse("model", "a reflstm.Model or a reflstm.LSTM, GRU or SimpleRNN", type(model).__name__)
    if len(model.graph.inputs) != 1:
        raise refuse("model", "a model with one input (LSTMVis aligns the states with one sequence)",
                     f"{len(model.graph.inputs)} inputs")
    names = list(model.recurrent_layers)
    if not names:
        raise refuse("model", "a model with a recurrent layer (LSTM, GRU or SimpleRNN)", "a model without one")
    if layer is not None and layer not in names:
        raise refuse("layer", f"one of the recurrent layers {', '.join(names)}", repr(layer))
    model.check_runnable("export its states")
    layers = []
    for number, name in enumerate(names, 1):
        cells = model.recurrent_layers[name].cells
        directions = [(None, cells[0].go_backwards)] if len(cells) == 1 else \
            [("forward", cells[0].go_backwards), ("backward", cells[1].go_backwards)]
        if layer in (None, name):
            layers.append((name, number, directions))
    chunk = batch if model.batch_size is not None else CHUNK  # stateful: one call, as Model.trace takes
    return layers, model.trace, chunk


def _write_states(states, run, x, layers, chunk):
    """Trace x chunk by chunk into the HDF5 file `states`: ([_Source], mask (batch, timesteps)).

    The mask is in input order, False where any of the layers skipped a step (all True without masks).
    """
    batch = x.shape[0]
    ranges, masks = {}, {}
    for start in range(0, batch, chunk):
        traces = run(x[start:start + chunk])
        for name, number, directions in layers:
            trace = traces[name]
            for direction, go_backwards in directions:
                part = trace if direction is None else getattr(trace, direction)
                order = slice(None, None, -1) if go_backwards else slice(None)  # back to input order
                size, timesteps = part.h.shape[:2]
                mask = np.ones((size, timesteps), bool) if part.mask is None else part.mask[:, order]
                masks.setdefault(name, np.ones((batch, timesteps), bool))[start:start + size] = mask
                for field, dataset, kind in SOURCES[type(part)]:
                    value = getattr(part, field)[:, order]  # (size, timesteps, units), input order
                    path = f"{dataset}{number}" + (f"_{direction}" if direction else "")
                    if path not in states:
                        states.create_dataset(path, (batch * timesteps, value.shape[-1]), value.dtype)
                        kind += f" ({direction})" if direction else ""
                        ranges[path] = [kind, number, np.inf, -np.inf, name]
                    states[path][start * timesteps:(start + size) * timesteps] = value.reshape(-1, value.shape[-1])
                    info = ranges[path]
                    info[2], info[3] = min(info[2], float(value.min())), max(info[3], float(value.max()))
    steps = {name: mask.shape[1] for name, mask in masks.items()}
    if len(set(steps.values())) > 1:
        raise refuse("layer", "recurrent layers that run over the same steps (choose one)",
                     ", ".join(f"{n!r}: {s} steps" for n, s in steps.items()))
    for path, (kind, number, low, high, name) in ranges.items():
        states[path].attrs["keras_layer"] = name
    sources = [_Source(path, kind, number, low, high) for path, (kind, number, low, high, _) in ranges.items()]
    return sources, np.logical_and.reduce(list(masks.values()))  # a step masked in any layer is marked


def _config(title, model, layers, sources, shape):
    """The contents of lstm.yml, as a dict (see the module docstring)."""
    types = []
    for source in sources:
        entry = {"type": source.type, "layer": source.layer, "path": source.path}
        # LSTMVis shows tanh(value) unless told the values are in range already.
        if 0 <= source.low and source.high <= 1:
            entry.update(unsigned=True, transform="none")
        elif -1 <= source.low and source.high <= 1:
            entry["transform"] = "none"
        types.append(entry)
    named = ", ".join(f"layer {number} = {name!r}" for name, number, _ in layers)
    batch, timesteps = shape
    description = (f"{getattr(model, 'name', title)}: {named}; {batch} samples x {timesteps} steps, one after "
                   f"another; every gate and state as reflstm {__version__} computes them (equal to Keras)")
    step_range = [0, max(timesteps - 1, 1)]
    return {
        "name": title,
        "description": description,
        "files": dict(FILES),
        "word_sequence": {"file": "word_ids", "path": "word_ids", "dict_file": "words"},
        "states": {"file": "states", "types": types},
        "meta": {
            "sample": {"file": "word_ids", "path": "sample",
                       "vis": {"type": "scalar", "range": [0, max(batch - 1, 1)]}},
            "step": {"file": "word_ids", "path": "step", "vis": {"type": "scalar", "range": step_range}},
            "masked": {"file": "word_ids", "path": "masked", "vis": {"type": "discrete", "range": [0, 1]}},
        },
    }


def _yaml(config):
    """`config` as YAML: block mappings, every string JSON-quoted (JSON strings are YAML strings)."""
    lines = ["# LSTMVis project (github.com/HendrikStrobelt/LSTMVis), written by reflstm"]

    def emit(value, indent):
        for key, item in value.items():
            head = " " * indent + f"{key}:"
            if isinstance(item, dict):
                lines.append(head)
                emit(item, indent + 2)
            elif isinstance(item, list) and item and isinstance(item[0], dict):
                lines.append(head)
                lines.extend(" " * (indent + 2) + "- " + json.dumps(entry) for entry in item)
            else:
                lines.append(f"{head} {json.dumps(item)}")

    emit(config, 0)
    return "\n".join(lines) + "\n"
