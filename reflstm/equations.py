"""The LSTM step: Keras's six equations, once.

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
in `reflstm.backward`.
"""

import numpy as np

from reflstm.errors import refuse

__all__ = ["GATES", "gate_slice", "step"]

GATES = "ifco"  # Keras's gate order; "c" is the candidate c̃ (PyTorch calls it "g")


def gate_slice(gate, units):
    """The columns of `kernel`, `recurrent_kernel` and `bias` that belong to `gate` ("i", "f", "c" or "o")."""
    if gate not in ("i", "f", "c", "o"):
        raise refuse("gate", 'one of "i", "f", "c", "o"', repr(gate))
    k = GATES.index(gate)
    return slice(k * units, (k + 1) * units)


def step(z, c_prev, sigma, g):
    """One LSTM step from the pre-activations z = x_t W + h_{t-1} U + b.

    Args:
        z: (batch, 4 * units), gates in the order i, f, c, o.
        c_prev: (batch, units), the cell state C_{t-1}.
        sigma: the recurrent activation σ, applied to i, f, o.
        g: the activation g, applied to c̃ and to C_t.

    Returns:
        (i, f, c_tilde, o, c, h), each (batch, units).
    """
    units = z.shape[-1] // 4
    z_i, z_f, z_c, z_o = (z[..., k * units : (k + 1) * units] for k in range(4))
    i = sigma(z_i)
    f = sigma(z_f)
    c_tilde = g(z_c)
    o = sigma(z_o)
    c = f * c_prev + i * c_tilde
    h = o * g(c)
    return i, f, c_tilde, o, c, h
