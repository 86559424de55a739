"""Reading saved Keras models without Keras: `.keras` archives (Keras 3) and legacy `.h5` files.

A model file is never trusted. Only JSON and arrays are read (zipfile, json, h5py), and nothing in
a file is ever executed. The config is read first, into typed fields and the weight shapes it
predicts (`reflstm.formats.config.parse_model`); then each weight dataset is checked — stored inside the
file and reached by hard links only, float32 or float64, of the predicted shape, all of them
together within the budget — before any of its bytes is read (`reflstm.formats.untrusted`). The weights
of each layer are taken in the order the file records for it — a `.keras` file's numbered
``vars/0, vars/1, ...``, an `.h5` file's ``weight_names`` attribute — never in the order h5py
happens to list keys.
"""

import io
import os
import re
import zipfile

from reflstm.formats.config import LayerPlan, layer_entries, parse_model
from reflstm.errors import ReflstmError, refuse
from reflstm.formats.fields import kind_of
from reflstm.formats.keras1 import uses_keras1_names
from reflstm.models.model import Model
from reflstm.formats.untrusted import (
    _ZIP_ERRORS, Limits, checked_dataset, child_group, in_child, over_budget, parse_json,
    read_dataset, read_member, regular_file, string_attribute,
)

__all__ = ["load"]

# Sub-objects of a layer whose variables a .keras file stores below the layer's own group, in the
# order Keras's get_weights() lists them (keras/src/saving/saving_lib.py walks them this way).
_CHILDREN = ("cell", "layer", "forward_layer", "backward_layer")
_HDF5_MAGIC, _ZIP_MAGIC = b"\x89HDF\r\n\x1a\n", b"PK\x03\x04"


def load(path, *, architecture=None, limits=None, keras_backend="tensorflow"):
    """The `Model` saved at `path`: a Keras 3 ``.keras`` archive or a legacy HDF5 ``.h5`` file.

    A weights-only file (``save_weights``: a legacy ``.h5`` or Keras 3's ``.weights.h5``) loads
    with its `architecture`: the model's JSON (``model.to_json()``), as text, a parsed dict, or a
    path. Weights are matched to layers by layer name; a layer whose weights are missing or of
    another shape is refused by name.

    `keras_backend` ("tensorflow", "jax" or "torch") names the Keras 3 backend whose masked steps
    the recurrent layers reproduce: a file does not record the backend it was trained on.

    `limits` (a `reflstm.Limits`) bounds what the file may make reflstm read; every refusal is a
    `ReflstmError` that names what was wrong.
    """
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise refuse("limits", "a reflstm.Limits or None", limits)
    path = os.fspath(path)
    _refuse_saved_model(path)
    magic = _first_bytes(path)
    where = f"{path!r}"
    if architecture is not None:
        if magic != _HDF5_MAGIC:
            raise refuse("path", "an HDF5 weights file (save_weights) to go with the architecture",
                         f"{where}, which is not HDF5")
        config, weights, version = _read_weights_only(path, _architecture(architecture, limits), where, limits)
    elif magic.startswith(_ZIP_MAGIC):
        config, weights, version = _read_keras_archive(path, where, limits)
    elif magic == _HDF5_MAGIC:
        config, weights, version = _read_h5(path, where, limits)
    else:
        raise refuse("path", "a Keras model file (.keras archive or HDF5 .h5)", f"{where}, which is neither")
    model = Model(config, weights, _major(version), limits, keras_backend)
    model.saved_by = f"Keras {version}"
    return model


def _architecture(architecture, limits):
    """A model's JSON (``to_json()``): text, a parsed dict, or the path of a file holding it."""
    if isinstance(architecture, dict):
        return architecture
    if isinstance(architecture, os.PathLike) or (
        isinstance(architecture, str) and not architecture.lstrip().startswith(("{", "["))
    ):
        path = os.fspath(architecture)
        regular_file(path, "architecture", "JSON file")
        size = os.stat(path).st_size
        if size > limits.max_config_bytes:
            raise over_budget(f"architecture {path!r}", "max_config_bytes", limits.max_config_bytes, size)
        with open(path, "rb") as f:
            architecture = f.read(limits.max_config_bytes + 1)
        where = f"architecture {path!r}"
    elif isinstance(architecture, (str, bytes)):
        where = "architecture"
    else:
        raise refuse("architecture", "a model's JSON (text, a dict, or a file's path)", architecture)
    config = parse_json(architecture, where, limits)
    if not isinstance(config, dict):
        raise refuse(where, "a model's JSON object (model.to_json())", kind_of(config))
    return config


