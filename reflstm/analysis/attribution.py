"""What did the network learn? Attribution of a recurrent layer's final output to each input step.

The target f(x) is, for a recurrent layer (a `reflstm.LSTM`, `GRU` or `SimpleRNN`), one unit of
its final hidden state h_T, or of a linear readout of it such as the Dense layer after it
(`readout=(kernel, bias)`); for a whole `reflstm.Model`, one unit of its (first) output at the
last step; or, for either, a function of that output that you give with its gradient
(`function=lambda y: (value, d_value_d_y)`). Its gradient comes from the layer's `backward` /
`Model.backward` (`reflstm.cells.backward`), so every method here is exact:

- "gradient": ∂f/∂x (saliency).
- "gradient_x_input": x ⊙ ∂f/∂x.
- "integrated_gradients": (x − x') ⊙ mean over the straight path from a baseline x' (zeros by
  default) of ∂f/∂x, at `steps` midpoints. Its entries add up to f(x) − f(x'); the shortfall is
  reported as `completeness_error`.
- "occlusion": f(x) − f(x with a window of steps set to the baseline), shared out evenly over
  the window's cells (forward runs only).

Lags are counted as a forecaster counts them, from the predicted step t: with `horizon=H` the
output predicts the step H after the last input step, so the last input step is t−H (t−1 by
default, for a model that reads the window t−5 … t−1 and predicts t). `Attribution.per_lag()`
gives each lag's share of a sample's total |attribution| (summed over features, averaged over the
batch), answering "how much does t−1 matter compared with t−5?"; `per_feature()` and
`per_feature_lag()` split the same total by input feature, and by feature and lag.
`memory_horizon` reads the gates that keep the state: an LSTM's forget gates (how much of C_t
survives into the last cell state), a GRU's update gates (how much of h_t survives into the last
h: z_t = 1 keeps h_{t-1}). A SimpleRNN has no such gate, and is refused.
"""

import dataclasses

import numpy as np

from reflstm.cells.recurrent import Recurrent
from reflstm.errors import refuse

__all__ = ["attribute", "Attribution", "memory_horizon", "MemoryHorizon"]

METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "occlusion")


