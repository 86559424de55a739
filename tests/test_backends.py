"""Keras 3 on its TensorFlow, JAX and torch backends, against reflstm's ``keras_backend``.

Keras 3 reads KERAS_BACKEND once, at import, so each backend runs in its own process:
tests/backend_worker.py builds every case of tests/backend_cases.py on one backend (distinct
weights per gate, non-zero biases), runs it and saves inputs, weights and outputs. The workers
of all backends start together, once per session; the tests compare here, in NumPy.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import backend_cases as C
import reflstm
from reflstm.models.layers import Bidirectional

FLOAT32 = 1e-6  # every case runs in float32; the largest difference seen is 4.8e-7
FLOAT64 = 1e-12
GRADIENT = 2e-6  # float32 gradients, up to ~10 in size; the largest difference seen is 4.8e-7
HERE = os.path.dirname(os.path.abspath(__file__))
# The package each backend needs, and how to get it.
NEEDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """{backend: the directory its worker filled, or why it could not run}: all workers at once."""
    started, results = {}, {}
    for backend in C.BACKENDS:
        if importlib.util.find_spec(NEEDS[backend]) is None:
            results[backend] = (f"{NEEDS[backend]} is not installed, so Keras 3 cannot run on "
                                f"{backend} (pip install -e '.[test]')")
            continue
        out = tmp_path_factory.mktemp(f"keras_{backend}")
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")]))
        started[backend] = (out, subprocess.Popen(
            [sys.executable, os.path.join(HERE, "backend_worker.py"), str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for backend, (out, process) in started.items():
        try:
            log, _ = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            process.kill()
            log, _ = process.communicate()
            results[backend] = RuntimeError(f"the {backend} worker ran past 900 s:\n{log[-4000:]}")
            continue
        if process.returncode != 0:
            results[backend] = RuntimeError(f"the {backend} worker failed:\n{log[-4000:]}")
        else:
            results[backend] = out
    return results


@pytest.fixture(params=C.BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def run(runs, backend):
    """(directory, saved arrays) of `backend`'s worker; skipped, saying why, when it cannot run."""
    result = runs[backend]
    if isinstance(result, str):
        pytest.skip(result)
    if isinstance(result, Exception):
        pytest.fail(str(result))
    return result, np.load(result / "cases.npz")


def arrays(data, name, prefix):
    """data[name/prefix0], data[name/prefix1], ... as a list."""
    found = []
    while f"{name}/{prefix}{len(found)}" in data:
        found.append(data[f"{name}/{prefix}{len(found)}"])
    return found


def assert_close(ours, keras, tolerance, what):
    ours, keras = list(ours), list(keras)
    assert len(ours) == len(keras), what
    for k, (a, e) in enumerate(zip(ours, keras)):
        assert a.shape == e.shape, (what, k, a.shape, e.shape)
        difference = np.abs(a - e).max()
        assert difference <= tolerance, f"{what}, output {k}: {difference:.2e} > {tolerance:.0e}"


def reflstm_layer(kind, weights, backend, **options):
    keras_class, cell_options = C.KINDS[kind]
    return getattr(reflstm, keras_class)(*weights, **cell_options, **options, keras_backend=backend)


def is_keras_failure(backend, case):
    """Keras 3 on torch fails on a masked, unrolled go_backwards layer (torch/rnn.py torch.flip)."""
    return backend == "torch" and case.get("unroll") and case.get("go_backwards", True) and case.get(
        "masked", True)


# --- one layer: masks x initial_state x go_backwards x zero_output_for_mask x unroll ----------


@pytest.mark.parametrize("name", list(C.LOOP_CASES))
def test_layer_matches_keras(run, backend, name):
    """reflstm with keras_backend=<backend> gives Keras's outputs and states, to 1e-6 (float32)."""
    _, data = run
    case = C.LOOP_CASES[name]
    ref = reflstm_layer(case["kind"], arrays(data, name, "weight"), backend, return_state=True,
                        **{k: case[k] for k in ("return_sequences", "go_backwards",
                                                "zero_output_for_mask", "unroll")})
    mask = data["mask"] if case["masked"] else None
    states = None
    if case["initial_state"]:
        states = [data["h0"], data["c0"]] if case["kind"] == "LSTM" else [data["h0"]]
    if f"{name}/error" in data:
        assert is_keras_failure(backend, case), str(data[f"{name}/error"])
        with pytest.raises(reflstm.ReflstmError, match="torch"):
            ref(data["x"], mask=mask, initial_state=states)
        return
    assert_close(ref(data["x"], mask=mask, initial_state=states), arrays(data, name, "out"), FLOAT32, name)


