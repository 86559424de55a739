"""reflstm report: one self-contained HTML file exploring the recurrent layers (`reflstm.report`)."""

from reflstm.cli.inputs import INPUT_HELP, one_batch, read_input, sample_count
from reflstm.cli.layers import QUANTITIES_OF, add_model_file, directions, layer_names, load_model
from reflstm.cli.outputs import atomic_output, writable
from reflstm.errors import refuse

MAX_VOCABULARY_BYTES = 64_000_000  # a vocabulary file larger than this is refused before reading


def add_parser(commands):
    report = commands.add_parser("report", help="an HTML page (one file, no network) exploring every gate and "
                                 "state of the recurrent layers, step by step")
    add_model_file(report)
    report.add_argument("--input", required=True, help=INPUT_HELP)
    report.add_argument("--out", help="report.html to write (needed unless --png or --svg is given)")
    report.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    report.add_argument("--layer", help="only this recurrent layer (default: all of them)")
    report.add_argument("--attribute", action="store_true",
                        help="add the attribution of the model's output to each step, and the gates' half-lives")
    report.add_argument("--vocabulary", metavar="V.txt",
                        help="for a model reading token ids: a UTF-8 text file, the token of id k on line k+1")
    report.add_argument("--panel", metavar="LAYER/QUANTITY",
                        help="the panel --png and --svg draw, named as trace's keys: lstm/f, gru/h_tilde, "
                        "bi/backward/c (default: the first recurrent layer's h, its forward direction)")
    report.add_argument("--png", metavar="PANEL.png", help="also draw --panel for a paper, as PNG (needs matplotlib)")
    report.add_argument("--svg", metavar="PANEL.svg", help="also draw --panel as vector SVG, text as text "
                        "(needs matplotlib)")
    report.set_defaults(run=run)


def run(args):
    from reflstm.explorer.document import report

    figures = {option: path for option, path in (("--png", args.png), ("--svg", args.svg)) if path}
    if args.out is None and not figures:
        raise refuse("--out", "report.html to write (or --png / --svg for one panel)", "none of them")
    if args.panel is not None and not figures:
        raise refuse("--panel", "--png or --svg to draw it to", f"--panel {args.panel} alone")
    if args.out is not None and not args.out.lower().endswith((".html", ".htm")):
        raise refuse("--out", "a file name ending in .html", repr(args.out))
    out = writable(args.out, "--out") if args.out else None
    for option, path in figures.items():
        if not path.lower().endswith(option.replace("--", ".")):
            raise refuse(option, f"a file name ending in {option.replace('--', '.')}", repr(path))
        writable(path, option)
    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None
    model = load_model(args)
    x = read_input(args.input, model)
    one_batch(model, x)
    if not 0 <= args.sample < sample_count(x):
        raise refuse("--sample", f"a sample in 0..{sample_count(x) - 1}", str(args.sample))
    layer_names(model, args.layer)
    if figures:
        _draw_panel(model, x, args, figures)
    if out is None:
        return 0
    page = report(model, x, sample=args.sample, layer=args.layer, attribute=args.attribute,
                  vocabulary=vocabulary).html()
    with atomic_output(out) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(page)
    print(f"wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB): open it in a browser")
    return 0


def _draw_panel(model, x, args, figures):
    """--png / --svg: one layer's quantity for --sample, drawn by reflstm.explorer.figure."""
    from reflstm.explorer.figure import panel_figure, save_panel

    name, direction, quantity = _panel_key(model, args.panel or args.layer)
    cell = dict(directions(model.recurrent_layers[name]))[f" {direction}" if direction else ""]
    trace = model.trace(x)[name]
    options = dict(sample=args.sample, direction=direction, layer=name, go_backwards=cell.go_backwards)
    panel_figure(trace, quantity, **options)  # refusals (the sample, the quantity) before any file
    for option, path in figures.items():
        save_panel(trace, quantity, path, **options)
        print(f"wrote {path}: {name}{f' ({direction})' if direction else ''} {quantity}, sample {args.sample}")


def _panel_key(model, key):
    """(layer, direction or None, quantity) from --panel's LAYER[/DIRECTION]/QUANTITY."""
    names = layer_names(model, None)
    if key is None:
        key = names[0]
    parts = key.split("/")
    name = parts[0]
    if name not in names:
        raise refuse("--panel", f"LAYER/QUANTITY with LAYER one of the recurrent layers {', '.join(names)}",
                     repr(key))
    given = dict(directions(model.recurrent_layers[name]))
    found = [label.strip() or None for label in given]
    rest = parts[1:]
    direction = found[0]
    if direction is not None and rest and rest[0] in ("forward", "backward"):
        direction, rest = rest[0], rest[1:]
    quantities = QUANTITIES_OF[type(given[f" {direction}" if direction else ""]).__name__]
    quantity = rest[0] if len(rest) == 1 else ("h" if not rest else None)
    if quantity not in quantities:
        shape = f"{name}/forward/QUANTITY or {name}/backward/QUANTITY" if found[0] else f"{name}/QUANTITY"
        raise refuse("--panel", f"{shape}, QUANTITY one of {', '.join(quantities)}", repr(key))
    return name, direction, quantity


def read_vocabulary(path):
    """The tokens of a vocabulary file, one per line."""
    import os

    from reflstm.formats.untrusted import regular_file

    regular_file(path, "--vocabulary", "text file, one token per line")
    size = os.path.getsize(path)
    if size > MAX_VOCABULARY_BYTES:
        raise refuse("--vocabulary", f"a file of at most {MAX_VOCABULARY_BYTES:,} bytes", f"{size:,} bytes")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().splitlines()
    except UnicodeDecodeError as error:
        raise refuse("--vocabulary", "a UTF-8 text file", f"{path!r} ({error.reason} at byte {error.start})") from None
