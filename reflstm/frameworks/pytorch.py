"""PyTorch nn.LSTM, nn.GRU and nn.RNN <-> reflstm. PyTorch words live here and nowhere else.

PyTorch keeps, per layer l and direction (suffix "_reverse" for the backward one), k gate blocks:

    weight_ih_l{l}  (k*hidden, input)
    weight_hh_l{l}  (k*hidden, hidden)
    bias_ih_l{l}, bias_hh_l{l}  (k*hidden,)  two biases; absent with bias=False

    nn.LSTM  k = 4, gates i, f, g, o (g is Keras's candidate c): Keras's order, and
             Keras's one bias is bias_ih + bias_hh.
    nn.GRU   k = 3, gates r, z, n (n is Keras's candidate h): Keras's z, r, h reordered, and
                 n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
                 h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
             (torch/nn/modules/rnn.py, GRU's docstring): the reset gate acts after the matrix
             product, which is Keras's GRU with reset_after=True, whose bias (2, 3*units) is
             [bias_ih; bias_hh] reordered. Keras's reset_after=False has no PyTorch form.
    nn.RNN   k = 1, h_t = tanh or relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (its
             `nonlinearity`): a SimpleRNN with that activation, bias = bias_ih + bias_hh.

so Keras's kernel is weight_ih transposed and recurrent_kernel is weight_hh transposed, each
with its gate blocks in Keras's order. The reverse direction runs last step to first: it becomes
a layer with go_backwards=True, whose outputs are in processing order — PyTorch returns them in
input order.
"""

import numpy as np

from reflstm.cells.gru import GRU
from reflstm.cells.lstm import LSTM
from reflstm.cells.simple_rnn import SimpleRNN
from reflstm.errors import describe, pick, refuse
from reflstm.frameworks.layouts import KERAS, KERAS_GRU, TORCH, TORCH_GRU, reorder

__all__ = ["arguments", "lstm_arguments", "gru_arguments", "simple_rnn_arguments", "to_state_dict",
           "TorchLSTM", "TorchGRU", "TorchRNN"]

# reflstm's layer -> the torch module, its gate blocks k, and the gate orders (torch's, Keras's).
_MODULE = {"LSTM": "nn.LSTM", "GRU": "nn.GRU", "SimpleRNN": "nn.RNN"}
_BLOCKS = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_ORDERS = {"LSTM": (TORCH, KERAS), "GRU": (TORCH_GRU, KERAS_GRU), "SimpleRNN": None}
# torch/nn/modules/rnn.py RNNBase: `mode` names the cell; nn.RNN's mode carries its nonlinearity.
_KIND_OF_MODE = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "SimpleRNN", "RNN_RELU": "SimpleRNN"}
_NONLINEARITIES = ("tanh", "relu")  # nn.RNN's, torch/nn/modules/rnn.py RNN.__init__


def _read(kind, module_or_state_dict):
    """A dict of NumPy arrays from a torch module of `kind` or its state_dict, and the module's
    settings (none for a state_dict). Refuses a module or arrays of another kind by name."""
    wanted = f"a torch {_MODULE[kind]} or its state_dict"
    settings = {}
    if hasattr(module_or_state_dict, "state_dict") and hasattr(module_or_state_dict, "hidden_size"):
        module = module_or_state_dict
        found = _KIND_OF_MODE.get(getattr(module, "mode", None))
        if found != kind:
            received = type(module).__name__
            if found is not None:
                received = f"nn.{received} (whose layer is reflstm.{found})"
            raise refuse("module_or_state_dict", wanted, received)
        if getattr(module, "proj_size", 0):
            raise refuse("module", "an nn.LSTM without projections (proj_size=0)",
                         f"proj_size={module.proj_size}")
        settings.update(num_layers=module.num_layers, bidirectional=module.bidirectional,
                        batch_first=module.batch_first, dropout=module.dropout, training=module.training)
        if kind == "SimpleRNN":
            settings["nonlinearity"] = module.nonlinearity
        state = module.state_dict()
    elif isinstance(module_or_state_dict, dict):
        state = module_or_state_dict
    else:
        raise refuse("module_or_state_dict", wanted, type(module_or_state_dict).__name__)
    arrays = {k: _numpy(v) for k, v in state.items()}
    if any(k.startswith("weight_hr") for k in arrays):
        raise refuse("module_or_state_dict", "an LSTM without projections", "weight_hr_* (proj_size > 0)")
    for name in sorted(k for k in arrays if k.startswith("weight_hh")):
        _check_blocks(kind, name, arrays[name], wanted)
    return arrays, settings


