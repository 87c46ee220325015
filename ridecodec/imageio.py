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

16-bit images are coded losslessly (see ``ridecodec.depth``): gray (Pillow's I;16 modes, and
mode I when every value fits 16 bits), and, as numpy arrays or files, gray with alpha, RGB and
RGBA, which Pillow has no modes for. Their bit depth is read from the file itself (PNG's IHDR,
TIFF's BitsPerSample, PPM's maxval, JPEG 2000's SIZ marker), because Pillow opens 16-bit colour
as 8-bit and would silently drop the low byte; their samples are then read with imagecodecs.
Arrays come back with the dtype and shape they went in with (a bool array as bool).

Everything else (32-bit integer, float, CMYK, YCbCr, LAB, HSV, premultiplied modes, and 16-bit
colour in formats without a 16-bit reader here) is refused with an error naming the mode. A file's
EXIF orientation is applied (the image is coded as it is shown); other metadata (EXIF, ICC
profiles, text chunks) is not kept: ridecodec stores pixels.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import FormatError, InputError, RidecodecError, UnsupportedImageError
from .models.base import CHANNEL_LAYOUTS
from .modes import DEEP_MODES, GRAY16_MODES, SUPPORTED_MODES, ModeTransform  # also re-exported

_DEEP_MODE_OF_CHANNELS = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}

#: File extensions (lower case, with the dot) that training, calibration and the benchmarks take
#: for images when they read a folder.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"})


@dataclass(frozen=True)
class CodedImage:
    """Pixels as the model codes them, plus what is needed to restore the original image."""

    pixels: np.ndarray  # uint8, or uint16 for bit_depth 16; (C, H, W)
    layout: str  # "L", "RGB" or "RGBA"
    original_mode: str
    transform: ModeTransform
    palette: bytes | None = None  # raw palette data, for P
    palette_mode: str | None = None  # its raw mode ("RGB" or "RGBA")
    transparency: int | bytes | None = None  # P's transparency (an index, or alpha per index)
    bit_depth: int = 8

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]