@dataclasses.dataclass(frozen=True, eq=False)
class Attribution:
    """Attributions of the target to each input cell, (batch, timesteps, input_dim), input order.

    `horizon` places the predicted step t: H steps after the last input step, so input step s
    (counted from 0) is lag t−(timesteps − 1 − s + H).
    """

    values: np.ndarray
    method: str
    target: np.ndarray  # f(x), (batch,)
    baseline_target: "np.ndarray | None"  # f(baseline) for integrated gradients and occlusion
    completeness_error: "float | None"  # integrated gradients: |Σ A − (f(x) − f(x'))| / max(1, |f(x) − f(x')|)
    horizon: int = 1

    def per_feature_step(self):
        """(features, timesteps): each cell's share of its sample's total |attribution|, averaged
        over the batch; input order. Every sample's shares add up to 1 (0 where all are 0)."""
        size = np.abs(self.values)
        size = size[..., None] if size.ndim == 2 else size.reshape(*size.shape[:2], -1)  # (batch, timesteps, features)
        totals = size.sum(axis=(1, 2), keepdims=True)
        shares = np.divide(size, totals, out=np.zeros_like(size), where=totals > 0)
        return shares.mean(axis=0).T

    @property
    def timesteps(self):
        return self.values.shape[1]

    def lag_of_step(self, step):
        """The lag, counted back from the predicted step t, of input step `step` (from 0)."""
        return self.timesteps - 1 - step + self.horizon

    def step_of_lag(self, lag):
        """The input step (counted from 0) at lag t−`lag`."""
        return self.timesteps - 1 - lag + self.horizon

    def meaning(self):
        """What "t" is, in words."""
        last = self.timesteps - 1
        if self.horizon == 0:
            where = f"the last input step (input step {last})"
        else:
            where = (f"the predicted step, {self.horizon} step{'s' if self.horizon > 1 else ''} after the "
                     f"last input step (input step {last}, which is t-{self.horizon})")
        return f"t is {where}; lag t-k is k steps before t; input steps are counted from 0"

    def per_lag(self):
        """(lags, shares), most recent first: lags counted back from the predicted step t
        (horizon, horizon + 1, ...), and the share of |attribution| at each, summed over
        features, as a share of each sample's total, then averaged over the batch."""
        shares = self.per_feature_step().sum(axis=0)[::-1]  # most recent first
        return self.horizon + np.arange(self.timesteps), shares

    def per_feature(self):
        """(features, shares): each input feature's share of |attribution|, summed over steps."""
        shares = self.per_feature_step().sum(axis=1)
        return np.arange(len(shares)), shares

    def per_feature_lag(self):
        """(features, lags, shares (features, lags)): the share of each feature at each lag, most
        recent lag first; rows add up to per_feature(), columns to per_lag()."""
        shares = self.per_feature_step()[:, ::-1]
        return np.arange(shares.shape[0]), self.horizon + np.arange(self.timesteps), shares

    def table(self, rows=None):
        """The per-lag shares as text, most recent step first, with what "t" is."""
        lags, shares = self.per_lag()
        rows = len(lags) if rows is None else min(rows, len(lags))
        lines = [self.meaning(),
                 f"{'lag':>5} {'input step':>10} {'share':>7}  ({self.method}, over {self.values.shape[0]} samples)"]
        for lag, share in zip(lags[:rows], shares[:rows]):
            bar = "#" * int(round(share * 40))
            lines.append(f"{_lag_name(lag):>5} {self.step_of_lag(lag):>10} {share:>7.1%}  {bar}".rstrip())
        top = int(np.argmax(shares))
        lines.append(f"largest: {_lag_name(lags[top])} (input step {self.step_of_lag(lags[top])}), "
                     f"{shares[top]:.1%} of |attribution|")
        if self.completeness_error is not None:
            lines.append(f"completeness: attributions sum to f(x) - f(baseline) within {self.completeness_error:.2g}")
        return "\n".join(lines)

    def feature_table(self, lags=8, features=20):
        """Each input feature's share, and its share at each of the `lags` most recent lags."""
        names, lag_values, shares = self.per_feature_lag()
        totals = shares.sum(axis=1)
        shown = lag_values[:lags]
        lines = [f"{'feature':>7} {'share':>7}  " + " ".join(f"{_lag_name(lag):>6}" for lag in shown)
                 + ("  ..." if len(lag_values) > len(shown) else "")]
        for feature in names[:features]:
            lines.append(f"{feature:>7} {totals[feature]:>7.1%}  "
                         + " ".join(f"{v:>6.1%}" for v in shares[feature, : len(shown)]))
        if len(names) > features:
            lines.append(f"({len(names) - features} more features not shown)")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _lag_name(lag):
    return "t" if lag == 0 else f"t-{lag}"


