"""The steps of Keras's recurrent cells, once: LSTM, GRU and SimpleRNN.

Each cell's equations are written here and nowhere else; `reflstm.cells.recurrent` runs any of them
over time. The LSTM comes first, then the GRU (`gru_step`) and the SimpleRNN (`simple_rnn_step`).

LSTM
----

Keras stores row vectors: x_t is (batch, input_dim), h and C are (batch, units), and

    kernel            W = [W_i | W_f | W_c | W_o]   (input_dim, 4 * units)
    recurrent_kernel  U = [U_i | U_f | U_c | U_o]   (units, 4 * units)
    bias              b = [b_i | b_f | b_c | b_o]   (4 * units,)

in the gate order i, f, c, o (input, forget, candidate, output). One step is

    i_t  = σ(x_t W_i + h_{t-1} U_i + b_i)        f_t = σ(x_t W_f + h_{t-1} U_f + b_f)
    c̃_t  = g(x_t W_c + h_{t-1} U_c + b_c)        o_t = σ(x_t W_o + h_{t-1} U_o + b_o)
    C_t  = f_t ⊙ C_{t-1} + i_t ⊙ c̃_t              h_t = o_t ⊙ g(C_t)

with σ = `recurrent_activation` (sigmoid by default) and g = `activation` (tanh by default).
There is no peephole: the output gate sees x_t and h_{t-1}, never C_t, and the hidden state is
h_t = o_t ⊙ g(C_t), not a linear function of C_t.

The four pre-activations are computed together as one row z = x_t W + h_{t-1} U + b of width
4 * units, then split; `step` takes that z. The backward pass of these equations is written out
in `reflstm.cells.backward`.

GRU
---
Keras stores W = [W_z | W_r | W_h] (input_dim, 3 * units) and U = [U_z | U_r | U_h]
(units, 3 * units), gates in the order z, r, h (update, reset, candidate h̃). With
``reset_after=True`` (Keras's default since TensorFlow 2) the bias is (2, 3 * units): row 0 is the
input bias b = [b_z | b_r | b_h], row 1 the recurrent bias b' = [b'_z | b'_r | b'_h], and

    z_t  = σ(x_t W_z + b_z + h_{t-1} U_z + b'_z)
    r_t  = σ(x_t W_r + b_r + h_{t-1} U_r + b'_r)
    h̃_t  = g(x_t W_h + b_h + r_t ⊙ (h_{t-1} U_h + b'_h))      the reset gate scales U_h's product and b'_h
    h_t  = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t

With ``reset_after=False`` the bias is one row b (3 * units,), there is no b', and the candidate
resets h_{t-1} before it is multiplied by U_h:

    h̃_t  = g(x_t W_h + b_h + (r_t ⊙ h_{t-1}) U_h)

The update gate keeps the old state: z_t = 1 carries h_{t-1} through unchanged.

SimpleRNN
---------
W (input_dim, units), U (units, units), b (units,), and one equation:

    h_t  = g(x_t W + b + h_{t-1} U)
"""

import numpy as np

from reflstm.errors import refuse

__all__ = ["GATES", "GRU_GATES", "gate_slice", "step", "gru_step", "reset_product", "simple_rnn_step"]

GATES = "ifco"  # Keras's LSTM gate order; "c" is the candidate c̃ (PyTorch calls it "g")
GRU_GATES = "zrh"  # Keras's GRU gate order; "h" is the candidate h̃


def gate_slice(gate, units, gates=GATES):
    """The columns of `kernel`, `recurrent_kernel` and `bias` that belong to `gate` of `gates`.

    `gates` is the layer's gate order: `GATES` ("i", "f", "c", "o") for the LSTM, `GRU_GATES`
    ("z", "r", "h") for the GRU.
    """
    if not isinstance(gate, str) or len(gate) != 1 or gate not in gates:
        raise refuse("gate", "one of " + ", ".join(f'"{g}"' for g in gates), repr(gate))
    k = gates.index(gate)
    return slice(k * units, (k + 1) * units)


