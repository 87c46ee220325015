"""A picture of an evaluation: bits per pixel per image and codec (``ridecodec eval --plot``).

    >>> from ridecodec import evaluation, evalplot
    >>> report = evaluation.Report("loco", "cpu", "gray", [
    ...     evaluation.ImageResult("a.png", 8, 8, 1, 3.9, 4.5, 4.0, 2.0, {"png": 5.0}),
    ...     evaluation.ImageResult("b.png", 8, 8, 1, 2.9, 3.5, 3.0, 2.0, {"png": 4.0}),
    ... ])
    >>> chart = evalplot.chart_data(report)
    >>> chart.groups, [s.label for s in chart.series], chart.series[0].values
    (['a.png', 'b.png', 'total'], ['loco (.rdc file)', 'PNG'], [4.5, 3.5, 4.0])
    >>> evalplot.render(report, "pillow").mode
    'RGB'

A grouped bar chart: one group per image (in the report's order) and a last group for the
pixel-weighted totals, one bar per codec: the size of the model's whole .rdc file, then each
classical codec the report measured (a codec not measured on an image leaves a gap; its total
is drawn only where it measured every image, as in the report's table). A legend, axis labels
and a title with the model and the totals.

Drawn with matplotlib where it is installed (``pip install 'ridecodec[plot]'``), otherwise with
Pillow alone, like ``ridecodec explain``'s heat maps. Readable for one image to a hundred or so:
the picture grows wider with the images up to :data:`MAX_WIDTH` pixels, beyond which the bars get
thinner; names that do not fit under their group are turned upright and shortened.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import imageio
from .errors import InputError, OutputError, RidecodecError
from .evaluation import CLASSICAL_CODECS, Report, find_images
from .explain import matplotlib_available
from .fileio import check_writable, write_atomically

#: Bar colours (matplotlib's tab10): the model first, then the classical codecs in table order.
COLOURS = [
    (214, 39, 40),
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (227, 119, 194),
]

#: The picture's width in pixels: at least MIN_WIDTH, at most MAX_WIDTH (many images: thinner bars).
MIN_WIDTH, MAX_WIDTH = 640, 2400

#: Image names longer than this are shortened in the picture.
MAX_LABEL = 24


@dataclass
class Series:
    label: str  # the legend's
    colour: tuple[int, int, int]
    values: list[float | None]  # bits per pixel per group (None: not measured)


@dataclass
class Chart:
    """What the picture shows, independent of the renderer."""

    title: str
    subtitle: str  # the totals
    groups: list[str]  # image names, then "total" (for more than one image)
    series: list[Series]
    kept: list[str] = field(default_factory=list)  # per group: "" or how the file kept the image ("as PNG", "stored")

    def label(self, index: int, upright: bool) -> str:
        """Group ``index``'s name, with how the file kept the image where it is not the model's coding
        (on a second line, or in brackets after an upright name)."""
        kept = self.kept[index] if index < len(self.kept) else ""
        if not kept:
            return self.groups[index]
        return f"{self.groups[index]} ({kept})" if upright else f"{self.groups[index]}\n({kept})"

    @property
    def has_total(self) -> bool:
        return self.groups[-1:] == ["total"] and len(self.groups) > 1

    @property
    def top(self) -> float:
        """The largest value drawn (0 if none)."""
        return max((v for s in self.series for v in s.values if v is not None and math.isfinite(v)), default=0.0)


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 3] + "..."


def chart_data(report: Report) -> Chart:
    """The groups, bars and titles of ``report``'s picture; RidecodecError if it has no image."""
    if not report.images:
        raise RidecodecError("nothing to plot: no image was measured")
    totals = report.totals()
    measured = [name for name in CLASSICAL_CODECS if any(name in image.classical_bpp for image in report.images)]
    with_total = len(report.images) > 1
    groups = [_short(image.name) for image in report.images] + (["total"] if with_total else [])
    model_label = f"{report.model} (.rdc file)"
    series = [
        Series(
            model_label,
            COLOURS[0],
            [image.file_bpp for image in report.images] + ([totals["file_bpp"]] if with_total else []),
        )
    ]
    for index, name in enumerate(measured):
        values = [image.classical_bpp.get(name) for image in report.images]
        if with_total:
            values.append(totals["classical_bpp"].get(name))
        series.append(Series(CLASSICAL_CODECS[name], COLOURS[(index + 1) % len(COLOURS)], values))
    count = len(report.images)
    title = (
        f"{report.model}"
        + (" against classical lossless codecs" if measured else "")
        + f": {count} image{'s' if count != 1 else ''}, {totals['pixels']:,} pixels, {report.mode}"
        + (f", effort {report.effort}" if report.effort > 1 else "")
    )
    parts = [f"{report.model} {totals['file_bpp']:.3f}"]
    parts += [f"{CLASSICAL_CODECS[name]} {bpp:.3f}" for name, bpp in totals["classical_bpp"].items()]
    subtitle = ("total" if with_total else "") + " bits per pixel: " + ", ".join(parts)
    kept = [{"png": "as PNG", "stored": "stored"}.get(image.coder, "") for image in report.images]
    return Chart(title, subtitle.strip(), groups, series, kept + ([""] if with_total else []))


