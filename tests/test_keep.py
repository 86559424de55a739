"""trace(x, keep=...): a trace holds what it is asked to keep, and recomputes pre-activations exactly.

The pre-activation parts a trace does not keep are recomputed when asked; these tests prove them
bit for bit equal to the parts recorded by a run that keeps them (their agreement with Keras's
own pre-activations is tests/test_trace.py's and tests/test_gru.py's, which use the default
keep). The quantities a trace keeps are checked against Keras by the layer tests.
"""

import numpy as np
import pytest

import reflstm
from reflstm.cells import recurrent
from reflstm.errors import ReflstmError
from keras_layers import random_cell_weights
from saved_models import build_model, model_inputs
from test_files import save

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 3, 7, 4, 5

LAYERS = {
    "lstm": (reflstm.LSTM, "LSTM", {}),
    "gru": (reflstm.GRU, "GRU", {}),
    "gru_reset_before": (reflstm.GRU, "GRU", {"reset_after": False}),
    "simple_rnn": (reflstm.SimpleRNN, "SimpleRNN", {}),
}
RUNS = {
    "plain": {},
    "masked": {"mask": True},
    "go_backwards": {"go_backwards": True, "mask": True},
    "zero_output_for_mask": {"zero_output_for_mask": True, "mask": True},
    "no_bias": {"use_bias": False},
    "initial_state": {"initial_state": True},
    "one_sample": {"batch": 1},
}


def make(layer, run, dtype="float64"):
    """A layer with distinct per-gate weights and non-zero biases, and its call arguments."""
    cls, kind, options = LAYERS[layer]
    run = dict(RUNS[run])
    batch = run.pop("batch", BATCH)
    rng = np.random.default_rng(7)
    weights = random_cell_weights(rng, kind, INPUT_DIM, UNITS, dtype, use_bias=run.pop("use_bias", True),
                                  reset_after=options.get("reset_after", True))
    x = rng.normal(size=(batch, TIMESTEPS, INPUT_DIM)).astype(dtype)
    arguments = {}
    if run.pop("mask", False):
        mask = rng.random((batch, TIMESTEPS)) > 0.3
        mask[0, :2] = False
        arguments["mask"] = mask
    if run.pop("initial_state", False):
        arguments["initial_state"] = [rng.normal(size=(batch, UNITS)).astype(dtype) for _ in cls.STATES]
    if len(weights) == 2:
        weights.append(None)
    return cls(*weights, return_sequences=True, **options, **run), x, arguments


