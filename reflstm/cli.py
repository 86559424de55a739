"""The reflstm command line: look inside a saved Keras model's LSTMs, GRUs and SimpleRNNs.

    reflstm inspect FILE
    reflstm trace FILE --input X --out TRACE.npz|FOLDER/ [--layer NAME] [--dtype float64]
    reflstm trace FILE --layer NAME --layer-input H.npy --out TRACE.npz|FOLDER/
    reflstm verify FILE [--input X]
    reflstm explain FILE --layer NAME --step T [--sample B] [--input X]
    reflstm plot FILE --input X --out gates.png [--layer NAME] [--sample B]
    reflstm diagnose ARRAYS.npz [--kind LSTM|GRU]
    reflstm attribute FILE --input X [--horizon H] [--method M] [--target output|layer] [--out A.npz] [--plot P.png]

An input X is a .npy file, an .npz holding one array, or a .csv file (CSV_LAYOUT says how its
rows are laid out).

A model with stateful layers starts every command from zero states, as Keras reloads the file;
trace and verify run its input in consecutive batches of the model's batch size, each starting
from the states the one before ended in (as Keras's predict does); explain and plot show one
batch.

Every failure prints one line on stderr and exits non-zero: 2 for bad input or an unsupported
model, 1 when `verify` finds a difference above tolerance or `diagnose` finds no fix, 3 for an
unexpected error (reported in one line too).
"""

import argparse
import contextlib
import os
import sys
import tempfile

import numpy as np

from reflstm import __version__
from reflstm.cells.equations import GATES, GRU_GATES, gate_slice
from reflstm.errors import ReflstmError, refuse
from reflstm.formats.files import load
from reflstm.formats.untrusted import regular_file
from reflstm.models.layers import Bidirectional, BidirectionalTrace, _as_list
from reflstm.models.not_run import NotRun
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace

QUANTITIES = ("i", "f", "c_tilde", "o", "c", "h")  # an LSTM's, as trace writes them
# Every recurrent layer's quantities, by its reflstm class.
QUANTITIES_OF = {"LSTM": QUANTITIES, "GRU": ("z", "r", "h_tilde", "h"), "SimpleRNN": ("h",)}
# Each layer's gate columns, in Keras's order ("h" for the SimpleRNN's one block).
GATES_OF = {"LSTM": GATES, "GRU": GRU_GATES, "SimpleRNN": "h"}
# verify: largest difference allowed, relative to max(1, |Keras's value|), per dtype.
VERIFY_TOLERANCE = {np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-10}
# trace: samples per chunk, so memory stays bounded and a progress bar can move.
TRACE_CHUNK = 64
# How a CSV input is laid out; the help and the README say the same.
CSV_LAYOUT = ("one row per sample and step (sample 0's steps in order, then sample 1's, ...), one "
              "column per feature, an optional header; or, with header columns 'sample' and 'step', "
              "rows in any order (samples in order of their number); for a model reading token ids "
              "(batch, timesteps), one row per sample and one column per step")
