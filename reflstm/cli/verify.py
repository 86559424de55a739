"""reflstm verify: the model against the Keras that wrote it, layer by layer (needs Keras)."""

import numpy as np

from reflstm.cli.inputs import INPUT_HELP, batch_of, random_input, read_input, sample_count, whole_batches
from reflstm.cli.layers import add_model_file, load_model, model_dtype
from reflstm.errors import refuse
from reflstm.models.layers import _as_list

# verify: largest difference allowed, relative to max(1, |Keras's value|), per dtype.
TOLERANCE = {np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-10}


def add_parser(commands):
    verify = commands.add_parser("verify", help="compare with Keras, layer by layer (needs Keras)")
    add_model_file(verify)
    verify.add_argument("--input", help=f"{INPUT_HELP} (default: random input of the model's shape)")
    verify.set_defaults(run=run)


def run(args):
    model = load_model(args)
    keras_model = _keras_model(args, model.keras_version)
    x = read_input(args.input, model) if args.input else random_input(model)
    tolerance = TOLERANCE[model_dtype(model)]
    # A stateful model runs batch after batch, from zero states (Keras's and ours, reset before
    # each comparison); any other model in one call.
    size = model.batch_size or sample_count(x)
    if model.batch_size is not None:
        whole_batches(model, x)
    batches = [batch_of(x, start, size) for start in range(0, sample_count(x), size)]

    def keras_run(function):
        _reset_keras_states(keras_model)
        # Keras is called eagerly: its graph-mode predict rounds float64 models at ~1e-8 (README).
        parts = [_as_list(function(batch, training=False)) for batch in batches]
        return [np.concatenate(arrays) for arrays in zip(*parts)]

    rows = [("model output", keras_run(keras_model), _as_list(model.predict(x)))]
    model.reset_state()
    traces = [model.trace(batch) for batch in batches]
    for name, layer in model.recurrent_layers.items():
        outputs = keras_run(_intermediate(keras_model, keras_model.get_layer(name)))
        parts = [layer.outputs_from_trace(trace[name]) for trace in traces]
        rows.append((f"layer {name!r} outputs", outputs, [np.concatenate(a) for a in zip(*parts)]))
    worst = 0.0
    for label, theirs, ours in rows:
        difference = max(_relative_difference(a, b) for a, b in zip(ours, theirs))
        worst = max(worst, difference)
        print(f"{label:<40} largest difference {difference:.3g}")
    verdict = "OK" if worst <= tolerance else "DIFFERENT"
    print(f"{verdict}: largest difference {worst:.3g}, tolerance {tolerance:g} "
          f"({model_dtype(model)}, relative to max(1, |Keras|))")
    return 0 if worst <= tolerance else 1


def _reset_keras_states(keras_model):
    """Zero the states of a Keras model's stateful layers (Keras 3: reset_state, tf_keras: reset_states)."""
    for layer in keras_model.layers:
        if getattr(layer, "stateful", False):
            (getattr(layer, "reset_state", None) or layer.reset_states)()


def _keras_model(args, keras_version):
    """The file loaded by the Keras that wrote it (Keras 3, or tf_keras for Keras 2)."""
    from reflstm.frameworks.keras_import import import_keras

    if keras_version == 1:
        raise refuse("verify", "a file that an installed Keras loads", "a Keras 1 file, which neither "
                     "Keras 3 nor tf_keras loads any more (reflstm reads it as Keras 1 computed: see the README)")
    try:
        keras = import_keras(keras_version)
        saving = keras.saving if keras_version == 3 else keras.models
        if args.architecture is None:
            return saving.load_model(args.file, compile=False, safe_mode=True)
        with open(args.architecture) as f:
            model = keras.models.model_from_json(f.read())
        model.load_weights(args.file)
        return model
    except ImportError as error:
        raise refuse("Keras", f"{'keras' if keras_version == 3 else 'tf_keras'} installed to verify "
                     "against (pip install 'reflstm[keras]')", f"{error.name} is not installed") from None


def _intermediate(keras_model, layer):
    """A Keras model from the model's inputs to `layer`'s outputs."""
    package = type(keras_model).__module__.split(".")[0]
    if package == "keras":
        import keras
    else:
        import tf_keras as keras
    inputs = keras_model.inputs if len(keras_model.inputs) > 1 else keras_model.inputs[0]
    return keras.Model(inputs, layer.output)


def _relative_difference(ours, theirs):
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        return np.inf
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1.0), initial=0.0))
