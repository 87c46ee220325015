"""The public Python API: compress and decompress between images and bytes, or between files.

    >>> import numpy as np, ridecodec
    >>> image = np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)
    >>> data = ridecodec.compress(image)
    >>> bool((ridecodec.decompress(data) == image).all())
    True
"""

from __future__ import annotations

import os
import platform
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import container, engine, imageio, orientation, registry
from .container import DEFAULT_MAX_PIXELS, Header
from .errors import (
    DeviceUnavailableError, IntegrityError, RidecodecError, UnsupportedImageError, WeightsMismatchError,
)
from .fileio import read_file, refuse_to_overwrite, write_atomically
from .imageio import CodedImage


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks the GPU when there is one; 'cuda' without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "device cuda was asked for, but torch sees no CUDA GPU; use --device cpu or auto"
        )
    return device


def describe_device(device: torch.device) -> str:
    """How a file records the device it was encoded on, for diagnosis: the device kind and what
    its arithmetic depends on, e.g. 'cpu (x86_64, AVX512)' (torch's CPU kernels: AVX512, AVX2,
    DEFAULT, ...) or 'cuda (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.machine() or '?'}, {torch.backends.cpu.get_cpu_capability()})"
    return device.type


def _coded_image(image) -> CodedImage:
    if isinstance(image, (str, os.PathLike)) or hasattr(image, "read"):
        image = imageio.open_image(image)
    return imageio.to_coded(image)


def coding_split(density_model, threads: int) -> engine.Split:
    """How the engine may run a model: ``threads`` CPU threads for an exact model (its tables do
    not depend on them), one for any other (whose float arithmetic may)."""
    if threads < 1:
        raise RidecodecError(f"threads must be at least 1, not {threads}")
    return engine.Split(threads=threads) if density_model.exact_across_devices else engine.Split()


def _encode_smallest(
    density_model, pixels: np.ndarray, effort: int, progress: engine.ProgressCallback | None,
    split: engine.Split = engine.Split(),
) -> tuple[bytes, int, np.ndarray | None]:
    """Encode ``pixels`` (C, H, W) in the first ``effort`` orientations of the search order, each
    with the model's tables as they are and, where the image leaves values unused, restricted to
    its value sets (one model pass codes both, ``engine.encode_variants``). Returns the smallest
    payload (value sets' header bytes counted), its orientation and its value sets (or None); on
    a tie, the one tried first: effort 1 is plain coding.

    Progress runs once from 0 to the steps of all candidates together (a transposed candidate may
    take a different number of steps), so the bar fills once, not once per candidate."""
    used = engine.used_values(pixels)
    variants = [None] if used.all() else [None, used]
    candidates = orientation.SEARCH_ORDER[:effort]
    steps = [
        engine.wavefront_for(density_model, *orientation.oriented_shape(pixels.shape, o)[1:]).num_steps
        for o in candidates
    ]
    total = sum(steps)
    best, best_cost, steps_before = None, None, 0
    for candidate, candidate_steps in zip(candidates, steps):
        overall = None if progress is None else (
            lambda done, _total, before=steps_before: progress(before + done, total)
        )
        payloads = engine.encode_variants(
            density_model, orientation.orient(pixels, candidate), variants, overall, split
        )
        for payload, value_sets in zip(payloads, variants):
            cost = payload.nbytes + (0 if value_sets is None else container.value_sets_bytes(len(value_sets)))
            if best_cost is None or cost < best_cost:
                best, best_cost = (payload.tobytes(), candidate, value_sets), cost
        steps_before += candidate_steps
    return best


def compress(
    image,
    model: str | None = None,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    effort: int = 1,
    threads: int = 1,
) -> bytes:
    """Compress an image (numpy array, PIL image, path or seekable binary file) to .rdc bytes.

    ``model`` is a registered model name (default: the best installed, see ``ridecodec models``).
    ``effort`` (1..8): code the image in that many orientations (flips and transposes, see
    ``ridecodec.orientation``) and keep the smallest; it costs ``effort`` encodes, and decoding
    costs the same whatever the effort. 1 codes the image as it is. ``threads``: CPU threads for
    an exact model (every built-in model is); the file is the same whatever the number.
    """
    if not 1 <= effort <= orientation.NUM_ORIENTATIONS:
        raise RidecodecError(f"effort must be 1..{orientation.NUM_ORIENTATIONS}, not {effort}")
    coded = _coded_image(image)
    device = resolve_device(device)
    name = model or registry.default_model(coded.layout)
    density_model = registry.load_model(name, device)
    if coded.layout not in density_model.modes:
        raise UnsupportedImageError(
            f"model {name!r} does not code {coded.layout} images (it codes "
            f"{', '.join(density_model.modes)}); choose another with --model"
        )
    payload, chosen, value_sets = _encode_smallest(
        density_model, coded.pixels, effort, progress, coding_split(density_model, threads)
    )
    coder = container.CODER_RANGE_CATEGORICAL
    if len(payload) >= coded.pixels.nbytes:  # the model cannot compress it: never expand
        # raw pixels cost the same in any orientation: store them as they are
        payload, coder, chosen, value_sets = coded.pixels.tobytes(), container.CODER_STORED, 0, None
    header = Header(
        width=coded.width,
        height=coded.height,
        layout=coded.layout,
        original_mode=coded.original_mode,
        transform=coded.transform,
        model_name=name,
        model_version=density_model.version,
        weights_digest=density_model.weights_digest(),
        pixel_crc32=zlib.crc32(coded.pixels.tobytes()),  # as restored, so a wrong orientation fails it
        encoder_device=describe_device(device),
        orientation=chosen,
        coder=coder,
        palette=coded.palette,
        palette_mode=coded.palette_mode,
        transparency=coded.transparency,
        value_sets=None if value_sets is None else container.pack_value_sets(value_sets),
    )
    return container.pack(header, payload)


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The validated header of .rdc bytes (the payload is checked for length only)."""
    header, _ = container.parse(data, max_pixels)
    return header


def _decode(data: bytes, device, progress, max_pixels: int, threads: int = 1) -> CodedImage:
    header, payload = container.parse(data, max_pixels)
    # the payload holds the pixels in the recorded orientation (transposed: W rows of H)
    shape = orientation.oriented_shape((header.channels, header.height, header.width), header.orientation)
    if header.coder == container.CODER_STORED:  # no model needed
        pixels = np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()
        density_model, device = None, None
    else:
        device = resolve_device(device)
        density_model = registry.load_model(header.model_name, device)
        digest = density_model.weights_digest()
        retired = density_model.retired_versions.get(header.model_version)
        if digest != header.weights_digest and retired is not None:
            raise WeightsMismatchError(
                f"the file was written with {header.model_name} version {header.model_version} on "
                f"{header.encoder_device}, which this ridecodec no longer reads (it has version "
                f"{density_model.version}); {retired}"
            )
        if digest != header.weights_digest:
            raise WeightsMismatchError(
                f"the file was encoded with {header.model_name} {header.model_version} weights "
                f"{header.weights_digest[:12]}, but the installed model has {density_model.version} "
                f"weights {digest[:12]}; install the matching model version"
            )
        words = np.frombuffer(payload, dtype="<u4")
        split = coding_split(density_model, threads)
        pixels = engine.decode_pixels(density_model, words, shape, progress, header.used_values(), split)
    pixels = orientation.unorient(pixels, header.orientation)
    if zlib.crc32(pixels.tobytes()) != header.pixel_crc32:
        here = describe_device(device) if device is not None else header.encoder_device
        hint = (
            f"; it was encoded on {header.encoder_device} and decoded on {here}, whose arithmetic "
            f"differs for model {header.model_name!r}: decode it on {header.encoder_device}"
            if here != header.encoder_device and not density_model.exact_across_devices
            else ""
        )
        raise IntegrityError(f"the decoded pixels fail the file's CRC: the file is corrupt{hint}")
    return CodedImage(
        pixels, header.layout, header.original_mode, header.transform,
        header.palette, header.palette_mode, header.transparency,
    )


def decompress_image(
    data: bytes,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
) -> Image.Image:
    """Decompress .rdc bytes to a PIL image in the original mode (palette included). ``threads``:
    CPU threads for an exact model (see :func:`compress`)."""
    return imageio.from_coded(_decode(data, device, progress, max_pixels, threads))


def decompress(
    data: bytes,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int = 1,
) -> np.ndarray:
    """Decompress .rdc bytes to a numpy array equal to ``np.asarray`` of the original image:
    (H, W) for L (and P indices; bool for mode 1), (H, W, C) for LA, RGB and RGBA."""
    return np.asarray(decompress_image(data, device, progress, max_pixels, threads))


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
) -> Path:
    """Compress an image file to ``destination`` (default: beside it, .rdc); returns the path.
    ``effort``, ``threads``: as for :func:`compress`."""
    destination = Path(destination) if destination is not None else default_compressed_path(source)
    refuse_to_overwrite(destination, force)  # before the slow part
    data = compress(source, model=model, device=device, progress=progress, effort=effort, threads=threads)
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
) -> Path:
    """Decompress a .rdc file to a PNG (default: beside it, .png); returns the path."""
    destination = Path(destination) if destination is not None else default_decompressed_path(source)
    refuse_to_overwrite(destination, force)  # before the slow part
    image = decompress_image(read_file(source), device=device, progress=progress, max_pixels=max_pixels,
                             threads=threads)
    write_atomically(destination, imageio.png_bytes(image), force=force)
    return destination
