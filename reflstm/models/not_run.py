"""A layer a model file holds but reflstm does not run: kept by name, class and weights.

A Lambda (its Python code is never run), a class from outside Keras (never imported), or a
Keras layer reflstm does not compute: the file still loads, so that its other layers can be
inspected and its recurrent layers traced alone (`Model.layer`), but running the model
(`Model.predict`, `trace`, `backward`) is refused, naming this layer, before anything is computed.
"""

import dataclasses

from reflstm.errors import refuse

__all__ = ["NotRun"]


@dataclasses.dataclass(frozen=True, eq=False)
class NotRun:
    """A layer reflstm keeps but never runs; `weights` are its arrays as the file stores them
    (checked, read-only, never interpreted) and `reason` says why it is not run."""

    name: str
    kind: str  # the Keras class the config names, e.g. "Lambda"
    weights: tuple
    reason: str

    def __post_init__(self):
        for array in self.weights:
            array.flags.writeable = False

    def __call__(self, inputs, masks):
        raise self.refusal()

    def vjp(self, inputs, masks, d_outputs):
        raise self.refusal()

    def refusal(self):
        """The error a run of this layer raises."""
        return refuse(f"layer {self.name!r}", "a layer reflstm runs", f"class {self.kind!r}: {self.reason}")
