"""16-bit images as 8-bit ones: which bytes a model codes, and how the samples come back.

A 16-bit sample v is its high byte h = v >> 8 and low byte l = v & 255. Three codings, chosen by
what the image holds (recorded in the header):

- ``LOW_ONLY``: every value is below 256 (8-bit data in a 16-bit file): the values themselves
  are coded as an 8-bit image, by the same model as any 8-bit image;
- ``REPLICATED``: l == h everywhere, i.e. v = 257 h (8-bit data scaled to 16 bits, as most
  converters do): h is coded as an 8-bit image, and l costs nothing;
- ``HIGH_THEN_LOW``: anything else: h is coded as an 8-bit image, then l by
  ``models.lowbyte.LowByteModel``, which knows every h.

Data of fewer than 16 bits shifted left (10 or 12 bits in the top of the word) leaves low-byte
values unused, which the value sets of the low bytes' tables remove from them (``engine``).
"""

from __future__ import annotations

import enum

import numpy as np


class DeepCoding(enum.IntEnum):
    LOW_ONLY = 1
    REPLICATED = 2
    HIGH_THEN_LOW = 3


def split(samples: np.ndarray) -> tuple[DeepCoding, np.ndarray, np.ndarray | None]:
    """(coding, the 8-bit planes a model codes first, the low bytes or None) for uint16 planes."""
    high, low = (samples >> 8).astype(np.uint8), (samples & 255).astype(np.uint8)
    if not high.any():
        return DeepCoding.LOW_ONLY, low, None
    if np.array_equal(high, low):
        return DeepCoding.REPLICATED, high, None
    return DeepCoding.HIGH_THEN_LOW, high, low


def join(coding: DeepCoding, first: np.ndarray, low: np.ndarray | None) -> np.ndarray:
    """The uint16 planes back from :func:`split`'s parts."""
    first = first.astype(np.uint16)
    if coding == DeepCoding.LOW_ONLY:
        return first
    if coding == DeepCoding.REPLICATED:
        return first * np.uint16(257)
    assert low is not None  # (split gives the low bytes with HIGH_THEN_LOW, and so does the decoder)
    return (first << 8) | low
