"""Where the model pays: each pixel's cost in bits, and a heat map of it.

    >>> import numpy as np
    >>> from ridecodec import explain
    >>> image = np.random.default_rng(0).integers(0, 256, (8, 10), dtype=np.uint8)
    >>> bits = explain.bit_costs(image, model="loco", device="cpu")
    >>> bits.shape, bits.dtype
    ((1, 8, 10), dtype('float64'))

A pixel's cost is -log2 of the probability the coder's table gives its actual value: the
engine's own coding loop runs step by step, writing the true pixels into the canvas after each
step, exactly as the encoder does. Explained are the tables as ``compress`` codes the image with
the default effort 1 (its own orientation): of the model's tables as they are, adapted online,
restricted to value sets or to a colour set, the variant the encoder keeps (the smallest; notes
say which); and of the image without its repeated rows and columns where the encoder keeps that
(``ridecodec.repeats``: a repeated line costs 0 bits). So the costs sum to the code length of that variant
(``engine.variant_code_length_bits``; the tests check it), which the file's payload matches
within a hair. An image that ``compress`` keeps as PNG is still explained by the model.

Mode conversions are those ``compress`` makes (``imageio.to_coded``): an RGB image with three
equal channels is explained as the one gray plane coded, LA as the four RGBA planes, a palette
image as its colours or its indices, a bilevel image as gray 0/255.

16-bit images are explained as two sets of planes, each channel's high bytes and then each
channel's low bytes, as ``compress`` codes them (``ridecodec.depth``): high bytes by the model
and low bytes by ``lowbyte`` (which knows every high byte). Where the image is 8-bit data in a
16-bit file, the bytes it costs nothing to code (equal to the high bytes, or all zero) get 0 bits.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import codec, container, depth, engine, imageio, repeats
from .container import DEFAULT_MAX_PIXELS
from .devices import resolve_device
from .errors import RidecodecError
from .models.lowbyte import LowByteModel

#: Channel names of each coded layout.
CHANNEL_NAMES = {"L": ("L",), "RGB": ("R", "G", "B"), "RGBA": ("R", "G", "B", "A")}


@dataclass
class Explanation:
    """Per-pixel costs of an image and what they are costs of."""

    bits: np.ndarray  # float64 (P, H, W): one plane per coded plane (16-bit: high planes, then low planes)
    labels: list[str]  # one per plane, e.g. "R" or "R high byte"
    model: str
    layout: str  # the coded layout: L, RGB or RGBA
    original_mode: str
    transform: str  # how the original mode was converted (imageio.ModeTransform, lower case)
    bit_depth: int = 8
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.bits.shape[1]

    @property
    def width(self) -> int:
        return self.bits.shape[2]

    @property
    def total_bits(self) -> float:
        return float(self.bits.sum())

    @property
    def bits_per_pixel(self) -> float:
        return self.total_bits / (self.height * self.width)

    def summary(self) -> dict:
        """The numbers, for ``--json``: totals and bits per pixel, overall and per plane."""
        pixels = self.height * self.width
        return {
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "mode": self.original_mode,
            "coded_as": self.layout,
            "transform": self.transform,
            "bit_depth": self.bit_depth,
            "total_bits": self.total_bits,
            "total_bytes": self.total_bits / 8,
            "bits_per_pixel": self.bits_per_pixel,
            "planes": [
                {
                    "name": label,
                    "total_bits": float(plane.sum()),
                    "bits_per_pixel": float(plane.sum()) / pixels,
                    "max_bits": float(plane.max()),
                }
                for label, plane in zip(self.labels, self.bits)
            ],
            "notes": list(self.notes),
        }


def plane_costs(
    model,
    pixels: np.ndarray,
    progress: engine.ProgressCallback | None = None,
    split: engine.Split | None = None,
    variants: list[engine.Variant] | None = None,
) -> tuple[np.ndarray, engine.Variant]:
    """float64 (C, H, W): -log2 of the probability the coder's table gives each value of
    ``pixels`` (uint8 (C, H, W)), computed by the engine's coding loop (``engine.symbol_costs``;
    ``split``: as the engine's, default one call per step on one thread), for the variant of the
    tables the encoder would keep: of ``variants`` (default: what ``compress`` tries), the one
    whose costs, with what it adds to the header, are smallest; and that variant."""
    if variants is None:
        variants = codec.candidate_variants(pixels, engine.adaptation_version_for(model, *pixels.shape[1:]))
    costs = engine.symbol_costs(model, pixels, variants, progress, split or engine.Split())
    # the encoder compares payload bytes; ideal code lengths rank the variants the same but for
    # the coder's overhead (a few bytes), so this is the encoder's choice up to near ties
    totals = [
        cost.sum() / 8 + codec.variant_header_bytes(variant, len(pixels)) for cost, variant in zip(costs, variants)
    ]
    best = int(np.argmin(totals))
    return costs[best], variants[best]


#: The planes ``compress`` codes for an image (the CLI converts once, then explains).
coded_image = codec.coded_image


def explain(
    image,
    model: str | None = None,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Explanation:
    """Each coded plane's per-pixel cost in bits of ``image`` (numpy array, PIL image, path or
    binary file: whatever ``compress`` takes), under ``model`` (default: the one ``compress``
    would pick). ``progress(done, total)``, ``threads`` and ``weights`` as for ``compress``;
    ``max_pixels``: refuse larger images (default: what decoders accept)."""
    coded = codec.coded_image(image, max_pixels)
    device = resolve_device(device)
    name, density_model = codec.model_for(coded, model, device, weights)
    split = codec.coding_split(density_model, threads)
    names = CHANNEL_NAMES[coded.layout]
    if coded.original_mode == "P" and coded.layout == "L":
        names = ("index",)
    notes = []
    if coded.transform == imageio.ModeTransform.GRAY_AS_RGB:
        notes.append("R = G = B everywhere: coded (and explained) as one gray plane")
    elif coded.transform == imageio.ModeTransform.GRAY_ALPHA_TO_RGBA:
        notes.append("LA is coded as RGBA with R = G = B = L")
    elif coded.transform == imageio.ModeTransform.PALETTE_TO_RGB:
        notes.append("a palette image coded as its RGB colours")
    elif coded.transform == imageio.ModeTransform.PALETTE_INDICES:
        notes.append("a palette image coded as its index plane")
    elif coded.transform == imageio.ModeTransform.BILEVEL_TO_GRAY:
        notes.append("a bilevel image coded as gray 0 and 255")
    if coded.bit_depth != 16:
        bits, variant, lines = _costs_as_coded(density_model, coded.pixels, progress, split)
        labels = list(names)
        if lines is not None:
            rows, cols = int(lines.rows.sum()), int(lines.cols.sum())
            notes.append(f"{rows} rows and {cols} columns repeat the one before: coded once, 0 bits where repeated")
    else:
        coding, first, low = depth.split(coded.pixels)
        first_steps = engine.wavefront_for(density_model, *first.shape[1:]).num_steps
        low_steps = 0 if low is None else engine.wavefront_for(LowByteModel(), *low.shape[1:]).num_steps
        first_progress = low_progress = None
        if progress is not None:
            first_progress = lambda done, _total: progress(done, first_steps + low_steps)  # noqa: E731
            low_progress = lambda done, _total: progress(first_steps + done, first_steps + low_steps)  # noqa: E731
        first_bits, variant = plane_costs(density_model, first, first_progress, split)
        zeros = np.zeros_like(first_bits)
        if coding == depth.DeepCoding.LOW_ONLY:
            high_bits, low_bits = zeros, first_bits
            notes.append("every value is below 256: the values are coded as an 8-bit image (high bytes: 0 bits)")
        elif coding == depth.DeepCoding.REPLICATED:
            high_bits, low_bits = first_bits, zeros
            notes.append("8-bit data scaled by 257: the low bytes equal the high bytes (0 bits)")
        else:
            assert low is not None  # (split gives the low bytes with HIGH_THEN_LOW)
            low_model = LowByteModel(torch.from_numpy(first), coded.layout).to(device)
            used = engine.used_values(low)  # the low bytes are coded with value sets where they pay
            low_variants = [engine.Variant()] + ([] if used.all() else [engine.Variant(value_sets=used)])
            high_bits, low_bits = first_bits, plane_costs(low_model, low, low_progress, split, low_variants)[0]
            notes.append("high bytes by the model, low bytes by lowbyte")
        bits = np.concatenate([high_bits, low_bits])
        labels = [f"{n} high byte" for n in names] + [f"{n} low byte" for n in names]
    notes += _variant_notes(variant)
    return Explanation(
        bits, labels, name, coded.layout, coded.original_mode, coded.transform.name.lower(), coded.bit_depth, notes
    )


def _costs_as_coded(
    density_model, pixels: np.ndarray, progress: engine.ProgressCallback | None, split: engine.Split
) -> tuple[np.ndarray, engine.Variant, repeats.RepeatedLines | None]:
    """:func:`plane_costs` of 8-bit planes as ``compress`` codes them: without their repeated rows
    and columns (``ridecodec.repeats``) where that is tried and comes out smaller, the repeats
    then costing 0 bits; and the repeated lines so left out, or None."""
    lines = repeats.worth_trying(pixels)
    reduced = None if lines is None else lines.remove(pixels)
    steps = [engine.wavefront_for(density_model, *p.shape[1:]).num_steps for p in (pixels, reduced) if p is not None]

    def phase(before: int) -> engine.ProgressCallback | None:
        return None if progress is None else (lambda done, _total: progress(before + done, sum(steps)))

    bits, variant = plane_costs(density_model, pixels, phase(0), split)
    if lines is None or reduced is None:
        return bits, variant, None
    reduced_bits, reduced_variant = plane_costs(density_model, reduced, phase(steps[0]), split)
    channels = len(pixels)
    whole = bits.sum() / 8 + codec.variant_header_bytes(variant, channels)
    without = (
        reduced_bits.sum() / 8
        + codec.variant_header_bytes(reduced_variant, channels)
        + container.repeated_lines_bytes(lines)
    )
    if without >= whole:
        return bits, variant, None
    expanded = np.zeros(bits.shape, dtype=reduced_bits.dtype)
    expanded[np.ix_(np.arange(channels), np.flatnonzero(~lines.rows), np.flatnonzero(~lines.cols))] = reduced_bits
    return expanded, reduced_variant, lines


def _variant_notes(variant: engine.Variant) -> list[str]:
    """What an explanation says about the variant of the tables it explains."""
    notes = []
    if variant.adaptation:
        notes.append("the model's tables adapted online to the image (ridecodec.adaptive), as compress codes it")
    if variant.value_sets is not None:
        notes.append("tables restricted to the values each channel takes (value sets), as compress codes it")
    if variant.colour_set is not None:
        notes.append(f"tables restricted to the image's {len(variant.colour_set)} colours, as compress codes it")
    return notes


def bit_costs(
    image,
    model: str | None = None,
    device: str | torch.device = "auto",
    progress: engine.ProgressCallback | None = None,
    threads: int = 1,
    weights: str | os.PathLike | None = None,
) -> np.ndarray:
    """float64 (P, H, W): each coded plane's per-pixel cost in bits (see :func:`explain`); for
    an 8-bit image P is the coded layout's channels, for a 16-bit one twice that (high bytes, then
    low bytes). The sum is the model's code length of the image."""
    return explain(image, model, device, progress, threads, weights).bits