def _refuse_saved_model(path):
    """A TensorFlow SavedModel (a folder with saved_model.pb, or that file) is named as such."""
    folder = path if os.path.basename(path) != "saved_model.pb" else os.path.dirname(path) or "."
    if os.path.isdir(folder) and os.path.isfile(os.path.join(folder, "saved_model.pb")):
        raise refuse("path", "a Keras model file (.keras archive or HDF5 .h5)",
                     f"{folder!r}, a TensorFlow SavedModel folder, whose graph and variables only TensorFlow "
                     "reads: re-save it with Keras (tf_keras.models.load_model(folder).save('model.keras')), "
                     "or load it with TensorFlow and use reflstm.Model.from_keras(model)")


def _first_bytes(path):
    """The file's first 8 bytes, after telling a missing path from one that is not a file."""
    regular_file(path, "path", "model file", " (a TensorFlow SavedModel folder? save the model as "
                 ".keras or .h5)")
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as error:
        raise refuse("path", "a readable model file", f"{path!r} ({error.strerror})") from None


def _read_keras_archive(path, where, limits):
    try:
        with zipfile.ZipFile(path) as archive:
            if len(archive.infolist()) > limits.max_layers:
                raise refuse(where, f"an archive of at most {limits.max_layers:,} members",
                             f"{len(archive.infolist()):,}")
            members = {}
            for name, limit, limit_name in [
                ("config.json", limits.max_config_bytes, "max_config_bytes"),
                ("metadata.json", limits.max_config_bytes, "max_config_bytes"),
                ("model.weights.h5", limits.max_weight_bytes, "max_weight_bytes"),
            ]:
                members[name] = read_member(archive, name, limit, limit_name, where)
    except ReflstmError:
        raise
    except _ZIP_ERRORS as error:
        raise refuse(where, "a complete .keras archive", f"a truncated or corrupted one "
                     f"({type(error).__name__}: {str(error)[:120]})") from None
    for name in ("config.json", "model.weights.h5"):
        if members[name] is None:
            raise refuse(where, f"a .keras archive with {name}", "one without it")
    config = parse_json(members["config.json"], f"{where}: config.json", limits)
    metadata = {}
    if members["metadata.json"] is not None:
        metadata = parse_json(members["metadata.json"], f"{where}: metadata.json", limits)
        if not isinstance(metadata, dict):
            raise refuse(f"{where}: metadata.json", "a JSON object", kind_of(metadata))
    version = metadata.get("keras_version", "3")
    version = version if isinstance(version, str) else repr(version)
    plan = parse_model(config, _major(version), limits)
    weights_file = members.pop("model.weights.h5")

    def work():
        import h5py

        with h5py.File(io.BytesIO(weights_file), "r") as f:
            return _keras_weights(f, plan, f"{where}: model.weights.h5", limits)

    header, arrays = in_child(work, limits, f"{where}: model.weights.h5")
    return config, _unflatten(header["counts"], arrays), version


def _keras_weights(f, plan, where, limits):
    """The checked weights of a .keras archive's weights file, as (header, flat arrays)."""
    layers_group = child_group(f, "layers", where)
    groups = {}
    if layers_group is not None:
        if len(layers_group) > limits.max_layers:
            raise refuse(f"{where}: /layers", f"at most {limits.max_layers:,} layers", f"{len(layers_group):,}")
        named = {}
        for key in layers_group:
            group = child_group(layers_group, key, where)
            variables = child_group(group, "vars", where)
            named[key] = group, None if variables is None else string_attribute(
                variables, "name", limits.max_config_bytes, where)
        if any(name is not None for _, name in named.values()):  # Keras 3 names each group's layer
            for group, name in named.values():
                if name is None:
                    raise refuse(f"{where}: group {group.name!r}", "a layer group that names its layer "
                                 "(vars.attrs['name'])", "none")
                if name in groups:
                    raise refuse(where, "one group per layer", f"two groups for layer {name!r}")
                groups[name] = group
        else:  # tf_keras names none: its groups are keyed by class, in the model's layer order
            keys = _keys_by_class(plan.listed)
            groups = {keys[key]: group for key, (group, _) in named.items() if key in keys}
            unknown = sorted(set(named) - set(keys))
            if unknown:
                raise refuse(f"{where}: /layers", f"groups for the model's layers ({', '.join(sorted(keys)[:8])})",
                             f"group {unknown[0]!r}")
    found = {}
    for name, layer in _weighted(plan):
        group = groups.get(name)
        datasets = [] if group is None else _variables(group, f"{where}: layer {name!r}")
        found[name] = datasets
    return _read_checked(plan, found, where, limits)


