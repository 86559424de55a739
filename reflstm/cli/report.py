"""reflstm report: one self-contained HTML file exploring the recurrent layers (`reflstm.report`)."""

from reflstm.cli.inputs import INPUT_HELP, one_batch, read_input, sample_count
from reflstm.cli.layers import add_model_file, layer_names, load_model
from reflstm.cli.outputs import atomic_output, writable
from reflstm.errors import refuse

MAX_VOCABULARY_BYTES = 64_000_000  # a vocabulary file larger than this is refused before reading


def add_parser(commands):
    report = commands.add_parser("report", help="an HTML page (one file, no network) exploring every gate and "
                                 "state of the recurrent layers, step by step")
    add_model_file(report)
    report.add_argument("--input", required=True, help=INPUT_HELP)
    report.add_argument("--out", required=True, help="report.html to write")
    report.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    report.add_argument("--layer", help="only this recurrent layer (default: all of them)")
    report.add_argument("--attribute", action="store_true",
                        help="add the attribution of the model's output to each step, and the gates' half-lives")
    report.add_argument("--vocabulary", metavar="V.txt",
                        help="for a model reading token ids: a UTF-8 text file, the token of id k on line k+1")
    report.set_defaults(run=run)


def run(args):
    from reflstm.explorer.document import report

    if not args.out.lower().endswith((".html", ".htm")):
        raise refuse("--out", "a file name ending in .html", repr(args.out))
    out = writable(args.out, "--out")
    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None
    model = load_model(args)
    x = read_input(args.input, model)
    one_batch(model, x)
    if not 0 <= args.sample < sample_count(x):
        raise refuse("--sample", f"a sample in 0..{sample_count(x) - 1}", str(args.sample))
    layer_names(model, args.layer)
    page = report(model, x, sample=args.sample, layer=args.layer, attribute=args.attribute,
                  vocabulary=vocabulary).html()
    with atomic_output(out) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(page)
    print(f"wrote {out} ({len(page.encode('utf-8')) / 1e6:.1f} MB): open it in a browser")
    return 0


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
