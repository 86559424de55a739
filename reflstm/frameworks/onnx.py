"""ONNX LSTM <-> reflstm. ONNX words live here and nowhere else.

An ONNX LSTM node takes, per direction (axis 0, num_directions = 1 or 2):

    W  (num_directions, 4*hidden_size, input_size)    gates i, o, f, c
    R  (num_directions, 4*hidden_size, hidden_size)   gates i, o, f, c
    B  (num_directions, 8*hidden_size)                [Wb, Rb], each i, o, f, c; added together

so Keras's kernel is W[d] transposed with its gate blocks moved from ONNX order i, o, f, c to
Keras order i, f, c, o, and Keras's bias is Wb + Rb, reordered likewise. ONNX's activations are
three per direction, (f, g, h): f for i, f, o, g for the candidate, h for the output; Keras has one
g for both, so g and h must agree. "reverse" runs last step to first like go_backwards, but ONNX
returns its Y in input order, where Keras returns processing order.
"""

import numpy as np

from reflstm.errors import pick, refuse
from reflstm.frameworks.layouts import KERAS, ONNX, reorder
from reflstm.cells.lstm import LSTM

__all__ = ["arguments", "lstm_arguments", "to_onnx", "lstms_from_onnx_file"]

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
_ALPHA_DEFAULTS = {"HardSigmoid": (0.2, 0.5), "Elu": (1.0, None), "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None)}
_USES_ALPHA = {"HardSigmoid", "Elu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh"}
_USES_BETA = {"HardSigmoid", "Affine", "ScaledTanh"}


def _canonical_name(name):
    for known in {k[0] for k in _FROM_ONNX} | _USES_ALPHA:
        if known.lower() == str(name).lower():
            return known
    return str(name)


def _activations(activations, alphas, betas, direction_index):
    """The (f, g, h) of one direction as (name, alpha, beta); alphas and betas are consumed in
    order by the functions that take them, across all listed functions."""
    names = [_canonical_name(n) for n in (activations or ["Sigmoid", "Tanh", "Tanh"])]
    if len(names) not in (3, 6):
        raise refuse("activations", "3 names per direction (f, g, h)", repr(activations))
    alphas, betas = list(alphas or []), list(betas or [])
    parsed = []
    for name in names:
        default_alpha, default_beta = _ALPHA_DEFAULTS.get(name, (None, None))
        alpha = alphas.pop(0) if name in _USES_ALPHA and alphas else default_alpha
        beta = betas.pop(0) if name in _USES_BETA and betas else default_beta
        parsed.append((name, alpha, beta))
    start = 3 * direction_index if len(parsed) == 6 else 0
    return parsed[start : start + 3]


def _keras_activation(name, alpha, beta, argument):
    for (onnx_name, a, b), keras in _FROM_ONNX.items():
        if onnx_name == name and _close(alpha, a) and _close(beta, b):
            return keras
    raise refuse(argument, "an ONNX activation Keras has (Sigmoid, Tanh, Relu, Softsign, Softplus, "
                 "Elu alpha 1, HardSigmoid alpha 0.2 or 1/6 beta 0.5, Affine 1 0)",
                 f"{name} alpha={alpha} beta={beta}")


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6  # attributes are float32 in ONNX


def arguments(kind, W, R, B=None, **attributes):
    """Keyword arguments of reflstm layer `kind` ("LSTM", ...) for one direction of an ONNX node."""
    return pick({"LSTM": lstm_arguments}, kind, "ONNX")(W, R, B, **attributes)


def lstm_arguments(W, R, B=None, *, direction="forward", index=None, activations=None,
                   activation_alpha=None, activation_beta=None, clip=None, input_forget=0, P=None):
    """reflstm.LSTM keyword arguments for one direction of an ONNX LSTM node's inputs.

    `index` picks the direction along axis 0 (0 forward, 1 reverse) when `direction` is
    "bidirectional"; otherwise it defaults to 0 and `direction` says which way that one runs.
    """
    W, R = np.asarray(W), np.asarray(R)
    if W.ndim != 3 or R.ndim != 3 or W.shape[1] % 4 or R.shape[1] != W.shape[1]:
        raise refuse("W, R", "(num_directions, 4*hidden_size, input_size) and "
                     "(num_directions, 4*hidden_size, hidden_size)", f"W {W.shape}, R {R.shape}")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise refuse("direction", "forward, reverse or bidirectional", repr(direction))
    if direction == "bidirectional":
        if index not in (0, 1):
            raise refuse("index", "0 (forward) or 1 (reverse) for a bidirectional node", repr(index))
        reverse = index == 1
    else:
        index, reverse = 0 if index is None else index, direction == "reverse"
    if not isinstance(index, (int, np.integer)) or not 0 <= index < W.shape[0]:
        raise refuse("index", f"a direction in 0..{W.shape[0] - 1}", repr(index))
    if clip is not None:
        raise refuse("clip", "None (Keras does not clip cell inputs)", repr(clip))
    if input_forget:
        raise refuse("input_forget", "0 (Keras does not couple the gates)", repr(input_forget))
    if P is not None and np.any(np.asarray(P) != 0):
        raise refuse("P", "no peephole weights (Keras has none)", "non-zero P")
    hidden = W.shape[1] // 4
    kernel = reorder(W[index], ONNX, KERAS, axis=0).T
    recurrent = reorder(R[index], ONNX, KERAS, axis=0).T
    bias = None
    if B is not None:
        B = np.asarray(B)
        if B.shape[-1] != 8 * hidden:
            raise refuse("B", f"(num_directions, 8*hidden_size) = (_, {8 * hidden})", B)
        w_b, r_b = np.split(B[index], 2)
        bias = reorder(w_b + r_b, ONNX, KERAS)
    (f, fa, fb), (g, ga, gb), (h, ha, hb) = _activations(activations, activation_alpha, activation_beta,
                                                          index)
    if (g, ga, gb) != (h, ha, hb):
        raise refuse("activations", "the same g and h (Keras uses one activation for both)", f"g={g}, h={h}")
    recurrent_activation, version_f = _keras_activation(f, fa, fb, "activations (f)")
    activation, version_g = _keras_activation(g, ga, gb, "activations (g)")
    versions = {v for v in (version_f, version_g) if v is not None}
    if len(versions) > 1:
        raise refuse("activations", "HardSigmoid of one Keras version", "both slopes")
    return dict(
        kernel=kernel, recurrent_kernel=recurrent, bias=bias,
        activation=activation, recurrent_activation=recurrent_activation,
        return_sequences=True, return_state=True, go_backwards=reverse,
        keras_version=versions.pop() if versions else 3,
    )


_TO_ONNX = {
    "sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
    "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None), "linear": ("Affine", 1.0, 0.0),
}


def to_onnx(lstm):
    """The inputs and attributes of an ONNX LSTM node computing `lstm` (one direction).

    Returns a dict with W, R, B (num_directions = 1; Rb is zeros, Wb the whole bias) and the
    attributes hidden_size, direction, activations, and activation_alpha / activation_beta where
    an activation needs them.
    """
    pick({"LSTM": None}, type(lstm).__name__, "ONNX")

    def onnx_activation(name):
        if name == "hard_sigmoid":
            return ("HardSigmoid", 0.2 if lstm.keras_version == 2 else 1 / 6, 0.5)
        if name not in _TO_ONNX:
            raise refuse("lstm", f"activations ONNX has ({', '.join(sorted(_TO_ONNX))}, hard_sigmoid)",
                         repr(name))
        return _TO_ONNX[name]

    f = onnx_activation(lstm.recurrent_activation or "linear")
    g = onnx_activation(lstm.activation or "linear")
    bias = np.zeros(4 * lstm.units, lstm.dtype) if lstm.bias is None else lstm.bias
    node = dict(
        W=reorder(lstm.kernel.T, KERAS, ONNX, axis=0)[None],
        R=reorder(lstm.recurrent_kernel.T, KERAS, ONNX, axis=0)[None],
        B=np.concatenate([reorder(bias, KERAS, ONNX), np.zeros_like(bias)])[None],
        hidden_size=lstm.units,
        direction="reverse" if lstm.go_backwards else "forward",
        activations=[f[0], g[0], g[0]],
    )
    alphas = [a for name, a, _ in (f, g, g) if a is not None]
    betas = [b for name, _, b in (f, g, g) if b is not None]
    if alphas:
        node["activation_alpha"] = alphas
    if betas:
        node["activation_beta"] = betas
    return node


def lstms_from_onnx_file(path):
    """{node name: [LSTM per direction]} for every LSTM node of an .onnx file (needs onnx).

    Reads the protobuf only; nothing in the file is executed. W, R and B must be initializers.
    The node's sequence_lens, initial_h and initial_c are not read: pass them to the LSTMs as
    `mask` and `initial_state`.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise refuse("onnx", "installed to read .onnx files (pip install 'reflstm[onnx]')",
                     "not installed") from None
    model = onnx.load(str(path))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    found = {}
    for position, node in enumerate(model.graph.node):
        if node.op_type != "LSTM":
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("layout", 0):
            raise refuse(f"LSTM node {node.name!r}", "layout 0", f"layout {attributes['layout']}")
        names = list(node.input) + [""] * 8
        arrays = {}
        for key, name in zip(("W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"), names[1:8]):
            if name and name not in constants:
                if key in ("W", "R", "B", "P"):
                    raise refuse(f"LSTM node {node.name!r}", f"{key} as an initializer", f"{name!r}")
                continue
            if name:
                arrays[key] = constants[name]
        direction = attributes.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        activations = [a.decode() if isinstance(a, bytes) else a for a in attributes.get("activations", [])]
        kwargs = dict(
            direction=direction,
            activations=activations or None,
            activation_alpha=attributes.get("activation_alpha"),
            activation_beta=attributes.get("activation_beta"),
            clip=attributes.get("clip"),
            input_forget=attributes.get("input_forget", 0),
            P=arrays.get("P"),
        )
        indexes = (0, 1) if direction == "bidirectional" else (None,)
        found[node.name or f"LSTM_{position}"] = [
            LSTM(**lstm_arguments(arrays["W"], arrays["R"], arrays.get("B"), index=i, **kwargs))
            for i in indexes
        ]
    return found
