"""Reading a command's input: .npy, a one-array .npz or CSV, checked; random input; batches."""

import numpy as np

from reflstm.errors import ReflstmError, refuse
from reflstm.formats.untrusted import regular_file
from reflstm.cli.layers import model_dtype

INPUT_HELP = "X.npy, an .npz holding one array, or X.csv, shaped as the model's input"
# How a CSV input is laid out; the help and the README say the same.
CSV_LAYOUT = ("one row per sample and step (sample 0's steps in order, then sample 1's, ...), one "
              "column per feature, an optional header; or, with header columns 'sample' and 'step', "
              "rows in any order (samples in order of their number); for a model reading token ids "
              "(batch, timesteps), one row per sample and one column per step")


def read_input(path, model=None):
    """The input array from a .npy, a one-array .npz or a .csv (laid out by `model`'s input shape)."""
    regular_file(path, "--input", ".npy, .npz or .csv file")
    with open(path, "rb") as file:
        magic = file.read(6)
    if magic == b"\x93NUMPY":
        x = _read_npy(path)
    elif magic[:4] == b"PK\x03\x04":
        x = _read_npz(path)
    elif path.lower().endswith((".csv", ".txt")):
        x = _read_csv(path, model)
    else:
        raise refuse("--input", "a .npy file, an .npz holding one array, or a .csv file",
                     f"{path!r}, which is none of these (no NumPy header, and not named .csv)")
    if not isinstance(x, np.ndarray) or x.ndim < 2 or x.shape[0] == 0:
        raise refuse("--input", "an array (batch, timesteps, ...) with at least one sample",
                     f"{path!r}, of shape {getattr(x, 'shape', '?')}")
    return x


def _read_npy(path):
    try:
        return np.load(path, allow_pickle=False)  # never unpickle: that could run code
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise refuse("--input", "a .npy array of numbers", f"{path!r}, an array of Python objects "
                         "(never unpickled: that could run code)") from None
        raise refuse("--input", "a .npy array of numbers", f"{path!r} ({str(error)[:100]})") from None
    except (OSError, EOFError) as error:
        raise refuse("--input", "a .npy array of numbers", f"{path!r} ({str(error)[:100]})") from None


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            if len(keys) != 1:
                raise refuse("--input", "an .npz holding one array (the model's input)",
                             f"{path!r}, holding {len(keys)} arrays: {', '.join(map(repr, keys[:10]))}")
            return arrays[keys[0]]
    except ReflstmError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise refuse("--input", "an .npz holding one array of numbers", f"{path!r}, an array of "
                         "Python objects (never unpickled: that could run code)") from None
        raise refuse("--input", "an .npz holding one array", f"{path!r} ({str(error)[:100]})") from None
    except (OSError, EOFError, KeyError) as error:
        raise refuse("--input", "an .npz holding one array", f"{path!r} ({str(error)[:100]})") from None


