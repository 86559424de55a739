"""Reading bytes reflstm does not trust: budgets, zip members, JSON, and HDF5 objects.

Every check here happens before the data it guards is read:

- `Limits`: the budgets, named and overridable (``reflstm.load(path, limits=Limits(...))``).
- `read_member`: a zip member, refused when encrypted or larger than its budget (the size its
  header declares, and the size it really inflates to, read in bounded pieces).
- `parse_json`: JSON within a size and a nesting depth.
- `child_group`, `checked_dataset`, `string_attribute`: HDF5 objects reached through hard links
  only; a dataset only if its bytes are inside the file (no external storage, not virtual), of a
  float dtype, with its declared size counted before a byte of it is read.
- `in_child`: libhdf5 is C code that can loop or allocate without bound on a corrupted file;
  on Linux every HDF5 read runs in a forked child process under a wall-clock deadline and an
  address-space cap, and only the checked results come back, as bytes through a pipe.
"""

import dataclasses
import json
import os
import select
import signal
import struct
import sys
import zipfile
import zlib

import numpy as np

from reflstm.errors import ReflstmError, refuse, shape_pattern

__all__ = [
    "Limits", "regular_file", "read_member", "parse_json", "child_group", "checked_dataset", "string_attribute",
    "in_child",
]

GiB, MiB = 2**30, 2**20


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a model file may make reflstm read; anything beyond is refused before it is read.

    Args:
        max_weight_bytes: the weights' total declared size; also the inflated size of a
            ``.keras`` archive's weights member, and the size of the states that stateful
            layers carry (batch size × units). Default 4 GiB.
        max_config_bytes: the size of a config (config.json, metadata.json, an ``.h5``
            ``model_config`` attribute). Default 64 MiB.
        max_json_depth: how deeply a config's JSON may nest. Default 100 (Keras writes ~12).
        max_layers: layers and layer calls in one model. Default 10,000.
        max_seconds: wall-clock time for the HDF5 reading (Linux). Default 120.
    """

    max_weight_bytes: int = 4 * GiB
    max_config_bytes: int = 64 * MiB
    max_json_depth: int = 100
    max_layers: int = 10_000
    max_seconds: float = 120.0

    def __post_init__(self):
        for field in ("max_weight_bytes", "max_config_bytes", "max_layers"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise refuse(f"Limits.{field}", "a positive integer", repr(value))
        depth = self.max_json_depth
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 500:
            # Deeper JSON than this would exhaust Python's own recursion while parsing.
            raise refuse("Limits.max_json_depth", "an integer from 1 to 500", repr(depth))
        seconds = self.max_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise refuse("Limits.max_seconds", "a positive number of seconds", repr(seconds))


def over_budget(what, limit_name, limit, size):
    return refuse(what, f"at most {limit:,} bytes (raise Limits.{limit_name} to allow more)",
                  f"{size:,} bytes")


# What zipfile raises on a damaged archive, besides BadZipFile: it has no single error type.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
               NotImplementedError, RuntimeError, OverflowError, struct.error, zlib.error,
               KeyError, IndexError)
try:
    import lzma

    _ZIP_ERRORS += (lzma.LZMAError,)
except ImportError:  # Python built without lzma: such members then fail as NotImplementedError
    pass

_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


def regular_file(path, argument, kind, directory_hint=""):
    """Refuse a `path` that is missing, a loop of symbolic links, a directory or not a regular
    file (a FIFO would block a read), saying which."""
    import errno
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise refuse(argument, f"an existing {kind}", f"{path!r}, which does not exist") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise refuse(argument, f"a {kind}", f"{path!r}, a loop of symbolic links") from None
        raise refuse(argument, f"a readable {kind}", f"{path!r} ({error.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse(argument, f"a {kind}", f"{path!r}, which is a directory, not a file{directory_hint}")
    if not stat.S_ISREG(info.st_mode):
        raise refuse(argument, f"a regular {kind}", f"{path!r}, which is not a regular file")


def read_member(archive, name, limit, limit_name, where):
    """The bytes of member `name` of an open ZipFile, at most `limit` of them, or None if absent."""
    what = f"{where}: member {name!r}"
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.flag_bits & 0x1:
        raise refuse(what, "an unencrypted member", "an encrypted one")
    if info.compress_type not in _ZIP_METHODS:
        raise refuse(what, f"a member compressed by {', '.join(_ZIP_METHODS.values())}",
                     f"compression method {info.compress_type}")
    if info.file_size > limit:
        raise over_budget(what, limit_name, limit, info.file_size)
    pieces, size = [], 0
    try:
        with archive.open(info) as member:
            while True:
                piece = member.read(MiB)
                if not piece:
                    break
                size += len(piece)
                if size > min(limit, info.file_size):  # the header lied about the size
                    raise over_budget(what, limit_name, min(limit, info.file_size), size)
                pieces.append(piece)
    except ReflstmError:
        raise
    except _ZIP_ERRORS as error:
        raise refuse(what, "a readable member", f"a damaged one ({_brief(error)})") from None
    return b"".join(pieces)


def parse_json(data, what, limits):
    """JSON text (str or bytes) within Limits.max_config_bytes and Limits.max_json_depth."""
    if len(data) > limits.max_config_bytes:
        raise over_budget(what, "max_config_bytes", limits.max_config_bytes, len(data))
    too_deep = refuse(what, f"JSON nested at most {limits.max_json_depth} deep "
                      "(raise Limits.max_json_depth to allow more)", "deeper JSON")
    try:
        value = json.loads(data)
    except RecursionError:
        raise too_deep from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise refuse(what, "JSON text", f"text that is not ({_brief(error)})") from None
    # The depth, measured without recursion: a stack of (value, depth).
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limits.max_json_depth:
                raise too_deep
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def _brief(error):
    return f"{type(error).__name__}: {str(error)[:120]}"


# ---- HDF5 objects, checked before they are read ---------------------------------------------

def child_group(group, key, where):
    """The group `key` of `group`, reached through a hard link; None if there is no such link."""
    obj = _linked(group, key, where)
    if obj is None:
        return None
    import h5py

    if not isinstance(obj, h5py.Group):
        raise refuse(f"{where}: {obj.name!r}", "an HDF5 group", "a dataset")
    return obj


def _linked(group, key, where):
    """The object `key` names in `group`, if a hard link names it: no soft, external or user link."""
    import h5py

    if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
        raise refuse(where, "a plain HDF5 member name", repr(key))
    link = group.get(key, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise refuse(f"{where}: {group.name.rstrip('/')}/{key}",
                     "an object stored in the file itself (a hard link)",
                     f"a link of type {type(link).__name__} (links are never followed: they may "
                     "reach outside the file)")
    return group[key]


def checked_dataset(group, path, expected_shape, where, basis=""):
    """The dataset at `path` below `group`, checked before any byte of it is read.

    Hard links all the way; data stored in this file (compact, contiguous or chunked layout, no
    external raw storage, not virtual); float32 or float64; the shape the layer's config predicts
    (`expected_shape`: a tuple with None where the config leaves a dimension open). With
    `expected_shape` None (a layer reflstm does not run), any shape of any numeric dtype.
    Returns the h5py Dataset and its size in bytes.
    """
    import h5py

    parts = path.strip("/").split("/") if isinstance(path, str) else [path]
    obj = group
    for part in parts:
        if not isinstance(obj, h5py.Group):
            raise refuse(where, f"a dataset at {path!r}", f"{obj.name!r}, which is not a group")
        obj = _linked(obj, part, where)
        if obj is None:
            raise refuse(where, f"a dataset at {path!r}", "no such object in the file")
    if not isinstance(obj, h5py.Dataset):
        raise refuse(f"{where}: {obj.name!r}", "a dataset of weights", "a group")
    name = f"{where}: dataset {obj.name!r}"
    if obj.is_virtual:
        raise refuse(name, "data stored in this file", "a virtual dataset (its data would come "
                     "from other files)")
    if obj.external:
        raise refuse(name, "data stored in this file", "external raw storage, outside the file "
                     f"({obj.external[0][0]!r})")
    layout = obj.id.get_create_plist().get_layout()
    if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise refuse(name, "a compact, contiguous or chunked dataset", f"HDF5 layout {layout}")
    dtype = obj.dtype
    if expected_shape is None:
        if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields is not None or dtype.subdtype is not None:
            raise refuse(name, "numbers (booleans, integers or floats)", f"dtype {dtype}")
    elif dtype not in (np.dtype("<f4"), np.dtype("<f8"), np.dtype(">f4"), np.dtype(">f8")):
        raise refuse(name, "float32 or float64 weights", f"dtype {dtype}")
    shape = obj.shape
    if shape is None or (expected_shape is not None and not _shape_fits(shape, expected_shape)):
        raise refuse(name, f"shape {shape_pattern(expected_shape)}, as the layer's config says ({basis})", f"shape {shape}")
    size = dtype.itemsize * int(np.prod(shape, dtype=object))
    if obj.chunks is not None:
        chunk = dtype.itemsize * int(np.prod(obj.chunks, dtype=object))
        if chunk > max(size, MiB):
            raise refuse(name, f"chunks no larger than the dataset ({size:,} bytes)",
                         f"chunks of {chunk:,} bytes")
    return obj, size


def _shape_fits(shape, expected):
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))


def read_dataset(dataset):
    """A checked dataset's values, as a native-order float array."""
    array = np.empty(dataset.shape, dataset.dtype.newbyteorder("="))
    if array.size:
        dataset.read_direct(array)
    return array


