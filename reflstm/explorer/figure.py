"""One panel of a trace, for papers: a time × units heatmap of one quantity of one sample, to PNG or SVG.

    from reflstm.explorer.figure import save_panel
    tr = reflstm.load("model.keras").trace(x)["lstm"]
    save_panel(tr, "f", "forget.svg", sample=0, layer="lstm")      # or "forget.png"

Steps run left to right in input order (a ``go_backwards`` layer's, and a Bidirectional's backward
direction, flipped back and labelled "read last to first"), units top to bottom. Gates in [0, 1]
share one sequential scale from 0 to 1; other quantities a diverging scale centred on 0 (±1 when
the values stay in [-1, 1], else ±their largest magnitude). Masked steps are hatched: Keras
skipped them and carried the state through (see `reflstm.cells.trace.Trace`).

The SVG is a vector file whose text stays text (fonts are not turned into paths); the heatmap
itself is one embedded image of the cells, as matplotlib writes every heatmap. Needs matplotlib
(``pip install 'reflstm[plot]'``), imported only when a panel is drawn.
"""

import os
import uuid

import numpy as np

from reflstm.cells.trace import GRUTrace, SimpleRNNTrace, Trace
from reflstm.errors import refuse

__all__ = ["save_panel", "panel_figure", "QUANTITIES", "FORMATS"]

# Each trace kind's quantities: field -> (name, symbol). The symbols are plain Unicode text (a
# subscript t, a combining tilde), so that an SVG's title is one searchable string, not glyphs.
QUANTITIES = {
    Trace: {"i": ("input gate", "iₜ"), "f": ("forget gate", "fₜ"), "c_tilde": ("candidate", "c̃ₜ"),
            "o": ("output gate", "oₜ"), "c": ("cell state", "Cₜ"), "h": ("hidden state", "hₜ")},
    GRUTrace: {"z": ("update gate", "zₜ"), "r": ("reset gate", "rₜ"), "h_tilde": ("candidate", "h̃ₜ"),
               "h": ("hidden state", "hₜ")},
    SimpleRNNTrace: {"h": ("hidden state", "hₜ")},
}
GATES = ("i", "f", "o", "z", "r")
FORMATS = (".png", ".svg")
# The look of every panel: small, plain type that stays text in SVG, thin frame.
STYLE = {
    "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.linewidth": 0.6, "xtick.major.width": 0.6,
    "ytick.major.width": 0.6, "hatch.linewidth": 0.6, "hatch.color": "0.35",
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
}


