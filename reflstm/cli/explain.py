"""reflstm explain: one time step's arithmetic, with the real numbers."""

from reflstm.cli.inputs import INPUT_HELP, one_batch, random_input, read_input
from reflstm.cli.layers import add_model_file, layer_trace, load_model
from reflstm.errors import refuse


def add_parser(commands):
    explain = commands.add_parser("explain", help="one time step's arithmetic, with the real numbers")
    add_model_file(explain)
    explain.add_argument("--layer", required=True, help="the recurrent layer's name (see inspect)")
    explain.add_argument("--step", type=int, required=True, help="counted from 0, in processing order")
    explain.add_argument("--sample", type=int, default=0, help="which sample of the input, from 0 (default 0)")
    explain.add_argument("--input", help=f"{INPUT_HELP} (default: random input of the model's shape)")
    explain.add_argument("--units", type=int, default=4, help="how many units to show (default 4)")
    explain.add_argument("--direction", choices=["forward", "backward"],
                         help="for a Bidirectional layer (default forward)")
    explain.set_defaults(run=run)


def run(args):
    from reflstm.analysis.explain import equations, step_table

    if args.units < 1:
        raise refuse("--units", "a positive number of units", str(args.units))
    model = load_model(args)
    source = args.input or "random input (no --input given)"
    x = read_input(args.input, model) if args.input else random_input(model)
    one_batch(model, x)
    trace, label = layer_trace(model, args.layer, x, args.direction)
    batch, timesteps = trace.h.shape[:2]
    if not 0 <= args.step < timesteps:
        raise refuse("--step", f"a step in 0..{timesteps - 1}", str(args.step))
    if not 0 <= args.sample < batch:
        raise refuse("--sample", f"a sample in 0..{batch - 1}", str(args.sample))
    print(f"layer {label}, sample {args.sample}, step {args.step} of {timesteps} "
          f"(processing order), input: {source}")
    print(equations(trace))
    print(step_table(trace, args.sample, args.step, units=args.units))
    return 0
