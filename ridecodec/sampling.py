"""Drawing images from a density model: ancestral sampling in the model's own decoding order.

A model that codes an image pixel by pixel defines a distribution one can draw from the way a
decoder decodes: the same step function, on the same canvas, in the same wavefront order
(``schedule.wavefront_for``), except that each pixel is drawn from its table instead of read from
a payload. So every model that keeps the plug-in contract can be sampled by this one generic
sampler; a model opts in with ``can_sample = True`` (``ridecodec.models.base``), and the others
are refused in one line. :func:`fill` also draws only some pixels and keeps the rest, which is
what inpainting's proposals need (``ridecodec.inpainting``).

Why integers: an exact model's tables are integer frequencies, identical on every machine. The
draws are integer arithmetic on those frequencies and on PCG64's raw 64-bit words (numpy keeps a
bit generator's stream fixed by its seed; ``Generator`` methods may change their algorithms
between numpy releases), so with an exact model a seed gives the same image on any machine,
thread count or device. The per-pixel log-probabilities :func:`fill` returns are fixed-point
integers too (:func:`log2_fixed`), so decisions made from them (inpainting's acceptances, its
choice among candidates) are the same everywhere as well.

    >>> from ridecodec import registry, sampling
    >>> model = registry.load_model("mcgsm")
    >>> sampling.sample(model, "L", height=4, width=6, seed=1).shape
    (1, 4, 6)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .codec import describe_seconds
from .errors import ModelNotFoundError, PluginError, RidecodecError, UnsupportedImageError
from .models.base import ALPHABET_SIZE, CHANNEL_LAYOUTS, DensityModel
from .schedule import coding_context, wavefront_for

#: Called as progress(done, total) after each wavefront step.
ProgressCallback = Callable[[int, int], None]

#: Fractional bits of the fixed-point base-2 logarithms (:func:`log2_fixed`): 2^-20 bits, far
#: finer than any decision made from them needs.
LOG_BITS = 20

#: Non-integral tables (a float model's) are drawn from after rounding down to this many units
#: per row (an exact model's tables already are integers, summing to 2^24).
FLOAT_TABLE_UNITS = 1 << 24

#: How many rows and columns of a primer (``sample(..., prime=)``) border the canvas: enough for
#: every built-in model's neighbourhood, and for ``ride``'s states to take the primer's pattern up.
PRIME_BORDER = 16

#: The default limit of ``ridecodec sample``: 1024 x 1024 pixels, about 20 s gray and 50 s RGB
#: with ``ride`` on one core (README, decoding speed).
DEFAULT_MAX_PIXELS = 1 << 20


def log2_fixed(values: np.ndarray) -> np.ndarray:
    """floor(2^LOG_BITS * log2(v)) for positive integers v below 2^53 (int64 in, int64 out),
    computed with integer operations only, so it is the same on every machine (a float ``log``
    may differ in its last bit between math libraries). Precision: the integer part is exact,
    the fraction within a few units of 2^-LOG_BITS."""
    values = np.maximum(np.asarray(values, dtype=np.int64), 1)
    # frexp is exact (no rounding: it reads the exponent), and so is the conversion below 2^53
    _, exponent = np.frexp(values.astype(np.float64))
    whole = exponent.astype(np.int64) - 1  # floor(log2 v)
    # the mantissa v / 2^whole in [1, 2) as a fixed-point number with 30 fractional bits
    shift = 30 - whole
    mantissa = np.where(shift >= 0, values << np.maximum(shift, 0), values >> np.maximum(-shift, 0))
    fraction = np.zeros_like(values)
    for _ in range(LOG_BITS):  # squaring doubles the logarithm: each round yields one bit of it
        mantissa = (mantissa * mantissa) >> 30  # < 2^62: no overflow
        carry = mantissa >= (1 << 31)
        mantissa = np.where(carry, mantissa >> 1, mantissa)
        fraction = (fraction << 1) | carry
    return (whole << LOG_BITS) | fraction


class Draws:
    """Seeded randomness as integers: the same numbers for a seed on every machine.

    Built on PCG64's raw output (``random_raw``), whose stream numpy fixes by the seed, and
    reduced to a range with exact integer arithmetic."""

    def __init__(self, seed: int):
        self.seed = seed
        self._bits = np.random.PCG64(seed)

    def below(self, totals: np.ndarray) -> np.ndarray:
        """One integer in [0, total) for each of ``totals`` (positive, below 2^32): floor(w *
        total / 2^64) for a fresh 64-bit word w, computed in two 32-bit halves (no overflow).
        Its bias, at most total / 2^64 per value, is far below anything measurable."""
        totals = np.asarray(totals, dtype=np.uint64)
        words = np.asarray(self._bits.random_raw(len(totals)), dtype=np.uint64)
        high, low = words >> np.uint64(32), words & np.uint64(0xFFFFFFFF)
        return ((high * totals + ((low * totals) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)

    def log2_uniform(self) -> int:
        """log2 of a uniform number in (0, 1], in units of 2^-LOG_BITS (for acceptance tests)."""
        word = int(self._bits.random_raw()) >> 11  # 53 bits
        return int(log2_fixed(np.array([word + 1]))[0]) - (53 << LOG_BITS)


def frequencies(table: object, count: int, model: DensityModel) -> np.ndarray:
    """A model's table as (count, 256) int64 frequencies with positive row sums below 2^32, or a
    PluginError naming the model if it is unusable.

    An exact model's tables are integers already and are used as they are, so draws depend on
    nothing but them; other tables are scaled to FLOAT_TABLE_UNITS per row and rounded down (a
    value with less than 2^-24 of the mass then cannot be drawn)."""
    expected = (count, ALPHABET_SIZE)
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != expected:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise PluginError(f"model {model.name!r} returned a table of shape {shape}, not {expected}")
    values = table.detach().to("cpu", torch.float64).numpy()
    sums = values.sum(axis=1)
    if not np.isfinite(sums).all() or values.min(initial=0) < 0 or (sums <= 0).any():
        raise PluginError(f"model {model.name!r} returned NaN, negative or all-zero probabilities")
    if np.array_equal(values, np.floor(values)) and sums.max() < 2**31:
        return values.astype(np.int64)
    return np.floor(values / sums[:, None] * FLOAT_TABLE_UNITS).astype(np.int64)


def require_sampling(model: DensityModel) -> None:
    """Refuse, in one line, a model that has not opted in to sampling (``can_sample``)."""
    if not getattr(model, "can_sample", False):
        raise ModelNotFoundError(
            f"model {model.name!r} cannot sample (it does not declare can_sample); "
            "use one that does, e.g. ride or mcgsm"
        )


def channels_of(model: DensityModel, mode: str) -> int:
    """The number of channels of ``mode`` (L, RGB, RGBA), or a one-line error if the model does
    not code that mode."""
    if mode not in CHANNEL_LAYOUTS:
        raise UnsupportedImageError(f"mode {mode!r} is not one of {', '.join(CHANNEL_LAYOUTS)}")
    if mode not in model.modes:
        raise UnsupportedImageError(
            f"model {model.name!r} does not code {mode} images (it codes {', '.join(model.modes)}); "
            "choose another mode or model"
        )
    return CHANNEL_LAYOUTS[mode]


@dataclass
class Filled:
    """What :func:`fill` made: the pixels, and the log-probability of each under its table."""

    pixels: np.ndarray  # uint8 (C, H, W)
    log2_probability: np.ndarray  # int64 (C, H, W): log2 p(value | what precedes it), in units of 2^-LOG_BITS

    def total(self, where: np.ndarray | None = None) -> int:
        """Sum of the log-probabilities (units of 2^-LOG_BITS), over the (H, W) mask ``where``."""
        chosen = self.log2_probability if where is None else self.log2_probability[:, where]
        return int(chosen.sum())


def fill(
    model: DensityModel,
    pixels: np.ndarray,
    missing: np.ndarray,
    draws: Draws | None,
    progress: ProgressCallback | None = None,
    threads: int = 1,
) -> Filled:
    """Draw the ``missing`` pixels ((H, W) bool, every channel) of ``pixels`` (uint8 (C, H, W))
    from the model, in its decoding order, keeping the others: each missing pixel is drawn from
    its table given everything before it in that order (known pixels and earlier draws alike).
    Also returns each pixel's log-probability under its table, so a pass with nothing missing
    scores an image. ``draws`` may be None when nothing is missing.

    The model is driven exactly as the decoder drives it (the contract in models/base.py): a
    canvas that starts empty, calls in wavefront order, channel by channel within a step, and
    each step's pixels written into the canvas before the next call; an exact model's tables are
    then the coder's own, whatever ``threads``."""
    channels, height, width = pixels.shape
    if missing.shape != (height, width):
        raise ValueError(f"missing has shape {missing.shape}, not {(height, width)}")
    if draws is None and missing.any():
        raise ValueError("drawing pixels needs draws")
    result = np.array(pixels, dtype=np.uint8)
    # each pixel's frequency and its table's total: logarithms are taken once, at the end
    chosen_counts = np.ones(result.shape, dtype=np.int64)
    table_totals = np.ones(result.shape, dtype=np.int64)
    canvas = torch.zeros(result.shape, dtype=torch.uint8, device=model.device)
    schedule = wavefront_for(model, height, width)
    with coding_context(threads if model.exact_across_devices else 1):
        try:
            step = model.begin(canvas)
        except RidecodecError:
            raise
        except Exception as error:
            raise PluginError(f"model {model.name!r} failed to start: {error}") from error
        for t, rows, cols in schedule.steps():
            device_rows, device_cols = rows.to(canvas.device), cols.to(canvas.device)
            r, c = rows.numpy(), cols.numpy()
            drawn = missing[r, c]
            for channel in range(channels):
                try:
                    table = step(device_rows, device_cols, channel)
                except RidecodecError:
                    raise
                except Exception as error:
                    raise PluginError(f"model {model.name!r} failed during sampling: {error}") from error
                counts = frequencies(table, len(r), model)
                cumulative = np.cumsum(counts, axis=1)
                totals = cumulative[:, -1]
                values = result[channel, r, c].astype(np.int64)
                if drawn.any():
                    assert draws is not None  # (checked above: drawing pixels needs draws)
                    # the first value whose cumulative count exceeds the draw: a value of zero
                    # frequency is never chosen, so every drawn value is in the model's support
                    chosen = draws.below(totals[drawn])
                    values[drawn] = (cumulative[drawn] <= chosen[:, None]).sum(axis=1)
                result[channel, r, c] = values
                chosen_counts[channel, r, c] = counts[np.arange(len(r)), values]
                table_totals[channel, r, c] = totals
                canvas[channel, device_rows, device_cols] = torch.from_numpy(values.astype(np.uint8)).to(canvas.device)
            if progress is not None:
                progress(t + 1, schedule.num_steps)
    return Filled(result, log2_fixed(chosen_counts) - log2_fixed(table_totals))


