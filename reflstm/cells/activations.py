"""Activation functions, by the names Keras accepts, as NumPy functions.

Keras 3 (`keras`) and Keras 2 (`tf_keras`) accept different sets of names, and one name,
``hard_sigmoid``, means two different functions:

    Keras 3:  hard_sigmoid(x) = relu6(x + 3) / 6        (slope 1/6, saturates at |x| = 3)
    Keras 2:  hard_sigmoid(x) = clip(0.2 * x + 0.5, 0, 1) (slope 0.2, saturates at |x| = 2.5)

so a name is always looked up in the table of one Keras version (`get(name, keras_version)`).
Each function follows the formula of the TensorFlow op Keras calls (the source is named beside
it), keeps the input's dtype, and raises no floating-point warning for extreme inputs: where
TensorFlow saturates or overflows to inf, so does the function here, silently.
"""

import numpy as np

from reflstm.errors import refuse

__all__ = ["get", "names", "writer"]


def sigmoid(x):
    return _sigmoid_into(x, np.empty_like(x))


def _sigmoid_into(x, out):
    # tf.nn.sigmoid, as Eigen computes it: 1 / (1 + exp(-x)). For x below about -88 (float32)
    # or -709 (float64) exp(-x) overflows to inf and the result is exactly 0, without a warning.
    np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def tanh(x):
    return np.tanh(x)


def linear(x):
    return x


def relu(x):
    return np.maximum(x, 0)


def relu6(x):
    return np.clip(x, 0, 6)


def _leaky_relu(alpha):
    # tf.nn.leaky_relu holds alpha in a float32 attribute, also for float64 tensors.
    alpha = float(np.float32(alpha))

    def leaky_relu(x):
        # tf.nn.leaky_relu with 0 < alpha < 1: max(x, alpha * x)
        return np.maximum(x, alpha * x)

    return leaky_relu


def elu(x):
    # tf.nn.elu: x for x > 0, expm1(x) otherwise
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_SELU_SCALE, _SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def selu(x):
    # tf.nn.selu
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def celu(x):
    # keras/src/backend/tensorflow/nn.py celu, alpha = 1
    return np.maximum(x, 0) + np.expm1(np.minimum(x, 0))


def softplus(x):
    # tf.math.softplus: log(1 + exp(x)), computed without overflow
    return np.logaddexp(0, x)


def softsign(x):
    return x / (1 + np.abs(x))


def silu(x):
    # tf.nn.silu: x * sigmoid(x)
    return x * sigmoid(x)


def mish(x):
    return x * np.tanh(softplus(x))


def exponential(x):
    # tf.exp overflows to inf without a word; so does this.
    with np.errstate(over="ignore"):
        return np.exp(x)


def gelu(x):
    # tf.nn.gelu(approximate=False): 0.5 * x * erfc(-x * 0.7071067811865476); Keras 3 and
    # tf_keras both pass approximate=False for the activation named "gelu". TensorFlow makes the
    # constant a float32 tensor before casting it, so float64 runs use float32(1/sqrt(2)) too.
    from scipy.special import erfc  # imported here so that `import reflstm` stays light

    return 0.5 * x * erfc(-x * x.dtype.type(np.float32(0.7071067811865476)))


def hard_sigmoid_keras3(x):
    # keras/src/backend/tensorflow/nn.py hard_sigmoid: relu6(x + 3) / 6
    return relu6(x + 3) / 6


def hard_sigmoid_keras2(x):
    # tf_keras/src/backend.py hard_sigmoid: clip(x * 0.2 + 0.5, 0, 1)
    return np.clip(x * x.dtype.type(0.2) + x.dtype.type(0.5), 0, 1)


def hard_silu(x):
    return x * hard_sigmoid_keras3(x)


def hard_tanh(x):
    return np.clip(x, -1, 1)


def hard_shrink(x):
    return np.where(np.abs(x) > 0.5, x, 0)


