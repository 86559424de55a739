"""What did the network learn? Attribution of an LSTM's final output to each input step.

The target f(x) is, for an LSTM, one unit of its final hidden state h_T, or of a linear readout
of it such as the Dense layer after the LSTM (`readout=(kernel, bias)`); for a whole
`reflstm.Model`, one unit of its (first) output at the last step; or, for either, a function of
that output that you give with its gradient (`function=lambda y: (value, d_value_d_y)`). Its
gradient comes from `LSTM.backward` / `Model.backward`, so every method here is exact:

- "gradient": ∂f/∂x (saliency).
- "gradient_x_input": x ⊙ ∂f/∂x.
- "integrated_gradients": (x − x') ⊙ mean over the straight path from a baseline x' (zeros by
  default) of ∂f/∂x, at `steps` midpoints. Its entries add up to f(x) − f(x'); the shortfall is
  reported as `completeness_error`.
- "occlusion": f(x) − f(x with a window of steps set to the baseline), shared out evenly over
  the window's cells (forward runs only).

`Attribution.per_lag()` gives each lag's share of a sample's total |attribution| (summed over
features, averaged over the batch; lag 0 is the last step), answering "how much does t−1 matter
compared with t−5?".
`memory_horizon` reads the forget gates: how much of C_t survives into the last cell state.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse
from reflstm.lstm import LSTM

__all__ = ["attribute", "Attribution", "memory_horizon", "MemoryHorizon"]

METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "occlusion")


@dataclasses.dataclass(frozen=True, eq=False)
class Attribution:
    """Attributions of the target to each input cell, (batch, timesteps, input_dim), input order."""

    values: np.ndarray
    method: str
    target: np.ndarray  # f(x), (batch,)
    baseline_target: "np.ndarray | None"  # f(baseline) for integrated gradients and occlusion
    completeness_error: "float | None"  # integrated gradients: |Σ A − (f(x) − f(x'))| / max(1, |f(x) − f(x')|)

    def per_lag(self):
        """(lags, shares): the share of |attribution| at each lag (0 = last step): summed over
        features, as a share of each sample's total, then averaged over the batch."""
        size = np.abs(self.values)
        size = size.sum(axis=2) if size.ndim == 3 else size  # (batch, timesteps)
        totals = size.sum(axis=1, keepdims=True)
        shares = np.divide(size, totals, out=np.zeros_like(size), where=totals > 0).mean(axis=0)
        lags = np.arange(size.shape[1])
        return lags, shares[::-1]

    def table(self, rows=None):
        """The per-lag shares as text, most recent step first."""
        lags, shares = self.per_lag()
        rows = len(lags) if rows is None else min(rows, len(lags))
        lines = [f"{'lag':>5} {'step':>6} {'share':>7}  ({self.method}, over {self.values.shape[0]} samples)"]
        timesteps = len(lags)
        for lag, share in zip(lags[:rows], shares[:rows]):
            lines.append(f"{'t' if lag == 0 else f't-{lag}':>5} {timesteps - 1 - lag:>6} {share:>7.1%}  "
                         + "#" * int(round(share * 40)))
        if self.completeness_error is not None:
            lines.append(f"completeness: attributions sum to f(x) - f(baseline) within {self.completeness_error:.2g}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def attribute(target, x, unit=0, method="integrated_gradients", steps=64, baseline=None, window=1,
              readout=None, mask=None, function=None):
    """Attribute one output of `target` (a reflstm.LSTM or reflstm.Model) to each cell of x.

    Args:
        target: a `reflstm.LSTM` or a `reflstm.Model` (whose first input is x).
        x: (batch, timesteps, input_dim).
        unit: the unit of the final hidden state (or of `readout`'s output, or of the model's
            output) whose value is explained.
        method: one of "gradient", "gradient_x_input", "integrated_gradients", "occlusion".
        steps: integrated gradients' number of path points.
        baseline: x' for integrated gradients and occlusion, shaped like x; zeros by default.
        window: occlusion's number of consecutive steps hidden at once.
        readout: (kernel (units, outputs), bias (outputs,)) of a Dense layer reading h_T, so that
            the target is that layer's linear output `unit`.
        mask: (batch, timesteps) for an LSTM target.
        function: instead of `unit`, a function of the output y (the LSTM's h_T, or the model's
            first output) returning (values (batch,), their gradient with respect to y).

    Returns:
        An `Attribution`.
    """
    if method not in METHODS:
        raise refuse("method", f"one of {', '.join(METHODS)}", repr(method))
    x = np.asarray(x)
    if x.ndim != 3 and not (x.ndim == 2 and not isinstance(target, LSTM)):
        raise refuse("x", "a 3-D array (batch, timesteps, input_dim)", x)
    baseline = np.zeros_like(x) if baseline is None else np.asarray(baseline)
    if baseline.shape != x.shape:
        raise refuse("baseline", f"the shape of x {x.shape}", baseline)
    if not isinstance(steps, int) or steps < 1:
        raise refuse("steps", "a positive integer", repr(steps))
    if not isinstance(window, int) or window < 1:
        raise refuse("window", "a positive integer", repr(window))

    if function is not None and not callable(function):
        raise refuse("function", "a callable y -> (values, gradient)", type(function).__name__)
    if function is not None and readout is not None:
        raise refuse("readout", "None when a function is given (the function reads h_T itself)", "a readout")
    if not isinstance(target, LSTM) and (mask is not None or readout is not None):
        raise refuse("mask / readout", "only with an LSTM target (a Model makes its own masks and "
                     "ends in its own layers)", "given with a Model")
    if isinstance(target, LSTM):
        f = _LSTMTarget(target, unit, readout, mask, function)
    elif hasattr(target, "predict") and hasattr(target, "graph"):
        f = _ModelTarget(target, unit, function)
    else:
        raise refuse("target", "a reflstm.LSTM or reflstm.Model", type(target).__name__)

    value = f.value(x)
    if method == "occlusion":
        return _occlusion(f, x, baseline, window, value)
    if method == "integrated_gradients":
        alphas = (np.arange(steps) + 0.5) / steps  # midpoints of the path
        path = baseline[None] + alphas[:, None, None, None] * (x - baseline)[None]
        grads = f.gradient(path.reshape(-1, *x.shape[1:])).reshape(steps, *x.shape)
        values = (x - baseline) * grads.mean(axis=0)
        base_value = f.value(baseline)
        delta = value - base_value
        error = float(np.max(np.abs(values.sum(axis=(1, 2)) - delta) / np.maximum(1, np.abs(delta))))
        return Attribution(values, method, value, base_value, error)
    grads = f.gradient(x)
    values = grads if method == "gradient" else x * grads
    return Attribution(values, method, value, None, None)


