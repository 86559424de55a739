"""The model a command reads, and its recurrent layers: names, directions, quantities."""

import numpy as np

from reflstm.cells.equations import GATES, GRU_GATES
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace
from reflstm.errors import refuse
from reflstm.formats.files import load
from reflstm.models.layers import Bidirectional, BidirectionalTrace

QUANTITIES = ("i", "f", "c_tilde", "o", "c", "h")  # an LSTM's, as trace writes them
# Every recurrent layer's quantities, by its reflstm class.
QUANTITIES_OF = {"LSTM": QUANTITIES, "GRU": ("z", "r", "h_tilde", "h"), "SimpleRNN": ("h",)}
# Each layer's gate columns, in Keras's order ("h" for the SimpleRNN's one block).
GATES_OF = {"LSTM": GATES, "GRU": GRU_GATES, "SimpleRNN": "h"}


def add_model_file(command):
    command.add_argument("file", help="the model: a .keras archive or an .h5 file (or a save_weights "
                         "file, with --architecture)")
    command.add_argument("--architecture", metavar="MODEL.json",
                         help="the model's JSON (model.to_json()), when FILE holds only its weights")


def load_model(args):
    return load(args.file, architecture=args.architecture)


def directions(layer):
    if isinstance(layer, Bidirectional):
        return [(" forward", layer.forward), (" backward", layer.backward)]
    return [("", layer.cell)]


def layer_names(model, layer):
    """The recurrent layers' names (LSTM, GRU, SimpleRNN, Bidirectional), or just `layer`."""
    names = list(model.recurrent_layers)
    if not names:
        raise refuse("FILE", "a model with a recurrent layer (LSTM, GRU or SimpleRNN)", "a model without one")
    if layer is None:
        return names
    if layer not in names:
        raise refuse("--layer", f"one of the recurrent layers {', '.join(names)}", repr(layer))
    return [layer]


def layer_trace(model, name, x, direction=None):
    names = layer_names(model, name)
    trace = model.trace(x)[names[0]]
    if isinstance(trace, BidirectionalTrace):
        direction = direction or "forward"
        return getattr(trace, direction), f"{names[0]} ({direction})"
    if direction not in (None, "forward"):
        raise refuse("--direction", f"forward for {names[0]!r}, which is not Bidirectional", repr(direction))
    return trace, names[0]


def trace_arrays(name, trace, kept=False):
    """{'layer/quantity': array} of a layer's trace: its kind's quantities, or with `kept`, what
    the trace keeps (in that same order, then output and the pre-activation parts)."""
    if isinstance(trace, BidirectionalTrace):
        out = {}
        for direction in ("forward", "backward"):
            for key, value in trace_arrays(f"{name}/{direction}", getattr(trace, direction), kept).items():
                out[key] = value
        return out
    quantities = trace_quantities(trace)
    if kept:
        order = quantities + ("output",) + type(trace).PREACTIVATIONS
        quantities = [q for q in order if q in trace.kept]
    return {f"{name}/{q}": np.ascontiguousarray(getattr(trace, q)) for q in quantities}


def trace_quantities(trace):
    """The quantities trace writes for one direction's trace, by its kind."""
    if isinstance(trace, GRUTrace):
        return QUANTITIES_OF["GRU"]
    if isinstance(trace, SimpleRNNTrace):
        return QUANTITIES_OF["SimpleRNN"]
    return QUANTITIES


def model_dtype(model):
    lstms = [cell for layer in model.recurrent_layers.values() for _, cell in directions(layer)]
    return lstms[0].dtype if lstms else np.dtype("float32")


def parse_keep(text, model, names):
    """--keep as names of quantities the traced layers have; None without it."""
    if text is None:
        return None
    cells = [cell for name in names for _, cell in directions(model.recurrent_layers[name])]
    known = list(dict.fromkeys(q for cell in cells for q in cell.QUANTITIES))
    keep = tuple(q.strip() for q in text.split(","))
    for q in keep:
        if q not in known:
            raise refuse("--keep", f"comma-separated names of quantities of {', '.join(names)} "
                         f"({', '.join(known)})", repr(q))
    return keep