INPUT_HELP = "X.npy, an .npz holding one array, or X.csv, shaped as the model's input"


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ReflstmError as error:
        print(f"reflstm {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"reflstm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a CLI answers in one line, never a traceback
        print(f"reflstm {args.command}: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        return 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other refusal."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _model_file(command):
    command.add_argument("file", help="the model: a .keras archive or an .h5 file (or a save_weights "
                         "file, with --architecture)")
    command.add_argument("--architecture", metavar="MODEL.json",
                         help="the model's JSON (model.to_json()), when FILE holds only its weights")


def _load(args):
    return load(args.file, architecture=args.architecture)


def _parser():
    parser = _Parser(
        prog="reflstm", description="Look inside a Keras model's LSTMs, GRUs and SimpleRNNs.",
        epilog=f"Inputs (--input) are {INPUT_HELP}. CSV layout: {CSV_LAYOUT}. Steps are counted from 0.")
    parser.add_argument("--version", action="version", version=f"reflstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser("inspect", help="layers (as Keras's model.summary() lists them, those reflstm "
                                  "does not run marked), and each recurrent layer's gate blocks and weight statistics")
    _model_file(inspect)
    inspect.set_defaults(run=inspect_command)

    trace = commands.add_parser("trace", help="every step's quantities of each recurrent layer (LSTM: i, f, c~, o, C, h; "
                                   "GRU: z, r, h~, h; SimpleRNN: h), to .npz or CSV files")
    _model_file(trace)
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
    trace.add_argument("--chunk", type=int,
                       help=f"samples traced at a time (default {TRACE_CHUNK}; a stateful model's batch "
                       "size, its only one); memory is one chunk's trace")
    trace.set_defaults(run=trace_command)

    verify = commands.add_parser("verify", help="compare with Keras, layer by layer (needs Keras)")
    _model_file(verify)
    verify.add_argument("--input", help=f"{INPUT_HELP} (default: random input of the model's shape)")
    verify.set_defaults(run=verify_command)

    explain = commands.add_parser("explain", help="one time step's arithmetic, with the real numbers")
    _model_file(explain)
    explain.add_argument("--layer", required=True, help="the recurrent layer's name (see inspect)")
    explain.add_argument("--step", type=int, required=True, help="counted from 0, in processing order")
    explain.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    explain.add_argument("--input", help=f"{INPUT_HELP} (default: random input of the model's shape)")
    explain.add_argument("--units", type=int, default=4, help="how many units to show (default 4)")
    explain.add_argument("--direction", choices=["forward", "backward"],
                         help="for a Bidirectional layer (default forward)")
    explain.set_defaults(run=explain_command)

    plot = commands.add_parser("plot", help="heatmaps of gates and states over time, as PNG")
    _model_file(plot)
    plot.add_argument("--input", required=True, help=INPUT_HELP)
    plot.add_argument("--out", required=True, help="gates.png to write")
    plot.add_argument("--layer", help="the recurrent layer (default: the first)")
    plot.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    plot.set_defaults(run=plot_command)

    diagnose = commands.add_parser("diagnose", help="which extraction mistake explains the output?")
    diagnose.add_argument("arrays", help="ARRAYS.npz with kernel, recurrent_kernel, [bias], x, expected")
    diagnose.add_argument("--kind", choices=["LSTM", "GRU"],
                          help="the layer the arrays belong to (default: the one their shapes say)")
    diagnose.set_defaults(run=diagnose_command)

    attribute = commands.add_parser(
        "attribute", help="how much each input step (lag t-1, t-2, ...) and feature matters for the output",
        description="Attribute the model's output to each input step and feature. Lags are counted back "
        "from the predicted step t, which is --horizon steps after the last input step: with the "
        "default 1 the last input step is t-1, as for a model that reads t-5 ... t-1 and predicts t.")
    _model_file(attribute)
    attribute.add_argument("--input", required=True, help=INPUT_HELP)
    attribute.add_argument("--horizon", type=int, default=1,
                           help="the predicted step t is this many steps after the last input step "
                           "(default 1: the last input step is t-1; 0: the output is about the last input step)")
    attribute.add_argument("--method", default="integrated_gradients",
                           choices=["gradient", "gradient_x_input", "integrated_gradients", "occlusion"],
                           help="attribution method (default integrated_gradients)")
    attribute.add_argument("--target", choices=["output", "layer"],
                           help="the model's output (default), or the final hidden state of --layer "
                           "(the default when --layer is given)")
    attribute.add_argument("--layer", help="the recurrent layer (LSTM, GRU or SimpleRNN) for --target layer "
                           "(default: the first)")
    attribute.add_argument("--unit", type=int, default=0, help="which output / hidden unit")
    attribute.add_argument("--steps", type=int, help="integrated gradients' path steps (default 64; "
                           "only with that method)")
    attribute.add_argument("--window", type=int, help="occlusion's window, in steps (default 1; only "
                           "with --method occlusion)")
    attribute.add_argument("--out", help="A.npz to write: attributions (batch, timesteps, features), "
                           "shares per lag and per feature, and what t is")
    attribute.add_argument("--plot", help="P.png: attribution heatmap, per-lag and per-feature bars (needs matplotlib)")
    attribute.set_defaults(run=attribute_command)
    return parser


def inspect_command(args):
    model = _load(args)
    print(f"{args.file}: model {model.name!r}, saved by {model.saved_by}")
    for name, shape in model.graph.input_shapes.items():
        print(f"  input {name!r}: shape {shape}")
    stateful = model.stateful_layers
    if stateful:
        several = len(stateful) > 1
        print(f"  stateful: layer{'s' if several else ''} {', '.join(map(repr, stateful))} "
              f"{'carry their' if several else 'carries its'} states from one batch of "
              f"{model.batch_size} samples to the next; every command starts them at zero, as Keras "
              "does when it loads the file")
    for name, layer in model.layers.items():
        not_run = f" (not run: {layer.reason})" if isinstance(layer, NotRun) else ""
        print(f"  layer {name!r}: {_keras_class(layer)}{' (stateful)' if name in stateful else ''}{not_run}")
    print()
    print(model.summary())
    for name, layer in model.recurrent_layers.items():
        for label, cell in _directions(layer):
            print()
            print(f"{type(cell).__name__} {name!r}{label}: {cell}")
            _print_gate_blocks(cell)
    return 0


def _keras_class(layer):
    """The Keras class a layer stands for, as the user wrote it (not reflstm's internal class)."""
    kind = type(layer).__name__
    if getattr(layer, "keras_class", ""):
        return layer.keras_class
    if kind == "Identity":
        return "Dropout (the identity at inference)"
    return getattr(layer, "kind", None) or kind


def _directions(layer):
    if isinstance(layer, Bidirectional):
        return [(" forward", layer.forward), (" backward", layer.backward)]
    return [("", layer.cell)]


def _print_gate_blocks(cell):
    """Each gate's columns in kernel, recurrent_kernel and bias, with statistics; a GRU with
    reset_after has two bias rows, the input bias b and the recurrent bias b'."""
    u, gates = cell.units, GATES_OF[type(cell).__name__]
    print(f"  kernel {cell.kernel.shape}, recurrent_kernel {cell.recurrent_kernel.shape}, "
          f"bias {None if cell.bias is None else cell.bias.shape}; gate columns (order {', '.join(gates)}):")
    header = f"    {'gate':<4} {'columns':<10} {'weight':<23} {'mean':>9} {'std':>9} {'min':>9} {'max':>9}"
    print(header)
    two_rows = getattr(cell, "reset_after", False) and cell.bias is not None
    for gate in gates:
        cols = gate_slice(gate, u, gates) if len(gates) > 1 else slice(0, u)
        blocks = [("kernel", cell.kernel[:, cols]), ("recurrent_kernel", cell.recurrent_kernel[:, cols])]
        if two_rows:
            blocks += [("bias (input, row 0)", cell.bias[0, cols]), ("bias (recurrent, row 1)", cell.bias[1, cols])]
        elif cell.bias is not None:
            blocks += [("bias", cell.bias[cols])]
        for label, block in blocks:
            print(f"    {gate:<4} {f'{cols.start}:{cols.stop}':<10} {label:<23} {block.mean():>9.4f} "
                  f"{block.std():>9.4f} {block.min():>9.4f} {block.max():>9.4f}")


def trace_command(args):
    # CSV files when asked for by name: --format csv, or a folder path ending in "/". A bare
    # existing directory is refused by _writable (it is not a file to write).
    as_csv = args.format == "csv" or (args.format is None and args.out.endswith(("/", os.sep)))
    out = _csv_folder(args.out) if as_csv else _writable(
        args.out, "--out", ".npz", hint=" (for CSV files in it, end the path with / or add --format csv)")
    model = _load(args)
    if args.dtype:
        model = model.astype(args.dtype)
    names = _lstm_names(model, args.layer)
    if args.layer_input is None:
        model.check_runnable("trace it")
        x = _read_input(args.input, model)
        trace = model.trace
    else:
        x, trace = _layer_alone(model, args.layer, args.layer_input)
    if model.batch_size is not None:  # stateful: one batch at a time, the states carried on
        if args.chunk not in (None, model.batch_size):
            raise refuse("--chunk", f"{model.batch_size} or none, the batch size of this stateful model",
                         str(args.chunk))
        _whole_batches(model, x)
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
                for key, value in _arrays(name, traces[name]).items():
                    if as_csv:
                        _append_csv(scratch, key, value, start)
                        maps[key] = value.shape[-1]
                        continue
                    if key not in maps:
                        path = os.path.join(scratch, f"{len(maps)}.npy")
                        maps[key] = np.lib.format.open_memmap(
                            path, mode="w+", dtype=value.dtype, shape=(total,) + value.shape[1:])
                    maps[key][start : start + len(value)] = value
            _progress(count, len(starts))
        if as_csv:
            os.makedirs(out, exist_ok=True)
            for key in maps:
                os.replace(os.path.join(scratch, _csv_name(key)), os.path.join(out, _csv_name(key)))
        else:
            with _output(out) as temporary:
                np.savez(temporary, **maps)
        del maps  # release the memory maps before the scratch folder goes
    if as_csv:
        print(f"wrote {out}: {len(_arrays_keys(model, names))} CSV files for {', '.join(names)}, named "
              "layer_quantity.csv; columns sample, step (both from 0), unit_0, unit_1, ...; "
              "one row per sample and step")
    else:
        print(f"wrote {out}: arrays for {', '.join(names)}; "
              f"each (batch, timesteps, units), keys 'layer/quantity'")
    return 0


def _layer_alone(model, name, path):
    """--layer-input: the array, and a function tracing layer `name` alone on a chunk of it."""
    if name is None:
        raise refuse("--layer", "the recurrent layer that --layer-input reaches", "none")
    calls = [node for key, node in model.graph.nodes.items() if key[0] == name]
    if any(len(node.inputs) > 1 for node in calls):
        raise refuse("--layer", "a layer the model calls on one tensor (traced alone from zero states)",
                     f"layer {name!r}, which the model calls with initial states")
    layer = model.recurrent_layers[name]
    input_dim = layer.cells[0].kernel.shape[0]
    x = _read_input(path)
    if x.ndim != 3 or x.shape[-1] != input_dim or x.dtype.kind not in "iuf":
        raise refuse("--layer-input", f"an array of numbers (batch, timesteps, {input_dim}), what reaches layer "
                     f"{name!r} in the model", f"{path!r}, of shape {x.shape} and dtype {x.dtype}")

    def trace(chunk):
        traces = {}
        layer([chunk], [None], traces)
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
    _can_create_in(folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder)),
                   "--out", path)
    return folder


def _csv_name(key):
    """'layer/quantity' (or 'layer/direction/quantity') as a file name: layer_quantity.csv."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in key.replace("/", "_")) + ".csv"


def _arrays_keys(model, names):
    return [name for name in names for _, cell in _directions(model.recurrent_layers[name])
            for _ in QUANTITIES_OF[type(cell).__name__]]


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


def _arrays(name, trace):
    if isinstance(trace, BidirectionalTrace):
        out = {}
        for direction in ("forward", "backward"):
            for key, value in _arrays(f"{name}/{direction}", getattr(trace, direction)).items():
                out[key] = value
        return out
    return {f"{name}/{q}": np.ascontiguousarray(getattr(trace, q)) for q in _quantities(trace)}


def _quantities(trace):
    """The quantities trace writes for one direction's trace, by its kind."""
    if isinstance(trace, GRUTrace):
        return QUANTITIES_OF["GRU"]
    if isinstance(trace, SimpleRNNTrace):
        return QUANTITIES_OF["SimpleRNN"]
    return QUANTITIES


def _whole_batches(model, x):
    """A stateful model's input: a whole number of batches of its batch size."""
    batch = model.batch_size
    if _count(x) % batch:
        raise refuse("--input", f"a multiple of {batch} samples (the model is stateful: it runs batches "
                     f"of {batch}, each from the states the one before ended in)",
                     f"{_count(x)} samples")


def _one_batch(model, x):
    """explain and plot show one call: for a stateful model, one batch, from zero states."""
    if model.batch_size is not None and _count(x) != model.batch_size:
        raise refuse("--input", f"{model.batch_size} samples, one batch of this stateful model "
                     "(shown from zero states, as after loading)", f"{_count(x)} samples")


def _progress(done, total):
    """A progress bar on stderr, only on a terminal and only for more than one chunk."""
    if total <= 1 or not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} chunks", end=end,
          file=sys.stderr, flush=True)


