"""Older Keras layouts: Keras 1's twelve arrays, and CuDNNLSTM's cuDNN-shaped weights.

Keras 1 kept one (W, U, b) triple per gate, listed in the gate order i, c, f, o:

    [W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o]   W (input_dim, units), U (units, units)

with defaults activation="tanh" and inner_activation="hard_sigmoid" (Keras 1's hard_sigmoid is
clip(0.2 x + 0.5, 0, 1), today's tf_keras one). Keras 2's CuDNNLSTM stored kernel (input_dim,
4*units) and recurrent_kernel (units, 4*units) in gate order i, f, c, o but with each gate block
laid out as cuDNN keeps it — the input block in column-major order, the recurrent block
transposed — and a bias of 8*units: cuDNN's input and recurrent biases, added together.
"""

import numpy as np

from reflstm.errors import pick, refuse

__all__ = ["keras1_arguments", "cudnn_arguments", "to_keras1", "to_cudnn"]


def keras1_arguments(kind, arrays, activation="tanh", inner_activation="hard_sigmoid"):
    """Keyword arguments of reflstm layer `kind` ("LSTM", ...) from its Keras 1 arrays."""
    return pick({"LSTM": _keras1_lstm}, kind, "Keras 1")(arrays, activation, inner_activation)


def _keras1_lstm(arrays, activation, inner_activation):
    """reflstm.LSTM keyword arguments from Keras 1's twelve LSTM arrays (gate order i, c, f, o)."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) != 12:
        raise refuse("arrays", "Keras 1's 12 LSTM arrays [W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, "
                     "b_f, W_o, U_o, b_o]", f"{len(arrays)} arrays")
    by_gate = {gate: arrays[3 * k : 3 * k + 3] for k, gate in enumerate("icfo")}
    kernel, recurrent, bias = (np.concatenate([by_gate[g][part] for g in "ifco"], axis=-1) for part in range(3))
    return dict(kernel=kernel, recurrent_kernel=recurrent, bias=bias, activation=activation,
                recurrent_activation=inner_activation, keras_version=2)


def cudnn_arguments(kind, kernel, recurrent_kernel, bias):
    """Keyword arguments of reflstm layer `kind` ("LSTM", ...) from Keras 2's CuDNN layer weights."""
    return pick({"LSTM": _cudnn_lstm}, kind, "Keras 2's CuDNN layers")(kernel, recurrent_kernel, bias)


def _cudnn_lstm(kernel, recurrent_kernel, bias):
    """reflstm.LSTM keyword arguments from CuDNNLSTM's kernel, recurrent_kernel and 8*units bias.

    Mirrors tf_keras/src/saving/legacy/hdf5_format.py (_convert_rnn_weights, CuDNNLSTM -> LSTM).
    """
    kernel, recurrent_kernel, bias = (np.asarray(a) for a in (kernel, recurrent_kernel, bias))
    units = recurrent_kernel.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != 4 * units or recurrent_kernel.shape != (units, 4 * units):
        raise refuse("kernel, recurrent_kernel", "(input_dim, 4*units) and (units, 4*units)",
                     f"{kernel.shape} and {recurrent_kernel.shape}")
    if bias.shape != (8 * units,):
        raise refuse("bias", f"CuDNNLSTM's (8*units,) = ({8 * units},)", bias)
    # Each gate's input block: cuDNN's (units, input_dim) row-major, read as column-major.
    kernel = np.hstack([k.T.reshape(k.shape, order="F") for k in np.hsplit(kernel, 4)])
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent_kernel, 4)])
    input_bias, recurrent_bias = np.split(bias, 2)
    return dict(kernel=kernel, recurrent_kernel=recurrent, bias=input_bias + recurrent_bias)


def to_keras1(lstm):
    """Keras 1's twelve arrays [W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o]."""
    pick({"LSTM": None}, type(lstm).__name__, "Keras 1")
    if lstm.bias is None:
        raise refuse("lstm", "an LSTM with a bias (Keras 1 always had one)", "use_bias=False")
    arrays = []
    for gate in "icfo":
        arrays += [getattr(lstm, f"{w}_{gate}").copy() for w in ("W", "U", "b")]
    return arrays


def to_cudnn(lstm):
    """CuDNNLSTM's [kernel, recurrent_kernel, bias (8*units)]: the inverse of cudnn_arguments.

    The bias goes to cuDNN's input half and zeros to its recurrent half (only their sum matters).
    """
    pick({"LSTM": None}, type(lstm).__name__, "Keras 2's CuDNN layers")
    if lstm.activation != "tanh" or lstm.recurrent_activation != "sigmoid" or lstm.bias is None:
        raise refuse("lstm", "tanh, sigmoid and a bias, the only LSTM cuDNN has",
                     f"activation={lstm.activation!r}, recurrent_activation={lstm.recurrent_activation!r}, "
                     f"bias={'None' if lstm.bias is None else 'given'}")
    kernel = np.hstack([k.T.reshape(k.shape, order="C") for k in np.hsplit(lstm.kernel, 4)])
    recurrent = np.hstack([k.T for k in np.hsplit(lstm.recurrent_kernel, 4)])
    return [kernel, recurrent, np.concatenate([lstm.bias, np.zeros_like(lstm.bias)])]
