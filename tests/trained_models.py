"""A tiny Keras LSTM trained on a task whose answer is known: the target is the input at t-3."""

import numpy as np

from keras_layers import keras_module

TIMESTEPS, LAG = 8, 3


def lag_task(samples, seed):
    """x (samples, TIMESTEPS, 2) of noise; y = x[:, -1 - LAG, 0], the first feature LAG steps back."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, TIMESTEPS, 2)).astype("float32")
    return x, x[:, -1 - LAG, 0:1]


def trained_lag_model(epochs=40, seed=0):
    """Input -> LSTM(8) -> Dense(1), trained with Adam until it reads the input LAG steps back."""
    keras = keras_module(3)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((TIMESTEPS, 2)),
        keras.layers.LSTM(8, name="lstm"),
        keras.layers.Dense(1, name="readout"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    x, y = lag_task(2048, seed)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model
