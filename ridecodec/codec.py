"""The codec's policy, in one place: which model and version code an image, in which orientation,
with which variant of the model's tables, whether PNG or the raw samples beat them, and the header
that records all of it; and decoding a file back by the same records. The API (api.py), the CLI
and eval all encode through :func:`encode`, which returns the file with the choices it made
(:class:`Encoded`), so that none of them parses its own output again."""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import coloursets, container, depth, engine, imageio, orientation, registry, repeats
from .container import DEFAULT_MAX_PIXELS, DeepRecord, Header
from .depth import DeepCoding
from .devices import describe_device, resolve_device
from .errors import (
    FormatError,
    InputError,
    IntegrityError,
    RidecodecError,
    UnsupportedImageError,
    WeightsMismatchError,
)
from .fileio import read_file
from .imageio import CodedImage
from .models.base import DensityModel
from .models.lowbyte import LowByteModel


def coded_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> CodedImage:
    """The planes :func:`encode` codes for ``image`` (anything it takes, or a CodedImage), or a
    one-line error; refuses more than ``max_pixels`` pixels."""
    if isinstance(image, (str, os.PathLike)) or hasattr(image, "read"):
        image = imageio.open_image(image)
    coded = image if isinstance(image, CodedImage) else imageio.to_coded(image)
    if coded.width * coded.height > max_pixels:
        # a file decoders refuse by default helps nobody who has not asked for it
        raise UnsupportedImageError(
            f"the image has {coded.width}x{coded.height} = {coded.width * coded.height} pixels, more than "
            f"{max_pixels} (what decoders accept by default); raise the limit with --max-pixels"
        )
    return coded


#: The side of the centre crop on which the encoder compares a model's versions (see
#: ``DensityModel.alternative_versions``): 64 x 64 pixels, a few percent of a photograph's
#: coding time per version, chose the better version for the whole image on every one of 83
#: development photographs (decoded JPEGs and lossless-origin; benchmarks/RESULTS.md).
PROBE_SIDE = 64


def model_for(coded: CodedImage, model: str | None, device: torch.device, weights=None):
    """(name, model) that codes ``coded``: ``model`` or the best installed for its layout, with
    ``weights`` if given, or a one-line error if it does not code that layout. Without
    ``weights``, the model's version that codes a probe of the image shortest, where the model
    keeps alternatives for its layout (``alternative_versions``)."""
    name, density_model, _ = _chosen_model(coded, model, device, weights)
    return name, density_model


def _chosen_model(coded: CodedImage, model: str | None, device: torch.device, weights=None):
    """:func:`model_for`'s (name, model), and the bits each version took on the probe (empty
    where no versions were compared)."""
    name = model or registry.default_model(coded.layout)
    density_model = registry.load_model(name, device, weights)
    if coded.layout not in density_model.modes:
        raise UnsupportedImageError(
            f"model {name!r} does not code {coded.layout} images (it codes "
            f"{', '.join(density_model.modes)}); choose another with --model"
        )
    alternatives = density_model.alternative_versions.get(coded.layout, ())
    probe_bits: dict[str, float] = {}
    if weights is None and alternatives:
        candidates = [density_model] + [registry.load_model(name, device, version=v) for v in alternatives]
        costs = _probe_bits(candidates, coded)
        probe_bits = {candidate.version: cost for candidate, cost in zip(candidates, costs)}
        density_model = candidates[int(np.argmin(costs))]  # the first on a tie: the current version
    return name, density_model, probe_bits


