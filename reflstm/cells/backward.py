"""The backward pass (backpropagation through time) of every recurrent layer: one loop over time,
and each cell's vector-Jacobian product of one step.

The forward equations and their names are those of `reflstm.cells.equations`. With a loss L, write
dX for ∂L/∂X, and a_t for the pre-activations, the arguments of σ and g (a_i … a_o for the LSTM,
a_z, a_r, a_h for the GRU, a for the SimpleRNN).

The loop, for every cell
------------------------
Going back from the last processed step, with dh_t (and, for the LSTM, dC_t) the gradients
reaching the states carried out of step t, the step's output adds its gradient to dh_t; the
cell's step then turns the gradients of its fresh states into

    da_t          the gradient of its input part x_t W + b, (batch, k * units), gates in Keras's order
    dh_{t-1} …    the gradients reaching the states the step started from

and, after the loop, dW = Σ_t x_tᵀ da_t, dx_t = da_t Wᵀ and the input bias's Σ_{t, batch} da_t;
the cell gives dU (and the GRU's recurrent bias b').

A masked step (m = 0) passes the states' gradients straight to the step before, and its output —
which repeats the previous output — passes its gradient on to that output (Keras's rule,
`reflstm.cells.recurrent`); with zero_output_for_mask it passes nothing. The gradient of an
output h_t reaches the state through the step's fresh h, which is the output at unmasked steps.
On JAX's rolled loop the outputs before the first unmasked step repeat h0, so what they carry
back reaches dh0; unrolled TensorFlow zeroes outputs after the loop (`Recurrent._mask_rule`).

LSTM
----
    dC_t  += dh_t ⊙ o_t ⊙ g'(C_t)
    do_t   = dh_t ⊙ g(C_t)          di_t = dC_t ⊙ c̃_t
    df_t   = dC_t ⊙ C_{t-1}         dc̃_t = dC_t ⊙ i_t
    da_t   = [di_t σ'(a_i), df_t σ'(a_f), dc̃_t g'(a_c), do_t σ'(a_o)]    (vector-Jacobian products)
    dU    += h_{t-1}ᵀ da_t          db += Σ_batch da_t
    dh_{t-1} = da_t Uᵀ              dC_{t-1} = dC_t ⊙ f_t

GRU
---
    dz_t   = dh_t ⊙ (h_{t-1} − h̃_t)      dh̃_t = dh_t ⊙ (1 − z_t)
    da_z   = σ'(a_z) dz_t                  da_h = g'(a_h) dh̃_t

With ``reset_after=True``, q = h_{t-1} U + b' is the recurrent product the gates add (the reset gate
scales q_h = h_{t-1} U_h + b'_h):

    dr_t   = da_h ⊙ q_h                    da_r = σ'(a_r) dr_t
    dq_t   = [da_z, da_r, da_h ⊙ r_t]
    dU    += h_{t-1}ᵀ dq_t                 dh_{t-1} = dh_t ⊙ z_t + dq_t Uᵀ
    bias (2, 3 * units): [Σ da_t, Σ dq_t]  (row 0 the input bias b, row 1 the recurrent b')

With ``reset_after=False`` the reset gate acts on h_{t-1} before U_h:

    d(r_t ⊙ h_{t-1}) = da_h U_hᵀ           dr_t = d(r_t ⊙ h_{t-1}) ⊙ h_{t-1}      da_r = σ'(a_r) dr_t
    [dU_z | dU_r] += h_{t-1}ᵀ [da_z, da_r]        dU_h += (r_t ⊙ h_{t-1})ᵀ da_h
    dh_{t-1} = dh_t ⊙ z_t + [da_z, da_r] [U_z | U_r]ᵀ + d(r_t ⊙ h_{t-1}) ⊙ r_t
    bias (3 * units,): Σ da_t

and in both modes da_t = [da_z, da_r, da_h].

SimpleRNN
---------
    da_t   = g'(a_t) dh_t       dU += h_{t-1}ᵀ da_t       db += Σ_batch da_t       dh_{t-1} = da_t Uᵀ
"""

