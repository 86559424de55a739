"""Differential test: random configurations, reflstm against the real Keras layer.

Each configuration draws a layer kind (LSTM, GRU in either reset_after mode, SimpleRNN), a Keras
version, a dtype, activations, options, shapes, a mask and an initial state. CI runs a short
campaign; `pytest tests/test_differential.py --campaign 1000 -s` runs a long one and prints how
many configurations ran and the worst error seen for each dtype and each kind.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflstm
from keras_layers import TOLERANCE, call_keras, keras_module, make_layer
from reflstm.cells import activations

# tf_keras's activation-layer names are float32-only (see reflstm.cells.activations); every other
# name either Keras accepts for an LSTM is drawn.
FLOAT32_ONLY = ("ReLU", "ELU", "LeakyReLU", "Softmax", "ThresholdedReLU")
WORST = {"float64": [0, 0.0], "float32": [0, 0.0]}  # configurations run, worst relative error
KINDS = ("LSTM", "GRU", "SimpleRNN")
WORST_BY_KIND = {}  # (kind, dtype) -> [configurations run, worst relative error]
LAYERS = {"LSTM": reflstm.LSTM, "GRU": reflstm.GRU, "SimpleRNN": reflstm.SimpleRNN}
# A layer is held to TOLERANCE against Keras in its dtype, or, where the configuration amplifies
# rounding (unbounded activations), to SLACK times what one rounding in that dtype does to
# Keras's own answer (see check).
SLACK = 10
AMPLIFIED = []  # (dtype, reflstm's error, Keras's sensitivity) for those configurations


@st.composite
def configurations(draw):
    kind = draw(st.sampled_from(KINDS))
    keras_version = draw(st.sampled_from([3, 2]))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    names = [
        n for n in activations.names(keras_version) if not (dtype == "float64" and n in FLOAT32_ONLY)
    ]
    # Mostly the usual pair, often one other activation, so that each run stays informative.
    usual = draw(st.booleans())
    activation = "tanh" if usual else draw(st.sampled_from(names))
    recurrent = "sigmoid" if usual else draw(st.sampled_from(names))
    batch, timesteps = draw(st.integers(1, 4)), draw(st.integers(1, 8))
    mask_kind = draw(st.sampled_from(["none", "random", "right_padding", "left_padding"]))
    options = dict(activation=activation)
    if kind != "SimpleRNN":
        options["recurrent_activation"] = recurrent
    if kind == "GRU":
        options["reset_after"] = draw(st.booleans())
    return dict(
        kind=kind,
        keras_version=keras_version,
        dtype=dtype,
        units=draw(st.integers(1, 8)),
        input_dim=draw(st.integers(1, 6)),
        batch=batch,
        timesteps=timesteps,
        seed=draw(st.integers(0, 2**31)),
        options=dict(
            **options,
            use_bias=draw(st.booleans()),
            return_sequences=draw(st.booleans()),
            return_state=draw(st.booleans()),
            go_backwards=draw(st.booleans()),
            zero_output_for_mask=draw(st.booleans()),
        ),
        rnn_cell=draw(st.booleans()),
        mask_kind=mask_kind,
        initial_state=draw(st.booleans()),
    )


def make_mask(kind, rng, batch, timesteps):
    if kind == "none":
        return None
    if kind == "random":
        return rng.random((batch, timesteps)) < 0.7
    lengths = rng.integers(0, timesteps + 1, batch)
    steps = np.arange(timesteps)
    if kind == "right_padding":
        return steps[None, :] < lengths[:, None]
    return steps[None, :] >= (timesteps - lengths)[:, None]


def relative_error(actual, expected):
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(actual), finite)
    assert np.array_equal(actual[~finite], expected[~finite], equal_nan=True)
    if not finite.any():
        return 0.0
    scale = np.maximum(np.abs(expected[finite]), 1.0)
    return float(np.max(np.abs(actual[finite] - expected[finite]) / scale))


def distance_from_exact(approx, exact):
    """relative_error of a float32 result from the float64 one; inf where float32 overflowed."""
    approx = approx.astype("float64")
    if not np.array_equal(np.isfinite(approx), np.isfinite(exact)):
        return np.inf
    return relative_error(approx, exact)


def check(config):
    rng = np.random.default_rng(config["seed"])
    dtype, units, batch, timesteps = config["dtype"], config["units"], config["batch"], config["timesteps"]
    def keras_layer(dtype, weights=None):
        options = dict(config["options"])
        if dtype == "float64":  # tf_keras's activation layers, built as float64 layers
            for key in ("activation", "recurrent_activation"):
                if options.get(key) in FLOAT32_ONLY:
                    options[key] = getattr(keras_module(2).layers, options[key])(dtype="float64")
        return make_layer(
            config["keras_version"], config["input_dim"], units, dtype, config["seed"],
            rnn_cell=config["rnn_cell"], weights=weights, kind=config["kind"], **options,
        )

    layer = keras_layer(dtype)
    x = rng.normal(0, 1.5, (batch, timesteps, config["input_dim"])).astype(dtype)
    mask = make_mask(config["mask_kind"], rng, batch, timesteps)
    state = None
    if config["initial_state"]:
        count = 2 if config["kind"] == "LSTM" else 1
        state = [rng.normal(0, 0.8, (batch, units)).astype(dtype) for _ in range(count)]
    expected = call_keras(layer, x, mask, state)
    actual = LAYERS[config["kind"]].from_keras(layer)(x, mask=mask, initial_state=state)
    expected = expected if isinstance(expected, list) else [expected]
    actual = list(actual) if isinstance(actual, (list, tuple)) else [actual]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
    worst = max(relative_error(a, e) for a, e in zip(actual, expected))
    WORST[dtype][0] += 1
    WORST[dtype][1] = max(WORST[dtype][1], worst)
    by_kind = WORST_BY_KIND.setdefault((config["kind"], dtype), [0, 0.0])
    by_kind[0] += 1
    by_kind[1] = max(by_kind[1], worst)
    if worst <= TOLERANCE[dtype]:
        return
    # Only configurations that amplify rounding (unbounded activations) get here. How much
    # rounding in `dtype` can move the answer is measured on Keras alone: its result in `dtype`,
    # and its float64 result for inputs and weights nudged by one rounding of `dtype`, are both
    # compared with its float64 result. reflstm must stay within SLACK times the larger.
    weights = [w.astype("float64") for w in layer.get_weights()]
    x64 = x.astype("float64")
    state64 = None if state is None else [s.astype("float64") for s in state]

    def keras64(weights, x, state):
        result = call_keras(keras_layer("float64", weights), x, mask, state)
        return result if isinstance(result, list) else [result]

    exact = keras64(weights, x64, state64)
    unit = np.finfo(dtype).eps / 2
    nudge = lambda a: a * (1 + rng.choice([-1.0, 1.0], a.shape) * unit)  # noqa: E731
    nudged = keras64([nudge(w) for w in weights], nudge(x64),
                     None if state64 is None else [nudge(s) for s in state64])
    sensitivity = max(
        max(distance_from_exact(e, f) for e, f in zip(expected, exact)),
        max(distance_from_exact(n, f) for n, f in zip(nudged, exact)),
    )
    our_error = max(distance_from_exact(a, f) for a, f in zip(actual, exact))
    AMPLIFIED.append((dtype, our_error, sensitivity, config["kind"]))
    assert our_error <= max(TOLERANCE[dtype], SLACK * sensitivity), (
        our_error, sensitivity, config)


def campaign_size(request):
    return request.config.getoption("--campaign") or 30


def test_random_configurations_match_keras(request):
    """Random layers, inputs, masks and states: reflstm equals Keras within the dtype's tolerance."""
    size = campaign_size(request)

    @settings(
        max_examples=size,
        deadline=None,
        database=None,
        derandomize=size <= 30,  # the short CI campaign is the same every run
        suppress_health_check=list(HealthCheck),
    )
    @given(configurations())
    def run(config):
        check(config)

    run()
    ran = WORST["float64"][0] + WORST["float32"][0]
    print(f"\ndifferential campaign: {ran} configurations; worst relative error "
          f"float64 {WORST['float64'][1]:.3g} over {WORST['float64'][0]}, "
          f"float32 {WORST['float32'][1]:.3g} over {WORST['float32'][0]}; "
          f"{len(AMPLIFIED)} configurations amplify rounding beyond the tolerance, worst ratio "
          f"of reflstm's error to Keras's own sensitivity "
          f"{max((ratio(o, k) for _, o, k, _ in AMPLIFIED), default=0):.3g}")
    for (kind, dtype), (count, worst) in sorted(WORST_BY_KIND.items()):
        amplified = [(o, k) for d, o, k, c in AMPLIFIED if (c, d) == (kind, dtype)]
        overflows = sum(np.isinf(k) for _, k in amplified)
        print(f"  {kind:<9} {dtype}: {count} configurations, worst relative error {worst:.3g}; "
              f"{len(amplified)} amplify rounding ({overflows} where Keras's own {dtype} "
              f"overflows), worst ratio {max((ratio(o, k) for o, k in amplified), default=0):.3g}")


def ratio(our_error, sensitivity):
    """reflstm's error over Keras's own sensitivity; 0 where Keras's own result overflowed
    (sensitivity inf) and reflstm's did exactly as much."""
    if np.isinf(sensitivity):
        return 0.0 if our_error <= sensitivity else np.inf
    return our_error / max(sensitivity, 1e-300)
    assert ran >= size
