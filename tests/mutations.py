"""Mutations of saved model files for the fuzzer (tests/test_fuzz.py): one per seed, replayable.

`mutate(seed, clean, dest, secrets)` writes one mutated copy of `clean` and returns its kind,
drawn from np.random.default_rng(seed) alone, so a seed names a mutation:

  byte:*   flip a bit, insert, delete, overwrite or truncate bytes of the file (for a .keras,
           sometimes of its config.json or model.weights.h5 member instead)
  zip:*    drop, duplicate or rename a member, change its compression method or flags, make
           its header lie about sizes or CRC (.keras only)
  h5:*     delete, rename, retype or reshape a dataset of the weight tree, make it a group, a
           link, a virtual or externally stored dataset pointing at a secret file, declare a
           huge one, or delete / change attributes (weight_names, layer_names, vars' names)
  json:*   change a value's type or value, delete a key, swap or duplicate list items, nest
           deeply, in config.json / model_config (or metadata.json)
"""

import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

import hostile_files as H

# Byte values that land on boundaries: zero, all ones, sign bits.
INTERESTING = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x10, 0x40]


def mutate(seed, clean, dest, secrets):
    """Write mutation `seed` of `clean` at `dest`; return its kind ("family:name")."""
    rng = np.random.default_rng(seed)
    families = ["byte", "h5", "json"] + (["zip"] if clean.fmt == "keras" else [])
    family = families[rng.integers(len(families))]
    return f"{family}:" + _FAMILIES[family](rng, clean, Path(dest), secrets)


# ---- bytes ----------------------------------------------------------------------------------


def _byte_edit(rng, data):
    kind = ["flip", "insert", "delete", "overwrite", "truncate"][rng.integers(5)]
    at = int(rng.integers(len(data)))
    if kind == "flip":
        data = data[:at] + bytes([data[at] ^ (1 << int(rng.integers(8)))]) + data[at + 1 :]
    elif kind == "insert":
        data = data[:at] + bytes([INTERESTING[rng.integers(len(INTERESTING))]]) + data[at:]
    elif kind == "delete":
        data = data[:at] + data[at + int(rng.integers(1, 17)) :]
    elif kind == "overwrite":
        count = int(rng.integers(1, 9))
        value = INTERESTING[rng.integers(len(INTERESTING))]
        data = data[:at] + bytes([value]) * count + data[at + count :]
    else:
        data = data[:at]
    return kind, data


def _bytes(rng, clean, dest, secrets):
    data = clean.path.read_bytes()
    if clean.fmt == "keras" and rng.random() < 0.6:
        members = H.archive_members(clean.path)
        member = ["config.json", "model.weights.h5", "model.weights.h5"][rng.integers(3)]
        kind, members[member] = _byte_edit(rng, members[member])
        H.write_archive(dest, members)
        return f"{kind}@{member}"
    kind, data = _byte_edit(rng, data)
    dest.write_bytes(data)
    return kind


# ---- zip structure --------------------------------------------------------------------------


