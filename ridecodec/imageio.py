"""From user images (paths, PIL images, numpy arrays) to coded planes, and back.

Models code three channel layouts: L, RGB and RGBA, 8 bits per sample. Other 8-bit modes are
converted to one of these with a *recorded* conversion, so decompression restores the original
mode exactly:

==============  ===================  ========================================================
original mode   coded as             restored
==============  ===================  ========================================================
L, RGB, RGBA    itself               itself
RGB with        L                    RGB, pixel for pixel (gray images saved as RGB would
R = G = B                            otherwise cost three times as much)
1 (bilevel)     L with values 0/255  1, pixel for pixel
LA              RGBA with R=G=B=L    LA, pixel for pixel
P (palette)     RGB colours, when    P with the same palette and indices (the palette is
                every used colour    stored in the header; a colour maps back to its index
                has one index and    because it has only one)
                there is no
                transparency
P (otherwise)   L of the indices     P with the same palette, indices and transparency
==============  ===================  ========================================================

Everything else (16-bit and 32-bit integer, float, CMYK, YCbCr, LAB, HSV, premultiplied modes)
is refused with an error naming the mode. Image metadata (EXIF, ICC profiles, text chunks) is not
kept: ridecodec stores pixels.
"""

from __future__ import annotations

import enum
import io
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError, UnsupportedImageError
from .models.base import CHANNEL_LAYOUTS


class ModeTransform(enum.IntEnum):
    """How the original image's mode maps to the coded layout (stored in the header)."""

    NONE = 0
    BILEVEL_TO_GRAY = 1
    GRAY_ALPHA_TO_RGBA = 2
    PALETTE_TO_RGB = 3
    PALETTE_INDICES = 4
    GRAY_AS_RGB = 5


SUPPORTED_MODES = ("L", "RGB", "RGBA", "LA", "P", "1")


@dataclass(frozen=True)
class CodedImage:
    """Pixels as the model codes them, plus what is needed to restore the original image."""

    pixels: np.ndarray  # uint8, (C, H, W)
    layout: str  # "L", "RGB" or "RGBA"
    original_mode: str
    transform: ModeTransform
    palette: bytes | None = None  # raw palette data, for P
    palette_mode: str | None = None  # its raw mode ("RGB" or "RGBA")
    transparency: int | bytes | None = None  # P's transparency (an index, or alpha per index)

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]


