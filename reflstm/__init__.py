"""reflstm: what a Keras LSTM computes, step by step, in NumPy.

    ref = reflstm.LSTM.from_keras(layer)     # or reflstm.LSTM(kernel, recurrent_kernel, bias)
    y = ref(x)                               # what layer(x) returns
    tr = ref.trace(x)                        # tr.i, tr.f, tr.c_tilde, tr.o, tr.c, tr.h per step
    m = reflstm.load("model.keras")          # a whole saved model, no TensorFlow needed
    y = m.predict(x); traces = m.trace(x)   # {layer name: Trace}

The equations are in `reflstm.equations`.
"""

from reflstm.errors import ReflstmError
from reflstm.lstm import LSTM
from reflstm.trace import Preactivation, Trace

__all__ = [
    "LSTM", "Limits", "Model", "Trace", "Preactivation", "ReflstmError",
    "attribute", "diagnose", "load", "memory_horizon",
]
__version__ = "0.1.0"

# The rest loads on first use, so that `import reflstm` (and the command line) starts fast.
_LAZY = {
    "Model": "reflstm.model",
    "load": "reflstm.files",
    "Limits": "reflstm.untrusted",
    "attribute": "reflstm.attribution",
    "memory_horizon": "reflstm.attribution",
    "diagnose": "reflstm.diagnosis",
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