def _check_blocks(kind, name, weight_hh, wanted):
    """weight_hh is (k*hidden, hidden) with k = `kind`'s gate blocks; other k are other modules'."""
    shape = weight_hh.shape
    if len(shape) != 2 or shape[1] == 0 or shape[0] % shape[1]:
        raise refuse(name, "a (k * hidden, hidden) matrix", weight_hh)
    blocks = shape[0] // shape[1]
    if blocks != _BLOCKS[kind]:
        others = [other for other, k in _BLOCKS.items() if k == blocks]
        whose = f", an {_MODULE[others[0]]}'s" if others else ""
        raise refuse("module_or_state_dict", f"{wanted} ({name} of {_BLOCKS[kind]} * hidden rows)",
                     f"{name} of shape {shape}: {blocks} * hidden rows{whose}")


def _numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value)


def arguments(kind, module_or_state_dict, layer=0, reverse=False, *, nonlinearity=None):
    """Keyword arguments of reflstm layer `kind` ("LSTM", "GRU", "SimpleRNN") for one layer and
    direction of a torch module of that kind (nn.LSTM, nn.GRU, nn.RNN) or its state_dict.

    A state_dict does not record an nn.RNN's `nonlinearity`: pass it ("tanh" or "relu") with a
    SimpleRNN's state_dict. Only nn.RNN has one.
    """
    reader = pick({"LSTM": lstm_arguments, "GRU": gru_arguments, "SimpleRNN": simple_rnn_arguments},
                  kind, "PyTorch")
    if kind == "SimpleRNN":
        return reader(module_or_state_dict, layer, reverse, nonlinearity=nonlinearity)
    if nonlinearity is not None:
        raise refuse("nonlinearity", f"None: only nn.RNN has a nonlinearity, not {_MODULE[kind]}",
                     repr(nonlinearity))
    return reader(module_or_state_dict, layer, reverse)


def _direction(kind, arrays, layer, reverse):
    """One layer and direction's Keras kernel, recurrent_kernel, and the two biases (Keras's gate
    order), or None for the biases of a module without them; plus the options every layer takes."""
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    if f"weight_ih{suffix}" not in arrays:
        raise refuse("layer / reverse", f"a layer and direction the {_MODULE[kind]} has",
                     f"no weight_ih{suffix} among {sorted(k for k in arrays if k.startswith('weight_ih'))}")
    biases = None
    if f"bias_ih{suffix}" in arrays or f"bias_hh{suffix}" in arrays:
        if f"bias_ih{suffix}" not in arrays or f"bias_hh{suffix}" not in arrays:
            raise refuse("module_or_state_dict", f"both bias_ih{suffix} and bias_hh{suffix}, or neither",
                         "only one of them")
        biases = [_to_keras(kind, arrays[f"bias_ih{suffix}"]), _to_keras(kind, arrays[f"bias_hh{suffix}"])]
    common = dict(
        kernel=_to_keras(kind, arrays[f"weight_ih{suffix}"].T),
        recurrent_kernel=_to_keras(kind, arrays[f"weight_hh{suffix}"].T),
        return_sequences=True,
        return_state=True,
        go_backwards=bool(reverse),
    )
    return common, biases


def _to_keras(kind, array):
    """`array`'s gate blocks (last axis) from torch's order to Keras's."""
    return array if _ORDERS[kind] is None else reorder(array, *_ORDERS[kind])


def _to_torch(kind, array):
    """`array`'s gate blocks (last axis) from Keras's order to torch's."""
    return array if _ORDERS[kind] is None else reorder(array, *reversed(_ORDERS[kind]))


def lstm_arguments(module_or_state_dict, layer=0, reverse=False):
    """reflstm.LSTM keyword arguments for one layer and direction of an nn.LSTM (bias_ih + bias_hh)."""
    arrays, _ = _read("LSTM", module_or_state_dict)
    common, biases = _direction("LSTM", arrays, layer, reverse)
    return dict(common, bias=None if biases is None else biases[0] + biases[1])


