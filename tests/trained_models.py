"""The README's small forecaster, trained by its recipe in examples/forecast_lag.py.

The target at the predicted step t is the first feature at t-LAG (the window is t-8 ... t-1).
"""

import importlib.util
import pathlib

from keras_layers import keras_module

_spec = importlib.util.spec_from_file_location(
    "forecast_lag", pathlib.Path(__file__).resolve().parent.parent / "examples" / "forecast_lag.py")
forecast_lag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(forecast_lag)

TIMESTEPS, LAG, lag_task = forecast_lag.TIMESTEPS, forecast_lag.LAG, forecast_lag.lag_task


def trained_lag_model(epochs=40, seed=0, cell="LSTM"):
    """Input -> `cell`(8) -> Dense(1), trained with Adam until it reads the input at t-LAG; the
    recurrent layer is named "lstm", "gru" or "simplernn"."""
    return forecast_lag.train(keras_module(3), epochs, seed, cell)
