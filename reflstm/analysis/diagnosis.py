"""diagnose: which mistake in extracted LSTM weights explains the output they should give?

Given arrays someone pulled out of a model (possibly wrongly) and an input with the output it
should produce, try the usual mistakes and report the one that reproduces the output:

- the four gate blocks stored in another order (all 24; named when a framework uses it),
- a matrix transposed, or kernel and recurrent kernel swapped,
- the bias missing, doubled, or given as two halves (PyTorch's and cuDNN's b_ih, b_hh),
- another recurrent activation (sigmoid, or hard_sigmoid as Keras 3 or Keras 2 define it),
- the weights of a backward LSTM (reversed time), its output in processing or input order,
- the input or the output time-major where batch-major was meant.

The search is exhaustive over those, screened on one sample and confirmed on all of them.
"""

import dataclasses
import itertools

import numpy as np

from reflstm.errors import refuse
from reflstm.frameworks.layouts import KERAS, reorder
from reflstm.cells.lstm import LSTM

__all__ = ["diagnose", "Diagnosis", "Hypothesis"]

_NAMED_ORDERS = {
    "ifco": "Keras / PyTorch / cuDNN order i,f,c,o",
    "iofc": "ONNX order i,o,f,c",
    "icfo": "TensorFlow 1 / Keras 1 order i,c,f,o",
}
_ACTIVATIONS = {  # recurrent activation: (name, keras_version, words)
    "sigmoid": ("sigmoid", 3, "sigmoid"),
    "hard_sigmoid_keras3": ("hard_sigmoid", 3, "hard_sigmoid as Keras 3 defines it (relu6(x+3)/6)"),
    "hard_sigmoid_keras2": ("hard_sigmoid", 2, "hard_sigmoid as Keras 2 defines it (clip(0.2x+0.5))"),
}
_BIASES = {
    "as_given": "the bias as given",
    "none": "no bias",
    "halved": "the bias halved (it was counted twice)",
    "sum_of_halves": "the bias is two halves (b_ih, b_hh) that must be added",
    "first_half": "only the first half of the bias",
    "second_half": "only the second half of the bias",
}


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One reading of the arrays and the data."""

    swapped: bool  # kernel and recurrent kernel were given in each other's place
    kernel_transposed: bool
    recurrent_transposed: bool
    order: str  # the gate order the blocks are stored in
    bias: str  # a key of _BIASES
    recurrent_activation: str  # a key of _ACTIVATIONS
    backward: bool  # the weights of a go_backwards (reverse) LSTM
    output_in_input_order: bool  # a backward LSTM's sequence given in input order (PyTorch, ONNX)
    x_time_major: bool
    expected_time_major: bool

    def describe(self):
        """The mistakes this hypothesis corrects, in plain words (empty: the arrays are right)."""
        words = []
        if self.swapped:
            words.append("kernel and recurrent_kernel are swapped")
        if self.kernel_transposed:
            words.append("the kernel is transposed ((4*units, input_dim) as PyTorch and ONNX keep it)")
        if self.recurrent_transposed:
            words.append("the recurrent kernel is transposed")
        if self.order != KERAS:
            words.append(f"the gates are stored in {_NAMED_ORDERS.get(self.order, 'order ' + ','.join(self.order))}")
        if self.bias != "as_given":
            words.append(_BIASES[self.bias])
        if self.recurrent_activation != "sigmoid":
            words.append(f"the recurrent activation is {_ACTIVATIONS[self.recurrent_activation][2]}")
        if self.backward:
            words.append("these are a backward (go_backwards / reverse) LSTM's weights"
                         + (", its output given in input order" if self.output_in_input_order else ""))
        if self.x_time_major:
            words.append("the input is time-major (timesteps, batch, features)")
        if self.expected_time_major:
            words.append("the expected output is time-major")
        return words


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnosis:
    """The result: the best hypothesis, its error, the ranked alternatives, and the fixed LSTM."""

    best: Hypothesis
    error: float  # largest |difference| / max(1, |expected|) on the whole input
    fits: bool  # error within tolerance
    tolerance: float
    alternatives: list  # [(Hypothesis, screening error)], best first
    lstm: LSTM  # built with the best hypothesis applied (batch-major, Keras layout)

    def __str__(self):
        lines = []
        words = self.best.describe()
        if self.fits:
            lines.append("Found: " + ("; ".join(words) if words else "the arrays are right as given")
                         + f". That reproduces the expected output to {self.error:.2g}.")
        else:
            lines.append(f"Nothing tried reproduces the expected output (tolerance {self.tolerance:g}); "
                         f"the closest, at {self.error:.2g}: "
                         + ("; ".join(words) if words else "the arrays as given") + ".")
        lines.append("Next best:")
        for hypothesis, error in self.alternatives[1:6]:
            text = "; ".join(hypothesis.describe()) or "the arrays as given"
            lines.append(f"  {error:.2g}  {text}")
        return "\n".join(lines)


def diagnose(kernel, recurrent_kernel, bias=None, *, x, expected, tolerance=None, activation="tanh"):
    """Find the reading of (kernel, recurrent_kernel, bias) under which `x` gives `expected`.

    Args:
        kernel, recurrent_kernel, bias: the arrays as extracted (any of the mistakes above).
        x: the input, (batch, timesteps, features) or time-major.
        expected: what the LSTM should output for `x`: the last step (batch, units), or every
            step (batch, timesteps, units) or time-major.
        tolerance: largest acceptable |difference| / max(1, |expected|); default 1e-5 for
            float32 data, 1e-9 for float64.
        activation: the LSTM's activation g (tanh unless you know otherwise).

    Returns:
        A `Diagnosis`; `str()` of it says what was wrong in plain words.
    """
    kernel, recurrent_kernel = np.asarray(kernel), np.asarray(recurrent_kernel)
    bias = None if bias is None else np.asarray(bias)
    x, expected = np.asarray(x), np.asarray(expected)
    dtype = np.result_type(kernel.dtype, recurrent_kernel.dtype, np.float32)
    dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    if tolerance is None:
        tolerance = 1e-5 if dtype == np.float32 else 1e-9
    if x.ndim != 3 or expected.ndim not in (2, 3):
        raise refuse("x / expected", "x 3-D and expected 2-D (last step) or 3-D (every step)",
                     f"x {x.shape}, expected {expected.shape}")

    structures = list(_structures(kernel, recurrent_kernel))
    if not structures:
        raise refuse("kernel, recurrent_kernel", "(input_dim, 4*units) and (units, 4*units), in some "
                     "order and orientation", f"{kernel.shape} and {recurrent_kernel.shape}")
    candidates = []
    for (swapped, k_t, r_t, k, r), (x_tm, e_tm, xb, eb) in itertools.product(
        structures, _layouts(x, expected, structures[0][3].shape[0])
    ):
        units = r.shape[0]
        if xb.shape[2] != k.shape[0] or eb.shape[-1] != units:
            continue
        for bias_kind, b in _biases(bias, units):
            for order, activation_key, backward in itertools.product(
                _orders(), _ACTIVATIONS, (False, True)
            ):
                alignments = (False, True) if backward and eb.ndim == 3 else (False,)
                for in_input_order in alignments:
                    hypothesis = Hypothesis(swapped, k_t, r_t, order, bias_kind, activation_key,
                                            backward, in_input_order, x_tm, e_tm)
                    candidates.append((hypothesis, (k, r, b, xb, eb)))
    if not candidates:
        raise refuse("x / expected", "shapes that fit the weights", f"x {x.shape}, expected {expected.shape}")

    # Screen every candidate on one sample (and, for a sequence, its first steps), then confirm
    # the best few on the whole input.
    built = {}  # one LSTM per reading of the weights, shared by the data layouts
    screened = sorted(
        ((_error(h, arrays, activation, dtype, built, sample=slice(0, 1), steps=_SCREEN_STEPS), h, arrays)
         for h, arrays in candidates),
        key=lambda item: item[0],
    )
    # Among readings that fit, the one with fewest corrections wins (rounding can favour others).
    confirmed = sorted(
        ((_error(h, arrays, activation, dtype, built), h, arrays) for _, h, arrays in screened[:8]),
        key=lambda item: (item[0] > tolerance, len(item[1].describe()) if item[0] <= tolerance else 0, item[0]),
    )
    error, best, arrays = confirmed[0]
    alternatives = [(h, e) for e, h, _ in confirmed] + [(h, e) for e, h, _ in screened[8:20]]
    return Diagnosis(best, error, error <= tolerance, tolerance, alternatives,
                     _build(best, arrays, activation, dtype, return_sequences=arrays[4].ndim == 3))


def _structures(kernel, recurrent_kernel):
    """(swapped, kernel transposed, recurrent transposed, kernel, recurrent) that make shapes fit."""
    for swapped in (False, True):
        k0, r0 = (recurrent_kernel, kernel) if swapped else (kernel, recurrent_kernel)
        for k_t, r_t in itertools.product((False, True), repeat=2):
            k, r = (k0.T if k_t else k0), (r0.T if r_t else r0)
            if k.ndim == 2 and r.ndim == 2 and r.shape[1] == 4 * r.shape[0] and k.shape[1] == r.shape[1]:
                yield swapped, k_t, r_t, k, r


def _layouts(x, expected, input_dim):
    """(x time-major, expected time-major, x batch-major, expected batch-major) readings."""
    for x_tm in (False, True):
        xb = x.transpose(1, 0, 2) if x_tm else x
        for e_tm in ((False, True) if expected.ndim == 3 else (False,)):
            eb = expected.transpose(1, 0, 2) if e_tm else expected
            if eb.shape[0] == xb.shape[0] and (eb.ndim == 2 or eb.shape[1] == xb.shape[1]):
                yield x_tm, e_tm, xb, eb


def _biases(bias, units):
    if bias is None:
        yield "as_given", None
        return
    if bias.shape == (4 * units,):
        yield "as_given", bias
        yield "halved", bias / 2
    if bias.shape == (8 * units,):
        yield "sum_of_halves", bias[: 4 * units] + bias[4 * units :]
        yield "first_half", bias[: 4 * units]
        yield "second_half", bias[4 * units :]
    yield "none", None


def _orders():
    return ["".join(p) for p in itertools.permutations("ifco")]


def _build(h, arrays, activation, dtype, return_sequences):
    k, r, b, _, _ = arrays
    name, keras_version, _ = _ACTIVATIONS[h.recurrent_activation]
    return LSTM(
        reorder(k, h.order, KERAS).astype(dtype),
        reorder(r, h.order, KERAS).astype(dtype),
        None if b is None else reorder(b, h.order, KERAS).astype(dtype),
        activation=activation,
        recurrent_activation=name,
        go_backwards=h.backward,
        return_sequences=return_sequences,
        keras_version=keras_version,
    )


_SCREEN_STEPS = 4  # processed steps a sequence is screened on


def _error(h, arrays, activation, dtype, built, sample=slice(None), steps=None):
    k, r, b, xb, eb = arrays
    key = (id(k), id(r), h.bias, h.order, h.recurrent_activation, h.backward, eb.ndim)
    if key not in built:
        built[key] = _build(h, arrays, activation, dtype, return_sequences=eb.ndim == 3)
    lstm = built[key]
    x, target = xb[sample], eb[sample]
    if steps is not None and eb.ndim == 3 and steps < x.shape[1]:
        # The first `steps` processed steps only: the last inputs for a backward LSTM, whose
        # expected output then sits at the end (input order) or the start (processing order).
        x = x[:, -steps:] if h.backward else x[:, :steps]
        target = target[:, -steps:] if h.backward and h.output_in_input_order else target[:, :steps]
    with np.errstate(all="ignore"):
        out = lstm(x)
    if h.output_in_input_order:
        out = out[:, ::-1]
    error = np.max(np.abs(out - target) / np.maximum(np.abs(target), 1.0))
    return float(error) if np.isfinite(error) else np.inf