# --- rendering -------------------------------------------------------------------------------

#: Anchors of the colour map (inferno: black, purple, red, orange, pale yellow), sampled from
#: matplotlib's; interpolated linearly to 256 entries.
_ANCHORS = np.array(
    [
        (0, 0, 4),
        (22, 11, 57),
        (66, 10, 104),
        (106, 23, 110),
        (147, 38, 103),
        (188, 55, 84),
        (221, 81, 58),
        (243, 120, 25),
        (252, 165, 10),
        (246, 215, 70),
        (252, 255, 164),
    ],
    dtype=np.float64,
)
COLORMAP = (
    np.stack(
        [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)], axis=1
    )
    .round()
    .astype(np.uint8)
)

#: Panels are scaled to this many screen pixels on their longer side at least (small images,
#: nearest neighbour) and at most MAX_PANEL (large images: the mean of blocks of pixels).
MIN_PANEL, MAX_PANEL = 256, 1024


def colour_scale(bits: np.ndarray) -> float:
    """The top of the colour bar: the 99.5th percentile of the costs (rounded up to a whole bit,
    at least 1), so that a few very costly pixels do not wash the rest out; costlier pixels take
    the top colour."""
    return float(max(1.0, math.ceil(np.percentile(bits, 99.5)))) if bits.size else 1.0


