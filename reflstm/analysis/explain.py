"""One time step's arithmetic as text, with the real numbers: for teaching and for checking.

`step_table` takes any layer's trace: an LSTM's `Trace`, a `GRUTrace` or a `SimpleRNNTrace`, and
shows the pre-activation parts the step summed (from the trace's `preactivation`), the gates and
the states, unit by unit. `equations` is the one-line summary printed above it.
"""

from reflstm.cells.equations import GATES, GRU_GATES
from reflstm.cells.trace import GRUTrace, SimpleRNNTrace

__all__ = ["step_table", "step_numbers", "equations"]

_MASKED = ("(step masked: Keras computed the gates above and discarded them; {carried} carried "
           "over from the previous step)")


# The line above a GRU's table, by reset_after.
GRU_NOTE = {
    True: "(pre = x_t W + b + h_t-1 U + b_prime; for h~, x_t W + b + r*(h_t-1 U + b_prime))",
    False: ("(pre = x_t W + b + h_t-1 U; for h~ the h_t-1 U column holds (r*h_t-1) U_h, "
            "reset before the product; reset_after=False has no b_prime)"),
}


def masked_note(trace):
    """The line `step_table` adds under a masked step."""
    return _MASKED.format(carried="C_t and h_t are" if not isinstance(trace, (GRUTrace, SimpleRNNTrace)) else "h_t is")


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


def step_numbers(trace, sample):
    """The numbers `step_table` prints, for every step and unit of `sample` at once.

    Returns (gates, states): gates is {label: {column: array}} in the table's row order, states is
    {name: array}; each array is (timesteps, units) in processing order, or (units,) for a bias.
    The text table and the HTML report (`reflstm.explorer`) both read their numbers from here.

    LSTM: gates "i", "f", "c~", "o" with columns "x_t W", "h_t-1 U", "b", "z", "value"; states
    "C_t-1", "C_t", "h_t". GRU: gates "z", "r", "h~" with columns "x_t W", "b", "h_t-1 U",
    "b_prime", "pre", "value" (and "r" for h~ with reset_after=True); states "h_t-1", "h_t".
    SimpleRNN: one row "h" with columns "x_t W", "h_t-1 U", "b", "pre", "value" (h_t); no states.
    """
    if isinstance(trace, GRUTrace):
        values = {"z": trace.z, "r": trace.r, "h": trace.h_tilde}
        gates = {}
        for gate in GRU_GATES:
            part = trace.preactivation(gate)
            columns = {"x_t W": part.input[sample], "b": part.input_bias, "h_t-1 U": part.recurrent[sample],
                       "b_prime": part.recurrent_bias}
            if part.reset is not None:
                columns["r"] = part.reset[sample]
            columns.update({"pre": part.total[sample], "value": values[gate][sample]})
            gates["h~" if gate == "h" else gate] = columns
        return gates, {"h_t-1": trace.h_prev[sample], "h_t": trace.h[sample]}
    if isinstance(trace, SimpleRNNTrace):
        part = trace.preactivation()
        return {"h": {"x_t W": part.input[sample], "h_t-1 U": part.recurrent[sample], "b": part.bias,
                      "pre": part.total[sample], "value": trace.h[sample]}}, {}
    values = {"i": trace.i, "f": trace.f, "c": trace.c_tilde, "o": trace.o}
    gates = {}
    for gate in GATES:
        part = trace.preactivation(gate)
        gates["c~" if gate == "c" else gate] = {
            "x_t W": part.input[sample], "h_t-1 U": part.recurrent[sample], "b": part.bias,
            "z": part.total[sample], "value": values[gate][sample]}
    return gates, {"C_t-1": trace.c_prev[sample], "C_t": trace.c[sample], "h_t": trace.h[sample]}


def _at(array, t, unit):
    """One number of a `step_numbers` array: (timesteps, units), or (units,) for a bias."""
    return array[unit] if array.ndim == 1 else array[t, unit]