def attribute(target, x, unit=0, method="integrated_gradients", steps=None, baseline=None, window=None,
              readout=None, mask=None, function=None, horizon=1):
    """Attribute one output of `target` (a recurrent layer or a reflstm.Model) to each cell of x.

    Args:
        target: a `reflstm.LSTM`, `reflstm.GRU` or `reflstm.SimpleRNN` (not stateful), or a
            `reflstm.Model` (whose first input is x).
        x: (batch, timesteps, input_dim).
        unit: the unit of the final hidden state (or of `readout`'s output, or of the model's
            output) whose value is explained.
        method: one of "gradient", "gradient_x_input", "integrated_gradients", "occlusion".
        steps: integrated gradients' number of path points (64 by default; only for that method).
        baseline: x' for integrated gradients and occlusion, shaped like x; zeros by default.
        window: occlusion's number of consecutive steps hidden at once (1 by default; only for
            that method).
        readout: (kernel (units, outputs), bias (outputs,)) of a Dense layer reading h_T, so that
            the target is that layer's linear output `unit`.
        mask: (batch, timesteps) for a layer target.
        function: instead of `unit`, a function of the output y (the layer's h_T, or the model's
            first output) returning (values (batch,), their gradient with respect to y).
        horizon: how many steps after the last input step the output predicts (1: the window
            t−T … t−1 predicts t); 0 when the output describes the last input step itself. Only
            the lag labels depend on it.

    Returns:
        An `Attribution`.
    """
    if method not in METHODS:
        raise refuse("method", f"one of {', '.join(METHODS)}", repr(method))
    x = np.asarray(x)
    if x.ndim != 3 and not (x.ndim == 2 and not isinstance(target, Recurrent)):
        raise refuse("x", "a 3-D array (batch, timesteps, input_dim)", x)
    baseline = np.zeros_like(x) if baseline is None else np.asarray(baseline)
    if baseline.shape != x.shape:
        raise refuse("baseline", f"the shape of x {x.shape}", baseline)
    if steps is not None and method != "integrated_gradients":
        raise refuse("steps", "no steps with method " + repr(method) + " (path steps are for "
                     "integrated_gradients)", repr(steps))
    if window is not None and method != "occlusion":
        raise refuse("window", "no window with method " + repr(method) + " (the window is "
                     "occlusion's)", repr(window))
    steps = 64 if steps is None else steps
    window = 1 if window is None else window
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise refuse("steps", "a positive integer", repr(steps))
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise refuse("window", "a positive integer", repr(window))
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 0:
        raise refuse("horizon", "a whole number of steps >= 0 (1: the step after the last input)",
                     repr(horizon))
    horizon = int(horizon)

    if function is not None and not callable(function):
        raise refuse("function", "a callable y -> (values, gradient)", type(function).__name__)
    if function is not None and readout is not None:
        raise refuse("readout", "None when a function is given (the function reads h_T itself)", "a readout")
    if not isinstance(target, Recurrent) and (mask is not None or readout is not None):
        raise refuse("mask / readout", "only with a recurrent layer target (a Model makes its own "
                     "masks and ends in its own layers)", "given with a Model")
    if isinstance(target, Recurrent):
        if target.stateful:
            raise refuse("target", "a layer without stateful=True (attribution runs it many times, "
                         "and a stateful layer's output depends on the states earlier calls leave)",
                         f"a stateful {type(target).__name__}")
        f = _LayerTarget(target, unit, readout, mask, function)
    elif hasattr(target, "predict") and hasattr(target, "graph"):
        if getattr(target, "stateful_layers", None):
            raise refuse("target", "a Model without stateful layers (attribution runs it many times, "
                         "and each run would move their states)",
                         f"stateful layers {', '.join(map(repr, target.stateful_layers))}")
        f = _ModelTarget(target, unit, function)
    else:
        raise refuse("target", "a reflstm.LSTM, GRU, SimpleRNN or Model", type(target).__name__)

    value = f.value(x)
    if method == "occlusion":
        return _occlusion(f, x, baseline, window, value, horizon)
    if method == "integrated_gradients":
        alphas = (np.arange(steps) + 0.5) / steps  # midpoints of the path
        path = baseline[None] + alphas[:, None, None, None] * (x - baseline)[None]
        grads = f.gradient(path.reshape(-1, *x.shape[1:])).reshape(steps, *x.shape)
        values = (x - baseline) * grads.mean(axis=0)
        base_value = f.value(baseline)
        delta = value - base_value
        error = float(np.max(np.abs(values.sum(axis=(1, 2)) - delta) / np.maximum(1, np.abs(delta))))
        return Attribution(values, method, value, base_value, error, horizon)
    grads = f.gradient(x)
    values = grads if method == "gradient" else x * grads
    return Attribution(values, method, value, None, None, horizon)


