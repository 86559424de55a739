"""The loop over time that every recurrent layer shares; each layer brings only its cell.

Keras splits a recurrent layer the same way: a cell computes one step (`LSTMCell.call`,
`GRUCell.call`, `SimpleRNNCell.call`), and one generic loop (keras/src/layers/rnn/rnn.py with
keras/src/backend/tensorflow/rnn.py) owns everything else. Here that loop is `Recurrent._run`:

- the time axis: time-major processing, ``go_backwards`` (the steps last to first, outputs in
  processing order);
- the state: zeros, ``initial_state``, or, with ``stateful=True``, the state the last call
  ended in, kept visibly in ``self.states`` until `reset_state`;
- masks: at a masked step the cell runs but its result is discarded; the state is carried
  through and the output repeats the previous output (zeros before any step ran), or is zeros
  with ``zero_output_for_mask``;
- what a call returns (``return_sequences``, ``return_state``) and what a trace holds (its
  ``keep``; every step writes straight into the rows of what is kept, scratch rows otherwise);
- the batch: no sequence reads another, so a large batch runs as blocks of rows side by side,
  each with its own loop over time in its own thread, and products large enough for BLAS to
  split are made on one BLAS thread (`reflstm.cells.parallel`);
- where Keras's loops differ (``keras_backend``, with ``unroll``; see `Recurrent._mask_rule`): on
  JAX the output at masked steps before the first unmasked one is h0, not zeros, unless the
  layer is unrolled, and then ``zero_output_for_mask`` is ignored; unrolled TensorFlow applies
  ``zero_output_for_mask`` after the loop, by the unreversed mask. float64 is refused where the
  backend does not compute in float64 (`_float64_refusal`).

A cell subclass provides its equations (in `reflstm.cells.equations`) through:

    STATES          names of the carried states, the output state "h" first: ("h", "c") for the LSTM
    GATE_FIELDS     names of what its step computes besides the states, in the order `_step` writes them
    PREACTIVATIONS  names of its pre-activation parts in a trace: x_t W, then h_{t-1} U
    _input_bias     the bias added to x_t W, or None
    _step(x_part, states, h_U, out): one step from x_part = x_t W + b (a private row it may
                    overwrite); h_U receives the recurrent part, `out` the rows of GATE_FIELDS
                    then STATES. A gate row that is not kept may be h_U's own block of that
                    gate (k-th gate, k-th block of `units` columns) when h_U is not kept either:
                    so the step must be done reading each block of h_U before it writes that
                    block's gate (the LSTM, GRU and SimpleRNN steps are)
    _recurrent_part(h_prev, gates, out): the recurrent part again, with the step's own
                    products, for a trace that did not keep it (`_Replay`); by default
                    h_{t-1} U
    _trace(held, start, mask, replay): its trace from the kept rows

and the weights ``kernel`` (input_dim, k * units) and ``recurrent_kernel`` (units, k * units).
"""

import numpy as np

from reflstm.cells import activations, parallel
from reflstm.cells.equations import gate_slice
from reflstm.errors import describe, refuse

__all__ = ["Recurrent", "KERAS_BACKENDS"]

_DTYPES = (np.dtype("float32"), np.dtype("float64"))
_FLAGS = ("return_sequences", "return_state", "go_backwards", "stateful", "zero_output_for_mask",
          "unroll")
# The Keras 3 backends whose loops reflstm reproduces; tf_keras runs on TensorFlow only.
KERAS_BACKENDS = ("tensorflow", "jax", "torch")


class GateView:
    """A read-only view of one gate's block of a weight: `LSTM.W_f` is `kernel[:, units:2*units]`."""

    def __init__(self, weight, gate, gates):
        self.weight, self.gate, self.gates = weight, gate, gates

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        array = getattr(layer, self.weight)
        if array is None:
            return None
        return array[..., gate_slice(self.gate, layer.units, self.gates)]


