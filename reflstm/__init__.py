"""reflstm: what a Keras LSTM computes, step by step, in NumPy.

    ref = reflstm.LSTM.from_keras(layer)     # or reflstm.LSTM(kernel, recurrent_kernel, bias)
    y = ref(x)                               # what layer(x) returns
    tr = ref.trace(x)                        # tr.i, tr.f, tr.c_tilde, tr.o, tr.c, tr.h per step
    g = reflstm.GRU.from_keras(layer)        # likewise a GRU: g.trace(x).z, .r, .h_tilde, .h
    s = reflstm.SimpleRNN.from_keras(layer)  # and a SimpleRNN: s.trace(x).h
    m = reflstm.load("model.keras")          # a whole saved model, no TensorFlow needed
    y = m.predict(x); traces = m.trace(x)   # {layer name: Trace}

The equations of every layer are in `reflstm.cells.equations`; the loop they share in
`reflstm.cells.recurrent`.
"""

from reflstm.errors import ReflstmError
from reflstm.cells.gru import GRU
from reflstm.cells.lstm import LSTM
from reflstm.cells.simple_rnn import SimpleRNN
from reflstm.cells.trace import GRUPreactivation, GRUTrace, Preactivation, SimpleRNNTrace, Trace

__all__ = [
    "LSTM", "GRU", "SimpleRNN", "Limits", "Model", "Trace", "GRUTrace", "SimpleRNNTrace", "Preactivation",
    "GRUPreactivation", "ReflstmError",
    "attribute", "diagnose", "load", "memory_horizon", "report",
]
__version__ = "0.1.0"

# The rest loads on first use, so that `import reflstm` (and the command line) starts fast.
_LAZY = {
    "Model": "reflstm.models.model",
    "load": "reflstm.formats.files",
    "Limits": "reflstm.formats.untrusted",
    "attribute": "reflstm.analysis.attribution",
    "memory_horizon": "reflstm.analysis.attribution",
    "diagnose": "reflstm.analysis.diagnosis",
    "report": "reflstm.explorer.document",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reflstm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