class _LayerTarget:
    """f(x) = h_T · w + b (or function(h_T)) for a recurrent layer, with its gradient by its
    backward pass."""

    def __init__(self, layer, unit, readout, mask, function):
        self.layer = _returning_state(layer)
        self.function = function
        if readout is None:
            kernel, bias = np.eye(layer.units, dtype=layer.dtype), np.zeros(layer.units, layer.dtype)
        else:
            kernel, bias = (np.asarray(a, layer.dtype) for a in readout)
            if kernel.ndim != 2 or kernel.shape[0] != layer.units or bias.shape != (kernel.shape[1],):
                raise refuse("readout", f"(kernel ({layer.units}, outputs), bias (outputs,))",
                             f"kernel {kernel.shape}, bias {bias.shape}")
        if function is None and (not isinstance(unit, (int, np.integer)) or not 0 <= unit < kernel.shape[1]):
            raise refuse("unit", f"an output in 0..{kernel.shape[1] - 1}", repr(unit))
        self.w, self.b = kernel[:, unit], bias[unit]
        self.mask = None if mask is None else np.asarray(mask)  # checked by the layer on each call

    def _mask(self, batch):
        if self.mask is None:
            return None
        return np.tile(self.mask, (batch // self.mask.shape[0], 1))

    def _final_h(self, x):
        return self.layer(x, mask=self._mask(len(x)))[1]

    def value(self, x):
        h = self._final_h(x)
        return _call(self.function, h)[0] if self.function else h @ self.w + self.b

    def gradient(self, x):
        batch, layer = len(x), self.layer
        if self.function:
            d_h = np.asarray(_call(self.function, self._final_h(x))[1], layer.dtype)
        else:
            d_h = np.broadcast_to(self.w, (batch, layer.units))
        zeros = np.zeros((batch, layer.units), layer.dtype)
        d_output = [zeros] + [d_h if state == "h" else zeros for state in layer.STATES]  # [d_output, d_h(, d_c)]
        return layer.backward(x, d_output, mask=self._mask(batch)).x


def _returning_state(layer):
    """The same layer (weights and options), returning its last output and final states, not stateful."""
    import inspect

    options = {name: getattr(layer, name) for name, parameter in
               inspect.signature(type(layer).__init__).parameters.items() if parameter.kind is parameter.KEYWORD_ONLY}
    options.update(return_sequences=False, return_state=True, stateful=False)
    return type(layer)(layer.kernel, layer.recurrent_kernel, layer.bias, **options)


class _ModelTarget:
    """f(x) = one unit of a Model's first output at the last step (or function(output))."""

    def __init__(self, model, unit, function):
        self.model, self.unit, self.function = model, unit, function

    def _output(self, x):
        out = self.model.predict(x)
        return out if isinstance(out, list) else [out]

    def value(self, x):
        y = self._output(x)[0]
        if self.function:
            return _call(self.function, y)[0]
        y = y[:, -1] if y.ndim == 3 else y
        if not isinstance(self.unit, (int, np.integer)) or not 0 <= self.unit < y.shape[-1]:
            raise refuse("unit", f"an output in 0..{y.shape[-1] - 1}", repr(self.unit))
        return y[:, self.unit]

    def gradient(self, x):
        outputs = self._output(x)
        d = [np.zeros_like(o) for o in outputs]
        if self.function:
            d[0] = np.asarray(_call(self.function, outputs[0])[1], outputs[0].dtype)
        elif outputs[0].ndim == 3:
            d[0][:, -1, self.unit] = 1
        else:
            d[0][:, self.unit] = 1
        g = self.model.backward(x, d if len(d) > 1 else d[0])
        g = g[0] if isinstance(g, list) else g
        if g is None:
            raise refuse("target", "a model whose input is numbers (token ids have no gradient; "
                         "use method='occlusion')", "a model reading token ids")
        return g


def _call(function, y):
    values, gradient = function(y)
    values = np.asarray(values)
    if values.shape != (y.shape[0],) or np.shape(gradient) != y.shape:
        raise refuse("function", f"(values {(y.shape[0],)}, gradient {y.shape})",
                     f"(values {values.shape}, gradient {np.shape(gradient)})")
    return values, gradient


def _occlusion(f, x, baseline, window, value, horizon):
    timesteps, features = x.shape[1], int(np.prod(x.shape[2:]))
    values = np.zeros(x.shape, np.result_type(x.dtype, np.float32))
    for start in range(0, timesteps, window):
        stop = min(start + window, timesteps)
        hidden = x.copy()
        hidden[:, start:stop] = baseline[:, start:stop]
        delta = value - f.value(hidden)
        values[:, start:stop] = (delta / ((stop - start) * features)).reshape(-1, *[1] * (x.ndim - 1))
    return Attribution(values, "occlusion", value, None, None, horizon)


@dataclasses.dataclass(frozen=True, eq=False)
class MemoryHorizon:
    """How far back each unit remembers, read off the gates that keep the state.

    retention[b, t, u] is the fraction of the state at step t that survives into the last state:
    the product, over the steps after t, of the LSTM's forget gates f (C_t = f_t ⊙ C_{t-1} + …) or
    the GRU's update gates z (h_t = z_t ⊙ h_{t-1} + …); 1 at the last step, and masked steps keep
    the state, so they count as 1. Steps are in processing order.
    """

    retention: np.ndarray  # (batch, timesteps, units)
    gate: str = "f"  # the gate whose product it is: "f" (LSTM, of C) or "z" (GRU, of h)

    def half_life(self):
        """(units,): the mean number of steps back at which retention first falls to ½ or below."""
        below = self.retention[:, ::-1] <= 0.5  # lag 0 first
        lags = np.where(below.any(axis=1), below.argmax(axis=1), below.shape[1])  # (batch, units)
        return lags.mean(axis=0)


# The gate that keeps each layer's state, and what it keeps.
KEEPING_GATES = {"LSTM": "f", "GRU": "z"}
NO_KEEPING_GATE = ("a SimpleRNN has no gate that keeps its state (h_t = g(x_t W + b + h_{t-1} U) "
                   "rewrites all of it every step), so it has no memory horizon")


def memory_horizon(target, x, mask=None, initial_state=None, layer=None, direction="forward"):
    """The MemoryHorizon of an LSTM or GRU on x: products of its forget gates (LSTM) or update
    gates (GRU) from each step to the last.

    Args:
        target: a `reflstm.LSTM` or `reflstm.GRU`, or a `reflstm.Model` (such as `reflstm.load`
            returns): then the layer is its layer `layer` (default: its first LSTM or GRU layer,
            Bidirectional ones included), run inside the model, with the masks and initial
            states the model gives it. A SimpleRNN has no gate that keeps its state: refused.
        x: (batch, timesteps, input_dim) for a layer; the model's input for a Model.
        mask: (batch, timesteps), for a layer only.
        initial_state: the layer's states, each (batch, units) ([h0, c0] for an LSTM, [h0] for a
            GRU), for a layer only.
        layer: for a Model, the name of the LSTM or GRU layer.
        direction: for a Bidirectional layer, "forward" or "backward".
    """
    if isinstance(target, Recurrent):
        if layer is not None:
            raise refuse("layer", "None for a layer (layer names an LSTM or GRU inside a Model)", repr(layer))
        kind = type(target).__name__
        if kind not in KEEPING_GATES:
            raise refuse("target", f"an LSTM or GRU ({NO_KEEPING_GATE})", f"a {kind}")
        tr = target.trace(x, mask=mask, initial_state=initial_state)
    elif hasattr(target, "recurrent_layers") and hasattr(target, "trace"):
        if mask is not None or initial_state is not None:
            raise refuse("mask / initial_state", "none with a Model (it makes its own)", "given with a Model")
        kinds = {name: type(l.cells[0]).__name__ for name, l in target.recurrent_layers.items()}
        gated = [name for name, kind in kinds.items() if kind in KEEPING_GATES]
        if layer is not None and kinds.get(layer) == "SimpleRNN":
            raise refuse("layer", f"an LSTM or GRU layer ({NO_KEEPING_GATE})", f"{layer!r}, a SimpleRNN")
        if not gated:
            raise refuse("target", "a Model with an LSTM or GRU layer", "a Model without one")
        name = gated[0] if layer is None else layer
        if name not in gated:
            raise refuse("layer", f"one of the model's LSTM and GRU layers {', '.join(gated)}", repr(layer))
        kind = kinds[name]
        tr = target.trace(x)[name]
        if hasattr(tr, "forward") and hasattr(tr, "backward"):  # a Bidirectional layer's two traces
            if direction not in ("forward", "backward"):
                raise refuse("direction", "'forward' or 'backward'", repr(direction))
            tr = getattr(tr, direction)
    else:
        raise refuse("target", "a reflstm.LSTM, GRU or Model", type(target).__name__)
    gate = KEEPING_GATES[kind]
    keep = getattr(tr, gate)  # (batch, timesteps, units)
    keep = keep if tr.mask is None else np.where(tr.mask[..., None], keep, 1)
    # Product over steps s > t: a reversed cumulative product, shifted by one step.
    after = np.cumprod(keep[:, ::-1], axis=1)[:, ::-1]  # Π_{s >= t}
    retention = np.concatenate([after[:, 1:], np.ones_like(after[:, :1])], axis=1)
    return MemoryHorizon(retention, gate)