def string_attribute(obj, key, limit, where, default=None, max_items=None):
    """A text attribute (or a 1-D array of texts, if `max_items` is given), size-checked first."""
    import h5py

    if key not in obj.attrs:
        return default
    what = f"{where}: attribute {key!r}"
    attribute = h5py.h5a.open(obj.id, key.encode())
    shape = attribute.shape
    if max_items is not None and len(shape) == 1:
        if shape[0] > max_items:
            raise refuse(what, f"at most {max_items:,} names", f"{shape[0]:,}")
    elif shape != ():
        raise refuse(what, "a text", f"an attribute of shape {shape}")
    if shape == (0,):  # an empty list of names (a layer without weights) has no storage at all
        return []
    if attribute.get_storage_size() > limit:
        raise over_budget(what, "max_config_bytes", limit, attribute.get_storage_size())
    value = obj.attrs[key]
    items = list(value) if isinstance(value, np.ndarray) and value.ndim == 1 else [value]
    texts = [_text(item, what) for item in items]
    if sum(map(len, texts)) > limit:
        raise over_budget(what, "max_config_bytes", limit, sum(map(len, texts)))
    return texts if max_items is not None else texts[0]


def _text(value, what):
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse(what, "UTF-8 text", "bytes that are not") from None
    if isinstance(value, str):
        return value
    raise refuse(what, "a text", f"a value of type {type(value).__name__}")


