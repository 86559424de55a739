"""reflstm trace with a zarr store: the trace of a dataset larger than memory, on dask.

    reflstm trace FILE --input X.zarr --out T.zarr [--scheduler ADDRESS] [--workers N] [--processes|--threads]

`reflstm trace` comes here when --input or --out ends in .zarr (`wanted`). The input's chunks
along the batch axis (or --chunk samples) are traced apart, each by `reflstm.dask.trace`, on
local threads (the default), local worker processes (--processes, a dask.distributed
LocalCluster), or the dask.distributed scheduler at ADDRESS; T.zarr gets one array per layer
and quantity (`reflstm.dask.to_zarr`). Every worker loads FILE itself, once, so FILE, X.zarr
and T.zarr must be at the same paths on every worker.
"""

import contextlib
import os

from reflstm.cli.inputs import read_input
from reflstm.cli.layers import layer_names, parse_keep
from reflstm.cli.outputs import can_create_in
from reflstm.errors import refuse

ZARR = ".zarr"


def add_arguments(trace):
    """The options of `reflstm trace` that only a .zarr --input or --out uses."""
    trace.add_argument("--scheduler", metavar="ADDRESS",
                       help="with a .zarr --out: run on the dask.distributed scheduler at ADDRESS "
                       "(tcp://host:8786); FILE, --input and --out at the same paths on every worker")
    trace.add_argument("--workers", type=int,
                       help="with a .zarr --out: local threads or processes to run (default: the CPU count)")
    how = trace.add_mutually_exclusive_group()
    how.add_argument("--processes", action="store_true",
                     help="with a .zarr --out: local worker processes (a dask.distributed LocalCluster)")
    how.add_argument("--threads", action="store_true", help="with a .zarr --out: local threads (the default)")


def wanted(args):
    """Whether this trace goes to a zarr store; dask-only options without one are refused."""
    if any(_is_zarr(path) for path in (args.input, args.out)):
        return True
    given = [f"--{name}" for name in ("scheduler", "workers", "processes", "threads")
             if getattr(args, name) not in (None, False)]
    if given:
        raise refuse(given[0], "a .zarr --input or --out (dask runs only zarr traces)", f"--out {args.out!r}")
    return False


def run(args):
    import reflstm.dask as rd

    out = _new_store(args)
    if args.layer_input is not None:
        raise refuse("--layer-input", "no --layer-input with a .zarr store (trace the model: --input X.zarr)",
                     repr(args.layer_input))
    if args.format is not None:
        raise refuse("--format", "no --format with a .zarr --out (a zarr store is written)", args.format)
    if args.scheduler and (args.workers is not None or args.processes or args.threads):
        raise refuse("--workers" if args.workers is not None else "--processes" if args.processes else "--threads",
                     "no local workers with --scheduler (the cluster has its own)", "both")
    if args.workers is not None and args.workers < 1:
        raise refuse("--workers", "a positive number", str(args.workers))
    if args.chunk is not None and args.chunk < 1:
        raise refuse("--chunk", "a positive number of samples", str(args.chunk))
    source = rd.ModelFile(os.path.abspath(args.file), _path_if_file(args.architecture), args.dtype)
    model = source.get()  # loaded here once: checked, and kept for the local threads
    names = layer_names(model, args.layer)
    if _is_zarr(args.input):
        x = rd.from_zarr(args.input, "--input")
    else:
        import dask.array as da

        array = read_input(args.input, model)
        x = da.from_array(array, chunks=(args.chunk or 64,) + (-1,) * (array.ndim - 1))
    if args.chunk is not None:
        x = x.rechunk({0: args.chunk})
    traces = rd.trace(source, x, keep=parse_keep(args.keep, model, names))
    for key in [key for key in traces if key.split("/")[0] not in names]:
        del traces[key]
    with _scheduler(args):
        rd.to_zarr(traces, out)
    print(f"wrote {out}: {len(traces)} arrays for {', '.join(names)}, each (batch, timesteps, units) at "
          f"group path 'layer/quantity', with the layer's config as attributes; "
          f"{len(x.chunks[0])} chunks of up to {max(x.chunks[0])} samples")
    return 0


def _is_zarr(path):
    return path is not None and path.rstrip("/" + os.sep).endswith(ZARR)


def _new_store(args):
    """--out: a T.zarr path where nothing is yet, in a folder where one can be created."""
    out = args.out.rstrip("/" + os.sep)
    if not out.endswith(ZARR):
        raise refuse("--out", f"a T{ZARR} store to write, with a {ZARR} --input", repr(args.out))
    if os.path.exists(out):
        raise refuse("--out", "a path where nothing exists yet (a zarr store is never overwritten)",
                     f"{args.out!r}, which exists")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise refuse("--out", "a path in an existing folder", repr(args.out))
    can_create_in(folder, "--out", args.out)
    return out


def _path_if_file(architecture):
    """--architecture as every worker can find it: an absolute path when it names a file."""
    return os.path.abspath(architecture) if architecture and os.path.isfile(architecture) else architecture


@contextlib.contextmanager
def _scheduler(args):
    """The dask scheduler of this run, for the block it wraps."""
    import dask

    workers = args.workers or os.cpu_count() or 1
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            raise refuse("--scheduler", "the address of a running dask.distributed scheduler (tcp://host:8786)",
                         f"{args.scheduler!r} ({str(error)[:100] or type(error).__name__})") from None
        with client:
            yield
    elif args.processes:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster):
            yield
    else:
        with dask.config.set(scheduler="threads", num_workers=workers):
            yield