class Recurrent:
    """What every recurrent layer does around its cell; see the module docstring."""

    STATES = ("h",)
    GATE_FIELDS = ()
    PREACTIVATIONS = ()
    KERAS1_ARRAYS = None  # how many per-gate arrays Keras 1 kept, when not today's three

    def __init_subclass__(cls, **options):
        super().__init_subclass__(**options)
        # What a trace holds unless told (`trace`'s keep): the gates, the states and the output;
        # and every name keep takes: those and the pre-activation parts.
        cls.DEFAULT_KEEP = cls.GATE_FIELDS + cls.STATES + ("output",)
        cls.QUANTITIES = cls.DEFAULT_KEEP + cls.PREACTIVATIONS

    def __new__(cls, *arrays, **options):
        _check_arguments(cls, arrays, options)
        return super().__new__(cls)

    @classmethod
    def from_keras(cls, layer):
        """This layer of a built Keras 3 or tf_keras layer of the same class, or RNN of its cell.

        Takes the layer's weights and options, and, for ``stateful=True``, its current states.
        Needs no Keras import of its own: it reads the layer object it is given.
        """
        from reflstm.errors import ReflstmError
        from reflstm.frameworks.keras import layer_arguments

        arguments, states = layer_arguments(layer, cls.__name__)
        try:
            made = cls(**arguments)
        except ReflstmError as error:  # name the Keras layer the arguments came from
            raise ReflstmError(f"layer {getattr(layer, 'name', '?')!r}: {error}") from None
        if states is not None:
            made.states = [np.array(s, dtype=made.dtype) for s in states]
        return made

    # Other frameworks' forms of the same weights. Each framework has one module in
    # reflstm/frameworks/ that knows which of the layers it has, and refuses the others by name.

    @classmethod
    def from_torch(cls, module_or_state_dict, layer=0, reverse=False):
        """One layer and direction of a PyTorch module (nn.LSTM for an LSTM, nn.GRU for a GRU,
        nn.RNN for a SimpleRNN) or its state_dict; see reflstm.frameworks.pytorch.

        Returns a layer with return_sequences and return_state, as PyTorch returns both; the
        reverse direction comes back with go_backwards=True, its outputs in processing order.
        """
        from reflstm.frameworks import pytorch

        return cls(**pytorch.arguments(cls.__name__, module_or_state_dict, layer, reverse))

    def to_torch(self, layer=0, reverse=False):
        """The weights as a PyTorch state_dict of NumPy arrays (weight_ih_l0, ...); see
        reflstm.frameworks.pytorch."""
        from reflstm.frameworks import pytorch

        return pytorch.to_state_dict(self, layer, reverse)

    @classmethod
    def from_onnx(cls, W, R, B=None, **attributes):
        """One direction of an ONNX node (LSTM, GRU or RNN) from its W, R, B (num_directions axis
        included). Attributes as ONNX names them (direction, activations, ...); `index` picks the
        direction of a bidirectional node. See reflstm.frameworks.onnx."""
        from reflstm.frameworks import onnx

        return cls(**onnx.arguments(cls.__name__, W, R, B, **attributes))

    def to_onnx(self):
        """W, R, B and the attributes of an ONNX node computing this layer; see reflstm.frameworks.onnx."""
        from reflstm.frameworks import onnx

        return onnx.to_onnx(self)

    @classmethod
    def from_keras1(cls, arrays, activation="tanh", inner_activation="hard_sigmoid", **options):
        """Keras 1's per-gate arrays (an LSTM's twelve, gates i, c, f, o; a GRU's nine, z, r, h; a
        SimpleRNN's three); see reflstm.frameworks.legacy."""
        from reflstm.frameworks import legacy

        return cls(**{**legacy.keras1_arguments(cls.__name__, arrays, activation, inner_activation),
                      **options})

    def to_keras1(self):
        """Keras 1's per-gate arrays for this layer; see reflstm.frameworks.legacy."""
        from reflstm.frameworks import legacy

        return legacy.to_keras1(self)

    @classmethod
    def from_cudnn(cls, kernel, recurrent_kernel, bias, **options):
        """Keras 2's CuDNNLSTM or CuDNNGRU weights (cuDNN block layout, a bias of 8*units or
        6*units: two biases); see reflstm.frameworks.legacy."""
        from reflstm.frameworks import legacy

        return cls(**{**legacy.cudnn_arguments(cls.__name__, kernel, recurrent_kernel, bias), **options})

    def to_cudnn(self):
        """Keras 2's CuDNN layer weights [kernel, recurrent_kernel, bias] for this layer; see
        reflstm.frameworks.legacy."""
        from reflstm.frameworks import legacy

        return legacy.to_cudnn(self)

    def backward(self, x, d_output, mask=None, initial_state=None):
        """Gradients of sum(output * d_output) with respect to x, the weights and the initial state.

        d_output is shaped like what calling the layer returns ([d_output, d_h, d_c] for an LSTM
        with return_state). Returns a `reflstm.cells.backward.Gradients` (x, kernel,
        recurrent_kernel, bias, initial_state). The equations are in reflstm.cells.backward. On a
        stateful layer it runs from, and advances, the carried state, as a call does.
        """
        from reflstm.cells.backward import backward

        return backward(self, x, d_output, mask=mask, initial_state=initial_state)

    def __call__(self, x, mask=None, initial_state=None):
        """What the Keras layer returns for ``layer(x, mask=mask, initial_state=initial_state)``.

        Args:
            x: (batch, timesteps, input_dim).
            mask: (batch, timesteps), True where a step is used, or None.
            initial_state: the layer's states, each (batch, units): [h0, c0] for the LSTM, [h0]
                (or h0 alone) for the GRU and SimpleRNN; None for zeros (or, when stateful,
                the carried states). A stateful tf_keras layer (keras_version=2) ignores it
                while any carried state is non-zero, as tf_keras does.

        Returns:
            output, (batch, timesteps, units) with return_sequences, else (batch, units); with
            return_state, ``[output, *states]`` (a tuple for keras_version=3, as Keras 3 returns).
        """
        return self._result(*self._run(x, mask, initial_state, keep=None)[:3])

    def trace(self, x, mask=None, initial_state=None, keep=None):
        """Run as `__call__` does, and return every step's quantities as the layer's trace.

        A trace is a call: on a stateful layer it also carries the final state into the next call.

        Args:
            keep: the names of the quantities the trace holds, from ``QUANTITIES`` (an LSTM's
                "i", "f", "c_tilde", "o", "c", "h", "output", "z_x", "z_h"); None for
                ``DEFAULT_KEEP``, the gates, the states and the output. A trace costs, in time
                and memory, what it holds. The pre-activation parts are recomputed, bit for bit,
                when a trace that holds h (and r, for a GRU with reset_after=False) is asked for
                them (see `reflstm.cells.trace`); name them to have the run keep them instead.
                Asking a trace for anything else it does not hold raises a ReflstmError.
        """
        return self.traced_call(x, mask, initial_state, keep)[1]

    def traced_call(self, x, mask=None, initial_state=None, keep=None):
        """(what `__call__` returns, the trace `trace` returns), from one run."""
        sequence, last, states, trace = self._run(x, mask, initial_state, self.check_keep(keep))
        return self._result(sequence, last, states), trace

    def check_keep(self, keep):
        """`keep` as a tuple of this layer's quantity names (None: DEFAULT_KEEP), or refused."""
        if keep is None:
            return self.DEFAULT_KEEP
        names = ", ".join(map(repr, self.QUANTITIES))
        if isinstance(keep, str) or not isinstance(keep, (list, tuple)):
            raise refuse("keep", f"a tuple of quantity names of a {type(self).__name__} trace ({names})",
                         describe(keep))
        for name in keep:
            if name not in self.QUANTITIES:
                raise refuse("keep", f"names of quantities of a {type(self).__name__} trace ({names})",
                             repr(name))
        return tuple(dict.fromkeys(keep))

    def _result(self, sequence, last, states):
        """What a call returns, from the run's sequence (or None), last output and final states."""
        output = sequence if self.return_sequences else last
        if self.return_state and output is states[0]:
            output = output.copy()  # Keras returns the output and h as separate tensors
        if not self.return_state:
            return output
        result = [output, *states]
        return tuple(result) if self.keras_version == 3 else result

    def reset_state(self):
        """Set the carried states of a stateful layer back to zeros, as Keras's reset_state does."""
        if self.states is not None:
            self.states = [np.zeros_like(s) for s in self.states]

    def _keras_fused_loop(self):
        """Whether Keras 3 runs this layer, unmasked, through its backend's own loop (backend.lstm,
        backend.gru; keras/src/layers/rnn/lstm.py inner_loop) rather than the generic loop over
        the cell: on torch that loop keeps float64, the cell does not (see _float64_refusal)."""
        return False

    def _mask_rule(self):
        """How the backend's loop fills masked steps' outputs: (starts_at_h0, zero_masked, zero_after).

        starts_at_h0: the "previous output" that a masked step repeats starts at h0, not zeros.
        zero_masked: masked steps output zeros (``zero_output_for_mask``) inside the loop.
        zero_after: ``zero_output_for_mask`` is applied after the loop instead, to the sequence
            with the mask in input order (even when ``go_backwards`` reversed the outputs) and to
            the last output with the last processed step's mask.

        - TensorFlow (Keras 3 and tf_keras) and torch, rolled: zeros start, zero_masked
          (keras/src/backend/tensorflow/rnn.py and torch/rnn.py ``flat_zero_output``).
        - TensorFlow and torch, unrolled: zeros start, zero_after: ``tf.where(_expand_mask(mask,
          outputs, fixed_dim=2), ...)`` uses the mask that only ``mask_list`` reversed
          (tensorflow/rnn.py unroll branch; tf_keras's backend.rnn is the same). torch fails on
          an unrolled go_backwards mask, which `_check_backend_mask` refuses.
        - JAX, rolled (``lax.scan``): a masked step repeats the carried state ``states[0]``,
          which is h0 before the first unmasked step (keras/src/backend/jax/rnn.py
          ``output_tm1 = states[0]``), or outputs zeros with ``zero_output_for_mask``.
        - JAX, unrolled: zeros start, and ``zero_output_for_mask`` is ignored.
        """
        zero = self.zero_output_for_mask
        if self.keras_backend == "jax":
            return (False, False, False) if self.unroll else (not zero, zero, False)
        return (False, False, zero) if self.unroll else (False, zero, False)

    def _run(self, x, mask, initial_state, keep):
        """(sequence or None, last output, final states, trace or None): a call, or a trace.

        `keep`: None for a plain call; for a trace, the names of the quantities it holds.
        Call and trace run the very same operations (`_loop`), so they agree bit for bit.
        """
        x = self._check_x(x)
        batch, timesteps = x.shape[:2]
        mask = self._check_mask(mask, batch, timesteps)
        start = self._start_state(initial_state, batch)
        if mask is not None:
            self._check_backend_mask()

        # Time-major from here on: step t of the processing order is row t.
        x = x.transpose(1, 0, 2)  # (timesteps, batch, input_dim)
        if self.go_backwards:
            x = x[::-1]
            mask = None if mask is None else mask[:, ::-1]
        step_mask = None if mask is None else mask.T[:, :, None]  # (timesteps, batch, 1)
        kept = () if keep is None else keep
        # Every step's output is kept for return_sequences and for a trace that keeps it.
        wants_outputs = self.return_sequences or "output" in kept
        inputs = _InputProjection(self, x, keeps_product=self.PREACTIVATIONS[0] in kept)
        the_plan = parallel.plan(batch, inputs.width, inputs.largest_product())
        held, output, states = self._loop(inputs, start, step_mask, kept, wants_outputs, the_plan)

        outputs = held.get("output")
        zero_after = self._mask_rule()[2]
        if zero_after and step_mask is not None:
            # Unrolled TensorFlow and torch: zero_output_for_mask after the loop (see _mask_rule).
            output = np.where(step_mask[-1], output, 0)
            if wants_outputs:
                outputs[...] = np.where(step_mask[::-1] if self.go_backwards else step_mask, outputs, 0)
        if self.stateful:
            self.states = [s.copy() for s in states]  # not the arrays returned to the caller
        sequence = outputs.transpose(1, 0, 2) if wants_outputs else None
        # The caller gets its own last output and states (small); the sequence is the run's own
        # array, read-only when a trace holds it.
        output, states = np.array(output), tuple(np.array(s) for s in states)
        if keep is None:
            return sequence, output, states, None
        replay = None
        if all(name in kept for name in self._replay_needs()):
            replay = _Replay(self, x, the_plan, held, start[0])
        trace = self._trace({name: held[name].transpose(1, 0, 2) for name in kept}, start=start,
                            mask=None if mask is None else np.array(mask), replay=replay)
        return sequence, output, states, trace

    def _loop(self, inputs, start, step_mask, kept, wants_outputs, the_plan):
        """The loop over time: (held, last output, final states).

        Every step writes its quantities straight into preallocated rows, time-major: the rows of
        a kept quantity (`_Rows`), scratch rows otherwise (freed when the loop returns). `held`
        maps every name in `kept`, and "output" when `wants_outputs`, to its (timesteps, batch,
        ...) array (and the other pre-activation names to None); a trace's arrays are batch-major
        views of them. Each block of batch rows of `the_plan` (`reflstm.cells.parallel`) runs its
        own loop over time, side by side.
        """
        timesteps, batch = inputs.x.shape[:2]
        units, dtype, width = self.units, self.dtype, inputs.width
        starts_at_h0, zero_masked, _ = self._mask_rule()
        stored = set(kept)
        if wants_outputs and step_mask is None:
            stored.add("h")  # the output is h: one array serves for both
        rows = _Rows(timesteps, (batch, units), dtype, stored)
        part_rows = _Rows(timesteps, (batch, width), dtype, stored)
        h_U = part_rows.of(self.PREACTIVATIONS[1])
        if step_mask is None:
            outputs = rows.of("h", turns=2)
        else:
            outputs = rows.of("output", always=wants_outputs, turns=2)
        # A gate nobody keeps is written over its own block of h_{t-1} U when nobody keeps that
        # either (the cells' contract, in the module docstring).
        shared = h_U.rows if isinstance(h_U, _Scratch) else None
        gate_rows = [
            rows.of(name, shared=None if shared is None else shared[..., k * units : (k + 1) * units])
            for k, name in enumerate(self.GATE_FIELDS)
        ]
        state_rows = [rows.of(name, turns=2) for name in self.STATES]
        cell_step = self._step  # looked up once: the loop runs it every step

        def run_rows(batch_rows, projection):
            """The loop over time for `batch_rows` (a slice): they read no other row."""
            gates = [_rows_of(r, batch_rows) for r in gate_rows]
            new_state = [_rows_of(r, batch_rows) for r in state_rows]
            out, h_part = _rows_of(outputs, batch_rows), _rows_of(h_U, batch_rows)
            masks = None if step_mask is None else step_mask[:, batch_rows]
            states = tuple(s[batch_rows] for s in start)
            # Keras's "previous output" before step 0, read only at masked steps (so no zeros
            # are made without a mask): zeros, or h0 on JAX's rolled loop (_mask_rule).
            output = states[0] if starts_at_h0 or masks is None else np.zeros_like(states[0])
            for t in range(timesteps):
                new_states = [r[t] for r in new_state]
                cell_step(projection.step(t), states, h_part[t], [r[t] for r in gates] + new_states)
                if masks is not None:
                    # keras/src/backend/tensorflow/rnn.py: a masked step keeps the previous state,
                    # and outputs the previous output (zeros before any step ran; h0 on JAX) or,
                    # with zero_output_for_mask, zeros.
                    skipped = ~masks[t]
                    for new, old in zip(new_states, states):
                        np.copyto(new, old, where=skipped)
                    np.copyto(out[t], new_states[0])
                    np.copyto(out[t], 0 if zero_masked else output, where=skipped)
                states, output = tuple(new_states), out[t]

        blocks = [(rows, _BlockProjection(inputs, rows)) for rows in the_plan.blocks]
        parallel.run(the_plan, run_rows, blocks)
        held = {**rows.held, **part_rows.held, self.PREACTIVATIONS[0]: inputs.product}
        if wants_outputs:
            held["output"] = outputs
        return held, outputs[timesteps - 1], tuple(r[timesteps - 1] for r in state_rows)

    def _replay_needs(self):
        """What a trace must hold to recompute the pre-activation parts it does not keep."""
        return ("h",)

    def _recurrent_part(self, h_prev, gates, out):
        """h_{t-1} U into `out`, the product the step made (a cell whose step makes other
        products, the GRU with reset_after=False, says so by overriding this)."""
        np.matmul(h_prev, self.recurrent_kernel, out=out)

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
        """The states a run starts from: arrays of its own (C-contiguous copies), which the steps'
        products and a trace's replay read."""
        shape = (batch, self.units)
        kind = type(self).__name__
        if initial_state is None:
            if self.stateful and self.states is not None:
                if self.states[0].shape != shape:
                    raise refuse(
                        "x",
                        f"batch size {self.states[0].shape[0]}, the batch size of the stateful "
                        f"{kind}'s carried states (reset_state keeps it; build a new {kind} to "
                        "change it)",
                        f"batch size {batch}",
                    )
                return tuple(np.array(s, order="C") for s in self.states)
            return tuple(np.zeros(shape, self.dtype) for _ in self.STATES)
        names = [f"{name}0" for name in self.STATES]
        if len(names) == 1 and isinstance(initial_state, np.ndarray):
            initial_state = [initial_state]  # Keras takes a one-state layer's state bare, too
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != len(names):
            count = {1: "one array", 2: "two arrays"}[len(names)]
            raise refuse(
                "initial_state", f"a list [{', '.join(names)}] of {count}", describe(initial_state)
            )
        states = []
        for k, (name, state) in enumerate(zip(names, initial_state)):
            argument = f"initial_state[{k}] ({name})"
            state = _numeric(argument, state)
            if state.shape != shape:
                raise refuse(argument, f"shape (batch, units) = {shape}", state)
            states.append(np.array(state, self.dtype, order="C"))
        if self.stateful and self.keras_version == 2 and self.states is not None and any(
            np.any(s) for s in self.states
        ):
            # tf_keras base_rnn.py _process_inputs: a stateful layer given initial_state uses its
            # carried states instead, unless they are all zeros (Keras 3 always takes initial_state).
            return self._start_state(None, batch)
        return tuple(states)

    def _check_backend_mask(self):
        """Refuse a mask where Keras 3's backend fails on it or leaves float64."""
        if self.keras_backend == "torch" and self.unroll and self.go_backwards:
            raise refuse(
                "mask",
                "no mask for an unrolled go_backwards layer on keras_backend='torch' (Keras 3 "
                "fails there: keras/src/backend/torch/rnn.py calls torch.flip on a tuple)",
                "a mask",
            )
        reason = _float64_refusal(self.keras_backend, self.dtype, fused=False)
        if reason is not None:
            raise refuse(
                "mask",
                f"no mask for a float64 {type(self).__name__} on keras_backend="
                f"{self.keras_backend!r} ({reason}); or float32 weights",
                "a mask",
            )

    def _set_options(self, activation_names, keras_version, flags, keras_backend="tensorflow"):
        """Check and keep the activations (name -> argument), the boolean options and the backend."""
        for name, flag in flags.items():
            if not isinstance(flag, (bool, np.bool_)):
                raise refuse(name, "True or False", flag)
            setattr(self, name, bool(flag))
        if keras_backend not in KERAS_BACKENDS:
            raise refuse("keras_backend", "one of " + ", ".join(map(repr, KERAS_BACKENDS)),
                         describe(keras_backend))
        if keras_version == 2 and keras_backend != "tensorflow":
            raise refuse("keras_backend", "'tensorflow' for keras_version=2 (tf_keras runs on "
                         "TensorFlow only)", repr(keras_backend))
        self.keras_backend = keras_backend
        reason = _float64_refusal(keras_backend, self.dtype, fused=self._keras_fused_loop())
        if reason is not None:
            raise refuse(
                "kernel",
                f"float32 weights for a {type(self).__name__} on keras_backend={keras_backend!r} "
                f"({reason})",
                "float64 weights",
            )
        self.keras_version = keras_version
        functions = {}
        for argument, name in activation_names.items():
            setattr(self, argument, name)
            functions[argument] = activations.get(name, keras_version, argument, self.dtype)
        self.states = None  # the states carried between calls when stateful; None otherwise
        return functions

    def _repr(self, extra):
        options = [f"units={self.units}", f"input_dim={self.input_dim}", f"dtype={self.dtype}"]
        options += extra
        options += [name for name in _FLAGS if getattr(self, name)]
        if self.bias is None:
            options.append("use_bias=False")
        if self.keras_backend != "tensorflow":
            options.append(f"keras_backend={self.keras_backend!r}")
        return (
            f"reflstm.{type(self).__name__}({', '.join(options)}, "
            f"keras_version={self.keras_version})"
        )


