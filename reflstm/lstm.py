"""LSTM: a Keras LSTM layer's forward pass in NumPy, with every step's gates on request."""

import numpy as np

from reflstm import activations
from reflstm.equations import gate_slice, step
from reflstm.errors import describe, refuse
from reflstm.trace import Trace

__all__ = ["LSTM"]

_DTYPES = (np.dtype("float32"), np.dtype("float64"))


class _GateView:
    """A read-only view of one gate's block of a weight: `LSTM.W_f` is `kernel[:, units:2*units]`."""

    def __init__(self, weight, gate):
        self.weight, self.gate = weight, gate

    def __get__(self, lstm, owner=None):
        if lstm is None:
            return self
        array = getattr(lstm, self.weight)
        if array is None:
            return None
        return array[..., gate_slice(self.gate, lstm.units)]


class LSTM:
    """The Keras LSTM layer, from its weights.

    The weights are Keras's own arrays, as ``layer.get_weights()`` returns them (the gate order
    and equations are in `reflstm.equations`):

    Args:
        kernel: (input_dim, 4 * units), W.
        recurrent_kernel: (units, 4 * units), U.
        bias: (4 * units,), b, or None for ``use_bias=False``.
        activation: g, a Keras activation name (`reflstm.activations.names`); None means linear.
        recurrent_activation: σ, likewise.
        return_sequences: return the output of every step, (batch, timesteps, units), rather
            than the last step's, (batch, units).
        return_state: also return the final h and C: ``[output, h, c]``.
        go_backwards: process the time steps last to first; the returned sequence is in that
            processing order, as Keras returns it.
        stateful: carry the final state of each call into the next, in ``self.states``, until
            `reset_state`, as Keras's ``stateful=True`` does.
        zero_output_for_mask: output zeros at masked steps instead of repeating the last output.
        keras_version: 3 for `keras`, 2 for `tf_keras`: which Keras's activation names to use
            (``"hard_sigmoid"`` differs) and which container ``return_state`` returns (Keras 3 a
            tuple, Keras 2 a list).

    The arithmetic is done in the weights' dtype (float32 or float64); inputs and states are cast
    to it, as Keras casts them to the layer's compute dtype. ``dropout`` and
    ``recurrent_dropout`` are absent: Keras applies them only in training, and this is inference.
    """

    W_i, W_f, W_c, W_o = (_GateView("kernel", gate) for gate in "ifco")
    U_i, U_f, U_c, U_o = (_GateView("recurrent_kernel", gate) for gate in "ifco")
    b_i, b_f, b_c, b_o = (_GateView("bias", gate) for gate in "ifco")

    def __new__(cls, *arrays, **options):
        # Python would refuse wrong arguments with a bare TypeError; say what was meant instead.
        _check_arguments(cls, arrays, options)
        return super().__new__(cls)

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
        keras_version=3,
    ):
        kernel = _weight("kernel", kernel)
        if kernel.ndim != 2 or kernel.shape[1] % 4 or kernel.shape[1] == 0:
            raise refuse("kernel", "a 2-D array (input_dim, 4 * units)", kernel)
        units = kernel.shape[1] // 4
        recurrent_kernel = _weight("recurrent_kernel", recurrent_kernel, kernel.dtype)
        if recurrent_kernel.shape != (units, 4 * units):
            raise refuse(
                "recurrent_kernel",
                f"shape (units, 4 * units) = {(units, 4 * units)} to match kernel {kernel.shape}",
                recurrent_kernel,
            )
        if bias is not None:
            bias = _weight("bias", bias, kernel.dtype)
            if bias.shape != (4 * units,):
                raise refuse(
                    "bias",
                    f"shape (4 * units,) = {(4 * units,)} to match kernel {kernel.shape}, or None",
                    bias,
                )
        for name, flag in [
            ("return_sequences", return_sequences),
            ("return_state", return_state),
            ("go_backwards", go_backwards),
            ("stateful", stateful),
            ("zero_output_for_mask", zero_output_for_mask),
        ]:
            if not isinstance(flag, (bool, np.bool_)):
                raise refuse(name, "True or False", flag)

        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.units = units
        self.input_dim = kernel.shape[0]
        self.dtype = kernel.dtype
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self._g = activations.get(activation, keras_version, "activation", self.dtype)
        self._sigma = activations.get(
            recurrent_activation, keras_version, "recurrent_activation", self.dtype
        )
        self.keras_version = keras_version
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.states = None  # [h, c] carried between calls when stateful; None otherwise

    @classmethod
    def from_keras(cls, layer):
        """The reflstm LSTM of a built Keras 3 or tf_keras ``LSTM`` or ``RNN(LSTMCell)`` layer.

        Takes the layer's weights and options, and, for ``stateful=True``, its current states.
        Needs no Keras import of its own: it reads the layer object it is given.
        """
        from reflstm.keras import lstm_arguments

        arguments, states = lstm_arguments(layer)
        lstm = cls(**arguments)
        if states is not None:
            lstm.states = [np.array(s, dtype=lstm.dtype) for s in states]
        return lstm

    @classmethod
    def from_torch(cls, module_or_state_dict, layer=0, reverse=False):
        """One layer and direction of a PyTorch nn.LSTM (or its state_dict); see reflstm.pytorch.

        Returns an LSTM with return_sequences and return_state, as PyTorch returns both; the
        reverse direction comes back with go_backwards=True, its outputs in processing order.
        """
        from reflstm.pytorch import lstm_arguments

        return cls(**lstm_arguments(module_or_state_dict, layer, reverse))

    def to_torch(self, layer=0, reverse=False):
        """The weights as a PyTorch state_dict of NumPy arrays (weight_ih_l0, ...); see reflstm.pytorch."""
        from reflstm.pytorch import to_state_dict

        return to_state_dict(self, layer, reverse)

    @classmethod
    def from_onnx(cls, W, R, B=None, **attributes):
        """One direction of an ONNX LSTM node from its W, R, B (num_directions axis included).

        Attributes as ONNX names them (direction, activations, activation_alpha, ...); `index`
        picks the direction of a bidirectional node. See reflstm.onnx_lstm.
        """
        from reflstm.onnx_lstm import lstm_arguments

        return cls(**lstm_arguments(W, R, B, **attributes))

    def to_onnx(self):
        """W, R, B and the attributes of an ONNX LSTM node computing this LSTM; see reflstm.onnx_lstm."""
        from reflstm.onnx_lstm import to_onnx

        return to_onnx(self)

    @classmethod
    def from_keras1(cls, arrays, activation="tanh", inner_activation="hard_sigmoid", **options):
        """Keras 1's twelve arrays (gates i, c, f, o, each W, U, b); see reflstm.legacy."""
        from reflstm.legacy import keras1_arguments

        return cls(**{**keras1_arguments(arrays, activation, inner_activation), **options})

    @classmethod
    def from_cudnn(cls, kernel, recurrent_kernel, bias, **options):
        """CuDNNLSTM's weights (cuDNN block layout, 8*units bias); see reflstm.legacy."""
        from reflstm.legacy import cudnn_arguments

        return cls(**{**cudnn_arguments(kernel, recurrent_kernel, bias), **options})

    def to_keras1(self):
        """Keras 1's twelve arrays for this LSTM (gates i, c, f, o); see reflstm.legacy."""
        from reflstm.legacy import to_keras1

        return to_keras1(self)

    def to_cudnn(self):
        """CuDNNLSTM's [kernel, recurrent_kernel, bias] for this LSTM; see reflstm.legacy."""
        from reflstm.legacy import to_cudnn

        return to_cudnn(self)

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
            )
            if getattr(self, name)
        ]
        if self.bias is None:
            options.append("use_bias=False")
        return f"reflstm.LSTM({', '.join(options)}, keras_version={self.keras_version})"

    def __call__(self, x, mask=None, initial_state=None):
        """What the Keras layer returns for ``layer(x, mask=mask, initial_state=initial_state)``.

        Args:
            x: (batch, timesteps, input_dim).
            mask: (batch, timesteps), True where a step is used, or None.
            initial_state: [h0, c0], each (batch, units), or None for zeros (or, when stateful,
                the carried states).

        Returns:
            output, (batch, timesteps, units) with return_sequences, else (batch, units); with
            return_state, ``[output, h, c]`` (a tuple for keras_version=3, as Keras 3 returns).
        """
        sequence, last, h, c, _ = self._run(x, mask, initial_state, record=False)
        output = sequence if self.return_sequences else last
        if self.return_state and output is h:
            output = output.copy()  # Keras returns the output and h as separate tensors
        if not self.return_state:
            return output
        result = [output, h, c]
        return tuple(result) if self.keras_version == 3 else result

    def trace(self, x, mask=None, initial_state=None):
        """Run as `__call__` does, and return every step's quantities as a `Trace`.

        A trace is a call: on a stateful LSTM it also carries the final state into the next call.
        """
        *_, trace = self._run(x, mask, initial_state, record=True)
        return trace

    def backward(self, x, d_output, mask=None, initial_state=None):
        """Gradients of sum(output * d_output) with respect to x, the weights and the initial state.

        d_output is shaped like what calling the LSTM returns ([d_output, d_h, d_c] with
        return_state). Returns a `reflstm.backward.Gradients` (x, kernel, recurrent_kernel, bias,
        initial_state). The equations are in reflstm.backward. On a stateful LSTM it runs from,
        and advances, the carried state, as a call does.
        """
        from reflstm.backward import backward

        return backward(self, x, d_output, mask=mask, initial_state=initial_state)

    def reset_state(self):
        """Set the carried states of a stateful LSTM back to zeros, as Keras's reset_state does."""
        if self.states is not None:
            self.states = [np.zeros_like(s) for s in self.states]

    def _run(self, x, mask, initial_state, record):
        x = self._check_x(x)
        batch, timesteps = x.shape[:2]
        mask = self._check_mask(mask, batch, timesteps)
        h0, c0 = self._start_state(initial_state, batch)
        units, U, b = self.units, self.recurrent_kernel, self.bias

        # Time-major from here on: step t of the processing order is row t.
        x = x.transpose(1, 0, 2)  # (timesteps, batch, input_dim)
        if self.go_backwards:
            x = x[::-1]
            mask = None if mask is None else mask[:, ::-1]
        z_x = (x.reshape(-1, self.input_dim) @ self.kernel).reshape(timesteps, batch, 4 * units)
        step_bias = None
        if b is not None:
            if record:
                step_bias = b  # the trace keeps x_t W without b, so b is added step by step
            else:
                z_x += b  # a plain call folds b in once: the same sums, (x_t W + b) + h_{t-1} U
        keep = None if mask is None else mask.T[:, :, None]  # (timesteps, batch, 1)

        shape = (timesteps, batch, units)
        if record:
            gates = {name: np.empty(shape, self.dtype) for name in ("i", "f", "c_tilde", "o", "c", "h")}
            z_hs = np.empty((timesteps, batch, 4 * units), self.dtype)
        # Every step's output is kept for return_sequences and traces; without a mask it is h,
        # and a trace shares one array for both.
        shares_h = record and keep is None
        outputs = None
        if (record or self.return_sequences) and not shares_h:
            outputs = np.empty(shape, self.dtype)

        h, c = h0, c0
        output = np.zeros((batch, units), self.dtype)  # Keras's "previous output" before step 0
        for t in range(timesteps):
            z_h = np.matmul(h, U, out=z_hs[t]) if record else h @ U  # (batch, 4 * units)
            z = z_x[t] + z_h if step_bias is None else (z_x[t] + step_bias) + z_h
            i, f, c_tilde, o, c_new, h_new = step(z, c, self._sigma, self._g)
            if keep is None:
                h, c, output = h_new, c_new, h_new
            else:
                # keras/src/backend/tensorflow/rnn.py: a masked step keeps the previous state, and
                # outputs the previous output (zeros before any step ran) or, with
                # zero_output_for_mask, zeros.
                m = keep[t]
                h, c = np.where(m, h_new, h), np.where(m, c_new, c)
                output = np.where(m, h_new, 0 if self.zero_output_for_mask else output)
            if outputs is not None:
                outputs[t] = output
            if record:
                for name, value in zip(gates, (i, f, c_tilde, o, c, h)):
                    gates[name][t] = value

        if self.stateful:
            self.states = [h.copy(), c.copy()]  # not the arrays returned to the caller
        if shares_h:
            outputs = gates["h"]
        trace = None
        if record:
            batch_major = {name: a.transpose(1, 0, 2) for name, a in gates.items()}
            trace = Trace(
                **batch_major,
                output=outputs.transpose(1, 0, 2),
                z_x=z_x.transpose(1, 0, 2),
                z_h=z_hs.transpose(1, 0, 2),
                bias=np.zeros(4 * units, self.dtype) if b is None else b,
                h0=np.array(h0),  # copies: the trace freezes its arrays, not the caller's
                c0=np.array(c0),
                mask=None if mask is None else np.array(mask),
            )
        sequence = None if outputs is None else outputs.transpose(1, 0, 2)
        return sequence, output, h, c, trace

    def _check_x(self, x):
        x = _numeric("x", x)
        if x.ndim != 3 or x.shape[2] != self.input_dim:
            raise refuse("x", f"a 3-D array (batch, timesteps, input_dim={self.input_dim})", x)
        if x.shape[1] == 0:
            raise refuse("x", "at least one time step", x)
        return x.astype(self.dtype, copy=False)

    def _check_mask(self, mask, batch, timesteps):
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != (batch, timesteps):
            raise refuse("mask", f"shape (batch, timesteps) = {(batch, timesteps)}", mask)
        if mask.dtype != bool:
            if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
                raise refuse("mask", "booleans, or numbers that are all 0 or 1", mask)
            mask = mask.astype(bool)
        return mask

    def _start_state(self, initial_state, batch):
        shape = (batch, self.units)
        if initial_state is None:
            if self.stateful and self.states is not None:
                if self.states[0].shape != shape:
                    raise refuse(
                        "x",
                        f"batch size {self.states[0].shape[0]}, the batch size of the stateful "
                        "LSTM's carried states (reset_state keeps it; build a new LSTM to change it)",
                        f"batch size {batch}",
                    )
                return self.states
            return np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
            raise refuse("initial_state", "a list [h0, c0] of two arrays", describe(initial_state))
        states = []
        for name, state in zip(("initial_state[0] (h0)", "initial_state[1] (c0)"), initial_state):
            state = _numeric(name, state)
            if state.shape != shape:
                raise refuse(name, f"shape (batch, units) = {shape}", state)
            states.append(state.astype(self.dtype, copy=False))
        return states


