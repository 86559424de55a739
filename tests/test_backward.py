"""The backward pass against tf.GradientTape on the real Keras layers, torch autograd, and
central differences."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, call_keras, keras_module, make_layer, random_cell_weights
from reflstm.cells import activations

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 6, 4, 5
GRAD_TOL = 1e-10  # float64 gradients


def keras_gradients(layer, x, d_output, mask=None, initial_state=None):
    """Gradients of sum(output * d_output) by tf.GradientTape through the Keras layer."""
    import tensorflow as tf

    x_t = tf.constant(x)
    state = None if initial_state is None else [tf.constant(s) for s in initial_state]
    kwargs = {} if mask is None else {"mask": tf.constant(mask)}
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        if state is not None:
            for s in state:
                tape.watch(s)
            kwargs["initial_state"] = state
        out = layer(x_t, **kwargs)
        parts = out if isinstance(out, (list, tuple)) else [out]
        d_parts = d_output if isinstance(out, (list, tuple)) else [d_output]
        loss = sum(tf.reduce_sum(o * d) for o, d in zip(parts, d_parts))
    weights = list(layer.trainable_weights)
    grads = tape.gradient(loss, [x_t] + (state or []) + weights)
    return [np.zeros(w.shape) if g is None else np.asarray(g) for g, w in
            zip(grads, [x_t] + (state or []) + weights)]


# The layers every case runs on: (reflstm class, Keras cell options).
KINDS = {
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {}),
    "GRU_reset_before": ("GRU", {"reset_after": False}),
    "SimpleRNN": ("SimpleRNN", {}),
}
CASES = {
    "last_step": ({}, {}),
    "sequences": ({"return_sequences": True}, {}),
    "state": ({"return_sequences": True, "return_state": True}, {}),
    "go_backwards": ({"return_sequences": True, "go_backwards": True}, {}),
    "mask": ({"return_sequences": True}, {"mask": True}),
    "mask_last_step": ({}, {"mask": True}),
    "mask_zero_output": ({"return_sequences": True, "zero_output_for_mask": True}, {"mask": True}),
    "mask_go_backwards_initial_state": (
        {"return_sequences": True, "return_state": True, "go_backwards": True},
        {"mask": True, "initial_state": True},
    ),
    "mask_leading_span_initial_state": (
        {"return_sequences": True, "return_state": True}, {"mask": "leading", "initial_state": True},
    ),
    "unrolled_mask_zero_output_go_backwards": (
        {"return_sequences": True, "zero_output_for_mask": True, "go_backwards": True, "unroll": True},
        {"mask": True},
    ),
    "initial_state": ({"return_state": True}, {"initial_state": True}),
    "no_bias": ({"use_bias": False, "return_sequences": True}, {}),
    "hard_sigmoid_relu": ({"recurrent_activation": "hard_sigmoid", "activation": "relu"}, {}),
    "softmax_gelu": ({"recurrent_activation": "softmax", "activation": "gelu",
                      "return_sequences": True}, {}),
}
MASKS = {
    True: np.array([[1, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], bool),
    # every sample's first steps masked, and one sample masked throughout
    "leading": np.array([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 1, 1]], bool),
}
MASK = MASKS[True]


def layer_options(kind, case):
    """The case's Keras options for `kind` (a SimpleRNN has no recurrent_activation)."""
    options = {**KINDS[kind][1], **CASES[case][0]}
    if KINDS[kind][0] == "SimpleRNN":
        options.pop("recurrent_activation", None)
    return options


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_match_gradient_tape(kind, case, keras_version):
    """dx, dW, dU, db and the initial state's gradients equal GradientTape's, to 1e-10."""
    cls = getattr(reflstm, KINDS[kind][0])
    call_options = CASES[case][1]
    layer = make_layer(keras_version, INPUT_DIM, UNITS, "float64", seed=2, kind=cls.__name__,
                       **layer_options(kind, case))
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))
    mask = MASKS.get(call_options.get("mask"))
    state = ([rng.normal(0, 0.8, (BATCH, UNITS)) for _ in cls.STATES] if call_options.get("initial_state")
             else None)
    ref = cls.from_keras(layer)
    output = ref(x, mask=mask, initial_state=state)
    d_output = ([rng.normal(size=o.shape) for o in output] if isinstance(output, (list, tuple))
                else rng.normal(size=output.shape))
    expected = keras_gradients(layer, x, d_output, mask, state)
    g = ref.backward(x, d_output, mask=mask, initial_state=state)
    ours = [g.x] + (g.initial_state if state is not None else []) + [g.kernel, g.recurrent_kernel]
    ours += [] if g.bias is None else [g.bias]
    assert len(ours) == len(expected)
    for a, e in zip(ours, expected):
        np.testing.assert_allclose(a, e, rtol=GRAD_TOL, atol=GRAD_TOL)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_stateful_gradients_start_from_the_carried_state(kind, keras_version):
    """A stateful layer's second call: its gradients equal GradientTape's, from the state the first left."""
    cls = getattr(reflstm, KINDS[kind][0])
    layer = make_layer(keras_version, INPUT_DIM, UNITS, "float64", seed=4, kind=cls.__name__,
                       stateful=True, return_sequences=True, **KINDS[kind][1])
    ref = cls.from_keras(layer)
    rng = np.random.default_rng(8)
    first, second = (rng.normal(size=(BATCH, TIMESTEPS, INPUT_DIM)) for _ in range(2))
    call_keras(layer, first)
    ref(first)
    d_output = rng.normal(size=(BATCH, TIMESTEPS, UNITS))
    expected = keras_gradients(layer, second, d_output)
    g = ref.backward(second, d_output)
    for a, e in zip([g.x, g.kernel, g.recurrent_kernel, g.bias], expected):
        np.testing.assert_allclose(a, e, rtol=GRAD_TOL, atol=GRAD_TOL)
    for ours, theirs in zip(ref.states, layer.states):  # the backward pass moved the state, as a call does
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-12, atol=1e-12)