def _resampled(plane: np.ndarray) -> tuple[np.ndarray, str]:
    """The plane at panel size: blown up by a whole factor (nearest neighbour) or reduced by the
    mean of whole blocks; and a note on which."""
    height, width = plane.shape
    longer = max(height, width)
    if longer < MIN_PANEL:
        factor = MIN_PANEL // longer
        return np.repeat(np.repeat(plane, factor, axis=0), factor, axis=1), (f"shown {factor}x" if factor > 1 else "")
    if longer > MAX_PANEL:
        block = math.ceil(longer / MAX_PANEL)
        h, w = math.ceil(height / block), math.ceil(width / block)
        padded = np.full((h * block, w * block), np.nan)
        padded[:height, :width] = plane
        return np.nanmean(padded.reshape(h, block, w, block), axis=(1, 3)), f"mean of {block}x{block} blocks"
    return plane, ""


def _grid(explanation: Explanation) -> tuple[int, int]:
    """(rows, columns) of panels: channels side by side (stacked for a wide image), 16-bit's
    high and low bytes as two rows (or columns)."""
    planes = len(explanation.labels)
    groups = 2 if explanation.bit_depth == 16 else 1
    per_group = planes // groups
    if explanation.width >= 2 * explanation.height:  # wide: channels stacked
        return per_group, groups
    return groups, per_group