def _lstm_names(model, layer):
    """The recurrent layers' names (LSTM, GRU, SimpleRNN, Bidirectional), or just `layer`."""
    names = list(model.recurrent_layers)
    if not names:
        raise refuse("FILE", "a model with a recurrent layer (LSTM, GRU or SimpleRNN)", "a model without one")
    if layer is None:
        return names
    if layer not in names:
        raise refuse("--layer", f"one of the recurrent layers {', '.join(names)}", repr(layer))
    return [layer]


def _read_input(path, model=None):
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


def _writable(path, option, suffix=None, hint=""):
    """`path` (with `suffix` added as NumPy will add it), checked before any work: not a
    directory, in an existing folder where a file can be created."""
    for candidate in (path, path if not suffix or path.endswith(suffix) else path + suffix):
        if os.path.isdir(candidate):
            raise refuse(option, "a file to write", f"{candidate!r}, which is a directory{hint}")
    if suffix and not path.endswith(suffix):
        path += suffix
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise refuse(option, "a path in an existing folder", f"{path!r}")
    _can_create_in(folder, option, path)
    return path


def _can_create_in(folder, option, path):
    """The only sure test, also for root and read-only file systems: create a file there."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise refuse(option, "a path in a folder where files can be written",
                     f"{path!r} ({error.strerror})") from None


def _plot_path(path, option):
    """A plot's path, checked before any work: matplotlib installed, a format it writes."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in formats:
        raise refuse(option, f"an image file ending in one of .{', .'.join(sorted(formats))}",
                     repr(path))
    return _writable(path, option)


