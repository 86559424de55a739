"""Older Keras layouts: Keras 1's per-gate arrays, and Keras 2's CuDNNLSTM and CuDNNGRU weights.

Keras 1 kept one (W, U, b) triple per gate, W (input_dim, units), U (units, units), b (units,):

    LSTM       [W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o]   gates i, c, f, o (today i, f, c, o)
    GRU        [W_z, U_z, b_z, W_r, U_r, b_r, W_h, U_h, b_h]                    gates z, r, h (as today)
    SimpleRNN  [W, U, b]                                                         kernel, recurrent_kernel, bias

with the defaults activation="tanh" and inner_activation="hard_sigmoid" (Keras 1's hard_sigmoid is
clip(0.2 x + 0.5, 0, 1), today's tf_keras one). Keras 1's GRU applied r to h_{t-1} before U_h:
today's reset_after=False.

Keras 2's CuDNNLSTM and CuDNNGRU stored kernel (input_dim, k*units) and recurrent_kernel
(units, k*units) in today's gate order (i, f, c, o; z, r, h) but with each gate block laid out as
cuDNN keeps it — the input block in column-major order, the recurrent block transposed — and a
bias of 2*k*units: cuDNN's input and recurrent biases. An LSTM adds them; cuDNN's GRU resets
(h_{t-1} U_h + b'_h), so they are the two bias rows of today's GRU(reset_after=True).
"""

import numpy as np

from reflstm.cells.equations import gate_slice
from reflstm.errors import pick, refuse
from reflstm.frameworks.layouts import KERAS, KERAS_GRU, TF1

__all__ = ["KERAS1_ORDERS", "keras1_weights", "keras1_arguments", "cudnn_arguments", "to_keras1", "to_cudnn"]

# Keras 1's gate blocks as its per-gate arrays list them, and in today's order. A SimpleRNN has
# one block, "h", whose W, U and b are today's arrays as they are.
KERAS1_ORDERS = {"LSTM": (TF1, KERAS), "GRU": (KERAS_GRU, KERAS_GRU), "SimpleRNN": ("h", "h")}
# Gate blocks of Keras 2's CuDNN layers.
_CUDNN_GATES = {"LSTM": 4, "GRU": 3}


def _keras1_names(kind):
    listed = KERAS1_ORDERS[kind][0]
    return ", ".join(f"{w}_{g}" if len(listed) > 1 else w for g in listed for w in "WUb")


def keras1_weights(kind, arrays):
    """[kernel, recurrent_kernel, bias] in today's layout from Keras 1's per-gate arrays of `kind`."""
    listed, today = pick(KERAS1_ORDERS, kind, "Keras 1")
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) != 3 * len(listed):
        raise refuse("arrays", f"Keras 1's {3 * len(listed)} {kind} arrays [{_keras1_names(kind)}]",
                     f"{len(arrays)} arrays")
    units = arrays[1].shape[0] if arrays[1].ndim else 0
    input_dim = arrays[0].shape[0] if arrays[0].ndim else 0
    for name, array in zip(_keras1_names(kind).split(", "), arrays):
        expected = {"W": (input_dim, units), "U": (units, units), "b": (units,)}[name[0]]
        if array.shape != expected:
            raise refuse(name, f"shape {expected}, as the first W and U give", array)
    by_gate = {gate: arrays[3 * k : 3 * k + 3] for k, gate in enumerate(listed)}
    return [np.concatenate([by_gate[g][part] for g in today], axis=-1) for part in range(3)]


def keras1_arguments(kind, arrays, activation="tanh", inner_activation="hard_sigmoid"):
    """Keyword arguments of reflstm layer `kind` ("LSTM", "GRU", "SimpleRNN") from its Keras 1
    arrays and activations (Keras 1's names; a SimpleRNN has no inner_activation)."""
    kernel, recurrent_kernel, bias = keras1_weights(kind, arrays)
    options = dict(kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias, activation=activation,
                   keras_version=2)
    if kind == "SimpleRNN":
        if inner_activation != "hard_sigmoid":  # the default: not given
            raise refuse("inner_activation", "none for a SimpleRNN (Keras 1's had one activation)",
                         repr(inner_activation))
    else:
        options["recurrent_activation"] = inner_activation
    if kind == "GRU":
        options["reset_after"] = False
    return options


