"""The backward pass (backpropagation through time) of the Keras LSTM, written out step by step.

With the forward step of `reflstm.cells.equations` and a loss L, write dX for ∂L/∂X. Going back from
the last processed step, with dh and dC the gradients reaching the state h_t and C_t:

    dC_t  += dh_t ⊙ o_t ⊙ g'(C_t)
    do_t   = dh_t ⊙ g(C_t)          di_t = dC_t ⊙ c̃_t
    df_t   = dC_t ⊙ C_{t-1}         dc̃_t = dC_t ⊙ i_t
    dz_t   = [di_t σ'(z_i), df_t σ'(z_f), dc̃_t g'(z_c), do_t σ'(z_o)]    (vector-Jacobian products)
    dW    += x_tᵀ dz_t      dU += h_{t-1}ᵀ dz_t      db += Σ_batch dz_t
    dx_t   = dz_t Wᵀ        dh_{t-1} = dz_t Uᵀ       dC_{t-1} = dC_t ⊙ f_t

A masked step (m = 0) passes dh and dC straight to the step before, and its output — which
repeats the previous output — passes its gradient on to that output (Keras's rule,
`reflstm.cells.lstm`); with zero_output_for_mask it passes nothing. The gradient of an output
h_t reaches the state through the step's fresh h, which is the output at unmasked steps. On
JAX's rolled loop the outputs before the first unmasked step repeat h0, so what they carry back
reaches dh0; unrolled TensorFlow zeroes outputs after the loop (`Recurrent._mask_rule`).
"""

import dataclasses

import numpy as np

from reflstm.cells import activations
from reflstm.errors import pick, refuse

__all__ = ["Gradients", "backward"]


@dataclasses.dataclass(frozen=True, eq=False)
class Gradients:
    """Gradients of a loss with respect to each input of an LSTM, each shaped like its input."""

    x: np.ndarray  # (batch, timesteps, input_dim), in input order
    kernel: np.ndarray  # (input_dim, 4 * units)
    recurrent_kernel: np.ndarray  # (units, 4 * units)
    bias: "np.ndarray | None"  # (4 * units,), None without a bias
    initial_state: list  # [dh0, dc0], each (batch, units)


def backward(lstm, x, d_output, mask=None, initial_state=None):
    """Gradients of sum(output * d_output) for `lstm` run on x (see Recurrent.backward)."""
    pick({"LSTM": None}, type(lstm).__name__, "a backward pass for")
    trace = lstm.trace(x, mask=mask, initial_state=initial_state)
    batch, timesteps, units = trace.h.shape
    d_sequence, d_h_final, d_c_final = _split_d_output(lstm, d_output, batch, timesteps, units)

    sigma_vjp = activations.vjp(lstm.recurrent_activation, lstm.keras_version,
                                "recurrent_activation", lstm.dtype)
    g_vjp = activations.vjp(lstm.activation, lstm.keras_version, "activation", lstm.dtype)
    g = activations.get(lstm.activation, lstm.keras_version, "activation", lstm.dtype)

    z = trace.z  # (batch, timesteps, 4 * units)
    c_prev = trace.c_prev
    # The cell's fresh C and h at every step (at masked steps the trace holds the carried state).
    c_new = trace.f * c_prev + trace.i * trace.c_tilde
    g_c = g(c_new)
    keep = np.ones((batch, timesteps, 1), bool) if trace.mask is None else trace.mask[..., None]
    starts_at_h0, zero_masked, zero_after = lstm._mask_rule()
    if zero_after and trace.mask is not None:
        # Outputs zeroed after the loop pass nothing back (Recurrent._mask_rule): the sequence's
        # by the mask in input order, the last output's by the last processed step's.
        after = trace.mask[:, ::-1] if lstm.go_backwards and lstm.return_sequences else trace.mask
        d_sequence = d_sequence * after[..., None]

    dz = np.empty((batch, timesteps, 4 * units), lstm.dtype)
    dh, dc = d_h_final, d_c_final  # gradients reaching the state after the last step
    d_carried_output = np.zeros((batch, units), lstm.dtype)  # from the next step's repeat
    U_T = lstm.recurrent_kernel.T
    z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)
    for t in range(timesteps - 1, -1, -1):
        m = keep[:, t]
        d_out = d_sequence[:, t] + d_carried_output
        dh_new = np.where(m, d_out + dh, 0)
        d_carried_output = np.where(m, 0, d_out) if not zero_masked else 0 * d_out
        dc_new = np.where(m, dc, 0) + g_vjp(c_new[:, t], g_c[:, t], dh_new * trace.o[:, t])
        d_i = dc_new * trace.c_tilde[:, t]
        d_f = dc_new * c_prev[:, t]
        d_c_tilde = dc_new * trace.i[:, t]
        d_o = dh_new * g_c[:, t]
        dz_t = np.concatenate([
            sigma_vjp(z_i[:, t], trace.i[:, t], d_i),
            sigma_vjp(z_f[:, t], trace.f[:, t], d_f),
            g_vjp(z_c[:, t], trace.c_tilde[:, t], d_c_tilde),
            sigma_vjp(z_o[:, t], trace.o[:, t], d_o),
        ], axis=-1)
        dz[:, t] = dz_t
        dh = np.where(m, 0, dh) + dz_t @ U_T
        dc = np.where(m, 0, dc) + dc_new * trace.f[:, t]
    if starts_at_h0:
        dh = dh + d_carried_output  # the outputs that repeated h0

    x_processed = np.asarray(x, lstm.dtype)
    x_processed = x_processed[:, ::-1] if lstm.go_backwards else x_processed
    flat_dz = dz.reshape(-1, 4 * units)
    dx = (flat_dz @ lstm.kernel.T).reshape(batch, timesteps, -1)
    return Gradients(
        x=dx[:, ::-1] if lstm.go_backwards else dx,
        kernel=x_processed.reshape(-1, x_processed.shape[-1]).T @ flat_dz,
        recurrent_kernel=trace.h_prev.reshape(-1, units).T @ flat_dz,
        bias=None if lstm.bias is None else flat_dz.sum(axis=0),
        initial_state=[dh, dc],
    )


def _split_d_output(lstm, d_output, batch, timesteps, units):
    """(d of every step's output, d of the final h, d of the final C), from d_output's structure."""
    if lstm.return_state and not isinstance(d_output, (list, tuple)):
        raise refuse("d_output", "[d_output, d_h, d_c] shaped like the LSTM's output",
                     type(d_output).__name__)
    parts = list(d_output) if lstm.return_state else [d_output]
    expected = 3 if lstm.return_state else 1
    if len(parts) != expected:
        raise refuse("d_output", f"{'[d_output, d_h, d_c]' if lstm.return_state else 'one array'} "
                     "shaped like the LSTM's output", f"{len(parts)} parts")
    out_shape = (batch, timesteps, units) if lstm.return_sequences else (batch, units)
    arrays = []
    for name, part, shape in zip(("d_output", "d_h", "d_c"), parts,
                                 (out_shape, (batch, units), (batch, units))):
        part = np.asarray(part, lstm.dtype)
        if part.shape != shape:
            raise refuse(name, f"shape {shape}", part)
        arrays.append(part)
    d_sequence = arrays[0] if lstm.return_sequences else np.zeros((batch, timesteps, units), lstm.dtype)
    if not lstm.return_sequences:
        d_sequence[:, -1] = arrays[0]
    zeros = np.zeros((batch, units), lstm.dtype)
    d_h = arrays[1] if lstm.return_state else zeros
    d_c = arrays[2] if lstm.return_state else zeros
    return d_sequence, d_h, d_c
