"""Train the small forecaster of the README's attribution example, and save it with inputs.

    python examples/forecast_lag.py [--out forecast.keras] [--epochs 40] [--seed 0] [--cell LSTM]

The task has a known answer. Each sample is a window of the 8 steps t-8 ... t-1 of two features of
noise; the target, the value at the predicted step t, is the first feature at t-2 (LAG steps
before t, the window's second-last step). A model that learned the task must attribute its
prediction to t-2, which is what

    reflstm attribute forecast.keras --input forecast_x.csv

reports. Writes the model (Input -> LSTM(8) -> Dense(1), or a GRU(8) or SimpleRNN(8) with --cell),
64 fresh windows as forecast_x.npy, and
the same windows as forecast_x.csv (header sample, step, x0, x1: one row per sample and step).
Needs Keras (pip install -e '.[keras]'); about 20 s on two cores.
"""

import argparse
import os
import sys

import numpy as np

TIMESTEPS, FEATURES, LAG = 8, 2, 2


def lag_task(samples, seed):
    """x (samples, TIMESTEPS, FEATURES) of noise, the window t-8 ... t-1; y (samples, 1) = feature 0 at t-LAG."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, TIMESTEPS, FEATURES)).astype("float32")
    return x, x[:, TIMESTEPS - LAG, 0:1]  # input step TIMESTEPS - LAG is t-LAG


CELLS = ("LSTM", "GRU", "SimpleRNN")


def train(keras, epochs=40, seed=0, cell="LSTM"):
    """Input -> `cell`(8) -> Dense(1), trained with Adam until it reads the input LAG steps before t.

    The recurrent layer is named after its class in lower case ("lstm", "gru", "simplernn").
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        getattr(keras.layers, cell)(8, name=cell.lower()),
        keras.layers.Dense(1, name="readout"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    x, y = lag_task(2048, seed)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def write_csv(path, x):
    """x (samples, timesteps, features) as rows sample, step, x0, x1, ...: the CLI's CSV layout."""
    samples, timesteps, features = x.shape
    sample, step = np.meshgrid(np.arange(samples), np.arange(timesteps), indexing="ij")
    rows = np.column_stack([sample.ravel(), step.ravel(), x.reshape(-1, features)])
    header = ",".join(["sample", "step"] + [f"x{k}" for k in range(features)])
    np.savetxt(path, rows, fmt=["%d", "%d"] + ["%.9g"] * features, delimiter=",", header=header, comments="")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python examples/forecast_lag.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="forecast.keras", help="the .keras file to write (default forecast.keras)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights and data (default 0)")
    parser.add_argument("--cell", choices=CELLS, default="LSTM", help="the recurrent layer (default LSTM)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    model = train(keras, args.epochs, args.seed, args.cell)
    x, y = lag_task(64, seed=args.seed + 9)
    mse = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    model.save(args.out)
    stem = os.path.splitext(args.out)[0]
    np.save(stem + "_x.npy", x)
    write_csv(stem + "_x.csv", x)
    print(f"saved {args.out} (test mse {mse:.4f}; the target is feature 0 at t-{LAG}), "
          f"{stem}_x.npy and {stem}_x.csv")
    print(f"try: reflstm attribute {args.out} --input {stem}_x.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