def open_image(source: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image:
    """Open and fully decode an image file (a path, or a seekable binary stream called ``name``),
    or raise InputError with a one-line reason."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.exists(name):
            raise InputError(f"{name}: no such file")
        if os.path.isdir(name):
            raise InputError(f"{name}: is a directory, not an image")
    name = name or "<stream>"
    try:
        image = Image.open(source)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            raise UnsupportedImageError(
                f"{name}: has {frames} frames; ridecodec codes single images (extract a frame first)"
            )
        image.load()  # decode now, so truncation is reported here and not later
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image in a format Pillow reads") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's plug-ins raise all of these
        raise InputError(f"{name}: cannot read image ({error})") from error
    return image


def _unsupported(mode: str) -> UnsupportedImageError:
    return UnsupportedImageError(
        f"image mode {mode!r} is not supported: ridecodec codes 8-bit L, RGB and RGBA images "
        "(and LA, P and 1 through a recorded conversion); convert it first, e.g. to RGB"
    )


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype == np.bool_:
        if array.ndim != 2:
            raise UnsupportedImageError(f"a boolean array must be 2-D, not of shape {array.shape}")
        return Image.fromarray(array, "1")
    if array.dtype != np.uint8:
        raise UnsupportedImageError(
            f"arrays of dtype {array.dtype} are not supported: ridecodec codes 8-bit (uint8) images"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    modes = {2: "L"} if array.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.ndim not in (2, 3) or (array.ndim == 3 and channels not in modes):
        raise UnsupportedImageError(
            f"an image array must have shape (H, W) or (H, W, C) with C in 1..4, not {array.shape}"
        )
    mode = "L" if array.ndim == 2 else modes[channels]
    return Image.fromarray(np.ascontiguousarray(array), mode)


def _planes(image: Image.Image) -> np.ndarray:
    """(C, H, W) uint8 planes of an L, RGB or RGBA image."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def to_coded(image: Image.Image | np.ndarray) -> CodedImage:
    """The planes a model codes for ``image``, and the record of any mode conversion."""
    if isinstance(image, np.ndarray):
        image = _from_array(image)
    if not isinstance(image, Image.Image):
        raise InputError(f"cannot compress a {type(image).__name__}: give an image, array or path")
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise _unsupported(mode)
    if image.width == 0 or image.height == 0:
        raise InputError(f"the image is empty ({image.width}x{image.height})")

    if mode in CHANNEL_LAYOUTS:
        planes = _planes(image)
        if mode == "RGB" and (planes[0] == planes[1]).all() and (planes[0] == planes[2]).all():
            return CodedImage(planes[:1].copy(), "L", mode, ModeTransform.GRAY_AS_RGB)
        return CodedImage(planes, mode, mode, ModeTransform.NONE)
    if mode == "1":
        return CodedImage(_planes(image.convert("L")), "L", mode, ModeTransform.BILEVEL_TO_GRAY)
    if mode == "LA":
        return CodedImage(_planes(image.convert("RGBA")), "RGBA", mode, ModeTransform.GRAY_ALPHA_TO_RGBA)

    # Palette images.
    palette_mode = image.palette.mode if image.palette is not None else "RGB"
    palette = bytes(image.getpalette(palette_mode) or [])
    transparency = image.info.get("transparency")
    indices = np.asarray(image, dtype=np.uint8)
    if palette_mode == "RGB" and transparency is None and palette:
        colours = np.frombuffer(palette, dtype=np.uint8).reshape(-1, 3)
        used = np.unique(indices)
        if used.max() < len(colours) and len(np.unique(colours[used], axis=0)) == len(used):
            return CodedImage(
                _planes(image.convert("RGB")), "RGB", mode, ModeTransform.PALETTE_TO_RGB,
                palette=palette, palette_mode=palette_mode,
            )
    if isinstance(transparency, (bytes, bytearray)):
        transparency = bytes(transparency)
    elif transparency is not None and not isinstance(transparency, int):
        raise UnsupportedImageError(f"palette transparency of type {type(transparency).__name__}")
    return CodedImage(
        indices[None].copy(), "L", mode, ModeTransform.PALETTE_INDICES,
        palette=palette, palette_mode=palette_mode, transparency=transparency,
    )


def from_coded(coded: CodedImage) -> Image.Image:
    """The original image back from decoded planes and the recorded conversion."""
    planes = coded.pixels
    array = planes[0] if coded.layout == "L" else np.ascontiguousarray(planes.transpose(1, 2, 0))
    image = Image.fromarray(array, coded.layout)
    transform = coded.transform
    if transform == ModeTransform.NONE:
        return image
    if transform == ModeTransform.GRAY_AS_RGB:
        return image.convert("RGB")
    if transform == ModeTransform.BILEVEL_TO_GRAY:
        return image.convert("1", dither=Image.Dither.NONE)
    if transform == ModeTransform.GRAY_ALPHA_TO_RGBA:
        return Image.fromarray(np.ascontiguousarray(array[:, :, [0, 3]]), "LA")
    if transform == ModeTransform.PALETTE_TO_RGB:
        colours = np.frombuffer(coded.palette, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
        # the first index of each colour (encoding checked that used colours are unique)
        unique_keys, first_index = np.unique(keys, return_index=True)
        pixel_keys = (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
        position = np.clip(np.searchsorted(unique_keys, pixel_keys), 0, len(unique_keys) - 1)
        indices = first_index[position].astype(np.uint8)
        restored = Image.fromarray(indices, "P")
        restored.putpalette(coded.palette, coded.palette_mode)
        return restored
    if transform == ModeTransform.PALETTE_INDICES:
        restored = Image.fromarray(array, "P")
        if coded.palette:
            restored.putpalette(coded.palette, coded.palette_mode or "RGB")
        if coded.transparency is not None:
            restored.info["transparency"] = coded.transparency
        return restored
    raise ValueError(f"unknown mode transform {transform}")


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as a PNG file (the format decompression writes: lossless for every mode)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
