"""The Keras layers of a model in NumPy, recurrent (LSTM, GRU, SimpleRNN) and those around
them, with Keras's mask rules.

Each layer is called as ``layer(inputs, masks)`` with lists of arrays and of masks (None or
(batch, timesteps) bool), and returns ``(outputs, masks)``, lists again: most layers have one of
each, an LSTM with ``return_state`` three (a GRU or SimpleRNN two). How masks travel differs
between Keras versions in places; each rule names the Keras source it follows.
"""

import dataclasses

import numpy as np

from reflstm.cells import activations
from reflstm.errors import refuse
from reflstm.cells.recurrent import Recurrent
from reflstm.cells.trace import notebook_html

__all__ = [
    "Dense", "Embedding", "Masking", "Identity", "Activation", "Flatten", "RepeatVector",
    "Concatenate", "Merge", "RecurrentLayer", "LSTMLayer", "Bidirectional", "BidirectionalTrace",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Dense:
    """y = activation(x W + b) on the last axis; also TimeDistributed(Dense). Passes the mask on."""

    name: str
    kernel: np.ndarray  # (input_dim, units)
    bias: "np.ndarray | None"  # (units,)
    activation: str
    keras_version: int

    def __call__(self, inputs, masks):
        # Dense and TimeDistributed support masking: the mask passes on.
        return self._activation()([self._preactivation(inputs[0])], masks)

    def vjp(self, inputs, masks, d_outputs):
        """Gradients of the inputs from those of the outputs."""
        (dz,) = self._activation().vjp([self._preactivation(inputs[0])], masks, d_outputs)
        return [dz @ self.kernel.T]

    def _preactivation(self, x):
        """z = x W + b, with x cast to the layer's dtype as Keras casts it."""
        if x.shape[-1] != self.kernel.shape[0]:
            raise refuse(f"input of layer {self.name!r}", f"last axis {self.kernel.shape[0]}", x)
        z = x.astype(self.kernel.dtype, copy=False) @ self.kernel  # (..., units)
        return z if self.bias is None else z + self.bias

    def _activation(self):
        return Activation(self.name, self.activation, self.keras_version)


@dataclasses.dataclass(frozen=True, eq=False)
class Embedding:
    """Rows of `embeddings` looked up by integer id; with mask_zero, id 0 is masked."""

    name: str
    embeddings: np.ndarray  # (input_dim, output_dim)
    mask_zero: bool

    def __call__(self, inputs, masks):
        (ids,) = inputs
        ids = np.asarray(ids)
        if ids.dtype.kind == "f":
            if not np.array_equal(ids, np.round(ids)):
                raise refuse(f"input of layer {self.name!r}", "integer token ids", ids)
            ids = ids.astype(np.int64)
        if ids.dtype.kind not in "iu":
            raise refuse(f"input of layer {self.name!r}", "integer token ids", ids)
        vocabulary = self.embeddings.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= vocabulary):
            raise refuse(
                f"input of layer {self.name!r}",
                f"token ids in 0..{vocabulary - 1}",
                f"ids from {ids.min()} to {ids.max()}",
            )
        mask = ids != 0 if self.mask_zero else None
        return [self.embeddings[ids]], [mask]

    def vjp(self, inputs, masks, d_outputs):
        return [None]  # integer token ids have no gradient


@dataclasses.dataclass(frozen=True, eq=False)
class Masking:
    """Masks the steps whose features all equal mask_value, and zeroes them (keras Masking.call)."""

    name: str
    mask_value: float

    def __call__(self, inputs, masks):
        (x,) = inputs
        keep = self._keep(x)
        return [np.where(keep[..., None], x, 0).astype(x.dtype, copy=False)], [keep]

    def vjp(self, inputs, masks, d_outputs):
        return [np.where(self._keep(inputs[0])[..., None], d_outputs[0], 0)]

    def _keep(self, x):
        return np.any(x != self.mask_value, axis=-1)  # (batch, timesteps)


