"""Run every case of backend_cases.py on the Keras 3 backend that KERAS_BACKEND names; save them.

    KERAS_BACKEND=jax python tests/backend_worker.py OUT_DIR

writes OUT_DIR/cases.npz (for each case its weights, inputs and Keras's outputs, or the error
Keras raised) and OUT_DIR/*.keras (the saved models). It also runs reflstm's ``from_keras`` on
the live layers, as a user would, and saves what it read and computed. test_backends.py starts
one worker per backend, all at once, and compares in its own process.
"""

import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # backend_cases, keras_layers

import warnings  # noqa: E402

import numpy as np  # noqa: E402

import backend_cases as C  # noqa: E402
from keras_layers import random_cell_weights  # noqa: E402

warnings.filterwarnings("ignore")  # JAX warns on every float64 it truncates; the case records it


def main(out_dir):
    import keras

    import reflstm

    backend = keras.backend.backend()
    assert backend == os.environ["KERAS_BACKEND"], (backend, os.environ["KERAS_BACKEND"])
    saved = {"backend": np.array(backend)}
    x, x2, h0, c0 = C.inputs()
    saved.update({"x": x, "x2": x2, "h0": h0, "c0": c0, "mask": C.MASK})
    ops = keras.ops
    numpy = ops.convert_to_numpy

    def call(layer, x, mask=None, initial_state=None):
        kwargs = {}
        if mask is not None:
            kwargs["mask"] = ops.convert_to_tensor(mask)
        if initial_state is not None:
            kwargs["initial_state"] = [ops.convert_to_tensor(s) for s in initial_state]
        result = layer(ops.convert_to_tensor(x), **kwargs)
        return [numpy(r) for r in result] if isinstance(result, (list, tuple)) else [numpy(result)]

    def weights(kind, cell_options, seed, dtype="float32"):
        rng = np.random.default_rng(seed)
        return random_cell_weights(rng, kind, C.INPUT_DIM, C.UNITS, dtype,
                                   reset_after=cell_options.get("reset_after", True))

    def error_text(error):
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"

    # Single layers: mask x initial_state x go_backwards x zero_output_for_mask x unroll.
    for seed, (name, case) in enumerate(C.LOOP_CASES.items()):
        kind, cell_options = C.KINDS[case["kind"]]
        arrays = weights(kind, cell_options, seed)
        layer = getattr(keras.layers, kind)(
            C.UNITS, return_sequences=case["return_sequences"], return_state=True,
            go_backwards=case["go_backwards"], zero_output_for_mask=case["zero_output_for_mask"],
            unroll=case["unroll"], **cell_options)
        layer.build((None, C.TIMESTEPS, C.INPUT_DIM))
        layer.set_weights(arrays)
        states = ([h0, c0] if kind == "LSTM" else [h0]) if case["initial_state"] else None
        mask = C.MASK if case["masked"] else None
        for k, w in enumerate(arrays):
            saved[f"{name}/weight{k}"] = w
        try:
            for k, r in enumerate(call(layer, x, mask, states)):
                saved[f"{name}/out{k}"] = r
        except Exception as error:  # noqa: BLE001 -- what Keras raises is part of the record
            saved[f"{name}/error"] = np.array(error_text(error))
            continue
        # reflstm as a user runs it: from_keras reads the backend and unroll from the live layer.
        ref = getattr(reflstm, kind).from_keras(layer)
        saved[f"{name}/from_keras_backend"] = np.array(ref.keras_backend)
        saved[f"{name}/from_keras_unroll"] = np.array(ref.unroll)
        result = ref(x, mask=mask, initial_state=states)
        for k, r in enumerate(result):
            saved[f"{name}/from_keras_out{k}"] = r

    # Bidirectional, masked, with initial states for both directions.
    for seed, (name, case) in enumerate(C.BIDIRECTIONAL_CASES.items(), start=1000):
        kind = case["kind"]
        inner = getattr(keras.layers, kind)(C.UNITS, return_sequences=case["return_sequences"],
                                            unroll=case["unroll"])
        layer = keras.layers.Bidirectional(inner, merge_mode="concat")
        layer.build((None, C.TIMESTEPS, C.INPUT_DIM))
        arrays = weights(kind, {}, seed) + weights(kind, {}, seed + 500)
        layer.set_weights(arrays)
        flipped_h, flipped_c = h0[:, ::-1].copy(), c0[:, ::-1].copy()  # torch takes no negative strides
        states = [h0, c0, flipped_c, flipped_h] if kind == "LSTM" else [h0, flipped_h]
        for k, w in enumerate(arrays):
            saved[f"{name}/weight{k}"] = w
        try:
            saved[f"{name}/out0"] = call(layer, x, C.MASK, states)[0]
        except Exception as error:  # noqa: BLE001
            saved[f"{name}/error"] = np.array(error_text(error))

    # Stateful: a first call unmasked, then a masked one from the state it left.
    for seed, (name, case) in enumerate(C.STATEFUL_CASES.items(), start=2000):
        kind = case["kind"]
        layer = getattr(keras.layers, kind)(C.UNITS, return_sequences=True, stateful=True,
                                            unroll=case["unroll"])
        layer.build((C.BATCH, C.TIMESTEPS, C.INPUT_DIM))
        arrays = weights(kind, {}, seed)
        layer.set_weights(arrays)
        for k, w in enumerate(arrays):
            saved[f"{name}/weight{k}"] = w
        saved[f"{name}/first"] = call(layer, x)[0]
        saved[f"{name}/second"] = call(layer, x2, C.MASK)[0]
        saved[f"{name}/states"] = np.stack([numpy(s) for s in layer.states])

    # float64: what the backend stores and computes, and what from_keras and reflstm say.
    x64 = x.astype("float64")
    for seed, name in enumerate(C.FLOAT64_CASES, start=3000):
        key = f"float64-{name}"
        kind, cell_options = ("LSTM", {}) if name == "RNN(LSTMCell)" else C.KINDS[name]
        if name == "RNN(LSTMCell)":
            layer = keras.layers.RNN(keras.layers.LSTMCell(C.UNITS, dtype="float64"),
                                     return_sequences=True, dtype="float64")
        else:
            layer = getattr(keras.layers, kind)(C.UNITS, return_sequences=True, dtype="float64",
                                                **cell_options)
        layer.build((None, C.TIMESTEPS, C.INPUT_DIM))
        arrays = weights(kind, cell_options, seed, "float64")
        layer.set_weights(arrays)
        for k, w in enumerate(arrays):
            saved[f"{key}/weight{k}"] = w
        saved[f"{key}/variable_dtype"] = np.array(str(numpy(layer.weights[0]).dtype))
        unmasked = call(layer, x64)[0]
        masked = call(layer, x64, C.MASK)[0]
        saved[f"{key}/unmasked"], saved[f"{key}/masked"] = unmasked, masked
        try:
            ref = getattr(reflstm, kind).from_keras(layer)
        except reflstm.ReflstmError as error:
            saved[f"{key}/from_keras_error"] = np.array(str(error))
        else:
            saved[f"{key}/from_keras_unmasked"] = ref(x64)
            try:
                saved[f"{key}/from_keras_masked"] = ref(x64, mask=C.MASK)
            except reflstm.ReflstmError as error:
                saved[f"{key}/from_keras_masked_error"] = np.array(str(error))

    # LSTM gradients by the backend's own autodiff.
    for seed, (name, case) in enumerate(C.GRADIENT_CASES.items(), start=5000):
        layer = keras.layers.LSTM(C.UNITS, return_sequences=True, return_state=True, **case)
        layer.build((None, C.TIMESTEPS, C.INPUT_DIM))
        arrays = weights("LSTM", {}, seed)
        layer.set_weights(arrays)
        rng = np.random.default_rng(seed)
        d = [rng.normal(size=(C.BATCH, C.TIMESTEPS, C.UNITS)).astype("float32"),
             rng.normal(size=(C.BATCH, C.UNITS)).astype("float32"),
             rng.normal(size=(C.BATCH, C.UNITS)).astype("float32")]
        for k, w in enumerate(arrays):
            saved[f"{name}/weight{k}"] = w
        for k, w in enumerate(d):
            saved[f"{name}/d{k}"] = w
        try:
            grads = GRADIENTS[backend](keras, layer, x, [h0, c0], C.MASK, d)
        except Exception as error:  # noqa: BLE001
            saved[f"{name}/error"] = np.array(error_text(error))
            continue
        for what, g in zip(("x", "h0", "c0", "kernel", "recurrent_kernel", "bias"), grads):
            saved[f"{name}/grad_{what}"] = np.asarray(g)

    # Functional encoder-decoders, saved as .keras: Keras 3 drops the Masking mask where a
    # recurrent layer is called with initial_state.
    from saved_models import build_model, model_inputs

    models = {"masked_encoder_decoder": masked_encoder_decoder(keras),
              "gru_encoder_decoder": build_model("gru_encoder_decoder", 3)}
    for name, model in models.items():
        rng = np.random.default_rng(4000 + len(name))
        model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])
        data = model_inputs(model)
        model.save(os.path.join(out_dir, f"{name}.keras"))
        predicted = model.predict(data, verbose=0)
        predicted = predicted if isinstance(predicted, (list, tuple)) else [predicted]
        for k, d in enumerate(data):
            saved[f"{name}/input{k}"] = d
        for k, p in enumerate(predicted):
            saved[f"{name}/out{k}"] = np.asarray(p)

    np.savez(os.path.join(out_dir, "cases.npz"), **saved)


