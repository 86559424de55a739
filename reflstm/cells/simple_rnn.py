"""SimpleRNN: a Keras SimpleRNN layer's forward pass in NumPy, every step on request."""

import numpy as np

from reflstm.cells.activations import writer
from reflstm.cells.equations import simple_rnn_step
from reflstm.errors import refuse
from reflstm.cells.recurrent import Recurrent, _weight, check_weights
from reflstm.cells.trace import SimpleRNNTrace

__all__ = ["SimpleRNN"]


class SimpleRNN(Recurrent):
    """The Keras SimpleRNN layer, h_t = g(x_t W + b + h_{t-1} U), from its weights.

    Args:
        kernel: (input_dim, units), W.
        recurrent_kernel: (units, units), U.
        bias: (units,), b, or None for ``use_bias=False``.
        activation: g, a Keras activation name; None means linear.
        return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, unroll,
            keras_version, keras_backend: as for `reflstm.LSTM`; ``return_state`` gives
            ``[output, h]``. Keras has no loop of its own for the SimpleRNN, so a float64
            SimpleRNN is refused on ``"torch"`` even unmasked.

    The arithmetic is done in the weights' dtype; ``dropout`` and ``recurrent_dropout`` act only
    in training and are absent.
    """

    STATES = ("h",)
    GATE_FIELDS = ()
    PREACTIVATIONS = ("input_part", "recurrent_part")

    def __init__(
        self,
        kernel,
        recurrent_kernel,
        bias=None,
        *,
        activation="tanh",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        zero_output_for_mask=False,
        unroll=False,
        keras_version=3,
        keras_backend="tensorflow",
    ):
        kernel, recurrent_kernel, units = check_weights(kernel, recurrent_kernel, 1)
        if bias is not None:
            bias = _weight("bias", bias, kernel.dtype)
            if bias.shape != (units,):
                raise refuse("bias", f"shape (units,) = {(units,)} to match kernel {kernel.shape}, or None", bias)
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units, self.input_dim, self.dtype = units, kernel.shape[0], kernel.dtype
        functions = self._set_options(
            {"activation": activation},
            keras_version,
            dict(
                return_sequences=return_sequences,
                return_state=return_state,
                go_backwards=go_backwards,
                stateful=stateful,
                zero_output_for_mask=zero_output_for_mask,
                unroll=unroll,
            ),
            keras_backend,
        )
        self._g = writer(functions["activation"])

    @property
    def W(self):
        """(input_dim, units), the kernel."""
        return self.kernel

    @property
    def U(self):
        """(units, units), the recurrent kernel."""
        return self.recurrent_kernel

    @property
    def b(self):
        """(units,), the bias, or None."""
        return self.bias

    @property
    def _input_bias(self):
        return self.bias

    def __repr__(self):
        return self._repr([f"activation={self.activation!r}"])

    def _step(self, x_part, states, h_U, out):
        (h_prev,) = states
        simple_rnn_step(x_part, h_prev, self.recurrent_kernel, self._g, h_U, *out)

    def _trace(self, held, start, mask, replay):
        return SimpleRNNTrace(
            held=held,
            bias=np.zeros(self.units, self.dtype) if self.bias is None else self.bias,
            h0=start[0],
            mask=mask,
            replay=replay,
        )
