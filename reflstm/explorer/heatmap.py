"""Heatmap images of time × units quantities, and the colour scales they use.

A gate (values in [0, 1]) is drawn on a sequential scale from dark to light; a quantity that can
be negative (the candidate, C_t, h_t, an input feature) on a diverging scale, blue below zero,
white at zero, red above, symmetric about zero. The scales are listed as stops so that the
report's script draws the same legend.
"""

import numpy as np

from reflstm.explorer.png import encode_png

__all__ = ["SEQUENTIAL", "DIVERGING", "scale_for", "heatmap_png", "image_of", "MAX_IMAGE"]

# (position in [0, 1], (r, g, b)): stops of the two scales, interpolated linearly.
SEQUENTIAL = ((0.0, (13, 8, 135)), (0.25, (84, 2, 163)), (0.5, (185, 50, 137)),
              (0.75, (248, 149, 64)), (1.0, (240, 249, 33)))
DIVERGING = ((0.0, (5, 48, 97)), (0.25, (67, 147, 195)), (0.5, (247, 247, 247)),
             (0.75, (214, 96, 77)), (1.0, (103, 0, 31)))


CLIP_PERCENTILE = 99.5  # a diverging scale ends at this percentile of |value|, so that a few
# large values (a cell state that grows without bound in a few units) do not wash out the rest


def scale_for(values, gate):
    """(name, low, high): [0, 1] sequential for a gate, else diverging, symmetric about zero, up
    to the CLIP_PERCENTILE-th percentile of |value| (larger values get the end colours)."""
    if gate:
        return "sequential", 0.0, 1.0
    finite = np.abs(values[np.isfinite(values)])
    top = float(np.percentile(finite, CLIP_PERCENTILE)) if finite.size else 1.0
    top = top if top > 0 else float(finite.max(initial=0)) or 1.0
    return "diverging", -top, top


def heatmap_png(values, scale):
    """A PNG, one pixel per step (x) and unit (y), of `values` (timesteps, units) on `scale`
    (from `scale_for`); non-finite values are grey."""
    name, low, high = scale
    stops = SEQUENTIAL if name == "sequential" else DIVERGING
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], np.float64)  # (stops, 3)
    v = np.asarray(values, np.float64).T  # (units, timesteps): a row per unit
    finite = np.isfinite(v)
    where = np.clip((np.where(finite, v, low) - low) / (high - low), 0.0, 1.0)
    rgb = np.stack([np.interp(where, positions, colours[:, k]) for k in range(3)], axis=-1)
    rgb[~finite] = 128
    return encode_png(np.round(rgb).astype(np.uint8))


MAX_IMAGE = (2048, 1024)  # (steps, units) drawn one pixel each; past that, averaged over blocks
MAX_IMAGE_NOTE = f"heatmaps are drawn at most {MAX_IMAGE[0]} steps x {MAX_IMAGE[1]} units"


def image_of(values):
    """(image values, [steps per pixel, units per pixel]): `values` (timesteps, units), averaged
    over blocks where larger than MAX_IMAGE."""
    values = np.asarray(values, np.float64)
    block = [-(-n // most) for n, most in zip(values.shape, MAX_IMAGE)]
    if block == [1, 1]:
        return values, block
    rows, cols = (-(-n // b) for n, b in zip(values.shape, block))
    padded = np.full((rows * block[0], cols * block[1]), np.nan)
    padded[: values.shape[0], : values.shape[1]] = values
    with np.errstate(invalid="ignore"):
        return np.nanmean(padded.reshape(rows, block[0], cols, block[1]), axis=(1, 3)), block
