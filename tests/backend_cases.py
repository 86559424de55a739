"""The cases that tests/backend_worker.py runs on one Keras 3 backend and test_backends.py checks.

Data only (no Keras here): the test module parametrizes over these names at collection, and the
worker, run once per backend in its own process, produces every case's arrays at once.

One batch carries every kind of mask at once, a row each (MASK_ROWS), so a masked case covers
right padding, left padding, holes and a fully masked sequence.
"""

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
BATCH, TIMESTEPS, INPUT_DIM, UNITS = 4, 5, 3, 4

MASK_ROWS = {
    "right": [1, 1, 1, 0, 0],
    "left": [0, 0, 1, 1, 1],
    "holes": [0, 1, 0, 0, 1],
    "fully_masked": [0, 0, 0, 0, 0],
}
MASK = np.array(list(MASK_ROWS.values()), bool)  # (batch, timesteps)

# Layer kinds by word id: (Keras class, cell options).
KINDS = {
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {"reset_after": True}),
    "GRU-reset_before": ("GRU", {"reset_after": False}),
    "SimpleRNN": ("SimpleRNN", {}),
}


def _loop_cases():
    """{name: options} of single layers: mask x initial_state x go_backwards x zero_output_for_mask
    x unroll for every kind, with return_sequences and return_state; a few return only the last
    output; unmasked runs take Keras's own LSTM/GRU loops where the backend has them."""
    cases = {}
    for kind in KINDS:
        for masked in (True, False):
            for initial in (False, True):
                for backwards in (False, True):
                    for zero in ((False, True) if masked else (False,)):
                        for unroll in ((False, True) if masked or not backwards else (False,)):
                            words = [kind, "masked" if masked else "unmasked"]
                            words += [w for w, on in (("initial_state", initial), ("go_backwards", backwards),
                                                      ("zero_output_for_mask", zero), ("unroll", unroll)) if on]
                            cases["-".join(words)] = dict(
                                kind=kind, masked=masked, initial_state=initial, go_backwards=backwards,
                                zero_output_for_mask=zero, unroll=unroll, return_sequences=True)
        for unroll in (False, True):
            name = f"{kind}-masked-initial_state-last_output" + ("-unroll" if unroll else "")
            cases[name] = dict(kind=kind, masked=True, initial_state=True, go_backwards=False,
                               zero_output_for_mask=False, unroll=unroll, return_sequences=False)
    return cases


LOOP_CASES = _loop_cases()

# Bidirectional around an LSTM or GRU, with a mask and the four (or two) initial states.
BIDIRECTIONAL_CASES = {
    f"Bidirectional-{kind}-{'sequences' if sequences else 'last_output'}" + ("-unroll" if unroll else ""): dict(
        kind=kind, unroll=unroll, return_sequences=sequences)
    for kind in ("LSTM", "GRU")
    for sequences in (True, False)
    for unroll in (False, True)
}

# Stateful layers called twice: unmasked, then with the mask, from the state the first call left.
STATEFUL_CASES = {
    f"stateful-{kind}" + ("-unroll" if unroll else ""): dict(kind=kind, unroll=unroll)
    for kind in ("LSTM", "GRU", "SimpleRNN")
    for unroll in (False, True)
}

# float64 layers: what each backend stores and computes, and what from_keras says.
FLOAT64_CASES = ("LSTM", "GRU", "GRU-reset_before", "SimpleRNN", "RNN(LSTMCell)")


def inputs(seed=0):
    """x (batch, timesteps, input_dim), a second x for stateful calls, and non-zero initial
    states h0, c0 (batch, units), all float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, TIMESTEPS, INPUT_DIM)).astype("float32")
    x2 = rng.normal(size=(BATCH, TIMESTEPS, INPUT_DIM)).astype("float32")
    h0 = rng.uniform(-1, 1, size=(BATCH, UNITS)).astype("float32")
    c0 = rng.uniform(-2, 2, size=(BATCH, UNITS)).astype("float32")
    return x, x2, h0, c0

# LSTM gradients through the backend's own autodiff (jax.grad, GradientTape, torch autograd),
# against LSTM.backward: the masked steps that repeat h0 on JAX pass their gradient to h0.
GRADIENT_CASES = {
    "gradients-LSTM-masked-initial_state": dict(
        go_backwards=False, zero_output_for_mask=False, unroll=False),
    "gradients-LSTM-masked-initial_state-go_backwards-zero_output_for_mask-unroll": dict(
        go_backwards=True, zero_output_for_mask=True, unroll=True),
}
