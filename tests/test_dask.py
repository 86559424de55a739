"""reflstm.dask on a dask.distributed LocalCluster of two worker processes: traces of saved
models over batch-chunked dask arrays equal Model.trace chunk by chunk, exactly; the model
reaches each worker once; to_zarr round-trips; a worker that dies is replaced and its chunks
redone; and `reflstm trace --input X.zarr --out T.zarr`."""

import inspect
import os
import re

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="reflstm.dask needs the dask extra (pip install reflstm[dask])")
distributed = pytest.importorskip("distributed", reason="the tests run a dask.distributed LocalCluster")
zarr = pytest.importorskip("zarr", reason="to_zarr needs the dask extra's zarr")

import reflstm
import reflstm.dask as rd
from reflstm.cli import main
from keras_layers import keras_module
from saved_models import VOCABULARY, build_model
from test_files import keras_eager, save

CHUNK = 5  # samples per chunk; 13 samples make chunks of 5, 5, 3
SAMPLES = 13
TOLERANCE = 1e-12  # float64, against Keras
# The saved models traced: LSTM stack and GRU family behind Masking, Bidirectional LSTM and
# GRU/SimpleRNN, Embedding(mask_zero), and a two-input encoder-decoder.
MODELS = ["lstm_stack", "gru_family", "bidirectional_concat", "gru_bidirectional", "embedding",
          "encoder_decoder"]


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, as a small cluster; closed after the module."""
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (Keras model, path of its saved .keras file)}, float64, built once per module."""
    made = {}

    def get(name):
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            model = build_model(name, 3, "float64")
            made[name] = (model, save(model, folder, 3, "keras"))
        return made[name]

    return get


def inputs_for(keras_model, samples=SAMPLES, seed=1):
    """Padded and holed inputs (so Masking and mask_zero make real masks), as numpy arrays."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in keras_model.inputs:
        shape = (samples,) + tuple(tensor.shape[1:])
        if "int" in str(tensor.dtype):
            x = rng.integers(1, VOCABULARY, shape)
        else:
            x = rng.normal(0, 1, shape)
        x[::3, 4:] = 0  # right padding
        x[1::4, :2] = 0  # left padding
        arrays.append(x)
    return arrays


def chunked(arrays, chunk=CHUNK):
    return [da.from_array(a, chunks=(chunk,) + (-1,) * (a.ndim - 1)) for a in arrays]


def per_worker(client, counter):
    """{worker address: MADE[counter] in that worker process}."""
    return client.run(lambda: rd.MADE[counter])


def expected_by_chunk(model, arrays, key, chunk=CHUNK):
    """Model.trace's `key` ('layer/quantity' or 'layer/direction/quantity') on each chunk, stacked."""
    parts = []
    for start in range(0, len(arrays[0]), chunk):
        value = model.trace([a[start : start + chunk] for a in arrays])
        for part in key.split("/"):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        parts.append(value)
    return np.concatenate(parts)


@pytest.mark.parametrize("name", MODELS)
def test_trace_equals_model_trace_chunk_by_chunk(client, saved, name):
    """Every layer and quantity of the dask trace (on two worker processes) is Model.trace of
    the same chunks, bit for bit; dtype and chunks were declared before computing."""
    keras_model, path = saved(name)
    model = reflstm.load(path)
    arrays = inputs_for(keras_model)
    traces = rd.trace(model, chunked(arrays) if len(arrays) > 1 else chunked(arrays)[0])
    quantities = {"LSTM": 6, "GRU": 4, "SimpleRNN": 1}
    assert len(traces) == sum(quantities[type(cell).__name__] for layer in model.recurrent_layers.values()
                              for cell in layer.cells)
    declared = {key: (value.dtype, value.chunks) for key, value in traces.items()}
    computed = client.compute(dict(traces)).result()
    for key, value in computed.items():
        assert value.dtype == declared[key][0] and value.shape == tuple(map(sum, declared[key][1])), key
        assert declared[key][1][0] == (5, 5, 3), key
        assert np.array_equal(value, expected_by_chunk(model, arrays, key)), key


