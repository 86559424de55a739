"""reflstm plot: heatmaps of gates and states over time, as PNG."""

import os

import numpy as np

from reflstm.cells.trace import GRUTrace, SimpleRNNTrace
from reflstm.cli.inputs import INPUT_HELP, one_batch, read_input
from reflstm.cli.layers import add_model_file, layer_trace, load_model
from reflstm.cli.outputs import atomic_output, plot_path, pyplot
from reflstm.errors import refuse


def add_parser(commands):
    plot = commands.add_parser("plot", help="heatmaps of gates and states over time, as PNG")
    add_model_file(plot)
    plot.add_argument("--input", required=True, help=INPUT_HELP)
    plot.add_argument("--out", required=True, help="gates.png to write")
    plot.add_argument("--layer", help="the recurrent layer (default: the first)")
    plot.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    plot.set_defaults(run=run)


def run(args):
    plot_path(args.out, "--out")
    plt, MaxNLocator = pyplot()
    model = load_model(args)
    x = read_input(args.input, model)
    one_batch(model, x)
    trace, label = layer_trace(model, args.layer, x)
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
    with atomic_output(args.out) as temporary:
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