def open_image(source: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image | np.ndarray:
    """Open and fully decode an image file (a path, or a binary stream called ``name``), or raise
    InputError / UnsupportedImageError with a one-line reason.

    Returns a PIL image with its EXIF orientation applied, or, for 16-bit images with more than
    one channel (which Pillow cannot hold), an (H, W, C) uint16 array."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if not os.path.exists(name):
            raise InputError(f"{name}: no such file")
        if os.path.isdir(name):
            raise InputError(f"{name}: is a directory, not an image")
        try:
            with open(name, "rb") as file:
                data = file.read()
        except OSError as error:
            raise InputError(f"{name}: cannot read ({error.strerror})") from None
    else:
        data = source.read()
    name = name or "<stream>"
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 megapixels; ridecodec codes such images (its own limits are
            # the decoder's --max-pixels), and Pillow still refuses above 179 megapixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise UnsupportedImageError(
                    f"{name}: has {frames} frames; ridecodec codes single images (extract a frame first)"
                )
            bits = _declared_bits(image, data, name)
            image.load()  # decode now, so truncation is reported here and not later
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image in a format Pillow reads") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError, struct.error) as error:  # Pillow's plug-ins raise all of these
        raise InputError(f"{name}: cannot read image ({error})") from error
    if bits > 16:
        raise UnsupportedImageError(f"{name}: has {bits} bits per sample; ridecodec codes 8- and 16-bit images")
    if bits > 8 and image.mode not in GRAY16_MODES:
        # Pillow holds 16-bit colour as 8 bits: read the real samples
        return _oriented(_deep_samples(image, data, name), image)
    if image.getexif().get(0x0112, 1) != 1:
        return ImageOps.exif_transpose(image)
    return image


def _declared_bits(image: ImageFile.ImageFile, data: bytes, name: str) -> int:
    """The bits per sample the file declares (read before Pillow decodes it: its mode does not
    tell, since it opens 16-bit RGB PNGs as 8-bit RGB)."""
    if image.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]
    if image.format == "TIFF":
        # (tag_v2: the image is a TiffImageFile here)
        sample_format = image.tag_v2.get(339, 1)  # type: ignore[attr-defined]  # 1: unsigned; 2: signed; 3: float
        if set(sample_format if isinstance(sample_format, tuple) else (sample_format,)) != {1}:
            raise UnsupportedImageError(
                f"{name}: has signed or floating-point samples; ridecodec codes unsigned 8- and 16-bit images"
            )
        bits = image.tag_v2.get(258, 1)  # type: ignore[attr-defined]
        return max(bits) if isinstance(bits, tuple) else int(bits)
    if image.format == "JPEG2000":
        return _jpeg2000_bits(data)
    bits = 8
    for tile in image.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        rawmode = args[0] if args and isinstance(args[0], str) else ""
        if image.format == "PPM" and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            bits = max(bits, 16)  # maxval above 255: two bytes per sample
        if ";16" in rawmode:
            bits = max(bits, 16)
        elif ";32" in rawmode or rawmode.startswith("F"):
            bits = max(bits, 32)
    return bits


def _jpeg2000_bits(data: bytes) -> int:
    """Bits per sample of a JPEG 2000 file, from its codestream's SIZ marker (FF 51)."""
    at = data.find(b"\xff\x4f\xff\x51")  # start of codestream, then SIZ
    if at < 0 or at + 42 > len(data):
        return 8
    (components,) = struct.unpack(">H", data[at + 40 : at + 42])
    sizes = data[at + 42 : at + 42 + 3 * components : 3]
    return max((size & 0x7F) + 1 for size in sizes) if sizes else 8


def _deep_samples(image: Image.Image, data: bytes, name: str) -> np.ndarray:
    """The real 16-bit samples of a file Pillow opened as 8-bit, as (H, W, C) uint16."""
    import imagecodecs  # only 16-bit colour needs it

    readers: dict[str, Callable[[bytes], np.ndarray]] = {
        "PNG": imagecodecs.png_decode,
        "TIFF": imagecodecs.tiff_decode,
        "JPEG2000": imagecodecs.jpeg2k_decode,
        "PPM": _ppm_samples,
    }
    reader = readers.get(image.format or "")
    if reader is None:
        raise UnsupportedImageError(
            f"{name}: a 16-bit {image.format} image, which ridecodec cannot read without losing bits; "
            "convert it to a 16-bit PNG or TIFF"
        )
    try:
        array = reader(data)
    except Exception as error:  # the decoders' own errors (imagecodecs has one class per codec)
        raise InputError(f"{name}: cannot read the 16-bit image ({error})") from None
    channels = 2 if image.format == "PNG" and data[25] == 4 else len(image.getbands())  # Pillow opens LA;16 as RGBA
    expected = (image.height, image.width) + ((channels,) if channels > 1 else ())
    if array.dtype != np.uint16 or array.shape != expected:
        raise UnsupportedImageError(
            f"{name}: a 16-bit image whose samples read as {array.dtype} {array.shape}, not "
            f"uint16 {expected}; convert it to a 16-bit PNG"
        )
    return array


def _ppm_samples(data: bytes) -> np.ndarray:
    """Samples of a binary PGM/PPM with maxval above 255 (big-endian, two bytes each)."""
    fields: list[int] = []
    at = 2
    while len(fields) < 3:  # width, height, maxval, separated by whitespace and comments
        while data[at : at + 1].isspace() or data[at : at + 1] == b"#":
            if data[at : at + 1] == b"#":
                at = data.index(b"\n", at)
            at += 1
        end = at
        while data[end : end + 1].isdigit():
            end += 1
        fields.append(int(data[at:end]))
        at = end
    width, height, _ = fields
    channels = 3 if data[:2] == b"P6" else 1
    count = width * height * channels
    samples = np.frombuffer(data, dtype=">u2", count=count, offset=at + 1).astype(np.uint16)
    return samples.reshape((height, width, channels) if channels > 1 else (height, width))


def _oriented(array: np.ndarray, image: Image.Image) -> np.ndarray:
    """``array`` turned as the image's EXIF orientation says (as ImageOps.exif_transpose does)."""
    orientation = image.getexif().get(0x0112, 1)
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: a.swapaxes(0, 1)[::-1],
    }
    return np.ascontiguousarray(turns[orientation](array)) if orientation in turns else array


