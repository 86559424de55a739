"""Reading saved Keras models without Keras: `.keras` archives (Keras 3) and legacy `.h5` files.

Only JSON and arrays are read (zipfile, json, h5py): nothing in a file is ever executed. The
weights of each layer are taken in the order the file records for it — a `.keras` file's
numbered ``vars/0, vars/1, ...``, an `.h5` file's ``weight_names`` attribute — never in the order
h5py happens to list keys.
"""

import io
import json
import os
import zipfile

import numpy as np

from reflstm.errors import ReflstmError, refuse
from reflstm.model import Model

__all__ = ["load"]

# Sub-objects of a layer whose variables a .keras file stores below the layer's own group, in the
# order Keras's get_weights() lists them (keras/src/saving/saving_lib.py walks them this way).
_CHILDREN = ("cell", "layer", "forward_layer", "backward_layer")


def load(path):
    """The `Model` saved at `path`: a Keras 3 ``.keras`` archive or a legacy HDF5 ``.h5`` file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise refuse("path", "an existing model file", f"{path!r}, which does not exist")
    import h5py  # the one dependency files need beyond NumPy

    with open(path, "rb") as f:
        magic = f.read(8)
    try:
        # Told by the first bytes, so that a truncated file is reported as truncated.
        if magic.startswith(b"PK\x03\x04"):
            config, weights, keras_version = _read_keras_archive(path, h5py)
        elif magic == b"\x89HDF\r\n\x1a\n":
            config, weights, keras_version = _read_h5(path, h5py)
        else:
            raise refuse("path", "a Keras model file (.keras archive or HDF5 .h5)", f"{path!r}, which is neither")
    except ReflstmError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as error:
        raise refuse("path", "a complete Keras model file", f"{path!r}, which is truncated or "
                     f"corrupted ({type(error).__name__}: {str(error)[:120]})") from None
    try:
        return Model(config, weights, keras_version)
    except ReflstmError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise refuse("path", "a model config reflstm can read", f"{path!r}, whose config has no "
                     f"or a malformed entry ({type(error).__name__}: {str(error)[:120]})") from None


def _read_keras_archive(path, h5py):
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for member in ("config.json", "model.weights.h5"):
            if member not in names:
                raise refuse("path", f"a .keras archive with {member}", f"{path!r}, which lacks it")
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
        weights_bytes = archive.read("model.weights.h5")
    keras_version = _major(metadata.get("keras_version", "3"))
    with h5py.File(io.BytesIO(weights_bytes), "r") as f:
        weights = {}
        if "layers" in f:
            for group in f["layers"].values():
                name = _text(group["vars"].attrs.get("name")) if "vars" in group else None
                if name is None:
                    raise refuse("path", "a .keras archive that names each layer's variables",
                                 f"{path!r}, whose group {group.name!r} has no name")
                weights[name] = _keras_variables(group)
    return config, weights, keras_version


def _keras_variables(group):
    """A .keras layer group's arrays: its own vars/0, vars/1, ... then its sub-objects'."""
    arrays = []
    if "vars" in group:
        variables = group["vars"]
        arrays += [variables[key][()] for key in sorted(variables, key=int)]
    for child in _CHILDREN:
        if child in group:
            arrays += _keras_variables(group[child])
    return arrays


def _read_h5(path, h5py):
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            raise refuse("path", "a whole saved model (with model_config)",
                         f"{path!r}, an HDF5 file without one (weights only?)")
        config = json.loads(_text(f.attrs["model_config"]))
        keras_version = _major(_text(f.attrs.get("keras_version", "2")))
        root = f["model_weights"] if "model_weights" in f else f
        weights = {}
        for name in root.attrs.get("layer_names", []):
            name = _text(name)
            group = root[name]
            weights[name] = [group[_text(w)][()] for w in group.attrs.get("weight_names", [])]
    return config, weights, keras_version


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


def _major(version):
    major = str(version).split(".")[0]
    if major not in ("2", "3"):
        raise refuse("keras_version", "a file saved by Keras 2 (tf_keras) or Keras 3", repr(version))
    return int(major)
