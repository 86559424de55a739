"""reflstm.explorer.lstmvis: LSTMVis's project files, with states equal to Keras's own outputs."""

import os

import h5py
import numpy as np
import pytest

import reflstm
from keras_layers import KERAS_VERSIONS, TOLERANCE, keras_module
from reflstm.explorer.lstmvis import export_lstmvis, read_vocabulary
from test_files import save

BATCH, TIMESTEPS, FEATURES, VOCABULARY = 70, 6, 3, 9  # 70 samples: more than one chunk of 64
FLOAT64 = TOLERANCE["float64"]
KERAS_IDS = {3: "keras3", 2: "tf_keras"}


def _features_model(k):
    """Masking, an LSTM, a Bidirectional(GRU) and a go_backwards SimpleRNN, all in float64."""
    inp = k.Input((TIMESTEPS, FEATURES), dtype="float64")
    x = k.layers.Masking(dtype="float64")(inp)
    x = k.layers.LSTM(5, return_sequences=True, name="lstm", dtype="float64")(x)
    x = k.layers.Bidirectional(k.layers.GRU(3, return_sequences=True, dtype="float64"), name="bi",
                               dtype="float64")(x)
    x = k.layers.SimpleRNN(4, return_sequences=True, go_backwards=True, name="back", dtype="float64")(x)
    return k.Model(inp, k.layers.Dense(2, dtype="float64")(x))


def _tokens_model(k):
    """Embedding(mask_zero) into a go_backwards LSTM: the states line up with the tokens."""
    inp = k.Input((TIMESTEPS,), dtype="int32")
    x = k.layers.Embedding(VOCABULARY, 4, mask_zero=True, dtype="float64")(inp)
    x = k.layers.LSTM(3, return_sequences=True, go_backwards=True, name="reader", dtype="float64")(x)
    return k.Model(inp, x)


def _with_weights(model, seed=0):
    """Every weight drawn anew: distinct per gate, non-zero biases."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _features(seed=1):
    x = np.random.default_rng(seed).normal(0, 1, (BATCH, TIMESTEPS, FEATURES))
    x[0, 4:] = 0  # padding at the end
    x[1, :2] = 0  # padding at the start
    x[2, 3] = 0  # a hole
    return x


def _tokens(seed=1):
    ids = np.random.default_rng(seed).integers(1, VOCABULARY, (BATCH, TIMESTEPS))
    ids[0, 4:] = 0
    ids[2, 2] = 0
    return ids.astype("int32")


def _keras_output(keras_version, model, name, x):
    """What Keras's layer `name` returns inside `model`, called eagerly (float64 to ~1e-12)."""
    k = keras_module(keras_version)
    return np.asarray(k.Model(model.inputs[0], model.get_layer(name).output)(x, training=False))


def _rows(array):
    """(batch, timesteps, units) as LSTMVis's (batch * timesteps, units)."""
    return array.reshape(-1, array.shape[-1])


def _states(folder):
    with h5py.File(os.path.join(folder, "states.hdf5"), "r") as file:
        return {key: file[key][()] for key in file}


def _words(folder):
    with h5py.File(os.path.join(folder, "words.hdf5"), "r") as file:
        return {key: file[key][()] for key in file}


@pytest.fixture(scope="module", params=KERAS_VERSIONS, ids=KERAS_IDS.get)
def features_export(request, tmp_path_factory):
    """(keras version, Keras model, input, reflstm model, project folder) for the features model."""
    keras_version = request.param
    tmp = tmp_path_factory.mktemp("features")
    model = _with_weights(_features_model(keras_module(keras_version)))
    ref = reflstm.load(save(model, tmp, keras_version, "keras" if keras_version == 3 else "h5"))
    x = _features()
    export_lstmvis(ref, x, tmp / "project")
    return keras_version, model, x, ref, tmp / "project"


def test_outputs_equal_keras(features_export):
    """output{L} is what Keras's layer returns, step by step, samples one after another, to 1e-12."""
    keras_version, model, x, _, folder = features_export
    states = _states(folder)
    np.testing.assert_allclose(states["output1"], _rows(_keras_output(keras_version, model, "lstm", x)),
                               rtol=FLOAT64, atol=FLOAT64)


def test_go_backwards_outputs_are_in_input_order(features_export):
    """A go_backwards layer's rows are flipped back: row p is the state after reading input step p."""
    keras_version, model, x, _, folder = features_export
    keras_out = _keras_output(keras_version, model, "back", x)  # processing order, as Keras returns it
    np.testing.assert_allclose(_states(folder)["output3"], _rows(keras_out[:, ::-1]), rtol=FLOAT64,
                               atol=FLOAT64)


def test_bidirectional_directions_equal_keras(features_export):
    """A Bidirectional's forward and backward outputs are the two halves of Keras's concat, in input order."""
    keras_version, model, x, _, folder = features_export
    keras_out = _keras_output(keras_version, model, "bi", x)  # (batch, timesteps, 2 * 3)
    states = _states(folder)
    for path, half in (("output2_forward", keras_out[..., :3]), ("output2_backward", keras_out[..., 3:])):
        np.testing.assert_allclose(states[path], _rows(half), rtol=FLOAT64, atol=FLOAT64)