@pytest.mark.parametrize("name", [n for n in C.LOOP_CASES if "-masked-initial_state" in n])
def test_from_keras_reads_the_backend(run, backend, name):
    """from_keras on the live layer reads keras.backend.backend() and unroll, and matches Keras."""
    _, data = run
    if f"{name}/error" in data:  # test_layer_matches_keras checks that reflstm refuses it
        assert is_keras_failure(backend, C.LOOP_CASES[name]), str(data[f"{name}/error"])
        return
    assert str(data[f"{name}/from_keras_backend"]) == backend
    assert bool(data[f"{name}/from_keras_unroll"]) == C.LOOP_CASES[name]["unroll"]
    assert_close(arrays(data, name, "from_keras_out"), arrays(data, name, "out"), FLOAT32, name)


# --- what differs, in Keras's own numbers ------------------------------------------------------


def test_jax_outputs_h0_before_the_first_unmasked_step(run, backend):
    """Rolled, with an initial state: JAX outputs h0 at the leading masked steps; the others zeros."""
    _, data = run
    sequence, h0 = data["LSTM-masked-initial_state/out0"], data["h0"]
    left, fully = list(C.MASK_ROWS).index("left"), list(C.MASK_ROWS).index("fully_masked")
    leading = np.concatenate([sequence[left, :2], sequence[fully]])  # masked, nothing ran before
    expected = np.concatenate([np.tile(h0[left], (2, 1)), np.tile(h0[fully], (C.TIMESTEPS, 1))])
    if backend == "jax":
        np.testing.assert_array_equal(leading, expected)
    else:
        np.testing.assert_array_equal(leading, 0)
    # Unrolled, every backend starts at zeros.
    np.testing.assert_array_equal(data["LSTM-masked-initial_state-unroll/out0"][fully], 0)


def test_unrolled_jax_ignores_zero_output_for_mask(run, backend):
    """Unrolled with zero_output_for_mask: JAX repeats the last output; the others output zeros."""
    _, data = run
    right = list(C.MASK_ROWS).index("right")
    tail = data["LSTM-masked-zero_output_for_mask-unroll/out0"][right]
    if backend == "jax":
        np.testing.assert_array_equal(tail[3:], np.tile(tail[2], (2, 1)))
        assert np.abs(tail[2]).min() > 0
    else:
        np.testing.assert_array_equal(tail[3:], 0)


@pytest.mark.parametrize("backend", ["tensorflow"])  # torch fails here; JAX ignores the option
def test_unrolled_tensorflow_zeroes_by_the_unreversed_mask(run, backend):
    """Unrolled, go_backwards, zero_output_for_mask: TensorFlow zeroes the reversed outputs with
    the mask in input order — steps it ran become zeros and masked ones repeat the last output."""
    _, data = run
    name = "LSTM-masked-go_backwards-zero_output_for_mask-unroll"
    left = list(C.MASK_ROWS).index("left")  # input mask 0 0 1 1 1: processed steps 0-2 unmasked
    sequence = data[f"{name}/out0"][left]  # in processing order
    np.testing.assert_array_equal(sequence[:2], 0)  # ran, zeroed by the input-order mask
    np.testing.assert_array_equal(sequence[3:], np.tile(sequence[2], (2, 1)))  # masked, repeated
    assert np.abs(sequence[2]).min() > 0


# --- Bidirectional, stateful, gradients ---------------------------------------------------------


@pytest.mark.parametrize("name", list(C.BIDIRECTIONAL_CASES))
def test_bidirectional_matches_keras(run, backend, name):
    """Bidirectional with a mask and initial states: both directions follow the backend's rule
    (Keras sets zero_output_for_mask = return_sequences on both)."""
    _, data = run
    case = C.BIDIRECTIONAL_CASES[name]
    weights = arrays(data, name, "weight")
    half = len(weights) // 2
    options = dict(return_sequences=case["return_sequences"], unroll=case["unroll"],
                   zero_output_for_mask=case["return_sequences"])
    layer = Bidirectional(
        name, reflstm_layer(case["kind"], weights[:half], backend, **options),
        reflstm_layer(case["kind"], weights[half:], backend, go_backwards=True, **options), "concat")
    h0, c0 = data["h0"], data["c0"]
    states = [h0, c0, c0[:, ::-1], h0[:, ::-1]] if case["kind"] == "LSTM" else [h0, h0[:, ::-1]]
    if f"{name}/error" in data:
        assert is_keras_failure(backend, case), str(data[f"{name}/error"])
        with pytest.raises(reflstm.ReflstmError, match="torch"):
            layer([data["x"], *states], [data["mask"]] + [None] * len(states))
        return
    outputs, _ = layer([data["x"], *states], [data["mask"]] + [None] * len(states))
    assert_close(outputs, [data[f"{name}/out0"]], FLOAT32, name)


