"""Gate orders: moving the gate blocks of a weight between frameworks' orders.

An order is a string of gate letters. An LSTM's are i, f, c, o, always "c" for the candidate
(PyTorch calls it "g"); a GRU's are z, r, h, always "h" for the candidate h̃ (PyTorch calls it
"n"):

    LSTM  Keras (2, 3, tf.keras), PyTorch, cuDNN   i f c o
          ONNX                                      i o f c
          TensorFlow 1 LSTMCell / Keras 1 arrays    i c f o
    GRU   Keras (2, 3, tf.keras), ONNX, Keras 1     z r h
          PyTorch, cuDNN                            r z h
"""

import numpy as np

from reflstm.errors import refuse

__all__ = ["KERAS", "TORCH", "ONNX", "TF1", "KERAS_GRU", "TORCH_GRU", "ONNX_GRU", "reorder"]

KERAS = "ifco"
TORCH = "ifco"  # PyTorch's i, f, g, o: g is the candidate
ONNX = "iofc"
TF1 = "icfo"
KERAS_GRU = "zrh"
TORCH_GRU = "rzh"  # PyTorch's r, z, n: n is the candidate
ONNX_GRU = "zrh"


def reorder(array, source, target, axis=-1):
    """`array`'s gate blocks along `axis`, from gate order `source` to gate order `target`.

    Both orders hold the same gates: "ifco" for an LSTM, "zrh" for a GRU.
    """
    for name, order in (("source", source), ("target", target)):
        if not isinstance(order, str) or sorted(order) not in (sorted("ifco"), sorted("zrh")):
            raise refuse(name, "a gate order: the letters i, f, c, o (LSTM) or z, r, h (GRU) once each",
                         repr(order))
    if sorted(source) != sorted(target):
        raise refuse("target", f"an order of the same gates as source {source!r}", repr(target))
    array = np.asarray(array)
    gates = len(source)
    if array.shape[axis] % gates:
        raise refuse("array", f"an axis {axis} of {gates} equal gate blocks", array)
    blocks = dict(zip(source, np.split(array, gates, axis=axis)))
    return np.concatenate([blocks[gate] for gate in target], axis=axis)
