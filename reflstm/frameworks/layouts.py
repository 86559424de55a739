"""Gate orders: moving the four gate blocks of a weight between frameworks' orders.

An order is a string of gate letters, always "c" for the candidate (PyTorch calls it "g"):

    Keras (2, 3, tf.keras), PyTorch, cuDNN   i f c o
    ONNX                                      i o f c
    TensorFlow 1 LSTMCell / Keras 1 arrays    i c f o
"""

import numpy as np

from reflstm.errors import refuse

__all__ = ["KERAS", "TORCH", "ONNX", "TF1", "reorder"]

KERAS = "ifco"
TORCH = "ifco"  # PyTorch's i, f, g, o: g is the candidate
ONNX = "iofc"
TF1 = "icfo"


def reorder(array, source, target, axis=-1):
    """`array`'s gate blocks along `axis`, from gate order `source` to gate order `target`."""
    for name, order in (("source", source), ("target", target)):
        if not isinstance(order, str) or sorted(order) != sorted("ifco"):
            raise refuse(name, "a gate order: the letters i, f, c, o once each", repr(order))
    array = np.asarray(array)
    if array.shape[axis] % 4:
        raise refuse("array", f"an axis {axis} of 4 equal gate blocks", array)
    blocks = dict(zip(source, np.split(array, 4, axis=axis)))
    return np.concatenate([blocks[gate] for gate in target], axis=axis)
