"""PyTorch nn.LSTM <-> reflstm, checked against real torch modules."""

import numpy as np
import pytest

import reflstm
from reflstm.frameworks.pytorch import TorchLSTM

torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6}
BATCH, SEQ, FEATURES, HIDDEN = 3, 7, 4, 5


def module(dtype, seed=0, **options):
    """An nn.LSTM with PyTorch's random init: every gate and both biases differ and are non-zero."""
    torch.manual_seed(seed)
    return torch.nn.LSTM(FEATURES, HIDDEN, dtype=dtype, **options)


def inputs(dtype, batch_first, states=0, seed=1):
    rng = np.random.default_rng(seed)
    shape = (BATCH, SEQ, FEATURES) if batch_first else (SEQ, BATCH, FEATURES)
    x = rng.normal(0, 1.5, shape)
    hx = None
    if states:
        hx = tuple(rng.normal(0, 0.8, (states, BATCH, HIDDEN)) for _ in range(2))
    np_dtype = "float64" if dtype == torch.float64 else "float32"
    return x.astype(np_dtype), None if hx is None else tuple(h.astype(np_dtype) for h in hx)


def run_torch(m, x, hx):
    with torch.no_grad():
        t_hx = None if hx is None else tuple(torch.from_numpy(h) for h in hx)
        y, (h, c) = m(torch.from_numpy(x), t_hx)
    return y.numpy(), h.numpy(), c.numpy()


CASES = {
    "one_layer": {},
    "two_layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "two_layers_bidirectional_batch_first": {"num_layers": 2, "bidirectional": True, "batch_first": True},
    "no_bias": {"bias": False, "num_layers": 2},
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("case", list(CASES))
def test_whole_torch_lstm(case, with_state, dtype):
    """Every layer and direction converted: output, h_n and c_n equal the torch module's."""
    options = CASES[case]
    m = module(dtype, **options)
    states = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    x, hx = inputs(dtype, options.get("batch_first", False), states if with_state else 0)
    expected = run_torch(m, x, hx)
    output, (h, c) = TorchLSTM(m)(x, hx)
    tol = TOLERANCE[dtype]
    for actual, wanted in zip((output, h, c), expected):
        np.testing.assert_allclose(actual, wanted, rtol=tol, atol=tol)


def test_reverse_direction_is_go_backwards():
    """The reverse direction converts to go_backwards=True; flipped to input order it is torch's."""
    m = module(torch.float64, bidirectional=True)
    x, _ = inputs(torch.float64, batch_first=False)
    expected, _, _ = run_torch(m, x, None)
    backward = reflstm.LSTM.from_torch(m, layer=0, reverse=True)
    assert backward.go_backwards
    y, _, _ = backward(x.transpose(1, 0, 2))
    np.testing.assert_allclose(y[:, ::-1].transpose(1, 0, 2), expected[..., HIDDEN:], rtol=1e-12, atol=1e-12)


def test_to_torch_round_trip():
    """to_torch() loads into a torch module that computes what the reflstm LSTM computes."""
    rng = np.random.default_rng(3)
    ref = reflstm.LSTM(rng.normal(size=(FEATURES, 4 * HIDDEN)), rng.normal(size=(HIDDEN, 4 * HIDDEN)),
                       rng.normal(size=4 * HIDDEN), return_sequences=True, return_state=True)
    m = module(torch.float64)
    state = ref.to_torch()
    assert set(state) == set(m.state_dict())
    m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x, _ = inputs(torch.float64, batch_first=False)
    y, h, c = run_torch(m, x, None)
    ours, h_ours, c_ours = ref(x.transpose(1, 0, 2))
    np.testing.assert_allclose(y.transpose(1, 0, 2), ours, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h[0], h_ours, rtol=1e-12, atol=1e-12)
    # and from the state_dict back again
    back = reflstm.LSTM.from_torch(state)
    np.testing.assert_array_equal(back.kernel, ref.kernel)
    np.testing.assert_array_equal(back.bias, ref.bias)


def test_projections_are_refused():
    """proj_size > 0 is not an LSTM reflstm models: refused, saying so."""
    m = torch.nn.LSTM(FEATURES, HIDDEN, proj_size=2)
    with pytest.raises(reflstm.ReflstmError, match="proj_size"):
        reflstm.LSTM.from_torch(m)
    with pytest.raises(reflstm.ReflstmError, match="layer"):
        reflstm.LSTM.from_torch(module(torch.float32), layer=1)


def test_to_torch_refuses_other_activations():
    """PyTorch's LSTM has only sigmoid and tanh: other activations are refused."""
    ref = reflstm.LSTM(np.zeros((2, 8)), np.zeros((2, 8)), recurrent_activation="hard_sigmoid")
    with pytest.raises(reflstm.ReflstmError, match="tanh and sigmoid"):
        ref.to_torch()


def test_readme_worked_conversion_into_keras():
    """The README's by-hand PyTorch -> Keras conversion: a Keras layer then computes torch's output."""
    from keras_layers import call_keras, make_layer

    m = module(torch.float64)
    sd = m.state_dict()
    kernel = sd["weight_ih_l0"].numpy().T
    recurrent_kernel = sd["weight_hh_l0"].numpy().T
    bias = (sd["bias_ih_l0"] + sd["bias_hh_l0"]).numpy()
    layer = make_layer(3, FEATURES, HIDDEN, "float64", return_sequences=True,
                       weights=[kernel, recurrent_kernel, bias])
    x, _ = inputs(torch.float64, batch_first=False)
    expected, _, _ = run_torch(m, x, None)
    np.testing.assert_allclose(call_keras(layer, x.transpose(1, 0, 2)), expected.transpose(1, 0, 2),
                               rtol=1e-12, atol=1e-12)
    ref = reflstm.LSTM.from_torch(m)
    np.testing.assert_array_equal(ref.kernel, kernel)
    np.testing.assert_array_equal(ref.bias, bias)
