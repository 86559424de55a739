"""reflstm diagnose: which extraction mistake explains the output?"""

import numpy as np

from reflstm.errors import refuse
from reflstm.formats.untrusted import regular_file


def add_parser(commands):
    diagnose = commands.add_parser("diagnose", help="which extraction mistake explains the output?")
    diagnose.add_argument("arrays", help="ARRAYS.npz with kernel, recurrent_kernel, [bias], x, expected")
    diagnose.add_argument("--kind", choices=["LSTM", "GRU"],
                          help="the layer the arrays belong to (default: the one their shapes say)")
    diagnose.set_defaults(run=run)


def run(args):
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
