"""PyTorch nn.LSTM, nn.GRU and nn.RNN <-> reflstm, checked against real torch modules and the
real Keras layers (Keras 3 and tf_keras) that the converted weights go into."""

import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, call_keras, make_layer, random_cell_weights
from reflstm.frameworks.pytorch import TorchGRU, TorchLSTM, TorchRNN

torch = pytest.importorskip("torch", reason="torch is a test extra; install reflstm[test]")

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6}
BATCH, SEQ, FEATURES, HIDDEN = 3, 7, 4, 5

# id -> (torch module class, its options, the reflstm layer, the whole-module converter, Keras options)
KINDS = {
    "LSTM": (torch.nn.LSTM, {}, reflstm.LSTM, TorchLSTM, {}),
    "GRU": (torch.nn.GRU, {}, reflstm.GRU, TorchGRU, {"reset_after": True}),
    "RNN_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, reflstm.SimpleRNN, TorchRNN, {"activation": "tanh"}),
    "RNN_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, reflstm.SimpleRNN, TorchRNN, {"activation": "relu"}),
}


def module(dtype, kind="LSTM", seed=0, **options):
    """A torch module with PyTorch's random init: every gate and both biases differ and are non-zero."""
    torch_class, kind_options = KINDS[kind][:2]
    torch.manual_seed(seed)
    return torch_class(FEATURES, HIDDEN, dtype=dtype, **kind_options, **options)


def inputs(dtype, batch_first, states=0, seed=1, kind="LSTM"):
    """x, and hx as the module takes it: None, (h_0, c_0) for an LSTM, h_0 for the others."""
    rng = np.random.default_rng(seed)
    np_dtype = "float64" if dtype == torch.float64 else "float32"
    shape = (BATCH, SEQ, FEATURES) if batch_first else (SEQ, BATCH, FEATURES)
    x = rng.normal(0, 1.5, shape).astype(np_dtype)
    if not states:
        return x, None
    hx = tuple(rng.normal(0, 0.8, (states, BATCH, HIDDEN)).astype(np_dtype) for _ in range(2))
    return x, hx if kind == "LSTM" else hx[0]


def run_torch(m, x, hx):
    """The module's output and its final states, flat: (output, h_n) or (output, h_n, c_n)."""
    with torch.no_grad():
        if hx is not None:
            hx = tuple(map(torch.from_numpy, hx)) if isinstance(hx, tuple) else torch.from_numpy(hx)
        y, states = m(torch.from_numpy(x), hx)
    states = states if isinstance(states, tuple) else (states,)
    return (y.numpy(), *(s.numpy() for s in states))