@contextlib.contextmanager
def _output(path):
    """A temporary path beside `path`, renamed to it only when the block succeeds: a failed
    command leaves nothing behind."""
    folder, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=os.path.splitext(name)[1])
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _random_input(model, seed=0):
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


def model_dtype(model):
    lstms = [cell for layer in model.recurrent_layers.values() for _, cell in _directions(layer)]
    return lstms[0].dtype if lstms else np.dtype("float32")


def verify_command(args):
    model = _load(args)
    keras_model = _keras_model(args, model.keras_version)
    x = _read_input(args.input, model) if args.input else _random_input(model)
    tolerance = VERIFY_TOLERANCE[model_dtype(model)]
    # A stateful model runs batch after batch, from zero states (Keras's and ours, reset before
    # each comparison); any other model in one call.
    size = model.batch_size or _count(x)
    if model.batch_size is not None:
        _whole_batches(model, x)
    batches = [_batch(x, start, size) for start in range(0, _count(x), size)]

    def keras_run(function):
        _reset_keras_states(keras_model)
        # Keras is called eagerly: its graph-mode predict rounds float64 models at ~1e-8 (README).
        parts = [_as_list(function(batch, training=False)) for batch in batches]
        return [np.concatenate(arrays) for arrays in zip(*parts)]

    rows = [("model output", keras_run(keras_model), _as_list(model.predict(x)))]
    model.reset_state()
    traces = [model.trace(batch) for batch in batches]
    for name, layer in model.recurrent_layers.items():
        outputs = keras_run(_intermediate(keras_model, keras_model.get_layer(name)))
        parts = [layer.outputs_from_trace(trace[name]) for trace in traces]
        rows.append((f"layer {name!r} outputs", outputs, [np.concatenate(a) for a in zip(*parts)]))
    worst = 0.0
    for label, theirs, ours in rows:
        difference = max(_relative_difference(a, b) for a, b in zip(ours, theirs))
        worst = max(worst, difference)
        print(f"{label:<40} largest difference {difference:.3g}")
    verdict = "OK" if worst <= tolerance else "DIFFERENT"
    print(f"{verdict}: largest difference {worst:.3g}, tolerance {tolerance:g} "
          f"({model_dtype(model)}, relative to max(1, |Keras|))")
    return 0 if worst <= tolerance else 1