def step(z, c_prev, sigma, g, out):
    """One LSTM step from the pre-activations z = x_t W + h_{t-1} U + b.

    Args:
        z: (batch, 4 * units), gates in the order i, f, c, o.
        c_prev: (batch, units), the cell state C_{t-1}.
        sigma: the recurrent activation σ, applied to i, f, o, as a writer ``sigma(x, out)``
            (`reflstm.cells.activations.writer`).
        g: the activation g, applied to c̃ and to C_t, likewise.
        out: six (batch, units) arrays that receive i, f, c_tilde, o, c, h (a trace's rows).
    """
    units = z.shape[-1] // 4
    z_i, z_f, z_c, z_o = (z[..., k * units : (k + 1) * units] for k in range(4))
    i, f, c_tilde, o, c, h = out
    sigma(z_i, i)
    sigma(z_f, f)
    g(z_c, c_tilde)
    sigma(z_o, o)
    np.multiply(f, c_prev, out=c)
    c += np.multiply(i, c_tilde, out=h)  # C_t = f ⊙ C_{t-1} + i ⊙ c̃ (h is free until the next line)
    g(c, h)
    h *= o  # h_t = o ⊙ g(C_t)


def gru_step(x_part, h_prev, U, b_rec, sigma, g, reset_after, h_U, out):
    """One GRU step (the equations above) from the input part x_part = x_t W + b.

    Args:
        x_part: (batch, 3 * units), x_t W + b, gates in the order z, r, h.
        h_prev: (batch, units), h_{t-1}.
        U: (units, 3 * units), the recurrent kernel.
        b_rec: (3 * units,), the recurrent bias b' (reset_after=True), or None.
        sigma: the recurrent activation σ, applied to z and r, as a writer ``sigma(x, out)``.
        g: the activation g, applied to h̃, likewise.
        reset_after: where the reset gate acts (see above).
        h_U: a (batch, 3 * units) array that receives the recurrent parts without b':
            h_{t-1} U_z, h_{t-1} U_r, and h_{t-1} U_h (reset_after) or (r_t ⊙ h_{t-1}) U_h.
        out: four (batch, units) arrays that receive z, r, h_tilde, h.
    """
    u = h_prev.shape[-1]
    x_z, x_r, x_h = x_part[:, :u], x_part[:, u : 2 * u], x_part[:, 2 * u :]
    z, r, h_tilde, h = out
    if reset_after:
        # keras/src/layers/rnn/gru.py GRUCell.call: matrix_inner = h_{t-1} U + b', then split
        inner = np.matmul(h_prev, U, out=h_U)  # (batch, 3 * units)
        if b_rec is not None:
            inner = inner + b_rec
        sigma(np.add(x_z, inner[:, :u], out=z), z)
        sigma(np.add(x_r, inner[:, u : 2 * u], out=r), r)
        g(np.add(x_h, np.multiply(r, inner[:, 2 * u :], out=h_tilde), out=h_tilde), h_tilde)
    else:
        h_U[:, : 2 * u] = h_prev @ U[:, : 2 * u]
        sigma(np.add(x_z, h_U[:, :u], out=z), z)
        sigma(np.add(x_r, h_U[:, u : 2 * u], out=r), r)
        h_U[:, 2 * u :] = reset_product(r, h_prev, U)
        g(np.add(x_h, h_U[:, 2 * u :], out=h_tilde), h_tilde)
    np.multiply(z, h_prev, out=h)
    h += (1 - z) * h_tilde  # h_t = z ⊙ h_{t-1} + (1 - z) ⊙ h̃


def reset_product(r, h_prev, U):
    """(r_t ⊙ h_{t-1}) U_h, (batch, units): the recurrent part of h̃ with reset_after=False."""
    return (r * h_prev) @ U[:, 2 * h_prev.shape[-1] :]


def simple_rnn_step(x_part, h_prev, U, g, h_U, out):
    """One SimpleRNN step, h_t = g((x_t W + b) + h_{t-1} U), from x_part = x_t W + b.

    x_part is (batch, units), h_prev (batch, units), U (units, units); h_U receives h_{t-1} U
    and `out` h_t, both (batch, units); g is a writer ``g(x, out)``.
    """
    g(np.add(x_part, np.matmul(h_prev, U, out=h_U), out=out), out)