def flat(result):
    """A converter's (output, states) as run_torch returns it."""
    output, states = result
    return (output, *(states if isinstance(states, tuple) else (states,)))


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
@pytest.mark.parametrize("kind", list(KINDS))
def test_whole_torch_module(kind, case, with_state, dtype):
    """Every layer and direction converted: output and final states equal the torch module's."""
    options = CASES[case]
    m = module(dtype, kind, **options)
    states = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    x, hx = inputs(dtype, options.get("batch_first", False), states if with_state else 0, kind=kind)
    expected = run_torch(m, x, hx)
    actual = flat(KINDS[kind][3](m)(x, hx))
    assert len(actual) == len(expected) == (3 if kind == "LSTM" else 2)
    tol = TOLERANCE[dtype]
    for ours, wanted in zip(actual, expected):
        assert ours.shape == wanted.shape
        np.testing.assert_allclose(ours, wanted, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", list(KINDS))
def test_reverse_direction_is_go_backwards(kind):
    """The reverse direction converts to go_backwards=True; flipped to input order it is torch's."""
    m = module(torch.float64, kind, bidirectional=True)
    x, _ = inputs(torch.float64, batch_first=False)
    expected = run_torch(m, x, None)[0]
    backward = KINDS[kind][2].from_torch(m, layer=0, reverse=True)
    assert backward.go_backwards
    y = backward(x.transpose(1, 0, 2))[0]
    np.testing.assert_allclose(y[:, ::-1].transpose(1, 0, 2), expected[..., HIDDEN:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["GRU", "RNN_tanh"])
def test_no_bias_module_is_bias_none(kind):
    """A module built with bias=False converts to bias=None, and to_torch gives no bias arrays back."""
    m = module(torch.float64, kind, bias=False)
    ref = KINDS[kind][2].from_torch(m)
    assert ref.bias is None
    assert set(ref.to_torch()) == set(m.state_dict()) == {"weight_ih_l0", "weight_hh_l0"}


def reflstm_layer(kind, seed=3):
    """A reflstm layer of `kind` with distinct per-gate weights and non-zero biases (two rows for a GRU)."""
    layer_class, keras_options = KINDS[kind][2], KINDS[kind][4]
    weights = random_cell_weights(np.random.default_rng(seed), layer_class.__name__, FEATURES, HIDDEN, "float64")
    return layer_class(*weights, return_sequences=True, return_state=True, **keras_options)


@pytest.mark.parametrize("kind", list(KINDS))
def test_to_torch_round_trip(kind):
    """to_torch() loads into a torch module that computes what the reflstm layer computes, and
    from_torch of that state_dict gives the same weights back."""
    ref = reflstm_layer(kind)
    m = module(torch.float64, kind)
    state = ref.to_torch()
    assert set(state) == set(m.state_dict())
    m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x, _ = inputs(torch.float64, batch_first=False)
    y, h = run_torch(m, x, None)[:2]
    ours, h_ours = ref(x.transpose(1, 0, 2))[:2]
    np.testing.assert_allclose(y.transpose(1, 0, 2), ours, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h[0], h_ours, rtol=1e-12, atol=1e-12)
    extra = {"nonlinearity": ref.activation} if kind.startswith("RNN") else {}
    back = type(ref)(**reflstm.frameworks.pytorch.arguments(type(ref).__name__, state, **extra))
    for name in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ref, name))


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_to_torch_computes_the_keras_layer(kind, keras_version):
    """A real Keras layer's weights, through from_keras and to_torch, load into a torch module
    whose output is the Keras layer's (float64)."""
    layer_name = KINDS[kind][2].__name__
    layer = make_layer(keras_version, FEATURES, HIDDEN, "float64", kind=layer_name, return_sequences=True,
                       **KINDS[kind][4])
    m = module(torch.float64, kind)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in KINDS[kind][2].from_keras(layer).to_torch().items()})
    x, _ = inputs(torch.float64, batch_first=False)
    expected = call_keras(layer, x.transpose(1, 0, 2))
    np.testing.assert_allclose(run_torch(m, x, None)[0].transpose(1, 0, 2), expected, rtol=1e-12, atol=1e-12)


def test_projections_are_refused():
    """proj_size > 0 is not an LSTM reflstm models: refused, saying so."""
    m = torch.nn.LSTM(FEATURES, HIDDEN, proj_size=2)
    with pytest.raises(reflstm.ReflstmError, match="proj_size"):
        reflstm.LSTM.from_torch(m)
    with pytest.raises(reflstm.ReflstmError, match="layer"):
        reflstm.LSTM.from_torch(module(torch.float32), layer=1)


# id -> (the reflstm layer asked for, the torch module whose weights are given, as a module or
# its state_dict, and the name the refusal must say)
WRONG_KINDS = {
    "gru_module_to_lstm": ("LSTM", "GRU", "module", "nn.GRU"),
    "gru_weights_to_lstm": ("LSTM", "GRU", "state_dict", "nn.GRU"),
    "lstm_module_to_gru": ("GRU", "LSTM", "module", "nn.LSTM"),
    "lstm_weights_to_gru": ("GRU", "LSTM", "state_dict", "nn.LSTM"),
    "rnn_module_to_gru": ("GRU", "RNN_tanh", "module", "nn.RNN"),
    "rnn_weights_to_lstm": ("LSTM", "RNN_relu", "state_dict", "nn.RNN"),
    "gru_module_to_simple_rnn": ("SimpleRNN", "GRU", "module", "nn.GRU"),
    "lstm_weights_to_simple_rnn": ("SimpleRNN", "LSTM", "state_dict", "nn.LSTM"),
}


