"""Compression evaluation: what a model's files cost, next to its likelihood and classical codecs.

For each image this measures

* the model's *likelihood* code length, ``-log2 p(image)`` from ``log_prob``: the size an ideal
  entropy coder would reach (with ``effort`` above 1, of the image in the orientation the
  encoder chose, and for a file whose tables are restricted to the image's value sets, of the
  model so restricted, so that the difference to the payload stays the coder's overhead);
* the size of the actual .rdc file, and of its payload alone (the file less its header): the
  difference between payload and likelihood is the entropy coder's overhead, which should be a
  fraction of a percent;
* optionally, the sizes of the same pixels under classical lossless codecs (through imagecodecs).

Everything is in bits per pixel (a pixel counts all its channels). Totals over a set of images are
total bits over total pixels, so large images weigh more, as in the literature.

Files that cannot be measured (not an image, several frames, a mode or bit depth the codec or this
evaluation does not take) are skipped and listed in the report with the reason, never dropped
silently.

``ridecodec eval`` and ``benchmarks/compare.py`` are thin wrappers around :func:`evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import api, engine, imageio, orientation, registry
from .errors import InputError, RidecodecError, UnsupportedImageError


def image_extensions() -> frozenset[str]:
    """The extensions (lower case, with the dot) of every format Pillow can open: the files a
    directory contributes."""
    Image.init()
    return frozenset(
        extension for extension, format_id in Image.registered_extensions().items() if format_id in Image.OPEN
    )


#: How images are prepared: "gray" is Pillow's convert("L"), the project's grayscale.
COLOR_MODES = ("gray", "color", "as-is")

#: Classical codecs, in table order: name (a key of ``classical_bits``) -> column label.
CLASSICAL_CODECS = {
    "png": "PNG",
    "jpeg2000": "JPEG 2000",
    "jpegls": "JPEG-LS",
    "webp": "WebP",
    "jpegxl-e7": "JPEG XL e7",
    "jpegxl-e9": "JPEG XL e9",
}


# --- classical codecs -------------------------------------------------------------------------


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        raise RidecodecError(
            "comparing with classical codecs needs imagecodecs: pip install imagecodecs "
            "(or pip install 'ridecodec[bench]')"
        ) from None
    return imagecodecs


def _webp_encode(ic, pixels: np.ndarray) -> bytes:
    # libwebp codes only RGB(A): gray goes in as R = G = B, which lossless WebP codes at almost
    # no cost beyond the gray plane (its subtract-green transform zeroes R and B).
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return ic.webp_encode(pixels, level=100, lossless=True, method=6)


def _webp_decode(ic, data: bytes, channels: int) -> np.ndarray:
    # libwebp drops an alpha channel that is all 255 unless asked for it back.
    decoded = ic.webp_decode(data, hasalpha=channels == 4)
    if channels == 1 and (decoded == decoded[:, :, :1]).all():
        decoded = decoded[:, :, 0]  # back from R = G = B (if they differ, the check fails)
    return decoded


def _lossless_codecs(ic, channels: int) -> dict[str, tuple[Callable, Callable]]:
    """name -> (encode, decode), each set up to be lossless.

    The settings reproduce the reference figures in ../shared/data/README.md. Traps found by
    experiment (imagecodecs 2026.3.6): JPEG XL needs ``lossless=True``; ``distance=0`` or
    ``level=100`` alone give lossy files. JPEG-LS is lossless by default (NEAR = 0), and
    JPEG 2000 with ``reversible=True`` uses the reversible 5/3 wavelet (in a .jp2 container).
    """
    return {
        "png": (lambda pixels: ic.png_encode(pixels, level=9), ic.png_decode),
        "jpeg2000": (lambda pixels: ic.jpeg2k_encode(pixels, reversible=True), ic.jpeg2k_decode),
        "jpegls": (ic.jpegls_encode, ic.jpegls_decode),
        "webp": (lambda pixels: _webp_encode(ic, pixels), lambda data: _webp_decode(ic, data, channels)),
        "jpegxl-e7": (lambda pixels: ic.jpegxl_encode(pixels, lossless=True, effort=7), ic.jpegxl_decode),
        "jpegxl-e9": (lambda pixels: ic.jpegxl_encode(pixels, lossless=True, effort=9), ic.jpegxl_decode),
    }


def classical_bits(pixels: np.ndarray) -> dict[str, int]:
    """Compressed size in bits of ``pixels`` ((H, W) or (H, W, C) uint8) under each classical
    lossless codec (keys of CLASSICAL_CODECS). Each file is decoded and checked against the
    pixels, so a codec whose settings are silently lossy raises instead of looking good."""
    ic = _imagecodecs()
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    sizes = {}
    for name, (encode, decode) in _lossless_codecs(ic, channels).items():
        data = encode(pixels)
        if not np.array_equal(decode(data), pixels):
            raise RidecodecError(f"classical codec {name} did not decode to the same pixels")
        sizes[name] = 8 * len(data)
    return sizes


# --- results ----------------------------------------------------------------------------------


def how_coded(values: dict) -> str:
    """The 'coded' cell of an image (or '' for the total row)."""
    if "coder" not in values:
        return ""
    if values["coder"] != "model":
        repeats = "+r" if values.get("repeated_lines") else ""
        return "PNG" + repeats if values["coder"] == "png" else values["coder"]
    return "model" + "".join(
        mark
        for mark, key in (("+r", "repeated_lines"), ("+a", "adapted"), ("+v", "value_sets"), ("+c", "colour_set"))
        if values.get(key)
    )


@dataclass
class ImageResult:
    name: str
    width: int
    height: int
    channels: int
    likelihood_bpp: float  # -log2 p(image) / pixels, of the model as the file codes with it
    file_bpp: float  # the whole .rdc file
    payload_bpp: float  # the .rdc file less its header
    overhead_percent: float  # of the payload over the likelihood: the entropy coder's cost
    classical_bpp: dict[str, float] = field(default_factory=dict)
    encode_seconds: float = 0.0
    decode_seconds: float | None = None  # only measured with verify=True
    verified: bool | None = None  # decompress(compress(x)) == x, with verify=True
    orientation: int = 0  # the flip/transpose the encoder chose (0 unless effort > 1)
    value_sets: bool = False  # the file restricts the tables to the image's values
    adapted: bool = False  # the file adapts the tables online (ridecodec.adaptive)
    colour_set: bool = False  # the file restricts the tables to the image's colours (ridecodec.coloursets)
    repeated_lines: bool = False  # the file codes the image without its repeated rows and columns (ridecodec.repeats)
    coder: str = "model"  # "model", or the fallback the file kept: "png" or "stored"
    model_version: str = ""  # the model version the file was coded with (the encoder's choice)

    @property
    def num_pixels(self) -> int:
        return self.width * self.height


def _overhead_percent(payload_bits: float, likelihood_bits: float) -> float:
    return 100.0 * (payload_bits - likelihood_bits) / likelihood_bits


@dataclass
class SkippedFile:
    name: str
    reason: str  # one line: why it was not measured


@dataclass
class Report:
    model: str
    device: str
    mode: str  # "gray", "color" or "as-is"
    images: list[ImageResult]
    effort: int = 1  # orientations tried per image (compress's effort)
    skipped: list[SkippedFile] = field(default_factory=list)
    weights: str | None = None  # a weights file used instead of the model's shipped weights

    def totals(self) -> dict:
        """Pixel-weighted totals (total bits / total pixels) of every column, summed times, and
        whether every image verified (None when not checked)."""
        pixels = sum(image.num_pixels for image in self.images)

        def total_bpp(bpp_of: Callable[[ImageResult], float]) -> float:
            if pixels == 0:
                return float("nan")
            return sum(bpp_of(image) * image.num_pixels for image in self.images) / pixels

        likelihood = total_bpp(lambda image: image.likelihood_bpp)
        payload = total_bpp(lambda image: image.payload_bpp)
        # a codec's total only where it measured every image
        codecs = [name for name in CLASSICAL_CODECS if all(name in image.classical_bpp for image in self.images)]
        decode_times = [image.decode_seconds for image in self.images]
        checks = [image.verified for image in self.images]
        return {
            "images": len(self.images),
            "pixels": pixels,
            "likelihood_bpp": likelihood,
            "file_bpp": total_bpp(lambda image: image.file_bpp),
            "payload_bpp": payload,
            "overhead_percent": _overhead_percent(payload, likelihood) if pixels else float("nan"),
            "classical_bpp": {name: total_bpp(_classical_of(name)) for name in codecs},
            "encode_seconds": sum(image.encode_seconds for image in self.images),
            "decode_seconds": None if None in decode_times else sum(decode_times),
            "verified": None if None in checks else all(checks),
        }

    def to_markdown(self) -> str:
        """A per-image table with a total row, and a line on timing and verification."""
        totals = self.totals()
        codecs = list(totals["classical_bpp"])
        header = ["image", "size", "coded", "likelihood bpp", "file bpp", "diff %"]
        header += [CLASSICAL_CODECS[name] for name in codecs]

        def row(label, size, values) -> str:
            cells = [
                label,
                size,
                how_coded(values),
                f"{values['likelihood_bpp']:.3f}",
                f"{values['file_bpp']:.3f}",
                f"{values['overhead_percent']:+.3f}",
            ]
            cells += [f"{values['classical_bpp'][name]:.3f}" for name in codecs]
            return "| " + " | ".join(cells) + " |"

        lines = [
            f"Model `{self.model}`"
            + (f" (weights {self.weights})" if self.weights else "")
            + f" on {self.device}, {self.mode} images, "
            + (f"effort {self.effort}, " if self.effort > 1 else "")
            + "bits per pixel.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join([" --- "] * 3 + [" ---: "] * (len(header) - 3)) + "|",
        ]
        for image in self.images:
            size = f"{image.width}x{image.height}" + (f"x{image.channels}" if image.channels > 1 else "")
            lines.append(row(image.name, size, dataclasses.asdict(image)))
        lines.append(row(f"**total** ({totals['images']})", f"{totals['pixels']} px", totals))
        lines += [
            "",
            (
                "coded: how the file holds the image: by the model, of the image without its repeated rows and "
                "columns (+r) or as it is, with its tables as they are, adapted online (+a), restricted to value "
                "sets (+v) or to the image's colours (+c); or as PNG (+r: of the image without its repeats) or "
                "stored samples, where those are smaller than the model's coding."
            ),
            "",
            (
                "diff %: the payload (file less header) over the model's likelihood code length, "
                "i.e. the entropy coder's overhead (for an image kept as PNG or stored raw, the size "
                "of that instead: then below zero). For a file coded with adaptation, value sets or "
                "colour sets, the likelihood is that of the model so adapted or restricted."
            ),
        ]
        timing = f"Encoding took {totals['encode_seconds']:.1f} s"
        if totals["decode_seconds"] is not None:
            timing += f", decoding {totals['decode_seconds']:.1f} s"
        if totals["verified"] is not None:
            timing += (
                "; every image decoded exactly" if totals["verified"] else "; SOME IMAGES FAILED TO DECODE EXACTLY"
            )
        lines += ["", timing + "."]
        versions = sorted({image.model_version for image in self.images})
        if len(versions) > 1:  # the encoder chose among the model's versions (DensityModel.alternative_versions)
            counts = ", ".join(
                f"version {v} on {sum(image.model_version == v for image in self.images)}" for v in versions
            )
            lines += ["", f"Model versions chosen per image: {counts}."]
        if self.skipped:
            lines += ["", f"{len(self.skipped)} files were not measured:"]
            lines += [f"- skipped {skipped.name}: {skipped.reason}" for skipped in self.skipped]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["totals"] = self.totals()
        return json.dumps(data, indent=2)


# --- evaluation -------------------------------------------------------------------------------


def find_images(paths: Sequence[str | Path]) -> tuple[list[Path], list[SkippedFile]]:
    """Files as given, and for each directory the files in it in a format Pillow opens (sorted,
    not recursive); and the directories' other files, skipped with the reason."""
    found, skipped = [], []
    extensions = image_extensions()
    for path in map(Path, paths):
        if path.is_dir():
            for file in sorted(p for p in path.iterdir() if p.is_file()):
                if file.suffix.lower() in extensions:
                    found.append(file)
                else:
                    skipped.append(
                        SkippedFile(
                            file.name,
                            f"not an image file (no image format has the extension {file.suffix or '(none)'!r})",
                        )
                    )
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found, skipped


