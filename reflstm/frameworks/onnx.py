"""ONNX LSTM, GRU and RNN <-> reflstm. ONNX words live here and nowhere else.

An ONNX recurrent node holds k gate blocks of hidden_size rows per direction (axis 0,
num_directions = 1 or 2):

    W  (num_directions, k*hidden_size, input_size)
    R  (num_directions, k*hidden_size, hidden_size)
    B  (num_directions, 2*k*hidden_size)             [Wb, Rb]

    node   reflstm     k   ONNX gate order   Keras gate order   activations per direction (default)
    LSTM   LSTM        4   i, o, f, c        i, f, c, o         f, g, h  (Sigmoid, Tanh, Tanh)
    GRU    GRU         3   z, r, h           z, r, h            f, g     (Sigmoid, Tanh)
    RNN    SimpleRNN   1                                        f        (Tanh)

Keras's kernel is W[d] transposed with its gate blocks moved to Keras's order, its recurrent
kernel likewise R[d]. The biases:

- LSTM and RNN: Keras's one bias is Wb + Rb.
- GRU, linear_before_reset=1: h̃ = g(x W_h + Wb_h + r ⊙ (h R_h + Rb_h)), Keras's
  reset_after=True, whose bias rows are [Wb, Rb].
- GRU, linear_before_reset=0 (ONNX's default): h̃ = g(x W_h + (r ⊙ h) R_h + Rb_h + Wb_h). Rb_h
  stays outside the reset, so this is Keras's reset_after=False with the one bias Wb + Rb.

An LSTM's f acts on i, f, o, its g on the candidate and h on the output; Keras has one activation
for both, so g and h must agree. A GRU's f acts on z and r, g on h̃; an RNN's f is Keras's
activation. "reverse" runs last step to first like go_backwards, but ONNX returns its Y in input
order, where Keras returns processing order.
"""

from dataclasses import dataclass

import numpy as np

from reflstm.errors import pick, refuse
from reflstm.frameworks.layouts import KERAS, KERAS_GRU, ONNX, ONNX_GRU, reorder

__all__ = ["arguments", "to_onnx", "layers_from_onnx_file"]


@dataclass(frozen=True)
class _Node:
    """What one ONNX operator is to reflstm."""

    op: str  # the ONNX operator
    onnx_order: str  # gate blocks of W, R, Wb and Rb ("" for one block)
    keras_order: str
    functions: tuple  # the Keras option each activation of a direction sets, in ONNX's order
    defaults: tuple  # ONNX's default activations
    inputs: tuple  # the node's inputs after X
    own_attributes: tuple  # attributes only this operator has


_NODES = {
    "LSTM": _Node("LSTM", ONNX, KERAS, ("recurrent_activation", "activation", "activation"),
                  ("Sigmoid", "Tanh", "Tanh"), ("W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
                  ("input_forget", "P")),
    "GRU": _Node("GRU", ONNX_GRU, KERAS_GRU, ("recurrent_activation", "activation"), ("Sigmoid", "Tanh"),
                 ("W", "R", "B", "sequence_lens", "initial_h"), ("linear_before_reset",)),
    "SimpleRNN": _Node("RNN", "", "", ("activation",), ("Tanh",), ("W", "R", "B", "sequence_lens", "initial_h"),
                       ()),
}

# ONNX activation (name, alpha, beta) <-> (Keras activation name, Keras version it belongs to).
# HardSigmoid(alpha, beta) = clip(alpha*x + beta, 0, 1): alpha 0.2 is Keras 2's hard_sigmoid,
# alpha 1/6 is Keras 3's.
_FROM_ONNX = {
    ("Sigmoid", None, None): ("sigmoid", None),
    ("Tanh", None, None): ("tanh", None),
    ("Relu", None, None): ("relu", None),
    ("Softsign", None, None): ("softsign", None),
    ("Softplus", None, None): ("softplus", None),
    ("Elu", 1.0, None): ("elu", None),
    ("HardSigmoid", 0.2, 0.5): ("hard_sigmoid", 2),
    ("HardSigmoid", 1 / 6, 0.5): ("hard_sigmoid", 3),
    ("Affine", 1.0, 0.0): ("linear", None),
}
# Affine has no default alpha here: the spec's (Affine's own, 1) and onnxruntime's (0, rnn_helpers.cc)
# differ, so an Affine without its alpha is refused.
_ALPHA_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "Elu": (1.0, None), "Affine": (None, 0.0), "LeakyRelu": (0.01, None)}
_USES_ALPHA = {"HardSigmoid", "Elu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh"}
_USES_BETA = {"HardSigmoid", "Affine", "ScaledTanh"}