def vjp_cases():
    for keras_version in (3, 2):
        for name in activations.names(keras_version):
            if name != "sparsemax":
                yield pytest.param(keras_version, name, id=f"keras{keras_version}-{name}")


@pytest.mark.parametrize("keras_version, name", list(vjp_cases()))
def test_activation_derivatives_match_tensorflow(keras_version, name):
    """Each activation's vector-Jacobian product equals TensorFlow's gradient of Keras's function."""
    import tensorflow as tf

    dtype = "float32" if name in ("ReLU", "ELU", "LeakyReLU", "Softmax", "ThresholdedReLU") else "float64"
    rng = np.random.default_rng(4)
    z = rng.uniform(-4, 4, (5, 7)).astype(dtype)
    dy = rng.normal(size=z.shape).astype(dtype)
    fn = keras_module(keras_version).activations.get(name)
    z_t = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z_t)
        loss = tf.reduce_sum(fn(z_t) * dy)
    expected = np.asarray(tape.gradient(loss, z_t))
    y = activations.get(name, keras_version, dtype=dtype)(z)
    actual = activations.vjp(name, keras_version, dtype=dtype)(z, y, dy)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def test_sparsemax_backward_is_refused():
    """sparsemax's derivative is not modelled: refused, not guessed."""
    ref = reflstm.LSTM(np.zeros((2, 8)), np.zeros((2, 8)), activation="sparsemax")
    with pytest.raises(reflstm.ReflstmError, match="derivative"):
        ref.backward(np.zeros((1, 2, 2)), np.zeros((1, 2)))


def test_gradients_match_torch_autograd():
    """Through the PyTorch converter: torch autograd on nn.LSTM gives reflstm's gradients."""
    torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")
    torch.manual_seed(0)
    m = torch.nn.LSTM(INPUT_DIM, UNITS, batch_first=True, dtype=torch.float64)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(BATCH, TIMESTEPS, INPUT_DIM))
    d = rng.normal(size=(BATCH, TIMESTEPS, UNITS))
    x_t = torch.tensor(x, requires_grad=True)
    y, _ = m(x_t)
    (y * torch.from_numpy(d)).sum().backward()
    ref = reflstm.LSTM.from_torch(m)
    g = ref.backward(x, [d, np.zeros((BATCH, UNITS)), np.zeros((BATCH, UNITS))])
    np.testing.assert_allclose(g.x, x_t.grad.numpy(), rtol=GRAD_TOL, atol=GRAD_TOL)
    np.testing.assert_allclose(g.kernel, m.weight_ih_l0.grad.numpy().T, rtol=GRAD_TOL, atol=GRAD_TOL)
    np.testing.assert_allclose(g.recurrent_kernel, m.weight_hh_l0.grad.numpy().T, rtol=GRAD_TOL, atol=GRAD_TOL)
    np.testing.assert_allclose(g.bias, m.bias_ih_l0.grad.numpy(), rtol=GRAD_TOL, atol=GRAD_TOL)