@dataclasses.dataclass(frozen=True, eq=False)
class Identity:
    """Dropout, SpatialDropout1D and friends: the identity at inference. Passes the mask on."""

    name: str

    def __call__(self, inputs, masks):
        return list(inputs), list(masks)

    def vjp(self, inputs, masks, d_outputs):
        return list(d_outputs)


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """An activation by its Keras name (also the one at the end of Dense). Passes the mask on."""

    name: str
    activation: str
    keras_version: int

    def __call__(self, inputs, masks):
        (x,) = inputs
        return [self._lookup(activations.get, x)(x)], masks

    def vjp(self, inputs, masks, d_outputs):
        (x,) = inputs
        return [self._lookup(activations.vjp, x)(x, self._lookup(activations.get, x)(x), d_outputs[0])]

    def _lookup(self, table, x):
        return table(self.activation, self.keras_version, f"activation of {self.name!r}", x.dtype)


@dataclasses.dataclass(frozen=True, eq=False)
class Flatten:
    """(batch, ...) to (batch, -1). Flatten does not support masking: the mask ends here."""

    name: str

    def __call__(self, inputs, masks):
        (x,) = inputs
        return [x.reshape(x.shape[0], -1)], [None]

    def vjp(self, inputs, masks, d_outputs):
        return [d_outputs[0].reshape(inputs[0].shape)]


@dataclasses.dataclass(frozen=True, eq=False)
class RepeatVector:
    """(batch, features) to (batch, n, features); no mask."""

    name: str
    n: int

    def __call__(self, inputs, masks):
        (x,) = inputs
        if x.ndim != 2:
            raise refuse(f"input of layer {self.name!r}", "a 2-D array (batch, features)", x)
        return [np.repeat(x[:, None, :], self.n, axis=1)], [None]

    def vjp(self, inputs, masks, d_outputs):
        return [d_outputs[0].sum(axis=1)]


@dataclasses.dataclass(frozen=True, eq=False)
class Concatenate:
    """Joins inputs along `axis`; the output mask follows keras / tf_keras Concatenate.compute_mask."""

    name: str
    axis: int
    keras_version: int

    def __call__(self, inputs, masks):
        shapes = [x.shape for x in inputs]
        ndim = len(shapes[0])
        if not -ndim <= self.axis < ndim or any(
            len(s) != ndim or s[:self.axis % ndim] + s[self.axis % ndim + 1:]
            != shapes[0][:self.axis % ndim] + shapes[0][self.axis % ndim + 1:] for s in shapes
        ):
            raise refuse(f"inputs of layer {self.name!r}", f"shapes equal but along axis {self.axis}", shapes)
        output = np.concatenate(inputs, axis=self.axis)
        if all(m is None for m in masks):
            return [output], [None]
        # Each input's mask broadcast to the input's shape (all True where it had none),
        # concatenated like the inputs, then reduced over the last axis: Keras 3 with any(),
        # tf_keras with all().
        full = [
            np.ones(x.shape, bool) if m is None else np.broadcast_to(m[..., None], x.shape)
            for x, m in zip(inputs, masks)
        ]
        joined = np.concatenate(full, axis=self.axis)
        reduce = np.any if self.keras_version == 3 else np.all
        return [output], [reduce(joined, axis=-1)]

    def vjp(self, inputs, masks, d_outputs):
        sizes = np.cumsum([x.shape[self.axis] for x in inputs])[:-1]
        return np.split(d_outputs[0], sizes, axis=self.axis)


_MERGES = {
    "Add": lambda xs: _fold(np.add, xs),
    "Subtract": lambda xs: xs[0] - xs[1],
    "Multiply": lambda xs: _fold(np.multiply, xs),
    "Average": lambda xs: _fold(np.add, xs) / len(xs),
    "Maximum": lambda xs: _fold(np.maximum, xs),
    "Minimum": lambda xs: _fold(np.minimum, xs),
}


