"""diagnose: which mistake in extracted LSTM or GRU weights explains the output they should give?

Given arrays someone pulled out of a model (possibly wrongly) and an input with the output it
should produce, try the usual mistakes and report the one that reproduces the output:

- the gate blocks stored in another order (all 24 of an LSTM's, all 6 of a GRU's; named when a
  framework uses it),
- a matrix transposed, or kernel and recurrent kernel swapped,
- the bias missing, doubled, or given as two biases (PyTorch's and cuDNN's b_ih, b_hh; ONNX's B)
  to be added, or of which only one belongs to the layer,
- for a GRU, reset_after taken for reset-before or the other way round, a reset_after GRU's two
  bias rows given flat (6*units,), or summed into one row,
- another recurrent activation (sigmoid, or hard_sigmoid as Keras 3 or Keras 2 define it),
- the weights of a backward layer (reversed time), its output in processing or input order,
- the input or the output time-major where batch-major was meant.

The cell is the one whose shapes the arrays have (an LSTM's recurrent kernel is (units,
4*units), a GRU's (units, 3*units), in either orientation) unless `kind` says. The search is
exhaustive over the rest, screened on one sample and confirmed on all of them; one search serves
both cells.
"""

import dataclasses
import itertools
import typing

import numpy as np

from reflstm.cells.gru import GRU
from reflstm.cells.lstm import LSTM
from reflstm.errors import refuse
from reflstm.frameworks.layouts import KERAS, KERAS_GRU, ONNX, TF1, TORCH_GRU, reorder

__all__ = ["diagnose", "Diagnosis", "Hypothesis"]


@dataclasses.dataclass(frozen=True)
class _Cell:
    """What the search needs to know of one kind of layer."""

    layer: type  # the reflstm class built from a reading
    gates: str  # Keras's gate order, the one the class takes
    named_orders: dict  # gate orders that frameworks use, in words


_CELLS = {
    "LSTM": _Cell(LSTM, KERAS, {
        ONNX: "ONNX order i,o,f,c",
        TF1: "TensorFlow 1 / Keras 1 order i,c,f,o",
    }),
    "GRU": _Cell(GRU, KERAS_GRU, {
        TORCH_GRU: "PyTorch / cuDNN order r,z,n",
    }),
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
    "first_half": "only the first half of the bias (b_ih) belongs to the layer",
    "second_half": "only the second half of the bias (b_hh) belongs to the layer",
    # A GRU with reset_after keeps two bias rows (input b, recurrent b'); these read one row as one of them.
    "one_as_input": "the one bias row is the input bias b and the recurrent bias b' is zero (a reset_after "
                    "GRU's two biases summed into one row give this only if b'_h, the candidate's, is zero)",
    "one_as_recurrent": "the one bias row is the recurrent bias b' and the input bias b is zero",
}
_FLAT = ("the bias is two biases given flat (6*units,), PyTorch's bias_ih and bias_hh concatenated or "
         "ONNX's B, where Keras keeps two rows (2, 3*units)")
