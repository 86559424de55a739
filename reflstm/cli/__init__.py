"""The reflstm command line: look inside a saved Keras model's LSTMs, GRUs and SimpleRNNs.

    reflstm inspect FILE
    reflstm trace FILE --input X --out TRACE.npz|FOLDER/ [--layer NAME] [--dtype float64]
    reflstm trace FILE --layer NAME --layer-input H.npy --out TRACE.npz|FOLDER/
    reflstm verify FILE [--input X]
    reflstm explain FILE --layer NAME --step T [--sample B] [--input X]
    reflstm plot FILE --input X --out gates.png [--layer NAME] [--sample B]
    reflstm diagnose ARRAYS.npz [--kind LSTM|GRU]
    reflstm attribute FILE --input X [--horizon H] [--method M] [--target output|layer] [--out A.npz] [--plot P.png]
    reflstm report FILE --input X --out report.html [--sample B] [--layer NAME] [--attribute] [--vocabulary V.txt]
    reflstm export-lstmvis FILE --input X --out FOLDER [--layer NAME] [--vocabulary V.txt]

An input X is a .npy file, an .npz holding one array, or a .csv file (CSV_LAYOUT says how its
rows are laid out).

A model with stateful layers starts every command from zero states, as Keras reloads the file;
trace and verify run its input in consecutive batches of the model's batch size, each starting
from the states the one before ended in (as Keras's predict does); explain and plot show one
batch.

Each verb is one module of this package (reflstm/cli/VERB.py) with `add_parser(commands)` and
`run(args)`; inputs.py reads inputs, outputs.py writes files, layers.py picks the layers.

Every failure prints one line on stderr and exits non-zero: 2 for bad input or an unsupported
model, 1 when `verify` finds a difference above tolerance or `diagnose` finds no fix, 3 for an
unexpected error (reported in one line too).
"""

import argparse
import os
import sys

from reflstm import __version__
from reflstm.cli import attribute, diagnose, explain, export_lstmvis, inspect, plot, report, trace, verify
from reflstm.cli.inputs import CSV_LAYOUT, INPUT_HELP
from reflstm.errors import ReflstmError

# The verbs, in the order --help lists them.
VERBS = (inspect, trace, verify, explain, plot, diagnose, attribute, report, export_lstmvis)


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



def _parser():
    parser = _Parser(
        prog="reflstm", description="Look inside a Keras model's LSTMs, GRUs and SimpleRNNs.",
        epilog=f"Inputs (--input) are {INPUT_HELP}. CSV layout: {CSV_LAYOUT}. Steps are counted from 0.")
    parser.add_argument("--version", action="version", version=f"reflstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(commands)
    return parser