def _fold(op, xs):
    out = xs[0]
    for x in xs[1:]:
        out = op(out, x)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Merge:
    """Add, Subtract, Multiply, Average, Maximum, Minimum of same-shaped inputs.

    Output mask (keras/src/layers/merging/base_merge.py vs tf_keras base_merge.py): Keras 3 ORs
    the masks, and gives none if any input has none; tf_keras ANDs the masks it has.
    """

    name: str
    kind: str
    keras_version: int

    def __call__(self, inputs, masks):
        shapes = [x.shape for x in inputs]
        if self.kind == "Subtract" and len(inputs) != 2:
            raise refuse(f"inputs of layer {self.name!r}", "exactly 2 inputs", f"{len(inputs)}")
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise refuse(f"inputs of layer {self.name!r}", "shapes that broadcast together", shapes) from None
        output = _MERGES[self.kind](list(inputs))
        if all(m is None for m in masks):
            return [output], [None]
        if self.keras_version == 3:
            if any(m is None for m in masks):
                return [output], [None]
            return [output], [_fold(np.logical_or, masks)]
        return [output], [_fold(np.logical_and, [m for m in masks if m is not None])]

    def vjp(self, inputs, masks, d_outputs):
        dy, xs = d_outputs[0], list(inputs)
        if self.kind == "Add":
            return [dy] * len(xs)
        if self.kind == "Subtract":
            return [dy, -dy]
        if self.kind == "Average":
            return [dy / len(xs)] * len(xs)
        if self.kind == "Multiply":
            return [dy * _fold(np.multiply, xs[:k] + xs[k + 1 :]) if len(xs) > 1 else dy
                    for k in range(len(xs))]
        # Maximum / Minimum, folded pairwise as Keras folds them: TensorFlow's gradient of
        # maximum(a, b) goes to a where a >= b (minimum: a <= b), else to b.
        better = np.greater_equal if self.kind == "Maximum" else np.less_equal
        grads, running, d_running = [], xs[0], None
        picks = []
        for x in xs[1:]:
            picks.append(better(running, x))
            running = np.where(picks[-1], running, x)
        d_running = dy
        for k in range(len(xs) - 1, 0, -1):
            grads.append(np.where(picks[k - 1], 0, d_running))
            d_running = np.where(picks[k - 1], d_running, 0)
        grads.append(d_running)
        return grads[::-1]


class _CarriesStates:
    """What a model layer holding reflstm recurrent layers (`cells`) offers about their states."""

    @property
    def stateful(self):
        return self.cells[0].stateful

    @property
    def states(self):
        """The carried states of a stateful layer, each (batch, units), as Keras's
        ``layer.states``: [h, c] for an LSTM, [h] otherwise; a Bidirectional's forward
        direction's, then its backward one's. None when not stateful."""
        if not self.stateful or any(cell.states is None for cell in self.cells):
            return None
        return [s for cell in self.cells for s in cell.states]

    def reset_state(self):
        """Set the carried states to zeros (shapes kept), as Keras's ``layer.reset_state()``."""
        for cell in self.cells:
            cell.reset_state()

    reset_states = reset_state  # tf_keras's name


