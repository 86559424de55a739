"""reflstm inspect: the layers, and each recurrent layer's gate blocks and weight statistics."""

from reflstm.cells.equations import gate_slice
from reflstm.cli.layers import GATES_OF, add_model_file, directions, load_model
from reflstm.models.not_run import NotRun


def add_parser(commands):
    inspect = commands.add_parser("inspect", help="layers (as Keras's model.summary() lists them, those reflstm "
                                  "does not run marked), and each recurrent layer's gate blocks and weight statistics")
    add_model_file(inspect)
    inspect.set_defaults(run=run)


def run(args):
    model = load_model(args)
    print(f"{args.file}: model {model.name!r}, saved by {model.saved_by}")
    for name, shape in model.graph.input_shapes.items():
        print(f"  input {name!r}: shape {shape}")
    stateful = model.stateful_layers
    if stateful:
        several = len(stateful) > 1
        print(f"  stateful: layer{'s' if several else ''} {', '.join(map(repr, stateful))} "
              f"{'carry their' if several else 'carries its'} states from one batch of "
              f"{model.batch_size} samples to the next; every command starts them at zero, as Keras "
              "does when it loads the file")
    for name, layer in model.layers.items():
        not_run = f" (not run: {layer.reason})" if isinstance(layer, NotRun) else ""
        print(f"  layer {name!r}: {_keras_class(layer)}{' (stateful)' if name in stateful else ''}{not_run}")
    print()
    print(model.summary())
    for name, layer in model.recurrent_layers.items():
        for label, cell in directions(layer):
            print()
            print(f"{type(cell).__name__} {name!r}{label}: {cell}")
            _print_gate_blocks(cell)
    return 0


def _keras_class(layer):
    """The Keras class a layer stands for, as the user wrote it (not reflstm's internal class)."""
    kind = type(layer).__name__
    if getattr(layer, "keras_class", ""):
        return layer.keras_class
    if kind == "Identity":
        return "Dropout (the identity at inference)"
    return getattr(layer, "kind", None) or kind


def _print_gate_blocks(cell):
    """Each gate's columns in kernel, recurrent_kernel and bias, with statistics; a GRU with
    reset_after has two bias rows, the input bias b and the recurrent bias b'."""
    u, gates = cell.units, GATES_OF[type(cell).__name__]
    print(f"  kernel {cell.kernel.shape}, recurrent_kernel {cell.recurrent_kernel.shape}, "
          f"bias {None if cell.bias is None else cell.bias.shape}; gate columns (order {', '.join(gates)}):")
    header = f"    {'gate':<4} {'columns':<10} {'weight':<23} {'mean':>9} {'std':>9} {'min':>9} {'max':>9}"
    print(header)
    two_rows = getattr(cell, "reset_after", False) and cell.bias is not None
    for gate in gates:
        cols = gate_slice(gate, u, gates) if len(gates) > 1 else slice(0, u)
        blocks = [("kernel", cell.kernel[:, cols]), ("recurrent_kernel", cell.recurrent_kernel[:, cols])]
        if two_rows:
            blocks += [("bias (input, row 0)", cell.bias[0, cols]), ("bias (recurrent, row 1)", cell.bias[1, cols])]
        elif cell.bias is not None:
            blocks += [("bias", cell.bias[cols])]
        for label, block in blocks:
            print(f"    {gate:<4} {f'{cols.start}:{cols.stop}':<10} {label:<23} {block.mean():>9.4f} "
                  f"{block.std():>9.4f} {block.min():>9.4f} {block.max():>9.4f}")
