"""What the report shows of each recurrent layer, built from its traces: the `Panel` data.

One `Panel` per direction of a layer (two for a Bidirectional). Everything in a panel is one
sample, in the layer's processing order (step t of a ``go_backwards`` layer is input step
T - 1 - t, and `input_steps` says so). Its numbers come from `reflstm.analysis.explain.step_numbers`,
the same numbers `reflstm explain` prints; the heatmaps draw the gate values and states among them.

Size: the heatmaps are images of every step and unit (block-averaged past `MAX_IMAGE` steps or
units); the exact numbers are shipped for a window of steps holding at most `max_values` numbers
per panel, and the panel records what it left out.
"""

import dataclasses

import numpy as np

from reflstm.analysis.explain import step_numbers
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace
from reflstm.errors import refuse

__all__ = ["Panel", "panel", "HEATMAPS", "MAX_VALUES"]

MAX_VALUES = 1_000_000  # exact numbers shipped per panel, by default: 8 MB in float64


# The heatmaps of each kind of layer: (label, where the values are in step_numbers, is it a gate).
HEATMAPS = {
    "LSTM": (("i", ("gate", "i"), True), ("f", ("gate", "f"), True), ("c~", ("gate", "c~"), False),
             ("o", ("gate", "o"), True), ("C_t", ("state", "C_t"), False), ("h_t", ("state", "h_t"), False)),
    "GRU": (("z", ("gate", "z"), True), ("r", ("gate", "r"), True), ("h~", ("gate", "h~"), False),
            ("h_t", ("state", "h_t"), False)),
    "SimpleRNN": (("h_t", ("gate", "h"), False),),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Panel:
    """One direction of one recurrent layer, for one sample, in processing order.

    Fields:
        title: the layer's name, with the direction of a Bidirectional layer.
        kind: "LSTM", "GRU" or "SimpleRNN".
        reset_after: a GRU's reset_after (None otherwise).
        go_backwards: whether the layer read its input last step first (None when unknown).
        gates, states: `step_numbers` of the sample, every step: (timesteps, units) arrays.
        window: (start, stop), the steps whose exact numbers are shipped.
        mask: (timesteps,) bool in processing order, or None.
        attribution: (timesteps,) the attribution of the output to each step, processing order, or None.
        half_life: (units,) the forget-gate (LSTM) or update-gate (GRU) half-lives, or None.
    """

    title: str
    kind: str
    reset_after: "bool | None"
    go_backwards: "bool | None"
    gates: dict
    states: dict
    window: tuple
    mask: "np.ndarray | None"
    attribution: "np.ndarray | None" = None
    half_life: "np.ndarray | None" = None

    @property
    def timesteps(self):
        return self.heatmap_values()[0][1].shape[0]

    @property
    def units(self):
        return self.heatmap_values()[0][1].shape[1]

    def heatmap_values(self):
        """[(label, values (timesteps, units), is a gate, (where, key))] in the order the report
        draws them; the values are gates[key]["value"] (where "gate") or states[key] ("state")."""
        return [(label, self.gates[key]["value"] if where == "gate" else self.states[key], gate, (where, key))
                for label, (where, key), gate in HEATMAPS[self.kind]]

    def input_steps(self):
        """(timesteps,) the input step each processing step read."""
        steps = np.arange(self.timesteps)
        return steps[::-1] if self.go_backwards else steps

    def shipped_values(self):
        """How many exact numbers the window ships."""
        start, stop = self.window
        return sum((stop - start) * a.shape[1] if a.ndim == 2 else a.size for a in _arrays(self.gates, self.states))


def _arrays(gates, states):
    return [a for columns in gates.values() for a in columns.values()] + list(states.values())


def kind_of(trace):
    if isinstance(trace, GRUTrace):
        return "GRU"
    if isinstance(trace, SimpleRNNTrace):
        return "SimpleRNN"
    return "LSTM"


def panel(trace, sample, title, go_backwards=None, max_values=MAX_VALUES, exact_steps=None):
    """The Panel of `trace` (an LSTM's `Trace`, a `GRUTrace` or a `SimpleRNNTrace`) for `sample`.

    Args:
        max_values: the most exact numbers to ship for this panel.
        exact_steps: (start, stop), the steps whose numbers to ship; by default as many steps
            from the first as `max_values` allows.
    """
    batch = trace.h.shape[0]
    if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) or not 0 <= sample < batch:
        raise refuse("sample", f"a sample in 0..{batch - 1}", repr(sample))
    if not isinstance(max_values, (int, np.integer)) or isinstance(max_values, bool) or max_values < 1:
        raise refuse("max_values", "a positive number of values", repr(max_values))
    gates, states = step_numbers(trace, int(sample))
    arrays = _arrays(gates, states)
    per_step = sum(a.shape[1] for a in arrays if a.ndim == 2)
    fixed = sum(a.size for a in arrays if a.ndim == 1)
    timesteps = trace.h.shape[1]
    fits = max(1, (max_values - fixed) // per_step)
    if exact_steps is None:
        window = (0, min(timesteps, fits))
    else:
        start, stop = _steps(exact_steps, timesteps)
        if stop - start > fits:
            raise refuse("exact_steps", f"at most {fits} steps (max_values={max_values} numbers, "
                         f"{per_step} per step)", f"{stop - start} steps ({start}, {stop})")
        window = (start, stop)
    mask = None if trace.mask is None else np.asarray(trace.mask[sample], bool)
    return Panel(title, kind_of(trace), getattr(trace, "reset_after", None), go_backwards, gates, states,
                 window, mask)


def _steps(exact_steps, timesteps):
    try:
        start, stop = (int(s) for s in exact_steps)
    except (TypeError, ValueError):
        raise refuse("exact_steps", "(start, stop), two step numbers", repr(exact_steps)) from None
    if not 0 <= start < stop <= timesteps:
        raise refuse("exact_steps", f"0 <= start < stop <= {timesteps}", repr(exact_steps))
    return start, stop
