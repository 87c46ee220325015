"""The coding loop: model calls and entropy coder calls, in the decoding order of ``schedule``.

The encoder runs *exactly* the decoder's loop: it starts from an empty canvas, asks the model for
the tables of one wavefront step at a time with the same batch shapes, and writes the true pixels
into the canvas after each call, as the decoder writes the decoded ones. So the two sides compute
bit-identical tables on the same device, whatever the model's arithmetic (see DESIGN.md,
"Exactness"). The model never sees the coder and the coder never sees the model: only
probability tables pass between them, here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import constriction
import numpy as np
import torch

from . import adaptive, exact_cpu
from .coloursets import ColourSet
from .errors import FormatError, PluginError, RidecodecError
from .models.base import ALPHABET_SIZE, CodingOrder, DensityModel
from .schedule import (  # noqa: F401 (the schedule's names, re-exported: engine.Split, engine.wavefront_for, ...)
    Split,
    Wavefront,
    code_length_bits,
    coding_context,
    replayed_log_prob,
    restricted,
    split_step,
    used_values,
    wavefront_for,
)

#: Called as progress(done, total) after each wavefront step.
ProgressCallback = Callable[[int, int], None]

# perfect=False: constriction 0.5 otherwise uses a slow exact quantizer (DESIGN.md, numbers).
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)

#: The one-line refusal of a payload that cannot hold the image its header declares.
EXHAUSTED = "the payload ends before the image does: the file is truncated or corrupt"


class PayloadBudget:
    """Stops a decode as soon as the payload is provably used up: a decompression bomb (a small
    file whose header declares a huge image) or a truncated payload costs only the work its real
    payload pays for, never the declared size.

    Why it is sound, for constriction 0.5's range coder (64-bit state, 32-bit words, 24-bit
    probabilities; a reference model of its encoder reproduced its output word for word, see
    benchmarks/RESULTS.md, "Decompression bombs"). The coder keeps an interval ``range`` between
    2^32 and 2^64 - 1 (2^64 - 1 at the start). Coding a symbol of integer frequency ``q`` (out of
    2^24) sets ``range = (range >> 24) * q <= range * q / 2^24``; whenever ``range`` falls below
    2^32 it is multiplied by 2^32 and exactly one word is emitted (at once, or later if a carry is
    pending). Sealing adds one or two words. So after n symbols with k such renormalizations,
    ``2^32 <= range <= 2^64 * Q * 2^(32 k)``, where Q is the product of the n probabilities
    q / 2^24: the information -log2 Q of the first n symbols is at most 32 k + 32, and a payload of
    W words has k <= W - 1 for the whole image. The decoder repeats the encoder's (range, lower)
    arithmetic exactly, symbol for symbol, as long as it decodes the encoder's symbols, which it
    does for every valid file. Hence two tests that a valid file always passes:

    1. the information of every prefix of the decoded symbols is at most 32 W bits;
    2. once the decoder has read every word (constriction's ``maybe_exhausted()`` is true only
       then), it has made at least W - 2 renormalizations, so at most one remains, and what is
       decoded afterwards carries at most 64 bits (from ``range`` <= 2^64 down to 2^32, with one
       renormalization's 2^32 in between).

    The decoder reads past the end of the data as zeros, so a bomb decodes on without any error
    from the coder; these tests are what stops it. The information is bounded from below from the
    float32 tables the coder receives: constriction's fast quantizer (``perfect=False``) gives a
    symbol of table probability P at most ``P (1 + 2^-15) + 2^-21`` of the 2^24 (float32 rounding
    of the partial sums, the scale and the products: a few units), the last symbol at most 2^-15
    more, and none more than 2^24 - 254 (so every symbol costs at least 2.2e-5 bits; a test checks
    these bounds against the quantizer itself). A further 32 bits of slack cover the rounding of
    this float64 sum. So a payload of W words pays for at most 1.5 million W symbols whatever the
    model, and with the exact models, whose tables give every value at least 16 of 2^24 (so a
    symbol costs at least 3.1e-4 bits by this bound), for at most about 105,000 W.
    """

    #: The most a symbol's frequency can be, of 2^24, and so the least a symbol costs in bits.
    MAX_PROBABILITY = 1 - 254 * 2.0**-24
    MIN_BITS = -math.log2(MAX_PROBABILITY)
    #: Slack for the float64 rounding of the running sum (far smaller than one bit).
    SLACK_BITS = 32.0
    #: What test 2 allows after the last word was read.
    AFTER_END_BITS = 64.0

    def __init__(self, num_words: int, num_symbols: int):
        self.limit = 32.0 * num_words + self.SLACK_BITS
        self.spent = 0.0  # bits, a lower bound on the information decoded so far
        self.spent_at_end: float | None = None  # `spent` when the last word had been read
        if num_symbols and (num_words == 0 or num_symbols * self.MIN_BITS > self.limit):
            raise FormatError(EXHAUSTED)  # test 1 for the whole image, before any model runs

    @classmethod
    def bits(cls, table: np.ndarray, symbols: np.ndarray) -> float:
        """A lower bound on what the coder spends on ``symbols`` (ints) coded with ``table``
        ((N, 256) float32, as the coder received it)."""
        chosen = table[np.arange(len(symbols)), symbols].astype(np.float64)
        probability = chosen / table.sum(axis=1, dtype=np.float64)
        frequency = probability * (1 + 2.0**-15) + 2.0**-21 + np.where(symbols == ALPHABET_SIZE - 1, 2.0**-15, 0.0)
        return float(-np.log2(np.minimum(frequency, cls.MAX_PROBABILITY)).sum())

    def spend(self, table: np.ndarray, symbols: np.ndarray, at_end: bool) -> None:
        """Count one decoded batch; ``at_end``: the decoder had read every word before it.
        Raises FormatError once either test fails."""
        if at_end and self.spent_at_end is None:
            self.spent_at_end = self.spent
        self.spent += self.bits(table, symbols)
        if self.spent > self.limit or (
            self.spent_at_end is not None and self.spent - self.spent_at_end > self.AFTER_END_BITS + self.SLACK_BITS
        ):
            raise FormatError(EXHAUSTED)


if exact_cpu.AVAILABLE:

    @exact_cpu.numba.njit(cache=True, nogil=True)
    def _plainly_valid(bits, largest):  # pragma: no cover
        # True where the checks below would pass for certain, in one vectorized pass over the
        # table's float32 bits (as int32, ordered as the numbers are where not negative): every
        # entry from +0 to ``largest`` (no NaN, no sign bit; no row's sum can overflow, whatever
        # its order) and every row with an entry above 0. False: the checks below decide.
        for n in range(bits.shape[0]):
            low, high, any_set = bits[n, 0], bits[n, 0], np.int32(0)
            for j in range(bits.shape[1]):
                low = min(low, bits[n, j])
                high = max(high, bits[n, j])
                any_set |= bits[n, j]
            if low < 0 or high > largest or any_set == 0:
                return False
        return True


#: FLT_MAX / 256's bits: entries up to it cannot make a row of 256 overflow
_LARGEST_PLAIN_ENTRY = int(np.array(np.finfo(np.float32).max / 256, dtype=np.float32).view(np.int32))


def _checked_table(table: object, count: int, model: DensityModel) -> np.ndarray:
    """A plug-in's table as a CPU array, or a PluginError naming the plug-in if it is unusable.

    The values are checked after the copy to the CPU (which the coder needs anyway), so a model on
    a GPU pays one transfer per step and no extra synchronisations."""
    expected = (count, ALPHABET_SIZE)
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != expected:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise PluginError(f"model {model.name!r} returned a table of shape {shape}, not {expected}")
    if table.dtype != torch.float32:
        raise PluginError(f"model {model.name!r} returned {table.dtype} tables, not float32")
    table = table.to("cpu").numpy()
    if exact_cpu.AVAILABLE and _plainly_valid(np.ascontiguousarray(table).view(np.int32), _LARGEST_PLAIN_ENTRY):
        return table
    # Two passes catch everything: a NaN or infinity makes its row's sum non-finite.
    sums = table.sum(axis=1)
    if not np.isfinite(sums).all() or table.min() < 0:
        raise PluginError(f"model {model.name!r} returned NaN, infinite or negative probabilities")
    if (sums <= 0).any():
        raise PluginError(f"model {model.name!r} returned an all-zero probability table")
    return table


def _run(
    model: DensityModel,
    canvas: torch.Tensor,
    code_step: Callable[[torch.Tensor, torch.Tensor, int, np.ndarray], np.ndarray],
    progress: ProgressCallback | None,
    split: Split = Split(),
    after_step: Callable[[], None] | None = None,
) -> None:
    """The loop shared by encoder and decoder.

    ``code_step(rows, cols, channel, table)`` codes one batch of symbols (rows and cols: CPU
    tensors; table: a CPU array) and returns them; they are written into the canvas before the
    next model call. Within a step, channel after channel; within a channel, the step's
    positions in ascending rows, in one call or in consecutive calls of ``split.rows_per_call``.
    ``after_step()`` is called after each wavefront step (the adaptive stage learns there).
    """
    channels, height, width = canvas.shape
    schedule = wavefront_for(model, height, width)
    total = schedule.num_steps
    if not model.exact_across_devices and split != Split():
        raise ValueError(f"model {model.name!r} is not exact: it must be coded in whole steps on one thread")
    with coding_context(split.threads):
        try:
            step = model.begin(canvas)
        except RidecodecError:
            raise  # already the user's line (a damaged installation, say)
        except Exception as error:
            raise PluginError(f"model {model.name!r} failed to start: {error}") from error
        # The schedule is made on the CPU, where the coder needs it, and copied to the model's
        # device once per step: on a GPU, reading indices back would cost a synchronisation each.
        for t, step_rows, step_cols in schedule.steps():
            for channel in range(channels):
                for rows, cols in split_step(step_rows, step_cols, split.rows_per_call):
                    device_rows, device_cols = rows.to(canvas.device), cols.to(canvas.device)
                    try:
                        table = step(device_rows, device_cols, channel)
                    except RidecodecError:
                        raise
                    except Exception as error:
                        raise PluginError(f"model {model.name!r} failed during coding: {error}") from error
                    symbols = code_step(rows, cols, channel, _checked_table(table, len(rows), model))
                    canvas[channel, device_rows, device_cols] = torch.from_numpy(symbols).to(canvas.device, torch.uint8)
            if after_step is not None:
                after_step()
            if progress is not None:
                progress(t + 1, total)


@dataclass(frozen=True, eq=False)
class Variant:
    """One way of handing the model's tables to the coder: adapted to the image online
    (``adaptation``: the version of ``ridecodec.adaptive``, 0 for none), then restricted to value
    sets (``value_sets``: (C, 256) bool from :func:`used_values`, or None) or to a colour set
    (``colour_set``: ``coloursets.ColourSet``, or None). Files record all three."""

    value_sets: np.ndarray | None = None
    adaptation: int = 0
    colour_set: ColourSet | None = None


def adaptation_version_for(model: DensityModel, height: int, width: int) -> int:
    """The adaptive stage's version the encoder writes for ``model`` coding an H x W image: the
    newest, or where the model codes in an order of its own (multi-scale: a subsampled image
    first) the newest that does not need each row coded left to right (``adaptive``); 0, none,
    for a wavefront that codes pixels the stage reads in the pixel's own step
    (``adaptive.MIN_WAVEFRONT_RIGHT``)."""
    order = wavefront_for(model, height, width)
    if not isinstance(order, Wavefront):
        return adaptive.VERSION_FOR_OWN_ORDERS
    if order.right is not None and order.right < adaptive.MIN_WAVEFRONT_RIGHT:
        return 0
    return adaptive.VERSION


def _adaptation_for(version: int, shape: tuple[int, ...], order: CodingOrder) -> adaptive.Adaptation | None:
    if version == 0:
        return None
    if version not in adaptive.VERSIONS:
        raise FormatError(
            f"the file uses online adaptation version {version}, which this ridecodec does not know; "
            "a newer ridecodec made it"
        )
    if version > adaptive.VERSION_FOR_OWN_ORDERS and not isinstance(order, Wavefront):
        raise FormatError(
            f"the file uses online adaptation version {version}, which needs a wavefront coding order, "
            "and its model codes in an order of its own: the file is corrupt"
        )
    channels, height, width = shape
    return adaptive.Adaptation(channels, height, width, version=version)


class _CoderTables:
    """Turns the model's tables into the coder's for each of ``variants``, for an image of
    ``shape``: one adaptive stage shared by the variants that adapt (its state depends only on
    the image), and the pixels' coded channels for colour sets. Encoder, decoder and the
    likelihood replay all go through here, so they cannot disagree."""

    def __init__(self, variants: list[Variant], shape: tuple[int, ...], order: CodingOrder):
        self.variants = variants
        versions = {variant.adaptation for variant in variants if variant.adaptation}
        if len(versions) > 1:
            raise ValueError("one pass can adapt with one version of the adaptive stage only")
        self.stage = _adaptation_for(versions.pop() if versions else 0, shape, order)
        colours = any(variant.colour_set is not None for variant in variants)
        self.known = np.zeros(shape, dtype=np.uint8) if colours else None
        self._batch: tuple[np.ndarray, np.ndarray] | None = None

    def tables(self, rows: torch.Tensor, cols: torch.Tensor, channel: int, table: np.ndarray) -> list[np.ndarray]:
        at_rows, at_cols = rows.numpy(), cols.numpy()
        self._batch = at_rows, at_cols
        adapted = None if self.stage is None else self.stage.refine(at_rows, at_cols, channel, table)
        before = None if self.known is None else self.known[:channel, at_rows, at_cols].T
        out = []
        for variant in self.variants:
            # (a variant adapts only where there is a stage, and has a colour set only where the
            # pixels are known: `adapted` and `before` are not None where they are read)
            coded = cast(np.ndarray, adapted) if variant.adaptation else table
            if variant.value_sets is not None:
                coded = restricted(coded, variant.value_sets[channel])
            if variant.colour_set is not None:
                coded = restricted(coded, variant.colour_set.allowed(channel, cast(np.ndarray, before)))
            out.append(coded)
        return out

    def record(self, channel: int, symbols: np.ndarray) -> None:
        """The symbols coded for the batch of the last :meth:`tables` call."""
        assert self._batch is not None, "tables comes before record"
        rows, cols = self._batch
        if self.stage is not None:
            self.stage.observe(rows, cols, channel, symbols)
        if self.known is not None:
            self.known[channel, rows, cols] = symbols

    def end_step(self) -> None:
        if self.stage is not None:
            self.stage.end_step()


def encode_variants(
    model: DensityModel,
    pixels: np.ndarray,
    variants: Sequence[Variant | np.ndarray | None],
    progress: ProgressCallback | None = None,
    split: Split = Split(),
) -> list[np.ndarray]:
    """Entropy-code ``pixels`` (uint8, (C, H, W)) with ``model`` once per :class:`Variant` of the
    tables, in one pass of the model (a bare array or None stands for ``Variant(value_sets=it)``;
    value sets and colour sets must include every value and colour of ``pixels``). Returns one
    uint32 payload per variant; decoding needs the same variant.

    Why several at once: which variant codes smaller is only known after coding, the model pass
    is the expensive part, and the coder costs about 0.3 us per symbol."""
    chosen = [v if isinstance(v, Variant) else Variant(value_sets=v) for v in variants]
    source = torch.from_numpy(np.array(pixels, dtype=np.uint8))  # uint8: no 4x copy of big images
    canvas = torch.zeros(source.shape, dtype=torch.uint8, device=model.device)
    encoders = [constriction.stream.queue.RangeEncoder() for _ in chosen]
    coder_tables = _CoderTables(chosen, tuple(source.shape), wavefront_for(model, *source.shape[1:]))

    def encode_step(rows, cols, channel, table):
        symbols = source[channel, rows, cols].numpy().astype(np.int32)
        for encoder, coded in zip(encoders, coder_tables.tables(rows, cols, channel, table)):
            encoder.encode(symbols, _CATEGORICAL, coded)
        coder_tables.record(channel, symbols)
        return symbols

    _run(model, canvas, encode_step, progress, split, coder_tables.end_step)
    return [encoder.get_compressed() for encoder in encoders]


def symbol_costs(
    model: DensityModel,
    pixels: np.ndarray,
    variants: list[Variant],
    progress: ProgressCallback | None = None,
    split: Split = Split(),
) -> list[np.ndarray]:
    """For each of ``variants``, float64 (C, H, W): -log2 of the probability the coder's table
    gives each value of ``pixels`` (uint8 (C, H, W)), the tables computed in one pass of the
    encoder's own loop (schedule, canvas updates, adaptation and restrictions). Each sums to the
    ideal code length of the image coded with that variant, which its payload matches within the
    coder's overhead."""
    source = np.array(pixels, dtype=np.uint8)
    coder_tables = _CoderTables(variants, source.shape, wavefront_for(model, *source.shape[1:]))
    costs = [np.zeros(source.shape, dtype=np.float64) for _ in variants]

    def cost_step(rows, cols, channel, table):
        r, c = rows.numpy(), cols.numpy()
        symbols = source[channel, r, c].astype(np.int32)
        index = np.arange(len(symbols))
        for plane_costs, coded in zip(costs, coder_tables.tables(rows, cols, channel, table)):
            chosen = coded[index, symbols].astype(np.float64)
            plane_costs[channel, r, c] = -np.log2(chosen / coded.sum(axis=1, dtype=np.float64))
        coder_tables.record(channel, symbols)
        return symbols

    canvas = torch.zeros(source.shape, dtype=torch.uint8, device=model.device)
    _run(model, canvas, cost_step, progress, split, coder_tables.end_step)
    return costs


def variant_code_length_bits(model: DensityModel, pixels: np.ndarray, variant: Variant) -> float:
    """The ideal code length in bits of ``pixels`` (uint8 (C, H, W)) coded with ``variant`` of
    the model's tables: :func:`code_length_bits` where the tables are only restricted to value
    sets, else the coder's tables replayed (:func:`symbol_costs`; adaptation depends on the order)."""
    if not variant.adaptation and variant.colour_set is None:
        return code_length_bits(model, pixels, variant.value_sets)
    return float(symbol_costs(model, pixels, [variant])[0].sum())


def encode_pixels(
    model: DensityModel,
    pixels: np.ndarray,
    progress: ProgressCallback | None = None,
    value_sets: np.ndarray | None = None,
    split: Split = Split(),
    adaptation: int = 0,
    colour_set: ColourSet | None = None,
) -> np.ndarray:
    """Entropy-code ``pixels`` (uint8, (C, H, W)) with ``model``; returns the uint32 payload.
    ``value_sets``, ``adaptation``, ``colour_set``: one :class:`Variant` of :func:`encode_variants`."""
    return encode_variants(model, pixels, [Variant(value_sets, adaptation, colour_set)], progress, split)[0]


def decode_pixels(
    model: DensityModel,
    payload: np.ndarray,
    shape: tuple[int, int, int],
    progress: ProgressCallback | None = None,
    value_sets: np.ndarray | None = None,
    split: Split = Split(),
    adaptation: int = 0,
    colour_set: ColourSet | None = None,
) -> np.ndarray:
    """Decode a payload made by :func:`encode_pixels` (with the same ``value_sets``,
    ``adaptation`` and ``colour_set``) into uint8 pixels of ``shape`` (C, H, W). An exact model
    may decode with any ``split``.

    ``payload`` must be the words of one encoder, nothing missing: a payload too short for the
    image (a decompression bomb, a truncated file) is refused as soon as that is certain
    (:class:`PayloadBudget`), before the image is allocated when the size alone proves it."""
    words = np.ascontiguousarray(payload, dtype=np.uint32)
    budget = PayloadBudget(len(words), math.prod(shape))
    coder_tables = _CoderTables(
        [Variant(value_sets, adaptation, colour_set)], tuple(shape), wavefront_for(model, *shape[1:])
    )
    canvas = torch.zeros(shape, dtype=torch.uint8, device=model.device)
    decoder = constriction.stream.queue.RangeDecoder(words)

    def decode_step(rows, cols, channel, table):
        (table,) = coder_tables.tables(rows, cols, channel, table)
        at_end = decoder.maybe_exhausted()  # checked before: see PayloadBudget, test 2
        try:
            symbols = np.asarray(decoder.decode(_CATEGORICAL, table), dtype=np.int32)
        except Exception as error:  # constriction raises on payloads that cannot be decoded
            raise FormatError(f"the compressed data is corrupt ({error})") from error
        except BaseException as error:  # a Rust panic (pyo3's PanicException is no Exception)
            if type(error).__name__ != "PanicException":
                raise  # KeyboardInterrupt and the like
            raise FormatError(f"the compressed data is corrupt ({error})") from error
        budget.spend(table, symbols, at_end)
        coder_tables.record(channel, symbols)
        return symbols

    _run(model, canvas, decode_step, progress, split, coder_tables.end_step)
    return canvas.cpu().numpy()
