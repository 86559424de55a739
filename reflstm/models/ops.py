"""The Keras 3 operations that saved functional graphs use to carry masks between layers.

Keras 3 records how each layer's mask was computed as operations in the model config (for
example ``NotEqual`` and ``Any`` for a Masking layer's mask, ``LogicalOr`` for a merge) and
passes the result to the layer as its ``mask`` argument. These few operations are data, not
code: each is a NumPy one-liner here, and any other operation is refused.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse
from reflstm.formats.fields import Fields, kind_of

__all__ = ["Operation", "OPERATIONS"]

OPERATIONS = {
    "NotEqual": lambda config, a, b: np.not_equal(a, b),
    "Equal": lambda config, a, b: np.equal(a, b),
    "Any": lambda config, x: np.any(x, axis=config.get("axis"), keepdims=config.get("keepdims", False)),
    "All": lambda config, x: np.all(x, axis=config.get("axis"), keepdims=config.get("keepdims", False)),
    "LogicalOr": lambda config, a, b: np.logical_or(a, b),
    "LogicalAnd": lambda config, a, b: np.logical_and(a, b),
    "LogicalNot": lambda config, x: np.logical_not(x),
    "ExpandDims": lambda config, x: np.expand_dims(x, config.get("axis")),
    "Squeeze": lambda config, x: np.squeeze(x, axis=config.get("axis")),
    "ZerosLike": lambda config, x: np.zeros_like(x, dtype=config.get("dtype") or x.dtype),
    "OnesLike": lambda config, x: np.ones_like(x, dtype=config.get("dtype") or x.dtype),
    "Concatenate": lambda config, xs: np.concatenate(xs, axis=config.get("axis", 0)),
    # Attention.compute_mask (keras/src/layers/attention/attention.py) records its query mask so;
    # sparse and ragged only change how a backend stores the same values.
    "ConvertToTensor": lambda config, x: np.asarray(x, dtype=config.get("dtype")),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Operation:
    """One recorded Keras 3 operation; `template` holds its arguments, tensors as placeholders."""

    name: str
    kind: str
    config: dict

    def __post_init__(self):
        if self.kind not in OPERATIONS:
            raise refuse(
                f"operation {self.name!r}",
                f"one of the mask operations {', '.join(sorted(OPERATIONS))}",
                f"class {self.kind!r}",
            )
        # The fields the operations read, typed before any run.
        fields = Fields(self.config, f"operation {self.name!r}: config")
        axis = fields.raw("axis")
        if not (axis is None or _is_int(axis) or (isinstance(axis, (list, tuple)) and all(map(_is_int, axis)))):
            raise refuse(f"operation {self.name!r}: field 'axis'", "an integer, a list of them, or null",
                         kind_of(axis))
        fields.bool("keepdims", False)
        fields.str("dtype", None, choices=_DTYPES, optional=True)

    def __call__(self, args):
        """The operation on its arguments (arrays where the recorded call had tensors)."""
        try:
            return OPERATIONS[self.kind](self.config, *args)
        except (ValueError, TypeError, IndexError) as error:  # np.exceptions.AxisError is both
            raise refuse(f"operation {self.name!r}", "arguments it can take",
                         f"ones it cannot ({type(error).__name__}: {str(error)[:100]})") from None


_DTYPES = ("bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)