def _ticks(top: float) -> tuple[float, list[float]]:
    """The y axis's top and its ticks: a round step, at most 8 ticks above 0."""
    top = max(top, 1e-9)
    raw = top / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if top / (m * magnitude) <= 8)
    upper = step * math.ceil(top * 1.04 / step)
    return upper, [round(step * k, 10) for k in range(round(upper / step) + 1)]


# --- Pillow ----------------------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size)  # Pillow >= 10.1: a scalable font where FreeType is built in
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top  # type: ignore[return-value]  # (Pillow's stubs say float; these are ints)


def _wrapped(text: str, fits) -> list[str]:
    """``text`` in lines that ``fits(line)``, broken only after a comma or a colon (a codec's name
    stays whole; a single piece too long for a line gets a line of its own)."""
    lines, line = [], ""
    for word in text.replace(", ", ",\0").replace(": ", ":\0").split("\0"):
        candidate = f"{line} {word}" if line else word
        if line and not fits(candidate):
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line]


def _upright_text(canvas: Image.Image, text: str, font, x: int, y: int, colour=(0, 0, 0)) -> None:
    """``text`` turned 90 degrees (reading upwards), its top end at (x, y) and centred on x."""
    probe = ImageDraw.Draw(canvas)
    width, height = _text_size(probe, text, font)
    mask = Image.new("L", (width + 4, height + 6), 0)
    ImageDraw.Draw(mask).text((2, 1), text, fill=255, font=font)
    mask = mask.rotate(90, expand=True)
    canvas.paste(Image.new("RGB", mask.size, colour), (x - mask.size[0] // 2, y), mask)


def render_pillow(report: Report) -> Image.Image:
    """The chart drawn with Pillow alone."""
    chart = chart_data(report)
    font, small, title_font = _font(13), _font(11), _font(15)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    groups, series = len(chart.groups), len(chart.series)

    left, right, plot_h, pad = 72, 24, 360, 10
    plot_w = min(max(groups * (series * 12 + 14), MIN_WIDTH - left - right), MAX_WIDTH - left - right)
    group_w = plot_w / groups
    bar_w = min(max(group_w * 0.8 / series, 1.0), 40.0)  # few images: no slabs
    width = left + plot_w + right

    # x labels: level where each fits in its group, upright otherwise
    level = [chart.label(g, upright=False).split("\n") for g in range(groups)]
    upright = max(_text_size(scratch, line, small)[0] for lines in level for line in lines) > group_w - 4
    labels = [chart.label(g, upright) for g in range(groups)]
    if upright:
        label_h = max(_text_size(scratch, label, small)[0] for label in labels) + 8
    else:
        label_h = 16 * max(len(lines) for lines in level) + 2

    # the legend: entries in rows as wide as the picture
    legend_rows: list[list[tuple[Series, int]]] = []
    row: list[tuple[Series, int]] = []
    row_w = 0
    for entry in chart.series:
        entry_w = 22 + _text_size(scratch, entry.label, font)[0] + 16
        if row and row_w + entry_w > width - 2 * pad:
            legend_rows.append(row)
            row, row_w = [], 0
        row.append((entry, entry_w))
        row_w += entry_w
    legend_rows.append(row)

    titles = [
        (line, title_font, (0, 0, 0), 21)
        for line in _wrapped(chart.title, lambda t: _text_size(scratch, t, title_font)[0] <= width - 2 * pad)
    ]
    titles += [
        (line, font, (60, 60, 60), 18)
        for line in _wrapped(chart.subtitle, lambda t: _text_size(scratch, t, font)[0] <= width - 2 * pad)
    ]
    title_h = 8 + sum(line_h for *_, line_h in titles)
    legend_h = 20 * len(legend_rows) + 6
    plot_top = title_h + legend_h + 8
    height = plot_top + plot_h + 6 + label_h + 22
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 6
    for line, line_font, colour, line_h in titles:
        draw.text((pad, y), line, fill=colour, font=line_font)
        y += line_h
    for index, entries in enumerate(legend_rows):
        x, y = pad, title_h + 20 * index
        for entry, entry_w in entries:
            draw.rectangle((x, y + 3, x + 14, y + 15), fill=entry.colour)
            draw.text((x + 20, y + 2), entry.label, fill="black", font=font)
            x += entry_w

    upper, ticks = _ticks(chart.top)
    bottom = plot_top + plot_h

    def y_of(value: float) -> float:
        return bottom - value / upper * plot_h

    for tick in ticks:  # grid and tick labels
        y = round(y_of(tick))
        draw.line((left, y, left + plot_w, y), fill=(225, 225, 225))
        draw.line((left - 4, y, left, y), fill="black")
        text = f"{tick:g}"
        text_w, text_h = _text_size(draw, text, small)
        draw.text((left - 7 - text_w, y - text_h // 2 - 2), text, fill="black", font=small)
    _upright_text(canvas, "bits per pixel", font, 14, plot_top + plot_h // 2 - 45)

    if chart.has_total:  # the totals apart from the images
        x = round(left + (groups - 1) * group_w)
        for y in range(plot_top, bottom, 8):
            draw.line((x, y, x, min(y + 4, bottom)), fill=(150, 150, 150))
    for g, label in enumerate(labels):
        start = left + g * group_w + (group_w - bar_w * series) / 2
        for s, entry in enumerate(chart.series):
            value = entry.values[g]
            if value is None or not math.isfinite(value):
                continue
            x0 = start + s * bar_w
            x1 = x0 + bar_w - (1 if bar_w >= 4 else 0)  # a gap between bars where they are wide enough
            box = (round(x0), round(y_of(value)), max(round(x1) - 1, round(x0)), bottom - 1)
            draw.rectangle(box, fill=entry.colour)
        centre = round(left + (g + 0.5) * group_w)
        if upright:
            _upright_text(canvas, label, small, centre, bottom + 6)
        else:
            for n, line in enumerate(label.split("\n")):
                text_w = _text_size(draw, line, small)[0]
                draw.text(
                    (centre - text_w // 2, bottom + 5 + 16 * n),
                    line,
                    fill="black" if n == 0 else (90, 90, 90),
                    font=small,
                )
    draw.line((left, plot_top, left, bottom), fill="black")
    draw.line((left, bottom, left + plot_w, bottom), fill="black")
    axis = "image (the last group: totals over all pixels)" if chart.has_total else "image"
    axis_w = _text_size(draw, axis, font)[0]
    draw.text((left + (plot_w - axis_w) // 2, height - 20), axis, fill="black", font=font)
    return canvas


# --- matplotlib ------------------------------------------------------------------------------


def render_matplotlib(report: Report) -> Image.Image:
    """The chart drawn with matplotlib (``pip install 'ridecodec[plot]'``)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    chart = chart_data(report)
    groups, series = len(chart.groups), len(chart.series)
    dpi = 100
    width = min(max(1.2 + groups * (series * 0.12 + 0.14), MIN_WIDTH / dpi), MAX_WIDTH / dpi)
    longest = max(len(line) for g in range(groups) for line in chart.label(g, upright=False).split("\n"))
    upright = longest * 0.075 > width * 0.85 / groups  # about 0.075 inch a character at 8 points
    labels = [chart.label(g, upright) for g in range(groups)]
    height = 4.8 + (max(map(len, labels)) * 0.07 if upright else 0)
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    ax = figure.subplots()
    centres = np.arange(groups)
    bar_w = 0.8 / series
    for s, entry in enumerate(chart.series):
        present = [g for g, value in enumerate(entry.values) if value is not None and math.isfinite(value)]
        ax.bar(
            centres[present] - 0.4 + (s + 0.5) * bar_w,
            [entry.values[g] for g in present],
            bar_w,
            label=entry.label,
            color=[c / 255 for c in entry.colour],
        )
    if chart.has_total:
        ax.axvline(groups - 1.5, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xticks(centres, labels, rotation=90 if upright else 0, fontsize=8)
    ax.set_xlim(-0.6, groups - 0.4)
    upper, _ = _ticks(chart.top)
    ax.set_ylim(0, upper)
    ax.set_ylabel("bits per pixel")
    ax.set_xlabel("image (the last group: totals over all pixels)" if chart.has_total else "image")
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    characters = int(width * dpi / 6.5)  # about 6.5 pixels a character at 9 points

    def fits(text: str) -> bool:
        return len(text) <= characters

    figure.suptitle("\n".join(_wrapped(chart.title, fits) + _wrapped(chart.subtitle, fits)), fontsize=9)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=min(series, max(1, int(width * dpi // 130))),
        fontsize=8,
        frameon=False,
        borderaxespad=0,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB")
    return picture


# --- the picture -----------------------------------------------------------------------------


def render(report: Report, renderer: str = "auto") -> Image.Image:
    """The chart as a PIL image. ``renderer``: "matplotlib", "pillow", or "auto": matplotlib where
    it is installed, else Pillow."""
    if renderer == "auto":
        renderer = "matplotlib" if matplotlib_available() else "pillow"
    if renderer == "matplotlib":
        if not matplotlib_available():
            raise RidecodecError("matplotlib is not installed: pip install 'ridecodec[plot]', or draw with Pillow")
        return render_matplotlib(report)
    if renderer == "pillow":
        return render_pillow(report)
    raise RidecodecError(f"unknown renderer {renderer!r}: choose auto, matplotlib or pillow")


def check_destination(path: str | os.PathLike, inputs, force: bool) -> None:
    """Refuse now, before the evaluation, what writing the picture to ``path`` would refuse
    later (OutputExistsError without ``force``, OutputError for a folder that cannot take it),
    and an input image of ``inputs`` (files and folders, as for ``evaluate``) even with ``force``."""
    path = Path(path)
    if path.exists():
        try:
            files = find_images(list(inputs))[0]
        except InputError:
            files = []  # the evaluation says so, in its own words
        for file in [*map(Path, inputs), *files]:
            try:
                same = file.is_file() and os.path.samefile(file, path)
            except OSError:
                same = False
            if same:
                raise OutputError(f"{path} is an input of this evaluation; refusing to replace it, even with --force")
    check_writable(path, force)


def write(report: Report, path: str | os.PathLike, force: bool = False, renderer: str = "auto") -> None:
    """Draw ``report`` and write the PNG to ``path`` atomically (never a partial file; an existing
    file only with ``force``)."""
    write_atomically(path, imageio.png_bytes(render(report, renderer)), force=force)


__all__ = [
    "Chart",
    "Series",
    "chart_data",
    "check_destination",
    "render",
    "render_matplotlib",
    "render_pillow",
    "write",
]