def _canonical_name(name):
    for known in {k[0] for k in _FROM_ONNX} | _USES_ALPHA:
        if known.lower() == str(name).lower():
            return known
    return str(name)


def _activations(node, activations, alphas, betas, num_directions, index):
    """One direction's activations as (name, alpha, beta), in ONNX's order; alphas and betas are
    consumed in order by the functions that take them, across all listed functions."""
    count = len(node.functions)
    names = [_canonical_name(n) for n in (activations or node.defaults * num_directions)]
    if len(names) != count * num_directions:  # onnxruntime asks the same (deep_cpu_gru.h, rnn.h, lstm_base.h)
        raise refuse("activations", f"{count} name(s) per direction ({', '.join(node.defaults)}) for "
                     f"{num_directions} direction(s)", repr(activations))
    alphas, betas = list(alphas or []), list(betas or [])
    parsed = []
    for name in names:
        default_alpha, default_beta = _ALPHA_DEFAULTS.get(name, (None, None))
        alpha = alphas.pop(0) if name in _USES_ALPHA and alphas else default_alpha
        beta = betas.pop(0) if name in _USES_BETA and betas else default_beta
        parsed.append((name, alpha, beta))
    return parsed[count * index : count * (index + 1)]


def _keras_activation(name, alpha, beta, argument):
    for (onnx_name, a, b), keras in _FROM_ONNX.items():
        if onnx_name == name and _close(alpha, a) and _close(beta, b):
            return keras
    raise refuse(argument, "an ONNX activation Keras has (Sigmoid, Tanh, Relu, Softsign, Softplus, "
                 "Elu alpha 1, HardSigmoid alpha 0.2 or 1/6 beta 0.5, Affine alpha 1 beta 0)",
                 f"{name} alpha={alpha} beta={beta}")


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6  # attributes are float32 in ONNX


def _keras_activations(node, parsed):
    """{Keras option: name} and the Keras version a HardSigmoid fixes (or None) for one direction."""
    options, versions = {}, set()
    for option, letter, (name, alpha, beta) in zip(node.functions, "fgh", parsed):
        keras_name, version = _keras_activation(name, alpha, beta, f"activations ({letter})")
        if options.setdefault(option, keras_name) != keras_name:
            raise refuse("activations", "the same g and h (Keras uses one activation for both)",
                         f"{[p[0] for p in parsed]}")
        versions.add(version)
    versions.discard(None)
    if len(versions) > 1:
        raise refuse("activations", "HardSigmoid of one Keras version", "both slopes")
    return options, versions.pop() if versions else None


def _blocks(array, source, target, axis=-1):
    return reorder(array, source, target, axis=axis) if source else array


def _direction(direction, index, num_directions):
    """(index along axis 0, whether it runs in reverse) of the direction a node and `index` pick."""
    if direction not in ("forward", "reverse", "bidirectional"):
        raise refuse("direction", "forward, reverse or bidirectional", repr(direction))
    if num_directions != (2 if direction == "bidirectional" else 1):
        raise refuse("W", f"{2 if direction == 'bidirectional' else 1} direction(s) on axis 0 for "
                     f"direction {direction!r}", f"{num_directions}")
    if direction == "bidirectional":
        if index not in (0, 1):
            raise refuse("index", "0 (forward) or 1 (reverse) for a bidirectional node", repr(index))
        return index, index == 1
    if index not in (None, 0):
        raise refuse("index", f"0 or None for a {direction} node", repr(index))
    return 0, direction == "reverse"


