"""Properties of the forward pass and the trace that hold for any weights (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import reflstm
from keras_layers import random_weights

settings.register_profile("reflstm", deadline=None, max_examples=40, database=None)
settings.load_profile("reflstm")


@st.composite
def problems(draw):
    """An LSTM (float64) with random per-gate weights, an input, and maybe a mask and a state."""
    units = draw(st.integers(1, 6))
    input_dim = draw(st.integers(1, 5))
    batch = draw(st.integers(1, 4))
    timesteps = draw(st.integers(2, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, input_dim, units, "float64", use_bias=draw(st.booleans()))
    options = dict(
        go_backwards=draw(st.booleans()),
        zero_output_for_mask=draw(st.booleans()),
        recurrent_activation=draw(st.sampled_from(["sigmoid", "hard_sigmoid"])),
    )
    x = rng.normal(0, 2, (batch, timesteps, input_dim))
    mask = rng.random((batch, timesteps)) < 0.7 if draw(st.booleans()) else None
    state = [rng.normal(0, 1, (batch, units)) for _ in range(2)] if draw(st.booleans()) else None
    return weights, options, x, mask, state


@given(problems())
def test_cell_state_equation_holds_exactly(problem):
    """At every unmasked step C_t = f ⊙ C_{t-1} + i ⊙ c̃ and h_t = o ⊙ tanh(C_t), to the bit."""
    weights, options, x, mask, state = problem
    tr = reflstm.LSTM(*weights, **options).trace(x, mask=mask, initial_state=state)
    used = np.ones(tr.h.shape[:2], bool) if mask is None else tr.mask
    np.testing.assert_array_equal((tr.f * tr.c_prev + tr.i * tr.c_tilde)[used], tr.c[used])
    np.testing.assert_array_equal((tr.o * np.tanh(tr.c))[used], tr.h[used])
    # Masked steps carry the state through unchanged.
    np.testing.assert_array_equal(tr.c[~used], tr.c_prev[~used])
    np.testing.assert_array_equal(tr.h[~used], tr.h_prev[~used])


@given(problems())
def test_gates_stay_in_range(problem):
    """σ gates lie in [0, 1], c̃ in [-1, 1], and |h| ≤ 1 wherever the cell produced h."""
    weights, options, x, mask, state = problem
    tr = reflstm.LSTM(*weights, **options).trace(x, mask=mask, initial_state=state)
    for gate in (tr.i, tr.f, tr.o):
        assert ((0 <= gate) & (gate <= 1)).all()
    assert (np.abs(tr.c_tilde) <= 1).all()
    used = np.ones(tr.h.shape[:2], bool) if mask is None else tr.mask
    assert (np.abs(tr.h[used]) <= 1).all()  # masked steps carry h0 through, which may be larger


@given(problems())
def test_preactivations_split_into_input_recurrent_and_bias(problem):
    """z_x is x_t W, z_h is h_{t-1} U, and each gate's total is their sum with b."""
    weights, options, x, mask, state = problem
    ref = reflstm.LSTM(*weights, **options)
    tr = ref.trace(x, mask=mask, initial_state=state)
    x_processed = x[:, ::-1] if ref.go_backwards else x
    np.testing.assert_allclose(tr.z_x, x_processed @ ref.kernel, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tr.z_h, tr.h_prev @ ref.recurrent_kernel, rtol=1e-12, atol=1e-12)
    for gate in "ifco":
        part = tr.preactivation(gate)
        np.testing.assert_array_equal(part.total, (part.input + part.bias) + part.recurrent)


@given(problems(), st.data())
def test_split_sequence_equals_whole(problem, data):
    """Running steps [0, k) and then [k, T) from the carried state equals running [0, T)."""
    weights, options, x, mask, state = problem
    options = dict(options, go_backwards=False, return_sequences=True, return_state=True)
    ref = reflstm.LSTM(*weights, **options)
    k = data.draw(st.integers(1, x.shape[1] - 1))
    whole, h, c = ref(x, mask=mask, initial_state=state)
    first, h1, c1 = ref(x[:, :k], mask=None if mask is None else mask[:, :k], initial_state=state)
    second, h2, c2 = ref(x[:, k:], mask=None if mask is None else mask[:, k:], initial_state=[h1, c1])
    np.testing.assert_allclose(np.concatenate([first, second], axis=1)[:, :k], whole[:, :k], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h2, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c2, c, rtol=1e-12, atol=1e-12)
    if mask is None:  # with a mask, the output after the split restarts from zeros, as in Keras
        np.testing.assert_allclose(second, whole[:, k:], rtol=1e-12, atol=1e-12)


@given(problems(), st.data())
def test_stateful_chunks_equal_whole_sequence(problem, data):
    """A stateful LSTM fed the sequence in chunks ends in the state of one whole run."""
    weights, options, x, _, _ = problem
    options = dict(options, go_backwards=False, return_state=True)
    k = data.draw(st.integers(1, x.shape[1] - 1))
    _, h, c = reflstm.LSTM(*weights, **options)(x)
    stateful = reflstm.LSTM(*weights, stateful=True, **options)
    stateful(x[:, :k])
    _, h2, c2 = stateful(x[:, k:])
    np.testing.assert_allclose(h2, h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c2, c, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(stateful.states[0], h2)


@given(problems())
def test_trace_agrees_with_call(problem):
    """The trace's output and final states are what calling the LSTM returns."""
    weights, options, x, mask, state = problem
    ref = reflstm.LSTM(*weights, return_sequences=True, return_state=True, **options)
    output, h, c = ref(x, mask=mask, initial_state=state)
    tr = ref.trace(x, mask=mask, initial_state=state)
    np.testing.assert_array_equal(tr.output, output)
    np.testing.assert_array_equal(tr.h[:, -1], h)
    np.testing.assert_array_equal(tr.c[:, -1], c)


@given(problems())
def test_go_backwards_is_forward_on_reversed_input(problem):
    """go_backwards on x is the forward LSTM on x reversed in time, mask included."""
    weights, options, x, mask, state = problem
    backward = reflstm.LSTM(*weights, **dict(options, go_backwards=True)).trace(x, mask, state)
    forward = reflstm.LSTM(*weights, **dict(options, go_backwards=False)).trace(
        x[:, ::-1], None if mask is None else mask[:, ::-1], state
    )
    for name in ("i", "f", "c_tilde", "o", "c", "h", "output"):
        np.testing.assert_allclose(getattr(backward, name), getattr(forward, name), rtol=1e-12, atol=1e-15)


@given(problems())
def test_all_true_mask_equals_no_mask(problem):
    """A mask that keeps every step changes nothing."""
    weights, options, x, _, state = problem
    ref = reflstm.LSTM(*weights, return_sequences=True, **options)
    np.testing.assert_array_equal(
        ref(x, mask=np.ones(x.shape[:2], bool), initial_state=state), ref(x, initial_state=state)
    )
