"""reflstm trace: every step's quantities of each recurrent layer, to .npz or CSV files."""

import os
import tempfile

import numpy as np

from reflstm.cli import trace_dask
from reflstm.cli.inputs import INPUT_HELP, read_input, whole_batches
from reflstm.cli.layers import add_model_file, layer_names, load_model, parse_keep, trace_arrays
from reflstm.cli.outputs import atomic_output, can_create_in, progress, writable
from reflstm.errors import refuse

# trace: samples per chunk, so memory stays bounded and a progress bar can move.
TRACE_CHUNK = 64


def add_parser(commands):
    trace = commands.add_parser("trace", help="every step's quantities of each recurrent layer (LSTM: i, f, c~, o, C, h; "
                                   "GRU: z, r, h~, h; SimpleRNN: h), to .npz or CSV files")
    add_model_file(trace)
    given = trace.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", help=INPUT_HELP)
    given.add_argument("--layer-input", metavar="H.npy",
                       help="trace --layer alone on this array (batch, timesteps, features), what reaches it "
                       "in the model (from Keras: keras.Model(model.inputs, model.get_layer(previous).output)"
                       ".predict(x)); unmasked, from zero states; works where the model holds layers "
                       "reflstm does not run")
    trace.add_argument("--layer", help="only this recurrent layer")
    trace.add_argument("--out", required=True,
                       help="TRACE.npz to write (keys 'layer/quantity'), or a FOLDER/ (ending in '/', or "
                       "with --format csv) for one CSV file per layer and quantity, "
                       "columns sample, step, unit_0, unit_1, ...")
    trace.add_argument("--format", choices=["npz", "csv"],
                       help="npz (default), or csv: a folder of CSV files (default when --out ends in '/')")
    trace.add_argument("--dtype", choices=["float32", "float64"], help="compute in this dtype")
    trace.add_argument("--keep", metavar="NAMES",
                       help="only these quantities, comma-separated, e.g. h,c (each layer writes those it has; "
                       "default: every gate and state); also output, and the pre-activation parts z_x, z_h "
                       "(LSTM) or input_part, recurrent_part (GRU, SimpleRNN), (batch, timesteps, k * units). "
                       "A trace costs, in time and memory, what it keeps")
    trace.add_argument("--chunk", type=int,
                       help=f"samples traced at a time (default {TRACE_CHUNK}; a stateful model's batch "
                       "size, its only one); memory is one chunk's trace")
    trace_dask.add_arguments(trace)
    trace.set_defaults(run=run)


def run(args):
    if trace_dask.wanted(args):  # a .zarr --input or --out: on dask
        return trace_dask.run(args)
    # CSV files when asked for by name: --format csv, or a folder path ending in "/". A bare
    # existing directory is refused by writable (it is not a file to write).
    as_csv = args.format == "csv" or (args.format is None and args.out.endswith(("/", os.sep)))
    out = _csv_folder(args.out) if as_csv else writable(
        args.out, "--out", ".npz", hint=" (for CSV files in it, end the path with / or add --format csv)")
    model = load_model(args)
    if args.dtype:
        model = model.astype(args.dtype)
    names = layer_names(model, args.layer)
    keep = parse_keep(args.keep, model, names)
    if args.layer_input is None:
        model.check_runnable("trace it")
        x = read_input(args.input, model)
        trace = lambda chunk: model.trace(chunk, keep=keep)  # noqa: E731
    else:
        x, trace = _layer_alone(model, args.layer, args.layer_input, keep)
    if model.batch_size is not None:  # stateful: one batch at a time, the states carried on
        if args.chunk not in (None, model.batch_size):
            raise refuse("--chunk", f"{model.batch_size} or none, the batch size of this stateful model",
                         str(args.chunk))
        whole_batches(model, x)
        args.chunk = model.batch_size
    args.chunk = TRACE_CHUNK if args.chunk is None else args.chunk
    if args.chunk < 1:
        raise refuse("--chunk", "a positive number of samples", str(args.chunk))
    total = x.shape[0]
    starts = range(0, total, args.chunk)
    scratch_parent = os.path.dirname(os.path.abspath(out.rstrip("/" + os.sep)))
    # Each chunk's trace goes straight into memory-mapped .npy files (or CSV files) beside the
    # output, then into place: memory stays at one chunk's trace, however long the input, and
    # nothing is left behind if a chunk fails.
    with tempfile.TemporaryDirectory(dir=scratch_parent, prefix=".reflstm-trace-") as scratch:
        maps = {}
        for count, start in enumerate(starts, 1):
            traces = trace(x[start : start + args.chunk])
            for name in names:
                for key, value in trace_arrays(name, traces[name], keep is not None).items():
                    if as_csv:
                        _append_csv(scratch, key, value, start)
                        maps[key] = value.shape[-1]
                        continue
                    if key not in maps:
                        path = os.path.join(scratch, f"{len(maps)}.npy")
                        maps[key] = np.lib.format.open_memmap(
                            path, mode="w+", dtype=value.dtype, shape=(total,) + value.shape[1:])
                    maps[key][start : start + len(value)] = value
            progress(count, len(starts))
        if as_csv:
            os.makedirs(out, exist_ok=True)
            for key in maps:
                os.replace(os.path.join(scratch, _csv_name(key)), os.path.join(out, _csv_name(key)))
        else:
            with atomic_output(out) as temporary:
                np.savez(temporary, **maps)
        files = len(maps)
        del maps  # release the memory maps before the scratch folder goes
    if as_csv:
        print(f"wrote {out}: {files} CSV files for {', '.join(names)}, named "
              "layer_quantity.csv; columns sample, step (both from 0), unit_0, unit_1, ...; "
              "one row per sample and step")
    else:
        print(f"wrote {out}: arrays for {', '.join(names)}; "
              f"each (batch, timesteps, units), keys 'layer/quantity'")
    return 0


