"""The Keras 3 operations that saved functional graphs use to carry masks between layers.

Keras 3 records how each layer's mask was computed as operations in the model config (for
example ``NotEqual`` and ``Any`` for a Masking layer's mask, ``LogicalOr`` for a merge) and
passes the result to the layer as its ``mask`` argument. These few operations are data, not
code: each is a NumPy one-liner here, and any other operation is refused.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse

__all__ = ["Operation", "OPERATIONS"]

OPERATIONS = {
    "NotEqual": lambda config, a, b: np.not_equal(a, b),
    "Equal": lambda config, a, b: np.equal(a, b),
    "Any": lambda config, x: np.any(x, axis=config.get("axis"), keepdims=config.get("keepdims", False)),
    "All": lambda config, x: np.all(x, axis=config.get("axis"), keepdims=config.get("keepdims", False)),
    "LogicalOr": lambda config, a, b: np.logical_or(a, b),
    "LogicalAnd": lambda config, a, b: np.logical_and(a, b),
    "LogicalNot": lambda config, x: np.logical_not(x),
    "ExpandDims": lambda config, x: np.expand_dims(x, config["axis"]),
    "Squeeze": lambda config, x: np.squeeze(x, axis=config.get("axis")),
    "ZerosLike": lambda config, x: np.zeros_like(x, dtype=config.get("dtype") or x.dtype),
    "OnesLike": lambda config, x: np.ones_like(x, dtype=config.get("dtype") or x.dtype),
    "Concatenate": lambda config, xs: np.concatenate(xs, axis=config.get("axis", 0)),
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

    def __call__(self, args):
        return OPERATIONS[self.kind](self.config, *args)
