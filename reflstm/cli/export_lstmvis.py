"""reflstm export-lstmvis: the project folder LSTMVis reads, with every gate and C_t, not only h_t."""

import os

from reflstm.cli.inputs import INPUT_HELP, one_batch, read_input
from reflstm.cli.layers import add_model_file, layer_names, load_model
from reflstm.cli.outputs import can_create_in
from reflstm.errors import refuse


def add_parser(commands):
    export = commands.add_parser(
        "export-lstmvis", help="LSTMVis's project files (lstm.yml, states.hdf5 with every gate and C_t, "
        "words.hdf5, words.dict) for github.com/HendrikStrobelt/LSTMVis")
    add_model_file(export)
    export.add_argument("--input", required=True, help=INPUT_HELP)
    export.add_argument("--out", required=True, metavar="FOLDER",
                        help="the project folder (created if absent; its files of the same names are replaced)")
    export.add_argument("--layer", help="only this recurrent layer (default: all)")
    export.add_argument("--vocabulary", metavar="V.txt",
                        help="for a model reading token ids: the words, one per line, line k (from 0) for id k")
    export.set_defaults(run=run)


def run(args):
    from reflstm.explorer.lstmvis import export_lstmvis, read_vocabulary

    folder = args.out.rstrip("/" + os.sep) or args.out
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise refuse("--out", "a folder for the LSTMVis project", f"{args.out!r}, which is a file")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise refuse("--out", "a folder inside an existing folder", repr(args.out))
    can_create_in(parent, "--out", args.out)
    vocabulary = None if args.vocabulary is None else read_vocabulary(args.vocabulary)
    model = load_model(args)
    layer_names(model, args.layer)
    x = read_input(args.input, model)
    one_batch(model, x)
    config = export_lstmvis(model, x, folder, layer=args.layer, vocabulary=vocabulary)
    sources = config["states"]["types"]
    print(f"wrote {folder}: lstm.yml, states.hdf5 ({len(sources)} sources: "
          f"{', '.join(s['path'] for s in sources)}), words.hdf5, words.dict; "
          f"serve it with LSTMVis: python lstm_server.py -dir {os.path.dirname(os.path.abspath(folder))}")
    return 0