def _count(x):
    return (x[0] if isinstance(x, list) else x).shape[0]


def _batch(x, start, size):
    """Samples start .. start + size of an input (a list for several inputs)."""
    return [a[start : start + size] for a in x] if isinstance(x, list) else x[start : start + size]


def _reset_keras_states(keras_model):
    """Zero the states of a Keras model's stateful layers (Keras 3: reset_state, tf_keras: reset_states)."""
    for layer in keras_model.layers:
        if getattr(layer, "stateful", False):
            (getattr(layer, "reset_state", None) or layer.reset_states)()


def _keras_model(args, keras_version):
    """The file loaded by the Keras that wrote it (Keras 3, or tf_keras for Keras 2)."""
    from reflstm.frameworks.keras_import import import_keras

    if keras_version == 1:
        raise refuse("verify", "a file that an installed Keras loads", "a Keras 1 file, which neither "
                     "Keras 3 nor tf_keras loads any more (reflstm reads it as Keras 1 computed: see the README)")
    try:
        keras = import_keras(keras_version)
        saving = keras.saving if keras_version == 3 else keras.models
        if args.architecture is None:
            return saving.load_model(args.file, compile=False, safe_mode=True)
        with open(args.architecture) as f:
            model = keras.models.model_from_json(f.read())
        model.load_weights(args.file)
        return model
    except ImportError as error:
        raise refuse("Keras", f"{'keras' if keras_version == 3 else 'tf_keras'} installed to verify "
                     "against (pip install 'reflstm[keras]')", f"{error.name} is not installed") from None


