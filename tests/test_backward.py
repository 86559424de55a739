"""The backward pass against tf.GradientTape on the real Keras layers, torch autograd, and
central differences."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, keras_module, make_layer
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
    "initial_state": ({"return_state": True}, {"initial_state": True}),
    "no_bias": ({"use_bias": False, "return_sequences": True}, {}),
    "hard_sigmoid_relu": ({"recurrent_activation": "hard_sigmoid", "activation": "relu"}, {}),
    "softmax_gelu": ({"recurrent_activation": "softmax", "activation": "gelu",
                      "return_sequences": True}, {}),
}
MASK = np.array([[1, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], bool)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=["keras3", "tf_keras"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_gradient_tape(case, keras_version):
    """dx, dW, dU, db and the initial state's gradients equal GradientTape's, to 1e-10."""
    layer_options, call_options = CASES[case]
    layer = make_layer(keras_version, INPUT_DIM, UNITS, "float64", seed=2, **layer_options)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.5, (BATCH, TIMESTEPS, INPUT_DIM))
    mask = MASK if call_options.get("mask") else None
    state = [rng.normal(0, 0.8, (BATCH, UNITS)) for _ in range(2)] if call_options.get("initial_state") else None
    ref = reflstm.LSTM.from_keras(layer)
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


def test_gradients_match_central_differences():
    """A third referee: central differences of the loss, in float64, for x and every weight."""
    rng = np.random.default_rng(6)
    weights = [rng.normal(0, 0.6, s) for s in ((INPUT_DIM, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,))]
    options = dict(return_sequences=True, go_backwards=True, recurrent_activation="hard_sigmoid")
    x = rng.normal(size=(2, TIMESTEPS, INPUT_DIM))
    mask = MASK[:2]
    d = rng.normal(size=(2, TIMESTEPS, UNITS))

    def loss(kernel, recurrent, bias, x):
        return float(np.sum(reflstm.LSTM(kernel, recurrent, bias, **options)(x, mask=mask) * d))

    g = reflstm.LSTM(*weights, **options).backward(x, d, mask=mask)
    arguments = weights + [x]
    for position, analytic in enumerate([g.kernel, g.recurrent_kernel, g.bias, g.x]):
        flat = analytic.reshape(-1)
        for index in rng.choice(flat.size, 6, replace=False):
            plus = [a.copy() for a in arguments]
            minus = [a.copy() for a in arguments]
            eps = 1e-6
            plus[position].reshape(-1)[index] += eps
            minus[position].reshape(-1)[index] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert abs(numeric - flat[index]) <= 1e-7 * max(1, abs(numeric)), (position, index)