def to_keras1(layer):
    """Keras 1's per-gate arrays of `layer` (an LSTM's twelve, a GRU's nine, a SimpleRNN's three)."""
    kind = type(layer).__name__
    listed, today = pick(KERAS1_ORDERS, kind, "Keras 1")
    if layer.bias is None:
        raise refuse(kind.lower(), f"a {kind} with a bias (Keras 1 always had one)", "use_bias=False")
    if kind == "GRU" and layer.reset_after:
        raise refuse("gru", "reset_after=False (Keras 1's GRU reset h before U_h)", "reset_after=True")
    activations = {getattr(layer, a, None) for a in ("activation", "recurrent_activation")}
    if "hard_sigmoid" in activations and layer.keras_version != 2:
        raise refuse(kind.lower(), "keras_version=2 with hard_sigmoid (Keras 1's is Keras 2's, slope 0.2)",
                     f"keras_version={layer.keras_version}")
    arrays = []
    for gate in listed:
        columns = gate_slice(gate, layer.units, today)
        arrays += [w[..., columns].copy() for w in (layer.kernel, layer.recurrent_kernel, layer.bias)]
    return arrays


def _cudnn_kernels(kernel, recurrent_kernel, gates, order):
    """Each gate block of the input kernel read in `order` ("F" from cuDNN's layout, "C" to it),
    and of the recurrent kernel transposed, as tf_keras/src/saving/legacy/hdf5_format.py
    (_convert_rnn_weights) does."""
    kernel = np.hstack([k.T.reshape(k.shape, order=order) for k in np.hsplit(kernel, gates)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent_kernel, gates)])
    return kernel, recurrent


def cudnn_arguments(kind, kernel, recurrent_kernel, bias):
    """Keyword arguments of reflstm layer `kind` ("LSTM", "GRU") from Keras 2's CuDNNLSTM or
    CuDNNGRU kernel, recurrent_kernel and 2*k*units bias.

    Mirrors tf_keras/src/saving/legacy/hdf5_format.py (_convert_rnn_weights: CuDNNLSTM -> LSTM,
    CuDNNGRU -> GRU(reset_after=True)).
    """
    gates = pick(_CUDNN_GATES, kind, "Keras 2's cuDNN")
    kernel, recurrent_kernel, bias = (np.asarray(a) for a in (kernel, recurrent_kernel, bias))
    units = recurrent_kernel.shape[0] if recurrent_kernel.ndim else 0
    if kernel.ndim != 2 or kernel.shape[1] != gates * units or recurrent_kernel.shape != (units, gates * units):
        raise refuse("kernel, recurrent_kernel", f"(input_dim, {gates}*units) and (units, {gates}*units)",
                     f"{kernel.shape} and {recurrent_kernel.shape}")
    if bias.shape != (2 * gates * units,):
        raise refuse("bias", f"CuDNN{kind}'s ({2 * gates}*units,) = ({2 * gates * units},)", bias)
    kernel, recurrent = _cudnn_kernels(kernel, recurrent_kernel, gates, "F")
    input_bias, recurrent_bias = np.split(bias, 2)
    options = dict(kernel=kernel, recurrent_kernel=recurrent, activation="tanh", recurrent_activation="sigmoid")
    if kind == "GRU":
        return dict(options, bias=np.stack([input_bias, recurrent_bias]), reset_after=True)
    return dict(options, bias=input_bias + recurrent_bias)


def to_cudnn(layer):
    """Keras 2's CuDNNLSTM or CuDNNGRU [kernel, recurrent_kernel, bias]: the inverse of cudnn_arguments.

    An LSTM's bias goes to cuDNN's input half and zeros to its recurrent half (only their sum
    matters); a GRU's two bias rows are cuDNN's two halves.
    """
    kind = type(layer).__name__
    gates = pick(_CUDNN_GATES, kind, "Keras 2's cuDNN")
    if layer.activation != "tanh" or layer.recurrent_activation != "sigmoid" or layer.bias is None:
        raise refuse(kind.lower(), f"tanh, sigmoid and a bias, the only {kind} cuDNN has",
                     f"activation={layer.activation!r}, recurrent_activation={layer.recurrent_activation!r}, "
                     f"bias={'None' if layer.bias is None else 'given'}")
    if kind == "GRU" and not layer.reset_after:
        raise refuse("gru", "reset_after=True (cuDNN's GRU resets h U_h + b'_h)", "reset_after=False")
    kernel, recurrent = _cudnn_kernels(layer.kernel, layer.recurrent_kernel, gates, "C")
    if kind == "GRU":
        return [kernel, recurrent, layer.bias.reshape(-1)]
    return [kernel, recurrent, np.concatenate([layer.bias, np.zeros_like(layer.bias)])]
