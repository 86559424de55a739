"""Reshape and Permute: each sample's axes regrouped or reordered; the batch axis stays first.

Neither supports masking. Keras 3 ends the mask there (keras/src/layers/layer.py sets an output
mask only for layers with supports_masking); tf_keras refuses to build a model that passes one
(tf_keras/src/engine/base_layer.py compute_mask raises TypeError), so a mask arriving here in a
tf_keras model is refused.
"""

import dataclasses
import math

import numpy as np

from reflstm.errors import refuse

__all__ = ["Reshape", "Permute"]


def _end_mask(name, masks, keras_version):
    if keras_version != 3 and any(m is not None for m in masks):
        raise refuse(f"mask of layer {name!r}", "no mask (tf_keras's layer does not support masking "
                     "and refuses one)", "a mask")
    return [None]


@dataclasses.dataclass(frozen=True, eq=False)
class Reshape:
    """(batch, ...) to (batch, *target_shape); one entry of target_shape may be -1 (inferred)."""

    name: str
    target_shape: tuple
    keras_version: int

    def __call__(self, inputs, masks):
        (x,) = inputs
        per_sample = math.prod(x.shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)  # exact: sizes up to 2**31 each
        if per_sample % known if -1 in self.target_shape else per_sample != known:
            raise refuse(f"input of layer {self.name!r}", f"samples whose size fits target_shape "
                         f"{self.target_shape}", x)
        return [x.reshape((x.shape[0],) + self.target_shape)], _end_mask(self.name, masks, self.keras_version)

    def vjp(self, inputs, masks, d_outputs):
        return [d_outputs[0].reshape(inputs[0].shape)]


@dataclasses.dataclass(frozen=True, eq=False)
class Permute:
    """Axes 1..n of each sample reordered: output axis i is input axis dims[i - 1]."""

    name: str
    dims: tuple  # a permutation of 1..n
    keras_version: int

    def __call__(self, inputs, masks):
        (x,) = inputs
        if x.ndim != len(self.dims) + 1:
            raise refuse(f"input of layer {self.name!r}", f"a {len(self.dims) + 1}-D array, as dims "
                         f"{self.dims} permute {len(self.dims)} axes", x)
        return [np.transpose(x, (0,) + self.dims)], _end_mask(self.name, masks, self.keras_version)

    def vjp(self, inputs, masks, d_outputs):
        return [np.transpose(d_outputs[0], np.argsort((0,) + self.dims))]