def _title(explanation: Explanation) -> str:
    return (
        f"{explanation.model}: {explanation.width}x{explanation.height} {explanation.original_mode}, "
        f"{explanation.bits_per_pixel:.3f} bits per pixel, {explanation.total_bits / 8:,.0f} bytes"
    )


def _panel_title(explanation: Explanation, index: int) -> str:
    plane = explanation.bits[index]
    return f"{explanation.labels[index]}: {plane.sum() / plane.size:.3f} bits/px, {plane.sum():,.0f} bits"


def _font(size: int):
    try:
        return ImageFont.load_default(size)  # Pillow >= 10.1: a scalable font where FreeType is built in
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def render_pillow(explanation: Explanation, vmax: float | None = None) -> Image.Image:
    """The heat map drawn with Pillow alone: one panel per plane (with its totals), a colour bar
    in bits, and a title with the overall totals."""
    vmax = colour_scale(explanation.bits) if vmax is None else vmax
    rows, cols = _grid(explanation)
    panels, resampling = [], ""
    for index in range(len(explanation.labels)):
        plane, resampling = _resampled(explanation.bits[index])
        levels = np.clip(plane / vmax * 255, 0, 255).round().astype(np.uint8)
        panels.append(Image.fromarray(COLORMAP[levels], "RGB"))
    panel_w, panel_h = panels[0].size
    font, small = _font(14), _font(12)
    margin, label_h, title_h, bar_w, bar_gap, ticks_w = 10, 22, 30, 18, 14, 70
    width = margin + cols * (panel_w + margin) + bar_gap + bar_w + ticks_w
    width = max(width, 520)
    notes = list(explanation.notes) + ([f"panels {resampling}"] if resampling else [])
    notes_h = 16 * len(notes)
    height = title_h + notes_h + rows * (label_h + panel_h + margin) + margin + 16  # 16: the bar's unit
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 8), _title(explanation), fill="black", font=font)
    for n, note in enumerate(notes):
        draw.text((margin, title_h + 16 * n), note, fill=(80, 80, 80), font=small)
    top = title_h + notes_h
    for index, panel in enumerate(panels):
        # planes are ordered group by group (16-bit: high bytes, then low bytes)
        groups = 2 if explanation.bit_depth == 16 else 1
        per_group = len(panels) // groups
        group, member = divmod(index, per_group)
        row, col = (group, member) if rows == groups else (member, group)
        x = margin + col * (panel_w + margin)
        y = top + row * (label_h + panel_h + margin)
        draw.text((x, y + 3), _panel_title(explanation, index), fill="black", font=small)
        canvas.paste(panel, (x, y + label_h))
    # the colour bar, beside the panels, as tall as one panel row or more
    bar_x = margin + cols * (panel_w + margin) + bar_gap
    bar_top = top + label_h
    bar_h = max(rows * (label_h + panel_h + margin) - label_h - margin, 64)
    gradient = COLORMAP[np.linspace(255, 0, bar_h).round().astype(np.uint8)]
    canvas.paste(Image.fromarray(np.repeat(gradient[:, None], bar_w, axis=1), "RGB"), (bar_x, bar_top))
    draw.rectangle((bar_x - 1, bar_top - 1, bar_x + bar_w, bar_top + bar_h), outline="black")
    ticks = _ticks(vmax)
    for value in ticks:
        y = bar_top + round((1 - value / vmax) * (bar_h - 1))
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 4, y), fill="black")
        text = f"{value:g}" + ("+" if value == vmax else "")
        draw.text((bar_x + bar_w + 7, y - 7), text, fill="black", font=small)
    draw.text((bar_x + bar_w + 7, bar_top + bar_h + 4), "bits", fill="black", font=small)
    return canvas