def _refuse_unmodelled(node, clip, layout, own):
    """Refuse, by name, what a node may say that Keras does not compute."""
    for name in own:
        if name not in node.own_attributes:
            raise refuse(name, f"an attribute or input of ONNX's {node.op}", "an unknown name")
    if clip is not None:
        raise refuse("clip", "None (Keras does not clip)", repr(clip))
    if layout:
        raise refuse("layout", "0 (time-major X, as reflstm reads ONNX nodes)", repr(layout))
    if own.get("input_forget", 0):
        raise refuse("input_forget", "0 (Keras does not couple the gates)", repr(own["input_forget"]))
    if own.get("P") is not None and np.any(np.asarray(own["P"]) != 0):
        raise refuse("P", "no peephole weights (Keras has none)", "non-zero P")
    if own.get("linear_before_reset", 0) not in (0, 1):
        raise refuse("linear_before_reset", "0 or 1", repr(own["linear_before_reset"]))


def arguments(kind, W, R, B=None, *, direction="forward", index=None, activations=None,
              activation_alpha=None, activation_beta=None, clip=None, layout=0, hidden_size=None, **own):
    """Keyword arguments of reflstm layer `kind` ("LSTM", "GRU", "SimpleRNN") for one direction of
    an ONNX node (LSTM, GRU, RNN) from its W, R, B and attributes, named as ONNX names them.

    `index` picks the direction along axis 0 (0 forward, 1 reverse) of a "bidirectional" node;
    a "forward" or "reverse" node has one. The operator's own attributes: an LSTM's
    input_forget (0) and its P (none, or zeros); a GRU's linear_before_reset (ONNX's default 0
    gives reset_after=False, 1 gives reset_after=True). The layer comes with return_sequences
    and return_state, as ONNX returns Y and Y_h (and Y_c).
    """
    node = pick(_NODES, kind, "ONNX")
    k = max(len(node.onnx_order), 1)
    W, R = np.asarray(W), np.asarray(R)
    if W.ndim != 3 or R.ndim != 3 or R.shape[:2] != W.shape[:2] or W.shape[1] != k * R.shape[2]:
        raise refuse("W, R", f"(num_directions, {k}*hidden_size, input_size) and "
                     f"(num_directions, {k}*hidden_size, hidden_size)", f"W {W.shape}, R {R.shape}")
    hidden, num_directions = R.shape[2], W.shape[0]
    index, reverse = _direction(direction, index, num_directions)
    if hidden_size is not None and hidden_size != hidden:
        raise refuse("hidden_size", f"{hidden}, the size of R", repr(hidden_size))
    _refuse_unmodelled(node, clip, layout, own)
    linear_before_reset = own.get("linear_before_reset", 0)
    layer = dict(
        kernel=_blocks(W[index], node.onnx_order, node.keras_order, axis=0).T,
        recurrent_kernel=_blocks(R[index], node.onnx_order, node.keras_order, axis=0).T,
        bias=None,
        return_sequences=True, return_state=True, go_backwards=reverse,
    )
    if B is not None:
        B = np.asarray(B)
        if B.shape != (num_directions, 2 * k * hidden):
            raise refuse("B", f"(num_directions, 2*{k}*hidden_size) = ({num_directions}, {2 * k * hidden})", B)
        w_b, r_b = (_blocks(b, node.onnx_order, node.keras_order) for b in np.split(B[index], 2))
        layer["bias"] = np.stack([w_b, r_b]) if linear_before_reset else w_b + r_b
    if kind == "GRU":
        layer["reset_after"] = bool(linear_before_reset)
    parsed = _activations(node, activations, activation_alpha, activation_beta, num_directions, index)
    options, version = _keras_activations(node, parsed)
    return dict(layer, **options, keras_version=version or 3)


_TO_ONNX = {
    "sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
    "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None), "linear": ("Affine", 1.0, 0.0),
}


