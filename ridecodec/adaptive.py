"""Online adaptation: a secondary estimation stage that corrects any model's tables to the image
being coded, from the pixels already coded, in integer arithmetic (so files stay portable).

A model trained on photographs is calibrated on photographs. On a render, a screenshot or an
upscaled picture a pixel very often *equals* one of its neighbours, which such a model never
expects: it gives the left neighbour's value a probability of, say, 0.3 where this image's
history says 0.98. Context-mixing codecs win such images by learning that online; so does this.

For each pixel the **candidates** are the distinct values among its coded neighbours, left (W),
up (N), up-left (NW) and up-right (NE), in that order. For each candidate the model's own
probability ``q`` is refined by an adaptive probability map (APM, "secondary symbol estimation"
in lpaq/paq8): a table, per context, of the probability that the candidate is the pixel's value
at 29 points of ``q``, interpolated between the two nearest points, starting as the identity
(so it changes nothing until the image has shown otherwise) and updated, after each wavefront
step, to the running mean of what the coded pixels did. The context is the channel, which
neighbours are distinct (W; N if it differs from W; ...: 16 patterns), the candidate's position
and, for G, B and A, which neighbour the pixel's previous channel equalled (the channels of a
graphic tend to agree on it). The refined candidate probabilities replace the model's; the
other values share what is left in the model's proportions.

The maps are integers (probabilities at 2**-24, the exact models' table units) and the new
entries of a table are a few float64 operations on integers, each correctly rounded by IEEE 754
on every machine: the same numbers everywhere. State changes only between wavefront steps, from
pixels both sides know, so the tables do not depend on how a step is split across calls. A photograph gains
little (its pixels rarely equal a neighbour more often than the model predicts); the encoder
codes each image both with and without adaptation in one model pass and keeps the smaller, so
adaptation never costs more than the header bit that records it.

Version 2 (ridecodec 0.10) changes two things; version 1 stays as it was, for its files:

- In gray, two more candidates: WW (two to the left) and NN (two up). Dithered and halftoned
  images, and textures of period two, repeat at distance two, not one (Waterloo's frog, a dithered
  picture, equals WW in 30% of its pixels and NN in 26%, W in 23%); a 256 x 256 crop of it costs
  8% less. In colour the candidates stay version 1's four: there the previous channel's
  neighbour already tells much of it, and six candidates split each context's evidence into four
  times as many patterns (RGB graphics crops lost 0.3% to 0.9% with them).
- Every map cell starts as if it had seen four observations that agree with the identity, not
  one, so that a rarely seen context is not pulled about by its first few pixels.

Version 3 (ridecodec 0.10) keeps version 2's candidates and maps, and first mixes into the
model's table the distribution of an online least-squares predictor (``ridecodec.lsq``): a
logistic around a linear prediction fitted to this image's coded pixels (in colour also from the
earlier channels at the pixel), with a mixing weight learned online per context. Stripes,
gradients and textures that repeat a linear relation, and the correlation between a colour
photograph's channels, are what it learns that the photo-trained models do not; the candidates'
maps then correct the mixed table as they corrected the model's.

Version 4 (ridecodec 0.10) fits the predictor to each pixel's own surroundings: its weights
solve the normal equations of the coded pixels in a window of the last ``LOCAL_WINDOW`` rows and
columns (``lsq.LocalSums``), not of the whole image so far. A texture, a gradient, the stripes of a
pattern change across an image, and a fit to the last few rows follows them (the least-squares
codecs TMW, MRP and LS-CALIC predict this way): 160-pixel crops of renders cost 5% to 18% less than
with version 3 and a McMaster crop 1.6% less. The window's sums are kept row by row, so version 4
needs each row coded left to right, one pixel a wavefront step; a model that codes in an order of
its own (multi-scale) is adapted with version 3 (``VERSION_FOR_OWN_ORDERS``).

Version 5 (ridecodec 0.10) mixes geometrically instead of linearly (``lsq``, "From version 5"):
the table becomes the normalized product model**w0 * local**w1 * image**w2 of the model's table
and the logistic density's shape around the local fit's prediction and the whole image's
(version 3's fit, kept alongside), the weights per channel and error context learned online,
blended with a little of the model's table, then the candidates' maps as before. Where the
model and a predictor both know the pixel, a linear mix keeps two peaks and pays for both; the
product puts one sharper peak between them. Files are 1.1% smaller than with version 4 on the 18
McMaster images, 2.2% on 31 graphics, 0.4% on Waterloo's gray images (RESULTS.md, "Online
adaptation, version 5").

Version 6 (ridecodec 0.10) adds a fourth expert to version 5's product: a second local fit, on a
wider window (``WIDE_WINDOW`` rows and columns, not ``LOCAL_WINDOW``), with the same features and
scale. The narrow fit follows an edge or a texture as it changes; the wide one, fitted to about
four times as many pixels, errs less where the image is much the same over a larger area, and
the product weighs the two per error context as this image rewards them. It costs a second set of
window sums (18 rows of products: about 57 KB per image column in RGB) and a second solve per
pixel; files are 0.3% smaller on McMaster, 0.4% on graphics (RESULTS.md, "Online adaptation,
version 6").
"""