def _layer_alone(model, name, path, keep):
    """--layer-input: the array, and a function tracing layer `name` alone on a chunk of it."""
    if name is None:
        raise refuse("--layer", "the recurrent layer that --layer-input reaches", "none")
    calls = [node for key, node in model.graph.nodes.items() if key[0] == name]
    if any(len(node.inputs) > 1 for node in calls):
        raise refuse("--layer", "a layer the model calls on one tensor (traced alone from zero states)",
                     f"layer {name!r}, which the model calls with initial states")
    layer = model.recurrent_layers[name]
    input_dim = layer.cells[0].kernel.shape[0]
    x = read_input(path)
    if x.ndim != 3 or x.shape[-1] != input_dim or x.dtype.kind not in "iuf":
        raise refuse("--layer-input", f"an array of numbers (batch, timesteps, {input_dim}), what reaches layer "
                     f"{name!r} in the model", f"{path!r}, of shape {x.shape} and dtype {x.dtype}")

    def trace(chunk):
        traces = {}
        layer([chunk], [None], traces, keep=keep)
        return traces

    return x, trace


def _csv_folder(path):
    """A folder for trace's CSV files: it may exist already; its parent folder must."""
    folder = path.rstrip("/" + os.sep) or path
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise refuse("--out", "a folder for CSV files (or a .npz path without --format csv)",
                     f"{path!r}, which is a file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(folder))):
        raise refuse("--out", "a folder in an existing folder", f"{path!r}")
    can_create_in(folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder)),
                   "--out", path)
    return folder


def _csv_name(key):
    """'layer/quantity' (or 'layer/direction/quantity') as a file name: layer_quantity.csv."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in key.replace("/", "_")) + ".csv"


def _append_csv(folder, key, value, start):
    """Append (batch, timesteps, units) as rows sample, step, unit_0, ... to folder/_csv_name(key)."""
    batch, timesteps, units = value.shape
    path = os.path.join(folder, _csv_name(key))
    sample, step = np.meshgrid(np.arange(start, start + batch), np.arange(timesteps), indexing="ij")
    rows = np.column_stack([sample.ravel(), step.ravel(), value.reshape(-1, units)])  # (batch * timesteps, 2 + units)
    digits = "%.17g" if value.dtype == np.float64 else "%.9g"  # enough to read back every bit
    with open(path, "a") as file:
        if start == 0:
            file.write(",".join(["sample", "step"] + [f"unit_{u}" for u in range(units)]) + "\n")
        np.savetxt(file, rows, fmt=["%d", "%d"] + [digits] * units, delimiter=",")