class _Rows:
    """Where a run writes each per-step quantity: (timesteps, *shape) arrays for the names in
    `stored` (`held`), scratch rows for any other: one, or two in turn for a state (`turns=2`),
    whose previous value stays readable while the next is written."""

    def __init__(self, timesteps, shape, dtype, stored):
        self.timesteps, self.shape, self.dtype, self.stored = timesteps, shape, dtype, stored
        self.held, self.made = {}, {}

    def of(self, name, always=False, turns=1, shared=None):
        """The rows of quantity `name` (made on the first call, the same ones after); `shared`:
        one scratch row of another quantity's that serves as this one's unless it is kept."""
        if name not in self.made:
            if name in self.stored or always:
                self.made[name] = self.held[name] = np.empty((self.timesteps, *self.shape), self.dtype)
            else:
                scratch = np.empty((turns, *self.shape), self.dtype) if shared is None else shared
                self.made[name] = _Scratch(scratch)
        return self.made[name]


class _Scratch:
    """Scratch rows indexed like a whole array: row t is row t % len(rows)."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, t):
        return self.rows[t % len(self.rows)]


def _rows_of(rows, batch_rows):
    """`batch_rows` (a slice) of every step's rows (time-major, or `_Scratch`), indexed by step."""
    if isinstance(rows, _Scratch):
        return _Scratch(rows.rows[:, batch_rows])
    return rows[:, batch_rows]