def _intermediate(keras_model, layer):
    """A Keras model from the model's inputs to `layer`'s outputs."""
    package = type(keras_model).__module__.split(".")[0]
    if package == "keras":
        import keras
    else:
        import tf_keras as keras
    inputs = keras_model.inputs if len(keras_model.inputs) > 1 else keras_model.inputs[0]
    return keras.Model(inputs, layer.output)


def _relative_difference(ours, theirs):
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        return np.inf
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1.0), initial=0.0))


def _layer_trace(model, name, x, direction=None):
    names = _lstm_names(model, name)
    trace = model.trace(x)[names[0]]
    if isinstance(trace, BidirectionalTrace):
        direction = direction or "forward"
        return getattr(trace, direction), f"{names[0]} ({direction})"
    if direction not in (None, "forward"):
        raise refuse("--direction", f"forward for {names[0]!r}, which is not Bidirectional", repr(direction))
    return trace, names[0]


def explain_command(args):
    from reflstm.analysis.explain import equations, step_table

    if args.units < 1:
        raise refuse("--units", "a positive number of units", str(args.units))
    model = _load(args)
    source = args.input or "random input (no --input given)"
    x = _read_input(args.input, model) if args.input else _random_input(model)
    _one_batch(model, x)
    trace, label = _layer_trace(model, args.layer, x, args.direction)
    batch, timesteps = trace.h.shape[:2]
    if not 0 <= args.step < timesteps:
        raise refuse("--step", f"a step in 0..{timesteps - 1}", str(args.step))
    if not 0 <= args.sample < batch:
        raise refuse("--sample", f"a sample in 0..{batch - 1}", str(args.sample))
    print(f"layer {label}, sample {args.sample}, step {args.step} of {timesteps} "
          f"(processing order), input: {source}")
    print(equations(trace))
    print(step_table(trace, args.sample, args.step, units=args.units))
    return 0


