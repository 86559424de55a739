"""LSTM: a Keras LSTM layer's forward pass in NumPy, with every step's gates on request."""

import numpy as np

from reflstm.cells.activations import writer
from reflstm.cells.equations import GATES, step
from reflstm.errors import refuse
from reflstm.cells.recurrent import GateView, Recurrent, _weight, check_weights
from reflstm.cells.trace import Trace

__all__ = ["LSTM"]


class LSTM(Recurrent):
    """The Keras LSTM layer, from its weights.

    The weights are Keras's own arrays, as ``layer.get_weights()`` returns them (the gate order
    and equations are in `reflstm.cells.equations`):

    Args:
        kernel: (input_dim, 4 * units), W.
        recurrent_kernel: (units, 4 * units), U.
        bias: (4 * units,), b, or None for ``use_bias=False``.
        activation: g, a Keras activation name (`reflstm.cells.activations.names`); None means linear.
        recurrent_activation: σ, likewise.
        return_sequences: return the output of every step, (batch, timesteps, units), rather
            than the last step's, (batch, units).
        return_state: also return the final h and C: ``[output, h, c]``.
        go_backwards: process the time steps last to first; the returned sequence is in that
            processing order, as Keras returns it.
        stateful: carry the final state of each call into the next, in ``self.states``, until
            `reset_state`, as Keras's ``stateful=True`` does.
        zero_output_for_mask: output zeros at masked steps instead of repeating the last output.
        unroll: Keras's ``unroll``; it changes only masked outputs (`Recurrent._mask_rule`):
            unrolled, JAX starts them at zeros and ignores ``zero_output_for_mask``, and
            TensorFlow with ``go_backwards`` applies ``zero_output_for_mask`` by the mask in
            input order to the reversed sequence.
        keras_version: 3 for `keras`, 2 for `tf_keras`: which Keras's activation names to use
            (``"hard_sigmoid"`` differs) and which container ``return_state`` returns (Keras 3 a
            tuple, Keras 2 a list).
        keras_backend: the Keras 3 backend whose loop to reproduce: ``"tensorflow"`` (the
            default, and tf_keras's), ``"jax"`` or ``"torch"``. They differ only with a mask:
            JAX's rolled loop outputs the carried h (h0 before the first unmasked step) where
            TensorFlow and torch output zeros (see ``unroll`` for the unrolled loops); torch
            fails on a mask with ``unroll`` and ``go_backwards``, and is refused there. float64
            weights are refused on ``"jax"`` (Keras computes in float32 there), and on
            ``"torch"`` with a mask (Keras rounds the cell's matrix products to float32);
            `reflstm.cells.recurrent._float64_refusal` says why.

    The arithmetic is done in the weights' dtype (float32 or float64); inputs and states are cast
    to it, as Keras casts them to the layer's compute dtype. ``dropout`` and
    ``recurrent_dropout`` are absent: Keras applies them only in training, and this is inference.
    """

    W_i, W_f, W_c, W_o = (GateView("kernel", gate, GATES) for gate in GATES)
    U_i, U_f, U_c, U_o = (GateView("recurrent_kernel", gate, GATES) for gate in GATES)
    b_i, b_f, b_c, b_o = (GateView("bias", gate, GATES) for gate in GATES)
    STATES = ("h", "c")  # the order of initial_state, return_state and self.states
    GATE_FIELDS = ("i", "f", "c_tilde", "o")
    PREACTIVATIONS = ("z_x", "z_h")

    KERAS1_ARRAYS = 12

    def __init__(
        self,
        kernel,
        recurrent_kernel,
        bias=None,
        *,
        activation="tanh",
        recurrent_activation="sigmoid",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        zero_output_for_mask=False,
        unroll=False,
        keras_version=3,
        keras_backend="tensorflow",
    ):
        kernel, recurrent_kernel, units = check_weights(kernel, recurrent_kernel, 4)
        if bias is not None:
            bias = _weight("bias", bias, kernel.dtype)
            if bias.shape != (4 * units,):
                raise refuse(
                    "bias",
                    f"shape (4 * units,) = {(4 * units,)} to match kernel {kernel.shape}, or None",
                    bias,
                )
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units, self.input_dim, self.dtype = units, kernel.shape[0], kernel.dtype
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

    def __repr__(self):
        options = [
            f"units={self.units}",
            f"input_dim={self.input_dim}",
            f"dtype={self.dtype}",
            f"activation={self.activation!r}",
            f"recurrent_activation={self.recurrent_activation!r}",
        ]
        options += [
            name
            for name in (
                "return_sequences",
                "return_state",
                "go_backwards",
                "stateful",
                "zero_output_for_mask",
                "unroll",
            )
            if getattr(self, name)
        ]
        if self.bias is None:
            options.append("use_bias=False")
        if self.keras_backend != "tensorflow":
            options.append(f"keras_backend={self.keras_backend!r}")
        return f"reflstm.LSTM({', '.join(options)}, keras_version={self.keras_version})"

    @property
    def _input_bias(self):
        return self.bias

    def _keras_fused_loop(self):
        return True  # backend.lstm: on torch's CPU, _fallback_lstm (keras/src/backend/torch/rnn.py)

    def _step(self, x_part, states, h_U, out):
        """One step of `reflstm.cells.equations.step`: x_part = x_t W + b becomes z = x_part + h_{t-1} U
        in place; h_U receives h_{t-1} U and `out` the step's i, f, c_tilde, o, c, h."""
        h_prev, c_prev = states
        i, f, c_tilde, o, h, c = out  # GATE_FIELDS, then STATES
        x_part += np.matmul(h_prev, self.recurrent_kernel, out=h_U)  # z, (batch, 4 * units)
        step(x_part, c_prev, self._sigma, self._g, (i, f, c_tilde, o, c, h))

    def _trace(self, held, start, mask, replay):
        return Trace(
            held=held,
            bias=np.zeros(4 * self.units, self.dtype) if self.bias is None else self.bias,
            h0=start[0],
            c0=start[1],
            mask=mask,
            replay=replay,
        )
