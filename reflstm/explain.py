"""One time step's arithmetic as text, with the real numbers: for teaching and for checking."""

from reflstm.equations import GATES

__all__ = ["step_table"]


def step_table(trace, sample, t, units=None):
    """The pre-activation parts, gates and states of step `t` of `sample`, unit by unit.

    Args:
        trace: a `reflstm.Trace`.
        sample: the batch index.
        t: the step, counted from 0 in processing order.
        units: how many units to show (from the first); None for all.
    """
    shown = trace.units if units is None else min(units, trace.units)
    values = {"i": trace.i, "f": trace.f, "c": trace.c_tilde, "o": trace.o}
    parts = {gate: trace.preactivation(gate) for gate in GATES}
    header = f"{'unit':>4}  {'gate':<4} {'x_t W':>10} {'h_t-1 U':>10} {'b':>10} {'z':>10}   value"
    rows = [header, "-" * len(header)]
    for unit in range(shown):
        for gate in GATES:
            part = parts[gate]
            label = "c~" if gate == "c" else gate
            rows.append(
                f"{unit:>4}  {label:<4} {part.input[sample, t, unit]:>10.5f} "
                f"{part.recurrent[sample, t, unit]:>10.5f} {part.bias[unit]:>10.5f} "
                f"{part.total[sample, t, unit]:>10.5f}   {values[gate][sample, t, unit]:.6f}"
            )
        c_prev, c, h = trace.c_prev[sample, t, unit], trace.c[sample, t, unit], trace.h[sample, t, unit]
        rows.append(
            f"{'':>4}  C_t = f*C_t-1 + i*c~ = {trace.f[sample, t, unit]:.5f}*{c_prev:.5f} + "
            f"{trace.i[sample, t, unit]:.5f}*{trace.c_tilde[sample, t, unit]:.5f} = {c:.6f}"
        )
        rows.append(f"{'':>4}  h_t = o*g(C_t) = {trace.o[sample, t, unit]:.5f}*g({c:.5f}) = {h:.6f}")
    if trace.mask is not None and not trace.mask[sample, t]:
        rows.append("(step masked: Keras computed the gates above and discarded them; "
                    "C_t and h_t are carried over from the previous step)")
    if shown < trace.units:
        rows.append(f"({trace.units - shown} more units not shown)")
    return "\n".join(rows)