def _pyplot():
    """matplotlib.pyplot (drawing to files only) and MaxNLocator, or a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise refuse("matplotlib", "installed for plots (pip install 'reflstm[plot]')",
                     "not installed") from None
    return plt, MaxNLocator


def plot_command(args):
    _plot_path(args.out, "--out")
    plt, MaxNLocator = _pyplot()
    model = _load(args)
    x = _read_input(args.input, model)
    _one_batch(model, x)
    trace, label = _layer_trace(model, args.layer, x)
    if not 0 <= args.sample < trace.h.shape[0]:
        raise refuse("--sample", f"a sample in 0..{trace.h.shape[0] - 1}", str(args.sample))
    kind, panels = _panels(trace)
    rows = (len(panels) + 2) // 3
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.25 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (title, values, limits) in zip(axes.flat, panels):
        data = values[args.sample].T  # (units, timesteps)
        if limits is None:
            bound = float(np.max(np.abs(data))) or 1.0
            limits = (-bound, bound)
            cmap = "RdBu_r"
        else:
            cmap = "viridis"
        image = ax.imshow(data, aspect="auto", cmap=cmap, vmin=limits[0], vmax=limits[1],
                          interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("time step (processing order)")
        ax.set_ylabel("unit")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if trace.mask is not None:
            for t in np.flatnonzero(~trace.mask[args.sample]):
                ax.axvspan(t - 0.5, t + 0.5, facecolor="none", edgecolor="0.4", hatch="//", lw=0)
        fig.colorbar(image, ax=ax)
    masked = "" if trace.mask is None else " (hatched: masked steps, state carried over)"
    fig.suptitle(f"{os.path.basename(args.file)}: {kind} {label}, sample {args.sample}{masked}")
    with _output(args.out) as temporary:
        fig.savefig(temporary, dpi=100)
    print(f"wrote {args.out}")
    return 0


def _panels(trace):
    """The layer kind and its plot panels: (title, (batch, timesteps, units) values, color limits)."""
    if isinstance(trace, GRUTrace):
        return "GRU", [("z (update gate)", trace.z, (0, 1)), ("r (reset gate)", trace.r, (0, 1)),
                       ("h~ (candidate)", trace.h_tilde, None), ("h (hidden state)", trace.h, None)]
    if isinstance(trace, SimpleRNNTrace):
        return "SimpleRNN", [("h (hidden state)", trace.h, None)]
    return "LSTM", [("i (input gate)", trace.i, (0, 1)), ("f (forget gate)", trace.f, (0, 1)),
                    ("c~ (candidate)", trace.c_tilde, None), ("o (output gate)", trace.o, (0, 1)),
                    ("C (cell state)", trace.c, None), ("h (hidden state)", trace.h, None)]


def diagnose_command(args):
    from reflstm.analysis.diagnosis import diagnose

    regular_file(args.arrays, "ARRAYS", ".npz file")
    try:
        arrays = dict(np.load(args.arrays, allow_pickle=False))
    except (ValueError, OSError, EOFError) as error:
        raise refuse("ARRAYS", "an .npz of arrays", f"{args.arrays!r} ({str(error)[:100]})") from None
    missing = [k for k in ("kernel", "recurrent_kernel", "x", "expected") if k not in arrays]
    if missing:
        raise refuse("ARRAYS", "keys kernel, recurrent_kernel, x, expected (and bias if any)",
                     f"{args.arrays!r} without {', '.join(missing)}")
    report = diagnose(arrays["kernel"], arrays["recurrent_kernel"], arrays.get("bias"),
                      x=arrays["x"], expected=arrays["expected"], kind=args.kind)
    print(report)
    return 0 if report.fits else 1


def attribute_command(args):
    from reflstm.analysis.attribution import attribute

    out = _writable(args.out, "--out", ".npz") if args.out else None
    if args.plot:  # before any work: a missing matplotlib or a format it cannot write
        _plot_path(args.plot, "--plot")
    if args.steps is not None and args.method != "integrated_gradients":
        raise refuse("--steps", "--method integrated_gradients (path steps are its own)",
                     f"--steps with --method {args.method}")
    if args.window is not None and args.method != "occlusion":
        raise refuse("--window", "--method occlusion (the window is its own)",
                     f"--window with --method {args.method}")
    if args.horizon < 0:
        raise refuse("--horizon", "a whole number of steps >= 0 (1: the step after the last input)",
                     str(args.horizon))
    model = _load(args)
    if model.stateful_layers:
        raise refuse("FILE", "a model without stateful layers (attribution runs the model many times, "
                     "and a stateful model's output depends on the states earlier calls leave)",
                     f"stateful layers {', '.join(map(repr, model.stateful_layers))}")
    x = _read_input(args.input, model)
    args.target = args.target or ("layer" if args.layer else "output")
    if args.target == "output" and args.layer:
        raise refuse("--layer", "no layer with --target output (it explains the model's output)",
                     repr(args.layer))
    layer_name = None
    if args.target == "output":
        target, what = model, f"model output {args.unit} (last step)"
    else:
        layer_name, target = _layer_target(model, args.layer)
        what = f"{type(target).__name__} layer {layer_name!r} final hidden unit {args.unit}"
    result = attribute(target, x, unit=args.unit, method=args.method, steps=args.steps, window=args.window,
                       horizon=args.horizon)
    print(f"{args.file}: attribution of {what} to each input step")
    print(result.table())
    print()
    print("share of |attribution| per input feature (summed over lags), and per feature and lag:")
    print(result.feature_table())
    half_life = _half_life_line(model, layer_name, x)
    if half_life:
        print(half_life)
    if out:
        lags, shares = result.per_lag()
        features, _, feature_lag = result.per_feature_lag()
        with _output(out) as temporary:
                np.savez(temporary, attributions=result.values, lags=lags, input_steps=result.step_of_lag(lags),
                     shares=shares, features=features, feature_shares=result.per_feature()[1],
                     feature_lag_shares=feature_lag, target=result.target, horizon=np.int64(result.horizon),
                     t=np.str_(result.meaning()))
        print(f"wrote {out}: lags (from t), input_steps, shares; features, feature_shares, "
              "feature_lag_shares (features, lags); attributions (batch, timesteps, features); t")
    if args.plot:
        _plot_attribution(result, args.plot, f"{os.path.basename(args.file)}: {what}, {args.method}")
        print(f"wrote {args.plot}")
    return 0


def _layer_target(model, layer_name):
    """(name, reflstm layer) of the recurrent layer `layer_name` (default: the first), which must
    read the model's input directly."""
    from reflstm.models.layers import RecurrentLayer

    names = [n for n, l in model.recurrent_layers.items() if isinstance(l, RecurrentLayer)]
    name = layer_name or (names[0] if names else None)
    if name not in names:
        raise refuse("--layer", "one of the (non-Bidirectional) recurrent layers "
                     f"{', '.join(names) or '(none)'}", repr(layer_name))
    source = next(node.inputs[0][0] for key, node in model.graph.nodes.items() if key[0] == name)
    if source not in model.graph.inputs:
        raise refuse("--layer", "a recurrent layer reading the model's input directly (or use --target output)",
                     f"{name!r}, which reads {source!r}")
    return name, model.layers[name].cell