# ---- The child process ---------------------------------------------------------------------

def in_child(work, limits, where):
    """``work()`` -> (header dict, list of arrays), run in a forked child where that is possible.

    The child's address space is capped (its current size plus twice the weight budget plus
    1 GiB) and the parent waits at most `limits.max_seconds`; a child that overruns, crashes or
    raises anything but a ReflstmError yields a ReflstmError naming the file. On systems
    without a safe fork (not Linux) the work runs in this process, without those two bounds.
    """
    if not sys.platform.startswith("linux"):
        try:
            return work()
        except ReflstmError:
            raise
        except Exception as error:  # libhdf5's errors on a damaged file come as many types
            raise _damaged(where, _brief(error)) from None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers
        try:
            os.close(read_end)
            _run_child(work, limits, write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    status = None
    try:
        return _receive(read_end, limits, where)
    except _ChildEnded:
        _, status = os.waitpid(pid, 0)
        raise _damaged(where, _describe_end(status)) from None
    finally:
        os.close(read_end)
        if status is None:  # still running (a deadline passed, or the parent failed): stop it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


class _ChildEnded(Exception):
    """The child closed the pipe before sending all it should."""


def _run_child(work, limits, out):
    import gc

    gc.disable()  # no finalizers of the parent's objects run here
    _cap_address_space(3 * limits.max_weight_bytes + GiB)
    arrays = []
    try:
        header, arrays = work()
        message = {"header": header, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}
    except ReflstmError as error:
        message = {"refused": str(error)}
    except BaseException as error:  # noqa: BLE001 -- reported to the parent as a damaged file
        message = {"damaged": _brief(error)}
        arrays = []
    body = json.dumps(message).encode()
    _write_all(out, struct.pack("<Q", len(body)) + body)
    for array in arrays:
        # Flat first: a memoryview of an empty array of several axes cannot be cast to bytes.
        _write_all(out, memoryview(np.ascontiguousarray(array).reshape(-1)).cast("B"))


def _cap_address_space(extra):
    import resource

    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = current + extra
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft == resource.RLIM_INFINITY or cap < soft:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError):
        pass  # no /proc: the deadline still holds


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd, limits, where):
    deadline = _now() + limits.max_seconds
    (length,) = struct.unpack("<Q", _read_exactly(fd, 8, deadline, limits, where))
    if length > 6 * limits.max_config_bytes + MiB:  # a config of that many characters, escaped
        raise _damaged(where, "the reader sent an oversized header")
    message = json.loads(_read_exactly(fd, length, deadline, limits, where))
    if "refused" in message:
        raise ReflstmError(message["refused"])
    if "damaged" in message:
        raise _damaged(where, message["damaged"])
    arrays, total = [], 0
    for dtype, shape in message["arrays"]:
        array = np.empty(shape, np.dtype(dtype))
        total += array.nbytes
        if total > limits.max_weight_bytes:
            raise over_budget(where, "max_weight_bytes", limits.max_weight_bytes, total)
        if array.nbytes:
            _read_into(fd, memoryview(array.reshape(-1).view(np.uint8)), deadline, limits, where)
        arrays.append(array)
    return message["header"], arrays


def _read_exactly(fd, count, deadline, limits, where):
    buffer = bytearray(count)
    _read_into(fd, memoryview(buffer), deadline, limits, where)
    return bytes(buffer)


def _read_into(fd, view, deadline, limits, where):
    """Fill `view` from the pipe, straight into its memory, before the deadline."""
    done = 0
    while done < len(view):
        remaining = deadline - _now()
        ready = select.select([fd], [], [], remaining)[0] if remaining > 0 else []
        if not ready:
            raise refuse(where, f"a file read within {limits.max_seconds:g} s (raise "
                         "Limits.max_seconds to wait longer)", "one whose HDF5 reading did not end "
                         "(a damaged file can make libhdf5 loop)")
        count = os.readv(fd, [view[done : done + 4 * MiB]])
        if not count:
            raise _ChildEnded()
        done += count


def _describe_end(status):
    if os.WIFSIGNALED(status):
        return (f"the HDF5 reader was stopped by signal {os.WTERMSIG(status)}: libhdf5 crashed or "
                "ran out of its memory cap on this file")
    return "the HDF5 reader ended early"


def _now():
    import time

    return time.monotonic()


def _damaged(where, detail):
    return refuse(where, "a complete, undamaged model file", f"a truncated or corrupted one ({detail})")
