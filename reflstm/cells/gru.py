"""GRU: a Keras GRU layer's forward pass in NumPy, with every step's gates on request."""

import numpy as np

from reflstm.cells.activations import writer
from reflstm.cells.equations import GRU_GATES, gru_step, reset_product
from reflstm.errors import refuse
from reflstm.cells.recurrent import GateView, Recurrent, _weight, check_weights
from reflstm.cells.trace import GRUTrace

__all__ = ["GRU"]


class GRU(Recurrent):
    """The Keras GRU layer, from its weights.

    The weights are Keras's own arrays, as ``layer.get_weights()`` returns them (the gate order
    z, r, h and the equations are in `reflstm.cells.equations`):

    Args:
        kernel: (input_dim, 3 * units), W.
        recurrent_kernel: (units, 3 * units), U.
        bias: with ``reset_after=True``, (2, 3 * units): row 0 the input bias b, row 1 the
            recurrent bias b'; with ``reset_after=False``, (3 * units,), b. None for
            ``use_bias=False``.
        activation: g, applied to the candidate h̃; a Keras activation name; None means linear.
        recurrent_activation: σ, applied to z and r, likewise.
        reset_after: True (Keras's default): the reset gate multiplies h_{t-1} U_h + b'_h;
            False: it multiplies h_{t-1} before U_h.
        return_sequences, return_state, go_backwards, stateful, zero_output_for_mask, unroll,
            keras_version, keras_backend: as for `reflstm.LSTM`; ``return_state`` gives
            ``[output, h]``. With ``reset_after=False`` a float64 GRU is refused on ``"torch"``
            even unmasked: Keras runs it through the cell.

    The per-gate views ``W_z, W_r, W_h``, ``U_z, U_r, U_h`` and ``b_z, b_r, b_h`` are blocks of
    the weights as Keras stores them: with ``reset_after=True``, ``b_z`` is (2, units), its
    input and recurrent bias. The arithmetic is done in the weights' dtype, as for the LSTM;
    ``dropout`` and ``recurrent_dropout`` act only in training and are absent.
    """

    W_z, W_r, W_h = (GateView("kernel", gate, GRU_GATES) for gate in GRU_GATES)
    U_z, U_r, U_h = (GateView("recurrent_kernel", gate, GRU_GATES) for gate in GRU_GATES)
    b_z, b_r, b_h = (GateView("bias", gate, GRU_GATES) for gate in GRU_GATES)
    STATES = ("h",)
    GATE_FIELDS = ("z", "r", "h_tilde")
    PREACTIVATIONS = ("input_part", "recurrent_part")
    KERAS1_ARRAYS = 9

    def __init__(
        self,
        kernel,
        recurrent_kernel,
        bias=None,
        *,
        activation="tanh",
        recurrent_activation="sigmoid",
        reset_after=True,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        zero_output_for_mask=False,
        unroll=False,
        keras_version=3,
        keras_backend="tensorflow",
    ):
        kernel, recurrent_kernel, units = check_weights(kernel, recurrent_kernel, 3)
        if not isinstance(reset_after, (bool, np.bool_)):
            raise refuse("reset_after", "True or False", reset_after)
        if bias is not None:
            bias = _weight("bias", bias, kernel.dtype)
            # keras/src/layers/rnn/gru.py GRUCell.build: reset_after keeps separate input and
            # recurrent biases, because the reset gate multiplies the recurrent one only.
            shape, what = (
                ((2, 3 * units), "(2, 3 * units): input bias and recurrent bias, for reset_after=True")
                if reset_after
                else ((3 * units,), "(3 * units,), for reset_after=False")
            )
            if bias.shape != shape:
                raise refuse("bias", f"shape {what} = {shape} to match kernel {kernel.shape}, or None", bias)
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units, self.input_dim, self.dtype = units, kernel.shape[0], kernel.dtype
        self.reset_after = bool(reset_after)
        functions = self._set_options(
            {"activation": activation, "recurrent_activation": recurrent_activation},
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
        self._g, self._sigma = (writer(functions[name]) for name in ("activation", "recurrent_activation"))
        if bias is None:
            self._input_bias, self._recurrent_bias = None, None
        elif self.reset_after:
            self._input_bias, self._recurrent_bias = bias[0], bias[1]
        else:
            self._input_bias, self._recurrent_bias = bias, None

    def _keras_fused_loop(self):
        return self.reset_after  # backend.gru runs only reset_after=True (keras/src/backend/torch/rnn.py gru)

    def __repr__(self):
        return self._repr(
            [
                f"activation={self.activation!r}",
                f"recurrent_activation={self.recurrent_activation!r}",
                f"reset_after={self.reset_after}",
            ]
        )

    def _step(self, x_part, states, h_U, out):
        (h_prev,) = states
        gru_step(x_part, h_prev, self.recurrent_kernel, self._recurrent_bias, self._sigma, self._g,
                 self.reset_after, h_U, out)

    def _recurrent_part(self, h_prev, gates, out):
        if self.reset_after:
            super()._recurrent_part(h_prev, gates, out)
        else:  # the products gru_step makes, in the same form
            u = self.units
            out[:, : 2 * u] = h_prev @ self.recurrent_kernel[:, : 2 * u]
            out[:, 2 * u :] = reset_product(gates["r"], h_prev, self.recurrent_kernel)

    def _replay_needs(self):
        return ("h",) if self.reset_after else ("h", "r")

    def _trace(self, held, start, mask, replay):
        zeros = np.zeros(3 * self.units, self.dtype)
        return GRUTrace(
            held=held,
            input_bias=zeros if self._input_bias is None else self._input_bias,
            recurrent_bias=zeros if self._recurrent_bias is None else self._recurrent_bias,
            reset_after=self.reset_after,
            h0=start[0],
            mask=mask,
            replay=replay,
        )