def image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The image files of :func:`find_images`."""
    return find_images(paths)[0]


def _classical_of(codec: str) -> Callable[[ImageResult], float]:
    """An image's bits per pixel with the classical ``codec``."""
    return lambda image: image.classical_bpp[codec]


def _is_deeper_than_8_bits(image) -> bool:
    # Pillow's modes I;16* and I (integers) and F (floats), and the uint16 arrays that
    # imageio.open_image returns for 16-bit colour
    if isinstance(image, np.ndarray):
        return image.dtype != np.uint8
    return image.mode in ("I", "F") or image.mode.startswith("I;16")


def load_pixels(path: str | Path, color: str = "gray", crop: int | None = None) -> np.ndarray:
    """An image file's pixels, (H, W) or (H, W, C) uint8, prepared as ``color`` says; with
    ``crop``, only the centre ``crop`` x ``crop`` pixels (or fewer, of a smaller image).

    UnsupportedImageError for images of more than 8 bits per sample: converting them to 8 bits
    would measure other pixels than ridecodec codes (a 16-bit gray image converts to a nearly
    constant one, and would score close to 0 bits per pixel)."""
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, not {color!r}")
    image = imageio.open_image(path)
    if _is_deeper_than_8_bits(image):
        mode = f"a {image.dtype} array" if isinstance(image, np.ndarray) else f"mode {image.mode}"
        raise UnsupportedImageError(f"{path}: has 16-bit or deeper samples ({mode}); eval measures 8-bit images")
    if isinstance(image, np.ndarray):  # open_image returns arrays for 16-bit colour only; any 8-bit one as an image
        image = Image.fromarray(image)
    if color == "gray":
        image = image.convert("L")
    elif color == "color" or image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if crop is not None:
        top, left = max(0, (pixels.shape[0] - crop) // 2), max(0, (pixels.shape[1] - crop) // 2)
        pixels = np.ascontiguousarray(pixels[top : top + crop, left : left + crop])
    return pixels


def evaluate_image(
    name: str,
    pixels: np.ndarray,
    model: str,
    device: str | torch.device = "auto",
    classical: bool = True,
    verify: bool = False,
    effort: int = 1,
    weights: str | Path | None = None,
    model_pixel_limit: int | None = None,
) -> ImageResult:
    """Measure one image (see the module docstring); ``weights``: a weights file for the model
    instead of its shipped weights, and ``model_pixel_limit``, as for ``compress``."""
    started = time.perf_counter()
    encoded = api.encode(
        pixels, model=model, device=device, effort=effort, weights=weights, model_pixel_limit=model_pixel_limit
    )
    encode_seconds = time.perf_counter() - started
    data, header = encoded.data, encoded.header

    decode_seconds = verified = None
    if verify:
        started = time.perf_counter()
        decoded = api.decompress(data, device=device, weights=weights, model_pixel_limit=model_pixel_limit)
        decode_seconds = time.perf_counter() - started
        verified = decoded.shape == pixels.shape and bool(np.array_equal(decoded, pixels))

    planes = encoded.coded.pixels  # (C, H, W), as coded
    channels, height, width = planes.shape
    num_pixels = height * width
    # the model's likelihood of the image, measured apart from the coder, with the version, the
    # orientation and the variant of its tables that the file uses (whatever its payload holds)
    value_sets = header.used_values()
    lines = header.repeats()
    likelihood_bits = engine.variant_code_length_bits(
        encoded.model,
        orientation.orient(planes if lines is None else lines.remove(planes), header.orientation),
        engine.Variant(value_sets, header.adaptation, header.colours()),
    )
    payload_bits = 8 * (len(data) - header.header_length)
    return ImageResult(
        name=name,
        width=width,
        height=height,
        channels=channels,
        likelihood_bpp=likelihood_bits / num_pixels,
        file_bpp=8 * len(data) / num_pixels,
        payload_bpp=payload_bits / num_pixels,
        overhead_percent=_overhead_percent(payload_bits, likelihood_bits),
        classical_bpp={codec: bits / num_pixels for codec, bits in classical_bits(pixels).items()} if classical else {},
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        verified=verified,
        orientation=header.orientation,
        value_sets=value_sets is not None,
        adapted=bool(header.adaptation),
        colour_set=header.colour_set is not None,
        repeated_lines=lines is not None,
        coder=encoded.coder,
        model_version=header.model_version,
    )


def evaluate(
    paths: Sequence[str | Path],
    model: str,
    device: str = "auto",
    color: str = "gray",
    classical: bool = True,
    verify: bool = False,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    effort: int = 1,
    crop: int | None = None,
    weights: str | Path | None = None,
    model_pixel_limit: int | None = None,
) -> Report:
    """Evaluate ``model`` on image files and directories (see :func:`image_paths`).

    ``color``: "gray" (convert("L")), "color" (convert("RGB")) or "as-is" (L, RGB and RGBA kept,
    other modes converted to RGB). ``limit``: only the first N images. ``progress(name)`` is
    called before each image. ``effort``: orientations tried per image, as for ``compress``.
    ``crop``: measure the centre ``crop`` x ``crop`` pixels of each image (to keep big sets affordable).
    ``weights``: a weights file for the model instead of its shipped weights (e.g. from training).
    ``model_pixel_limit``: as for ``compress`` (images above a slow model's limit are skipped).
    Files that are not images, or images that cannot be measured, are listed in the report's
    ``skipped`` with the reason.
    """
    files, skipped = find_images(paths)
    if not files:
        raise InputError(f"no image files in {', '.join(map(str, paths))}")
    if limit is not None:
        files = files[:limit]
    resolved = api.resolve_device(device)
    # Load the model now: an unknown name fails before any work, and the first image's
    # encoding time does not include loading.
    registry.load_model(model, resolved, weights)
    results = []
    for path in files:
        if progress is not None:
            progress(path.name)
        try:
            pixels = load_pixels(path, color, crop)
            results.append(
                evaluate_image(
                    path.name, pixels, model, resolved, classical, verify, effort, weights, model_pixel_limit
                )
            )
        except (InputError, UnsupportedImageError) as error:  # this image's fault: measure the others
            reason = str(error).removeprefix(f"{path}: ")
            skipped.append(SkippedFile(path.name, reason))
    return Report(
        model=model,
        device=api.describe_device(resolved),
        mode=color,
        images=results,
        effort=effort,
        skipped=skipped,
        weights=None if weights is None else str(weights),
    )