def step_table(trace, sample, t, units=None):
    """The pre-activation parts, gates and states of step `t` of `sample`, unit by unit.

    Args:
        trace: a `reflstm.Trace`, `reflstm.GRUTrace` or `reflstm.SimpleRNNTrace`.
        sample: the batch index.
        t: the step, counted from 0 in processing order.
        units: how many units to show (from the first); None for all.
    """
    shown = trace.units if units is None else min(units, trace.units)
    gates, states = step_numbers(trace, sample)
    if isinstance(trace, GRUTrace):
        rows = _gru_rows(gates, states, t, shown, trace.reset_after)
    elif isinstance(trace, SimpleRNNTrace):
        rows = _simple_rnn_rows(gates, t, shown)
    else:
        rows = _lstm_rows(gates, states, t, shown)
    if trace.mask is not None and not trace.mask[sample, t]:
        rows.append(masked_note(trace))
    if shown < trace.units:
        rows.append(f"({trace.units - shown} more units not shown)")
    return "\n".join(rows)


def _lstm_rows(gates, states, t, shown):
    header = f"{'unit':>4}  {'gate':<4} {'x_t W':>10} {'h_t-1 U':>10} {'b':>10} {'z':>10}   value"
    rows = [header, "-" * len(header)]
    for unit in range(shown):
        v = {label: {k: _at(a, t, unit) for k, a in columns.items()} for label, columns in gates.items()}
        for label, n in v.items():
            rows.append(
                f"{unit:>4}  {label:<4} {n['x_t W']:>10.5f} {n['h_t-1 U']:>10.5f} {n['b']:>10.5f} "
                f"{n['z']:>10.5f}   {n['value']:.6f}"
            )
        c_prev, c, h = (_at(states[name], t, unit) for name in ("C_t-1", "C_t", "h_t"))
        rows.append(
            f"{'':>4}  C_t = f*C_t-1 + i*c~ = {v['f']['value']:.5f}*{c_prev:.5f} + "
            f"{v['i']['value']:.5f}*{v['c~']['value']:.5f} = {c:.6f}"
        )
        rows.append(f"{'':>4}  h_t = o*g(C_t) = {v['o']['value']:.5f}*g({c:.5f}) = {h:.6f}")
    return rows


def _gru_rows(gates, states, t, shown, reset_after):
    """z, r and h~ in parts: (x_t W + b) + [r *] (h_t-1 U + b'), then h_t."""
    header = (f"{'unit':>4}  {'gate':<4} {'x_t W':>10} {'b':>10} {'h_t-1 U':>10} {'b_prime':>10} "
              f"{'r':>10} {'pre':>10}   value")
    rows = [header, "-" * len(header)]
    rows.insert(0, GRU_NOTE[reset_after])
    for unit in range(shown):
        v = {label: {k: _at(a, t, unit) for k, a in columns.items()} for label, columns in gates.items()}
        for label, n in v.items():
            reset = f"{n['r']:.5f}" if "r" in n else ""
            rows.append(
                f"{unit:>4}  {label:<4} {n['x_t W']:>10.5f} {n['b']:>10.5f} "
                f"{n['h_t-1 U']:>10.5f} {n['b_prime']:>10.5f} "
                f"{reset:>10} {n['pre']:>10.5f}   {n['value']:.6f}"
            )
        z, h_prev, h = v["z"]["value"], _at(states["h_t-1"], t, unit), _at(states["h_t"], t, unit)
        rows.append(
            f"{'':>4}  h_t = z*h_t-1 + (1-z)*h~ = {z:.5f}*{h_prev:.5f} + (1-{z:.5f})*"
            f"{v['h~']['value']:.5f} = {h:.6f}"
        )
    return rows


def _simple_rnn_rows(gates, t, shown):
    header = f"{'unit':>4}  {'x_t W':>10} {'h_t-1 U':>10} {'b':>10} {'pre':>10}   h_t = g(pre)"
    rows = [header, "-" * len(header)]
    for unit in range(shown):
        n = {k: _at(a, t, unit) for k, a in gates["h"].items()}
        rows.append(
            f"{unit:>4}  {n['x_t W']:>10.5f} {n['h_t-1 U']:>10.5f} "
            f"{n['b']:>10.5f} {n['pre']:>10.5f}   {n['value']:.6f}"
        )
    return rows
