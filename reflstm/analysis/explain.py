"""One time step's arithmetic as text, with the real numbers: for teaching and for checking.

`step_table` takes any layer's trace: an LSTM's `Trace`, a `GRUTrace` or a `SimpleRNNTrace`, and
shows the pre-activation parts the step summed (from the trace's `preactivation`), the gates and
the states, unit by unit. `equations` is the one-line summary printed above it.
"""

from reflstm.cells.equations import GATES, GRU_GATES
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace

__all__ = ["step_table", "equations"]

_MASKED = ("(step masked: Keras computed the gates above and discarded them; {carried} carried "
           "over from the previous step)")


def equations(trace):
    """The step's equations in one line, in the names the table uses."""
    if isinstance(trace, GRUTrace):
        candidate = ("h~ = g(x_t W_h + b_h + r*(h_t-1 U_h + b'_h))" if trace.reset_after
                     else "h~ = g(x_t W_h + b_h + (r*h_t-1) U_h)")
        return (f"z, r = sigma(x_t W + b + h_t-1 U + b');  {candidate};  "
                "h_t = z*h_t-1 + (1-z)*h~")
    if isinstance(trace, SimpleRNNTrace):
        return "h_t = g(x_t W + h_t-1 U + b)"
    return ("z = x_t W + h_t-1 U + b;  i, f, o = sigma(z);  c~ = g(z);  C_t = f*C_t-1 + i*c~;  "
            "h_t = o*g(C_t)")


def step_table(trace, sample, t, units=None):
    """The pre-activation parts, gates and states of step `t` of `sample`, unit by unit.

    Args:
        trace: a `reflstm.Trace`, `reflstm.GRUTrace` or `reflstm.SimpleRNNTrace`.
        sample: the batch index.
        t: the step, counted from 0 in processing order.
        units: how many units to show (from the first); None for all.
    """
    shown = trace.units if units is None else min(units, trace.units)
    if isinstance(trace, GRUTrace):
        rows, carried = _gru_rows(trace, sample, t, shown), "h_t is"
    elif isinstance(trace, SimpleRNNTrace):
        rows, carried = _simple_rnn_rows(trace, sample, t, shown), "h_t is"
    else:
        rows, carried = _lstm_rows(trace, sample, t, shown), "C_t and h_t are"
    if trace.mask is not None and not trace.mask[sample, t]:
        rows.append(_MASKED.format(carried=carried))
    if shown < trace.units:
        rows.append(f"({trace.units - shown} more units not shown)")
    return "\n".join(rows)


def _lstm_rows(trace, sample, t, shown):
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
    return rows


def _gru_rows(trace, sample, t, shown):
    """z, r and h~ in parts: (x_t W + b) + [r *] (h_t-1 U + b'), then h_t."""
    values = {"z": trace.z, "r": trace.r, "h": trace.h_tilde}
    parts = {gate: trace.preactivation(gate) for gate in GRU_GATES}
    header = (f"{'unit':>4}  {'gate':<4} {'x_t W':>10} {'b':>10} {'h_t-1 U':>10} {'b_prime':>10} "
              f"{'r':>10} {'pre':>10}   value")
    rows = [header, "-" * len(header)]
    if trace.reset_after:
        rows.insert(0, "(pre = x_t W + b + h_t-1 U + b_prime; for h~, x_t W + b + r*(h_t-1 U + b_prime))")
    else:
        rows.insert(0, "(pre = x_t W + b + h_t-1 U; for h~ the h_t-1 U column holds (r*h_t-1) U_h, "
                    "reset before the product; reset_after=False has no b_prime)")
    for unit in range(shown):
        for gate in GRU_GATES:
            part = parts[gate]
            reset = "" if part.reset is None else f"{part.reset[sample, t, unit]:.5f}"
            label = "h~" if gate == "h" else gate
            rows.append(
                f"{unit:>4}  {label:<4} {part.input[sample, t, unit]:>10.5f} {part.input_bias[unit]:>10.5f} "
                f"{part.recurrent[sample, t, unit]:>10.5f} {part.recurrent_bias[unit]:>10.5f} "
                f"{reset:>10} {part.total[sample, t, unit]:>10.5f}   {values[gate][sample, t, unit]:.6f}"
            )
        z, h_prev = trace.z[sample, t, unit], trace.h_prev[sample, t, unit]
        rows.append(
            f"{'':>4}  h_t = z*h_t-1 + (1-z)*h~ = {z:.5f}*{h_prev:.5f} + (1-{z:.5f})*"
            f"{trace.h_tilde[sample, t, unit]:.5f} = {trace.h[sample, t, unit]:.6f}"
        )
    return rows


def _simple_rnn_rows(trace, sample, t, shown):
    part = trace.preactivation()
    header = f"{'unit':>4}  {'x_t W':>10} {'h_t-1 U':>10} {'b':>10} {'pre':>10}   h_t = g(pre)"
    rows = [header, "-" * len(header)]
    for unit in range(shown):
        rows.append(
            f"{unit:>4}  {part.input[sample, t, unit]:>10.5f} {part.recurrent[sample, t, unit]:>10.5f} "
            f"{part.bias[unit]:>10.5f} {part.total[sample, t, unit]:>10.5f}   {trace.h[sample, t, unit]:.6f}"
        )
    return rows