def sample(
    model: DensityModel,
    mode: str,
    height: int,
    width: int,
    seed: int,
    progress: ProgressCallback | None = None,
    threads: int = 1,
    prime: np.ndarray | None = None,
) -> np.ndarray:
    """A new image drawn from ``model``: uint8 (C, H, W) in ``mode``'s channels. With an exact
    model the same seed gives the same image on any machine.

    ``prime`` (uint8 (C, h, w), tiled as needed) starts the drawing from an image instead of from
    nothing: its first PRIME_BORDER rows and columns border the canvas above and to the left, the
    rest is drawn, and the border is cut away. Why: a model trained on patches has only seen
    pixels with some texture above and to their left; drawn from an empty border, a sample can
    settle into a flat state the training never showed it (measured: a ``ride`` fine-tuned on a
    brick wall drew flat noise unprimed, brick courses primed with the wall)."""
    require_sampling(model)
    channels = channels_of(model, mode)
    if height < 1 or width < 1:
        raise UnsupportedImageError(f"cannot draw a {width}x{height} image")
    border = 0 if prime is None else PRIME_BORDER
    canvas = np.zeros((channels, height + border, width + border), dtype=np.uint8)
    missing = np.ones(canvas.shape[1:], dtype=bool)
    if prime is not None:
        if prime.ndim != 3 or prime.shape[0] != channels or min(prime.shape[1:]) < 1:
            raise UnsupportedImageError(f"the primer has shape {prime.shape}, not ({channels}, H, W)")
        tiled = np.tile(prime, (1, -(-canvas.shape[1] // prime.shape[1]), -(-canvas.shape[2] // prime.shape[2])))
        canvas[:, :border] = tiled[:, :border, : canvas.shape[2]]
        canvas[:, :, :border] = tiled[:, : canvas.shape[1], :border]
        missing[:border] = False
        missing[:, :border] = False
    drawn = fill(model, canvas, missing, Draws(seed), progress, threads).pixels
    return np.ascontiguousarray(drawn[:, border:, border:])


def estimated_seconds(model: DensityModel, mode: str, height: int, width: int, threads: int = 1) -> float:
    """About how long drawing a height x width image takes here, measured: each wavefront step
    costs a fixed part plus a part per position, so two small images of different shapes (a
    tall, narrow one: many short steps; a wide, short one: fewer, longer steps) are drawn and
    timed, after a warm-up (the first call builds tables and compiles kernels), and the two
    parts fitted to them."""
    shapes = ((48, 12), (12, 160))
    sample(model, mode, 4, 4, seed=0, threads=threads)  # warm-up
    measured = []
    for probe_height, probe_width in shapes:
        started = time.perf_counter()
        sample(model, mode, probe_height, probe_width, seed=0, threads=threads)
        measured.append(time.perf_counter() - started)
    # seconds = per_step * steps + per_pixel * pixels, solved for the two probes
    rows = [[wavefront_for(model, h, w).num_steps, h * w] for h, w in shapes]
    try:
        per_step, per_pixel = np.linalg.solve(np.array(rows, dtype=float), np.array(measured))
    except np.linalg.LinAlgError:  # unbounded reach: one pixel per step
        per_step, per_pixel = 0.0, measured[1] / rows[1][1]
    if per_step < 0 or per_pixel < 0:  # timing noise: fall back to the cost per pixel of the wide probe
        per_step, per_pixel = 0.0, measured[1] / rows[1][1]
    return per_step * wavefront_for(model, height, width).num_steps + per_pixel * height * width


def check_size(model: DensityModel, mode: str, height: int, width: int, max_pixels: int, threads: int = 1) -> None:
    """Refuse, in one line with an estimate of the time it would take here, a size above
    ``max_pixels`` (drawing costs what decoding costs: the model is run pixel by pixel)."""
    pixels = height * width
    if pixels <= max_pixels:
        return
    seconds = estimated_seconds(model, mode, height, width, threads)
    raise UnsupportedImageError(
        f"a {width}x{height} sample has {pixels} pixels, more than --max-pixels {max_pixels}: with {model.name} it "
        f"would take about {describe_seconds(seconds)} here; raise --max-pixels to draw it anyway"
    )


def draw_image(
    model: str | None,
    mode: str,
    width: int,
    height: int,
    seed: int,
    weights: str | None = None,
    device: str = "auto",
    threads: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
    prime: str | None = None,
):
    """What ``ridecodec sample`` does, as (model name, PIL image): the model (by default the
    best installed for ``mode``), checked before any work (it can sample, it codes ``mode``, the
    size is within ``max_pixels``), then the image drawn, from the image file ``prime`` if given
    (converted to ``mode``; see :func:`sample`)."""
    from PIL import Image

    from . import api, registry
    from .imageio import open_image

    primer = None
    if prime is not None:
        opened = open_image(prime)
        if not isinstance(opened, Image.Image):
            raise UnsupportedImageError(f"{prime}: a 16-bit colour image cannot prime a sample; convert it to 8 bits")
        array = np.asarray(opened.convert(mode))
        primer = array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))

    name = model or registry.default_model(mode)
    density_model = registry.load_model(name, api.resolve_device(device), weights)
    require_sampling(density_model)
    channels_of(density_model, mode)
    check_size(density_model, mode, height, width, max_pixels, threads)
    planes = sample(density_model, mode, height, width, seed, progress, threads, primer)
    array = planes[0] if mode == "L" else np.ascontiguousarray(planes.transpose(1, 2, 0))
    return name, Image.fromarray(array, mode)
