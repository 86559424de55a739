"""Trace: every quantity of every step of one LSTM run."""

import dataclasses

import numpy as np

from reflstm.equations import gate_slice

__all__ = ["Trace", "Preactivation"]


@dataclasses.dataclass(frozen=True, eq=False)
class Preactivation:
    """One gate's pre-activation, split as x_t W_g + h_{t-1} U_g + b_g; each (batch, timesteps, units)."""

    input: np.ndarray  # x_t W_g
    recurrent: np.ndarray  # h_{t-1} U_g
    bias: np.ndarray  # b_g, (units,); zeros when the layer has no bias
    total: np.ndarray  # x_t W_g + h_{t-1} U_g + b_g, the argument of σ (or g for c)


@dataclasses.dataclass(frozen=True, eq=False)
class Trace:
    """What an LSTM computed at every step, in processing order.

    Step t of the trace is the t-th step the layer processed: with ``go_backwards=True`` that is
    input step ``timesteps - 1 - t``, so ``h`` lines up with what Keras returns for
    ``return_sequences=True``. The equations are in `reflstm.equations`.

    Fields, each (batch, timesteps, units) unless stated:
        i, f, c_tilde, o: the gates and the candidate, as the cell computed them at step t.
        c, h: the cell state C_t and hidden state h_t carried out of step t.
        output: what Keras returns for this step with ``return_sequences=True``.
        z_x: (batch, timesteps, 4 * units), the input part x_t W of the pre-activations.
        z_h: (batch, timesteps, 4 * units), the recurrent part h_{t-1} U.
        bias: (4 * units,), b; zeros when the layer has no bias.
        h0, c0: (batch, units), the state the run started from.
        mask: (batch, timesteps) bool in processing order, or None when no mask was given.

    Masked steps (``mask[b, t]`` False): Keras still runs the cell there, so ``i, f, c_tilde, o``
    hold what the cell computed from the carried state, but Keras discards it: the state is
    carried through unchanged (``c[:, t] == c[:, t-1]``, ``h[:, t] == h[:, t-1]``) and the
    output repeats the previous step's output — zeros before the first unmasked step, even with a
    non-zero initial state — or is zeros with ``zero_output_for_mask=True``. So at a masked step
    C_t = f ⊙ C_{t-1} + i ⊙ c̃ does not hold, and ``output`` may differ from ``h``.
    """

    i: np.ndarray
    f: np.ndarray
    c_tilde: np.ndarray
    o: np.ndarray
    c: np.ndarray
    h: np.ndarray
    output: np.ndarray
    z_x: np.ndarray
    z_h: np.ndarray
    bias: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    mask: "np.ndarray | None"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    @property
    def units(self):
        return self.h.shape[-1]

    @property
    def z(self):
        """(batch, timesteps, 4 * units): the pre-activations x_t W + b + h_{t-1} U, as the step summed them."""
        return (self.z_x + self.bias) + self.z_h

    @property
    def h_prev(self):
        """(batch, timesteps, units): h_{t-1}, the hidden state each step started from."""
        return np.concatenate([self.h0[:, None], self.h[:, :-1]], axis=1)

    @property
    def c_prev(self):
        """(batch, timesteps, units): C_{t-1}, the cell state each step started from."""
        return np.concatenate([self.c0[:, None], self.c[:, :-1]], axis=1)

    def preactivation(self, gate):
        """Gate `gate` ("i", "f", "c" or "o") split into its input, recurrent and bias parts."""
        cols = gate_slice(gate, self.units)
        z_x, z_h, b = self.z_x[..., cols], self.z_h[..., cols], self.bias[cols]
        return Preactivation(input=z_x, recurrent=z_h, bias=b, total=(z_x + b) + z_h)
