"""BatchNormalization (inference) and LayerNormalization, in Keras's order of operations.

Both normalise x by a mean μ and a variance σ² along some axes, then scale and shift:

    r = 1 / sqrt(σ² + ε)              (TensorFlow's rsqrt)
    y = x · (r γ) + (β − μ · (r γ))   (tf.nn.batch_normalization's association)

BatchNormalization takes μ and σ² from its moving statistics (a fixed affine map at inference);
LayerNormalization computes them per sample over `axis`. Both support masking: the mask passes on.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse

__all__ = ["BatchNormalization", "LayerNormalization"]


def _scale_and_shift(x, mean, variance, epsilon, gamma, beta):
    """tf.nn.batch_normalization (tensorflow/python/ops/nn_impl.py): inv = rsqrt(var + ε) · γ,
    then x · inv + (β − μ · inv); returns (y, inv)."""
    inv = 1 / np.sqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    shift = -mean * inv if beta is None else beta - mean * inv
    return x * inv + shift, inv


def _broadcast(v, axes, ndim):
    """A parameter over `axes` (sorted, non-negative), shaped to broadcast against an ndim array."""
    if v is None:
        return None
    shape = [1] * ndim
    for a, size in zip(axes, v.shape):
        shape[a] = size
    return v.reshape(shape)


def _axes(name, axes, x):
    """`axes` of x as non-negative, strictly increasing positions; refused when out of range."""
    if any(not -x.ndim <= a < x.ndim for a in axes) or 0 in [a % x.ndim for a in axes]:
        raise refuse(f"input of layer {name!r}", f"an array with axes {list(axes)} other than the batch", x)
    positions = [a % x.ndim for a in axes]
    if positions != sorted(set(positions)):
        raise refuse(f"layer {name!r}: axis", "axes in increasing order of position", list(axes))
    return positions


def _check_parameters(name, arrays, expected, x):
    for array in arrays:
        if array is not None and array.shape != expected:
            raise refuse(f"input of layer {name!r}", f"sizes {expected} on the normalised axes, as its "
                         f"weights have", x)


@dataclasses.dataclass(frozen=True, eq=False)
class BatchNormalization:
    """y = (x − moving_mean) / sqrt(moving_variance + ε) · γ + β along `axis`, as Keras infers
    (keras/src/layers/normalization/batch_normalization.py, tf_keras's likewise, both through
    tf.nn.batch_normalization). Passes the mask on (used only in training)."""

    name: str
    axis: int
    epsilon: float
    gamma: "np.ndarray | None"  # (channels,)
    beta: "np.ndarray | None"  # (channels,)
    moving_mean: np.ndarray  # (channels,)
    moving_variance: np.ndarray  # (channels,)
    keras_version: int

    def __call__(self, inputs, masks):
        y, _ = self._normalize(inputs[0])
        return [y], list(masks)

    def vjp(self, inputs, masks, d_outputs):
        """An affine map at inference: dx = dy · (r γ)."""
        _, inv = self._normalize(inputs[0])
        return [d_outputs[0] * inv]

    def _normalize(self, x):
        x = x.astype(self.moving_mean.dtype, copy=False)
        if self.keras_version != 3 and x.ndim > 3:
            # tf_keras's layer runs fused_batch_norm on 4-D and 5-D inputs, a different association.
            raise refuse(f"input of layer {self.name!r}", "a 2-D or 3-D array (tf_keras fuses batch "
                         "normalisation of 4-D and 5-D inputs, which reflstm does not model)", x)
        axes = _axes(self.name, (self.axis,), x)
        params = (self.gamma, self.beta, self.moving_mean, self.moving_variance)
        _check_parameters(self.name, params, (x.shape[axes[0]],), x)
        gamma, beta, mean, variance = (_broadcast(p, axes, x.ndim) for p in params)
        return _scale_and_shift(x, mean, variance, self.epsilon, gamma, beta)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerNormalization:
    """Each sample normalised by its own mean and variance over `axis` (one or several axes).

    Keras 3 (keras/src/ops/nn.py _layer_normalization) and tf_keras without fusion compute
    μ, σ² = tf.nn.moments(x) and then tf.nn.batch_normalization's association (module docstring).
    tf_keras fuses when the axes run contiguously to the last, ε >= 1.001e-5 and the layer is
    float32 (tf_keras/src/layers/normalization/layer_normalization.py `_fused_can_be_used`):
    then fused_batch_norm gives ((x − μ) · r) and the layer applies · γ + β after it. Keras 3's
    deprecated `rms_scaling` divides by sqrt(σ² + ε) (the variance, as Keras warns) and multiplies
    by γ, with no β. Passes the mask on.
    """

    name: str
    axis: tuple  # as the config gives it (Keras 3 sorts it)
    epsilon: float
    gamma: "np.ndarray | None"  # sizes of x on the axes
    beta: "np.ndarray | None"
    keras_version: int
    rms_scaling: bool = False
    dtype: np.dtype = np.dtype("float32")

    def __call__(self, inputs, masks):
        return [self._forward(inputs[0])[0]], list(masks)

    def vjp(self, inputs, masks, d_outputs):
        """dx from dy, with g = dy · γ and x̂ = (x − μ) r over each sample's N normalised values:
        dx = r (g − mean(g) − x̂ mean(g x̂)); with rms_scaling dx = r g − r³ (x − μ) mean(g x)."""
        x = inputs[0].astype(self.dtype, copy=False)
        _, axes, mean, r, gamma = self._forward(x)
        g = d_outputs[0] if gamma is None else d_outputs[0] * gamma
        if self.rms_scaling:
            return [r * g - r**3 * (x - mean) * np.mean(g * x, axis=axes, keepdims=True)]
        x_hat = (x - mean) * r
        return [r * (g - np.mean(g, axis=axes, keepdims=True)
                     - x_hat * np.mean(g * x_hat, axis=axes, keepdims=True))]

    def _forward(self, x):
        """(y, axes, μ, r, γ broadcast) for x."""
        x = x.astype(self.dtype, copy=False)
        axes = tuple(_axes(self.name, self.axis, x))
        _check_parameters(self.name, (self.gamma, self.beta), tuple(x.shape[a] for a in axes), x)
        gamma, beta = _broadcast(self.gamma, axes, x.ndim), _broadcast(self.beta, axes, x.ndim)
        if self._fused(axes, x.ndim):
            n = np.prod([x.shape[a] for a in axes])
            inverse_n = self.dtype.type(1.0) / self.dtype.type(n)  # fused_batch_norm_op.cc: sum · (1/n)
            mean = np.sum(x, axis=axes, keepdims=True) * inverse_n
            centred = x - mean
            variance = np.sum(centred * centred, axis=axes, keepdims=True) * inverse_n
            r = 1 / np.sqrt(variance + self.epsilon)
            y = centred * r
            y = y if gamma is None else y * gamma
            return (y if beta is None else y + beta), axes, mean, r, gamma
        mean = np.mean(x, axis=axes, keepdims=True)
        variance = np.mean(np.square(x - mean), axis=axes, keepdims=True)  # tf.nn.moments
        r = 1 / np.sqrt(variance + self.epsilon)
        if self.rms_scaling:
            y = x * r
            return (y if gamma is None else y * gamma), axes, mean, r, gamma
        y, _ = _scale_and_shift(x, mean, variance, self.epsilon, gamma, beta)
        return y, axes, mean, r, gamma

    def _fused(self, axes, ndim):
        """Whether tf_keras runs this layer through fused_batch_norm."""
        contiguous = axes[-1] == ndim - 1 and axes[-1] - axes[0] == len(axes) - 1
        return (self.keras_version != 3 and contiguous and self.epsilon >= 1.001e-5
                and self.dtype == np.float32)