from __future__ import annotations

import numpy as np

# numba is a dependency; without it the numpy code computes the same numbers, more slowly
from .exact_cpu import AVAILABLE as _KERNELS, numba
from .lsq import LeastSquaresMix

#: The version of this stage's arithmetic, recorded in files: any change to it is a new version.
VERSION = 6
#: Every version this ridecodec decodes (and can still write, for tests and comparisons).
VERSIONS = (1, 2, 3, 4, 5, 6)
#: The newest version for a model that codes in an order of its own (``coding_order``: the
#: multi-scale model's subsampled image first): version 4's local fit keeps its sums row by row
#: and needs every row coded left to right, one pixel a step, as a wavefront codes it.
VERSION_FOR_OWN_ORDERS = 3

#: The least right-reach of a wavefront under which every pixel the stage reads (up to the one
#: up-right, and two up, two right) lies in an earlier step than the pixel: with right-reach 0,
#: the step itself codes them, and the tables would depend on how a step is split.
MIN_WAVEFRONT_RIGHT = 1

#: Version 4's local least-squares window: rows above and columns to the left (``lsq.LocalSums``).
LOCAL_WINDOW = 7
#: Version 6's second, wider local fit (the geometric mix's fourth expert).
WIDE_WINDOW = 16

#: Probabilities are integers in units of 2**-24, like the exact models' tables.
ONE = 1 << 24
#: The most the candidates may take together, so that no other value is ever impossible.
MAX_CANDIDATE_MASS = ONE - (1 << 12)

#: Neighbour offsets (row, column) of the candidates, in priority order: W, N, NW, NE.
NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1))
#: Version 2's candidates in gray: also WW and NN (every wavefront codes them before the pixel,
#: as it does W and N).
GRAY_NEIGHBOURS_2 = NEIGHBOURS + ((0, -2), (-2, 0))

#: The APM's points: round(2**24 * sigmoid(x)) for x = -12, -11.25, ..., 9 (written out, not
#: computed, so that no platform's exp() can change them).
# fmt: off
POINTS = np.array([
    103, 218, 462, 978, 2070, 4382, 9274, 19621, 41484, 87579, 184330, 385496, 795674, 1599699,
    3060592, 5382488, 8388608, 11394728, 13716624, 15177517, 15981542, 16391720, 16592886,
    16689637, 16735732, 16757595, 16767942, 16772834, 16775146,
], dtype=np.int64)
# fmt: on

#: A fraction between two points, at 2**-12.
_FRACTION_BITS = 12
#: A cell's count stops growing here (in observations): the map keeps adapting.
_COUNT_LIMIT = 255 << _FRACTION_BITS


def _check_points() -> None:
    # the points are probabilities at 2**-24 of increasing x: increasing, below ONE
    assert (np.diff(POINTS) > 0).all() and POINTS[-1] < ONE


def neighbours_for(version: int, channels: int) -> tuple[tuple[int, int], ...]:
    """The candidates' neighbour offsets of adaptation ``version`` for an image of ``channels``."""
    return GRAY_NEIGHBOURS_2 if version >= 2 and channels == 1 else NEIGHBOURS