import dataclasses

import numpy as np

from reflstm.cells import activations
from reflstm.errors import pick, refuse

__all__ = ["Gradients", "backward"]


@dataclasses.dataclass(frozen=True, eq=False)
class Gradients:
    """Gradients of a loss with respect to each input of a recurrent layer, each shaped like its input."""

    x: np.ndarray  # (batch, timesteps, input_dim), in input order
    kernel: np.ndarray  # (input_dim, k * units)
    recurrent_kernel: np.ndarray  # (units, k * units)
    bias: "np.ndarray | None"  # shaped like the layer's bias; None without a bias
    initial_state: list  # one per state in layer.STATES order: [dh0, dc0] (LSTM), [dh0] (GRU, SimpleRNN)


def backward(layer, x, d_output, mask=None, initial_state=None):
    """Gradients of sum(output * d_output) for `layer` run on x (see Recurrent.backward)."""
    cell_step = pick(_STEPS, type(layer).__name__, "a backward pass for")
    trace = layer.trace(x, mask=mask, initial_state=initial_state)
    batch, timesteps, units = trace.h.shape
    d_sequence, d_states = _split_d_output(layer, d_output, batch, timesteps, units)
    step = cell_step(layer, trace)

    starts_at_h0, zero_masked, zero_after = layer._mask_rule()
    if zero_after and trace.mask is not None:
        # Outputs zeroed after the loop pass nothing back (Recurrent._mask_rule): the sequence's
        # by the mask in input order, the last output's by the last processed step's.
        after = trace.mask[:, ::-1] if layer.go_backwards and layer.return_sequences else trace.mask
        d_sequence = d_sequence * after[..., None]
    d_sequence = d_sequence.transpose(1, 0, 2)  # (timesteps, batch, units): time-major, as the steps
    keep = None if trace.mask is None else trace.mask.T[..., None]  # (timesteps, batch, 1)

    width = layer.kernel.shape[1]
    da = np.empty((timesteps, batch, width), layer.dtype)  # d(x_t W + b) of every step
    d_carried_output = np.zeros((batch, units), layer.dtype)  # from the next step's repeat
    for t in range(timesteps - 1, -1, -1):
        if keep is None:
            da[t], d_states = step(t, [d_sequence[t] + d_states[0], *d_states[1:]])
            continue
        m = keep[t]
        d_out = d_sequence[t] + d_carried_output
        d_fresh = [np.where(m, d_out + d_states[0], 0), *(np.where(m, d, 0) for d in d_states[1:])]
        d_carried_output = 0 * d_out if zero_masked else np.where(m, 0, d_out)
        da[t], d_through = step(t, d_fresh)
        d_states = [np.where(m, 0, d) + through for d, through in zip(d_states, d_through)]
    if starts_at_h0:
        d_states[0] = d_states[0] + d_carried_output  # the outputs that repeated h0

    x_processed = np.asarray(x, layer.dtype).transpose(1, 0, 2)  # (timesteps, batch, input_dim)
    x_processed = x_processed[::-1] if layer.go_backwards else x_processed
    flat_da = da.reshape(-1, width)
    dx = (flat_da @ layer.kernel.T).reshape(timesteps, batch, -1).transpose(1, 0, 2)
    d_recurrent_kernel, d_bias = step.weights(da)
    return Gradients(
        x=dx[:, ::-1] if layer.go_backwards else dx,
        kernel=x_processed.reshape(-1, layer.input_dim).T @ flat_da,
        recurrent_kernel=d_recurrent_kernel,
        bias=None if layer.bias is None else d_bias,
        initial_state=d_states,
    )


def _time_major(array):
    """(timesteps, batch, …) from a trace's (batch, timesteps, …)."""
    return array.swapaxes(0, 1)