_RESET_AFTER = {
    True: "the GRU is reset_after=True (the reset gate scales h_{t-1} U_h + b'_h, as in PyTorch and Keras's "
          "default)",
    False: "the GRU is reset_after=False (the reset gate scales h_{t-1} before U_h)",
}
_SUMMED_NOTE = ("If these are a reset_after=True GRU's weights (Keras's default, PyTorch, ONNX with "
                "linear_before_reset=1), its input and recurrent biases cannot be summed into one row "
                "unless b'_h, the recurrent bias of the candidate, is zero: pass both, as (2, 3*units) "
                "or flat (6*units,).")


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One reading of the arrays and the data."""

    kind: str  # "LSTM" or "GRU"
    swapped: bool  # kernel and recurrent kernel were given in each other's place
    kernel_transposed: bool
    recurrent_transposed: bool
    order: str  # the gate order the blocks are stored in
    bias: str  # a key of _BIASES
    recurrent_activation: str  # a key of _ACTIVATIONS
    backward: bool  # the weights of a go_backwards (reverse) layer
    output_in_input_order: bool  # a backward layer's sequence given in input order (PyTorch, ONNX)
    x_time_major: bool
    expected_time_major: bool
    reset_after: typing.Optional[bool] = None  # a GRU's; None for an LSTM
    bias_shaped_for_reset_after: typing.Optional[bool] = None  # what the GRU bias's shape suggests
    bias_flat: bool = False  # a GRU's two bias rows were given as one (6*units,) array

    def describe(self):
        """The mistakes this hypothesis corrects, in plain words (empty: the arrays are right)."""
        cell = _CELLS[self.kind]
        words = []
        if self.swapped:
            words.append("kernel and recurrent_kernel are swapped")
        if self.kernel_transposed:
            words.append(f"the kernel is transposed (({len(cell.gates)}*units, input_dim) as PyTorch and "
                         "ONNX keep it)")
        if self.recurrent_transposed:
            words.append("the recurrent kernel is transposed")
        if self.order != cell.gates:
            words.append("the gates are stored in "
                         + cell.named_orders.get(self.order, "order " + ",".join(self.order)))
        if self.reset_after is not None and self.reset_after != self.bias_shaped_for_reset_after:
            words.append(_RESET_AFTER[self.reset_after])
        if self.bias_flat:
            words.append(_FLAT)
        if self.bias != "as_given":
            words.append(_BIASES[self.bias])
        if self.recurrent_activation != "sigmoid":
            words.append(f"the recurrent activation is {_ACTIVATIONS[self.recurrent_activation][2]}")
        if self.backward:
            words.append(f"these are a backward (go_backwards / reverse) {self.kind}'s weights"
                         + (", its output given in input order" if self.output_in_input_order else ""))
        if self.x_time_major:
            words.append("the input is time-major (timesteps, batch, features)")
        if self.expected_time_major:
            words.append("the expected output is time-major")
        return words


@dataclasses.dataclass(frozen=True, eq=False)
class Diagnosis:
    """The result: the best hypothesis, its error, the ranked alternatives, and the fixed layer."""

    best: Hypothesis
    error: float  # largest |difference| / max(1, |expected|) on the whole input
    fits: bool  # error within tolerance
    tolerance: float
    alternatives: list  # [(Hypothesis, screening error)], best first
    layer: typing.Union[LSTM, GRU]  # built with the best hypothesis applied (batch-major, Keras layout)

    def __str__(self):
        lines = []
        words = self.best.describe()
        if self.fits:
            lines.append(f"Found ({self.best.kind}): "
                         + ("; ".join(words) if words else "the arrays are right as given")
                         + f". That reproduces the expected output to {self.error:.2g}.")
        else:
            lines.append(f"Nothing tried reproduces the expected output (tolerance {self.tolerance:g}); "
                         f"the closest ({self.best.kind}), at {self.error:.2g}: "
                         + ("; ".join(words) if words else "the arrays as given") + ".")
            if self.best.bias_shaped_for_reset_after is False:
                lines.append(_SUMMED_NOTE)
        lines.append("Next best:")
        for hypothesis, error in self.alternatives[1:6]:
            text = "; ".join(hypothesis.describe()) or "the arrays as given"
            lines.append(f"  {error:.2g}  {text}")
        return "\n".join(lines)


def diagnose(kernel, recurrent_kernel, bias=None, *, x, expected, kind=None, tolerance=None,
             activation="tanh"):
    """Find the reading of (kernel, recurrent_kernel, bias) under which `x` gives `expected`.

    Args:
        kernel, recurrent_kernel, bias: the arrays as extracted (any of the mistakes above). A
            GRU's bias may be one row (3*units,), two rows (2, 3*units) or both flat (6*units,);
            an LSTM's one (4*units,) or two biases, flat (8*units,) or as rows (2, 4*units).
        x: the input, (batch, timesteps, features) or time-major.
        expected: what the layer should output for `x`: the last step (batch, units), or every
            step (batch, timesteps, units) or time-major.
        kind: "LSTM" or "GRU"; None (the default) takes the one whose shapes the arrays have.
        tolerance: largest acceptable |difference| / max(1, |expected|); default 1e-5 for
            float32 data, 1e-9 for float64.
        activation: the layer's activation g (tanh unless you know otherwise).

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
    kind, structures = _cell(kernel, recurrent_kernel, kind, x, expected)
    units = {r.shape[0] for *_, r in structures}
    gates = len(_CELLS[kind].gates)
    if bias is not None and not any(_bias_fits(bias, gates * u) for u in units):
        raise refuse("bias", f"one ({gates}*units,) bias or two, flat ({2 * gates}*units,) or as rows "
                     f"(2, {gates}*units), for units {' or '.join(map(str, sorted(units)))}", bias)

    candidates = []
    for (swapped, k_t, r_t, k, r), (x_tm, e_tm, xb, eb) in itertools.product(
        structures, _layouts(x, expected)
    ):
        units = r.shape[0]
        if xb.shape[2] != k.shape[0] or eb.shape[-1] != units:
            continue
        for reading, b in _biases(kind, bias, units):
            for order, activation_key, backward in itertools.product(
                _orders(kind), _ACTIVATIONS, (False, True)
            ):
                alignments = (False, True) if backward and eb.ndim == 3 else (False,)
                for in_input_order in alignments:
                    hypothesis = Hypothesis(
                        kind, swapped, k_t, r_t, order, recurrent_activation=activation_key,
                        backward=backward, output_in_input_order=in_input_order, x_time_major=x_tm,
                        expected_time_major=e_tm, **reading,
                    )
                    candidates.append((hypothesis, (k, r, b, xb, eb)))
    if not candidates:
        raise refuse("x / expected", "shapes that fit the weights", f"x {x.shape}, expected {expected.shape}")

    # Screen every candidate on one sample (and, for a sequence, its first steps), then confirm
    # the best few on the whole input.
    built = {}  # one layer per reading of the weights, shared by the data layouts
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


