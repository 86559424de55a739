"""Bad input gets a ReflstmError (a ValueError) naming the argument, the expectation and what came."""

import numpy as np
import pytest

import reflstm

UNITS, INPUT_DIM = 3, 2


def lstm(**options):
    rng = np.random.default_rng(0)
    return reflstm.LSTM(
        rng.normal(size=(INPUT_DIM, 4 * UNITS)),
        rng.normal(size=(UNITS, 4 * UNITS)),
        rng.normal(size=4 * UNITS),
        **options,
    )


X = np.zeros((2, 5, INPUT_DIM))
STATE = [np.zeros((2, UNITS)), np.zeros((2, UNITS))]

CALL_ERRORS = {
    "x_rank_2": (dict(x=np.zeros((5, INPUT_DIM))), "x", "3-D", "(5, 2)"),
    "x_feature_count": (dict(x=np.zeros((2, 5, 7))), "x", "input_dim=2", "(2, 5, 7)"),
    "x_no_timesteps": (dict(x=np.zeros((2, 0, INPUT_DIM))), "x", "at least one time step", "(2, 0, 2)"),
    "x_strings": (dict(x=np.full((2, 5, INPUT_DIM), "a")), "x", "real numbers", "<U1"),
    "mask_shape": (dict(mask=np.ones((2, 4), bool)), "mask", "(2, 5)", "(2, 4)"),
    "mask_values": (dict(mask=np.full((2, 5), 0.5)), "mask", "0 or 1", "float64"),
    "state_not_pair": (dict(initial_state=[np.zeros((2, UNITS))]), "initial_state", "[h0, c0]", "list"),
    "state_array": (dict(initial_state=np.zeros((2, 2, UNITS))), "initial_state", "[h0, c0]", "array"),
    "h0_shape": (dict(initial_state=[np.zeros((2, 4)), STATE[1]]), "h0", "(2, 3)", "(2, 4)"),
    "c0_shape": (dict(initial_state=[STATE[0], np.zeros((3, UNITS))]), "c0", "(2, 3)", "(3, 3)"),
}


@pytest.mark.parametrize("case", list(CALL_ERRORS))
@pytest.mark.parametrize("method", ["__call__", "trace"])
def test_bad_call_arguments(case, method):
    """A wrong shape, dtype or structure names the argument, the expectation and what came."""
    kwargs, argument, expected, received = CALL_ERRORS[case]
    kwargs = {"x": X, **kwargs}
    with pytest.raises(reflstm.ReflstmError) as error:
        getattr(lstm(), method)(**kwargs)
    message = str(error.value)
    assert argument in message and expected in message and received in message, message
    assert isinstance(error.value, ValueError)


WEIGHT_ERRORS = {
    "kernel_1d": ((np.zeros(12), np.zeros((3, 12)), None), "kernel", "(input_dim, 4 * units)"),
    "kernel_not_4_units": ((np.zeros((2, 10)), np.zeros((3, 12)), None), "kernel", "4 * units"),
    "recurrent_shape": ((np.zeros((2, 12)), np.zeros((4, 12)), None), "recurrent_kernel", "(3, 12)"),
    "recurrent_transposed": ((np.zeros((2, 12)), np.zeros((12, 3)), None), "recurrent_kernel", "(3, 12)"),
    "bias_shape": ((np.zeros((2, 12)), np.zeros((3, 12)), np.zeros(8)), "bias", "(12,)"),
    "bias_doubled": ((np.zeros((2, 12)), np.zeros((3, 12)), np.zeros(24)), "bias", "(12,)"),
    "int_kernel": ((np.zeros((2, 12), int), np.zeros((3, 12)), None), "kernel", "float32 or float64"),
    "mixed_dtypes": (
        (np.zeros((2, 12)), np.zeros((3, 12), np.float32), None), "recurrent_kernel", "dtype float64"
    ),
}


@pytest.mark.parametrize("case", list(WEIGHT_ERRORS))
def test_inconsistent_weights(case):
    """Weights of wrong or inconsistent shapes or dtypes are refused, naming the weight."""
    weights, argument, expected = WEIGHT_ERRORS[case]
    with pytest.raises(reflstm.ReflstmError) as error:
        reflstm.LSTM(*weights)
    assert argument in str(error.value) and expected in str(error.value), str(error.value)


@pytest.mark.parametrize(
    "options, argument",
    [
        (dict(activation="tanhh"), "activation"),
        (dict(recurrent_activation="glu"), "recurrent_activation"),
        (dict(recurrent_activation=np.tanh), "recurrent_activation"),
        (dict(keras_version=1), "keras_version"),
        (dict(return_sequences="yes"), "return_sequences"),
        (dict(go_backwards=1), "go_backwards"),
    ],
)
def test_bad_options(options, argument):
    """An unknown activation or a malformed option is refused, never ignored."""
    with pytest.raises(reflstm.ReflstmError, match=argument):
        lstm(**options)