def gru_arguments(module_or_state_dict, layer=0, reverse=False):
    """reflstm.GRU keyword arguments for one layer and direction of an nn.GRU: reset_after=True,
    bias (2, 3*units) = [bias_ih; bias_hh] in Keras's order z, r, h."""
    arrays, _ = _read("GRU", module_or_state_dict)
    common, biases = _direction("GRU", arrays, layer, reverse)
    return dict(common, bias=None if biases is None else np.stack(biases), reset_after=True)


def simple_rnn_arguments(module_or_state_dict, layer=0, reverse=False, *, nonlinearity=None):
    """reflstm.SimpleRNN keyword arguments for one layer and direction of an nn.RNN: activation
    = its nonlinearity, bias = bias_ih + bias_hh. A state_dict needs `nonlinearity` given."""
    arrays, settings = _read("SimpleRNN", module_or_state_dict)
    if "nonlinearity" in settings:
        if nonlinearity is not None and nonlinearity != settings["nonlinearity"]:
            raise refuse("nonlinearity", f"None or the module's own, {settings['nonlinearity']!r}",
                         repr(nonlinearity))
        nonlinearity = settings["nonlinearity"]
    elif nonlinearity is None:
        raise refuse("nonlinearity", "'tanh' or 'relu' with an nn.RNN's state_dict, which does not "
                     "record it: pass the nn.RNN module itself, or build reflstm.SimpleRNN(**reflstm."
                     "frameworks.pytorch.arguments('SimpleRNN', state_dict, nonlinearity=...))", "None")
    if nonlinearity not in _NONLINEARITIES:
        raise refuse("nonlinearity", "'tanh' or 'relu', nn.RNN's two", describe(nonlinearity))
    common, biases = _direction("SimpleRNN", arrays, layer, reverse)
    return dict(common, bias=None if biases is None else biases[0] + biases[1], activation=nonlinearity)


def to_state_dict(recurrent, layer=0, reverse=False):
    """The arrays of reflstm layer `recurrent` named as a PyTorch state_dict, for the module's
    layer `layer` (and direction): an LSTM's for nn.LSTM, a GRU's for nn.GRU, a SimpleRNN's for
    nn.RNN(nonlinearity=recurrent.activation).

    Where PyTorch has two biases and Keras one (LSTM, SimpleRNN), the whole bias goes to bias_ih
    and bias_hh is zeros (any split with the same sum computes the same layer); a GRU's two bias
    rows are bias_ih and bias_hh. A layer without a bias loads into a module built with bias=False.
    """
    kind = type(recurrent).__name__
    pick(_MODULE, kind, "PyTorch")
    _check_torch_has(kind, recurrent)
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    out = {
        f"weight_ih{suffix}": np.ascontiguousarray(_to_torch(kind, recurrent.kernel).T),
        f"weight_hh{suffix}": np.ascontiguousarray(_to_torch(kind, recurrent.recurrent_kernel).T),
    }
    bias = recurrent.bias
    if bias is not None:
        bias_ih, bias_hh = bias if kind == "GRU" else (bias, np.zeros_like(bias))
        out[f"bias_ih{suffix}"] = _to_torch(kind, np.array(bias_ih))
        out[f"bias_hh{suffix}"] = _to_torch(kind, np.array(bias_hh))
    return out


def _check_torch_has(kind, recurrent):
    """Refuse what the torch module of `kind` cannot compute: other activations, a GRU that
    resets before the matrix product."""
    if kind == "SimpleRNN":
        if recurrent.activation not in _NONLINEARITIES:
            raise refuse("recurrent", "activation 'tanh' or 'relu': nn.RNN is built with nonlinearity="
                         "'tanh' or nonlinearity='relu' and has no other", f"activation={recurrent.activation!r}")
        return
    if recurrent.activation != "tanh" or recurrent.recurrent_activation != "sigmoid":
        raise refuse("recurrent", f"tanh and sigmoid, the only activations PyTorch's {_MODULE[kind]} has",
                     f"activation={recurrent.activation!r}, "
                     f"recurrent_activation={recurrent.recurrent_activation!r}")
    if kind == "GRU" and not recurrent.reset_after:
        raise refuse("recurrent", "a GRU with reset_after=True: PyTorch's nn.GRU applies the reset gate "
                     "after the matrix product, r ⊙ (W_hn h + b_hn), and has no form that resets h "
                     "before it", "reset_after=False")