def _unsupported(mode: str) -> UnsupportedImageError:
    return UnsupportedImageError(
        f"image mode {mode!r} is not supported: ridecodec codes 8-bit L, RGB and RGBA images "
        "(and LA, P and 1 through a recorded conversion) and 16-bit gray; convert it first, e.g. to RGB"
    )


def _coded_from_array(array: np.ndarray) -> CodedImage:
    """The coded form of a numpy array: uint8, uint16 (any byte order) or bool, (H, W) or
    (H, W, C) with C in 1..4 (bool: (H, W) only)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and not 2 <= array.shape[2] <= 4):
        raise UnsupportedImageError(
            f"an image array must have shape (H, W) or (H, W, C) with C in 1..4, not {array.shape}"
        )
    if array.size == 0:
        raise InputError(f"the image is empty ({array.shape})")
    if array.dtype == np.bool_:
        if array.ndim != 2:
            raise UnsupportedImageError(f"a boolean array must be 2-D, not of shape {array.shape}")
        gray = np.where(array, np.uint8(255), np.uint8(0))
        return CodedImage(gray[None], "L", "1", ModeTransform.BILEVEL_TO_GRAY)
    if array.dtype == np.uint16 or (array.dtype.kind == "u" and array.dtype.itemsize == 2):
        planes = np.ascontiguousarray(array.astype(np.uint16).reshape(array.shape[:2] + (-1,)).transpose(2, 0, 1))
        return _coded_deep(planes, _DEEP_MODE_OF_CHANNELS[planes.shape[0]])
    if array.dtype != np.uint8:
        raise UnsupportedImageError(
            f"arrays of dtype {array.dtype} are not supported: ridecodec codes uint8 and uint16 images (and bool masks)"
        )
    mode = "L" if array.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    return to_coded(Image.fromarray(np.ascontiguousarray(array), mode))


def _coded_deep(planes: np.ndarray, mode: str) -> CodedImage:
    """16-bit planes (C, H, W) of an image in ``mode`` (one of GRAY16_MODES or DEEP_MODES)."""
    if mode == "LA;16":
        planes = planes[[0, 0, 0, 1]]
        return CodedImage(planes, "RGBA", mode, ModeTransform.GRAY_ALPHA_TO_RGBA, bit_depth=16)
    if mode == "RGB;16" and (planes[0] == planes[1]).all() and (planes[0] == planes[2]).all():
        return CodedImage(planes[:1].copy(), "L", mode, ModeTransform.GRAY_AS_RGB, bit_depth=16)
    layout = {1: "L", 3: "RGB", 4: "RGBA"}[planes.shape[0]]
    return CodedImage(planes, layout, mode, ModeTransform.NONE, bit_depth=16)


def _planes(image: Image.Image) -> np.ndarray:
    """(C, H, W) uint8 planes of an L, RGB or RGBA image."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def to_coded(image: Image.Image | np.ndarray) -> CodedImage:
    """The planes a model codes for ``image``, and the record of any mode conversion.

    Every conversion is checked here, before any coding, by converting back and comparing with
    exactly what was handed in: a conversion that loses anything is an error, never a file."""
    if isinstance(image, np.ndarray):
        coded = _coded_from_array(image)
        restored = to_array(coded)
        if image.ndim == 3 and image.shape[2] == 1:  # (H, W, 1) is coded, and comes back, as (H, W)
            restored = restored[:, :, None]
        if restored.shape != image.shape or not np.array_equal(restored, image):
            raise UnsupportedImageError(f"an array of {image.dtype} {image.shape} does not survive conversion")
        return coded
    if not isinstance(image, Image.Image):
        raise InputError(f"cannot compress a {type(image).__name__}: give an image, array or path")
    coded = _coded_from_pil(image)
    if coded.original_mode not in DEEP_MODES:  # (those come as arrays, checked above)
        back = from_coded(coded)
        if back.mode != image.mode or not np.array_equal(np.asarray(back), np.asarray(image)):
            raise UnsupportedImageError(f"a {image.mode} image does not survive conversion")
    return coded


