"""The one error type reflstm raises for bad input."""


class ReflstmError(ValueError):
    """Bad input: the message names the argument, what was expected and what was received."""


def describe(value):
    """A short description of a received value, for error messages."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def shape_pattern(shape):
    """An expected shape in words: "(any, 32)" where a dimension is open (None)."""
    items = ["any" if s is None else str(s) for s in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def refuse(argument, expected, received):
    """Build the error for `argument`: `expected` is prose, `received` a value or a description."""
    if not isinstance(received, str):
        received = describe(received)
    return ReflstmError(f"{argument}: expected {expected}, received {received}")


def pick(table, kind, framework):
    """table[kind]: what `framework` has for reflstm layer `kind` ("LSTM", "GRU", "SimpleRNN"),
    refused by name when it has nothing."""
    if kind not in table:
        raise refuse(kind, f"a layer {framework} has ({', '.join(table)})", f"reflstm.{kind}")
    return table[kind]
