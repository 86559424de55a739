"""A minimal PNG encoder (zlib and struct, no Pillow): 8-bit RGB images for the report's heatmaps.

The format is the PNG specification's (https://www.w3.org/TR/png/): the signature, an IHDR chunk,
one IDAT chunk of zlib-compressed scanlines (each prefixed by filter type 0, "None"), IEND.
"""

import struct
import zlib

import numpy as np

from reflstm.errors import refuse

__all__ = ["encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(rgb):
    """The PNG file of `rgb`, a uint8 array (height, width, 3)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise refuse("rgb", "a non-empty uint8 array (height, width, 3)", rgb)
    height, width = rgb.shape[:2]
    scanlines = np.zeros((height, 1 + 3 * width), np.uint8)  # (height, filter byte + RGB row)
    scanlines[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6))
            + _chunk(b"IEND", b""))