class _TorchStack:
    """A whole torch module of `KIND` (all layers, both directions) as reflstm layers; calling it
    returns what the module returns, with its batch_first layout and its (num_layers *
    num_directions, batch, hidden) states. TorchLSTM, TorchGRU and TorchRNN are this for their kind.
    """

    KIND = None
    LAYER = None

    def __init__(self, module):
        kind = self.KIND
        arrays, settings = _read(kind, module)
        if "num_layers" not in settings:
            raise refuse("module", f"an {_MODULE[kind]} module (a state_dict lacks num_layers and batch_first)",
                         type(module).__name__)
        if settings["training"] and settings["dropout"] and settings["num_layers"] > 1:
            # torch/nn/modules/rnn.py: dropout acts between layers in training mode only.
            raise refuse("module", "a module in eval mode (module.eval()) or with dropout=0: in training "
                         "mode dropout acts between its layers", f"dropout={settings['dropout']} in training mode")
        self.num_layers = settings["num_layers"]
        self.bidirectional = settings["bidirectional"]
        self.batch_first = settings["batch_first"]
        directions = (False, True) if self.bidirectional else (False,)
        extra = {"nonlinearity": settings["nonlinearity"]} if kind == "SimpleRNN" else {}
        self.layers = [
            [self.LAYER(**arguments(kind, arrays, layer, reverse, **extra)) for reverse in directions]
            for layer in range(self.num_layers)
        ]

    def __call__(self, x, hx=None):
        """output, and the final states as the module returns them, for input `x` and states `hx`.

        Args:
            x: (timesteps, batch, features), or (batch, timesteps, features) with batch_first.
            hx: None for zeros, or the module's initial states, each (num_layers *
                num_directions, batch, hidden): h_0 for nn.GRU and nn.RNN, (h_0, c_0) for nn.LSTM.
        """
        x = np.asarray(x)
        if x.ndim != 3:
            raise refuse("x", "a batch, (timesteps, batch, features) or with batch_first (batch, "
                         "timesteps, features); unbatched input is not modelled", x)
        starts = self._starts(hx)
        x = x if self.batch_first else x.transpose(1, 0, 2)  # (batch, timesteps, features)
        finals = [[] for _ in self.LAYER.STATES]  # per state, one (batch, hidden) per layer and direction
        for layer, directions in enumerate(self.layers):
            outputs = []
            for direction, recurrent in enumerate(directions):
                index = layer * len(directions) + direction
                start = None if starts is None else [s[index] for s in starts]
                y, *states = recurrent(x, initial_state=start)
                outputs.append(y[:, ::-1] if recurrent.go_backwards else y)  # back to input order
                for final, state in zip(finals, states):
                    final.append(state)
            x = np.concatenate(outputs, axis=-1)  # (batch, timesteps, num_directions * hidden)
        output = x if self.batch_first else x.transpose(1, 0, 2)
        finals = [np.stack(f) for f in finals]  # each (num_layers * num_directions, batch, hidden)
        return output, (tuple(finals) if len(finals) > 1 else finals[0])

    def _starts(self, hx):
        """hx as a list of the module's states, each (num_layers * num_directions, batch, hidden)."""
        if hx is None:
            return None
        count = len(self.LAYER.STATES)
        if count > 1 and (not isinstance(hx, (tuple, list)) or len(hx) != count):
            raise refuse("hx", f"None or a pair (h_0, c_0), as {_MODULE[self.KIND]} takes", describe(hx))
        starts = [np.asarray(s) for s in (hx if count > 1 else [hx])]
        stack = self.num_layers * (2 if self.bidirectional else 1)
        for start in starts:
            if start.ndim != 3 or start.shape[0] != stack:
                raise refuse("hx", f"states of shape (num_layers * num_directions, batch, hidden) with "
                             f"num_layers * num_directions = {stack}", start)
        return starts


class TorchLSTM(_TorchStack):
    """A whole PyTorch nn.LSTM as reflstm LSTMs: calling it returns ``output, (h_n, c_n)``."""

    KIND, LAYER = "LSTM", LSTM


class TorchGRU(_TorchStack):
    """A whole PyTorch nn.GRU as reflstm GRUs (reset_after=True): calling it returns ``output, h_n``."""

    KIND, LAYER = "GRU", GRU


class TorchRNN(_TorchStack):
    """A whole PyTorch nn.RNN (tanh or relu) as reflstm SimpleRNNs: calling it returns ``output, h_n``."""

    KIND, LAYER = "SimpleRNN", SimpleRNN
