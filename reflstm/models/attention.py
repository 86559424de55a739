"""Keras's attention layers in NumPy: Attention (Luong), AdditiveAttention (Bahdanau) and Dot.

Attention and AdditiveAttention take [query, value] or [query, value, key] (key = value when
absent), query (batch, Tq, dim), value and key (batch, Tv, dim), and masks [query_mask,
value_mask] (a key's mask is not read). Row vectors, per sample::

    Attention, score_mode "dot":     S = Q Kᵀ · scale                      (scale = 1 without use_scale)
    Attention, score_mode "concat":  S_ij = w_c Σ_d tanh(scale (q_i + k_j))_d   (w_c = concat_score_weight)
    AdditiveAttention:               S_ij = Σ_d scale_d tanh(q_i + k_j)_d  (scale (dim,), 1 without use_scale)

    S'_ij = S_ij − 1e9  where value_mask_j is False, or j > i with the causal mask
    A = softmax(S') over j             O = A V               output = O, zero where query_mask is False

The output's mask is the query's. Dropout acts in training only: never here.

Sources, both majors: keras/src/layers/attention/attention.py and additive_attention.py;
tf_keras/src/layers/attention/base_dense_attention.py, attention.py, additive_attention.py.
"""

import dataclasses

import numpy as np

from reflstm.errors import refuse

__all__ = ["Attention", "AdditiveAttention", "Dot"]

# keras attention.py `_apply_scores` subtracts this (65504 in float16, not modelled) from masked
# scores: Keras 3 with ops.where(padding, scores - 1e9, scores), tf_keras with
# scores -= 1e9 * cast(padding); both leave unmasked scores exactly as they were.
MASKED_SCORE_OFFSET = 1.0e9


@dataclasses.dataclass(frozen=True, eq=False)
class _DenseAttention:
    """What Attention and AdditiveAttention share: masks, softmax, the value sum and their vjp.

    Each subclass gives `_scores(query, key)` -> (S, saved) and `_scores_vjp(saved, dS)` ->
    (dQ, dK).
    """

    name: str
    use_causal_mask: bool  # the call's use_causal_mask, or tf_keras's older config field `causal`

    def __call__(self, inputs, masks):
        output, _ = self._forward(inputs, masks)
        return [output], [self._unpack(inputs, masks)[3]]

    def vjp(self, inputs, masks, d_outputs):
        """[dquery, dvalue(, dkey)] from the gradient of the output."""
        _, value, _, query_mask, _ = self._unpack(inputs, masks)
        (d_output,) = d_outputs
        _, (weights, saved) = self._forward(inputs, masks)
        if query_mask is not None:
            d_output = np.where(query_mask[..., None], d_output, 0)
        d_weights = d_output @ np.swapaxes(value, -1, -2)  # (batch, Tq, Tv)
        d_value = np.swapaxes(weights, -1, -2) @ d_output  # (batch, Tv, dim)
        # Softmax: dS = A ⊙ (dA − Σ_j dA ⊙ A); the constant −1e9 has no gradient.
        d_scores = weights * (d_weights - np.sum(d_weights * weights, axis=-1, keepdims=True))
        d_query, d_key = self._scores_vjp(saved, d_scores)
        if len(inputs) == 2:
            return [d_query, d_value + d_key]
        return [d_query, d_value, d_key]

    def _unpack(self, inputs, masks):
        if len(inputs) not in (2, 3):
            raise refuse(f"inputs of layer {self.name!r}", "[query, value] or [query, value, key]",
                         f"{len(inputs)} inputs")
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) == 3 else value
        if (query.ndim != 3 or value.ndim != 3 or key.ndim != 3 or key.shape[:2] != value.shape[:2]
                or query.shape[0] != value.shape[0] or key.shape[-1] != query.shape[-1]):
            raise refuse(f"inputs of layer {self.name!r}", "query (batch, Tq, dim), value (batch, Tv, "
                         "value_dim), key (batch, Tv, dim)", [x.shape for x in inputs])
        masks = list(masks) + [None] * (2 - len(masks))
        query_mask, value_mask = masks[0], masks[1]
        for mask, x, what in ((query_mask, query, "query"), (value_mask, value, "value")):
            if mask is not None and mask.shape != x.shape[:2]:
                raise refuse(f"{what} mask of layer {self.name!r}", f"shape {x.shape[:2]}", mask)
        return query, value, key, query_mask, value_mask

    def _forward(self, inputs, masks):
        """(output, (weights A, what the scores' vjp needs))."""
        query, value, key, query_mask, value_mask = self._unpack(inputs, masks)
        scores, saved = self._scores(query, key)  # (batch, Tq, Tv)
        keep = self._score_mask(value_mask, scores.shape[-2:])
        if keep is not None:
            scores = np.where(keep, scores, scores - MASKED_SCORE_OFFSET)
        weights = _softmax(scores)  # (batch, Tq, Tv)
        output = weights @ value  # (batch, Tq, value_dim)
        if query_mask is not None:
            # Keras 3 ops.where(q_mask, output, 0); tf_keras output * cast(q_mask): equal for finite outputs.
            output = np.where(query_mask[..., None], output, 0).astype(output.dtype, copy=False)
        return output, (weights, saved)

    def _score_mask(self, value_mask, shape):
        """Where a score counts, (batch or 1, Tq, Tv), or None: the value mask AND the causal one."""
        keep = None if value_mask is None else value_mask[:, None, :]  # (batch, 1, Tv)
        if self.use_causal_mask:
            t_q, t_v = shape
            # keras attention.py `_calculate_score_mask`: row index >= column index (query i sees j <= i).
            causal = np.arange(t_q)[:, None] >= np.arange(t_v)[None, :]  # (Tq, Tv)
            keep = causal[None] if keep is None else keep & causal
        return keep

    def called_with(self, options, where):
        """This layer as one recorded call ran it: the call's options, typed, or refused."""
        causal = self.use_causal_mask
        for key, value in options.items():
            if key == "use_causal_mask" and isinstance(value, bool):
                causal = causal or value
            elif key == "return_attention_scores" and value is False:
                continue
            else:
                raise refuse(f"{where}: call argument {key!r}", "use_causal_mask true or false, or "
                             "return_attention_scores false (the scores as a second output are not "
                             "modelled)", repr(value))
        return dataclasses.replace(self, use_causal_mask=causal)


