"""Hostile files (issue 9): each is refused with a ReflstmError that says what is wrong.

Every file is a copy of one Keras really saved, changed in one way (tests/hostile_files.py).
Each load runs in a worker process with an address-space cap and a timeout (tests/sandbox.py):
nothing may hang, grow past the cap, raise another exception type, or read bytes from outside
the file (the secret files' planted values never appear in a weight).
"""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import reflstm

import hostile_files as H
from sandbox import Sandbox

ALL = list(H.ORIGINS)
MODELS = ("sequential", "embedding", "branches")
# Budgets small enough that a test's bomb is cheap to build, yet far above what a clean file needs.
SMALL = dict(max_weight_bytes=10_000_000)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def clean(root):
    """clean(name, origin): the Clean model `name` saved as `origin`, built once per module."""
    cache = {}

    def get(name, origin):
        if (name, origin) not in cache:
            cache[(name, origin)] = H.save_clean(name, origin, root)
        return cache[(name, origin)]

    return get


@pytest.fixture(scope="module")
def secrets(root):
    return H.Secrets(root / "secrets")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as box:
        yield box


@pytest.fixture
def dest(tmp_path, request):
    """A destination path with the right suffix for the test's origin."""
    callspec = getattr(request.node, "callspec", None)
    origin = callspec.params.get("origin", "keras3-keras") if callspec else "keras3-keras"
    return tmp_path / f"hostile.{H.ORIGINS[origin][1]}"


def load(sandbox, path, model, limits=None, timeout=30.0):
    return sandbox.load(path, limits=limits, inputs=model.inputs, output_shapes=model.output_shapes,
                        timeout=timeout)


def assert_refused(result, *words):
    """A ReflstmError at load whose message holds every one of `words` (case-insensitive)."""
    assert result.kind == "refused", f"expected a ReflstmError at load, got {result}"
    for word in words:
        assert word.lower() in result.message.lower(), f"{word!r} not in {result.message!r}"


def assert_refused_at_predict(result, *words):
    """A file that loads (a layer kept but not run) and whose predict is refused, saying `words`."""
    assert result.kind == "refused_at_predict", f"expected a ReflstmError at predict, got {result}"
    for word in words:
        assert word.lower() in result.message.lower(), f"{word!r} not in {result.message!r}"


# ---- the API ----------------------------------------------------------------------------------