def _initial_count(version: int) -> int:
    """What a map cell's identity counts for at first, in observations at 2**-12, less the one
    that ``end_step`` always adds."""
    return (3 << _FRACTION_BITS) if version >= 2 else 0


class Adaptation:
    """The adaptive stage, in ``version`` (of ``VERSIONS``), for one image of ``channels``
    channels and ``height`` x ``width`` pixels: ``refine`` corrects a batch of tables, ``observe``
    records the coded symbols, ``end_step`` applies what a whole wavefront step taught (call it
    after each step)."""

    #: a map cell's count stops growing here, so that the map keeps following the image
    count_limit = _COUNT_LIMIT
    #: use the compiled kernels where numba is installed (tests set it False for the reference)
    compiled = True

    def __init__(self, channels: int, height: int, width: int, version: int = VERSION):
        if version not in VERSIONS:
            raise ValueError(f"adaptation version {version} is not one of {VERSIONS}")
        self.version = version
        self.neighbours = neighbours_for(version, channels)
        self.height, self.width = height, width
        self.border = max(max(-dr, -dc, dc) for dr, dc in self.neighbours)
        self._offsets = np.array(self.neighbours, dtype=np.int64)  # for the kernels
        # the coded pixels, with a border above, left and right, so that every neighbour
        # lookup is in bounds
        b = self.border
        self.known = np.zeros((channels, height + b, width + 2 * b), dtype=np.uint8)
        slots = len(self.neighbours)
        self.patterns, self.previous_states = 1 << slots, slots + 1
        contexts = channels * self.previous_states * self.patterns * slots
        self.probability = np.tile(POINTS, (contexts, 1))  # the maps, at 2**-24
        self.count = np.full_like(self.probability, _initial_count(version))  # observations per point, at 2**-12
        self.pending_hits = np.zeros(self.probability.size, dtype=np.int64)
        self.pending_weights = np.zeros(self.probability.size, dtype=np.int64)
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # refine's, for observe
        self._touched: list[np.ndarray] = []  # the cells observed since the last end_step
        # (the compiled kernels keep them in a list without repeats, instead)
        self._touched_cells = np.empty(self.probability.size, dtype=np.int64)
        self._touched_count = np.zeros(1, dtype=np.int64)
        self._listed = np.zeros(self.probability.size, dtype=np.bool_)
        # from version 3: the online least-squares predictor, mixed into the tables first
        # (from version 4 each pixel's own fit, on a window of the last LOCAL_WINDOW rows and columns)
        window = LOCAL_WINDOW if version >= 4 else 0
        # (from version 5 mixed geometrically, with the image-wide fit as a third expert)
        # (from version 6 with a second local fit, on a wider window, as a fourth expert)
        wide_window = WIDE_WINDOW if version >= 6 else 0
        self.mixer = (
            LeastSquaresMix(channels, height, width, window, geometric=version >= 5, wide_window=wide_window)
            if version >= 3
            else None
        )

    def _candidates(self, rows: np.ndarray, cols: np.ndarray, channel: int):
        """(values (N, K), active (N, K) bool, context (N, K)) of a batch of positions."""
        b, slots = self.border, len(self.neighbours)
        r, c = rows + b, cols + b  # in `known`
        plane = self.known[channel]
        values = np.stack([plane[r + dr, c + dc] for dr, dc in self.neighbours], axis=1)
        available = np.stack(
            [(rows + dr >= 0) & (cols + dc >= 0) & (cols + dc < self.width) for dr, dc in self.neighbours], axis=1
        )
        active = available.copy()
        for k in range(1, slots):  # a value already offered by an earlier neighbour
            for earlier in range(k):
                active[:, k] &= ~(available[:, earlier] & (values[:, earlier] == values[:, k]))
        pattern = (active * (1 << np.arange(slots))).sum(axis=1)
        previous = np.zeros(len(rows), dtype=np.int64)
        if channel > 0:  # which neighbour the pixel's previous channel equalled, first first
            before = self.known[channel - 1]
            here = before[r, c]
            for k in reversed(range(slots)):
                dr, dc = self.neighbours[k]
                previous = np.where(available[:, k] & (before[r + dr, c + dc] == here), k + 1, previous)
        base = ((channel * self.previous_states + previous) * self.patterns + pattern) * slots
        context = base[:, None] + np.arange(slots)
        return values, active, context

    def refine(self, rows: np.ndarray, cols: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
        """The adapted tables (float32) for a batch of the model's tables ((N, 256) float32, as
        the coder would get them): each candidate gets its refined probability, and the other
        values share the rest in the model's proportions."""
        totals = np.empty(0, dtype=np.float64)  # (the kernel sums the rows itself)
        if self.mixer is not None:
            table = self.mixer.mix(rows, cols, channel, table)
            totals = self.mixer.mixed_totals
        if _KERNELS and self.compiled:
            return self._refine_compiled(rows, cols, channel, table, totals)
        return self._refine_numpy(rows, cols, channel, table)

    def _refine_compiled(self, rows, cols, channel, table, totals):
        n, slots = len(rows), len(self.neighbours)
        out = np.empty(table.shape, dtype=np.float32)
        values = np.empty((n, slots), dtype=np.int64)
        active = np.empty((n, slots), dtype=np.bool_)
        cells = np.empty((n, slots), dtype=np.int64)
        fraction = np.empty((n, slots), dtype=np.int64)
        _refine_kernel(
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(cols, dtype=np.int64),
            channel,
            np.ascontiguousarray(table, dtype=np.float32),
            self.known,
            self.border,
            self.width,
            self._offsets,
            self.probability.reshape(-1),
            POINTS,
            self.previous_states,
            self.patterns,
            totals,
            out,
            values,
            active,
            cells,
            fraction,
        )
        self._last = (values, active, cells, fraction)
        return out

    def _refine_numpy(self, rows: np.ndarray, cols: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
        """The reference of the compiled kernel (and the path without numba): the same numbers."""
        values, active, context = self._candidates(rows, cols, channel)
        index = np.arange(len(rows))[:, None]
        total = table.sum(axis=1, dtype=np.float64)  # 2**24 for an exact model's table (exactly)
        chosen = np.where(active, table[index, values].astype(np.float64), 0.0)
        # the candidates' probabilities at 2**-24: an exact model's entries as they are
        q = np.floor(chosen * (ONE / total)[:, None]).astype(np.int64)
        # interpolate each candidate's map between the two points around q
        point = np.clip(np.searchsorted(POINTS, q, side="right") - 1, 0, len(POINTS) - 2)
        low, high = POINTS[point], POINTS[point + 1]
        fraction = np.clip(((q - low) << _FRACTION_BITS) // (high - low), 0, 1 << _FRACTION_BITS)
        cells = context * len(POINTS) + point
        maps = self.probability.reshape(-1)
        mapped = (maps[cells] * ((1 << _FRACTION_BITS) - fraction) + maps[cells + 1] * fraction) >> _FRACTION_BITS
        refined = np.where(active, np.maximum(mapped, 16), 0)
        mass = refined.sum(axis=1)
        over = mass > MAX_CANDIDATE_MASS
        refined = np.where(over[:, None], refined * MAX_CANDIDATE_MASS // np.maximum(mass, 1)[:, None], refined)
        # The other values share ONE - sum of refined in the model's proportions: their entries
        # times (ONE - refined) / others, at least 1, so that the table sums to about 2**24 with
        # no value below 2**-24, which the coder's quantizer needs (a table of far wider range
        # can make constriction's encoder panic). A float32 product is correctly rounded on every
        # machine: the same numbers everywhere.
        others = total - chosen.sum(axis=1)
        scale = (np.where(others > 0, (ONE - refined.sum(axis=1)) / np.maximum(others, 1e-300), 0.0)).astype(np.float32)
        out = table * scale[:, None]
        np.maximum(out, np.float32(1), out=out)
        entries = refined.astype(np.float32)  # integers below 2**24: exact
        for k in range(len(self.neighbours)):  # an inactive slot repeats an active one's value
            where = np.flatnonzero(active[:, k])
            out[where, values[where, k]] = entries[where, k]
        self._last = (values, active, cells, fraction)
        return out

    def observe(self, rows: np.ndarray, cols: np.ndarray, channel: int, symbols: np.ndarray) -> None:
        """Record the symbols coded for the batch ``refine`` was last called on."""
        assert self._last is not None, "refine comes before observe"
        if self.mixer is not None:
            self.mixer.observe(rows, cols, channel, symbols)
        values, active, cells, fraction = self._last
        b = self.border
        if _KERNELS and self.compiled:
            _observe_kernel(
                np.ascontiguousarray(rows, dtype=np.int64),
                np.ascontiguousarray(cols, dtype=np.int64),
                channel,
                np.ascontiguousarray(symbols, dtype=np.int64),
                self.known,
                b,
                values,
                active,
                cells,
                fraction,
                self.pending_hits,
                self.pending_weights,
                self._touched_cells,
                self._touched_count,
                self._listed,
            )
            return
        self.known[channel, rows + b, cols + b] = symbols
        hit = (values == symbols[:, None]) & active
        weight_low = np.where(active, (1 << _FRACTION_BITS) - fraction, 0)
        weight_high = np.where(active, fraction, 0)
        for offset, weight in ((0, weight_low), (1, weight_high)):
            np.add.at(self.pending_weights, (cells + offset).ravel(), weight.ravel())
            np.add.at(self.pending_hits, (cells + offset).ravel(), (weight * hit).ravel())
        self._touched.append(cells.ravel())

    def end_step(self) -> None:
        """Fold a finished step's observations into the maps: each cell becomes the running mean
        of its observations (the point's initial value counting as one observation in version 1,
        four in version 2), so a map follows this image's statistics as soon as they are seen,
        and a cell's count saturates so it keeps following them."""
        if self.mixer is not None:
            self.mixer.end_step()
        if _KERNELS and self.compiled:
            _end_step_kernel(
                self._touched_cells,
                self._touched_count,
                self._listed,
                self.probability.reshape(-1),
                self.count.reshape(-1),
                self.pending_hits,
                self.pending_weights,
                self.count_limit,
            )
            return
        if not self._touched:
            return
        touched = np.unique(np.concatenate(self._touched))
        self._touched = []
        touched = np.concatenate([touched, touched + 1])  # each observation updates two points
        touched = touched[self.pending_weights[touched] > 0]
        if not len(touched):
            return
        maps, counts = self.probability.reshape(-1), self.count.reshape(-1)
        prior = counts[touched] + (1 << _FRACTION_BITS)
        weights = self.pending_weights[touched]
        maps[touched] = (maps[touched] * prior + self.pending_hits[touched] * ONE) // (prior + weights)
        counts[touched] = np.minimum(counts[touched] + weights, self.count_limit)
        self.pending_weights[touched] = 0
        self.pending_hits[touched] = 0


_check_points()

if _KERNELS:
    from .lsq import table_total


if _KERNELS:

    @numba.njit(cache=True, nogil=True)
    def _refine_kernel(
        rows,
        cols,
        channel,
        table,
        known,
        border,
        width,
        offsets,
        maps,
        points,
        previous_states,
        patterns,
        totals,
        out,
        values,
        active,
        cells,
        fraction,
    ):  # pragma: no cover
        # Adaptation.refine, position by position: every operation the numpy code does, in the
        # same order where rounding could depend on it (sums of float64 over integers are exact)
        slots = offsets.shape[0]
        last_point = points.shape[0] - 2
        available = np.empty(slots, dtype=np.bool_)
        chosen = np.empty(slots, dtype=np.float64)
        refined = np.empty(slots, dtype=np.int64)
        for n in range(rows.shape[0]):
            r, c = rows[n] + border, cols[n] + border
            for k in range(slots):
                dr, dc = offsets[k, 0], offsets[k, 1]
                values[n, k] = known[channel, r + dr, c + dc]
                available[k] = rows[n] + dr >= 0 and cols[n] + dc >= 0 and cols[n] + dc < width
            pattern = 0
            for k in range(slots):
                on = available[k]
                for earlier in range(k):
                    if available[earlier] and values[n, earlier] == values[n, k]:
                        on = False
                active[n, k] = on
                if on:
                    pattern += 1 << k
            previous = 0
            if channel > 0:
                here = known[channel - 1, r, c]
                for k in range(slots - 1, -1, -1):
                    if available[k] and known[channel - 1, r + offsets[k, 0], c + offsets[k, 1]] == here:
                        previous = k + 1
            base = ((channel * previous_states + previous) * patterns + pattern) * slots
            # the row's sum, from the mixing stage where it has one (the same number: whole
            # numbers, summed exactly)
            total = totals[n] if totals.shape[0] else table_total(table, n)
            scale_q = 16777216.0 / total
            mass = 0
            chosen_sum = 0.0
            for k in range(slots):
                chosen[k] = np.float64(table[n, values[n, k]]) if active[n, k] else 0.0
                chosen_sum += chosen[k]
                q = np.int64(np.floor(chosen[k] * scale_q))
                point = 0
                while point + 1 < points.shape[0] and points[point + 1] <= q:
                    point += 1
                point = min(max(point if points[0] <= q else -1, 0), last_point)
                low, high = points[point], points[point + 1]
                f = ((q - low) << 12) // (high - low)
                f = min(max(f, 0), 4096)
                cell = (base + k) * points.shape[0] + point
                cells[n, k] = cell
                fraction[n, k] = f
                mapped = (maps[cell] * (4096 - f) + maps[cell + 1] * f) >> 12
                refined[k] = max(mapped, 16) if active[n, k] else 0
                mass += refined[k]
            if mass > 16777216 - 4096:
                for k in range(slots):
                    refined[k] = refined[k] * (16777216 - 4096) // max(mass, 1)
            refined_sum = 0
            for k in range(slots):
                refined_sum += refined[k]
            others = total - chosen_sum
            scale = np.float32((16777216 - refined_sum) / max(others, 1e-300)) if others > 0 else np.float32(0.0)
            one = np.float32(1.0)
            for j in range(table.shape[1]):
                out[n, j] = max(table[n, j] * scale, one)
            for k in range(slots):
                if active[n, k]:
                    out[n, values[n, k]] = np.float32(refined[k])

    @numba.njit(cache=True, nogil=True)
    def _observe_kernel(
        rows, cols, channel, symbols, known, border, values, active, cells, fraction, pending_hits, pending_weights,
        touched, touched_count, listed,
    ):  # pragma: no cover  # fmt: skip
        # also lists each cell observed (once) for _end_step_kernel
        for n in range(rows.shape[0]):
            known[channel, rows[n] + border, cols[n] + border] = symbols[n]
            for k in range(values.shape[1]):
                if not active[n, k]:
                    continue
                hit = 1 if values[n, k] == symbols[n] else 0
                low_weight, high_weight = 4096 - fraction[n, k], fraction[n, k]
                pending_weights[cells[n, k]] += low_weight
                pending_hits[cells[n, k]] += low_weight * hit
                pending_weights[cells[n, k] + 1] += high_weight
                pending_hits[cells[n, k] + 1] += high_weight * hit
                cell = cells[n, k]
                if not listed[cell]:
                    listed[cell] = True
                    touched[touched_count[0]] = cell
                    touched_count[0] += 1
                if not listed[cell + 1]:
                    listed[cell + 1] = True
                    touched[touched_count[0]] = cell + 1
                    touched_count[0] += 1

    @numba.njit(cache=True, nogil=True)
    def _end_step_kernel(
        touched, touched_count, listed, maps, counts, pending_hits, pending_weights, count_limit
    ):  # pragma: no cover
        # Adaptation.end_step's numpy code for the cells listed; each cell's update is its own,
        # so their order does not matter (a cell observed with no weight is left as it is)
        for i in range(touched_count[0]):
            cell = touched[i]
            listed[cell] = False
            weight = pending_weights[cell]
            if weight <= 0:
                continue
            prior = counts[cell] + 4096
            maps[cell] = (maps[cell] * prior + pending_hits[cell] * 16777216) // (prior + weight)
            counts[cell] = min(counts[cell] + weight, count_limit)
            pending_weights[cell] = 0
            pending_hits[cell] = 0
        touched_count[0] = 0
