"""PyTorch nn.LSTM <-> reflstm. PyTorch words live here and nowhere else.

PyTorch keeps, per layer l and direction (suffix "_reverse" for the backward one):

    weight_ih_l{l}  (4*hidden, input)    gates i, f, g, o  (g is Keras's candidate c)
    weight_hh_l{l}  (4*hidden, hidden)
    bias_ih_l{l}, bias_hh_l{l}  (4*hidden,)  two biases, always added together

so Keras's kernel is weight_ih transposed, recurrent_kernel is weight_hh transposed, in the same
gate order (Keras i, f, c, o = PyTorch i, f, g, o), and Keras's one bias is bias_ih + bias_hh.
The reverse direction runs last step to first: it becomes an LSTM with go_backwards=True, whose
outputs are in processing order — PyTorch returns them in input order.
"""

import numpy as np

from reflstm.errors import pick, refuse
from reflstm.cells.lstm import LSTM

__all__ = ["arguments", "lstm_arguments", "to_state_dict", "TorchLSTM"]


def _state_dict(module_or_state_dict):
    """A dict of NumPy arrays from an nn.LSTM or its state_dict, and the module's settings."""
    settings = {}
    if hasattr(module_or_state_dict, "state_dict") and hasattr(module_or_state_dict, "hidden_size"):
        module = module_or_state_dict
        if getattr(module, "proj_size", 0):
            raise refuse("module", "an nn.LSTM without projections (proj_size=0)",
                         f"proj_size={module.proj_size}")
        if not getattr(module, "bias", True):
            settings["bias"] = False
        settings.update(num_layers=module.num_layers, bidirectional=module.bidirectional,
                        batch_first=module.batch_first)
        state = module.state_dict()
    elif isinstance(module_or_state_dict, dict):
        state = module_or_state_dict
    else:
        raise refuse("module_or_state_dict", "a torch nn.LSTM or its state_dict",
                     type(module_or_state_dict).__name__)
    arrays = {k: _numpy(v) for k, v in state.items()}
    if any(k.startswith("weight_hr") for k in arrays):
        raise refuse("module_or_state_dict", "an LSTM without projections", "weight_hr_* (proj_size > 0)")
    return arrays, settings


def _numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value)


def arguments(kind, module_or_state_dict, layer=0, reverse=False):
    """Keyword arguments of reflstm layer `kind` ("LSTM", ...) for one layer and direction."""
    return pick({"LSTM": lstm_arguments}, kind, "PyTorch")(module_or_state_dict, layer, reverse)


def lstm_arguments(module_or_state_dict, layer=0, reverse=False):
    """reflstm.LSTM keyword arguments for one layer and direction of a PyTorch LSTM."""
    arrays, _ = _state_dict(module_or_state_dict)
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    if f"weight_ih{suffix}" not in arrays:
        raise refuse("layer / reverse", "a layer and direction the LSTM has",
                     f"no weight_ih{suffix} among {sorted(k for k in arrays if k.startswith('weight_ih'))}")
    bias = None
    if f"bias_ih{suffix}" in arrays or f"bias_hh{suffix}" in arrays:
        if f"bias_ih{suffix}" not in arrays or f"bias_hh{suffix}" not in arrays:
            raise refuse("module_or_state_dict", f"both bias_ih{suffix} and bias_hh{suffix}, or neither",
                         "only one of them")
        bias = arrays[f"bias_ih{suffix}"] + arrays[f"bias_hh{suffix}"]
    return dict(
        kernel=arrays[f"weight_ih{suffix}"].T,
        recurrent_kernel=arrays[f"weight_hh{suffix}"].T,
        bias=bias,
        return_sequences=True,
        return_state=True,
        go_backwards=bool(reverse),
    )


def to_state_dict(lstm, layer=0, reverse=False):
    """The arrays of `lstm` named as PyTorch's state_dict, for layer `layer` (and direction).

    PyTorch has two biases where Keras has one: the whole bias goes to bias_ih, and bias_hh is
    zeros (any split with the same sum computes the same LSTM).
    """
    pick({"LSTM": None}, type(lstm).__name__, "PyTorch")
    if lstm.activation != "tanh" or lstm.recurrent_activation != "sigmoid":
        raise refuse("lstm", "tanh and sigmoid, the only activations PyTorch's LSTM has",
                     f"activation={lstm.activation!r}, recurrent_activation={lstm.recurrent_activation!r}")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    out = {
        f"weight_ih{suffix}": np.ascontiguousarray(lstm.kernel.T),
        f"weight_hh{suffix}": np.ascontiguousarray(lstm.recurrent_kernel.T),
    }
    if lstm.bias is not None:
        out[f"bias_ih{suffix}"] = np.array(lstm.bias)
        out[f"bias_hh{suffix}"] = np.zeros_like(lstm.bias)
    return out


class TorchLSTM:
    """A whole PyTorch nn.LSTM (all layers, both directions) as reflstm LSTMs.

    Calling it returns what the module returns: ``output, (h_n, c_n)``, with the module's
    batch_first layout and its (num_layers * num_directions, batch, hidden) states.
    """

    def __init__(self, module):
        arrays, settings = _state_dict(module)
        if "num_layers" not in settings:
            raise refuse("module", "an nn.LSTM module (a state_dict lacks num_layers and batch_first)",
                         type(module).__name__)
        self.num_layers = settings["num_layers"]
        self.bidirectional = settings["bidirectional"]
        self.batch_first = settings["batch_first"]
        directions = (False, True) if self.bidirectional else (False,)
        self.layers = [
            [LSTM(**lstm_arguments(arrays, layer, reverse)) for reverse in directions]
            for layer in range(self.num_layers)
        ]

    def __call__(self, x, hx=None):
        x = np.asarray(x)
        x = x if self.batch_first else x.transpose(1, 0, 2)  # (batch, seq, features)
        h_n, c_n = [], []
        for layer, lstms in enumerate(self.layers):
            outputs = []
            for direction, lstm in enumerate(lstms):
                index = layer * len(lstms) + direction
                state = None if hx is None else [np.asarray(hx[0])[index], np.asarray(hx[1])[index]]
                y, h, c = lstm(x, initial_state=state)
                outputs.append(y[:, ::-1] if lstm.go_backwards else y)  # back to input order
                h_n.append(h)
                c_n.append(c)
            x = np.concatenate(outputs, axis=-1)
        output = x if self.batch_first else x.transpose(1, 0, 2)
        return output, (np.stack(h_n), np.stack(c_n))