# The input projection x_t W is made for a run of steps at a time, so that a trace that does not
# keep it never holds all of it: at most this many bytes in all (and at least one step for each
# block of batch rows).
PROJECTION_BLOCK_BYTES = 2**20


class _InputProjection:
    """x_t W (+ b) for the steps of one run, made `steps` steps at a time for each block of batch
    rows (`_BlockProjection`).

    With `keeps_product` the products x_t W are also kept whole in `product` (timesteps, batch,
    width). `product_of` makes the product of some steps and batch rows, the same way for the run
    and for a trace's replay: the same operands, shapes and runs of steps.
    """

    def __init__(self, layer, x, keeps_product):
        self.layer, self.x = layer, x  # x: (timesteps, batch, input_dim), processing order
        timesteps, batch = x.shape[:2]
        self.width = layer.kernel.shape[1]
        step_bytes = max(1, batch * self.width * layer.dtype.itemsize)
        self.steps = max(1, min(timesteps, PROJECTION_BLOCK_BYTES // step_bytes))
        self.product = np.empty((timesteps, batch, self.width), layer.dtype) if keeps_product else None

    def largest_product(self):
        """The multiply-adds of the largest matrix product of the run: x_t W for `steps` steps,
        or h_{t-1} U (a cell's other products are no larger)."""
        timesteps, batch, input_dim = self.x.shape
        return max(self.steps * input_dim, self.layer.units) * batch * self.width

    def product_of(self, first, batch_rows, out):
        """x_t W for `batch_rows` (a slice) of the steps from `first` on, into `out` (steps, rows, width)."""
        x = self.x[first : first + len(out), batch_rows]
        np.matmul(x.reshape(-1, x.shape[-1]), self.layer.kernel, out=out.reshape(-1, out.shape[-1]))

    def whole(self, batch_rows, out):
        """x_t W of every step for `batch_rows`, into those rows of `out` (timesteps, batch, width)."""
        timesteps = len(self.x)
        made = np.empty((self.steps, batch_rows.stop - batch_rows.start, self.width), self.layer.dtype)
        for first in range(0, timesteps, self.steps):
            made = made[: min(self.steps, timesteps - first)]
            self.product_of(first, batch_rows, made)
            out[first : first + len(made), batch_rows] = made


class _BlockProjection:
    """x_t W + b for one block of batch rows: `step(t)` is a private (rows, width) row, which the
    cell may overwrite with its pre-activations."""

    def __init__(self, inputs, batch_rows):
        self.inputs, self.batch_rows = inputs, batch_rows
        shape = (inputs.steps, batch_rows.stop - batch_rows.start, inputs.width)
        self.rows = np.empty(shape, inputs.layer.dtype)
        self.first = None  # the first step of the run of steps in `rows`

    def step(self, t):
        inputs = self.inputs
        first = t - t % inputs.steps
        if first != self.first:
            self.first = first
            rows = self.rows[: min(inputs.steps, len(inputs.x) - first)]
            inputs.product_of(first, self.batch_rows, rows)
            if inputs.product is not None:
                inputs.product[first : first + len(rows), self.batch_rows] = rows
            if inputs.layer._input_bias is not None:
                rows += inputs.layer._input_bias
        return self.rows[t - first]


class _Replay:
    """The pre-activation parts of a trace that did not keep them, recomputed when first asked
    for, with the products its run made: x_t W (`_InputProjection`) and h_{t-1} U step by step
    from the h (and r) the trace holds (the cell's `_recurrent_part`), block by block of the run's
    `Plan`, under its hold on BLAS (see `reflstm.cells.parallel`). Holds the run's input,
    time-major (read-only); computes both parts once, then keeps them."""

    def __init__(self, layer, x, the_plan, held, h0):
        self.layer, self.parts, self.plan = layer, layer.PREACTIVATIONS, the_plan
        # What the trace holds, time-major: a copy of the run's input, and its rows.
        self.x = np.array(x, order="C")
        self.x.flags.writeable = False
        self.held = {name: held[name] for name in layer.GATE_FIELDS + layer.STATES if name in held}
        self.h0 = h0
        self.done = {}

    def part(self, name):
        if not self.done:
            timesteps, batch, _ = self.x.shape
            width, dtype = self.layer.kernel.shape[1], self.layer.dtype
            input_part, recurrent_part = (np.empty((timesteps, batch, width), dtype) for _ in range(2))
            inputs = _InputProjection(self.layer, self.x, keeps_product=False)

            def recompute(batch_rows):
                inputs.whole(batch_rows, input_part)
                self._recurrent_part(batch_rows, recurrent_part)

            parallel.run(self.plan, recompute, [(rows,) for rows in self.plan.blocks])
            self.done = dict(zip(self.parts, (_frozen(input_part), _frozen(recurrent_part))))
        return self.done[name]

    def _recurrent_part(self, batch_rows, out):
        h = self.held["h"]
        for t in range(len(h)):
            h_prev = (self.h0 if t == 0 else h[t - 1])[batch_rows]
            gates = {name: rows[t][batch_rows] for name, rows in self.held.items()}
            self.layer._recurrent_part(h_prev, gates, out[t][batch_rows])


def _frozen(time_major):
    batch_major = time_major.transpose(1, 0, 2)
    batch_major.flags.writeable = False
    return batch_major


def _float64_refusal(keras_backend, dtype, fused):
    """Why Keras 3 on `keras_backend` does not compute a float64 layer in float64, or None.

    `fused`: the layer runs through the backend's own loop (Recurrent._keras_fused_loop, unmasked).
    Keras's type promotion maps float64 to float32 on every backend but TensorFlow
    (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE), and ``ops.matmul`` casts its
    result to that type (keras/src/backend/torch/numpy.py matmul), so a cell's matrix products
    come out in float32 while the rest stays float64. JAX without jax_enable_x64 goes further and
    stores and computes the whole layer in float32. torch's own LSTM and GRU loops
    (keras/src/backend/torch/rnn.py _fallback_lstm, _fallback_gru) use torch.matmul and stay
    float64. reflstm computes in one dtype, so it refuses what it would not reproduce.
    """
    if dtype != np.float64 or keras_backend == "tensorflow":
        return None
    if keras_backend == "jax":
        return ("Keras 3 on JAX computes a float64 layer in float32: without jax_enable_x64 it "
                "stores the weights as float32, and with it ops.matmul still rounds to float32")
    if not fused:
        return ("Keras 3 on torch runs it through the cell, whose ops.matmul rounds each matrix "
                "product to float32 (Keras maps float64 to float32 off TensorFlow)")
    return None


def check_weights(kernel, recurrent_kernel, blocks):
    """kernel (input_dim, blocks * units) and recurrent_kernel (units, blocks * units), checked."""
    kernel = _weight("kernel", kernel)
    term = f"{blocks} * units" if blocks > 1 else "units"
    if kernel.ndim != 2 or kernel.shape[1] % blocks or kernel.shape[1] == 0:
        raise refuse("kernel", f"a 2-D array (input_dim, {term})", kernel)
    units = kernel.shape[1] // blocks
    recurrent_kernel = _weight("recurrent_kernel", recurrent_kernel, kernel.dtype)
    if recurrent_kernel.shape != (units, blocks * units):
        raise refuse(
            "recurrent_kernel",
            f"shape (units, {term}) = {(units, blocks * units)} to match kernel {kernel.shape}",
            recurrent_kernel,
        )
    return kernel, recurrent_kernel, units


def _numeric(name, value):
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise refuse(name, "an array of real numbers", value)
    return value


def _weight(name, value, dtype=None):
    """A read-only copy of a weight array, checked to be float32 or float64 (and `dtype`, if given)."""
    value = np.array(value)  # a copy: the layer must not change when the caller's array does
    if value.dtype not in _DTYPES:
        raise refuse(name, "a float32 or float64 array", value)
    if dtype is not None and value.dtype != dtype:
        raise refuse(name, f"dtype {dtype}, the dtype of kernel", value)
    value.flags.writeable = False
    return value


# Keras options that the recurrent layers have no argument for, and why.
_NOT_ARGUMENTS = {
    "units": "no units argument: units comes from kernel's shape (input_dim, gates * units)",
    "dropout": "no dropout: Keras applies it only in training, and reflstm is inference (leave it out)",
    "recurrent_dropout": "no recurrent_dropout: Keras applies it only in training, and reflstm is "
    "inference (leave it out)",
    "use_bias": "no use_bias: pass bias=None for use_bias=False",
    "time_major": "no time_major: pass x as (batch, timesteps, input_dim)",
}


def _keras1_hint(cls):
    return f"Keras 1's {cls.KERAS1_ARRAYS} per-gate arrays go to {cls.__name__}.from_keras1"


def _check_arguments(cls, arrays, options):
    """Refuse, as a ReflstmError naming the argument, what LSTM(...), GRU(...) or SimpleRNN(...)
    cannot take: Python would say it with a bare TypeError."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters
    positional = [n for n, p in parameters.items() if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"]
    if len(arrays) > len(positional):
        hint = f" ({_keras1_hint(cls)})" if len(arrays) == cls.KERAS1_ARRAYS else ""
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
                raise refuse(name, "one array of numbers" + (f" ({_keras1_hint(cls)})" if cls.KERAS1_ARRAYS
                             else ""), f"a list of {len(given[name])} arrays of "
                             "different shapes") from None
    for name in ("kernel", "recurrent_kernel"):
        if name not in given:
            raise refuse(name, "an array, as layer.get_weights() returns it", "nothing")