@dataclasses.dataclass(frozen=True, eq=False)
class Attention(_DenseAttention):
    """keras.layers.Attention: dot-product (Luong) attention, or Keras's "concat" scores."""

    scale: "np.ndarray | None" = None  # () when use_scale
    concat_score_weight: "np.ndarray | None" = None  # () when score_mode == "concat"

    @property
    def score_mode(self):
        return "dot" if self.concat_score_weight is None else "concat"

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = query @ np.swapaxes(key, -1, -2)  # (batch, Tq, Tv)
            return (scores if self.scale is None else scores * self.scale), (query, key)
        summed = query[:, :, None, :] + key[:, None, :, :]  # (batch, Tq, Tv, dim)
        tanh = np.tanh(summed if self.scale is None else self.scale * summed)
        return self.concat_score_weight * np.sum(tanh, axis=-1), (query, key, summed, tanh)

    def _scores_vjp(self, saved, d_scores):
        if self.score_mode == "dot":
            query, key = saved
            d_scores = d_scores if self.scale is None else d_scores * self.scale
            return d_scores @ key, np.swapaxes(d_scores, -1, -2) @ query
        query, key, summed, tanh = saved
        d_summed = (self.concat_score_weight * d_scores)[..., None] * (1 - tanh**2)  # (batch, Tq, Tv, dim)
        if self.scale is not None:
            d_summed = d_summed * self.scale
        return d_summed.sum(axis=2), d_summed.sum(axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class AdditiveAttention(_DenseAttention):
    """keras.layers.AdditiveAttention: Bahdanau-style scores Σ_d scale_d tanh(q_i + k_j)_d."""

    scale: "np.ndarray | None" = None  # (dim,) when use_scale

    def _scores(self, query, key):
        tanh = np.tanh(query[:, :, None, :] + key[:, None, :, :])  # (batch, Tq, Tv, dim)
        scaled = tanh if self.scale is None else self.scale * tanh
        return np.sum(scaled, axis=-1), tanh

    def _scores_vjp(self, tanh, d_scores):
        d_summed = d_scores[..., None] * (1 - tanh**2)  # (batch, Tq, Tv, dim)
        if self.scale is not None:
            d_summed = d_summed * self.scale
        return d_summed.sum(axis=2), d_summed.sum(axis=1)


def _softmax(scores):
    """Softmax over the last axis, shifted by the row's maximum as tf.nn.softmax is."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True, eq=False)
class Dot:
    """keras.layers.Dot: per-sample dot products of two inputs along `axes` (Keras's batch_dot).

    With normalize, each input is first L2-normalized along its axis, as each Keras does it:
    Keras 3 (keras/src/ops/nn.py `_normalize`) x · min(rsqrt(Σx²), 1/ε), ε = 1e-7
    (backend.epsilon()); tf_keras (tf.linalg.l2_normalize) x · rsqrt(max(Σx², 1e-12)).
    Dot supports masking but ends the mask (compute_mask returns None in both).
    """

    name: str
    axes: tuple  # (axis of the first input, axis of the second), as the config gives them
    normalize: bool
    keras_version: int

    def __call__(self, inputs, masks):
        x, y, axes = self._checked(inputs)
        if self.normalize:
            x, y = self._l2_normalize(x, axes[0])[0], self._l2_normalize(y, axes[1])[0]
        return [_batch_dot(x, y, axes)[0]], [None]

    def vjp(self, inputs, masks, d_outputs):
        """[dx, dy] from the gradient of the output."""
        x, y, axes = self._checked(inputs)
        if self.normalize:
            (x, x_vjp), (y, y_vjp) = self._l2_normalize(x, axes[0]), self._l2_normalize(y, axes[1])
        _, dot_vjp = _batch_dot(x, y, axes)
        dx, dy = dot_vjp(d_outputs[0])
        if self.normalize:
            dx, dy = x_vjp(dx), y_vjp(dy)
        return [dx, dy]

    def _checked(self, inputs):
        """Both inputs and the axes made non-negative as Keras makes them (axis % rank), refused
        where Keras's batch_dot refuses: a batch axis, ranks below 2, unequal lengths."""
        if len(inputs) != 2:
            raise refuse(f"inputs of layer {self.name!r}", "exactly 2 inputs", f"{len(inputs)}")
        x, y = inputs
        if x.ndim < 2 or y.ndim < 2 or x.shape[0] != y.shape[0]:
            raise refuse(f"inputs of layer {self.name!r}", "two batches of rank 2 or more, one batch size",
                         [x.shape, y.shape])
        axes = tuple(a % ndim if a < 0 else a for a, ndim in zip(self.axes, (x.ndim, y.ndim)))
        if any(a == 0 or a >= ndim for a, ndim in zip(axes, (x.ndim, y.ndim))) or (
                x.shape[axes[0]] != y.shape[axes[1]]):
            raise refuse(f"inputs of layer {self.name!r}", f"axes {self.axes} of equal length, "
                         "neither the batch axis", [x.shape, y.shape])
        return x, y, axes

    def _l2_normalize(self, x, axis):
        """(x normalized along `axis`, its vjp); TensorFlow's gradient of the floor is zero."""
        square_sum = np.sum(x * x, axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            if self.keras_version == 3:
                inverse = 1 / np.sqrt(square_sum)
                floor = np.asarray(1 / 1e-7, x.dtype)
                free = inverse <= floor  # TensorFlow's minimum gives its gradient to x where x <= y
                inverse = np.minimum(inverse, floor)
            else:
                free = square_sum >= 1e-12  # maximum's gradient goes to x where x >= y
                inverse = 1 / np.sqrt(np.maximum(square_sum, np.asarray(1e-12, x.dtype)))

        def vjp(d_normalized):
            # y = x r(s), s = Σx²: dx = r dy + 2x r'(s) Σ(dy x), r' = −½ r³ where not floored.
            along = np.sum(d_normalized * x, axis=axis, keepdims=True)
            return inverse * d_normalized - np.where(free, inverse**3, 0) * x * along

        return x * inverse, vjp


def _batch_dot(x, y, axes):
    """(Keras's batch_dot of x and y, its vjp), as keras/src/layers/merging/dot.py and tf_keras
    backend.batch_dot compute it: a rank-2 input gains an axis, x's axis moves last, y's to 1,
    the middles are flattened for one matmul, and the added axis is squeezed off again."""
    a0, a1 = axes
    x3 = x[:, None, :] if x.ndim == 2 else x
    y3 = y[:, :, None] if y.ndim == 2 else y
    a0 = a0 + 1 if x.ndim == 2 else a0
    x_moved, y_moved = np.moveaxis(x3, a0, -1), np.moveaxis(y3, a1, 1)
    batch, depth = x.shape[0], x_moved.shape[-1]
    x_flat = x_moved.reshape(batch, -1, depth)  # (batch, X, depth)
    y_flat = y_moved.reshape(batch, depth, -1)  # (batch, depth, Y)
    full_shape = x_moved.shape[:-1] + y_moved.shape[2:]
    output = (x_flat @ y_flat).reshape(full_shape)  # (batch, x's other axes..., y's other axes...)
    squeeze = 1 if x.ndim == 2 else (-1 if y.ndim == 2 else None)
    if squeeze is not None:
        output = np.squeeze(output, squeeze)

    def vjp(d_output):
        d_flat = d_output.reshape(batch, x_flat.shape[1], y_flat.shape[2])
        dx = (d_flat @ np.swapaxes(y_flat, -1, -2)).reshape(x_moved.shape)
        dy = (np.swapaxes(x_flat, -1, -2) @ d_flat).reshape(y_moved.shape)
        dx, dy = np.moveaxis(dx, -1, a0), np.moveaxis(dy, 1, a1)
        return dx.reshape(x.shape), dy.reshape(y.shape)

    return output, vjp