def _coded_from_pil(image: Image.Image) -> CodedImage:
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise _unsupported(mode)
    if image.width == 0 or image.height == 0:
        raise InputError(f"the image is empty ({image.width}x{image.height})")
    if mode in GRAY16_MODES:
        values = np.asarray(image)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedImageError(
                "a mode I image with values outside 0..65535: ridecodec codes 8- and 16-bit images"
            )
        return CodedImage(values.astype(np.uint16)[None].copy(), "L", mode, ModeTransform.NONE, bit_depth=16)

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
                _planes(image.convert("RGB")),
                "RGB",
                mode,
                ModeTransform.PALETTE_TO_RGB,
                palette=palette,
                palette_mode=palette_mode,
            )
    if isinstance(transparency, (bytes, bytearray)):
        transparency = bytes(transparency)
    elif transparency is not None and not isinstance(transparency, int):
        raise UnsupportedImageError(f"palette transparency of type {type(transparency).__name__}")
    return CodedImage(
        indices[None].copy(),
        "L",
        mode,
        ModeTransform.PALETTE_INDICES,
        palette=palette,
        palette_mode=palette_mode,
        transparency=transparency,
    )


def from_coded(coded: CodedImage) -> Image.Image:
    """The original image back from decoded planes and the recorded conversion, as a PIL image
    (16-bit images other than gray have none: see :func:`to_array`)."""
    if coded.bit_depth == 16:
        if coded.original_mode not in GRAY16_MODES:
            raise UnsupportedImageError(
                f"a 16-bit {coded.original_mode[:-3]} image has no Pillow mode; decompress it to an "
                "array (ridecodec.decompress) or a PNG file (ridecodec.decompress_file)"
            )
        values = coded.pixels[0]
        if coded.original_mode == "I":
            return Image.fromarray(values.astype(np.int32), "I")
        byte_order = ">u2" if coded.original_mode == "I;16B" else "<u2"
        return Image.frombytes(coded.original_mode, (coded.width, coded.height), values.astype(byte_order).tobytes())
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
        assert coded.palette is not None and coded.palette_mode is not None  # (the header's check)
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


def to_array(coded: CodedImage) -> np.ndarray:
    """The original image as a numpy array, equal to the array (or ``np.asarray`` of the PIL
    image) it was made from: (H, W) for gray and P indices (bool for mode 1), (H, W, C) otherwise;
    uint16 for 16-bit images."""
    if coded.bit_depth == 16 and coded.original_mode in DEEP_MODES:
        planes = coded.pixels
        if coded.transform == ModeTransform.GRAY_ALPHA_TO_RGBA:
            planes = planes[[0, 3]]
        elif coded.transform == ModeTransform.GRAY_AS_RGB:
            planes = planes[[0, 0, 0]]
        return np.ascontiguousarray(planes.transpose(1, 2, 0))
    if coded.original_mode == "1":
        # np.asarray of a mode 1 image holds True as byte 255, which compares equal but hashes
        # and serializes differently from numpy's own bools
        return coded.pixels[0] != 0
    return np.asarray(from_coded(coded))


