"""The 8 orientations of an image (flips and transposes) that ensemble coding chooses from.

A causal density model sees each pixel's neighbourhood from one side only (above and to the
left), so the same image can cost noticeably fewer bits coded mirrored, upside down or
transposed. ``compress(..., effort=N)`` codes the image in the first N orientations of
``SEARCH_ORDER`` and keeps the shortest; the header's orientation field records the choice, and
the decoder decodes the oriented pixels and undoes it. The definition is docs/FORMAT.md's.

Orientation ``o`` (0..7) is applied to (C, H, W) pixels in this order:

* bit 2 (4): transpose, swapping rows and columns: (C, H, W) -> (C, W, H);
* bit 1 (2): then flip the rows (reverse their order: upside down);
* bit 0 (1): then flip the columns (reverse each row: mirror left-right).

0 is the identity. The header keeps the original width and height; ``oriented_shape`` gives the
shape that is coded.
"""

from __future__ import annotations

import numpy as np

TRANSPOSE, FLIP_ROWS, FLIP_COLUMNS = 4, 2, 1
NUM_ORIENTATIONS = 8

#: The order in which ``compress(effort=N)`` tries orientations: the first N of these. Identity
#: first, so that effort 1 is plain coding. The rest is the greedy order measured with loco's
#: code lengths on the 200 BSDS500 *train* images (grayscale): each next orientation is the one
#: that lowers the total of the best-so-far most (4.366 bits per pixel with 0 alone, 4.333 with
#: 0 and 4, 4.330 with 6 too, 4.327 with all 8). The transposes come first because they change
#: the most for a causal model: vertical structure becomes horizontal. The order is the
#: encoder's choice, not part of the format: a decoder only reads the orientation it finds.
SEARCH_ORDER = (0, 4, 6, 1, 5, 7, 3, 2)

_NAMES = {
    0: "as is",
    1: "mirrored (columns flipped)",
    2: "upside down (rows flipped)",
    3: "rotated 180 degrees",
    4: "transposed",
    5: "rotated 90 degrees clockwise",
    6: "rotated 90 degrees counter-clockwise",
    7: "transposed across the anti-diagonal",
}


def check(orientation: int) -> int:
    if not 0 <= orientation < NUM_ORIENTATIONS:
        raise ValueError(f"orientation must be 0..7, not {orientation}")
    return orientation


def describe(orientation: int) -> str:
    """The orientation in words, e.g. 'transposed'."""
    return _NAMES[check(orientation)]


def oriented_shape(shape: tuple[int, int, int], orientation: int) -> tuple[int, int, int]:
    """The (C, H, W) shape that pixels of ``shape`` have once oriented."""
    channels, height, width = shape
    return (channels, width, height) if check(orientation) & TRANSPOSE else (channels, height, width)


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (C, H, W) in orientation ``orientation``, as a new C-contiguous array."""
    if check(orientation) & TRANSPOSE:
        pixels = pixels.transpose(0, 2, 1)
    if orientation & FLIP_ROWS:
        pixels = pixels[:, ::-1, :]
    if orientation & FLIP_COLUMNS:
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels)


def unorient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The exact inverse of :func:`orient`: the steps undone in reverse order (flips are their own
    inverses, and so is the transpose)."""
    if check(orientation) & FLIP_COLUMNS:
        pixels = pixels[:, :, ::-1]
    if orientation & FLIP_ROWS:
        pixels = pixels[:, ::-1, :]
    if orientation & TRANSPOSE:
        pixels = pixels.transpose(0, 2, 1)
    return np.ascontiguousarray(pixels)