def torch_gru_in_keras_layout(weight_ih, weight_hh, bias_ih, bias_hh):
    """nn.GRU's arrays (rows r, z, n; n is Keras's reset_after h) as Keras's kernel, recurrent_kernel, bias."""
    from reflstm.frameworks.layouts import reorder

    keras = lambda a: reorder(a, "rzh", "zrh")  # noqa: E731
    return keras(weight_ih.T), keras(weight_hh.T), np.stack([keras(bias_ih), keras(bias_hh)])


def torch_rnn_in_keras_layout(weight_ih, weight_hh, bias_ih, bias_hh):
    """nn.RNN's arrays as Keras's kernel, recurrent_kernel and its one bias (b_ih + b_hh)."""
    return weight_ih.T, weight_hh.T, bias_ih + bias_hh


TORCH_MODULES = {"GRU": ("GRU", torch_gru_in_keras_layout), "SimpleRNN": ("RNN", torch_rnn_in_keras_layout)}


@pytest.mark.parametrize("kind", list(TORCH_MODULES))
def test_gru_and_simple_rnn_gradients_match_torch_autograd(kind):
    """torch autograd on nn.GRU (reset_after=True) and nn.RNN (tanh) gives reflstm's gradients,
    with the Keras-layout weights built from torch's by hand."""
    torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")
    module_name, keras_layout = TORCH_MODULES[kind]
    torch.manual_seed(1)
    m = getattr(torch.nn, module_name)(INPUT_DIM, UNITS, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():  # torch's default biases are small: make every block distinct and sizeable
            p.uniform_(-0.8, 0.8)
    rng = np.random.default_rng(9)
    x, h0 = rng.normal(size=(BATCH, TIMESTEPS, INPUT_DIM)), rng.normal(0, 0.8, (BATCH, UNITS))
    d_y, d_h = rng.normal(size=(BATCH, TIMESTEPS, UNITS)), rng.normal(size=(BATCH, UNITS))
    x_t, h0_t = torch.tensor(x, requires_grad=True), torch.tensor(h0[None], requires_grad=True)
    y, h_n = m(x_t, h0_t)
    ((y * torch.from_numpy(d_y)).sum() + (h_n[0] * torch.from_numpy(d_h)).sum()).backward()
    arrays = [getattr(m, f"{name}_l0").detach().numpy() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    grads = [getattr(m, f"{name}_l0").grad.numpy() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    ref = getattr(reflstm, kind)(*keras_layout(*arrays), return_sequences=True, return_state=True)
    np.testing.assert_allclose(ref(x, initial_state=[h0])[0], y.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = ref.backward(x, [d_y, d_h], initial_state=[h0])
    kernel, recurrent_kernel, bias = keras_layout(*grads)
    if kind == "SimpleRNN":
        bias = grads[2]  # Keras's one bias is b_ih + b_hh: its gradient is each one's
    for ours, theirs in ((g.x, x_t.grad.numpy()), (g.initial_state[0], h0_t.grad.numpy()[0]), (g.kernel, kernel),
                         (g.recurrent_kernel, recurrent_kernel), (g.bias, bias)):
        np.testing.assert_allclose(ours, theirs, rtol=GRAD_TOL, atol=GRAD_TOL)
    if kind == "SimpleRNN":
        np.testing.assert_allclose(grads[2], grads[3], rtol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_match_central_differences(kind):
    """A third referee: central differences of the loss, in float64, for x and every weight."""
    cls = getattr(reflstm, KINDS[kind][0])
    rng = np.random.default_rng(6)
    options = dict(return_sequences=True, go_backwards=True, **KINDS[kind][1])
    weights = random_cell_weights(rng, cls.__name__, INPUT_DIM, UNITS, "float64",
                                  reset_after=options.get("reset_after", True))
    if cls is not reflstm.SimpleRNN:
        options["recurrent_activation"] = "hard_sigmoid"
    x = rng.normal(size=(2, TIMESTEPS, INPUT_DIM))
    mask = MASK[:2]
    d = rng.normal(size=(2, TIMESTEPS, UNITS))

    def loss(kernel, recurrent, bias, x):
        return float(np.sum(cls(kernel, recurrent, bias, **options)(x, mask=mask) * d))

    g = cls(*weights, **options).backward(x, d, mask=mask)
    arguments = weights + [x]
    for position, analytic in enumerate([g.kernel, g.recurrent_kernel, g.bias, g.x]):
        flat = analytic.reshape(-1)
        for index in rng.choice(flat.size, min(6, flat.size), replace=False):
            plus = [a.copy() for a in arguments]
            minus = [a.copy() for a in arguments]
            eps = 1e-6
            plus[position].reshape(-1)[index] += eps
            minus[position].reshape(-1)[index] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert abs(numeric - flat[index]) <= 1e-7 * max(1, abs(numeric)), (position, index)