@pytest.mark.parametrize("name", list(C.STATEFUL_CASES))
def test_stateful_matches_keras(run, backend, name):
    """A stateful layer called twice: the second, masked call starts from the carried state (on
    JAX, rolled, its leading masked steps output that state)."""
    _, data = run
    case = C.STATEFUL_CASES[name]
    ref = reflstm_layer(case["kind"], arrays(data, name, "weight"), backend, return_sequences=True,
                        stateful=True, unroll=case["unroll"])
    first = ref(data["x"])
    second = ref(data["x2"], mask=data["mask"])
    assert_close([first, second, np.stack(ref.states)],
                 [data[f"{name}/first"], data[f"{name}/second"], data[f"{name}/states"]], FLOAT32, name)


@pytest.mark.parametrize("name", list(C.GRADIENT_CASES))
def test_lstm_gradients_match_the_backends_autodiff(run, backend, name):
    """LSTM.backward with keras_backend equals jax.grad, GradientTape, torch autograd (float32)."""
    _, data = run
    case = C.GRADIENT_CASES[name]
    ref = reflstm.LSTM(*arrays(data, name, "weight"), return_sequences=True, return_state=True,
                       keras_backend=backend, **case)
    states = [data["h0"], data["c0"]]
    if f"{name}/error" in data:
        assert is_keras_failure(backend, case), str(data[f"{name}/error"])
        with pytest.raises(reflstm.ReflstmError, match="torch"):
            ref.backward(data["x"], arrays(data, name, "d"), mask=data["mask"], initial_state=states)
        return
    g = ref.backward(data["x"], arrays(data, name, "d"), mask=data["mask"], initial_state=states)
    ours = [g.x, *g.initial_state, g.kernel, g.recurrent_kernel, g.bias]
    theirs = [data[f"{name}/grad_{w}"] for w in ("x", "h0", "c0", "kernel", "recurrent_kernel", "bias")]
    assert_close(ours, theirs, GRADIENT, name)


# --- float64 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", C.FLOAT64_CASES)
def test_float64(run, backend, name):
    """What each backend computes for a float64 layer, and what reflstm does about it: TensorFlow
    computes float64 (matched to 1e-12); JAX stores and computes float32 (from_keras refuses);
    torch computes float64 only in its own LSTM/GRU loops, unmasked (matched to 1e-12; the
    masked call, the cell's loop, is refused, and there Keras is off float64 by more than 1e-10)."""
    _, data = run
    key = f"float64-{name}"
    unmasked, masked = data[f"{key}/unmasked"], data[f"{key}/masked"]
    stored = str(data[f"{key}/variable_dtype"])
    error = str(data[f"{key}/from_keras_error"]) if f"{key}/from_keras_error" in data else None
    kind = "LSTM" if name == "RNN(LSTMCell)" else name
    exact = reflstm_layer(kind, arrays(data, key, "weight"), "tensorflow", return_sequences=True)
    x = data["x"].astype("float64")
    if backend == "tensorflow":
        assert stored == "float64" and error is None, error
        assert_close([data[f"{key}/from_keras_unmasked"], data[f"{key}/from_keras_masked"]],
                     [unmasked, masked], FLOAT64, key)
    elif backend == "jax":
        assert stored == "float32" and unmasked.dtype == np.float32
        assert error is not None and "JAX" in error and "float32" in error and "float64" in error, error
        # What it does compute: the float32 layer that from_keras's message asks for.
        as_float32 = [w.astype("float32") for w in arrays(data, key, "weight")]
        ref = reflstm_layer(kind, as_float32, "jax", return_sequences=True)
        assert_close([ref(data["x"]), ref(data["x"], mask=data["mask"])], [unmasked, masked], FLOAT32, key)
    else:
        assert stored == "float64" and unmasked.dtype == np.float64 and masked.dtype == np.float64
        assert 1e-10 < np.abs(exact(x, mask=data["mask"]) - masked).max() < FLOAT32
        if name in ("LSTM", "GRU"):  # Keras's own torch loops: float64 throughout
            assert error is None, error
            assert_close([data[f"{key}/from_keras_unmasked"]], [unmasked], FLOAT64, key)
            assert "mask" in str(data[f"{key}/from_keras_masked_error"])
        else:  # the cell's loop, masked or not
            assert error is not None and "torch" in error and "float32" in error, error
            assert 1e-10 < np.abs(exact(x) - unmasked).max() < FLOAT32


# --- whole models saved as .keras --------------------------------------------------------------