def soft_shrink(x):
    return np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0))


def tanh_shrink(x):
    return x - np.tanh(x)


def sparse_plus(x):
    with np.errstate(over="ignore", invalid="ignore"):  # the unused branch may overflow, as in TF
        return np.where(x <= -1, 0, np.where(x < 1, (x + 1) ** 2 / 4, x))


def sparse_sigmoid(x):
    return np.where(x <= -1, 0, np.where(x >= 1, 1, 0.5 * (x + 1)))


def squareplus(x):
    # keras/src/backend/tensorflow/nn.py squareplus with b = 4 (x² overflows to inf, as in TF)
    with np.errstate(over="ignore"):
        return (x + np.sqrt(np.square(x) + 4)) / 2


def log_sigmoid(x):
    # tf.math.log_sigmoid = -softplus(-x)
    return -softplus(-x)


def softmax(x):
    # tf.nn.softmax over the last axis: one gate's units.
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def sparsemax(x):
    # keras/src/backend/tensorflow/nn.py sparsemax, over the last axis, as written there: its
    # threshold sums the cumulative sums over the support, (sum_{j<=k} cumsum_j - 1) / k,
    # where the textbook sparsemax uses (cumsum_k - 1) / k. reflstm reproduces Keras.
    x_sorted = -np.sort(-x, axis=-1)
    cumsum = np.cumsum(x_sorted, axis=-1)
    r = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = x_sorted - (cumsum - 1) / r > 0
    k = np.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    tau = (np.sum(np.where(support, cumsum, 0), axis=-1, keepdims=True) - 1) / k
    return np.maximum(x - tau, 0)


def _thresholded_relu(x):
    # tf_keras ThresholdedReLU layer, theta = 1.0: x * (x > theta)
    return x * (x > 1).astype(x.dtype)


_COMMON = {
    "linear": linear,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": _leaky_relu(0.2),
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "silu": silu,
    "swish": silu,
    "mish": mish,
    "exponential": exponential,
    "gelu": gelu,
    "softmax": softmax,
    "log_softmax": log_softmax,
}

_TABLES = {
    3: {
        **_COMMON,
        "hard_sigmoid": hard_sigmoid_keras3,
        "celu": celu,
        "hard_silu": hard_silu,
        "hard_swish": hard_silu,
        "hard_tanh": hard_tanh,
        "hard_shrink": hard_shrink,
        "soft_shrink": soft_shrink,
        "tanh_shrink": tanh_shrink,
        "sparse_plus": sparse_plus,
        "sparse_sigmoid": sparse_sigmoid,
        "squareplus": squareplus,
        "log_sigmoid": log_sigmoid,
        "sparsemax": sparsemax,
    },
    2: {
        **_COMMON,
        "hard_sigmoid": hard_sigmoid_keras2,
        # tf_keras also resolves the names of its activation layer classes, and builds the
        # layer with its default arguments (tf_keras/src/activations.py deserialize).
        "ReLU": relu,
        "ELU": elu,
        "LeakyReLU": _leaky_relu(0.3),  # the LeakyReLU layer's default alpha
        "Softmax": softmax,
        "ThresholdedReLU": _thresholded_relu,
    },
}

# Names Keras accepts that an LSTM cell cannot use, and why.
_UNUSABLE = {
    "glu": "glu halves the units axis, so the gate and state shapes no longer match "
    "(Keras fails on it too)",
    "threshold": "threshold needs two arguments that an activation name cannot give "
    "(Keras fails on it too)",
    "PReLU": "PReLU carries trainable weights of its own, which an LSTM layer does not store",
}


# tf_keras builds these activation layers with the default float32 policy, so a float64 LSTM
# multiplies float64 by float32 and fails (tf_keras/src/activations.py deserialize).
_FLOAT32_ONLY = {2: ("ReLU", "ELU", "LeakyReLU", "Softmax", "ThresholdedReLU"), 3: ()}