def save_panel(trace, quantity, path, sample=0, direction=None, layer=None, go_backwards=False,
               step_labels=None, dpi=200):
    """Draw one panel (see `panel_figure`) to `path`, a .png or .svg file (the format from its suffix).

    Nothing is written if anything fails; an existing file of that name is replaced.
    Returns the path.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise refuse("path", f"a file name ending in {' or '.join(FORMATS)}", repr(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or os.path.isdir(path):
        raise refuse("path", "a file to write in an existing folder", repr(path))
    matplotlib = _matplotlib()
    figure = panel_figure(trace, quantity, sample, direction, layer, go_backwards, step_labels)
    # A fresh name beside the target (created with the user's umask, unlike mkstemp's 0600).
    temporary = os.path.join(folder, f".reflstm-panel-{uuid.uuid4().hex}{suffix}")
    try:
        with matplotlib.rc_context(STYLE):
            # No date in the SVG's metadata: the same panel gives the same file.
            metadata = {"Date": None} if suffix == ".svg" else None
            figure.savefig(temporary, dpi=dpi, format=suffix[1:], metadata=metadata)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def panel_figure(trace, quantity, sample=0, direction=None, layer=None, go_backwards=False, step_labels=None):
    """The panel as a matplotlib Figure (not attached to pyplot).

    Args:
        trace: a Trace, GRUTrace or SimpleRNNTrace, or a Bidirectional layer's trace (then
            `direction` is "forward" or "backward").
        quantity: a field of the trace: LSTM i, f, c_tilde, o, c, h; GRU z, r, h_tilde, h;
            SimpleRNN h.
        sample: which sample of the batch.
        layer: the layer's name, for the title.
        go_backwards: the layer read its input last to first (implied for "backward").
        step_labels: one label per input step (tokens, say) for the time axis.
    """
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    trace, go_backwards = _direction(trace, direction, go_backwards)
    names = QUANTITIES[type(trace)]
    if quantity not in names:
        raise refuse("quantity", f"one of this {_kind(trace)} trace's quantities ({', '.join(names)})",
                     repr(quantity))
    batch, timesteps, units = trace.h.shape
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or not 0 <= sample < batch:
        raise refuse("sample", f"a sample in 0..{batch - 1}", repr(sample))
    if step_labels is not None:
        step_labels = [str(label) for label in step_labels]
        if len(step_labels) != timesteps:
            raise refuse("step_labels", f"one label per step ({timesteps})", f"{len(step_labels)} labels")
    order = slice(None, None, -1) if go_backwards else slice(None)  # processing order -> input order
    values = np.asarray(getattr(trace, quantity)[sample, order], dtype=np.float64).T  # (units, timesteps)
    skipped = None if trace.mask is None else ~trace.mask[sample, order]  # (timesteps,)
    name, symbol = names[quantity]
    cmap, low, high = _scale(quantity, values)

    with matplotlib.rc_context(STYLE):
        width = float(np.clip(1.9 + 0.16 * timesteps, 3.4, 7.0))
        height = float(np.clip(1.3 + 0.13 * units, 2.2, 6.0))
        figure = Figure(figsize=(width, height), layout="constrained")
        ax = figure.add_subplot()
        image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, aspect="auto", interpolation="nearest")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(timesteps, 12)))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(units, 10)))
        ax.set_xlim(-0.5, timesteps - 0.5)
        ax.set_ylim(units - 0.5, -0.5)
        if step_labels is not None:
            ticks = np.arange(timesteps) if timesteps <= 40 else \
                [t for t in ax.get_xticks() if 0 <= t < timesteps]
            ax.set_xticks(ticks, [step_labels[int(t)] for t in ticks],
                          rotation=90 if max(map(len, step_labels)) > 2 else 0)
        ax.set_xlabel("input step" + (" (read last to first)" if go_backwards else ""))
        ax.set_ylabel("unit")
        where = f" ({direction})" if direction else ""
        prefix = f"{layer}{where}: " if layer else (f"{direction}: " if direction else "")
        ax.set_title(f"{prefix}{name} {symbol}, sample {sample}", loc="left")
        bar = figure.colorbar(image, ax=ax, fraction=0.06, pad=0.02, aspect=25)
        bar.set_label(symbol, rotation=0, labelpad=8, va="center")
        bar.outline.set_linewidth(0.6)
        if skipped is not None and skipped.any():
            for t in np.flatnonzero(skipped):
                ax.axvspan(t - 0.5, t + 0.5, facecolor="none", edgecolor="0.35", hatch="///", linewidth=0)
            figure.legend(handles=[Patch(facecolor="white", edgecolor="0.35", hatch="///", linewidth=0.6,
                                         label="masked step (state carried)")],
                          loc="outside lower right", frameon=False, fontsize=8, handlelength=1.4)
    return figure


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise refuse("matplotlib", "installed for figures (pip install 'reflstm[plot]')",
                     "not installed") from None
    return matplotlib


def _direction(trace, direction, go_backwards):
    """(the one-direction trace to draw, whether its steps were read last to first)."""
    from reflstm.models.layers import BidirectionalTrace

    if isinstance(trace, BidirectionalTrace):
        if direction not in ("forward", "backward"):
            raise refuse("direction", "'forward' or 'backward' for a Bidirectional layer's trace", repr(direction))
        return getattr(trace, direction), go_backwards or direction == "backward"
    if direction is not None:
        raise refuse("direction", "None for a one-direction trace", repr(direction))
    if type(trace) not in QUANTITIES:
        raise refuse("trace", "a Trace, GRUTrace, SimpleRNNTrace or a Bidirectional layer's trace",
                     type(trace).__name__)
    return trace, bool(go_backwards)


def _kind(trace):
    return {Trace: "LSTM", GRUTrace: "GRU", SimpleRNNTrace: "SimpleRNN"}[type(trace)]


def _scale(quantity, values):
    """(colour map, low, high): gates 0..1 sequential; the rest diverging and symmetric about 0."""
    if quantity in GATES and values.min() >= 0 and values.max() <= 1:
        return "viridis", 0.0, 1.0
    bound = float(np.abs(values).max())
    bound = 1.0 if bound <= 1 else bound
    return "RdBu_r", -bound, bound