def _ticks(vmax: float) -> list[float]:
    step = next(s for s in (1, 2, 4, 5, 10, 20, 50, 100) if vmax / s <= 8)
    values = [
        float(v) for v in np.arange(0, vmax, step) if v == 0 or vmax - v >= step / 2
    ]  # no label crowding the top's
    return values + [float(vmax)]


def render_matplotlib(explanation: Explanation, vmax: float | None = None) -> Image.Image:
    """The heat map drawn with matplotlib (``pip install 'ridecodec[plot]'``)."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    vmax = colour_scale(explanation.bits) if vmax is None else vmax
    rows, cols = _grid(explanation)
    groups = 2 if explanation.bit_depth == 16 else 1
    per_group = len(explanation.labels) // groups
    aspect = explanation.height / explanation.width
    figure = Figure(
        figsize=(3.2 * cols + 1.2, 3.2 * rows * aspect + 1.0 + 0.2 * len(explanation.notes)),
        dpi=120,
        layout="constrained",
    )
    axes = figure.subplots(rows, cols, squeeze=False)
    image = None
    for index in range(len(explanation.labels)):
        group, member = divmod(index, per_group)
        row, col = (group, member) if rows == groups else (member, group)
        ax = axes[row][col]
        image = ax.imshow(explanation.bits[index], cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(_panel_title(explanation, index), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(_title(explanation) + "".join(f"\n{note}" for note in explanation.notes), fontsize=9)
    colourbar = figure.colorbar(image, ax=axes, extend="max", shrink=0.9)
    colourbar.set_label("bits")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.1)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def render(explanation: Explanation, renderer: str = "auto", vmax: float | None = None) -> Image.Image:
    """The heat map as a PIL image. ``renderer``: "matplotlib" (``pip install 'ridecodec[plot]'``),
    "pillow" (no extra dependency), or "auto": matplotlib where it is installed, else Pillow.
    ``vmax``: the cost (bits) of the colour bar's top; default :func:`colour_scale`."""
    if renderer == "auto":
        renderer = "matplotlib" if matplotlib_available() else "pillow"
    if renderer == "matplotlib":
        if not matplotlib_available():
            raise RidecodecError(
                "matplotlib is not installed: pip install 'ridecodec[plot]', or draw with --renderer pillow"
            )
        return render_matplotlib(explanation, vmax)
    if renderer == "pillow":
        return render_pillow(explanation, vmax)
    raise RidecodecError(f"unknown renderer {renderer!r}: choose auto, matplotlib or pillow")


__all__ = [
    "COLORMAP",
    "Explanation",
    "bit_costs",
    "colour_scale",
    "explain",
    "plane_costs",
    "render",
    "render_matplotlib",
    "render_pillow",
]