@pytest.mark.parametrize("case", list(WRONG_KINDS))
def test_module_of_another_kind_is_refused(case):
    """A module (or its weights, told by weight_hh's k * hidden rows) of another kind is refused by name."""
    wanted, given, form, name = WRONG_KINDS[case]
    m = module(torch.float64, given)
    source = m if form == "module" else m.state_dict()
    layer_class = getattr(reflstm, wanted)
    with pytest.raises(reflstm.ReflstmError, match=name):
        reflstm.frameworks.pytorch.arguments(wanted, source, nonlinearity="tanh" if wanted == "SimpleRNN" else None)
    with pytest.raises(reflstm.ReflstmError, match=name):
        layer_class.from_torch(source)


@pytest.mark.parametrize("kind", list(KINDS))
def test_whole_module_of_another_kind_is_refused(kind):
    """TorchLSTM, TorchGRU and TorchRNN each refuse the other kinds' modules."""
    converter = KINDS[kind][3]
    for other in KINDS:
        if KINDS[other][3] is not converter:
            with pytest.raises(reflstm.ReflstmError, match="module_or_state_dict"):
                converter(module(torch.float64, other))


def test_simple_rnn_state_dict_needs_its_nonlinearity():
    """An nn.RNN's state_dict does not say tanh or relu: refused without nonlinearity=, taken with it."""
    m = module(torch.float64, "RNN_relu")
    with pytest.raises(reflstm.ReflstmError, match="nonlinearity"):
        reflstm.SimpleRNN.from_torch(m.state_dict())
    arguments = reflstm.frameworks.pytorch.arguments("SimpleRNN", m.state_dict(), nonlinearity="relu")
    assert arguments["activation"] == "relu"
    with pytest.raises(reflstm.ReflstmError, match="'relu'"):
        reflstm.frameworks.pytorch.arguments("SimpleRNN", m, nonlinearity="tanh")
    with pytest.raises(reflstm.ReflstmError, match="only nn.RNN"):
        reflstm.frameworks.pytorch.arguments("GRU", module(torch.float64, "GRU"), nonlinearity="tanh")


def test_to_torch_refuses_reset_before_the_product():
    """A Keras GRU with reset_after=False has no nn.GRU form (torch resets after W_hn h): refused."""
    ref = reflstm.GRU(np.zeros((2, 6)), np.zeros((2, 6)), np.ones(6), reset_after=False)
    with pytest.raises(reflstm.ReflstmError, match="reset_after=True: PyTorch's nn.GRU applies the reset gate after"):
        ref.to_torch()


# id -> (the reflstm layer, what the refusal must say)
OTHER_ACTIVATIONS = {
    "lstm_hard_sigmoid": (reflstm.LSTM(np.zeros((2, 8)), np.zeros((2, 8)), recurrent_activation="hard_sigmoid"),
                          "tanh and sigmoid"),
    "gru_hard_sigmoid": (reflstm.GRU(np.zeros((2, 6)), np.zeros((2, 6)), recurrent_activation="hard_sigmoid"),
                         "tanh and sigmoid"),
    "gru_relu": (reflstm.GRU(np.zeros((2, 6)), np.zeros((2, 6)), activation="relu"), "tanh and sigmoid"),
    "simple_rnn_sigmoid": (reflstm.SimpleRNN(np.zeros((2, 2)), np.zeros((2, 2)), activation="sigmoid"),
                           "nonlinearity='tanh' or nonlinearity='relu'"),
    "simple_rnn_linear": (reflstm.SimpleRNN(np.zeros((2, 2)), np.zeros((2, 2)), activation=None),
                          "nonlinearity='tanh' or nonlinearity='relu'"),
}


@pytest.mark.parametrize("case", list(OTHER_ACTIVATIONS))
def test_to_torch_refuses_other_activations(case):
    """Activations the torch module does not have are refused, naming the ones it has."""
    ref, message = OTHER_ACTIVATIONS[case]
    with pytest.raises(reflstm.ReflstmError, match=message):
        ref.to_torch()


