"""The public Python API: compress and decompress between images and bytes, or between files.

>>> import numpy as np, ridecodec
>>> image = np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)
>>> data = ridecodec.compress(image)
>>> bool((ridecodec.decompress(data) == image).all())
True

:func:`encode` takes the same arguments as :func:`compress` and also says what the encoder chose
(``codec.Encoded``); the policy itself lives in codec.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import container, engine, imageio
from .codec import Encoded, coded_image, decode, encode, model_for
from .container import DEFAULT_MAX_PIXELS, Header
from .devices import describe_device, resolve_device
from .fileio import read_file, refuse_to_overwrite, write_atomically

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Encoded",
    "coded_image",
    "compress",
    "compress_file",
    "decompress",
    "decompress_file",
    "decompress_image",
    "decompress_to_png",
    "default_compressed_path",
    "default_decompressed_path",
    "describe_device",
    "encode",
    "model_for",
    "read_header",
    "resolve_device",
]


def compress(
    image,
    model: str | None = None,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    effort: int = 1,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model_only: bool = False,
    model_pixel_limit: int | None = None,
) -> bytes:
    """Compress an image (numpy array, PIL image, path or seekable binary file) to .rdc bytes.

    ``model`` is a registered model name (default: the best installed, see ``ridecodec models``).
    ``effort`` (1..8): code the image in that many orientations (flips and transposes, see
    ``ridecodec.orientation``) and keep the smallest; it costs ``effort`` encodes, and decoding
    costs the same whatever the effort. 1 codes the image as it is. ``threads``: CPU threads for
    an exact model (every built-in model is); the file is the same whatever the number.
    ``weights``: a weights file for the model (e.g. made by ``ridecodec train``) instead of its
    shipped weights; the file records their digest, and decoding needs the same file.
    ``max_pixels``: refuse larger images (the decoders' default limit, see ``container``).
    ``model_only``: code with the model even where a PNG of the image would be smaller (which the
    file otherwise keeps instead, see README "Never larger than PNG"): for measuring a model.
    ``model_pixel_limit``: code images up to this many pixels with a model that declares itself
    too slow for large images (its ``pixel_limit``; default: that limit), instead of refusing.
    :func:`encode` takes the same arguments and also says what was chosen.
    """
    return encode(
        image,
        model=model,
        device=device,
        progress=progress,
        effort=effort,
        threads=threads,
        weights=weights,
        max_pixels=max_pixels,
        model_only=model_only,
        model_pixel_limit=model_pixel_limit,
    ).data


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The validated header of .rdc bytes (the payload is checked for length only)."""
    header, _ = container.parse(data, max_pixels)
    return header


def decompress_image(
    data,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    model_pixel_limit: int | None = None,
) -> Image.Image:
    """Decompress .rdc bytes (or a path, or a binary file) to a PIL image in the original mode
    (palette included). 16-bit images other than gray have no Pillow mode: use
    :func:`decompress`. ``threads``: CPU threads for an exact model (see :func:`compress`)."""
    return imageio.from_coded(
        decode(data, device, progress, max_pixels, threads, weights=weights, model_pixel_limit=model_pixel_limit)
    )


def decompress(
    data,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    model_pixel_limit: int | None = None,
) -> np.ndarray:
    """Decompress .rdc bytes (or a path, or a binary file) to a numpy array equal to the array the
    file was made from, or to ``np.asarray`` of the original image: (H, W) for L and P indices
    (bool for mode 1), (H, W, C) for LA, RGB and RGBA; uint16 for 16-bit images."""
    return imageio.to_array(
        decode(data, device, progress, max_pixels, threads, weights=weights, model_pixel_limit=model_pixel_limit)
    )


def decompress_to_png(
    data,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    model_pixel_limit: int | None = None,
) -> bytes:
    """Decompress .rdc bytes (or a path, or a binary file) to PNG bytes: the original image in its
    mode, or with 16 bits per sample for 16-bit images."""
    return imageio.coded_png_bytes(
        decode(data, device, progress, max_pixels, threads, weights=weights, model_pixel_limit=model_pixel_limit)
    )


def default_compressed_path(source: str | os.PathLike) -> Path:
    """img.png -> img.rdc, beside the input."""
    return Path(source).with_suffix(".rdc")


def default_decompressed_path(source: str | os.PathLike) -> Path:
    """img.rdc -> img.png, beside the input."""
    return Path(source).with_suffix(".png")


def compress_file(
    source: str | os.PathLike,
    destination: str | os.PathLike | None = None,
    *,
    force: bool = False,
    model: str | None = None,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    effort: int = 1,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    model_only: bool = False,
    model_pixel_limit: int | None = None,
) -> Path:
    """Compress an image file to ``destination`` (default: beside it, .rdc); returns the path.
    ``effort``, ``threads``, ``weights``, ``model_only``, ``model_pixel_limit``: as for
    :func:`compress`."""
    destination = Path(destination) if destination is not None else default_compressed_path(source)
    refuse_to_overwrite(destination, force)  # before the slow part
    data = compress(
        source,
        model=model,
        device=device,
        progress=progress,
        effort=effort,
        threads=threads,
        weights=weights,
        model_only=model_only,
        model_pixel_limit=model_pixel_limit,
    )
    write_atomically(destination, data, force=force)
    return destination


def decompress_file(
    source: str | os.PathLike,
    destination: str | os.PathLike | None = None,
    *,
    force: bool = False,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    model_pixel_limit: int | None = None,
) -> Path:
    """Decompress a .rdc file to a PNG (default: beside it, .png); returns the path. ``weights``:
    the weights file it was compressed with, if not the model's shipped ones."""
    destination = Path(destination) if destination is not None else default_decompressed_path(source)
    refuse_to_overwrite(destination, force)  # before the slow part
    png = decompress_to_png(
        read_file(source),
        device=device,
        progress=progress,
        max_pixels=max_pixels,
        threads=threads,
        weights=weights,
        model_pixel_limit=model_pixel_limit,
    )
    write_atomically(destination, png, force=force)
    return destination