def _cell(kernel, recurrent_kernel, kind, x, expected):
    """The kind of layer, and the readings (swapped, transposes, kernel, recurrent) that fit its shapes."""
    if kind is not None and kind not in _CELLS:
        raise refuse("kind", '"LSTM", "GRU", or None for the one the shapes say', repr(kind))
    names = (kind,) if kind else tuple(_CELLS)
    found = {name: list(_structures(kernel, recurrent_kernel, len(_CELLS[name].gates))) for name in names}
    found = {name: structures for name, structures in found.items() if structures}
    if not found:
        wanted = " or ".join(f"{len(_CELLS[name].gates)}*units ({name})" for name in names)
        raise refuse("kernel, recurrent_kernel", f"(input_dim, G) and (units, G) with G = {wanted}, in "
                     "some order and orientation", f"{kernel.shape} and {recurrent_kernel.shape}")
    if len(found) > 1:  # e.g. an LSTM's (4, 12), (3, 12) and a GRU's (3, 12), (4, 12) swapped
        # Only the data's features and units can tell the cells apart.
        found = {name: structures for name, structures in found.items()
                 if any(k.shape[0] == x.shape[2] and r.shape[0] == expected.shape[-1] for *_, k, r in structures)}
        if len(found) != 1:
            raise refuse("kind", '"LSTM" or "GRU": these weights can be read as either, and x and expected '
                         "do not say which", f"kernel {kernel.shape}, recurrent_kernel {recurrent_kernel.shape}, "
                         f"x {x.shape}, expected {expected.shape}")
    ((kind, structures),) = found.items()
    return kind, structures


def _structures(kernel, recurrent_kernel, gates):
    """(swapped, kernel transposed, recurrent transposed, kernel, recurrent) that make shapes fit."""
    for swapped in (False, True):
        k0, r0 = (recurrent_kernel, kernel) if swapped else (kernel, recurrent_kernel)
        for k_t, r_t in itertools.product((False, True), repeat=2):
            k, r = (k0.T if k_t else k0), (r0.T if r_t else r0)
            if k.ndim == 2 and r.ndim == 2 and r.shape[1] == gates * r.shape[0] and k.shape[1] == r.shape[1]:
                yield swapped, k_t, r_t, k, r


def _layouts(x, expected):
    """(x time-major, expected time-major, x batch-major, expected batch-major) readings."""
    for x_tm in (False, True):
        xb = x.transpose(1, 0, 2) if x_tm else x
        for e_tm in ((False, True) if expected.ndim == 3 else (False,)):
            eb = expected.transpose(1, 0, 2) if e_tm else expected
            if eb.shape[0] == xb.shape[0] and (eb.ndim == 2 or eb.shape[1] == xb.shape[1]):
                yield x_tm, e_tm, xb, eb