def test_gates_and_cell_state_equal_the_trace(features_export):
    """Every gate, the candidate and C_t are the trace's, per layer and direction, in input order."""
    _, _, x, ref, folder = features_export
    traces = ref.trace(x)
    states = _states(folder)
    lstm, bi = traces["lstm"], traces["bi"]
    expected = {
        "states1": lstm.c, "input_gate1": lstm.i, "forget_gate1": lstm.f, "candidate1": lstm.c_tilde,
        "output_gate1": lstm.o,
        "update_gate2_forward": bi.forward.z, "reset_gate2_forward": bi.forward.r,
        "candidate2_forward": bi.forward.h_tilde,
        "update_gate2_backward": bi.backward.z[:, ::-1], "reset_gate2_backward": bi.backward.r[:, ::-1],
        "candidate2_backward": bi.backward.h_tilde[:, ::-1],
    }
    for path, value in expected.items():
        np.testing.assert_array_equal(states[path], _rows(value), err_msg=path)
    assert set(states) == set(expected) | {"output1", "output2_forward", "output2_backward", "output3"}


def test_config_parses_and_names_files_that_exist(features_export):
    """lstm.yml parses as YAML; every file, word sequence and state path it names exists, sized alike."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads lstm.yml, as LSTMVis does")
    _, _, _, _, folder = features_export
    with open(folder / "lstm.yml") as file:
        config = yaml.safe_load(file)
    assert config["name"] == "project"
    assert all((folder / name).is_file() for name in config["files"].values())
    states_file = h5py.File(folder / config["files"][config["states"]["file"]], "r")
    words_file = h5py.File(folder / config["files"][config["word_sequence"]["file"]], "r")
    with states_file, words_file:
        positions = words_file[config["word_sequence"]["path"]].shape
        assert positions == (BATCH * TIMESTEPS,)
        for entry in config["states"]["types"]:
            assert states_file[entry["path"]].shape[0] == positions[0], entry
            assert isinstance(entry["layer"], int)
        for meta in config["meta"].values():
            assert words_file[meta["path"]].shape == positions
    kinds = {entry["path"]: entry for entry in config["states"]["types"]}
    assert kinds["forget_gate1"]["unsigned"] is True and kinds["forget_gate1"]["transform"] == "none"
    assert "transform" not in kinds["states1"]  # C_t is unbounded: LSTMVis's tanh applies


def test_feature_inputs_get_step_words_and_annotations(features_export):
    """For features the words are the step numbers; sample, step and masked annotate every position."""
    _, _, x, ref, folder = features_export
    words = _words(folder)
    np.testing.assert_array_equal(words["word_ids"], np.tile(np.arange(TIMESTEPS), BATCH))
    np.testing.assert_array_equal(words["sample"], np.repeat(np.arange(BATCH), TIMESTEPS))
    np.testing.assert_array_equal(words["step"], np.tile(np.arange(TIMESTEPS), BATCH))
    skipped = (x == 0).all(axis=-1)  # Masking skips the all-zero steps
    np.testing.assert_array_equal(words["masked"], skipped.reshape(-1).astype(np.int8))
    assert (folder / "words.dict").read_text().splitlines()[:2] == ["t0 0", "t1 1"]


@pytest.mark.parametrize("keras_version", KERAS_VERSIONS, ids=KERAS_IDS.get)
def test_token_model_with_vocabulary(keras_version, tmp_path):
    """Token ids are the word sequence; the dict maps each id to its vocabulary word; states equal Keras."""
    model = _with_weights(_tokens_model(keras_module(keras_version)))
    ref = reflstm.Model.from_keras(model)
    x = _tokens()
    vocabulary = ["<pad>", " "] + [f"w{i}" for i in range(2, VOCABULARY)]
    export_lstmvis(ref, x, tmp_path / "tokens", vocabulary=vocabulary)
    np.testing.assert_array_equal(_words(tmp_path / "tokens")["word_ids"], x.reshape(-1))
    keras_out = _keras_output(keras_version, model, "reader", x)[:, ::-1]  # go_backwards: input order
    np.testing.assert_allclose(_states(tmp_path / "tokens")["output1"], _rows(keras_out), rtol=FLOAT64,
                               atol=FLOAT64)
    lines = (tmp_path / "tokens" / "words.dict").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["<pad> 0", "  1", "w2 2"]  # LSTMVis reads a line starting with a space as " "


def test_a_single_layer_exports(tmp_path):
    """A reflstm.LSTM alone exports as layer 1, its outputs those of a call."""
    k = keras_module(3)
    layer = k.layers.LSTM(4, return_sequences=True, dtype="float64")
    x = _features()
    keras_out = np.asarray(_with_weights(k.Sequential([k.Input((TIMESTEPS, FEATURES), dtype="float64"),
                                                       layer]))(x))
    export_lstmvis(reflstm.LSTM.from_keras(layer), x, tmp_path / "one")
    np.testing.assert_allclose(_states(tmp_path / "one")["output1"], _rows(keras_out), rtol=FLOAT64,
                               atol=FLOAT64)


def test_read_vocabulary(tmp_path):
    """One word per line, line k for id k; a CRLF line end and the last newline are not part of words."""
    path = tmp_path / "v.txt"
    path.write_bytes("<pad>\r\n \r\né\n".encode())
    assert read_vocabulary(str(path)) == ["<pad>", " ", "é"]


REFUSALS = {
    "word_with_space": (dict(vocabulary=["a", "b c"] + ["w"] * VOCABULARY), "vocabulary word 1"),
    "empty_word": (dict(vocabulary=[""] + ["w"] * VOCABULARY), "vocabulary word 0"),
    "short_vocabulary": (dict(vocabulary=["a", "b"]), "vocabulary"),
    "unknown_layer": (dict(layer="nope"), "layer"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_write_nothing(case, tmp_path):
    """Bad arguments are ReflstmErrors naming the argument, and no folder is created."""
    options, argument = REFUSALS[case]
    ref = reflstm.Model.from_keras(_with_weights(_tokens_model(keras_module(3))))
    with pytest.raises(reflstm.ReflstmError, match=f"^{argument}: expected"):
        export_lstmvis(ref, _tokens(), tmp_path / "out", **options)
    assert os.listdir(tmp_path) == []


def test_vocabulary_for_features_is_refused(features_export, tmp_path):
    """A vocabulary names token ids: with an input of features it is refused."""
    _, _, x, ref, _ = features_export
    with pytest.raises(reflstm.ReflstmError, match="^vocabulary: expected none"):
        export_lstmvis(ref, x, tmp_path / "out", vocabulary=["a"])


def test_folder_that_is_a_file_is_refused(tmp_path):
    """The project folder cannot be an existing file."""
    (tmp_path / "taken").write_text("")
    ref = reflstm.Model.from_keras(_with_weights(_tokens_model(keras_module(3))))
    with pytest.raises(reflstm.ReflstmError, match="^folder: expected a folder"):
        export_lstmvis(ref, _tokens(), tmp_path / "taken")


def _cli(capsys, *argv):
    from reflstm import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    """(model file, ids .npy, vocabulary file, Keras model) of the tokens model, saved by Keras 3."""
    tmp = tmp_path_factory.mktemp("tokens")
    model = _with_weights(_tokens_model(keras_module(3)))
    path = save(model, tmp, 3, "keras")
    np.save(tmp / "ids.npy", _tokens())
    (tmp / "vocabulary.txt").write_text("\n".join(["<pad>"] + [f"w{i}" for i in range(1, VOCABULARY)]) + "\n")
    return path, tmp / "ids.npy", tmp / "vocabulary.txt", model


def test_cli_writes_the_project(token_files, capsys, tmp_path):
    """reflstm export-lstmvis writes the four files; the states equal Keras's, the words the vocabulary's."""
    model_file, ids, vocabulary, model = token_files
    code, out, err = _cli(capsys, "export-lstmvis", model_file, "--input", ids, "--out", tmp_path / "lstmvis",
                          "--vocabulary", vocabulary)
    assert code == 0, err
    assert "output1" in out and "forget_gate1" in out
    assert sorted(os.listdir(tmp_path / "lstmvis")) == ["lstm.yml", "states.hdf5", "words.dict", "words.hdf5"]
    keras_out = _keras_output(3, model, "reader", np.load(ids))[:, ::-1]
    np.testing.assert_allclose(_states(tmp_path / "lstmvis")["output1"], _rows(keras_out), rtol=FLOAT64,
                               atol=FLOAT64)
    assert (tmp_path / "lstmvis" / "words.dict").read_text().splitlines()[:2] == ["<pad> 0", "w1 1"]


def test_cli_refusals_are_one_line_and_write_nothing(token_files, capsys, tmp_path):
    """A file for --out, an unknown --layer, a vocabulary word with a space: one line, exit 2, no files."""
    model_file, ids, vocabulary, _ = token_files
    (tmp_path / "taken").write_text("")
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("<pad>\nnew york\n" + "w\n" * VOCABULARY)
    cases = [
        (["--out", tmp_path / "taken"], "--out: expected a folder"),
        (["--out", tmp_path / "missing" / "p"], "--out: expected a folder inside an existing folder"),
        (["--out", tmp_path / "p", "--layer", "nope"], "--layer: expected one of the recurrent layers reader"),
        (["--out", tmp_path / "p", "--vocabulary", spaced], "vocabulary word 1: expected a word without whitespace"),
        (["--out", tmp_path / "p", "--vocabulary", tmp_path / "absent.txt"], "--vocabulary"),
    ]
    for options, words in cases:
        code, _, err = _cli(capsys, "export-lstmvis", model_file, "--input", ids, *options)
        assert code == 2 and words in err and err.count("\n") == 1, (options, err)
    assert sorted(os.listdir(tmp_path)) == ["spaced.txt", "taken"]