def _probe_bits(candidates: list, coded: CodedImage) -> list[float]:
    """The bits each candidate model's tables take to code the image's centre (``PROBE_SIDE``
    square). For a 16-bit image, its high bytes (what the model codes); for an image with many
    repeated rows and columns, the image without them (``ridecodec.repeats``): repeats make a
    picture look smoother than what the model will code."""
    planes = coded.pixels if coded.bit_depth != 16 else depth.split(coded.pixels)[1]
    lines = repeats.worth_trying(planes)
    if lines is not None:
        planes = lines.remove(planes)
    _, height, width = planes.shape
    top, left = max(0, (height - PROBE_SIDE) // 2), max(0, (width - PROBE_SIDE) // 2)
    probe = np.ascontiguousarray(planes[:, top : top + PROBE_SIDE, left : left + PROBE_SIDE])
    return [engine.variant_code_length_bits(candidate, probe, engine.Variant()) for candidate in candidates]


def _candidate_steps(density_model, shape: tuple[int, int, int], effort: int) -> list[int]:
    """Wavefront steps of coding planes of ``shape`` in each of the first ``effort`` orientations."""
    return [
        engine.wavefront_for(density_model, *orientation.oriented_shape(shape, o)[1:]).num_steps
        for o in orientation.SEARCH_ORDER[:effort]
    ]


def coding_split(density_model, threads: int, rows_per_call: int | None = None) -> engine.Split:
    """How the engine may run a model: ``threads`` CPU threads, and steps handed over in calls of
    ``rows_per_call`` positions (the conformance kit varies it), for an exact model (its tables do
    not depend on either); one thread and whole steps for any other (whose float arithmetic may)."""
    if threads < 1:
        raise RidecodecError(f"threads must be at least 1, not {threads}")
    if not density_model.exact_across_devices:
        return engine.Split()
    return engine.Split(rows_per_call=rows_per_call, threads=threads)


def candidate_variants(pixels: np.ndarray, adaptation: int) -> list[engine.Variant]:
    """The ways of handing the model's tables to the coder that the encoder tries for ``pixels``
    (C, H, W), plain coding first: as they are and adapted online, each as it is, restricted to
    the image's value sets (where it leaves values unused) and to its colour set (where it has few
    colours)."""
    used = engine.used_values(pixels)
    restrictions: list[dict[str, Any]] = [{}] if used.all() else [{}, {"value_sets": used}]
    colours = coloursets.worth_trying(pixels)
    if colours is not None:
        restrictions.append({"colour_set": colours})
    versions = (0, adaptation) if adaptation else (0,)
    return [engine.Variant(adaptation=version, **restriction) for version in versions for restriction in restrictions]


def variant_header_bytes(variant: engine.Variant, channels: int) -> int:
    """What recording ``variant`` adds to a file's header."""
    return (
        (0 if variant.value_sets is None else container.value_sets_bytes(channels))
        + (0 if variant.colour_set is None else container.colour_set_bytes(variant.colour_set.pack()))
        + (container.ADAPTATION_RECORD_BYTES if variant.adaptation else 0)
    )


@dataclass(frozen=True)
class Candidate:
    """One coding the encoder tried: an orientation (``ridecodec.orientation``), a variant of the
    model's tables, and what it costs: its payload plus what the variant adds to the header."""

    orientation: int
    variant: engine.Variant
    cost_bytes: int
    #: the repeated lines left out of the planes coded (``ridecodec.repeats``), or None
    repeated_lines: repeats.RepeatedLines | None = None


@dataclass(frozen=True)
class Encoded:
    """A compressed image and the choices that made it: what :func:`encode` returns."""

    data: bytes  #: the .rdc file
    header: Header  #: its header, as written
    coded: CodedImage  #: the planes it codes (as decoding restores them)
    model: DensityModel  #: the model, in the version chosen, whose tables were tried
    candidates: tuple[Candidate, ...]  #: every coding by the model that was tried, in order
    probe_bits: dict[str, float]  #: version -> bits on the probe, where versions were compared
    png_bytes: int | None  #: what PNG would have taken (None: not tried, ``model_only``)
    stored_bytes: int  #: what the raw samples take

    @property
    def num_pixels(self) -> int:
        return self.header.num_pixels

    @property
    def bits_per_pixel(self) -> float:
        """The whole file's bits per pixel, header included."""
        return 8 * len(self.data) / self.num_pixels

    @property
    def payload_bytes(self) -> int:
        return len(self.data) - self.header.header_length

    @property
    def coder(self) -> str:
        """'model', 'png' or 'stored': what the payload holds."""
        return container.CODER_NAMES[self.header.coder]


def _encode_smallest(
    density_model,
    pixels: np.ndarray,
    effort: int,
    progress: engine.ProgressCallback | None,
    split: engine.Split = engine.Split(),
    repeated_lines: repeats.RepeatedLines | None = None,
) -> tuple[bytes, Candidate, list[Candidate]]:
    """Encode ``pixels`` (C, H, W) in the first ``effort`` orientations of the search order, each
    with the model's tables as they are and adapted online to the image (``ridecodec.adaptive``),
    each of these as it is, restricted to its value sets where the image leaves values unused,
    and restricted to its colour set where it has few colours (``ridecodec.coloursets``): one
    model pass codes them all (``engine.encode_variants``). Returns the smallest payload (what its
    variant adds to the header counted), its candidate, and every candidate tried; on a tie, the
    one tried first: plain coding comes first. ``repeated_lines``: those left out of ``pixels``,
    whose record the costs include.

    Progress runs once from 0 to the steps of all candidates together (a transposed candidate may
    take a different number of steps), so the bar fills once, not once per candidate."""
    variants = candidate_variants(pixels, engine.adaptation_version_for(density_model, *pixels.shape[1:]))
    orientations = orientation.SEARCH_ORDER[:effort]
    steps = _candidate_steps(density_model, pixels.shape, effort)
    total = sum(steps)
    tried: list[Candidate] = []
    best: tuple[bytes, Candidate] | None = None
    steps_before = 0
    for oriented, oriented_steps in zip(orientations, steps):
        overall = (
            None if progress is None else (lambda done, _total, before=steps_before: progress(before + done, total))
        )
        payloads = engine.encode_variants(density_model, orientation.orient(pixels, oriented), variants, overall, split)
        record = 0 if repeated_lines is None else container.repeated_lines_bytes(repeated_lines)
        for payload, variant in zip(payloads, variants):
            cost = payload.nbytes + variant_header_bytes(variant, len(pixels)) + record
            candidate = Candidate(oriented, variant, cost, repeated_lines)
            tried.append(candidate)
            if best is None or candidate.cost_bytes < best[1].cost_bytes:
                best = (payload.tobytes(), candidate)
        steps_before += oriented_steps
    assert best is not None  # effort >= 1: at least one orientation was coded
    return best[0], best[1], tried


def encode(
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
    notice: Callable[[str], None] | None = None,
) -> Encoded:
    """Compress ``image`` (what ``api.compress`` takes, or a CodedImage) and say how: the
    arguments are ``api.compress``'s, which documents them; ``notice(line)`` is told, before the
    work starts, how long a slow model will take (see :func:`check_model_size`)."""
    if not 1 <= effort <= orientation.NUM_ORIENTATIONS:
        raise RidecodecError(f"effort must be 1..{orientation.NUM_ORIENTATIONS}, not {effort}")
    coded = coded_image(image, max_pixels)
    device = resolve_device(device)
    name, density_model, probe_bits = _chosen_model(coded, model, device, weights)
    check_model_size(density_model, coded.height, coded.width, coded.layout, effort, model_pixel_limit, notice)
    split = coding_split(density_model, threads)
    coding, first, low = depth.split(coded.pixels) if coded.bit_depth == 16 else (None, coded.pixels, None)
    # the image without its repeated rows and columns, where they are many (8-bit images only)
    lines = repeats.worth_trying(first) if coding is None else None
    reduced = None if lines is None else lines.remove(first)
    # one progress bar over every pass: the planes (and without repeated lines), then the low bytes
    first_steps = sum(_candidate_steps(density_model, first.shape, effort))
    reduced_steps = 0 if reduced is None else sum(_candidate_steps(density_model, reduced.shape, effort))
    low_steps = 0 if low is None else engine.wavefront_for(LowByteModel(), *low.shape[1:]).num_steps
    total_steps = first_steps + reduced_steps + low_steps

    def phase(before: int, steps: int) -> engine.ProgressCallback | None:
        if progress is None:
            return None
        return lambda done, total: progress(before + done * steps // max(total, 1), total_steps)

    payload, best, tried = _encode_smallest(density_model, first, effort, phase(0, first_steps), split)
    if reduced is not None:
        reduced_payload, reduced_best, reduced_tried = _encode_smallest(
            density_model, reduced, effort, phase(first_steps, reduced_steps), split, lines
        )
        tried += reduced_tried
        if reduced_best.cost_bytes < best.cost_bytes:
            payload, best, first = reduced_payload, reduced_best, reduced
    chosen, variant, repeated = best.orientation, best.variant, best.repeated_lines
    value_sets, adaptation, colours = variant.value_sets, variant.adaptation, variant.colour_set
    deep = None if coding is None else DeepRecord(coding)
    if low is not None:
        assert coding is not None  # split together
        low_payload, low_sets = _encode_low_bytes(
            orientation.orient(first, chosen),
            orientation.orient(low, chosen),
            coded.layout,
            device,
            phase(first_steps + reduced_steps, low_steps),
            split,
        )
        payload += low_payload
        deep = DeepRecord(coding, int(LowByteModel.version), len(low_payload), low_sets)
    coder = container.CODER_RANGE_CATEGORICAL
    # Never larger than PNG or the raw samples: where the model loses to either (a graphic whose
    # patterns repeat at a distance, noise), the payload is that instead, in any orientation as
    # it is. On a tie, the model's over PNG, the raw samples over anything (the cheapest decode).
    # An image with many repeated lines may be kept as a PNG of the image without them.
    png_bytes = None
    record = 0 if repeated is None else container.repeated_lines_bytes(repeated)
    if not model_only:
        png = imageio.png_payload(coded)
        png_bytes = len(png)
        if len(png) < len(payload) + record:
            payload, coder, repeated, record = png, container.CODER_PNG, None, 0
        if lines is not None and reduced is not None:
            reduced_png = imageio.png_payload(dataclasses.replace(coded, pixels=reduced))
            if len(reduced_png) + container.repeated_lines_bytes(lines) < len(payload) + record:
                payload, coder, repeated = reduced_png, container.CODER_PNG, lines
    stored = imageio.stored_samples(coded)
    if len(stored) <= len(payload):
        payload, coder, repeated = stored, container.CODER_STORED, None
    if coder != container.CODER_RANGE_CATEGORICAL:
        chosen, value_sets, adaptation, colours, deep = 0, None, 0, None, None
    header = Header(
        width=coded.width,
        height=coded.height,
        layout=coded.layout,
        original_mode=coded.original_mode,
        transform=coded.transform,
        model_name=name,
        model_version=density_model.version,
        weights_digest=density_model.weights_digest(),
        pixel_crc32=pixel_crc32(coded.pixels),  # as restored, so a wrong orientation fails it
        encoder_device=describe_device(device),
        orientation=chosen,
        bit_depth=coded.bit_depth,
        coder=coder,
        palette=coded.palette,
        palette_mode=coded.palette_mode,
        transparency=coded.transparency,
        value_sets=None if value_sets is None else container.pack_value_sets(value_sets),
        deep=deep,
        adaptation=adaptation,
        colour_set=None if colours is None else colours.pack(),
        repeated_lines=None if repeated is None else repeated.pack(),
    )
    data = container.pack(header, payload)
    return Encoded(
        data=data,
        header=container.parse(data, max_pixels=2**64)[0],  # as a reader sees it (its length included)
        coded=coded,
        model=density_model,
        candidates=tuple(tried),
        probe_bits=probe_bits,
        png_bytes=png_bytes,
        stored_bytes=len(stored),
    )


def pixel_crc32(planes: np.ndarray) -> int:
    """CRC32 of the coded planes (16-bit samples little-endian, on every machine)."""
    return zlib.crc32(planes.astype("<u2" if planes.dtype == np.uint16 else np.uint8).tobytes())


def _encode_low_bytes(
    high: np.ndarray,
    low: np.ndarray,
    layout: str,
    device: torch.device,
    progress: engine.ProgressCallback | None,
    split: engine.Split,
) -> tuple[bytes, bytes | None]:
    """The low bytes' payload of a 16-bit image (both planes in the orientation coded), with
    their value sets where these make it smaller (packed, or None)."""
    low_model = LowByteModel(torch.from_numpy(high), layout).to(device)
    used = engine.used_values(low)
    variants = [None] if used.all() else [None, used]
    payloads = engine.encode_variants(low_model, low, variants, progress, split)
    costs = [
        payload.nbytes + (0 if sets is None else container.value_sets_bytes(len(sets)) - container.value_sets_bytes(0))
        for payload, sets in zip(payloads, variants)
    ]
    best = int(np.argmin(costs))  # the first on a tie: no value sets
    sets = variants[best]
    return payloads[best].tobytes(), None if sets is None else container.pack_value_sets(sets)


def _rdc_bytes(data) -> bytes:
    """.rdc bytes from bytes, a path or a binary file (a path is read, as compress reads one)."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        return read_file(data)
    if hasattr(data, "read"):
        return data.read()
    raise InputError(f"cannot decompress a {type(data).__name__}: give .rdc bytes, a path or a binary file")


def decode(
    data,
    device,
    progress,
    max_pixels: int,
    threads: int = 1,
    rows_per_call: int | None = None,
    weights=None,
    model_pixel_limit: int | None = None,
    notice: Callable[[str], None] | None = None,
) -> CodedImage:
    """The planes of .rdc bytes (or a path, or a binary file), checked against the file's CRC; the
    arguments are ``api.decompress``'s (``rows_per_call``: the conformance kit's step splits;
    ``notice``: as for :func:`encode`)."""
    header, payload = container.parse(_rdc_bytes(data), max_pixels)
    # the payload holds the pixels in the recorded orientation (transposed: W rows of H), less
    # any repeated lines
    shape = orientation.oriented_shape((header.channels, *header.coded_size), header.orientation)
    density_model = None
    if header.coder == container.CODER_STORED:  # no model needed
        pixels = imageio.unstore_samples(payload, header, *shape[1:])
    elif header.coder == container.CODER_PNG:
        pixels = imageio.unpng_samples(payload, header)
    else:
        device = resolve_device(device)
        density_model = _installed_model(header, device, weights)
        check_model_size(density_model, *header.coded_size, header.layout, 1, model_pixel_limit, notice)
        split = coding_split(density_model, threads, rows_per_call)
        deep = header.deep
        low_length = deep.low_payload_length if deep is not None else 0
        words = np.frombuffer(payload, dtype="<u4")
        first_words, low_words = words[: len(words) - low_length // 4], words[len(words) - low_length // 4 :]
        phases = [engine.wavefront_for(density_model, *shape[1:]).num_steps]
        if low_length:
            phases.append(engine.wavefront_for(LowByteModel(), *shape[1:]).num_steps)
        first_progress, low_progress = _phase_progress(progress, phases)
        pixels = engine.decode_pixels(
            density_model,
            first_words,
            shape,
            first_progress,
            header.used_values(),
            split,
            header.adaptation,
            header.colours(),
        )
        if deep is not None:
            low = None
            if deep.coding == DeepCoding.HIGH_THEN_LOW:
                if deep.low_model_version != int(LowByteModel.version):
                    raise FormatError(
                        f"the file's low bytes were coded with lowbyte version {deep.low_model_version}, "
                        f"which this ridecodec does not have (it has {LowByteModel.version}); upgrade ridecodec"
                    )
                low_model = LowByteModel(torch.from_numpy(pixels), header.layout).to(device)
                low = engine.decode_pixels(low_model, low_words, shape, low_progress, header.used_low_values(), split)
            pixels = depth.join(deep.coding, pixels, low)
    pixels = orientation.unorient(pixels, header.orientation)
    lines = header.repeats()
    if lines is not None:
        pixels = lines.restore(pixels)
    if pixel_crc32(pixels) != header.pixel_crc32:
        here = describe_device(device) if density_model is not None else header.encoder_device
        hint = (
            f"; it was encoded on {header.encoder_device} and decoded on {here}, whose arithmetic "
            f"differs for model {header.model_name!r}: decode it on {header.encoder_device}"
            if density_model is not None and here != header.encoder_device and not density_model.exact_across_devices
            else ""
        )
        raise IntegrityError(f"the decoded pixels fail the file's CRC: the file is corrupt{hint}")
    return CodedImage(
        pixels,
        header.layout,
        header.original_mode,
        header.transform,
        header.palette,
        header.palette_mode,
        header.transparency,
        header.bit_depth,
    )


#: A slow model's coding is announced (``notice``) when it will take longer than this.
NOTICE_SECONDS = 10.0


def describe_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def seconds_per_pixel(declared, layout: str) -> float | None:
    """A model's declared ``seconds_per_pixel`` for ``layout``: the one figure, or the layout's
    entry of a per-layout mapping (the slowest entry for a layout it does not name)."""
    if declared is None or isinstance(declared, int | float):
        return declared
    return declared.get(layout, max(declared.values()))


def check_model_size(
    density_model,
    height: int,
    width: int,
    layout: str,
    codings: int = 1,
    limit: int | None = None,
    notice: Callable[[str], None] | None = None,
) -> None:
    """Refuse an image larger than a slow model's ``pixel_limit`` (or ``limit``, which raises or
    lowers it) in one line with an estimate of the time it would take; else, where the model
    declares its speed and the coding (``codings`` passes of a ``layout`` image) will take more
    than NOTICE_SECONDS, tell ``notice``. Why: a model coded in raster order may need an hour for
    a photograph, and a user should hear that before it starts, not after."""
    limit = density_model.pixel_limit if limit is None else limit
    per_pixel = seconds_per_pixel(density_model.seconds_per_pixel, layout)
    pixels = height * width
    estimate = None if per_pixel is None else per_pixel * pixels * codings
    about = "" if estimate is None else f" (about {describe_seconds(estimate)} on one CPU thread)"
    if limit is not None and pixels > limit:
        raise UnsupportedImageError(
            f"model {density_model.name!r} is slow for large images{about}: this {width}x{height} image has "
            f"{pixels} pixels, more than its limit of {limit}; raise it with --model-pixel-limit {pixels} "
            "(model_pixel_limit= in Python) to code it anyway"
        )
    if notice is not None and estimate is not None and estimate > NOTICE_SECONDS:
        notice(f"model {density_model.name!r} codes this {width}x{height} image in {about.strip(' ()')}")


def _installed_model(header: Header, device: torch.device, weights=None):
    """The model that wrote the file, with the same weights, or a one-line error saying what to install."""
    density_model = registry.load_model(header.model_name, device, weights, version=header.model_version)
    digest = density_model.weights_digest()
    if digest == header.weights_digest:
        return density_model
    retired = density_model.retired_versions.get(header.model_version)
    if retired is not None:
        raise WeightsMismatchError(
            f"the file was written with {header.model_name} version {header.model_version} on "
            f"{header.encoder_device}, which this ridecodec no longer reads (it has version "
            f"{density_model.version}); {retired}"
        )
    written_with = f"{header.model_name} {header.model_version} weights {header.weights_digest[:12]}"
    if weights is not None:
        raise WeightsMismatchError(
            f"the file was encoded with {written_with}, but {weights} gives "
            f"{density_model.version} weights {digest[:12]}"
        )
    hint = (
        "pass the weights file it was compressed with (--weights FILE)"
        if header.model_version == density_model.version
        else "install the matching model version"
    )
    raise WeightsMismatchError(
        f"the file was encoded with {written_with}, but the installed model has "
        f"{density_model.version} weights {digest[:12]}; {hint}"
    )


def _phase_progress(progress, phases: list[int]) -> list:
    """One callback per phase (a pass of ``phases[i]`` steps), each moving one bar over all."""
    if progress is None:
        return [None] * 2
    total = sum(phases)
    callbacks = [
        lambda done, _total, before=sum(phases[:i]): progress(before + done, total)  # noqa: B008 (bound per phase)
        for i in range(len(phases))
    ]
    return callbacks + [None] * (2 - len(callbacks))
