"""Hostile and broken model files, each made from a clean file saved by Keras 3 or tf_keras.

Every builder takes a `Clean` model file and a destination folder and returns the path of a
tampered copy. The tampering is done with the tools an attacker has (h5py, zipfile, a text
editor), on files Keras really wrote, so that each file differs from a good one in exactly one
way. Files that point outside themselves point at "secret" files whose values are planted by
`sandbox.secret_values`: a loaded weight holding one was read from outside the model file.
"""

import contextlib
import dataclasses
import io
import json
import lzma
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

from sandbox import secret_values

ORIGINS = {"keras3-keras": (3, "keras"), "keras3-h5": (3, "h5"), "tf_keras-h5": (2, "h5")}
H5_ORIGINS = ["keras3-h5", "tf_keras-h5"]


@dataclasses.dataclass
class Clean:
    """A model Keras saved, with inputs (.npy paths) and Keras's own predictions for them."""

    path: Path
    keras_version: int
    fmt: str  # "keras" or "h5"
    inputs: list
    expected: list  # Keras's predict, one array per output
    config: dict

    @property
    def output_shapes(self):
        return [list(e.shape) for e in self.expected]


def save_clean(name, origin, root):
    """Build `name` (tests/saved_models.py) in Keras, save it as `origin`, and predict with Keras."""
    from saved_models import build_model, model_inputs

    keras_version, fmt = ORIGINS[origin]
    model = build_model(name, keras_version)
    path = Path(root) / f"{name}-{origin}.{fmt}"
    model.save(path)
    x = model_inputs(model)
    xs = x if isinstance(x, list) else [x]
    inputs = []
    for i, array in enumerate(xs):
        inputs.append(Path(root) / f"{name}-{origin}-x{i}.npy")
        np.save(inputs[-1], array)
    out = model(x, training=False)  # eager: no graph to trace, and Keras's own numbers all the same
    expected = [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
    return Clean(path, keras_version, fmt, inputs, expected, read_config(path))


# ---- reading and writing the parts of a saved model ---------------------------------------


def read_config(path):
    path = Path(path)
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    with h5py.File(path, "r") as f:
        text = f.attrs["model_config"]
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def archive_members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_archive(dest, members):
    """A .keras archive with `members` ({name: bytes}), deflated as Keras writes them."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return Path(dest)


def with_config_text(clean, dest, text, member="config.json"):
    """A copy of `clean` whose config (or, in a .keras, `member`) is the string `text`."""
    if clean.fmt == "keras":
        members = archive_members(clean.path)
        members[member] = text.encode() if isinstance(text, str) else text
        return write_archive(dest, members)
    shutil.copy(clean.path, dest)
    with h5py.File(dest, "r+") as f:
        f.attrs["model_config"] = text
    return Path(dest)


def with_config(clean, dest, edit):
    """A copy of `clean` whose config is `edit(config)` (edit may change config in place)."""
    config = json.loads(json.dumps(clean.config))
    result = edit(config)
    return with_config_text(clean, dest, json.dumps(config if result is None else result))


@contextlib.contextmanager
def weights_file(clean, dest):
    """The weight tree of a copy of `clean` at `dest`, open for writing with h5py."""
    if clean.fmt == "h5":
        shutil.copy(clean.path, dest)
        with h5py.File(dest, "r+") as f:
            yield f
        return
    members = archive_members(clean.path)
    inner = Path(dest).with_suffix(".weights.h5")
    inner.write_bytes(members["model.weights.h5"])
    with h5py.File(inner, "r+") as f:
        yield f
    members["model.weights.h5"] = inner.read_bytes()
    inner.unlink()
    write_archive(dest, members)


def layers_of(config, class_name):
    """The layer entries of `config` whose class is `class_name`, in model order."""
    return [l for l in config["config"]["layers"] if l.get("class_name") == class_name]


def layer_named(config, name):
    return next(l for l in config["config"]["layers"] if l["config"].get("name") == name)


def layer_name(clean, class_name, index=0):
    return layers_of(clean.config, class_name)[index]["config"]["name"]


def weight_paths(f, fmt, name):
    """HDF5 paths of layer `name`'s weights, in the order reflstm reads them."""
    if fmt == "h5":
        root = f["model_weights"] if "model_weights" in f else f
        group = root[name]
        return [group[_text(w)].name for w in group.attrs["weight_names"]]
    for group in f["layers"].values():
        if "vars" in group and _text(group["vars"].attrs.get("name")) == name:
            return _keras_paths(group)
    raise KeyError(name)


def _keras_paths(group):
    paths = []
    if "vars" in group:
        paths += [group["vars"][k].name for k in sorted(group["vars"], key=int)]
    for child in ("cell", "layer", "forward_layer", "backward_layer"):
        if child in group:
            paths += _keras_paths(group[child])
    return paths


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_weight(clean, layer, index):
    """Weight `index` of `layer` as saved in the clean file."""
    if clean.fmt == "h5":
        with h5py.File(clean.path, "r") as f:
            return f[weight_paths(f, "h5", layer)[index]][()]
    with h5py.File(io.BytesIO(archive_members(clean.path)["model.weights.h5"]), "r") as f:
        return f[weight_paths(f, "keras", layer)[index]][()]


def replace_weight(clean, dest, layer, index, make):
    """A copy of `clean` whose weight `index` of `layer` is replaced by `make(f, path, old)`.

    `old` is the original array; `make` creates whatever it likes at `path` (deleted first).
    """
    with weights_file(clean, dest) as f:
        path = weight_paths(f, clean.fmt, layer)[index]
        old = f[path][()]
        del f[path]
        make(f, path, old)
    return Path(dest)


def with_weight(clean, dest, layer, index, array):
    """A copy of `clean` whose weight `index` of `layer` is `array` (any shape or dtype)."""
    return replace_weight(clean, dest, layer, index, lambda f, path, old: f.create_dataset(path, data=array))


# ---- secret files outside the model --------------------------------------------------------


class Secrets:
    """Files outside any model, full of planted values (sandbox.secret_values)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.raw = self.root / "secret.bin"
        self.raw.write_bytes(secret_values(4096).astype("<f4").tobytes())
        self.h5 = self.root / "secret.h5"
        with h5py.File(self.h5, "w"):
            pass

    def dataset(self, shape, dtype="<f4"):
        """The name of a dataset of `shape` in the secret HDF5 file, holding planted values."""
        name = "/s_" + "x".join(map(str, shape)) + "_" + np.dtype(dtype).str.strip("<>|")
        with h5py.File(self.h5, "a") as f:
            if name not in f:
                count = int(np.prod(shape))
                f.create_dataset(name, data=secret_values(count).reshape(shape).astype(dtype))
        return name


# ---- weights that are not plain datasets inside the file ------------------------------------


def external_storage(clean, dest, secrets, layer, index=0):
    """Weight `index` of `layer` stored as HDF5 external raw storage: bytes of the secret file."""

    def make(f, path, old):
        nbytes = old.size * 4
        f.create_dataset(path, shape=old.shape, dtype="<f4", external=[(str(secrets.raw), 0, nbytes)])

    return replace_weight(clean, dest, layer, index, make)


def external_link(clean, dest, secrets, layer, index=0):
    """Weight `index` of `layer` an h5py.ExternalLink to a dataset of the right shape elsewhere."""

    def make(f, path, old):
        f[path] = h5py.ExternalLink(str(secrets.h5), secrets.dataset(old.shape))

    return replace_weight(clean, dest, layer, index, make)


def soft_link(clean, dest, secrets, layer, index=0):
    """Weight `index` of `layer` a SoftLink to a dataset of the right shape elsewhere in the file."""

    def make(f, path, old):
        f.create_dataset("/elsewhere", data=old + 1)  # inside the file, so not a planted value
        f[path] = h5py.SoftLink("/elsewhere")

    return replace_weight(clean, dest, layer, index, make)


def virtual_dataset(clean, dest, secrets, layer, index=0, missing=False):
    """Weight `index` of `layer` a virtual dataset whose source is another file (or a missing one)."""

    def make(f, path, old):
        layout = h5py.VirtualLayout(shape=old.shape, dtype="<f4")
        if missing:
            source = h5py.VirtualSource(str(secrets.root / "missing.h5"), "/nothing", shape=old.shape)
        else:
            source = h5py.VirtualSource(str(secrets.h5), secrets.dataset(old.shape), shape=old.shape)
        layout[...] = source
        f.create_virtual_dataset(path, layout, fillvalue=0)

    return replace_weight(clean, dest, layer, index, make)


def weight_is_group(clean, dest, layer, index=0):
    """Weight `index` of `layer` is an HDF5 group, not a dataset."""
    return replace_weight(clean, dest, layer, index, lambda f, path, old: f.create_group(path))


def layers_is_dataset(clean, dest):
    """A .keras archive whose weights file has a dataset where the /layers group should be."""
    with weights_file(clean, dest) as f:
        del f["layers"]
        f.create_dataset("layers", data=np.arange(3.0))
    return Path(dest)


def huge_declared_dataset(clean, dest, layer, index=0, elements=4_000_000_000):
    """Weight `index` of `layer` a chunked dataset declaring `elements` float32s, none written."""

    def make(f, path, old):
        f.create_dataset(path, shape=(elements,), dtype="<f4", chunks=(1 << 16,))

    return replace_weight(clean, dest, layer, index, make)


def huge_dense(clean, dest, units=1_400_000_000):
    """A Dense layer whose config and (chunked, unwritten) weights agree on `units` outputs.

    Nothing disagrees: the kernel (input_dim, units) and bias (units,) declare ~22 GB between
    them, and only a budget on declared sizes can refuse the file without reading it.
    """
    config = json.loads(json.dumps(clean.config))
    dense = layers_of(config, "Dense")[-1]["config"]
    dense["units"] = units
    shrunk = dataclasses.replace(clean, config=config)
    staged = Path(dest).with_name("staged-" + Path(dest).name)
    with_config(shrunk, staged, lambda c: None)
    staged_clean = dataclasses.replace(clean, path=staged)
    with weights_file(staged_clean, dest) as f:
        kernel, bias = weight_paths(f, clean.fmt, dense["name"])
        input_dim = f[kernel].shape[0]
        del f[kernel], f[bias]
        f.create_dataset(kernel, shape=(input_dim, units), dtype="<f4", chunks=(1, 1 << 16))
        f.create_dataset(bias, shape=(units,), dtype="<f4", chunks=(1 << 16,))
    staged.unlink()
    return Path(dest)


def extra_weight_on_weightless_layer(clean, dest, layer):
    """A layer with no weights in Keras (a merge layer) given one array in the file."""
    with weights_file(clean, dest) as f:
        if clean.fmt == "h5":
            group = f["model_weights"][layer]
            group.create_dataset(f"{layer}/extra", data=np.ones((4,), "f4"))
            group.attrs["weight_names"] = np.array([f"{layer}/extra".encode()])
        else:
            for group in f["layers"].values():
                if "vars" in group and _text(group["vars"].attrs.get("name")) == layer:
                    group["vars"].create_dataset("0", data=np.ones((4,), "f4"))
    return Path(dest)


# ---- archives -------------------------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """One zip member as it sits in the archive: its compressed bytes and header fields."""

    name: str
    data: bytes
    method: int
    crc: int
    file_size: int
    flags: int = 0


def deflated(name, content):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Member(name, c.compress(content) + c.flush(), zipfile.ZIP_DEFLATED, zlib.crc32(content), len(content))


def write_zip(dest, members):
    """A zip archive written field by field, so that headers can say what they like."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        name = m.name.encode()
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21,
                              m.crc, len(m.data), m.file_size, len(name), 0))
        out.write(name)
        out.write(m.data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, m.flags, m.method, 0, 0x21,
                                  m.crc, len(m.data), m.file_size, len(name), 0, 0, 0, 0, 0, offset))
        central.write(name)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                          len(central.getvalue()), start, 0))
    Path(dest).write_bytes(out.getvalue())
    return Path(dest)