class _LSTMTarget:
    """f(x) = h_T · w + b (or function(h_T)) for an LSTM, with its gradient by LSTM.backward."""

    def __init__(self, lstm, unit, readout, mask, function):
        self.lstm = LSTM(lstm.kernel, lstm.recurrent_kernel, lstm.bias, activation=lstm.activation,
                         recurrent_activation=lstm.recurrent_activation, go_backwards=lstm.go_backwards,
                         return_state=True, keras_version=lstm.keras_version)
        self.function = function
        if readout is None:
            kernel, bias = np.eye(lstm.units, dtype=lstm.dtype), np.zeros(lstm.units, lstm.dtype)
        else:
            kernel, bias = (np.asarray(a, lstm.dtype) for a in readout)
            if kernel.ndim != 2 or kernel.shape[0] != lstm.units or bias.shape != (kernel.shape[1],):
                raise refuse("readout", f"(kernel ({lstm.units}, outputs), bias (outputs,))",
                             f"kernel {kernel.shape}, bias {bias.shape}")
        if function is None and (not isinstance(unit, (int, np.integer)) or not 0 <= unit < kernel.shape[1]):
            raise refuse("unit", f"an output in 0..{kernel.shape[1] - 1}", repr(unit))
        self.w, self.b = kernel[:, unit], bias[unit]
        self.mask = None if mask is None else np.asarray(mask)  # checked by the LSTM on each call

    def _mask(self, batch):
        if self.mask is None:
            return None
        return np.tile(self.mask, (batch // self.mask.shape[0], 1))

    def _final_h(self, x):
        return self.lstm(x, mask=self._mask(len(x)))[1]

    def value(self, x):
        h = self._final_h(x)
        return _call(self.function, h)[0] if self.function else h @ self.w + self.b

    def gradient(self, x):
        batch = len(x)
        zeros = np.zeros((batch, self.lstm.units), self.lstm.dtype)
        if self.function:
            d_h = np.asarray(_call(self.function, self._final_h(x))[1], self.lstm.dtype)
        else:
            d_h = np.broadcast_to(self.w, (batch, self.lstm.units))
        g = self.lstm.backward(x, [zeros, d_h, zeros], mask=self._mask(batch))
        return g.x


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


def _occlusion(f, x, baseline, window, value):
    timesteps, features = x.shape[1], int(np.prod(x.shape[2:]))
    values = np.zeros(x.shape, np.result_type(x.dtype, np.float32))
    for start in range(0, timesteps, window):
        stop = min(start + window, timesteps)
        hidden = x.copy()
        hidden[:, start:stop] = baseline[:, start:stop]
        delta = value - f.value(hidden)
        values[:, start:stop] = (delta / ((stop - start) * features)).reshape(-1, *[1] * (x.ndim - 1))
    return Attribution(values, "occlusion", value, None, None)


@dataclasses.dataclass(frozen=True, eq=False)
class MemoryHorizon:
    """How far back each unit remembers, read off the forget gates.

    retention[b, t, u] is the fraction of C_t that survives into the last cell state: the product
    of the forget gates of the steps after t (1 at the last step; masked steps keep C, so they
    count as 1). Steps are in processing order.
    """

    retention: np.ndarray  # (batch, timesteps, units)

    def half_life(self):
        """(units,): the mean number of steps back at which retention first falls to ½ or below."""
        below = self.retention[:, ::-1] <= 0.5  # lag 0 first
        lags = np.where(below.any(axis=1), below.argmax(axis=1), below.shape[1])  # (batch, units)
        return lags.mean(axis=0)


def memory_horizon(lstm, x, mask=None, initial_state=None):
    """The MemoryHorizon of `lstm` on x: products of forget gates from each step to the last."""
    tr = lstm.trace(x, mask=mask, initial_state=initial_state)
    f = tr.f if tr.mask is None else np.where(tr.mask[..., None], tr.f, 1)
    # Product over steps s > t: a reversed cumulative product, shifted by one step.
    after = np.cumprod(f[:, ::-1], axis=1)[:, ::-1]  # Π_{s >= t} f_s
    retention = np.concatenate([after[:, 1:], np.ones_like(after[:, :1])], axis=1)
    return MemoryHorizon(retention)