class _Step:
    """One cell's vector-Jacobian product of a step, on the quantities its trace recorded.

    Calling it with step t and the gradients of the step's fresh states returns (da_t, the
    gradients reaching the states the step started from); `weights(da)` returns (dU, d bias) from
    every step's da, (timesteps, batch, k * units).
    """

    def __init__(self, layer, trace):
        self.units = layer.units
        self.h_prev = _time_major(trace.h_prev)  # (timesteps, batch, units)
        self.U_T = layer.recurrent_kernel.T

    def _vjp(self, layer, argument):
        return activations.vjp(getattr(layer, argument), layer.keras_version, argument, layer.dtype)

    def _h_prev_times(self, da):
        """Σ_t h_{t-1}ᵀ da_t, (units, width)."""
        return self.h_prev.reshape(-1, self.units).T @ da.reshape(-1, da.shape[-1])


class _LSTMStep(_Step):
    def __init__(self, lstm, trace):
        super().__init__(lstm, trace)
        self.sigma_vjp = self._vjp(lstm, "recurrent_activation")
        self.g_vjp = self._vjp(lstm, "activation")
        g = activations.get(lstm.activation, lstm.keras_version, "activation", lstm.dtype)
        self.i, self.f, self.c_tilde, self.o = (_time_major(a) for a in (trace.i, trace.f, trace.c_tilde, trace.o))
        self.c_prev = _time_major(trace.c_prev)
        # The cell's fresh C at every step (at masked steps the trace holds the carried state).
        self.c = self.f * self.c_prev + self.i * self.c_tilde
        self.g_c = g(self.c)
        self.a_i, self.a_f, self.a_c, self.a_o = np.split(_time_major(trace.z), 4, axis=-1)

    def __call__(self, t, d_states):
        dh, dc = d_states
        dc = dc + self.g_vjp(self.c[t], self.g_c[t], dh * self.o[t])
        d_i = dc * self.c_tilde[t]
        d_f = dc * self.c_prev[t]
        d_c_tilde = dc * self.i[t]
        d_o = dh * self.g_c[t]
        da = np.concatenate([
            self.sigma_vjp(self.a_i[t], self.i[t], d_i),
            self.sigma_vjp(self.a_f[t], self.f[t], d_f),
            self.g_vjp(self.a_c[t], self.c_tilde[t], d_c_tilde),
            self.sigma_vjp(self.a_o[t], self.o[t], d_o),
        ], axis=-1)  # (batch, 4 * units)
        return da, [da @ self.U_T, dc * self.f[t]]

    def weights(self, da):
        return self._h_prev_times(da), da.sum(axis=(0, 1))