def test_a_lone_bidirectional_layer_traces_as_keras_computes_it(client, saved):
    """A model's Bidirectional layer traced alone over chunks (on two worker processes): the
    forward h is Keras's layer output's first half, the backward h (processing order) its
    second half reversed in time, to 1e-12 (float64; no padding, so Masking masks nothing)."""
    keras_model, path = saved("bidirectional_concat")
    x = np.random.default_rng(3).normal(0, 1, (SAMPLES,) + tuple(keras_model.inputs[0].shape[1:]))
    keras = keras_module(3)
    up_to_bi = keras.Model(keras_model.inputs, keras_model.get_layer("bi").output)
    expected = keras_eager(up_to_bi, x)
    layer = reflstm.load(path).layer("bi")
    traces = client.compute(dict(rd.trace(layer, chunked([x])[0]))).result()
    units = expected.shape[-1] // 2
    np.testing.assert_allclose(traces["bi/forward/h"], expected[..., :units], rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(traces["bi/backward/h"][:, ::-1], expected[..., units:], rtol=TOLERANCE,
                               atol=TOLERANCE)


def test_predict_equals_model_predict_chunk_by_chunk(client, saved):
    """predict over chunks is Model.predict of each chunk, exactly; two outputs stay two."""
    keras_model, path = saved("encoder_decoder")
    model = reflstm.load(path)
    arrays = inputs_for(keras_model)
    lazy = rd.predict(path, chunked(arrays))
    expected = np.concatenate([model.predict([a[s : s + CHUNK] for a in arrays]) for s in range(0, SAMPLES, CHUNK)])
    assert lazy.chunks[0] == (5, 5, 3)
    assert np.array_equal(client.compute(lazy).result(), expected)


def test_h_equals_keras_intermediate_outputs(client, saved):
    """Anchor: the dask-computed h of both LSTMs equals Keras's intermediate model outputs at
    every unmasked step (float64, 1e-12); masked steps repeat the output, not h. Keras called
    eagerly: its predict's TensorFlow graph differs from its own eager float64 by ~1e-8 (README)."""
    keras_model, path = saved("lstm_stack")
    (x,) = inputs_for(keras_model)
    traces = client.compute({k: v for k, v in rd.trace(path, chunked([x])[0]).items() if k.endswith("/h")}).result()
    k = keras_module(3)
    used = np.any(x != 0, axis=-1)  # Masking's mask
    for name in ("encoder", "second"):
        expected = keras_eager(k.Model(keras_model.inputs, keras_model.get_layer(name).output), x)
        assert np.max(np.abs(traces[f"{name}/h"][used] - expected[used])) <= TOLERANCE


def test_a_model_reaches_each_worker_once(client, saved):
    """A Model object is one key of the graph: of 13 chunks on two workers, each worker
    rebuilds it at most once (not once per task)."""
    keras_model, path = saved("gru_family")
    arrays = inputs_for(keras_model, samples=26)
    before = per_worker(client, "rebuilt")
    client.compute(dict(rd.trace(reflstm.load(path), chunked(arrays, chunk=2)[0]))).result()
    after = per_worker(client, "rebuilt")
    added = {w: after[w] - before.get(w, 0) for w in after}
    assert all(n <= 1 for n in added.values()) and sum(added.values()) >= 1, added


def test_a_model_file_is_loaded_once_per_worker(client, saved, tmp_path):
    """A model file path: each worker loads it itself, at most once for 13 chunks."""
    keras_model, path = saved("lstm_stack")
    copy = tmp_path / "copy.keras"  # a path no worker has loaded yet
    copy.write_bytes(path.read_bytes())
    before = per_worker(client, "loaded")
    client.compute(dict(rd.trace(copy, chunked(inputs_for(keras_model, samples=26), chunk=2)[0]))).result()
    after = per_worker(client, "loaded")
    added = {w: after[w] - before.get(w, 0) for w in after}
    assert all(n <= 1 for n in added.values()) and sum(added.values()) >= 1, added


def _die_once(block, marker, block_id=None):
    """The input of chunk 2: the first time it is read, the worker process dies (os._exit)."""
    if block_id[0] == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return block


def test_a_worker_that_dies_is_replaced_and_no_chunk_is_wrong_or_missing(client, saved, tmp_path):
    """A worker dies mid-run (holding its traced chunks): dask reruns what it lost on the other
    worker and the one the nanny restarts; every chunk of the result is still exact."""
    keras_model, path = saved("gru_family")
    model = reflstm.load(path)
    (x,) = inputs_for(keras_model, samples=30)
    marker = str(tmp_path / "died")
    dying = da.from_array(x, chunks=(CHUNK, -1, -1)).map_blocks(_die_once, marker, dtype=x.dtype)
    traces = rd.trace(model, dying)
    computed = client.compute({k: traces[k] for k in ("gru/h", "lstm/c", "simple/h")}).result()
    assert os.path.exists(marker)  # a worker did die
    for key, value in computed.items():
        assert np.array_equal(value, expected_by_chunk(model, [x], key)), key


def test_to_zarr_round_trips_values_and_attributes(saved, tmp_path):
    """Every array comes back equal, chunked by the batch chunks, with its layer's config."""
    keras_model, path = saved("gru_bidirectional")
    model = reflstm.load(path)
    (x,) = inputs_for(keras_model)
    traces = rd.trace(model, chunked([x])[0])
    rd.to_zarr(traces, tmp_path / "T.zarr")
    stored = zarr.open_group(str(tmp_path / "T.zarr"), mode="r")
    assert stored.attrs["reflstm_version"] == reflstm.__version__
    for key, lazy in traces.items():
        array = stored[key]
        assert np.array_equal(array[:], expected_by_chunk(model, [x], key)), key
        assert array.chunks[0] == CHUNK and array.dtype == lazy.dtype
    back = stored["bi_sum/backward/h_tilde"].attrs.asdict()
    assert back["keras_class"] == "Bidirectional(GRU)" and back["units"] == 3
    assert back["options"]["merge_mode"] == "sum" and back["options"]["reset_after"] is False
    assert back["options"]["go_backwards"] is True and back["direction"] == "backward"
    assert back["layer"] == "bi_sum" and back["quantity"] == "h_tilde" and back["dtype"] == "float64"
    assert stored["bi_none/forward/h"].attrs["keras_class"] == "Bidirectional(GRU)"  # RNN(GRUCell) inside
    assert stored["top/z"].attrs["options"]["activation"] == "tanh"


def test_to_zarr_leaves_nothing_when_a_chunk_fails(saved, tmp_path):
    """A chunk whose trace fails (a token id past the vocabulary) leaves no store behind."""
    keras_model, path = saved("embedding")
    (ids,) = inputs_for(keras_model)
    ids[7, 1] = VOCABULARY + 5
    traces = rd.trace(path, chunked([ids])[0])
    with pytest.raises(reflstm.ReflstmError):
        rd.to_zarr(traces, tmp_path / "T.zarr")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif("keep" not in inspect.signature(reflstm.Model.trace).parameters,
                    reason="Model.trace has no keep= yet (issue 16's keep lands on another branch)")
def test_keep_traces_only_what_it_names(saved):
    """keep=("h", "c") gives just those quantities, equal to the full trace's."""
    keras_model, path = saved("lstm_stack")
    model = reflstm.load(path)
    (x,) = inputs_for(keras_model)
    kept = rd.trace(model, chunked([x])[0], keep=("h", "c"))
    assert sorted(kept) == ["encoder/c", "encoder/h", "second/c", "second/h"]
    for key, value in kept.items():
        assert np.array_equal(value.compute(scheduler="threads"), expected_by_chunk(model, [x], key))


def test_a_chunked_time_axis_is_made_whole_with_a_warning(saved):
    """An input chunked along time is rechunked (the recurrence needs every step), and says so."""
    keras_model, path = saved("lstm_stack")
    (x,) = inputs_for(keras_model)
    with pytest.warns(UserWarning, match="rechunked to whole"):
        traces = rd.trace(path, da.from_array(x, chunks=(CHUNK, 2, 3)))
    assert traces["encoder/h"].chunks[1] == (x.shape[1],)
    assert np.array_equal(traces["encoder/h"].compute(scheduler="sync"),
                          expected_by_chunk(reflstm.load(path), [x], "encoder/h"))


def test_refusals_name_the_argument(saved):
    """Stateful layers, numpy inputs, a wrong input count and an unknown quantity are refused."""
    keras_model, path = saved("encoder_decoder")
    arrays = inputs_for(keras_model)
    rng = np.random.default_rng(0)
    stateful = reflstm.LSTM(rng.normal(size=(3, 8)), rng.normal(size=(2, 8)), rng.normal(size=8), stateful=True)
    cases = [
        ((stateful, chunked(arrays[:1])[0]), "model_or_layer: expected a model without stateful layers"),
        ((path, arrays), r"x\[0\]: expected a dask array"),
        ((path, chunked(arrays)[0]), "x: expected 2 dask arrays"),
        ((path, chunked(arrays), ("h", "q")), "keep: expected quantities the traced layers have .* received 'q'"),
        (("model.txt", chunked(arrays)), "model.txt"),
    ]
    for arguments, message in cases:
        with pytest.raises((reflstm.ReflstmError, FileNotFoundError), match=message):
            rd.trace(*arguments)


def test_a_stateful_model_file_is_refused(tmp_path):
    """A saved stateful model: its chunks cannot run apart, and the error says so."""
    k = keras_module(3)
    model = k.Sequential([k.Input(batch_shape=(2, 4, 3)), k.layers.LSTM(3, stateful=True, name="carry")])
    path = save(model, tmp_path, 3, "keras")
    with pytest.raises(reflstm.ReflstmError, match="chunks cannot run apart.*received stateful layer 'carry'"):
        rd.trace(path, da.zeros((4, 4, 3), chunks=(2, 4, 3)))


# --- the command line: reflstm trace FILE --input X.zarr --out T.zarr ---


def write_zarr(path, x, chunk=CHUNK):
    array = zarr.create_array(str(path), shape=x.shape, chunks=(chunk,) + x.shape[1:], dtype=x.dtype)
    array[:] = x
    return str(path)


def test_cli_traces_a_zarr_input_into_a_zarr_store(saved, tmp_path, capsys):
    """X.zarr in, T.zarr out, on local threads: every array equals Model.trace by chunk."""
    keras_model, path = saved("bidirectional_concat")
    (x,) = inputs_for(keras_model)
    source = write_zarr(tmp_path / "X.zarr", x)
    out = tmp_path / "T.zarr"
    assert main(["trace", str(path), "--input", source, "--out", str(out), "--threads", "--workers", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    stored = zarr.open_group(str(out), mode="r")
    model = reflstm.load(path)
    for key in ("bi/forward/i", "bi/backward/c", "bi/backward/h"):
        assert np.array_equal(stored[key][:], expected_by_chunk(model, [x], key)), key


def test_cli_refuses_in_one_line_and_writes_nothing(saved, tmp_path, capsys):
    """Bad zarr runs exit 2 with one line on stderr and leave no store."""
    keras_model, path = saved("lstm_stack")
    (x,) = inputs_for(keras_model)
    good = write_zarr(tmp_path / "X.zarr", x)
    wrong = write_zarr(tmp_path / "W.zarr", x[:, :, :2])
    (tmp_path / "exists.zarr").mkdir()
    out = str(tmp_path / "T.zarr")
    cases = [
        (["--input", wrong, "--out", out], "input 'input_layer'|shape"),
        (["--input", str(tmp_path / "none.zarr"), "--out", out], "--input: expected a zarr array"),
        (["--input", good, "--out", str(tmp_path / "exists.zarr")], "--out: expected a path where nothing exists"),
        (["--input", good, "--out", str(tmp_path / "T.npz")], "--out: expected a T.zarr store"),
        (["--input", good, "--out", out, "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"],
         "--workers: expected no local workers with --scheduler"),
        (["--input", good, "--out", out, "--layer", "nope"], "--layer: expected one of the recurrent layers"),
        (["--input", str(path), "--out", str(tmp_path / "T.npz"), "--processes"],
         "--processes: expected a .zarr --input or --out"),
    ]
    for arguments, message in cases:
        assert main(["trace", str(path), *arguments]) == 2, arguments
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
        assert sorted(os.listdir(tmp_path)) == ["W.zarr", "X.zarr", "exists.zarr"]