@dataclasses.dataclass(frozen=True, eq=False)
class RecurrentLayer(_CarriesStates):
    """A reflstm.LSTM, GRU or SimpleRNN in a model (also RNN around their cells): extra inputs
    after the first are its initial states ([h0, c0] for the LSTM, [h0] for the others).

    `cell` is the reflstm layer; `lstm` is the same object, the name older code reads.
    """

    name: str
    cell: Recurrent
    keras_class: str = ""  # as the config names it, e.g. "RNN(GRUCell)"; "" for the cell's own class

    @property
    def lstm(self):
        return self.cell

    @property
    def kind(self):
        """The Keras class the layer stands for: "LSTM", "GRU" or "SimpleRNN"."""
        return type(self.cell).__name__

    @property
    def cells(self):
        """The reflstm recurrent layers inside: (cell,) here, (forward, backward) in a Bidirectional."""
        return (self.cell,)

    def __call__(self, inputs, masks, traces=None, use_mask=True, keep=None):
        """(outputs, masks); with use_mask=False the steps run unmasked but the mask passes on.

        With `traces` (a dict), also leave the layer's trace there, holding the names of `keep`
        that the layer has (None: its DEFAULT_KEEP)."""
        x, *state = inputs
        state = state or None
        mask = masks[0] if use_mask else None
        if traces is not None:
            result, traces[self.name] = self.cell.traced_call(x, mask, state, keep_for(self.cell, keep))
            outputs = _as_list(result)
        else:
            outputs = _as_list(self.cell(x, mask=mask, initial_state=state))
        output_mask = masks[0] if self.cell.return_sequences else None
        return outputs, [output_mask] + [None] * (len(outputs) - 1)

    def outputs_from_trace(self, trace):
        """What the layer outputs (a list), read off its trace."""
        return _as_list(_outputs_from_trace(self.cell, trace))

    def vjp(self, inputs, masks, d_outputs):
        """[dx, (dh0, dc0)] from the gradients of [output, (h, c)] (None where none came); one
        state, h, for a GRU or SimpleRNN."""
        x, *state = inputs
        cell = self.cell
        batch, timesteps = x.shape[:2]
        shapes = [(batch, timesteps, cell.units) if cell.return_sequences else (batch, cell.units)]
        shapes += [(batch, cell.units)] * len(cell.STATES) if cell.return_state else []
        d = [np.zeros(shape, cell.dtype) if g is None else g for shape, g in zip(shapes, d_outputs)]
        g = cell.backward(x, d if cell.return_state else d[0], mask=masks[0], initial_state=state or None)
        return [g.x] + (list(g.initial_state) if state else [])


LSTMLayer = RecurrentLayer  # the name before the GRU and SimpleRNN joined


def _as_list(value):
    """A layer's or LSTM's result as a list of arrays (one array becomes a list of one)."""
    return [np.asarray(v) for v in value] if isinstance(value, (list, tuple)) else [np.asarray(value)]


def keep_for(cell, keep):
    """The names of a model-wide `keep` that recurrent layer `cell` has (None stays None)."""
    return None if keep is None else tuple(name for name in keep if name in cell.QUANTITIES)


def _outputs_from_trace(lstm, trace):
    """What calling `lstm` (any reflstm recurrent layer) returns, read off its trace."""
    output = trace.output if lstm.return_sequences else trace.output[:, -1]
    if not lstm.return_state:
        return output
    return [output] + [getattr(trace, state)[:, -1] for state in lstm.STATES]


@dataclasses.dataclass(frozen=True, eq=False)
class BidirectionalTrace:
    """The traces of a Bidirectional layer's two layers; `backward` is in its processing order."""

    forward: object
    backward: object

    _repr_html_ = notebook_html  # both directions side by side