def _jax_gradients(keras, layer, x, states, mask, d):
    """[dx, dh0, dc0, dkernel, drecurrent_kernel, dbias] of sum(outputs * d), by jax.grad."""
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x, h0, c0):
        outputs, _ = layer.stateless_call(trainable, non_trainable, x, mask=jnp.asarray(mask),
                                          initial_state=[h0, c0])
        return sum(jnp.sum(o * w) for o, w in zip(outputs, d))

    dw, dx, dh0, dc0 = jax.grad(loss, argnums=(0, 1, 2, 3))(trainable, *map(jnp.asarray, (x, *states)))
    return [dx, dh0, dc0, *dw]


def _tensorflow_gradients(keras, layer, x, states, mask, d):
    """The same by tf.GradientTape."""
    import tensorflow as tf

    x, *states = (tf.constant(a) for a in (x, *states))
    with tf.GradientTape() as tape:
        tape.watch([x, *states])
        outputs = layer(x, mask=tf.constant(mask), initial_state=states)
        loss = sum(tf.reduce_sum(o * w) for o, w in zip(outputs, d))
    return tape.gradient(loss, [x, *states, *layer.trainable_variables])


def _torch_gradients(keras, layer, x, states, mask, d):
    """The same by torch autograd."""
    import torch

    x, *states = (torch.tensor(a, requires_grad=True) for a in (x, *states))
    outputs = layer(x, mask=torch.tensor(mask), initial_state=states)
    sum((o * torch.tensor(w)).sum() for o, w in zip(outputs, d)).backward()
    return [t.grad.numpy() for t in (x, *states)] + [v.value.grad.numpy() for v in layer.trainable_variables]


GRADIENTS = {"jax": _jax_gradients, "tensorflow": _tensorflow_gradients, "torch": _torch_gradients}


def masked_encoder_decoder(keras):
    """Masking on both inputs; the decoder LSTM gets the encoder's [h, c] as initial_state."""
    source = keras.Input((6, 3))
    target = keras.Input((5, 2))
    _, h, c = keras.layers.LSTM(4, return_state=True, name="encoder")(keras.layers.Masking()(source))
    y = keras.layers.LSTM(4, return_sequences=True, name="decoder")(
        keras.layers.Masking()(target), initial_state=[h, c])
    return keras.Model([source, target], keras.layers.Dense(2)(y))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