def _two_biases(bias, size):
    """((b_ih, b_hh), given flat) when `bias` holds two biases of `size`, flat or as rows; else None."""
    if bias.shape == (2 * size,):
        return (bias[:size], bias[size:]), True
    if bias.shape == (2, size):
        return (bias[0], bias[1]), False
    return None


def _bias_fits(bias, size):
    return bias.shape == (size,) or _two_biases(bias, size) is not None


def _biases(kind, bias, units):
    """(reading, bias in the layer's shape) for every way the bias may have been meant.

    A reading is Hypothesis's bias fields. An LSTM has one bias row; a GRU one with
    reset_after=False, two (input b, recurrent b') with reset_after=True, and both are tried.
    """
    size = len(_CELLS[kind].gates) * units
    one = bias is not None and bias.shape == (size,)
    two = None if bias is None or one else _two_biases(bias, size)
    # A GRU's bias shape says which reset_after was meant: two rows (or none, Keras's default) True.
    shaped = None if kind == "LSTM" else not one

    def reading(key, b, reset_after, flat=False):
        return dict(bias=key, reset_after=reset_after, bias_shaped_for_reset_after=shaped, bias_flat=flat), b

    for reset_after in ((None,) if kind == "LSTM" else (True, False)):
        if reset_after:  # the layer keeps two rows
            zero = np.zeros(size, bias.dtype) if bias is not None else None
            if one:
                yield reading("one_as_input", np.stack([bias, zero]), True)
                yield reading("one_as_recurrent", np.stack([zero, bias]), True)
            elif two:
                (b_ih, b_hh), flat = two
                yield reading("as_given", np.stack([b_ih, b_hh]), True, flat)
                yield reading("halved", np.stack([b_ih, b_hh]) / 2, True, flat)
                yield reading("first_half", np.stack([b_ih, zero]), True, flat)
                yield reading("second_half", np.stack([zero, b_hh]), True, flat)
        elif one:
            yield reading("as_given", bias, reset_after)
            yield reading("halved", bias / 2, reset_after)
        elif two:
            (b_ih, b_hh), _ = two
            yield reading("sum_of_halves", b_ih + b_hh, reset_after)
            yield reading("first_half", b_ih, reset_after)
            yield reading("second_half", b_hh, reset_after)
        yield reading("as_given" if bias is None else "none", None, reset_after)


def _orders(kind):
    return ["".join(p) for p in itertools.permutations(_CELLS[kind].gates)]


def _build(h, arrays, activation, dtype, return_sequences):
    k, r, b, _, _ = arrays
    cell = _CELLS[h.kind]
    name, keras_version, _ = _ACTIVATIONS[h.recurrent_activation]
    options = {} if h.reset_after is None else {"reset_after": h.reset_after}
    return cell.layer(
        reorder(k, h.order, cell.gates).astype(dtype),
        reorder(r, h.order, cell.gates).astype(dtype),
        None if b is None else reorder(b, h.order, cell.gates).astype(dtype),
        activation=activation,
        recurrent_activation=name,
        go_backwards=h.backward,
        return_sequences=return_sequences,
        keras_version=keras_version,
        **options,
    )


_SCREEN_STEPS = 4  # processed steps a sequence is screened on


def _error(h, arrays, activation, dtype, built, sample=slice(None), steps=None):
    k, r, b, xb, eb = arrays
    key = (id(k), id(r), h.bias, h.reset_after, h.order, h.recurrent_activation, h.backward, eb.ndim)
    if key not in built:
        built[key] = _build(h, arrays, activation, dtype, return_sequences=eb.ndim == 3)
    layer = built[key]
    x, target = xb[sample], eb[sample]
    if steps is not None and eb.ndim == 3 and steps < x.shape[1]:
        # The first `steps` processed steps only: the last inputs for a backward layer, whose
        # expected output then sits at the end (input order) or the start (processing order).
        x = x[:, -steps:] if h.backward else x[:, :steps]
        target = target[:, -steps:] if h.backward and h.output_in_input_order else target[:, :steps]
    with np.errstate(all="ignore"):
        out = layer(x)
    if h.output_in_input_order:
        out = out[:, ::-1]
    error = np.max(np.abs(out - target) / np.maximum(np.abs(target), 1.0))
    return float(error) if np.isfinite(error) else np.inf