def _zip(rng, clean, dest, secrets):
    members = H.zip_members(clean)
    target = members[rng.integers(len(members))]
    kind = ["drop", "duplicate", "rename", "method", "flags", "size_lie", "crc", "stored", "comment_garbage",
            "cut_central_directory"][rng.integers(10)]
    if kind == "drop":
        members.remove(target)
    elif kind == "duplicate":
        members.append(target)
    elif kind == "rename":
        target.name = ["../" + target.name, "/" + target.name, target.name.upper(), target.name + "\x00x"][
            rng.integers(4)]
    elif kind == "method":
        target.method = [0, 12, 14, 99, 1][rng.integers(5)]
    elif kind == "flags":
        target.flags |= [1, 8, 64, 1 << 11][rng.integers(4)]
    elif kind == "size_lie":
        target.file_size = [0, 1, target.file_size // 2, target.file_size * 1000, 0xFFFFFFFF][rng.integers(5)]
    elif kind == "crc":
        target.crc ^= 1
    elif kind == "stored":
        content = zlib.decompress(target.data, -15)
        target.data, target.method = content, zipfile.ZIP_STORED
    H.write_zip(dest, members)
    if kind == "comment_garbage":
        dest.write_bytes(dest.read_bytes() + bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
    elif kind == "cut_central_directory":
        data = dest.read_bytes()
        start = data.rindex(b"PK\x01\x02")
        dest.write_bytes(data[: start + int(rng.integers(4, 40))] + data[-22:])
    return f"{kind}@{target.name}"


# ---- HDF5 structure -------------------------------------------------------------------------


def _objects(f):
    found = []
    f.visititems(lambda name, obj: found.append((name, obj)))
    return found


def _h5(rng, clean, dest, secrets):
    with H.weights_file(clean, dest) as f:
        objects = _objects(f)
        datasets = [n for n, o in objects if isinstance(o, h5py.Dataset)]
        attributed = [""] + [n for n, o in objects if len(o.attrs)]
        kinds = ["delete", "rename", "retype", "reshape", "group", "empty", "external_storage", "external_link",
                 "soft_link", "virtual", "virtual_missing", "huge", "attr_delete", "attr_names", "attr_retype"]
        kind = kinds[rng.integers(len(kinds))]
        if kind.startswith("attr_"):
            name = attributed[rng.integers(len(attributed))]
            obj = f[name] if name else f
            if not len(obj.attrs):
                return kind + "@none"
            key = sorted(obj.attrs)[rng.integers(len(obj.attrs))]
            _attribute(rng, obj, key, kind)
            return f"{kind}@{name}:{key}"
        name = datasets[rng.integers(len(datasets))]
        old = f[name][()]
        _dataset(rng, f, name, old, kind, secrets, datasets)
        return f"{kind}@{name}"


def _dataset(rng, f, name, old, kind, secrets, datasets):
    if kind == "rename":
        f.move(name, name + "_renamed")
        return
    del f[name]
    shape = old.shape
    if kind == "retype":
        dtype = ["int32", "float16", "float64", "complex64", "bool", "S8", "uint8", "int64"][rng.integers(8)]
        f.create_dataset(name, data=old.astype(dtype))
    elif kind == "reshape":
        choice = int(rng.integers(5))
        new = [old.T, old[..., None], old.ravel(), old[:-1] if old.ndim and len(old) else old,
               np.asarray(old.ravel()[0]) if old.size else old][choice]
        f.create_dataset(name, data=np.ascontiguousarray(new))
    elif kind == "group":
        f.create_group(name)
    elif kind == "empty":
        f.create_dataset(name, shape=(0,) + shape[1:], dtype=old.dtype)
    elif kind == "external_storage":
        nbytes = max(old.size, 1) * 4
        f.create_dataset(name, shape=shape, dtype="<f4", external=[(str(secrets.raw), 0, nbytes)])
    elif kind == "external_link":
        f[name] = h5py.ExternalLink(str(secrets.h5), secrets.dataset(shape))
    elif kind == "soft_link":
        others = [d for d in datasets if d != name]
        target = others[rng.integers(len(others))] if others and rng.random() < 0.5 else None
        if target is None:
            f.create_dataset("/elsewhere", data=np.asarray(old) + 1)  # inside the file: not a secret
            target = "/elsewhere"
        f[name] = h5py.SoftLink("/" + target.lstrip("/"))
    elif kind in ("virtual", "virtual_missing"):
        layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
        if kind == "virtual":
            layout[...] = h5py.VirtualSource(str(secrets.h5), secrets.dataset(shape), shape=shape)
        else:
            layout[...] = h5py.VirtualSource(str(secrets.root / "absent.h5"), "/x", shape=shape)
        f.create_virtual_dataset(name, layout, fillvalue=0)
    elif kind == "huge":
        big = (int(rng.integers(2, 6)) * 1_000_000_000,) + shape[1:]  # 8 GB or more of float32
        f.create_dataset(name, shape=big, dtype="<f4", chunks=(1 << 14,) + shape[1:])
    else:  # delete
        pass


def _attribute(rng, obj, key, kind):
    value = obj.attrs[key]
    if kind == "attr_delete":
        del obj.attrs[key]
    elif kind == "attr_retype":
        obj.attrs[key] = [np.int64(7), np.arange(3.0), np.bytes_(b"\xff\xfe"), np.zeros((2, 2), "S4")][
            rng.integers(4)]
    else:  # attr_names: the list of names dropped, duplicated, reversed, or given an unknown one
        names = list(np.atleast_1d(value))
        choice = int(rng.integers(4))
        if choice == 0:
            names = names[1:]
        elif choice == 1:
            names = names + names[:1]
        elif choice == 2:
            names = names[::-1]
        else:
            names = names + [b"no_such_thing"]
        if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
            first = names[0] if names else b""
            obj.attrs[key] = (first if isinstance(first, bytes) else str(first)) if choice != 3 else "no_such_thing"
        else:
            obj.attrs[key] = np.array([n if isinstance(n, bytes) else str(n).encode() for n in names])


# ---- JSON -----------------------------------------------------------------------------------


NEST = "__nest_this_deep__"
REPLACEMENTS = [None, True, False, 0, -1, 1, 2**31, 1e308, -0.5, "", "false", "true", "x" * 8, [], {},
                [1, 2, 3], {"class_name": "LSTM"}, "evil.module", ["nope", 0, 0]]


def _nodes(value, path=()):
    """(path, value) of every node below `value`."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nodes(item, path + (i,))


def _json_edit(rng, document):
    nodes = [(p, v) for p, v in _nodes(document) if len(p) > 1]
    path, value = nodes[rng.integers(len(nodes))]
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    kind = ["replace", "replace", "delete", "swap", "duplicate", "nest", "number"][rng.integers(7)]
    if kind == "replace":
        parent[last] = REPLACEMENTS[rng.integers(len(REPLACEMENTS))]
    elif kind == "delete":
        del parent[last]
    elif kind == "swap" and isinstance(parent, list) and len(parent) > 1:
        other = int(rng.integers(len(parent)))
        parent[last], parent[other] = parent[other], parent[last]
    elif kind == "duplicate" and isinstance(parent, list):
        parent.insert(last, json.loads(json.dumps(value)))
    elif kind == "nest":  # written out by _dump: json.dumps itself would recurse that deep
        parent[last] = {NEST: int(rng.integers(50, 3000))}
    elif kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = [value + 1, value - 1, -value, value * 1000, 0, value + 0.5][rng.integers(6)]
    else:
        parent[last] = REPLACEMENTS[rng.integers(len(REPLACEMENTS))]
        kind = "replace"
    return f"{kind}@{'/'.join(map(str, path))}"[:120]


def _json(rng, clean, dest, secrets):
    if clean.fmt == "keras" and rng.random() < 0.15:
        members = H.archive_members(clean.path)
        metadata = json.loads(members["metadata.json"])
        kind = _json_edit(rng, {"root": metadata})
        members["metadata.json"] = _dump(metadata).encode()
        H.write_archive(dest, members)
        return kind + "@metadata.json"
    config = json.loads(json.dumps(clean.config))
    document = {"root": config}
    kind = _json_edit(rng, document)
    H.with_config_text(clean, dest, _dump(document["root"]))
    return kind


def _dump(document):
    """json.dumps, with each {NEST: depth} written as a list nested `depth` deep."""
    text = json.dumps(document)
    return re.sub(r'\{"%s": (\d+)\}' % NEST, lambda m: "[" * int(m[1]) + "0" + "]" * int(m[1]), text)


_FAMILIES = {"byte": _bytes, "zip": _zip, "h5": _h5, "json": _json}


def read_h5(path):
    """Open a mutated file's HDF5 part for inspection (debugging a replay)."""
    if str(path).endswith(".keras"):
        return h5py.File(io.BytesIO(H.archive_members(path)["model.weights.h5"]), "r")
    return h5py.File(path, "r")