def names(keras_version):
    """The activation names a Keras version accepts for an LSTM, sorted."""
    return sorted(_table(keras_version))


def get(name, keras_version, argument="activation", dtype="float32"):
    """The NumPy function that Keras `keras_version` (3 or 2) uses for activation `name`.

    `dtype` is the dtype of the layer's weights: some names work in float32 layers only.
    """
    table = _table(keras_version)
    if name is None:
        return linear  # Keras: None means linear
    if not isinstance(name, str):
        raise refuse(argument, f"an activation name (one of {', '.join(sorted(table))})", name)
    if name in _UNUSABLE:
        raise refuse(argument, "an activation an LSTM cell can use", f"{name!r}: {_UNUSABLE[name]}")
    if name not in table:
        other = 2 if keras_version == 3 else 3
        hint = (
            f" ({name!r} is a Keras {other} name; pass keras_version={other})"
            if name in _TABLES[other]
            else ""
        )
        raise refuse(
            argument,
            f"one of the Keras {keras_version} activations {', '.join(sorted(table))}",
            f"{name!r}{hint}",
        )
    if name in _FLOAT32_ONLY[keras_version] and np.dtype(dtype) != np.float32:
        raise refuse(
            argument,
            f"an activation a {np.dtype(dtype)} layer can use",
            f"{name!r}: tf_keras builds it as a float32 layer, so a {np.dtype(dtype)} LSTM fails on "
            "it in tf_keras too",
        )
    return table[name]


def writer(function):
    """`function` (from `get`) as ``write(x, out)``: it writes function(x) into the array `out`.

    The recurrent loop writes each step's gates straight into a trace's rows this way. The
    default activations do it in place, with the very operations `function` does (so the same
    bits); any other is computed as `function(x)` and copied. `x` may be `out` itself.
    """
    return _WRITERS.get(function) or (lambda x, out: np.copyto(out, function(x)))


_WRITERS = {
    sigmoid: _sigmoid_into,
    tanh: lambda x, out: np.tanh(x, out=out),
    linear: lambda x, out: np.copyto(out, x),
}


def _table(keras_version):
    if keras_version not in _TABLES:
        raise refuse("keras_version", "3 (keras) or 2 (tf_keras)", repr(keras_version))
    return _TABLES[keras_version]


# --- derivatives, for the backward pass -------------------------------------------------------
# vjp(name, keras_version)(z, y, dy) = dy · ∂y/∂z, where y = f(z). Elementwise functions use
# f'(z), at kinks taking the side TensorFlow's gradient takes; softmax and log_softmax act along
# the last axis.


def _elementwise(derivative):
    return lambda z, y, dy: dy * derivative(z, y)


def _sigmoid_d(z, y):
    return y * (1 - y)


def _gelu_d(z, y):
    from scipy.special import erfc

    c = z.dtype.type(np.float32(0.7071067811865476))  # the constant TensorFlow's gelu uses
    return 0.5 * erfc(-z * c) + z * c * np.exp(-np.square(z * c)) / np.sqrt(np.pi).astype(z.dtype)


def _softmax_vjp(z, y, dy):
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


def _log_softmax_vjp(z, y, dy):
    return dy - np.exp(y) * np.sum(dy, axis=-1, keepdims=True)