class _GRUStep(_Step):
    def __init__(self, gru, trace):
        super().__init__(gru, trace)
        u = self.units
        self.sigma_vjp = self._vjp(gru, "recurrent_activation")
        self.g_vjp = self._vjp(gru, "activation")
        self.reset_after = gru.reset_after
        self.z, self.r, self.h_tilde = (_time_major(a) for a in (trace.z, trace.r, trace.h_tilde))
        self.a_z, self.a_r, self.a_h = (_time_major(trace.preactivation(gate).total) for gate in "zrh")
        if self.reset_after:
            # q_h = h_{t-1} U_h + b'_h, what the reset gate scales
            self.q_h = _time_major(trace.recurrent_part[..., 2 * u:] + trace.recurrent_bias[2 * u:])
        else:
            U = gru.recurrent_kernel
            self.U_zr_T, self.U_h_T = U[:, : 2 * u].T, U[:, 2 * u:].T

    def __call__(self, t, d_states):
        (dh,) = d_states
        z, r, h_tilde, h_prev = self.z[t], self.r[t], self.h_tilde[t], self.h_prev[t]
        da_z = self.sigma_vjp(self.a_z[t], z, dh * (h_prev - h_tilde))
        da_h = self.g_vjp(self.a_h[t], h_tilde, dh * (1 - z))
        if self.reset_after:
            da_r = self.sigma_vjp(self.a_r[t], r, da_h * self.q_h[t])
            dq = np.concatenate([da_z, da_r, da_h * r], axis=-1)  # (batch, 3 * units)
            dh_prev = dh * z + dq @ self.U_T
        else:
            d_reset_h = da_h @ self.U_h_T  # d(r_t ⊙ h_{t-1}), (batch, units)
            da_r = self.sigma_vjp(self.a_r[t], r, d_reset_h * h_prev)
            dh_prev = dh * z + np.concatenate([da_z, da_r], axis=-1) @ self.U_zr_T + d_reset_h * r
        return np.concatenate([da_z, da_r, da_h], axis=-1), [dh_prev]

    def weights(self, da):
        u = self.units
        if self.reset_after:
            dq = da.copy()  # (timesteps, batch, 3 * units)
            dq[..., 2 * u:] *= self.r
            return self._h_prev_times(dq), np.stack([da.sum(axis=(0, 1)), dq.sum(axis=(0, 1))])
        reset_h = (self.r * self.h_prev).reshape(-1, u)  # r_t ⊙ h_{t-1}, every step
        d_recurrent_kernel = np.concatenate(
            [self._h_prev_times(da[..., : 2 * u]), reset_h.T @ da[..., 2 * u:].reshape(-1, u)], axis=1)
        return d_recurrent_kernel, da.sum(axis=(0, 1))


class _SimpleRNNStep(_Step):
    def __init__(self, rnn, trace):
        super().__init__(rnn, trace)
        self.g_vjp = self._vjp(rnn, "activation")
        g = activations.get(rnn.activation, rnn.keras_version, "activation", rnn.dtype)
        self.a = _time_major(trace.preactivation().total)
        # The cell's fresh h (at masked steps the trace holds the carried state).
        self.h = _time_major(trace.h) if trace.mask is None else g(self.a)

    def __call__(self, t, d_states):
        (dh,) = d_states
        da = self.g_vjp(self.a[t], self.h[t], dh)  # (batch, units)
        return da, [da @ self.U_T]

    def weights(self, da):
        return self._h_prev_times(da), da.sum(axis=(0, 1))


_STEPS = {"LSTM": _LSTMStep, "GRU": _GRUStep, "SimpleRNN": _SimpleRNNStep}


def _split_d_output(layer, d_output, batch, timesteps, units):
    """(d of every step's output (batch, timesteps, units), [d of each final state]), from
    d_output's structure: one array, or with return_state [d_output, d_h(, d_c)]."""
    kind = type(layer).__name__
    names = ["d_output"] + [f"d_{state}" for state in layer.STATES]
    form = f"[{', '.join(names)}]" if layer.return_state else "one array"
    if layer.return_state and not isinstance(d_output, (list, tuple)):
        raise refuse("d_output", f"{form} shaped like the {kind}'s output", type(d_output).__name__)
    parts = list(d_output) if layer.return_state else [d_output]
    if len(parts) != (len(names) if layer.return_state else 1):
        raise refuse("d_output", f"{form} shaped like the {kind}'s output", f"{len(parts)} parts")
    out_shape = (batch, timesteps, units) if layer.return_sequences else (batch, units)
    arrays = []
    for name, part, shape in zip(names, parts, [out_shape] + [(batch, units)] * len(layer.STATES)):
        part = np.asarray(part, layer.dtype)
        if part.shape != shape:
            raise refuse(name, f"shape {shape}", part)
        arrays.append(part)
    d_sequence = arrays[0] if layer.return_sequences else np.zeros((batch, timesteps, units), layer.dtype)
    if not layer.return_sequences:
        d_sequence[:, -1] = arrays[0]
    d_states = arrays[1:] if layer.return_state else [np.zeros((batch, units), layer.dtype)
                                                      for _ in layer.STATES]
    return d_sequence, d_states