def stored_samples(coded: CodedImage) -> bytes:
    """The original image's samples as a stored payload holds them, so that a stored file is never
    larger than they are: planes of the original's channels (LA: L and A, not the four coded
    planes), 16-bit samples little-endian, bilevel pixels eight to a byte."""
    if coded.transform == ModeTransform.BILEVEL_TO_GRAY:
        return np.packbits(coded.pixels != 0).tobytes()
    planes = coded.pixels[[0, 3]] if coded.transform == ModeTransform.GRAY_ALPHA_TO_RGBA else coded.pixels
    return planes.astype("<u2" if coded.bit_depth == 16 else np.uint8).tobytes()


def unstore_samples(payload, header, height: int, width: int) -> np.ndarray:
    """The coded planes (C, height, width) back from a stored payload (see :func:`stored_samples`;
    files of ridecodec 0.2.0 stored the coded planes themselves, which ``header.stored_planes``
    tells, and may have stored them transposed: ``height`` and ``width`` are as stored)."""
    shape = (header.stored_planes, height, width)
    if header.transform == ModeTransform.BILEVEL_TO_GRAY and len(payload) < header.num_pixels:
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), count=header.num_pixels)
        return (bits * np.uint8(255)).reshape(shape)
    dtype = "<u2" if header.bit_depth == 16 else np.uint8
    planes = np.frombuffer(payload, dtype=dtype).reshape(shape)
    planes = planes.astype(np.uint16 if header.bit_depth == 16 else np.uint8)  # a native, writable copy
    if header.transform == ModeTransform.GRAY_ALPHA_TO_RGBA and len(planes) == 2:
        planes = planes[[0, 0, 0, 1]]
    return planes


def coded_png_bytes(coded: CodedImage, level: int = 6) -> bytes:
    """The decoded image as a PNG file (the format decompression writes: lossless for every
    mode, with 16 bits per sample for 16-bit images), at zlib ``level``."""
    if coded.bit_depth == 16:
        import imagecodecs  # Pillow cannot write 16-bit colour PNGs

        return bytes(imagecodecs.png_encode(np.ascontiguousarray(to_array(coded), dtype=np.uint16), level=level))
    return png_bytes(from_coded(coded), level)


def png_bytes(image: Image.Image, level: int = 6) -> bytes:
    """``image`` as a PNG file (lossless for every 8-bit mode and for 16-bit gray)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


#: The zlib level of a PNG payload: what `PNG` in the benchmarks means.
PNG_PAYLOAD_LEVEL = 9


def png_payload(coded: CodedImage) -> bytes:
    """The payload of a file whose image is kept as PNG (``container.CODER_PNG``): a PNG file of
    the original image at zlib level 9, so that no file is larger than PNG would have written
    (plus the header). Pillow and libpng (through imagecodecs) choose row filters differently,
    each smaller on some images: for 8-bit gray and colour both are tried and the smaller kept."""
    candidates = [coded_png_bytes(coded, PNG_PAYLOAD_LEVEL)]
    if coded.bit_depth == 8 and coded.transform == ModeTransform.NONE:
        import imagecodecs

        candidates.append(bytes(imagecodecs.png_encode(to_array(coded), level=PNG_PAYLOAD_LEVEL)))
    return min(candidates, key=len)


def unpng_samples(payload, header) -> np.ndarray:
    """The coded planes back from a PNG payload, or a FormatError if it does not hold the image
    the header declares (the file's pixel CRC is checked afterwards, as for every coder)."""
    data = bytes(payload)
    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the size only: no bomb is decoded
            size = probe.size
        height, width = header.coded_size  # a PNG of the image without its repeated lines, if any
        coded = None if size != (width, height) else to_coded(open_image(io.BytesIO(data), "PNG"))
    except (RidecodecError, OSError, ValueError, SyntaxError) as error:
        raise FormatError(f"the file's PNG payload is corrupt ({error})") from error
    if coded is None:
        raise FormatError("the file's PNG payload does not hold the image its header declares")
    if (coded.layout, coded.bit_depth, coded.transform) != (header.layout, header.bit_depth, header.transform):
        raise FormatError("the file's PNG payload does not hold the image its header declares")
    return coded.pixels