def to_onnx(layer):
    """The inputs and attributes of an ONNX node (LSTM, GRU, RNN) computing `layer`, one direction.

    Returns a dict with W, R, B (num_directions = 1) and the attributes hidden_size, direction,
    activations, activation_alpha / activation_beta where an activation needs them, and a GRU's
    linear_before_reset (its reset_after). B's Rb is zeros and Wb the whole bias, except for a
    GRU with reset_after=True, whose bias rows are Wb and Rb.
    """
    kind = type(layer).__name__
    node = pick(_NODES, kind, "ONNX")

    def onnx_activation(name):
        if name == "hard_sigmoid":
            return ("HardSigmoid", 0.2 if layer.keras_version == 2 else 1 / 6, 0.5)
        if name not in _TO_ONNX:
            raise refuse(kind.lower(), f"activations ONNX has ({', '.join(sorted(_TO_ONNX))}, hard_sigmoid)",
                         repr(name))
        return _TO_ONNX[name]

    functions = [onnx_activation(getattr(layer, option) or "linear") for option in node.functions]
    reset_after = kind == "GRU" and layer.reset_after
    bias = layer.bias
    if bias is None:
        bias = np.zeros((2, layer.kernel.shape[1]) if reset_after else layer.kernel.shape[1], layer.dtype)
    w_b, r_b = bias if reset_after else (bias, np.zeros_like(bias))
    result = dict(
        W=_blocks(layer.kernel.T, node.keras_order, node.onnx_order, axis=0)[None],
        R=_blocks(layer.recurrent_kernel.T, node.keras_order, node.onnx_order, axis=0)[None],
        B=np.concatenate([_blocks(b, node.keras_order, node.onnx_order) for b in (w_b, r_b)])[None],
        hidden_size=layer.units,
        direction="reverse" if layer.go_backwards else "forward",
        activations=[f[0] for f in functions],
    )
    if kind == "GRU":
        result["linear_before_reset"] = int(reset_after)
    alphas = [a for _, a, _ in functions if a is not None]
    betas = [b for _, _, b in functions if b is not None]
    if alphas:
        result["activation_alpha"] = alphas
    if betas:
        result["activation_beta"] = betas
    return result


def layers_from_onnx_file(path):
    """{node name: [layer per direction]} for every LSTM, GRU and RNN node of an .onnx file (needs
    onnx): reflstm.LSTM, reflstm.GRU and reflstm.SimpleRNN.

    Reads the protobuf only; nothing in the file is executed. W, R, B (and an LSTM's P) must be
    initializers. The node's sequence_lens, initial_h and initial_c are not read: pass them to
    the layers as `mask` and `initial_state`.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise refuse("onnx", "installed to read .onnx files (pip install 'reflstm[onnx]')",
                     "not installed") from None
    from reflstm.cells.gru import GRU
    from reflstm.cells.lstm import LSTM
    from reflstm.cells.simple_rnn import SimpleRNN

    classes = {"LSTM": LSTM, "GRU": GRU, "SimpleRNN": SimpleRNN}
    by_op = {node.op: kind for kind, node in _NODES.items()}
    model = onnx.load(str(path))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    found = {}
    for position, graph_node in enumerate(model.graph.node):
        if graph_node.op_type not in by_op:
            continue
        kind = by_op[graph_node.op_type]
        name = graph_node.name or f"{graph_node.op_type}_{position}"
        attributes = {a.name: _decoded(onnx.helper.get_attribute_value(a)) for a in graph_node.attribute}
        arrays = {}
        for key, input_name in zip(_NODES[kind].inputs, list(graph_node.input)[1:]):
            if key in ("W", "R", "B", "P") and input_name:
                if input_name not in constants:
                    raise refuse(f"{graph_node.op_type} node {name!r}", f"{key} as an initializer",
                                 repr(input_name))
                arrays[key] = constants[input_name]
        extra = {"P": arrays["P"]} if "P" in arrays else {}
        indexes = (0, 1) if attributes.get("direction") == "bidirectional" else (None,)
        found[name] = [
            classes[kind](**arguments(kind, arrays["W"], arrays["R"], arrays.get("B"), index=i, **attributes,
                                      **extra))
            for i in indexes
        ]
    return found


def _decoded(value):
    """An attribute value with ONNX's bytes strings as str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value