def _keys_by_class(listed):
    """{group key: layer name} as tf_keras's saving_lib keys a model's layers: the class name in
    snake case, numbered from the second layer of a class on (lstm, lstm_1, ...)."""
    keys, used = {}, {}
    for name, kind in listed:
        key = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", kind)).lower()
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[key] = name
    return keys


def _variables(group, where):
    """A layer group's datasets: its own vars/0, vars/1, ... then its sub-objects', in order.

    Walked with an explicit stack (sub-objects are at most a few levels deep in a real file, but
    the file decides how deep).
    """
    datasets, stack = [], [(group, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > len(_CHILDREN):
            raise refuse(where, "layer groups nested a few levels deep", f"deeper, at {current.name!r}")
        variables = child_group(current, "vars", where)
        if variables is not None:
            keys = list(variables)
            if not all(key.isdigit() for key in keys):
                raise refuse(f"{where}: {variables.name!r}", "members named 0, 1, 2, ...", repr(keys[:5]))
            datasets += [(variables, key) for key in sorted(keys, key=int)]
        children = [child_group(current, c, where) for c in _CHILDREN]
        stack.extend((child, depth + 1) for child in reversed(children) if child is not None)
    return datasets


def _read_h5(path, where, limits):
    def work():
        import h5py

        with h5py.File(path, "r") as f:
            config_text = string_attribute(f, "model_config", limits.max_config_bytes, where)
            if config_text is None:
                raise refuse(where, "a whole saved model (with model_config)", "an HDF5 file without "
                             "one (weights only? pass the model's JSON as architecture=)")
            config = parse_json(config_text, f"{where}: model_config", limits)
            version = string_attribute(f, "keras_version", limits.max_config_bytes, where)
            if version is None:  # Keras 1 did not record it
                version = "1" if uses_keras1_names(config) else "2"
            keras_version = _major(version)
            _refuse_keras_2_0_gru(config, version)
            plan = parse_model(config, keras_version, limits)
            header, arrays = _h5_weights(child_group(f, "model_weights", where) or f, plan, where, limits)
            header.update(config=config_text, version=_described(f, version, limits, where))
            return header, arrays

    header, arrays = in_child(work, limits, where)
    config = parse_json(header["config"], f"{where}: model_config", limits)
    return config, _unflatten(header["counts"], arrays), header["version"]


def _h5_weights(root, plan, where, limits):
    """The checked weights of a legacy HDF5 file: one group per layer, found by the layer's name,
    listing its arrays in its weight_names attribute."""
    found = {}
    for name, layer in _weighted(plan):
        group = child_group(root, name, where)
        if group is None and layer.shapes:
            raise refuse(f"{where}: layer {name!r}", f"its {len(layer.shapes)} weight arrays (layers are "
                         "matched by name)", "no group of that name in the file")
        names = [] if group is None else string_attribute(
            group, "weight_names", limits.max_config_bytes, f"{where}: layer {name!r}",
            default=[], max_items=limits.max_layers)
        found[name] = [(group, weight) for weight in names]
    return _read_checked(plan, found, where, limits)


def _read_weights_only(path, config, where, limits):
    """A save_weights file and the model's JSON: the Keras that wrote the JSON decides (to_json
    records keras_version, or Keras 3's module), else the weights file's own attribute."""
    version = config.get("keras_version")
    version = version if isinstance(version, str) else "3" if "module" in config else None

    def work():
        import h5py

        with h5py.File(path, "r") as f:
            saved_by = version or string_attribute(f, "keras_version", limits.max_config_bytes, where)
            keras3_layout = "layer_names" not in f.attrs and child_group(f, "layers", where) is not None
            if saved_by is None:
                saved_by = "3" if keras3_layout else "1" if uses_keras1_names(config) else "2"
            keras_version = _major(saved_by)
            _refuse_keras_2_0_gru(config, saved_by)
            plan = parse_model(config, keras_version, limits)
            if keras3_layout:
                header, arrays = _keras_weights(f, plan, where, limits)
            else:
                header, arrays = _h5_weights(child_group(f, "model_weights", where) or f, plan, where, limits)
            header.update(version=_described(f, saved_by, limits, where))
            return header, arrays

    header, arrays = in_child(work, limits, where)
    return config, _unflatten(header["counts"], arrays), header["version"]


def _weighted(plan):
    """(name, LayerPlan) of every layer: those whose configs say they have no weights are checked
    to have none in the file."""
    return [(name, layer) for name, layer in plan.layers.items() if isinstance(layer, LayerPlan)]


def _read_checked(plan, found, where, limits):
    """Check every dataset of `found` ({layer: [(group, path)]}) against the plan, then read them.

    Returns ({"counts": [[layer, number of arrays], ...]}, arrays in that order).
    """
    checked, total = [], 0
    for name, locations in found.items():
        layer = plan.layers[name]
        what = f"{where}: layer {name!r}"
        # A layer reflstm does not run takes whatever arrays the file lists (counted against the
        # layer budget), of any shape and any numeric dtype: read, checked, never interpreted.
        shapes = layer.shapes if layer.shapes is not None else [None] * len(locations)
        if len(locations) > limits.max_layers:
            raise refuse(what, f"at most {limits.max_layers:,} weight arrays (raise Limits.max_layers to "
                         "allow more)", f"{len(locations):,}")
        if len(locations) != len(shapes):
            raise refuse(what, f"{len(shapes)} weight arrays, as its config says", f"{len(locations)}")
        dtypes = set()
        for (group, path), shape in zip(locations, shapes):
            dataset, size = checked_dataset(group, path, shape, what, layer.basis)
            total += size
            if total > limits.max_weight_bytes:
                raise over_budget(f"{where}: weights", "max_weight_bytes", limits.max_weight_bytes, total)
            dtypes.add(dataset.dtype.newbyteorder("="))
            checked.append(dataset)
        if len(dtypes) > 1 and not layer.not_run:
            raise refuse(what, "weight arrays of one dtype", ", ".join(sorted(map(str, dtypes))))
    arrays = [read_dataset(dataset) for dataset in checked]
    return {"counts": [[name, len(locations)] for name, locations in found.items()]}, arrays


def _unflatten(counts, arrays):
    weights, start = {}, 0
    for name, count in counts:
        weights[name] = arrays[start : start + count]
        start += count
    return weights


def _described(f, version, limits, where):
    """`version`, with the backend an .h5 file records (Keras 2 wrote it; Keras 1 did not)."""
    backend = string_attribute(f, "backend", limits.max_config_bytes, where)
    return f"{version} ({backend[:40]} backend)" if isinstance(backend, str) else version


def _refuse_keras_2_0_gru(config, version):
    """Keras 2.0.0 and 2.0.1's GRU with implementation=1 took its candidate's input term from the
    reset gate's kernel (fixed in 2.0.2): a function reflstm does not reproduce, so it is refused."""
    if version not in ("2.0.0", "2.0.1"):
        return
    for entry in layer_entries(config):
        fields = entry.get("config")
        if entry.get("class_name") == "GRU" and isinstance(fields, dict) and fields.get("implementation") == 1:
            raise refuse(f"layer {fields.get('name')!r}", "a GRU as Keras computes it today", f"Keras {version}'s "
                         "GRU with implementation=1, whose candidate used the reset gate's input kernel (a "
                         "bug fixed in Keras 2.0.2; reflstm does not reproduce it)")


def _major(version):
    major = str(version).split(".")[0]
    if major not in ("1", "2", "3"):
        raise refuse("keras_version", "a file saved by Keras 1, Keras 2 (or tf_keras) or Keras 3",
                     repr(version)[:40])
    return int(major)
