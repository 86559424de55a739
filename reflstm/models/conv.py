"""Convolution, pooling and the 1-D shape layers that sit around recurrent layers.

Inputs are (batch, steps, channels) ("channels_last", the only data_format read). Windows run
along the steps as TensorFlow runs them; with k taps, dilation d, stride s:

    span = d·(k − 1) + 1
    "valid":  no padding;            out = ⌊(steps − span) / s⌋ + 1
    "same":   out = ⌈steps / s⌉;     pad = max((out − 1)·s + span − steps, 0),
              ⌊pad / 2⌋ on the left, the rest (the larger half) on the right
    "causal": d·(k − 1) on the left (Conv1D only), then "valid"

    Conv1D:           y[o, f] = activation(Σ_j Σ_c x[o·s + j·d, c] kernel[j, c, f] + bias[f])
                      (with groups, filter f sees only its group's input channels)
    MaxPooling1D:     y[o, c] = max_j x[o·s + j, c]      ("same" pads with −∞)
    AveragePooling1D: y[o, c] = mean of x[o·s + j, c] over the j that fall on real steps

Masks: only GlobalAveragePooling1D reads one (it averages the unmasked steps), and it ends it.
The others do not support masking and end the mask: Keras 3 with a warning
(keras/src/layers/layer.py, "does not support masking"), tf_keras silently (tf_keras
base_layer.py `_set_mask_metadata` returns early); neither refuses the model.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse
from reflstm.models.layers import Activation

__all__ = [
    "Conv1D", "MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling1D",
    "ZeroPadding1D", "Cropping1D", "UpSampling1D", "window_padding",
]


def window_padding(steps, span, stride, padding):
    """(left, right) zeros a window of `span` steps moving by `stride` needs, as TensorFlow pads."""
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    out = -(-steps // stride)  # ⌈steps / stride⌉
    total = max((out - 1) * stride + span - steps, 0)
    return total // 2, total - total // 2


def _input(layer, x):
    if x.ndim != 3:
        raise refuse(f"input of layer {layer.name!r}", "a 3-D array (batch, steps, channels)", x)
    return x


def _windows(layer, x, span, stride, padding, fill=0.0):
    """x padded as `padding` says, and its windows: (batch, out, channels, span), a view."""
    left, right = window_padding(x.shape[1], span, stride, padding)
    padded = _pad(x, left, right, fill)
    if padded.shape[1] < span:
        raise refuse(f"input of layer {layer.name!r}",
                     f"at least {span - left - right} steps for a window of {span} ({padding!r} padding)", x)
    view = np.lib.stride_tricks.sliding_window_view(padded, span, axis=1)  # (batch, steps', channels, span)
    return view[:, ::stride], (left, right)


def _scatter(windows_grad, steps, stride, dilation, pads):
    """The gradient of x from that of its windows (batch, out, channels, k): each tap's
    gradients added back at the steps it read, then the padding cut off."""
    batch, out, channels, taps = windows_grad.shape
    left, right = pads
    dx = np.zeros((batch, steps + left + right, channels), windows_grad.dtype)  # (batch, padded steps, channels)
    for j in range(taps):
        start = j * dilation
        dx[:, start:start + (out - 1) * stride + 1:stride] += windows_grad[..., j]
    return _crop(dx, left, right)


@dataclasses.dataclass(frozen=True, eq=False)
class Conv1D:
    """keras Conv1D: a correlation along the steps (not flipped), then bias and activation."""

    name: str
    kernel: np.ndarray  # (kernel_size, input_dim // groups, filters)
    bias: "np.ndarray | None"  # (filters,)
    strides: int
    padding: str  # "valid", "same" or "causal"
    dilation_rate: int
    groups: int
    activation: str
    keras_version: int

    def __call__(self, inputs, masks):
        return self._activation()([self._preactivation(inputs[0])[0]], [None])

    def vjp(self, inputs, masks, d_outputs):
        """Each tap's kernel transposed onto the steps it read: a transposed correlation."""
        x = inputs[0]
        z, pads = self._preactivation(x)
        (dz,) = self._activation().vjp([z], [None], d_outputs)
        taps, per_group, filters = self.kernel.shape
        batch, out = dz.shape[:2]
        dz = dz.reshape(batch, out, self.groups, filters // self.groups)  # (batch, out, groups, filters/g)
        d_windows = np.einsum("bogf,kcgf->bogck", dz, self._grouped_kernel())
        d_windows = d_windows.reshape(batch, out, self.groups * per_group, taps)  # (batch, out, channels, k)
        return [_scatter(d_windows, x.shape[1], self.strides, self.dilation_rate, pads)]

    def _preactivation(self, x):
        x = _input(self, x).astype(self.kernel.dtype, copy=False)
        taps, per_group, filters = self.kernel.shape
        if x.shape[2] != per_group * self.groups:
            raise refuse(f"input of layer {self.name!r}",
                         f"{per_group * self.groups} channels ({self.groups} groups of {per_group})", x)
        span = self.dilation_rate * (taps - 1) + 1
        windows, pads = _windows(self, x, span, self.strides, self.padding)
        windows = windows[..., ::self.dilation_rate]  # (batch, out, channels, k)
        batch, out = windows.shape[:2]
        windows = windows.reshape(batch, out, self.groups, per_group, taps)  # (batch, out, groups, c/g, k)
        z = np.einsum("bogck,kcgf->bogf", windows, self._grouped_kernel()).reshape(batch, out, filters)
        return (z if self.bias is None else z + self.bias), pads  # (batch, out, filters)

    def _grouped_kernel(self):
        """kernel as (k, input_dim // groups, groups, filters // groups): group g's filters are
        the g-th block of `filters`, as TensorFlow's grouped convolution takes them."""
        taps, per_group, filters = self.kernel.shape
        return self.kernel.reshape(taps, per_group, self.groups, filters // self.groups)

    def _activation(self):
        return Activation(self.name, self.activation, self.keras_version)


@dataclasses.dataclass(frozen=True, eq=False)
class MaxPooling1D:
    """The largest value of each window; the gradient goes to the first largest step of each
    window, as TensorFlow's MaxPoolGrad sends it (overlapping windows add up)."""

    name: str
    pool_size: int
    strides: int
    padding: str  # "valid" or "same"

    def __call__(self, inputs, masks):
        windows, _ = self._windows(inputs[0])
        return [windows.max(axis=-1)], [None]

    def vjp(self, inputs, masks, d_outputs):
        x = inputs[0]
        windows, pads = self._windows(x)
        first = windows.argmax(axis=-1)[..., None]  # (batch, out, channels, 1): np.argmax takes the first
        d_windows = np.where(np.arange(self.pool_size) == first, d_outputs[0][..., None], 0)
        return [_scatter(d_windows.astype(x.dtype, copy=False), x.shape[1], self.strides, 1, pads)]

    def _windows(self, x):
        return _windows(self, _input(self, x), self.pool_size, self.strides, self.padding, fill=-np.inf)


@dataclasses.dataclass(frozen=True, eq=False)
class AveragePooling1D:
    """The mean of each window over its real steps: with "same" padding, TensorFlow's avg_pool
    divides by the steps the window covers, not by pool_size."""

    name: str
    pool_size: int
    strides: int
    padding: str  # "valid" or "same"

    def __call__(self, inputs, masks):
        x = _input(self, inputs[0])
        windows, _ = _windows(self, x, self.pool_size, self.strides, self.padding)
        return [windows.sum(axis=-1) / self._counts(x)], [None]

    def vjp(self, inputs, masks, d_outputs):
        x = inputs[0]
        share = d_outputs[0] / self._counts(x)  # (batch, out, channels)
        d_windows = np.broadcast_to(share[..., None], share.shape + (self.pool_size,))
        pads = window_padding(x.shape[1], self.pool_size, self.strides, self.padding)
        return [_scatter(d_windows, x.shape[1], self.strides, 1, pads)]

    def _counts(self, x):
        """How many real steps each window covers: (out, 1)."""
        real = np.ones((1, x.shape[1], 1), x.dtype)
        windows, _ = _windows(self, real, self.pool_size, self.strides, self.padding)
        return windows.sum(axis=-1)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class GlobalMaxPooling1D:
    """The largest value over the steps; masks are not read (Keras does not support them here).
    The gradient is shared equally among tied steps, as TensorFlow's reduce_max gradient does."""

    name: str
    keepdims: bool

    def __call__(self, inputs, masks):
        return [_input(self, inputs[0]).max(axis=1, keepdims=self.keepdims)], [None]

    def vjp(self, inputs, masks, d_outputs):
        x = inputs[0]
        top = x == x.max(axis=1, keepdims=True)  # (batch, steps, channels)
        d = d_outputs[0] if self.keepdims else d_outputs[0][:, None]
        return [np.where(top, d / top.sum(axis=1, keepdims=True), 0).astype(x.dtype, copy=False)]


@dataclasses.dataclass(frozen=True, eq=False)
class GlobalAveragePooling1D:
    """The mean over the steps, over the unmasked steps when a mask comes; the mask ends here.

    keras/src/layers/pooling/global_average_pooling1d.py zeroes masked steps with where();
    tf_keras's multiplies them by the mask: the same for finite inputs. All steps masked gives
    0 / 0 = nan in both.
    """

    name: str
    keepdims: bool

    def __call__(self, inputs, masks):
        x = _input(self, inputs[0])
        keep = self._keep(x, masks[0])  # (batch, steps, 1)
        total = np.where(keep, x, 0).sum(axis=1, keepdims=self.keepdims)
        return [total / keep.sum(axis=1, keepdims=self.keepdims).astype(x.dtype)], [None]

    def vjp(self, inputs, masks, d_outputs):
        x = inputs[0]
        keep = self._keep(x, masks[0])
        d = d_outputs[0] if self.keepdims else d_outputs[0][:, None]
        return [np.where(keep, d / keep.sum(axis=1, keepdims=True).astype(x.dtype), 0)]

    def _keep(self, x, mask):
        if mask is None:
            return np.ones((x.shape[0], x.shape[1], 1), bool)
        if mask.shape != x.shape[:2]:
            raise refuse(f"mask of layer {self.name!r}", f"shape {x.shape[:2]}", mask)
        return np.asarray(mask, bool)[..., None]


@dataclasses.dataclass(frozen=True, eq=False)
class ZeroPadding1D:
    """`left` and `right` steps of zeros around the steps."""

    name: str
    left: int
    right: int

    def __call__(self, inputs, masks):
        return [_pad(_input(self, inputs[0]), self.left, self.right)], [None]

    def vjp(self, inputs, masks, d_outputs):
        return [_crop(d_outputs[0], self.left, self.right)]


@dataclasses.dataclass(frozen=True, eq=False)
class Cropping1D:
    """The steps without the first `left` and the last `right`."""

    name: str
    left: int
    right: int

    def __call__(self, inputs, masks):
        x = _input(self, inputs[0])
        if self.left + self.right >= x.shape[1]:
            raise refuse(f"input of layer {self.name!r}",
                         f"more than {self.left + self.right} steps to crop {self.left} and {self.right} from", x)
        return [_crop(x, self.left, self.right)], [None]

    def vjp(self, inputs, masks, d_outputs):
        return [_pad(d_outputs[0], self.left, self.right)]


def _pad(x, left, right, fill=0.0):
    """x with `left` and `right` steps of `fill` around its steps: (batch, left + steps + right, channels)."""
    return np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=fill)


def _crop(x, left, right):
    """x without its first `left` and last `right` steps (ZeroPadding1D's transpose, and _pad's)."""
    return x[:, left:x.shape[1] - right]


@dataclasses.dataclass(frozen=True, eq=False)
class UpSampling1D:
    """Every step repeated `size` times in place."""

    name: str
    size: int

    def __call__(self, inputs, masks):
        return [np.repeat(_input(self, inputs[0]), self.size, axis=1)], [None]

    def vjp(self, inputs, masks, d_outputs):
        batch, steps, channels = inputs[0].shape
        return [d_outputs[0].reshape(batch, steps, self.size, channels).sum(axis=2)]
