"""reflstm attribute: how much each input step and feature matters for the output."""

import os

import numpy as np

from reflstm.cli.inputs import INPUT_HELP, read_input
from reflstm.cli.layers import add_model_file, load_model
from reflstm.cli.outputs import atomic_output, plot_path, pyplot, writable
from reflstm.errors import refuse
from reflstm.models.layers import Bidirectional

# What the half-life is of, by the gate that keeps the state (MemoryHorizon.gate).
_HALF_LIFE = {
    "f": "forget-gate half-life per unit (steps back until half of C_t is forgotten)",
    "z": "update-gate half-life per unit (steps back until half of h_t is replaced)",
}


def add_parser(commands):
    attribute = commands.add_parser(
        "attribute", help="how much each input step (lag t-1, t-2, ...) and feature matters for the output",
        description="Attribute the model's output to each input step and feature. Lags are counted back "
        "from the predicted step t, which is --horizon steps after the last input step: with the "
        "default 1 the last input step is t-1, as for a model that reads t-5 ... t-1 and predicts t.")
    add_model_file(attribute)
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
    attribute.set_defaults(run=run)


def run(args):
    from reflstm.analysis.attribution import attribute

    out = writable(args.out, "--out", ".npz") if args.out else None
    if args.plot:  # before any work: a missing matplotlib or a format it cannot write
        plot_path(args.plot, "--plot")
    if args.steps is not None and args.method != "integrated_gradients":
        raise refuse("--steps", "--method integrated_gradients (path steps are its own)",
                     f"--steps with --method {args.method}")
    if args.window is not None and args.method != "occlusion":
        raise refuse("--window", "--method occlusion (the window is its own)",
                     f"--window with --method {args.method}")
    if args.horizon < 0:
        raise refuse("--horizon", "a whole number of steps >= 0 (1: the step after the last input)",
                     str(args.horizon))
    model = load_model(args)
    if model.stateful_layers:
        raise refuse("FILE", "a model without stateful layers (attribution runs the model many times, "
                     "and a stateful model's output depends on the states earlier calls leave)",
                     f"stateful layers {', '.join(map(repr, model.stateful_layers))}")
    x = read_input(args.input, model)
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
        with atomic_output(out) as temporary:
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
    plt, MaxNLocator = pyplot()
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
    with atomic_output(path) as temporary:
        fig.savefig(temporary, dpi=100)


def _lag_label(lag):
    return "t" if lag == 0 else f"t-{lag}"