@dataclasses.dataclass(frozen=True, eq=False)
class Bidirectional(_CarriesStates):
    """Bidirectional(LSTM), (GRU) or (SimpleRNN): keras/src/layers/rnn/bidirectional.py.

    Both layers see the same input and mask (Keras forces zero_output_for_mask to
    return_sequences on both); the backward sequence is flipped back to input order, then merged.
    With return_state the states follow: the forward layer's (h, c for an LSTM; h otherwise),
    then the backward layer's.
    """

    name: str
    forward: Recurrent
    backward: Recurrent
    merge_mode: "str | None"

    def __post_init__(self):
        if self.forward.stateful != self.backward.stateful:
            # keras bidirectional.py checks that both layers agree on stateful.
            raise refuse(f"layer {self.name!r}", "forward and backward layers that are both stateful "
                         "or both not", f"stateful={self.forward.stateful} forward, "
                         f"stateful={self.backward.stateful} backward")

    @property
    def kind(self):
        return "Bidirectional"

    @property
    def cells(self):
        return (self.forward, self.backward)

    def __call__(self, inputs, masks, traces=None, use_mask=True, keep=None):
        """(outputs, masks); with use_mask=False the steps run unmasked but the mask passes on.
        With `traces`, also its trace, as `RecurrentLayer.__call__` leaves one."""
        x, *state = inputs
        forward_state, backward_state = _split_states(state)
        step_mask = masks[0] if use_mask else None
        if traces is not None:
            forward, forward_trace = self.forward.traced_call(
                x, step_mask, forward_state, keep_for(self.forward, keep))
            backward, backward_trace = self.backward.traced_call(
                x, step_mask, backward_state, keep_for(self.backward, keep))
            traces[self.name] = BidirectionalTrace(forward=forward_trace, backward=backward_trace)
            outputs = self._merge(forward, backward)
        else:
            outputs = self._merge(
                self.forward(x, mask=step_mask, initial_state=forward_state),
                self.backward(x, mask=step_mask, initial_state=backward_state),
            )
        mask = masks[0] if self.forward.return_sequences else None
        merged = 2 if self.merge_mode is None else 1
        return outputs, [mask] * merged + [None] * (len(outputs) - merged)

    def vjp(self, inputs, masks, d_outputs):
        """Gradients of [x, states...] from those of the merged outputs and the states."""
        x, *state = inputs
        forward_state, backward_state = _split_states(state)
        carried = [cell.states for cell in self.cells]
        y_raw = self.forward(x, mask=masks[0], initial_state=forward_state)
        y_rev_raw = self.backward(x, mask=masks[0], initial_state=backward_state)
        for cell, states in zip(self.cells, carried):
            cell.states = states  # stateful: the backward passes below start where these calls did
        y, y_rev = _as_list(y_raw), _as_list(y_rev_raw)
        merged = 2 if self.merge_mode is None else 1
        d_out = [np.zeros_like(o) if g is None else g
                 for o, g in zip(self._merge(y_raw, y_rev_raw), d_outputs)]
        a, b = y[0], (y_rev[0][:, ::-1] if self.forward.return_sequences else y_rev[0])
        dy = d_out[:merged]
        if self.merge_mode == "concat":
            d_a, d_b = np.split(dy[0], 2, axis=-1)
        elif self.merge_mode == "sum":
            d_a, d_b = dy[0], dy[0]
        elif self.merge_mode == "ave":
            d_a, d_b = dy[0] / 2, dy[0] / 2
        elif self.merge_mode == "mul":
            d_a, d_b = dy[0] * b, dy[0] * a
        else:
            d_a, d_b = dy
        if self.forward.return_sequences:
            d_b = d_b[:, ::-1]  # back to the backward layer's processing order
        states = d_out[merged:]
        d_forward = [d_a] + states[:len(states) // 2] if self.forward.return_state else d_a
        d_backward = [d_b] + states[len(states) // 2:] if self.forward.return_state else d_b
        gf = self.forward.backward(x, d_forward, mask=masks[0], initial_state=forward_state)
        gb = self.backward.backward(x, d_backward, mask=masks[0], initial_state=backward_state)
        grads = [gf.x + gb.x]
        if state:
            grads += list(gf.initial_state) + list(gb.initial_state)
        return grads

    def outputs_from_trace(self, trace):
        """What the layer outputs, read off a BidirectionalTrace."""
        return self._merge(
            _outputs_from_trace(self.forward, trace.forward),
            _outputs_from_trace(self.backward, trace.backward),
        )

    def _merge(self, y, y_rev):
        """The two directions' results (each as its layer returns them) merged as Keras does."""
        states = []
        if self.forward.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.forward.return_sequences:
            y_rev = y_rev[:, ::-1]  # back to input order
        if self.merge_mode == "concat":
            outputs = [np.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            outputs = [y + y_rev]
        elif self.merge_mode == "ave":
            outputs = [(y + y_rev) / 2]
        elif self.merge_mode == "mul":
            outputs = [y * y_rev]
        else:  # None: both, unmerged
            outputs = [y, y_rev]
        return outputs + states


def _split_states(state):
    """Initial states of a Bidirectional: the first half the forward layer's, the rest the
    backward layer's (keras/src/layers/rnn/bidirectional.py splits them at len // 2)."""
    if not state:
        return None, None
    half = len(state) // 2
    return state[:half], state[half:]