@pytest.mark.parametrize("name", ["masked_encoder_decoder", "gru_encoder_decoder"])
def test_encoder_decoder_file_matches_keras(run, backend, name):
    """A functional encoder-decoder with Masking, the decoder called with initial_state, saved
    as .keras on this backend: reflstm.load predicts what Keras did (the decoder's mask dropped,
    as Keras 3 drops it on every backend)."""
    directory, data = run
    model = reflstm.load(directory / f"{name}.keras")
    inputs = arrays(data, name, "input")
    predicted = model.predict(inputs if len(inputs) > 1 else inputs[0])
    predicted = predicted if isinstance(predicted, list) else [predicted]
    assert_close(predicted, arrays(data, name, "out"), FLOAT32, name)


# --- the option itself, without Keras ------------------------------------------------------------


def small(kind="LSTM", dtype="float32"):
    rng = np.random.default_rng(0)
    blocks = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    bias = (2, 3 * 2) if kind == "GRU" else (blocks * 2,)
    return [rng.normal(size=s).astype(dtype) for s in ((3, blocks * 2), (2, blocks * 2), bias)]


def test_unknown_backend_is_refused():
    """keras_backend names one of the three backends, and tf_keras only TensorFlow."""
    with pytest.raises(reflstm.ReflstmError, match="keras_backend: expected one of 'tensorflow', 'jax', 'torch'"):
        reflstm.LSTM(*small(), keras_backend="numpy")
    with pytest.raises(reflstm.ReflstmError, match="keras_backend: expected 'tensorflow' for keras_version=2"):
        reflstm.GRU(*small("GRU"), keras_version=2, keras_backend="jax")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_float64_is_refused_on_jax(kind):
    """A float64 layer on keras_backend='jax' is refused, naming the layer and JAX's float32."""
    with pytest.raises(reflstm.ReflstmError, match=f"float32 weights for a {kind} on keras_backend='jax'"):
        getattr(reflstm, kind)(*small(kind, "float64"), keras_backend="jax")


def test_float64_on_torch_is_refused_where_keras_rounds_to_float32():
    """On torch, float64 is refused for the SimpleRNN, GRU(reset_after=False) and any masked
    call; an unmasked LSTM and GRU run (Keras's own torch loops keep float64)."""
    with pytest.raises(reflstm.ReflstmError, match="float32 weights for a SimpleRNN on keras_backend='torch'"):
        reflstm.SimpleRNN(*small("SimpleRNN", "float64"), keras_backend="torch")
    kernel, recurrent, _ = small("GRU", "float64")
    with pytest.raises(reflstm.ReflstmError, match="float32 weights for a GRU"):
        reflstm.GRU(kernel, recurrent, np.zeros(6), reset_after=False, keras_backend="torch")
    lstm = reflstm.LSTM(*small("LSTM", "float64"), keras_backend="torch")
    x = np.ones((1, 2, 3))
    np.testing.assert_array_equal(lstm(x), reflstm.LSTM(*small("LSTM", "float64"))(x))
    with pytest.raises(reflstm.ReflstmError, match="mask: expected no mask for a float64 LSTM"):
        lstm(x, mask=np.ones((1, 2), bool))


def test_backend_appears_in_repr():
    """A layer that is not TensorFlow's says so; unroll is listed when set."""
    assert "keras_backend='jax'" in repr(reflstm.LSTM(*small(), keras_backend="jax", unroll=True))
    assert "unroll" in repr(reflstm.GRU(*small("GRU"), keras_backend="torch", unroll=True))
    assert "keras_backend" not in repr(reflstm.SimpleRNN(*small("SimpleRNN")))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_tf_keras_unrolled_zeroes_by_the_unreversed_mask_too(kind):
    """tf_keras's backend.rnn has the same unrolled zero_output_for_mask as Keras 3 on
    TensorFlow; from_keras reads unroll and matches it, in float64 to 1e-12."""
    pytest.importorskip("tf_keras", reason="tf_keras is not installed (pip install -e '.[test]')")
    from keras_layers import call_keras, make_layer

    layer = make_layer(2, C.INPUT_DIM, C.UNITS, "float64", seed=7, kind=kind, unroll=True,
                       go_backwards=True, zero_output_for_mask=True, return_sequences=True)
    x, *_ = C.inputs()
    x = x.astype("float64")
    ref = getattr(reflstm, kind).from_keras(layer)
    assert ref.unroll and ref.keras_backend == "tensorflow"
    expected = call_keras(layer, x, mask=C.MASK)
    assert_close([ref(x, mask=C.MASK)], [expected], FLOAT64, kind)
    rolled = getattr(reflstm, kind)(*layer.get_weights(), go_backwards=True, zero_output_for_mask=True,
                                    return_sequences=True, keras_version=2)
    assert np.abs(rolled(x, mask=C.MASK) - expected).max() > 0.1  # the rolled rule is not Keras's here
