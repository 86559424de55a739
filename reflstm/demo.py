"""The demo: build a small Keras LSTM, trace it with reflstm, show they agree, print one step.

    python -m reflstm.demo [--keras 3|2] [--dtype float32|float64] [--step T] [--report PATH]

Needs Keras (``pip install -e '.[keras]'``); reflstm itself does not.
"""

import argparse
import os
import sys

import numpy as np

import reflstm
from reflstm.cells.equations import GATES, gate_slice
from reflstm.analysis.explain import step_table

BATCH, TIMESTEPS, INPUT_DIM, UNITS = 2, 6, 3, 4


def build_keras_layer(keras_version, dtype, rng):
    """A Keras LSTM with distinct random weights per gate and a non-zero bias."""
    from reflstm.frameworks.keras_import import import_keras

    keras = import_keras(keras_version)
    layer = keras.layers.LSTM(UNITS, return_sequences=True, return_state=True, dtype=dtype)
    layer.build((None, TIMESTEPS, INPUT_DIM))
    layer.set_weights(
        [
            rng.normal(0, 0.5, (INPUT_DIM, 4 * UNITS)).astype(dtype),
            rng.normal(0, 0.5, (UNITS, 4 * UNITS)).astype(dtype),
            rng.normal(0, 0.5, 4 * UNITS).astype(dtype),
        ]
    )
    return layer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m reflstm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keras", type=int, choices=[3, 2], default=3, help="Keras 3 or tf_keras")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--step", type=int, default=2, help=f"the step to print, 0..{TIMESTEPS - 1}")
    parser.add_argument("--report", metavar="PATH", default="reflstm-demo.html",
                        help="the HTML report of the traced LSTM to write (default reflstm-demo.html; "
                        "'' for none)")
    parser.add_argument("--save", metavar="PATH", help="also save the LSTM in a small model to PATH "
                        "(.keras, or .h5 with --keras 2) and its input beside it, for the command line")
    args = parser.parse_args(argv)
    if not 0 <= args.step < TIMESTEPS:
        parser.exit(2, f"reflstm demo: --step must be in 0..{TIMESTEPS - 1}, got {args.step}\n")
    try:
        rng = np.random.default_rng(7)
        layer = build_keras_layer(args.keras, args.dtype, rng)
    except ImportError as error:
        parser.exit(1, f"reflstm demo: needs Keras ({error.name} is not installed): "
                    "pip install -e '.[keras]'\n")
    x = rng.normal(0, 1, (BATCH, TIMESTEPS, INPUT_DIM)).astype(args.dtype)

    keras_out, keras_h, keras_c = (np.asarray(a) for a in layer(x))
    ref = reflstm.LSTM.from_keras(layer)
    tr = ref.trace(x)
    name = "Keras 3" if args.keras == 3 else "tf_keras"
    print(f"{name} LSTM(units={UNITS}) on x of shape (batch, timesteps, input_dim) = {x.shape}, {args.dtype}")
    print(f"reflstm: {ref}")
    print("largest |reflstm - Keras|:")
    for label, ours, theirs in [
        ("output (every h_t)", tr.output, keras_out),
        ("final h", tr.h[:, -1], keras_h),
        ("final C", tr.c[:, -1], keras_c),
    ]:
        print(f"  {label:<19} {np.max(np.abs(ours - theirs)):.3g}")
    print()
    print("kernel / recurrent_kernel / bias columns by gate (Keras order i, f, c, o):")
    for gate in GATES:
        cols = gate_slice(gate, UNITS)
        print(f"  {gate}: columns {cols.start}:{cols.stop}")
    print()
    print(f"Step t={args.step} (counted from 0) of sample 0: z = x_t W + h_t-1 U + b, "
          "then i,f,o = sigmoid(z), c~ = g(z) with g = tanh")
    print(step_table(tr, 0, args.step))
    if args.report:
        reflstm.report(ref, x, title=f"reflstm demo: a {name} LSTM").save(args.report)
        print()
        print(f"wrote {args.report}: every gate and state of this LSTM, step by step; open it in a "
              "browser (one file, no network)")
    if args.save:
        save_model(args, layer, x)
    return 0


def save_model(args, layer, x):
    """The demo's LSTM, weights and all, inside Input -> LSTM -> Dense(1), saved with its input."""
    keras = sys.modules["keras" if args.keras == 3 else "tf_keras"]
    lstm = keras.layers.LSTM(UNITS, return_sequences=True, name="lstm", dtype=args.dtype)
    model = keras.Sequential([
        keras.Input((TIMESTEPS, INPUT_DIM), dtype=args.dtype),
        lstm,
        keras.layers.Dense(1, name="readout", dtype=args.dtype),
    ])
    lstm.set_weights(layer.get_weights())
    model.save(args.save)
    x_path = os.path.splitext(args.save)[0] + "_x.npy"
    np.save(x_path, x)
    print()
    print(f"saved {args.save} and its input {x_path}; try: reflstm inspect {args.save}")


if __name__ == "__main__":
    sys.exit(main())