def test_limits_are_a_frozen_dataclass_with_the_documented_defaults():
    """reflstm.Limits: named budgets with their defaults, frozen, passed to load as limits=."""
    import dataclasses
    import inspect

    limits = reflstm.Limits()
    assert dataclasses.is_dataclass(limits)
    assert dataclasses.asdict(limits) == dict(max_weight_bytes=4 << 30, max_config_bytes=64 << 20,
                                              max_json_depth=100, max_layers=10_000, max_seconds=120.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_layers = 5
    parameter = inspect.signature(reflstm.load).parameters["limits"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


# ---- the clean files are fine ---------------------------------------------------------------


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("name", MODELS)
def test_clean_file_loads_and_matches_keras(sandbox, clean, name, origin, tmp_path):
    """The untouched files load in the sandbox and predict what Keras predicts (the baseline)."""
    model = clean(name, origin)
    outputs = tmp_path / "out.npz"
    result = sandbox.load(model.path, inputs=model.inputs, output_shapes=model.output_shapes,
                          save_outputs=str(outputs))
    assert result.kind == "loaded", str(result)
    saved = np.load(outputs)
    for i, expected in enumerate(model.expected):
        np.testing.assert_allclose(saved[f"arr_{i}"], expected, rtol=2e-6, atol=2e-6)


# ---- bytes from outside the file ------------------------------------------------------------


@pytest.mark.parametrize("origin", ALL)
def test_external_raw_storage_is_refused(sandbox, clean, secrets, origin, dest):
    """A weight kept in HDF5 external raw storage (another file's bytes) is refused, never read."""
    model = clean("sequential", origin)
    path = H.external_storage(model, dest, secrets, layer="backwards")
    result = load(sandbox, path, model)
    assert_refused(result, "outside the file")
    assert "backwards" in result.message or "/0" in result.message or "kernel" in result.message


@pytest.mark.parametrize("origin", ALL)
def test_external_link_is_refused(sandbox, clean, secrets, origin, dest):
    """A weight that is an h5py.ExternalLink to another HDF5 file is refused as a link."""
    model = clean("sequential", origin)
    assert_refused(load(sandbox, H.external_link(model, dest, secrets, layer="backwards"), model), "link")


@pytest.mark.parametrize("origin", ALL)
def test_soft_link_is_refused(sandbox, clean, secrets, origin, dest):
    """A weight that is a SoftLink to another dataset in the same file is refused as a link."""
    model = clean("sequential", origin)
    assert_refused(load(sandbox, H.soft_link(model, dest, secrets, layer="last", index=1), model), "link")


@pytest.mark.parametrize("origin", ALL)
def test_virtual_dataset_is_refused(sandbox, clean, secrets, origin, dest):
    """A weight that is a virtual dataset mapping another file is refused as virtual."""
    model = clean("sequential", origin)
    path = H.virtual_dataset(model, dest, secrets, layer="backwards", index=2)
    assert_refused(load(sandbox, path, model), "virtual")


@pytest.mark.parametrize("origin", ALL)
def test_virtual_dataset_with_missing_source_is_refused(sandbox, clean, secrets, origin, dest):
    """A virtual dataset whose source file is missing is refused, not read as zeros."""
    model = clean("sequential", origin)
    path = H.virtual_dataset(model, dest, secrets, layer="backwards", missing=True)
    assert_refused(load(sandbox, path, model), "virtual")


# ---- memory ---------------------------------------------------------------------------------


def test_zip_bomb_with_honest_header_is_refused_unread(sandbox, clean, tmp_path):
    """A weights member that inflates to 1.3 GB (a few MB on disk) is refused by its declared size."""
    model = clean("sequential", "keras3-keras")
    path = H.zip_bomb(model, tmp_path / "bomb.keras", honest=True)
    assert path.stat().st_size < 5_000_000
    assert_refused(load(sandbox, path, model, limits=SMALL), "max_weight_bytes")


def test_zip_bomb_with_lying_header_is_not_inflated(sandbox, clean, tmp_path):
    """A member whose header understates its inflated size is read no further than the header says."""
    model = clean("sequential", "keras3-keras")
    path = H.zip_bomb(model, tmp_path / "bomb.keras", honest=False)
    result = load(sandbox, path, model, limits=SMALL)
    assert result.kind in ("loaded", "refused"), str(result)


@pytest.mark.parametrize("origin", ALL)
def test_huge_declared_weights_are_refused_at_default_limits(sandbox, clean, origin, dest):
    """A small file declaring a 22 GB Dense layer (config and weights agree) is refused unread."""
    model = clean("sequential", origin)
    path = H.huge_dense(model, dest)
    assert path.stat().st_size < 200_000
    assert_refused(load(sandbox, path, model), "max_weight_bytes")


@pytest.mark.parametrize("origin", ALL)
def test_huge_declared_dataset_is_refused(sandbox, clean, origin, dest):
    """A weight declaring 4e9 float32 elements (none stored) is refused without reading it."""
    model = clean("sequential", origin)
    path = H.huge_declared_dataset(model, dest, layer="backwards")
    assert path.stat().st_size < 200_000
    assert_refused(load(sandbox, path, model))


def test_huge_declared_dataset_under_a_low_address_space_cap(clean, tmp_path):
    """Under a 600 MB RLIMIT_AS, reflstm.load refuses the 4e9-element file in a plain subprocess."""
    import subprocess

    model = clean("sequential", "keras3-keras")
    path = H.huge_declared_dataset(model, tmp_path / "huge.keras", layer="backwards")
    code = (
        "import resource, reflstm\n"
        "resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))\n"
        f"try:\n    reflstm.load({str(path)!r})\n"
        "except reflstm.ReflstmError as e:\n    print('REFUSED', e)\n"
    )
    env = {"OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert run.stdout.startswith("REFUSED"), run.stdout + run.stderr[-1500:]


# ---- budgets on configs and graphs ----------------------------------------------------------


@pytest.mark.parametrize("origin", ALL)
def test_deeply_nested_config_is_refused(sandbox, clean, origin, dest):
    """A config nesting a list 100,000 deep is refused by max_json_depth (no RecursionError)."""
    model = clean("sequential", origin)
    assert_refused(load(sandbox, H.deep_config(model, dest), model), "max_json_depth")


def test_deeply_nested_metadata_is_refused(sandbox, clean, tmp_path):
    """A .keras metadata.json nested 100,000 deep is refused by max_json_depth."""
    model = clean("sequential", "keras3-keras")
    assert_refused(load(sandbox, H.deep_metadata(model, tmp_path / "m.keras"), model), "max_json_depth")


@pytest.mark.parametrize("origin", ALL)
def test_config_over_budget_is_refused(sandbox, clean, origin, dest):
    """A 2 MB config is refused under max_config_bytes=1,000,000."""
    model = clean("sequential", origin)
    result = load(sandbox, H.big_config(model, dest), model, limits=dict(max_config_bytes=1_000_000))
    assert_refused(result, "max_config_bytes")


@pytest.mark.parametrize("origin", ALL)
def test_too_many_layers_are_refused(sandbox, clean, origin, dest):
    """A config of more layers than max_layers is refused by that budget."""
    model = clean("sequential", origin)
    path = H.many_layers(model, dest, count=60)
    assert_refused(load(sandbox, path, model, limits=dict(max_layers=50)), "max_layers")


def test_too_many_layers_at_default_limits(sandbox, clean, tmp_path):
    """10,050 layers are refused at the default max_layers (10,000)."""
    model = clean("branches", "keras3-keras")
    path = H.many_layers(model, tmp_path / "many.keras", count=10_050)
    assert_refused(load(sandbox, path, model, timeout=60.0), "max_layers")


CHAINS = [("sequential", "keras3-keras"), ("sequential", "tf_keras-h5"), ("branches", "keras3-keras"),
          ("branches", "keras3-h5"), ("branches", "tf_keras-h5")]


@pytest.mark.parametrize("count", [100, 1000])
@pytest.mark.parametrize("name, origin", CHAINS)
def test_chain_of_dropout_layers_loads_and_matches_keras(sandbox, clean, name, origin, count, dest, tmp_path):
    """100 or 1,000 Dropout layers after an LSTM load, and predict what Keras predicts."""
    # Dropout is the identity at inference, so Keras's numbers for the clean model are the answer.
    # The 100-layer chain proves the file is built right (it runs today); 1,000 layers must not
    # make reflstm recurse once per layer.
    model = clean(name, origin)
    path = H.many_layers(model, dest, count=count)
    outputs = tmp_path / "out.npz"
    result = sandbox.load(path, inputs=model.inputs, output_shapes=model.output_shapes,
                          save_outputs=str(outputs))
    assert result.kind == "loaded", str(result)
    saved = np.load(outputs)
    for i, expected in enumerate(model.expected):
        np.testing.assert_allclose(saved[f"arr_{i}"], expected, rtol=2e-6, atol=2e-6)


# ---- the hang -------------------------------------------------------------------------------


def hang_mutation(tmp_path):
    """A Keras-3-saved .h5 with one byte, 0x80, inserted into the text of the root's model_config
    attribute, where libhdf5 then loops for ever; None if no insertion tried makes it loop.

    Keras 3 stores model_config as a variable-length string, so its text lives in the file's
    first global heap collection ("GCOL"), as object 1 after a 16-byte collection header and a
    16-byte object header. With the text longer than the default 4 KiB collection, an insertion
    at some offsets makes libhdf5 loop: h5py's AttributeManager.__getitem__ -> AttrID.read ->
    H5Aread -> H5T__conv_vlen -> H5HG_get_obj_size -> H5HG__cache_heap_deserialize spins at 100%
    CPU with constant memory (HDF5 1.14.6, h5py 3.14). Which offsets loop depends on the file's
    exact bytes, and those on the layer names Keras picks (which depend on what the process built
    before), so the model is built and saved in a fresh process — Keras writes the same bytes
    every time there — and every 7th offset of the text is tried until plain h5py does not return.
    """
    source = tmp_path / "clean.h5"
    build = ("import sys; sys.path.insert(0, sys.argv[1]); from saved_models import build_model; "
             "build_model('lstm_stack', 3).save(sys.argv[2])")
    subprocess.run([sys.executable, "-c", build, str(Path(__file__).parent), str(source)], check=True,
                   capture_output=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    data = source.read_bytes()
    import h5py

    with h5py.File(source, "r") as f:
        text = f.attrs["model_config"]
    assert len(text) > 4096, "the model's config must outgrow the default 4 KiB global heap collection"
    heap = data.index(b"GCOL")
    # One subprocess tries the offsets, each read by plain h5py in a forked child given 1 s; it
    # prints the first offset whose read never returned.
    found = subprocess.run([sys.executable, "-c", _HANG_SEARCH, str(source), str(heap + 32), str(len(text))],
                           capture_output=True, text=True, timeout=120).stdout.split()
    if not found:
        return None
    at = int(found[0])
    return data[:at] + b"\x80" + data[at:]


_HANG_SEARCH = """
import os, sys, time, h5py
source, start, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(source, "rb").read()
probe = source + ".probe"
for at in range(start + 20, start + length, 7):
    with open(probe, "wb") as f:
        f.write(data[:at] + b"\\x80" + data[at:])
    pid = os.fork()
    if pid == 0:
        try:
            h5py.File(probe, "r").attrs["model_config"]
        finally:
            os._exit(0)
    deadline, ended = time.monotonic() + 1.0, False
    while not ended and time.monotonic() < deadline:
        ended = os.waitpid(pid, os.WNOHANG) != (0, 0)
        time.sleep(0.002)
    if not ended:
        os.kill(pid, 9); os.waitpid(pid, 0)
        print(at)
        break
"""


def test_one_byte_inserted_h5_is_refused_within_max_seconds(sandbox, tmp_path):
    """The .h5 that never returns from reading model_config is refused after max_seconds (3 s)."""
    mutated = hang_mutation(tmp_path)
    if mutated is None:
        pytest.skip("no one-byte insertion into model_config makes this libhdf5 loop")
    path = tmp_path / "inserted.h5"
    path.write_bytes(mutated)
    started = time.perf_counter()
    result = sandbox.load(path, limits=dict(max_seconds=3.0), timeout=10.0)
    assert_refused(result, "max_seconds")
    assert time.perf_counter() - started < 9.0


def test_vlen_length_of_four_gigabytes_is_refused_under_a_cap(sandbox, clean, tmp_path):
    """A byte inserted into model_config's string length (it then claims 4.28e9 bytes) is refused."""
    # 0xff lands 51 bytes after the attribute's name, in the high byte of the vlen length; unconfined,
    # H5Aread allocates and zero-fills 4 GB (10-20 s here) before failing, so it runs under the cap.
    model = clean("sequential", "keras3-h5")
    data = model.path.read_bytes()
    name = data.index(b"model_config\x00")
    assert int.from_bytes(data[name + 48 : name + 52], "little") == len(json.dumps(model.config))
    path = tmp_path / "inserted.h5"
    path.write_bytes(data[: name + 51] + b"\xff" + data[name + 51 :])
    assert_refused(sandbox.load(path, timeout=30.0))


# ---- types of things in the file ------------------------------------------------------------


CONFIG_TYPES = [("config.json", "null"), ("config.json", "[]"), ("config.json", '"a string"'),
                ("config.json", "3"), ("metadata.json", "null"), ("metadata.json", "[1, 2]"),
                ("metadata.json", '"3.1.0"')]


@pytest.mark.parametrize("member, text", CONFIG_TYPES)
def test_archive_json_of_the_wrong_type_is_refused(sandbox, clean, member, text, tmp_path):
    """config.json or metadata.json that is null, a list, a string or a number is refused."""
    model = clean("sequential", "keras3-keras")
    path = H.with_config_text(model, tmp_path / "m.keras", text, member=member)
    assert_refused(load(sandbox, path, model))


@pytest.mark.parametrize("origin", H.H5_ORIGINS)
@pytest.mark.parametrize("text", ["null", "[]", '{"class_name": "Sequential", "config": []}',
                                  '{"class_name": "Sequential", "config": {"layers": {}}}'])
def test_h5_model_config_of_the_wrong_type_is_refused(sandbox, clean, origin, text, dest):
    """An .h5 model_config that is null, a list, or has lists and objects swapped is refused."""
    model = clean("sequential", origin)
    assert_refused(load(sandbox, H.with_config_text(model, dest, text), model))


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("class_name", ["LSTM", "Dense", "Masking"])
def test_layer_config_that_is_a_list_is_refused(sandbox, clean, origin, class_name, dest):
    """A layer whose `config` is a JSON list instead of an object is refused, naming its class."""
    model = clean("sequential", origin)
    assert_refused(load(sandbox, H.layer_config_is_list(model, dest, class_name), model), class_name)


@pytest.mark.parametrize("origin", ALL)
def test_weight_that_is_a_group_is_refused(sandbox, clean, origin, dest):
    """A weight that is an HDF5 group, not a dataset, is refused naming the layer."""
    model = clean("sequential", origin)
    layer = H.layer_name(model, "Dense")
    assert_refused(load(sandbox, H.weight_is_group(model, dest, layer), model), layer)


def test_layers_that_is_a_dataset_is_refused(sandbox, clean, tmp_path):
    """A .keras weights file whose /layers is a dataset, not a group, is refused."""
    model = clean("sequential", "keras3-keras")
    assert_refused(load(sandbox, H.layers_is_dataset(model, tmp_path / "m.keras"), model))


# ---- archive members ------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_encrypted_member_is_refused(sandbox, clean, member, tmp_path):
    """A member flagged as encrypted (zipfile raises RuntimeError) is refused."""
    model = clean("sequential", "keras3-keras")
    assert_refused(load(sandbox, H.member_flags(model, tmp_path / "m.keras", member, flags=1), model))


@pytest.mark.parametrize("method", [99, 2])
def test_unsupported_compression_method_is_refused(sandbox, clean, method, tmp_path):
    """A member compressed with a method zipfile cannot read (NotImplementedError) is refused."""
    model = clean("sequential", "keras3-keras")
    path = H.member_flags(model, tmp_path / "m.keras", "config.json", method=method)
    assert_refused(load(sandbox, path, model))


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA], ids=["deflate", "lzma"])
@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_corrupt_compressed_stream_is_refused(sandbox, clean, member, method, tmp_path):
    """A damaged deflate or LZMA stream (zlib.error, LZMAError) is refused."""
    model = clean("sequential", "keras3-keras")
    path = H.corrupt_stream(model, tmp_path / "m.keras", member, method)
    assert_refused(load(sandbox, path, model))


# ---- the graph ------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("kind", ["two_layers", "self_loop"])
def test_graph_with_a_cycle_is_refused(sandbox, clean, origin, kind, dest):
    """A functional graph whose calls form a cycle is refused at load, naming the cycle."""
    model = clean("branches", origin)
    assert_refused(load(sandbox, H.cycle(model, dest, kind), model), "cycle")


MALFORMED = ["short", "unknown_layer", "node_index", "tensor_index", "not_a_list", "negative",
             "float_index", "args_not_a_list", "args_missing"]


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_recorded_call_is_refused_at_load(sandbox, clean, origin, kind, dest):
    """A malformed recorded call (`args`, `keras_history`, an inbound node) is refused at load."""
    # Malformed, or naming a layer, node or tensor that does not exist: found at load, not predict.
    model = clean("branches", origin)
    assert_refused(load(sandbox, H.malformed_call(model, dest, kind), model))


# ---- weights that disagree with the config --------------------------------------------------


def _dense(model):
    return H.layer_name(model, "Dense")


WRONG_WEIGHTS = {
    # case: (model, layer, index, make the array from the original, words)
    "dense_kernel_transposed": ("sequential", _dense, 0, lambda w: w.T.copy(), ()),
    "dense_kernel_rank_3": ("sequential", _dense, 0, lambda w: w[..., None], ()),
    "dense_bias_too_long": ("sequential", _dense, 1, lambda w: np.append(w, 1.0).astype(w.dtype), ()),
    "dense_bias_0d": ("sequential", _dense, 1, lambda w: np.asarray(w[0]), ()),
    "dense_kernel_int32": ("sequential", _dense, 0, lambda w: np.round(w * 4).astype("int32"), ("float",)),
    "dense_bias_complex": ("sequential", _dense, 1, lambda w: w.astype("complex64") + 1j, ("float",)),
    "dense_kernel_strings": ("sequential", _dense, 0, lambda w: w.astype("S8"), ("float",)),
    "lstm_kernel_int32": ("sequential", lambda m: "backwards", 0, lambda w: np.round(w * 4).astype("int32"),
                          ("float",)),
    "lstm_bias_0d": ("sequential", lambda m: "last", 2, lambda w: np.asarray(w[0]), ()),
    "embedding_rank_1": ("embedding", lambda m: H.layer_name(m, "Embedding"), 0, lambda w: w[:, 0].copy(), ()),
    "embedding_fewer_rows": ("embedding", lambda m: H.layer_name(m, "Embedding"), 0, lambda w: w[:3].copy(), ()),
    "embedding_int32": ("embedding", lambda m: H.layer_name(m, "Embedding"), 0,
                        lambda w: np.round(w * 4).astype("int32"), ("float",)),
}


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("case", list(WRONG_WEIGHTS))
def test_weight_of_wrong_shape_rank_or_dtype_is_refused_naming_the_layer(sandbox, clean, origin, case, dest):
    """Dense, Embedding and LSTM weights of the wrong shape, rank or dtype are refused at load."""
    name, layer_of, index, change, words = WRONG_WEIGHTS[case]
    model = clean(name, origin)
    layer = layer_of(model)
    path = H.with_weight(model, dest, layer, index, change(H.read_weight(model, layer, index)))
    assert_refused(load(sandbox, path, model), layer, *words)


@pytest.mark.parametrize("origin", ALL)
def test_weight_on_a_weightless_layer_is_refused(sandbox, clean, origin, dest):
    """An array stored for a merge layer (which has none) is refused, not ignored."""
    model = clean("branches", origin)
    layer = H.layer_name(model, "Add")
    assert_refused(load(sandbox, H.extra_weight_on_weightless_layer(model, dest, layer), model), layer)


@pytest.mark.parametrize("origin", ALL)
def test_merge_of_layers_of_different_widths_is_refused(sandbox, clean, origin, dest):
    """Add of a 4-unit LSTM and a 3-unit RNN (each consistent in itself) is a ReflstmError, at load or predict."""
    model = clean("branches", origin)
    result = load(sandbox, H.resized_rnn(model, dest, "RNN", units=3), model)
    assert result.kind in ("refused", "refused_at_predict"), f"expected a ReflstmError, got {result}"


BOOLEANS = [("LSTM", 1, "return_sequences", "false"), ("LSTM", 1, "go_backwards", "false"),
            ("LSTM", 0, "return_sequences", 0)]


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("class_name, index, key, value", BOOLEANS)
def test_boolean_field_of_another_type_is_refused(sandbox, clean, origin, class_name, index, key, value, dest):
    """`"return_sequences": "false"` (a string, truthy in Python) is refused, naming the field."""
    model = clean("sequential", origin)
    path = H.field(model, dest, class_name, key, value, index=index)
    assert_refused(load(sandbox, path, model), key, "boolean")


@pytest.mark.parametrize("origin", ALL)
@pytest.mark.parametrize("class_name, index, value", [("LSTM", 0, 7), ("LSTM", 1, "3"), ("Dense", 0, 3),
                                                      ("LSTM", 0, -5)])
def test_units_disagreeing_with_the_weights_are_refused(sandbox, clean, origin, class_name, index, value, dest):
    """A config's `units` that the weights do not have (or that is not a positive int) is refused."""
    model = clean("sequential", origin)
    path = H.field(model, dest, class_name, "units", value, index=index)
    assert_refused(load(sandbox, path, model), "units")


@pytest.mark.parametrize("origin", ALL)
def test_custom_cell_inside_rnn_is_refused(sandbox, clean, origin, dest):
    """RNN(cell={"module": "evil.module", "class_name": "LSTMCell"}) is never run: refused at predict."""
    model = clean("branches", origin)
    assert_refused_at_predict(load(sandbox, H.nested_custom(model, dest, "RNN", "cell"), model), "custom")


@pytest.mark.parametrize("name, class_name, origin", [("lstm_stack", "TimeDistributed", "keras3-h5"),
                                                      ("bidirectional_concat", "Bidirectional", "tf_keras-h5")])
def test_custom_layer_inside_a_wrapper_is_refused(sandbox, clean, origin, name, class_name, dest):
    """A wrapper (TimeDistributed, Bidirectional) whose inner layer claims a custom module is never run."""
    model = clean(name, origin)
    assert_refused_at_predict(load(sandbox, H.nested_custom(model, dest, class_name, "layer"), model), "custom")
