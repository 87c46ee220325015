"""The image modes a .rdc file can record, and the conversions between them and the coded
channel layouts: the format's vocabulary, shared by the container (which validates headers) and
the image code (which converts images), so that neither imports the other."""

from __future__ import annotations

import enum


class ModeTransform(enum.IntEnum):
    """How the original image's mode maps to the coded layout (stored in the header)."""

    NONE = 0
    BILEVEL_TO_GRAY = 1
    GRAY_ALPHA_TO_RGBA = 2
    PALETTE_TO_RGB = 3
    PALETTE_INDICES = 4
    GRAY_AS_RGB = 5


#: Pillow's modes of 16-bit gray images, and its 32-bit mode I (accepted when values fit 16 bits).
GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I")
#: Names for 16-bit images that Pillow has no mode for (from arrays and files).
DEEP_MODES = ("LA;16", "RGB;16", "RGBA;16")
#: Every original mode a file may record.
SUPPORTED_MODES = ("L", "RGB", "RGBA", "LA", "P", "1") + GRAY16_MODES + DEEP_MODES