def _numeric(name, value):
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise refuse(name, "an array of real numbers", value)
    return value


def _weight(name, value, dtype=None):
    """A read-only copy of a weight array, checked to be float32 or float64 (and `dtype`, if given)."""
    value = np.array(value)  # a copy: the LSTM must not change when the caller's array does
    if value.dtype not in _DTYPES:
        raise refuse(name, "a float32 or float64 array", value)
    if dtype is not None and value.dtype != dtype:
        raise refuse(name, f"dtype {dtype}, the dtype of kernel", value)
    value.flags.writeable = False
    return value


# Keras LSTM options that reflstm has no argument for, and why.
_NOT_ARGUMENTS = {
    "units": "no units argument: units comes from kernel's shape (input_dim, 4 * units)",
    "dropout": "no dropout: Keras applies it only in training, and reflstm is inference (leave it out)",
    "recurrent_dropout": "no recurrent_dropout: Keras applies it only in training, and reflstm is "
    "inference (leave it out)",
    "use_bias": "no use_bias: pass bias=None for use_bias=False",
    "time_major": "no time_major: pass x as (batch, timesteps, input_dim)",
}


def _check_arguments(cls, arrays, options):
    """Refuse, as a ReflstmError naming the argument, what LSTM(...) cannot take."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    positional = [n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"]
    if len(arrays) > len(positional):
        hint = (" (Keras 1's twelve per-gate arrays go to LSTM.from_keras1)" if len(arrays) == 12 else "")
        raise refuse("arrays", f"kernel, recurrent_kernel and bias, as layer.get_weights() returns "
                     f"them{hint}", f"{len(arrays)} arrays")
    for name in options:
        if name not in parameters or name == "self":
            expected = _NOT_ARGUMENTS.get(name, "one of the options " + ", ".join(
                n for n in parameters if n != "self"))
            raise refuse(name, expected, f"{name}={describe(options[name])}")
    given = dict(zip(positional, arrays), **options)
    for name in ("kernel", "recurrent_kernel", "bias"):
        if isinstance(given.get(name), (list, tuple)):
            try:
                np.asarray(given[name], dtype=float)
            except (ValueError, TypeError):
                raise refuse(name, "one array of numbers (Keras 1's list of per-gate arrays goes "
                             "to LSTM.from_keras1)", f"a list of {len(given[name])} arrays of "
                             "different shapes") from None
    for name in ("kernel", "recurrent_kernel"):
        if name not in given:
            raise refuse(name, "an array (kernel (input_dim, 4 * units), recurrent_kernel "
                         "(units, 4 * units))", "nothing")