KERAS1_ARRAYS = [np.ones(s) for _ in "icfo" for s in ((INPUT_DIM, UNITS), (UNITS, UNITS), (UNITS,))]
KERNELS = (np.zeros((INPUT_DIM, 4 * UNITS)), np.zeros((UNITS, 4 * UNITS)), np.zeros(4 * UNITS))
CONSTRUCTOR_ERRORS = {
    "keras1_twelve_arrays": (KERAS1_ARRAYS, {}, "arrays", "from_keras1"),
    "keras1_list_as_kernel": ((KERAS1_ARRAYS, *KERNELS[1:]), {}, "kernel", "from_keras1"),
    "four_arrays": ((*KERNELS, KERNELS[2]), {}, "arrays", "received 4 arrays"),
    "kernel_only": (KERNELS[:1], {}, "recurrent_kernel", "received nothing"),
    "dropout": (KERNELS, dict(dropout=0.2), "dropout", "only in training"),
    "recurrent_dropout": (KERNELS, dict(recurrent_dropout=0.1), "recurrent_dropout", "only in training"),
    "units": (KERNELS, dict(units=UNITS), "units", "kernel's shape"),
    "use_bias": (KERNELS[:2], dict(use_bias=False), "use_bias", "bias=None"),
    "misspelt_option": (KERNELS, dict(return_sequence=True), "return_sequence", "return_sequences"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_ERRORS))
def test_constructor_arguments(case):
    """A wrong number of arrays or an option LSTM does not take is a ReflstmError naming it."""
    arrays, options, argument, words = CONSTRUCTOR_ERRORS[case]
    with pytest.raises(reflstm.ReflstmError) as error:
        reflstm.LSTM(*arrays, **options)
    message = str(error.value)
    assert message.startswith(f"{argument}:") and words in message, message


def test_stateful_batch_size_is_fixed():
    """A stateful LSTM refuses a batch of another size, as Keras does."""
    ref = lstm(stateful=True)
    ref(X)
    with pytest.raises(reflstm.ReflstmError, match="batch size 2"):
        ref(np.zeros((3, 5, INPUT_DIM)))


def test_bad_gate_name():
    """A gate name outside i, f, c, o is refused."""
    with pytest.raises(reflstm.ReflstmError, match="gate"):
        lstm().trace(X).preactivation("g")


def test_weights_are_copied_and_read_only():
    """The LSTM owns read-only copies: changing the caller's array changes nothing."""
    kernel = np.ones((INPUT_DIM, 4 * UNITS))
    ref = reflstm.LSTM(kernel, np.zeros((UNITS, 4 * UNITS)))
    kernel[:] = 5
    assert (ref.kernel == 1).all()
    with pytest.raises(ValueError):
        ref.kernel[0, 0] = 2
    with pytest.raises(ValueError):
        ref.W_i[0, 0] = 2


def test_trace_does_not_freeze_the_callers_arrays():
    """A trace freezes its own arrays, never the caller's initial state or mask."""
    h0, c0 = np.zeros((2, UNITS)), np.zeros((2, UNITS))
    mask = np.ones((2, 5), bool)
    lstm().trace(X, mask=mask, initial_state=[h0, c0])
    h0[:] = 1
    mask[:] = False


def test_returned_arrays_are_not_the_carried_state():
    """Changing a stateful LSTM's returned arrays does not change the state it carries."""
    ref = lstm(stateful=True, return_state=True)
    out, h, c = ref(X)
    assert out is not h
    h[:] = 100
    assert not np.shares_memory(h, ref.states[0]) and (ref.states[0] != 100).all()


def test_converter_misuse_is_refused():
    """Misused converters raise ReflstmError, not IndexError, KeyError or TypeError."""
    rng = np.random.default_rng(0)
    node = lstm().to_onnx()
    with pytest.raises(reflstm.ReflstmError, match="index"):
        reflstm.LSTM.from_onnx(node["W"], node["R"], node["B"], index=1)
    with pytest.raises(reflstm.ReflstmError, match="bias_hh"):
        reflstm.LSTM.from_torch({"weight_ih_l0": rng.normal(size=(12, 2)), "weight_hh_l0": rng.normal(size=(12, 3)),
                                 "bias_ih_l0": rng.normal(size=12)})
    with pytest.raises(reflstm.ReflstmError, match="nn.LSTM module"):
        from reflstm.frameworks.pytorch import TorchLSTM

        TorchLSTM({"weight_ih_l0": np.zeros((12, 2)), "weight_hh_l0": np.zeros((12, 3))})
    arrays = [rng.normal(size=s) for _ in "icfo" for s in ((2, 3), (3, 3), (3,))]
    assert reflstm.LSTM.from_keras1(arrays, keras_version=3).keras_version == 3
    with pytest.raises(reflstm.ReflstmError, match="d_output"):
        lstm(return_state=True).backward(X, 1.0)


def test_diagnose_stays_a_function():
    """reflstm.diagnose is the function even after the command line imported its module."""
    import reflstm.cli  # noqa: F401  (imports reflstm.analysis.diagnosis)

    assert callable(reflstm.diagnose) and reflstm.diagnose.__name__ == "diagnose"