_DERIVATIVES = {
    "linear": lambda z, y: np.ones_like(z),
    "sigmoid": _sigmoid_d,
    "tanh": lambda z, y: 1 - y * y,
    "relu": lambda z, y: (z > 0).astype(z.dtype),
    "relu6": lambda z, y: ((z > 0) & (z < 6)).astype(z.dtype),
    "elu": lambda z, y: np.where(z > 0, 1, y + 1),
    "selu": lambda z, y: np.where(z > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA),
    "celu": lambda z, y: np.where(z > 0, 1, np.exp(np.minimum(z, 0))),
    "softplus": lambda z, y: sigmoid(z),
    "softsign": lambda z, y: 1 / np.square(1 + np.abs(z)),
    "silu": lambda z, y: sigmoid(z) * (1 + z * (1 - sigmoid(z))),
    "mish": lambda z, y: np.tanh(softplus(z)) + z * (1 - np.square(np.tanh(softplus(z)))) * sigmoid(z),
    "exponential": lambda z, y: y,
    "gelu": _gelu_d,
    "hard_sigmoid_keras3": lambda z, y: ((z > -3) & (z < 3)).astype(z.dtype) / 6,
    "hard_sigmoid_keras2": lambda z, y: ((z * z.dtype.type(0.2) + z.dtype.type(0.5) >= 0)
                                          & (z * z.dtype.type(0.2) + z.dtype.type(0.5) <= 1)) * z.dtype.type(0.2),
    "hard_silu": lambda z, y: hard_sigmoid_keras3(z) + z * ((z > -3) & (z < 3)) / 6,
    "hard_tanh": lambda z, y: ((z >= -1) & (z <= 1)).astype(z.dtype),
    "hard_shrink": lambda z, y: (np.abs(z) > 0.5).astype(z.dtype),
    "soft_shrink": lambda z, y: (np.abs(z) > 0.5).astype(z.dtype),
    "tanh_shrink": lambda z, y: np.square(np.tanh(z)),
    "sparse_plus": lambda z, y: np.where(z <= -1, 0, np.where(z < 1, (z + 1) / 2, 1)),
    "sparse_sigmoid": lambda z, y: np.where((z > -1) & (z < 1), 0.5, 0),
    "squareplus": lambda z, y: (1 + z / np.sqrt(np.square(z) + 4)) / 2,
    "log_sigmoid": lambda z, y: sigmoid(-z),
    "thresholded_relu": lambda z, y: (z > 1).astype(z.dtype),
}


def _leaky_d(alpha):
    alpha = float(np.float32(alpha))
    return lambda z, y: np.where(z > 0, 1, alpha).astype(z.dtype)


_VJPS = {name: _elementwise(d) for name, d in _DERIVATIVES.items()}
_VJPS.update(softmax=_softmax_vjp, log_softmax=_log_softmax_vjp,
             leaky_relu_0_2=_elementwise(_leaky_d(0.2)), leaky_relu_0_3=_elementwise(_leaky_d(0.3)))
_VJP_BY_FUNCTION = {
    sigmoid: "sigmoid", tanh: "tanh", linear: "linear", relu: "relu", relu6: "relu6", elu: "elu",
    selu: "selu", celu: "celu", softplus: "softplus", softsign: "softsign", silu: "silu", mish: "mish",
    exponential: "exponential", gelu: "gelu", hard_sigmoid_keras3: "hard_sigmoid_keras3",
    hard_sigmoid_keras2: "hard_sigmoid_keras2", hard_silu: "hard_silu", hard_tanh: "hard_tanh",
    hard_shrink: "hard_shrink", soft_shrink: "soft_shrink", tanh_shrink: "tanh_shrink",
    sparse_plus: "sparse_plus", sparse_sigmoid: "sparse_sigmoid", squareplus: "squareplus",
    log_sigmoid: "log_sigmoid", softmax: "softmax", log_softmax: "log_softmax",
    _thresholded_relu: "thresholded_relu",
    _TABLES[3]["leaky_relu"]: "leaky_relu_0_2", _TABLES[2]["LeakyReLU"]: "leaky_relu_0_3",
}


def vjp(name, keras_version, argument="activation", dtype="float32"):
    """The vector-Jacobian product (z, y, dy) -> dz of activation `name` (see `get`)."""
    function = get(name, keras_version, argument, dtype)
    key = _VJP_BY_FUNCTION.get(function)
    if key is None:
        raise refuse(argument, "an activation with a modelled derivative (all but sparsemax)", repr(name))
    return _VJPS[key]