def _read_csv(path, model):
    """A CSV input, laid out as CSV_LAYOUT says, shaped by the model's one input shape."""
    import csv

    shapes = list(model.graph.input_shapes.values()) if model is not None else []
    if len(shapes) != 1 or shapes[0] is None or len(shapes[0]) not in (2, 3):
        raise refuse("--input", "a .npy or .npz file (a .csv is read for a model with one input of "
                     "shape (batch, timesteps, features) or (batch, timesteps))", f"{path!r}")
    shape = tuple(shapes[0])
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [(number, row) for number, row in enumerate(csv.reader(file), 1)
                    if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise refuse("--input", "a text .csv file", f"{path!r} ({str(error)[:100]})") from None
    header = None
    if rows and not _numbers(rows[0][1]):
        header = [cell.strip().lower() for cell in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise refuse("--input", "a .csv with at least one row of numbers", f"{path!r}, which has none")
    width = len(rows[0][1]) if header is None else len(header)
    for number, row in rows:
        if len(row) != width:
            raise refuse("--input", f"a .csv whose rows all have {width} columns",
                         f"{path!r}, whose line {number} has {len(row)}")
        if not _numbers(row):
            raise refuse("--input", "a .csv of numbers (no empty cells, no NA)",
                         f"{path!r}, whose line {number} reads {','.join(row)[:60]!r}")
    data = np.array([row for _, row in rows], dtype=np.float64)  # (rows, columns)
    if header is not None and "sample" in header:
        return _csv_by_sample(path, data, header, shape)
    if len(shape) == 2:  # token ids: one row per sample, one column per step
        if shape[1] is not None and width != shape[1]:
            raise refuse("--input", f"a .csv with one row per sample and {shape[1]} columns (one per "
                         "step)", f"{path!r}, with {width} columns")
        return _ids_if_whole(data)
    timesteps, features = shape[1], shape[2]
    if features is not None and width != features:
        raise refuse("--input", f"a .csv with {features} columns, one per feature, one row per sample "
                     "and step", f"{path!r}, with {width} columns")
    if timesteps is None:
        raise refuse("--input", "a .csv with header columns 'sample' and 'step' (the model takes "
                     "sequences of any length, so rows cannot be split into samples without them)",
                     f"{path!r}, without a 'sample' column")
    if len(data) % timesteps:
        raise refuse("--input", f"a .csv with one row per sample and step: a multiple of {timesteps} "
                     "rows (the model's timesteps)", f"{path!r}, with {len(data)} rows")
    return data.reshape(len(data) // timesteps, timesteps, width)  # row-major: sample, then step


def _csv_by_sample(path, data, header, shape):
    """Rows grouped by the 'sample' column (in order of its values), sorted by 'step' if given."""
    sample = header.index("sample")
    step = header.index("step") if "step" in header else None
    features = [k for k in range(len(header)) if k not in (sample, step)]
    if len(shape) == 3 and shape[2] is not None and len(features) != shape[2]:
        raise refuse("--input", f"a .csv with {shape[2]} feature columns beside 'sample' and 'step'",
                     f"{path!r}, with {len(features)}")
    blocks = []
    for sample_id in np.unique(data[:, sample]):  # samples in order of their number
        rows = data[data[:, sample] == sample_id]
        if step is not None:
            rows = rows[np.argsort(rows[:, step], kind="stable")]
        blocks.append(rows[:, features])
    lengths = {len(b) for b in blocks}
    if len(lengths) != 1:
        raise refuse("--input", "a .csv with the same number of steps for every sample",
                     f"{path!r}, with {min(lengths)} to {max(lengths)} steps per sample")
    if shape[1] is not None and lengths != {shape[1]}:
        raise refuse("--input", f"{shape[1]} steps per sample (the model's timesteps)",
                     f"{path!r}, with {lengths.pop()}")
    x = np.stack(blocks)  # (samples, timesteps, features)
    return _ids_if_whole(x[..., 0]) if len(shape) == 2 else x


def _numbers(row):
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return all(cell.strip().lower() not in ("nan", "") for cell in row)


def _ids_if_whole(data):
    """Token ids read as numbers: integers when they are whole."""
    return data.astype(np.int64) if np.all(np.mod(data, 1) == 0) else data


def random_input(model, seed=0):
    """A random input of the model's saved input shape (10 steps where the length is free)."""
    rng = np.random.default_rng(seed)
    inputs = []
    for name in model.graph.inputs:
        shape = model.graph.input_shapes.get(name)
        if shape is None:
            raise refuse("--input", "an input file (the model does not record its input shape)", "none")
        shape = (model.batch_size or 2,) + tuple(10 if s is None else s for s in shape[1:])
        embedding = _embedding_after(model, name)
        if embedding is not None:
            inputs.append(rng.integers(0, embedding.embeddings.shape[0], shape))
        else:
            inputs.append(rng.normal(0, 1, shape).astype(model_dtype(model)))
    return inputs if len(inputs) > 1 else inputs[0]


def _embedding_after(model, input_name):
    from reflstm.models.layers import Embedding

    for node in model.graph.nodes.values():
        if isinstance(node.layer, Embedding) and any(src == input_name for src, _, _ in node.inputs):
            return node.layer
    return None


def sample_count(x):
    return (x[0] if isinstance(x, list) else x).shape[0]


def batch_of(x, start, size):
    """Samples start .. start + size of an input (a list for several inputs)."""
    return [a[start : start + size] for a in x] if isinstance(x, list) else x[start : start + size]


def whole_batches(model, x):
    """A stateful model's input: a whole number of batches of its batch size."""
    batch = model.batch_size
    if sample_count(x) % batch:
        raise refuse("--input", f"a multiple of {batch} samples (the model is stateful: it runs batches "
                     f"of {batch}, each from the states the one before ended in)",
                     f"{sample_count(x)} samples")


def one_batch(model, x):
    """explain and plot show one call: for a stateful model, one batch, from zero states."""
    if model.batch_size is not None and sample_count(x) != model.batch_size:
        raise refuse("--input", f"{model.batch_size} samples, one batch of this stateful model "
                     "(shown from zero states, as after loading)", f"{sample_count(x)} samples")