def assert_same_bits(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert np.array_equal(actual, expected), f"largest difference {np.abs(actual - expected).max()}"


def parts(trace):
    return [getattr(trace, name) for name in type(trace).PREACTIVATIONS]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_recomputed_preactivations_are_the_recorded_ones(layer, run, dtype):
    """Pre-activation parts recomputed by the default trace equal, bit for bit, those a run kept."""
    ref, x, arguments = make(layer, run, dtype)
    recomputed = ref.trace(x, **arguments)
    recorded = ref.trace(x, keep=ref.QUANTITIES, **arguments)
    assert set(recomputed.kept) == set(ref.DEFAULT_KEEP)
    for mine, kept in zip(parts(recomputed), parts(recorded)):
        assert_same_bits(mine, kept)
    for name in ref.DEFAULT_KEEP:
        assert_same_bits(getattr(recomputed, name), getattr(recorded, name))


@pytest.mark.parametrize("layer", list(LAYERS))
def test_recomputed_preactivations_across_projection_blocks(layer, monkeypatch):
    """With the input projection made a few steps at a time, recomputation still matches exactly."""
    monkeypatch.setattr(recurrent, "PROJECTION_BLOCK_BYTES", 3 * BATCH * UNITS * 8 * 4)
    ref, x, arguments = make(layer, "masked")
    recomputed, recorded = ref.trace(x, **arguments), ref.trace(x, keep=ref.QUANTITIES, **arguments)
    for mine, kept in zip(parts(recomputed), parts(recorded)):
        assert_same_bits(mine, kept)


def test_lstm_z_and_preactivation_totals_are_what_the_step_summed():
    """trace.z and preactivation(g).total from recomputed parts equal those from recorded parts."""
    ref, x, arguments = make("lstm", "masked")
    recomputed, recorded = ref.trace(x, **arguments), ref.trace(x, keep=ref.QUANTITIES, **arguments)
    assert_same_bits(recomputed.z, recorded.z)
    for gate in "ifco":
        assert_same_bits(recomputed.preactivation(gate).total, recorded.preactivation(gate).total)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_trace_equals_the_call(layer):
    """The output a trace keeps is, bit for bit, what calling the layer returns, whatever it keeps."""
    ref, x, arguments = make(layer, "masked")
    called = ref(x, **arguments)
    for keep in (None, ("output",), ref.QUANTITIES):
        assert_same_bits(ref.trace(x, keep=keep, **arguments).output, called)


def test_keep_h_and_c_holds_only_those():
    """keep=("h", "c") holds h and c, as the full trace has them; other gates are refused by name."""
    ref, x, arguments = make("lstm", "masked")
    full, small = ref.trace(x, **arguments), ref.trace(x, keep=("h", "c"), **arguments)
    assert small.kept == ("h", "c")
    assert_same_bits(small.h, full.h)
    assert_same_bits(small.c, full.c)
    for name in ("i", "f", "c_tilde", "o", "output"):
        with pytest.raises(ReflstmError, match=rf"trace\.{name}: .*keep=\(\.\.\., '{name}'\)"):
            getattr(small, name)
    assert_same_bits(small.z_x, full.z_x)  # h is held, so the pre-activations can be recomputed


def test_without_h_the_preactivations_are_refused_with_the_way_to_keep_them():
    """A trace that holds neither the pre-activations nor h says to keep either."""
    ref, x, _ = make("lstm", "plain")
    trace = ref.trace(x, keep=("c",))
    with pytest.raises(ReflstmError, match=r"trace\.z_h: .*--keep z_h.*keep h"):
        trace.z_h
    with pytest.raises(ReflstmError, match="z_x"):
        trace.preactivation("i")


def test_gru_reset_before_needs_r_to_recompute():
    """A reset_after=False GRU's recurrent part needs r: without it, it is refused."""
    ref, x, _ = make("gru_reset_before", "plain")
    with pytest.raises(ReflstmError, match="recurrent_part"):
        ref.trace(x, keep=("h",)).recurrent_part
    assert_same_bits(ref.trace(x, keep=("h", "r")).recurrent_part,
                     ref.trace(x, keep=ref.QUANTITIES).recurrent_part)


@pytest.mark.parametrize("keep, received", [("h", "'h'"), (("h", "gamma"), "'gamma'"), (3, "3")])
def test_bad_keep_is_refused(keep, received):
    """keep must be a tuple of the layer's quantity names."""
    ref, x, _ = make("lstm", "plain")
    with pytest.raises(ReflstmError, match=rf"keep: expected .*'z_h'.*received .*{received}"):
        ref.trace(x, keep=keep)


def test_model_trace_keeps_each_layers_names(tmp_path):
    """Model.trace(keep=...) gives each layer the names it has; the outputs do not change."""
    model = build_model("gru_family", 3, "float64")
    x = model_inputs(model)
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    full = ref.trace(x)
    small = ref.trace(x, keep=("h", "c"))
    assert small["lstm"].kept == ("h", "c") and small["gru"].kept == ("h",)
    for name, trace in full.items():
        assert_same_bits(small[name].h, trace.h)
    with pytest.raises(ReflstmError, match="keep: expected .*received"):
        ref.trace(x, keep=("h", "gamma"))


def test_bidirectional_trace_keeps_in_both_directions(tmp_path):
    """A Bidirectional layer's two traces hold what keep names."""
    model = build_model("bidirectional_none", 3, "float64")
    x = model_inputs(model)
    ref = reflstm.load(save(model, tmp_path, 3, "keras"))
    full, small = ref.trace(x)["bi"], ref.trace(x, keep=("c",))["bi"]
    for direction in ("forward", "backward"):
        assert getattr(small, direction).kept == ("c",)
        assert_same_bits(getattr(small, direction).c, getattr(full, direction).c)


def test_cli_trace_keep_writes_what_it_keeps(tmp_path, capsys):
    """reflstm trace --keep h,c,z_h writes those of each layer, equal to Model.trace's."""
    from reflstm import cli

    model = build_model("gru_family", 3, "float64")
    x = model_inputs(model)
    path = save(model, tmp_path, 3, "keras")
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "t.npz"
    assert cli.main(["trace", str(path), "--input", str(tmp_path / "x.npy"), "--out", str(out),
                     "--keep", "h,c,z_h"]) == 0
    saved = np.load(out)
    traces = reflstm.load(path).trace(x, keep=("h", "c", "z_h"))
    assert sorted(k for k in saved if k.startswith("lstm/")) == ["lstm/c", "lstm/h", "lstm/z_h"]
    assert sorted(k for k in saved if k.startswith("gru/")) == ["gru/h"]
    for key in saved:
        layer, quantity = key.split("/")
        assert_same_bits(saved[key], getattr(traces[layer], quantity))


def test_cli_trace_refuses_an_unknown_keep(tmp_path, capsys):
    """--keep with a name no traced layer has: one line naming --keep, exit 2, nothing written."""
    from reflstm import cli

    model = build_model("lstm_stack", 3)
    path = save(model, tmp_path, 3, "keras")
    np.save(tmp_path / "x.npy", model_inputs(model))
    out = tmp_path / "t.npz"
    code = cli.main(["trace", str(path), "--input", str(tmp_path / "x.npy"), "--out", str(out),
                     "--keep", "h,gamma"])
    err = capsys.readouterr().err
    assert code == 2 and "--keep" in err and "'gamma'" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_trace_keep_on_dask_writes_only_what_it_keeps(tmp_path, capsys):
    """--keep with a .zarr output: the store holds just those quantities, equal to Model.trace's."""
    zarr = pytest.importorskip("zarr", reason="needs zarr (pip install 'reflstm[dask]')")
    pytest.importorskip("dask", reason="needs dask (pip install 'reflstm[dask]')")
    from reflstm import cli

    model = build_model("lstm_stack", 3)
    path = save(model, tmp_path, 3, "keras")
    x = model_inputs(model)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "t.zarr"
    code = cli.main(["trace", str(path), "--input", str(tmp_path / "x.npy"), "--out", str(out),
                     "--keep", "h,c", "--threads"])
    assert code == 0, capsys.readouterr().err
    stored = zarr.open_group(str(out), mode="r")
    traces = reflstm.load(path).trace(x)
    written = {f"{layer}/{q}" for layer in stored.group_keys() for q in stored[layer].array_keys()}
    assert written == {f"{layer}/{q}" for layer in traces for q in ("h", "c")}
    for key in written:
        layer, q = key.split("/")
        np.testing.assert_array_equal(stored[layer][q][...], getattr(traces[layer], q))