# What the half-life is of, by the gate that keeps the state (MemoryHorizon.gate).
_HALF_LIFE = {
    "f": "forget-gate half-life per unit (steps back until half of C_t is forgotten)",
    "z": "update-gate half-life per unit (steps back until half of h_t is replaced)",
}


def _half_life_line(model, layer_name, x):
    """The memory half-life of layer `layer_name`, or, without one, of the model's first LSTM or
    GRU; a SimpleRNN has none, and the line says so. "" for a model without recurrent layers."""
    from reflstm.analysis.attribution import NO_KEEPING_GATE, KEEPING_GATES, memory_horizon

    kinds = {name: type(layer.cells[0]).__name__ for name, layer in model.recurrent_layers.items()}
    if not kinds:
        return ""
    gated = [name for name, kind in kinds.items() if kind in KEEPING_GATES]
    name = layer_name or (gated + list(kinds))[0]
    if kinds[name] not in KEEPING_GATES:
        return f"no half-life: layer {name!r} is a SimpleRNN; {NO_KEEPING_GATE}"
    horizon = memory_horizon(model, x, layer=name)
    direction = " (forward)" if isinstance(model.layers[name], Bidirectional) else ""
    return (f"{kinds[name]} layer {name!r}{direction}: {_HALF_LIFE[horizon.gate]}: "
            + " ".join(f"{v:.1f}" for v in horizon.half_life()))


def _plot_attribution(result, path, title):
    plt, MaxNLocator = _pyplot()
    shares = result.per_feature_step() * 100  # (features, timesteps), input order
    lags, lag_shares = result.per_lag()
    features, feature_shares = result.per_feature()
    timesteps = result.timesteps
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.6), constrained_layout=True,
                                              gridspec_kw={"width_ratios": [3, 2, 1.3]})
    image = left.imshow(shares, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ticks = np.unique(np.linspace(0, timesteps - 1, min(timesteps, 12)).round().astype(int))
    left.set_xticks(ticks, [f"{s}\n{_lag_label(result.lag_of_step(s))}" for s in ticks])
    left.set_xlabel("input step (from 0) and its lag")
    left.set_ylabel("input feature")
    left.set_title("share of |attribution| (%) per feature and step")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=left)
    middle.bar(np.arange(len(lags)), lag_shares * 100)
    lag_ticks = np.unique(np.linspace(0, len(lags) - 1, min(len(lags), 12)).round().astype(int))
    middle.set_xticks(lag_ticks, [_lag_label(lags[k]) for k in lag_ticks])
    middle.set_xlabel("lag, counted back from the predicted step t")
    middle.set_ylabel("share of |attribution| (%)")
    middle.set_title("importance by lag")
    right.barh(features, feature_shares * 100)
    right.invert_yaxis()
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("share (%)")
    right.set_ylabel("input feature")
    right.set_title("importance by feature")
    fig.suptitle(f"{title}\n{result.meaning()}")
    with _output(path) as temporary:
        fig.savefig(temporary, dpi=100)


def _lag_label(lag):
    return "t" if lag == 0 else f"t-{lag}"