def zip_members(clean):
    """The members of `clean`'s archive, each re-deflated as a Member whose headers can be edited."""
    return [deflated(name, data) for name, data in archive_members(clean.path).items()]


def zip_bomb(clean, dest, extra=1_300_000_000, honest=True):
    """The weights member followed by `extra` zero bytes, deflated ~1000:1 (a few MB on disk).

    With `honest`, the headers give the true inflated size and CRC; otherwise they give the
    size and CRC of the real weights alone, so only a reader that stops where the header says
    escapes the bomb.
    """
    weights = archive_members(clean.path)["model.weights.h5"]
    pieces = [_full_flush(weights)]
    block = 1 << 26
    zeros_piece = _full_flush(bytes(block))
    crc = zlib.crc32(weights)
    zeros = bytes(block)
    for _ in range(extra // block):
        pieces.append(zeros_piece)
        if honest:
            crc = zlib.crc32(zeros, crc)
    pieces.append(b"\x03\x00")  # an empty final block
    size = len(weights) + (extra // block) * block
    members = [m for m in zip_members(clean) if m.name != "model.weights.h5"]
    if honest:
        bomb = Member("model.weights.h5", b"".join(pieces), zipfile.ZIP_DEFLATED, crc, size)
    else:
        bomb = Member("model.weights.h5", b"".join(pieces), zipfile.ZIP_DEFLATED, zlib.crc32(weights), len(weights))
    return write_zip(dest, members + [bomb])


def _full_flush(content):
    """Raw deflate of `content` ending on a byte boundary with a reset dictionary: such pieces
    can be concatenated into one valid stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(content) + c.flush(zlib.Z_FULL_FLUSH)


def member_flags(clean, dest, member, flags=0, method=None):
    """Member `member` with general-purpose `flags` (bit 0: encrypted) or a compression `method`."""
    members = zip_members(clean)
    for m in members:
        if m.name == member:
            m.flags |= flags
            if method is not None:
                m.method = method
    return write_zip(dest, members)


def corrupt_stream(clean, dest, member, method):
    """Member `member` compressed with `method` (deflate or LZMA) and its stream then damaged."""
    members = zip_members(clean)
    for i, m in enumerate(members):
        if m.name != member:
            continue
        content = archive_members(clean.path)[member]
        if method == zipfile.ZIP_LZMA:
            # zipfile's LZMA member: a 4-byte version/size header, the raw LZMA1 properties, the stream.
            filters = [{"id": lzma.FILTER_LZMA1}]
            props = lzma._encode_filter_properties(filters[0])
            body = lzma.compress(content, format=lzma.FORMAT_RAW, filters=filters)
            data = struct.pack("<BBH", 9, 4, len(props)) + props + body
        else:
            data = deflated(member, content).data
        damaged = bytearray(data)
        middle = len(damaged) // 2
        damaged[middle : middle + 16] = b"\xff" * 16
        members[i] = Member(member, bytes(damaged), method, zlib.crc32(content), len(content))
    return write_zip(dest, members)


# ---- configs --------------------------------------------------------------------------------


def nested_json(depth):
    return "[" * depth + "]" * depth


def deep_config(clean, dest, depth=100_000):
    """A layer config holding a list nested `depth` deep (json.loads recurses once per level)."""
    text = json.dumps(clean.config)
    marker = '"name": '
    cut = text.index(marker, text.index('"layers"'))
    return with_config_text(clean, dest, text[:cut] + f'"deep": {nested_json(depth)}, ' + text[cut:])


def deep_metadata(clean, dest, depth=100_000):
    """A .keras metadata.json nested `depth` deep."""
    return with_config_text(clean, dest, '{"keras_version": "3.0.0", "deep": ' + nested_json(depth) + "}",
                            member="metadata.json")


def big_config(clean, dest, size=2_000_000):
    """A config padded with a `size`-character string."""

    def edit(config):
        config["config"]["padding"] = "x" * size

    return with_config(clean, dest, edit)


def many_layers(clean, dest, count, after_class="LSTM"):
    """`count` extra Dropout layers (no weights) chained after the first `after_class` layer.

    Dropout is the identity at inference, so the model still computes what Keras predicts for
    the clean file. Works for Sequential configs (a list in order) and functional ones (each
    layer's inbound call rewired to the previous Dropout) in both dialects.
    """
    config = json.loads(json.dumps(clean.config))
    layers = config["config"]["layers"]
    position = layers.index(layers_of(config, after_class)[0])
    source = layers[position]["config"]["name"]
    functional = config["class_name"] in ("Functional", "Model")
    template = {"class_name": "Dropout", "config": {"name": "", "trainable": True, "rate": 0.5,
                                                    "noise_shape": None, "seed": None}}
    if clean.keras_version == 3:
        template["module"] = "keras.layers"
        template["registered_name"] = None
        template["config"]["dtype"] = layers[position]["config"]["dtype"]
    else:
        template["config"]["dtype"] = "float32"
    chain, previous = [], source
    for i in range(count):
        layer = json.loads(json.dumps(template))
        layer["config"]["name"] = f"chain_{i}"
        if functional:
            layer["name"] = f"chain_{i}"
            layer["inbound_nodes"] = [_call_of(previous, clean.keras_version)]
        chain.append(layer)
        previous = f"chain_{i}"
    if functional:
        for layer in layers[position + 1 :]:
            _rewire(layer, source, previous)
        _rewire_outputs(config["config"], source, previous)
    layers[position + 1 : position + 1] = chain
    return with_config_text(clean, dest, json.dumps(config))


def _call_of(name, keras_version):
    if keras_version == 3:
        return {"args": [{"class_name": "__keras_tensor__",
                          "config": {"shape": None, "dtype": "float32", "keras_history": [name, 0, 0]}}],
                "kwargs": {}}
    return [[name, 0, 0, {}]]


def _rewire(value, old, new):
    """Every reference to layer `old`'s output inside `value` now refers to `new`."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__" and value["config"]["keras_history"][0] == old:
            value["config"]["keras_history"][0] = new
        for key, item in value.items():
            if key == "inbound_nodes" or isinstance(item, (dict, list)):
                _rewire(item, old, new)
    elif isinstance(value, list):
        if len(value) >= 3 and value[0] == old and isinstance(value[1], int):
            value[0] = new
        for item in value:
            _rewire(item, old, new)


def _rewire_outputs(config, old, new):
    _rewire(config["output_layers"], old, new)


def cycle(clean, dest, kind):
    """A functional graph whose calls loop: two layers feeding each other, or a layer itself."""

    def edit(config):
        if kind == "self_loop":
            top = layer_named(config, "top")
            top["inbound_nodes"] = [_call_of("top", clean.keras_version)]
        else:  # "left" reads "add", and "add" reads "left"
            left = layer_named(config, "left")
            left["inbound_nodes"] = [_call_of(layers_of(config, "Add")[0]["config"]["name"], clean.keras_version)]

    return with_config(clean, dest, edit)


def malformed_call(clean, dest, kind):
    """The recorded call of layer "top" (branches model) made malformed in one way."""

    def edit(config):
        top = layer_named(config, "top")
        concat = layers_of(config, "Concatenate")[0]["config"]["name"]
        if clean.keras_version == 3:
            history = {"short": [concat, 0], "unknown_layer": ["nope", 0, 0], "node_index": [concat, 7, 0],
                       "tensor_index": [concat, 0, 5], "not_a_list": concat, "negative": [concat, -1, 0],
                       "float_index": [concat, 0.5, 0]}
            if kind == "args_not_a_list":
                top["inbound_nodes"] = [{"args": "x", "kwargs": {}}]
            elif kind == "args_missing":
                top["inbound_nodes"] = [{"kwargs": {}}]
            else:
                top["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = history[kind]
        else:
            entry = {"short": [[concat, 0]], "unknown_layer": [["nope", 0, 0, {}]],
                     "node_index": [[concat, 7, 0, {}]], "tensor_index": [[concat, 0, 5, {}]],
                     "not_a_list": concat, "negative": [[concat, -1, 0, {}]],
                     "float_index": [[concat, 0.5, 0, {}]], "args_not_a_list": "x", "args_missing": []}
            top["inbound_nodes"] = [entry[kind]]

    return with_config(clean, dest, edit)


def field(clean, dest, class_name, key, value, index=0, inner=None):
    """Layer config field `key` of the `index`-th `class_name` layer set to `value`.

    `inner` names a nested config ("cell", "layer") where the field lives instead.
    """

    def edit(config):
        target = layers_of(config, class_name)[index]["config"]
        if inner is not None:
            target = target[inner]["config"]
        target[key] = value

    return with_config(clean, dest, edit)


def nested_custom(clean, dest, class_name, inner):
    """The nested config `inner` (an RNN's cell, a wrapper's layer) claims a custom module."""

    def edit(config):
        nested = layers_of(config, class_name)[0]["config"][inner]
        nested["module"] = "evil.module"
        nested["registered_name"] = f"evil>{nested['class_name']}"

    return with_config(clean, dest, edit)


def layer_config_is_list(clean, dest, class_name):
    """The first `class_name` layer's config is a JSON list instead of an object."""

    def edit(config):
        layer = layers_of(config, class_name)[0]
        layer["config"] = list(layer["config"].items())

    return with_config(clean, dest, edit)



def resized_rnn(clean, dest, class_name, units, inner="cell"):
    """The first `class_name` layer given `units` units, config and weights agreeing with each other.

    The layer is consistent in itself; only the layers it meets (a merge that adds it to a
    layer of the old width) disagree with it.
    """
    config = json.loads(json.dumps(clean.config))
    layer = layers_of(config, class_name)[0]["config"]
    (layer[inner]["config"] if inner in layer else layer)["units"] = units
    staged = Path(dest).with_name("staged-" + Path(dest).name)
    with_config_text(clean, staged, json.dumps(config))
    rng = np.random.default_rng(0)
    with weights_file(dataclasses.replace(clean, path=staged), dest) as f:
        kernel, recurrent, bias = weight_paths(f, clean.fmt, layer["name"])
        input_dim = f[kernel].shape[0]
        for path, shape in ((kernel, (input_dim, 4 * units)), (recurrent, (units, 4 * units)), (bias, (4 * units,))):
            del f[path]
            f.create_dataset(path, data=rng.normal(0, 0.5, shape).astype("f4"))
    staged.unlink()
    return Path(dest)
