"""Traces: every quantity of every step of one run, named as each layer's equations name them.

`Trace` is the LSTM's, `GRUTrace` the GRU's, `SimpleRNNTrace` the SimpleRNN's. All are in
processing order (see `Trace`) and treat masked steps alike (see `Trace`).

A trace holds the quantities its run was asked to keep (``layer.trace(x, keep=...)``; by
default the gates, the states and the output) and nothing else. The pre-activation parts (an
LSTM's ``z_x``, ``z_h``, a GRU's or SimpleRNN's ``input_part``, ``recurrent_part``) are kept only
when named; otherwise a trace that holds ``h`` recomputes them when first asked, with the very
products the run made (same operands, shapes, order and blocks of batch rows; see
`reflstm.cells.recurrent._Replay`), so they are bit for bit what the step summed. Asking for a
quantity a trace does not hold raises a `reflstm.errors.ReflstmError` that says how to keep it.
"""

import dataclasses

import numpy as np

from reflstm.cells.equations import GRU_GATES, gate_slice
from reflstm.errors import ReflstmError

__all__ = ["Trace", "Preactivation", "GRUTrace", "GRUPreactivation", "SimpleRNNTrace", "notebook_html"]


def _freeze(trace):
    for field in dataclasses.fields(trace):
        value = getattr(trace, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    for value in trace.held.values():
        value.flags.writeable = False


def notebook_html(trace):
    """A trace's notebook view (`_repr_html_`): `reflstm.report`'s explorer of sample 0; the
    explorer is imported only when a trace is displayed, and imports no framework."""
    from reflstm.explorer.document import trace_html

    return trace_html(trace)


class Quantity:
    """One per-step quantity of a trace, read from what the trace holds.

    A pre-activation part the trace does not hold is recomputed by its replay (once); any
    other quantity it does not hold is refused, naming the `keep` that would have kept it.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, trace, owner=None):
        if trace is None:
            return self
        if self.name in trace.held:
            return trace.held[self.name]
        if trace.replay is not None and self.name in trace.replay.parts:
            return trace.replay.part(self.name)
        raise _not_kept(trace, self.name)


def _not_kept(trace, name):
    kept = ", ".join(repr(k) for k in trace.kept) or "nothing"
    hint = f"trace(x, keep=(..., {name!r})), or --keep {name} on the command line"
    if name in type(trace).PREACTIVATIONS:
        hint += "; or keep h (and r, for a GRU with reset_after=False) to have it recomputed"
    return ReflstmError(f"trace.{name}: expected a quantity this trace keeps ({kept}); "
                        f"received a request for {name!r}, which it was not asked to keep: trace "
                        f"with {hint}")


@dataclasses.dataclass(frozen=True, eq=False)
class _Held:
    """What every trace has: `held`, the arrays it keeps by name, and `replay`, which recomputes
    the pre-activation parts it does not keep (None when it cannot: it does not hold h)."""

    held: dict
    replay: object

    PREACTIVATIONS = ()

    @property
    def kept(self):
        """The names of the quantities this trace holds (what ``keep`` asked for), in that order."""
        return tuple(self.held)

    def __post_init__(self):
        _freeze(self)

    @property
    def units(self):
        return self.h0.shape[-1]

    @property
    def h_prev(self):
        """(batch, timesteps, units): h_{t-1}, the hidden state each step started from."""
        return np.concatenate([self.h0[:, None], self.h[:, :-1]], axis=1)

    _repr_html_ = notebook_html


@dataclasses.dataclass(frozen=True, eq=False)
class Preactivation:
    """One LSTM gate's (or the SimpleRNN's) pre-activation, x_t W_g + h_{t-1} U_g + b_g, in parts.

    Each part is (batch, timesteps, units), except the bias.
    """

    input: np.ndarray  # x_t W_g
    recurrent: np.ndarray  # h_{t-1} U_g
    bias: np.ndarray  # b_g, (units,); zeros when the layer has no bias
    total: np.ndarray  # x_t W_g + h_{t-1} U_g + b_g, the argument of σ (or g for c)


@dataclasses.dataclass(frozen=True, eq=False)
class Trace(_Held):
    """What an LSTM computed at every step, in processing order.

    Step t of the trace is the t-th step the layer processed: with ``go_backwards=True`` that is
    input step ``timesteps - 1 - t``, so ``h`` lines up with what Keras returns for
    ``return_sequences=True``. The equations are in `reflstm.cells.equations`.

    Quantities (each held when ``keep`` names it; see the module docstring), each
    (batch, timesteps, units) unless stated:
        i, f, c_tilde, o: the gates and the candidate, as the cell computed them at step t.
        c, h: the cell state C_t and hidden state h_t carried out of step t.
        output: what Keras returns for this step with ``return_sequences=True``.
        z_x: (batch, timesteps, 4 * units), the input part x_t W of the pre-activations.
        z_h: (batch, timesteps, 4 * units), the recurrent part h_{t-1} U.
    Fields:
        bias: (4 * units,), b; zeros when the layer has no bias.
        h0, c0: (batch, units), the state the run started from.
        mask: (batch, timesteps) bool in processing order, or None when no mask was given.

    Masked steps (``mask[b, t]`` False): Keras still runs the cell there, so ``i, f, c_tilde, o``
    hold what the cell computed from the carried state, but Keras discards it: the state is
    carried through unchanged (``c[:, t] == c[:, t-1]``, ``h[:, t] == h[:, t-1]``) and the
    output repeats the previous step's output — zeros before the first unmasked step, even with a
    non-zero initial state (h0 there with ``keras_backend="jax"``, rolled) — or is zeros with
    ``zero_output_for_mask=True``. So at a masked step
    C_t = f ⊙ C_{t-1} + i ⊙ c̃ does not hold, and ``output`` may differ from ``h``.
    """

    i, f, c_tilde, o, c, h, output, z_x, z_h = (Quantity() for _ in range(9))
    PREACTIVATIONS = ("z_x", "z_h")
    bias: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    mask: "np.ndarray | None"

    @property
    def z(self):
        """(batch, timesteps, 4 * units): the pre-activations x_t W + b + h_{t-1} U, as the step summed them."""
        return (self.z_x + self.bias) + self.z_h

    @property
    def c_prev(self):
        """(batch, timesteps, units): C_{t-1}, the cell state each step started from."""
        return np.concatenate([self.c0[:, None], self.c[:, :-1]], axis=1)

    def preactivation(self, gate):
        """Gate `gate` ("i", "f", "c" or "o") split into its input, recurrent and bias parts."""
        cols = gate_slice(gate, self.units)
        z_x, z_h, b = self.z_x[..., cols], self.z_h[..., cols], self.bias[cols]
        return Preactivation(input=z_x, recurrent=z_h, bias=b, total=(z_x + b) + z_h)


@dataclasses.dataclass(frozen=True, eq=False)
class GRUPreactivation:
    """One GRU gate's pre-activation, in parts; each (batch, timesteps, units) except the biases.

    For z and r, and for h̃ with ``reset_after=False``:
        total = (input + input_bias) + (recurrent + recurrent_bias)
    For h̃ with ``reset_after=True`` the reset gate scales the recurrent part and its bias:
        total = (input + input_bias) + reset * (recurrent + recurrent_bias)
    """

    input: np.ndarray  # x_t W_g
    input_bias: np.ndarray  # b_g, (units,); zeros without a bias
    recurrent: np.ndarray  # h_{t-1} U_g; for h̃ with reset_after=False, (r_t ⊙ h_{t-1}) U_h
    recurrent_bias: np.ndarray  # b'_g, (units,); zeros with reset_after=False or without a bias
    reset: "np.ndarray | None"  # r_t for h̃ with reset_after=True, else None
    total: np.ndarray  # the argument of σ (z, r) or of g (h̃)


@dataclasses.dataclass(frozen=True, eq=False)
class GRUTrace(_Held):
    """What a GRU computed at every step, in processing order (as `Trace`; equations in
    `reflstm.cells.equations`).

    Quantities (held when ``keep`` names them, as for `Trace`), each (batch, timesteps, units)
    unless stated:
        z, r: the update and reset gates at step t.
        h_tilde: the candidate h̃_t.
        h: the state h_t carried out of step t.
        output: what Keras returns for this step with ``return_sequences=True``.
        input_part: (batch, timesteps, 3 * units), x_t W, gates z, r, h.
        recurrent_part: (batch, timesteps, 3 * units), the recurrent products without bias:
            h_{t-1} U_z, h_{t-1} U_r, and for the candidate h_{t-1} U_h when ``reset_after=True``
            (the reset gate then multiplies that product plus b'_h) or (r_t ⊙ h_{t-1}) U_h
            when ``reset_after=False`` (the reset gate has already acted on h_{t-1}).
    Fields:
        input_bias: (3 * units,), b (row 0 of Keras's (2, 3 * units) bias with reset_after).
        recurrent_bias: (3 * units,), b' (row 1); zeros with reset_after=False.
        reset_after: where the reset gate acts.
        h0: (batch, units), the state the run started from.
        mask: (batch, timesteps) bool in processing order, or None.

    At a masked step z, r and h̃ hold what the cell computed and Keras discarded; h is carried
    through and output follows Keras's rule, as described in `Trace`.
    """

    z, r, h_tilde, h, output, input_part, recurrent_part = (Quantity() for _ in range(7))
    PREACTIVATIONS = ("input_part", "recurrent_part")
    input_bias: np.ndarray
    recurrent_bias: np.ndarray
    reset_after: bool
    h0: np.ndarray
    mask: "np.ndarray | None"

    def preactivation(self, gate):
        """Gate `gate` ("z", "r" or "h" for h̃) split into its parts (see `GRUPreactivation`)."""
        cols = gate_slice(gate, self.units, GRU_GATES)
        x_part, b = self.input_part[..., cols], self.input_bias[cols]
        h_part, b_rec = self.recurrent_part[..., cols], self.recurrent_bias[cols]
        reset = self.r if gate == "h" and self.reset_after else None
        if reset is None:
            total = (x_part + b) + (h_part + b_rec)
        else:
            total = (x_part + b) + reset * (h_part + b_rec)
        return GRUPreactivation(
            input=x_part, input_bias=b, recurrent=h_part, recurrent_bias=b_rec, reset=reset,
            total=total,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SimpleRNNTrace(_Held):
    """What a SimpleRNN computed at every step, in processing order (as `Trace`).

    Quantities (held when ``keep`` names them, as for `Trace`), each (batch, timesteps, units):
        h: the state h_t = g(x_t W + b + h_{t-1} U) carried out of step t (at a masked step, the
            state carried through, as described in `Trace`).
        output: what Keras returns for this step with ``return_sequences=True``.
        input_part: x_t W.
        recurrent_part: h_{t-1} U.
    Fields:
        bias: (units,), b; zeros without a bias.
        h0: (batch, units), the state the run started from.
        mask: (batch, timesteps) bool in processing order, or None.
    """

    h, output, input_part, recurrent_part = (Quantity() for _ in range(4))
    PREACTIVATIONS = ("input_part", "recurrent_part")
    bias: np.ndarray
    h0: np.ndarray
    mask: "np.ndarray | None"

    def preactivation(self):
        """The argument of g, x_t W + b + h_{t-1} U, in parts (a `Preactivation`)."""
        x_part, h_part = self.input_part, self.recurrent_part
        return Preactivation(
            input=x_part, recurrent=h_part, bias=self.bias, total=(x_part + self.bias) + h_part
        )
