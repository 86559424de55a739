"""reflstm: what a Keras LSTM computes, step by step, in NumPy.

    ref = reflstm.LSTM.from_keras(layer)     # or reflstm.LSTM(kernel, recurrent_kernel, bias)
    y = ref(x)                               # what layer(x) returns
    tr = ref.trace(x)                        # tr.i, tr.f, tr.c_tilde, tr.o, tr.c, tr.h per step

    m = reflstm.load("model.keras")          # a whole saved model, no TensorFlow needed
    y = m.predict(x); traces = m.trace(x)   # {layer name: Trace}

The equations are in `reflstm.equations`.
"""

from reflstm.attribution import attribute, memory_horizon
from reflstm.diagnose import diagnose
from reflstm.errors import ReflstmError
from reflstm.files import load
from reflstm.lstm import LSTM
from reflstm.model import Model
from reflstm.trace import Preactivation, Trace

__all__ = [
    "LSTM", "Model", "Trace", "Preactivation", "ReflstmError",
    "attribute", "diagnose", "load", "memory_horizon",
]
__version__ = "0.1.0"