def test_dropout_in_training_mode_is_refused():
    """Dropout between layers acts in training mode: refused there, converted in eval mode."""
    m = module(torch.float64, "GRU", num_layers=2, dropout=0.5)
    with pytest.raises(reflstm.ReflstmError, match="eval"):
        TorchGRU(m)
    x, _ = inputs(torch.float64, batch_first=False)
    m.eval()
    np.testing.assert_allclose(TorchGRU(m)(x)[0], run_torch(m, x, None)[0], rtol=1e-12, atol=1e-12)


def test_hx_of_the_wrong_form_is_refused():
    """An LSTM's hx is a pair, a GRU's one array with num_layers * num_directions rows."""
    x, hx = inputs(torch.float64, batch_first=False, states=2, kind="LSTM")
    with pytest.raises(reflstm.ReflstmError, match="pair"):
        TorchLSTM(module(torch.float64, num_layers=2))(x, hx[0])
    with pytest.raises(reflstm.ReflstmError, match="num_directions = 1"):
        TorchGRU(module(torch.float64, "GRU"))(x, hx[0])


def test_readme_worked_conversion_into_keras():
    """The README's by-hand PyTorch -> Keras LSTM conversion: a Keras layer then computes torch's output."""
    m = module(torch.float64)
    sd = m.state_dict()
    kernel = sd["weight_ih_l0"].numpy().T
    recurrent_kernel = sd["weight_hh_l0"].numpy().T
    bias = (sd["bias_ih_l0"] + sd["bias_hh_l0"]).numpy()
    layer = make_layer(3, FEATURES, HIDDEN, "float64", return_sequences=True,
                       weights=[kernel, recurrent_kernel, bias])
    x, _ = inputs(torch.float64, batch_first=False)
    expected = run_torch(m, x, None)[0]
    np.testing.assert_allclose(call_keras(layer, x.transpose(1, 0, 2)), expected.transpose(1, 0, 2),
                               rtol=1e-12, atol=1e-12)
    ref = reflstm.LSTM.from_torch(m)
    np.testing.assert_array_equal(ref.kernel, kernel)
    np.testing.assert_array_equal(ref.bias, bias)


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS)
def test_readme_worked_gru_conversion_into_keras(keras_version):
    """The README's PyTorch -> Keras GRU conversion, by hand and with reflstm: a Keras
    GRU(reset_after=True) then computes torch's output."""
    torch_gru = module(torch.float64, "GRU")
    keras_gru = make_layer(keras_version, FEATURES, HIDDEN, "float64", kind="GRU", reset_after=True,
                           return_sequences=True)
    x, _ = inputs(torch.float64, batch_first=False)
    expected = run_torch(torch_gru, x, None)[0].transpose(1, 0, 2)  # (batch, timesteps, units)

    # The README's lines, as written there:
    sd = torch_gru.state_dict()
    def zrh(a):                                           # PyTorch's gate blocks r, z, n -> Keras's z, r, h
        r, z, n = np.split(a, 3, axis=-1)
        return np.concatenate([z, r, n], axis=-1)
    kernel = zrh(sd["weight_ih_l0"].numpy().T)            # (3u, in) -> (in, 3u)
    recurrent_kernel = zrh(sd["weight_hh_l0"].numpy().T)  # (3u, u)  -> (u, 3u)
    bias = np.stack([zrh(sd["bias_ih_l0"].numpy()),       # two biases -> (2, 3u): input, recurrent
                     zrh(sd["bias_hh_l0"].numpy())])
    keras_gru.set_weights([kernel, recurrent_kernel, bias])
    by_hand = call_keras(keras_gru, x.transpose(1, 0, 2))

    ref = reflstm.GRU.from_torch(torch_gru)               # the same, by reflstm (reset_after=True)
    keras_gru.set_weights([ref.kernel, ref.recurrent_kernel, ref.bias])
    # (end of the README's lines)

    np.testing.assert_allclose(by_hand, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(call_keras(keras_gru, x.transpose(1, 0, 2)), expected, rtol=1e-12, atol=1e-12)
    for ours, by_hand_array in zip((ref.kernel, ref.recurrent_kernel, ref.bias), (kernel, recurrent_kernel, bias)):
        np.testing.assert_array_equal(ours, by_hand_array)
