"""An online least-squares predictor, mixed into any model's tables (part of online adaptation
from its version 3; ``ridecodec.adaptive`` drives it).

A learned model predicts each pixel from what photographs taught it. A render, a texture, a
pattern of stripes repeats a relation between neighbours that no photograph has, and which a
linear predictor fitted to *this* image finds in a few rows: the least-squares codecs (TMW, MRP,
LS-CALIC) and JPEG XL's self-correcting predictor win such images that way. So, per channel:

1. **Predict.** x - W is predicted as a linear combination of the differences between the
   causal neighbours and W (for G, B, A also the previous channels' gradients at the pixel), with
   weights that solve the normal equations of every pixel coded so far (older steps decaying).
   They are re-solved after every wavefront step.
2. **A distribution.** A discretized logistic around the prediction, whose scale is the mean
   absolute error seen so far in the pixel's context: how large the predictor's errors at its
   left and upper neighbours were, quantized into ``BUCKETS`` classes.
3. **Mix.** The coder's table becomes (1 - a) * model + a * logistic, with the mixing weight
   ``a`` of the context learned online by gradient steps on the code length, so that the mix
   follows whichever of the two this image rewards, and mixes them where both help.

From version 4 the weights of step 1 are each pixel's own: the normal equations of the pixels in a
causal window around it (``LocalSums``), solved as the pixel comes, instead of those of the whole
image, solved after each step.

From version 5 step 3 mixes geometrically (``geometric``): the table is proportional to
model**w0 * local**w1 * image**w2, a product of three experts, the model's table and the logistic
density's shape (``logistic_shape``) around the local fit's prediction and around the whole
image's (version 3's fit, kept alongside), with the weights of the context learned online by
gradient steps on the code length. Where the model and a predictor are both confident and
disagree a little, a linear mix keeps two peaks and pays for both; the product puts one sharper
peak between them, and weights above one sharpen an expert that is too cautious. The product is
then blended linearly with a little of the model's table (its weight learned as version 4's
mixing weight): a product has no mass where any expert has none, and on a render of flat colours
a new colour comes where the predictors were sure. The logarithms, powers of two and the shape
are integer tables (``log2_tables``, ``logistic_shape``).

From version 6 a fourth expert joins the product (``wide_window``): a second local fit, on a wider
window, whose logistic shape takes the same scale as the first's.

Exact: the normal equations are sums of integer products (int64); their solution is a fixed
sequence of IEEE float64 operations (elementwise, no reductions whose order could vary, no fused
multiply-add: numpy never fuses, and numba compiles without fast-math, so LLVM does not fuse
either) on those integers, rounded to fixed-point weights; everything
after that is integer arithmetic and lookups in the exact logistic table. State changes only
between wavefront steps (version 4's window sums advance as each row's next pixel comes, once,
from pixels of earlier steps only) and reads only pixels of earlier steps, so the tables are the
same on every machine and for every split of a step. (The compiled kernels on this machine,
which has fused multiply-add, match the numpy reference bit for bit: a test.)
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import exact

# numba is a dependency; without it the numpy code computes the same numbers, more slowly
from .exact_cpu import AVAILABLE as _KERNELS, numba, symmetric_lookup, upper_half

ONE = 1 << 24  # probabilities at 2**-24, as the exact models' tables

#: The same channel's neighbours read, (row, column) offsets; every one of them is coded in an
#: earlier wavefront step than the pixel for every model (the stage's neighbours reach no
#: further right than up-right in the row above).
NEIGHBOURS = (
    (0, -1),  # W: the origin of the others
    (-1, 0),
    (-1, -1),
    (-1, 1),
    (0, -2),
    (-2, 0),
    (-1, -2),
    (-2, -1),
    (-2, 1),
    (0, -3),
    (-3, 0),
    (-2, -2),
    (-2, 2),
)
BORDER = 3

#: Fixed-point scales: predictions and errors at 2**-PRED_BITS pixel, weights at 2**-WEIGHT_BITS.
PRED_BITS = 8
WEIGHT_BITS = 16
#: Errors' context thresholds on 2|e_W| + 2|e_N| + |e_NW| + |e_NE| (in pixels, at 2**-PRED_BITS).
THRESHOLDS = tuple(t << PRED_BITS for t in (1, 2, 3, 4, 6, 8, 11, 15, 20, 27, 36, 48, 64, 90, 128, 180, 256))
BUCKETS = len(THRESHOLDS) + 1


#: Version 5's geometric mix: logarithms at 2**-LOG_BITS bit, the experts' weights at 2**-16.
LOG_BITS = 16
#: A mantissa's bits in the logarithm table, and the fraction's bits in the power-of-two table.
MANTISSA_BITS, EXP_FRACTION_BITS = 10, 12
#: The experts' first weights (model, local fit, image-wide fit), at 2**-16: 0.5, 0.4, 0.2.
INITIAL_EXPERT_WEIGHTS = (32768, 26214, 13107)
#: From version 6, with the wide local fit as a fourth expert (model, local, image-wide, wide):
#: 0.5, 0.3, 0.15, 0.15.
INITIAL_EXPERT_WEIGHTS_WIDE = (32768, 19661, 9830, 9830)
#: The weights' gradient steps: the step's summed gradient (bits, at 2**-LOG_BITS) / 256.
EXPERT_RATE_SHIFT = 8
EXPERT_WEIGHT_RANGE = (-(1 << 17), 1 << 18)  # -2 .. 4
#: A logistic expert's shape: -log2 of the logistic density at |x - prediction| / scale = z, on a
#: grid of 2**-SHAPE_BITS, up to SHAPE_END (beyond it, its value there: a floor under the
#: density, so that one expert's confident miss does not cost without bound).
SHAPE_BITS, SHAPE_END = 5, 12
#: round(2**16 log2(e))
LOG2_E = 94548
#: The model's table's first share in the final blend with the product, at 2**-16 (1/64).
INITIAL_BLEND = 1 << 10


@functools.cache
def log2_tables() -> tuple[np.ndarray, np.ndarray]:
    """(round(2**16 log2(1 + i / 1024)) for i < 1024,
    round(2**24 * 2**(-f / 4096)) for f < 4096): the geometric mix's integer tables, computed
    in Python's integers only (no platform's log or exp), so the same numbers everywhere."""
    precision = 1 << 160
    logs = []
    for i in range(1 << MANTISSA_BITS):
        y, bits = (((1 << MANTISSA_BITS) + i) * precision) >> MANTISSA_BITS, 0
        for _ in range(LOG_BITS + 8):  # log2 bit by bit: square; a bit is 1 where y reaches 2
            y = y * y // precision
            bits <<= 1
            if y >= 2 * precision:
                y //= 2
                bits |= 1
        logs.append((bits + 128) >> 8)
    roots, r = [], 2 * precision  # 2**(2**-k), k = 1 .. 12
    for _ in range(EXP_FRACTION_BITS):
        r = math.isqrt(r * precision)
        roots.append(r)
    powers = []
    for f in range(1 << EXP_FRACTION_BITS):
        value = precision  # 2**(f / 4096), then its inverse at 2**24
        for k in range(EXP_FRACTION_BITS):
            if f >> (EXP_FRACTION_BITS - 1 - k) & 1:
                value = value * roots[k] // precision
        powers.append((precision * (1 << 25) // value + 1) >> 1)
    return np.array(logs, np.int64), np.array(powers, np.int64)


@functools.cache
def logistic_shape() -> np.ndarray:
    """-log2(sigmoid(z) (1 - sigmoid(z))) = z log2(e) + 2 log2(1 + e**-z) at 2**-LOG_BITS for z =
    i / 2**SHAPE_BITS, i = 0 .. SHAPE_END * 2**SHAPE_BITS: the logistic density's shape, from
    ``log2_tables`` in integers only (the same numbers everywhere)."""
    logs, powers = log2_tables()
    shape = []
    for i in range((SHAPE_END << SHAPE_BITS) + 1):
        bits = (i * LOG2_E) >> SHAPE_BITS  # z log2(e), at 2**-16
        fraction = bits >> (LOG_BITS - EXP_FRACTION_BITS)
        exponential = int(powers[fraction & ((1 << EXP_FRACTION_BITS) - 1)]) >> (fraction >> EXP_FRACTION_BITS)
        value = (1 << 24) + exponential  # (1 + e**-z) at 2**24: log2 from its leading bit and mantissa
        e = value.bit_length() - 1
        logarithm = ((e - 24) << LOG_BITS) + int(logs[(value >> (e - MANTISSA_BITS)) - (1 << MANTISSA_BITS)])
        shape.append(bits + 2 * logarithm)
    return np.array(shape, dtype=np.int64)


def negative_log2(values: np.ndarray, logs: np.ndarray) -> np.ndarray:
    """-log2(v / 2**24) at 2**-LOG_BITS of integers 1 <= v <= 2**24 (below 1 counts as 1), the
    mantissa truncated to MANTISSA_BITS: the numpy reference of the kernels' (v's exponent is
    read from its float64, which holds such an integer exactly on every machine)."""
    v = np.maximum(values, 1).astype(np.int64)
    e = (v.astype(np.float64).view(np.int64) >> 52) - 1023
    mantissa = (((v << 24) >> e) >> (24 - MANTISSA_BITS)) - (1 << MANTISSA_BITS)
    return ((24 - e) << LOG_BITS) - logs[mantissa]


def _solve(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """x with matrix @ x = vector for a symmetric positive definite float64 matrix, by Gauss-Jordan
    elimination without pivoting: elementwise numpy operations in a fixed order, so the same bits
    on every machine (each operation is correctly rounded; no sums whose order a library picks)."""
    a = np.concatenate([matrix, vector[:, None]], axis=1)
    for k in range(len(vector)):
        pivot = a[k].copy()
        factors = a[:, k] / pivot[k]
        factors[k] = 0.0
        a -= factors[:, None] * pivot[None, :]
    return a[:, -1] / np.diagonal(a[:, :-1])


class LeastSquaresMix:
    """The stage for one image of ``channels`` x ``height`` x ``width``: ``mix`` a batch of the
    model's tables, ``observe`` its symbols, ``end_step`` after each wavefront step."""

    decay_shift = 6  # each step, the normal equations lose 1/64 of their weight
    ridge = 1 << 10  # added to the diagonal: a few pixels' worth, so a flat start predicts W
    rate_shift = 7  # mixing weight steps: the step's summed gradient / 128
    initial_mix = 1 << 13  # 1/8
    max_mix = (1 << 16) - (1 << 10)
    #: use the compiled kernels where numba is installed (tests set it False for the reference)
    compiled = True

    def __init__(
        self, channels: int, height: int, width: int, window: int = 0, geometric: bool = False, wide_window: int = 0
    ):
        self.channels, self.height, self.width = channels, height, width
        self.window = window
        self.geometric = geometric
        b = BORDER
        # int32 planes (12 bytes a sample); arithmetic on them is int64
        self.known = np.zeros((channels, height + b, width + 2 * b), dtype=np.int32)
        self.error = np.zeros((channels, height + b, width + 2 * b), dtype=np.int32)  # |x - prediction|
        self.signed = np.zeros((channels, height + b, width + 2 * b), dtype=np.int32)  # x - prediction
        # features: the neighbours; for G, B, A also the gradients of each earlier channel and
        # the previous channel's error, at the pixel
        self.sizes = [len(NEIGHBOURS) - 1 + 2 * c + (1 if c else 0) for c in range(channels)]
        self.normal = [np.zeros((n, n), dtype=np.int64) for n in self.sizes]
        self.target = [np.zeros(n, dtype=np.int64) for n in self.sizes]
        self.pending_normal = [np.zeros((n, n), dtype=np.int64) for n in self.sizes]
        self.pending_target = [np.zeros(n, dtype=np.int64) for n in self.sizes]
        self.weights = [np.zeros(n, dtype=np.int64) for n in self.sizes]
        self.error_sum = np.full((channels, BUCKETS), 2 << PRED_BITS, dtype=np.int64)  # 2 px ..
        self.error_count = np.ones((channels, BUCKETS), dtype=np.int64)  # .. in one observation
        self.mixing = np.full((channels, BUCKETS), self.initial_mix, dtype=np.int64)
        self.pending_gradient = np.zeros((channels, BUCKETS), dtype=np.int64)
        self.pending_error = np.zeros((channels, BUCKETS, 2), dtype=np.int64)
        self.edges = (np.arange(1, 256, dtype=np.int64) << PRED_BITS) - (1 << (PRED_BITS - 1))
        self.cdf = exact.table("sigmoid", "cpu").numpy()  # at 2**-24 on SIGMOID_GRID
        first, grid_bits, count = exact.SIGMOID_GRID
        self._grid = (int(round(-first * 2**grid_bits)), grid_bits, count)  # noqa: RUF046
        self._upper = upper_half(self.cdf, self._grid[0], "logistic CDF")  # what the compiled kernels read
        self._thresholds = np.array(THRESHOLDS, dtype=np.int64)
        self._offsets = np.array(NEIGHBOURS, dtype=np.int64)
        self._last: tuple | None = None
        #: the row sums of the tables ``mix`` returned last (exact: whole numbers), which the
        #: candidates' refinement takes instead of summing the rows again
        self.mixed_totals = np.empty(0, dtype=np.float64)
        self.local = [LocalSums(size, height, width, window) for size in self.sizes] if window else None
        # version 6's fourth expert: a second local fit, on a wider window (geometric mixes only)
        self.wide = [LocalSums(size, height, width, wide_window) for size in self.sizes] if wide_window else None
        if geometric:  # version 5: the experts' weights per context, and what the geometric mix reads
            initial = INITIAL_EXPERT_WEIGHTS_WIDE if wide_window else INITIAL_EXPERT_WEIGHTS
            self.expert_weights = np.tile(np.array(initial, np.int64), (channels, BUCKETS, 1))
            self.pending_expert = np.zeros_like(self.expert_weights)
            self.blend = np.full((channels, BUCKETS), INITIAL_BLEND, dtype=np.int64)
            self.pending_blend = np.zeros_like(self.blend)
            self._logs, self._powers = log2_tables()
            self._shape = logistic_shape()

    def _features(self, rows: np.ndarray, cols: np.ndarray, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, F) int64, W (N,)) of a batch: neighbours less W, previous channels' gradients."""
        b = BORDER
        r, c = rows + b, cols + b

        def known(plane: int, dr: int, dc: int) -> np.ndarray:
            return self.known[plane, r + dr, c + dc].astype(np.int64)

        west = known(channel, 0, -1)
        columns = [known(channel, dr, dc) - west for dr, dc in NEIGHBOURS[1:]]
        for earlier in range(channel):
            here = known(earlier, 0, 0)
            columns += [here - known(earlier, 0, -1), here - known(earlier, -1, 0)]
        if channel > 0:  # the previous channel's error here, at 1/16 pixel
            columns.append(self.signed[channel - 1][r, c].astype(np.int64) >> 4)
        return np.stack(columns, axis=1), west

    def _inside(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return (rows >= BORDER) & (cols >= BORDER) & (cols < self.width - 2)

    def mix(self, rows: np.ndarray, cols: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
        """The mixed tables (float32 (N, 256), integers at 2**-24) of a batch of the model's."""
        if self.geometric:
            return self._mix_geometric(rows, cols, channel, table)
        compiled = _KERNELS and self.compiled
        mix_linear = self._mix_compiled if compiled else self._mix_numpy
        return mix_linear(rows, cols, channel, table, self._weights(rows, cols, channel), self.mixing[channel])

    def _mix_geometric(self, rows: np.ndarray, cols: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
        """Version 5's mix: the local fit's and the image-wide fit's predictions (version 6's also
        the wide local fit's), with the scale of the pixel's error context (the local fit's errors
        are the ones ``observe`` learns from); the experts' product; then that blended with the
        model's table."""
        n, compiled = len(rows), _KERNELS and self.compiled
        local_weights = self._weights(rows, cols, channel)
        image_weights = self.weights[channel][None, :]
        # (version 6: and the wide local fit's; else a row the kernel does not read)
        wide_weights = self.wide[channel].weights(rows, cols, compiled) if self.wide is not None else image_weights
        experts = self.expert_weights.shape[2]
        # the local fit's, the image-wide fit's (and the wide fit's) predictions
        predictions = np.empty((n, experts - 1), dtype=np.int64)
        if compiled:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            cols = np.ascontiguousarray(cols, dtype=np.int64)
            features = np.empty((n, self.sizes[channel]), dtype=np.int64)
            state = np.empty((n, 5), dtype=np.int64)  # as _mix_compiled's
            _predictions_kernel(
                rows, cols, channel, self.known, self.error, self.signed, self._offsets,
                np.ascontiguousarray(local_weights), np.ascontiguousarray(image_weights),
                np.ascontiguousarray(wide_weights), self._thresholds, self.error_sum[channel],
                self.error_count[channel], features, state, predictions,
            )  # fmt: skip
            bucket, inverse = state[:, 2], state[:, 3]
        else:
            features, west, predictions[:, 0], bucket, inverse = self._predicted(rows, cols, channel, local_weights)
            predictions[:, 1] = self._prediction(features, west, image_weights)
            if self.wide is not None:
                predictions[:, 2] = self._prediction(features, west, wide_weights)
        inside = self._inside(rows, cols)
        weights = self.expert_weights[channel][bucket]
        blend = np.where(inside, self.blend[channel][bucket], 0)
        table = np.ascontiguousarray(table, dtype=np.float32)
        out = np.empty(table.shape, dtype=np.float32)
        product = np.empty(table.shape, dtype=np.int64)
        expected = np.empty((n, experts), dtype=np.int64)
        mixed_totals, totals = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
        arguments = (table, predictions, inverse, weights, blend, inside, out, product, expected, mixed_totals, totals)
        if compiled:
            _geometric_kernel(*arguments, self._logs, self._powers, self._shape)
            self._last = (rows, cols, table, features, state, totals)
        else:
            self._geometric_numpy(*arguments)
            self._last = (features, west, predictions[:, 0], bucket, None, None, None, inside)
        self._experts = (table, totals, predictions, inverse, product, out, bucket, inside, expected)
        self.mixed_totals = mixed_totals
        return out

    def _shape_index(self, values: np.ndarray, prediction: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        """Where values (at 2**-PRED_BITS) fall on the logistic shape's grid (``logistic_shape``)."""
        index = (np.abs(values - prediction) * inverse) >> (24 - SHAPE_BITS)
        return np.minimum(index, SHAPE_END << SHAPE_BITS)

    def _geometric_numpy(
        self, table, predictions, inverse, weights, blend, inside, out, product, expected, mixed_totals, totals
    ) -> None:
        """The reference of ``_geometric_kernel``: the same numbers."""
        total = totals[:] = table.sum(axis=1, dtype=np.float64)
        model = np.floor(table.astype(np.float64) * (ONE / total)[:, None]).astype(np.int64)
        values = np.arange(256, dtype=np.int64)[None, :] << PRED_BITS
        experts = weights.shape[1]
        logs = [negative_log2(model, self._logs)] + [
            self._shape[self._shape_index(values, predictions[:, e, None], inverse[:, None])]
            for e in range(experts - 1)
        ]
        exponent = -sum(weights[:, e, None] * logs[e] for e in range(experts))  # at 2**-32
        distance = (exponent.max(axis=1, keepdims=True) - exponent) >> (32 - EXP_FRACTION_BITS)
        halvings = distance >> EXP_FRACTION_BITS
        # (a power is at most 2**24: shifted 25 or more times, 0)
        power = self._powers[distance & ((1 << EXP_FRACTION_BITS) - 1)] >> np.minimum(halvings, 40)
        reciprocal = (ONE << 32) // power.sum(axis=1)
        product[:] = np.maximum((power * reciprocal[:, None]) >> 32, 1)
        sums = product.sum(axis=1)
        for e in range(experts):
            expected[:, e] = (product * logs[e]).sum(axis=1) // sums
        mixed = np.maximum((product * ((1 << 16) - blend[:, None]) + model * blend[:, None]) >> 16, 1)
        mixed = np.where(inside[:, None], mixed, np.maximum(model, 1))
        out[:] = mixed.astype(np.float32)
        mixed_totals[:] = mixed.sum(axis=1).astype(np.float64)

    def observe(self, rows: np.ndarray, cols: np.ndarray, channel: int, symbols: np.ndarray) -> None:
        """Record the symbols coded for the batch ``mix`` was last called on."""
        if _KERNELS and self.compiled:
            self._observe_compiled(rows, cols, channel, symbols)
        else:
            self._observe_numpy(rows, cols, channel, symbols)
        if self.geometric:
            self._observe_experts(channel, symbols)

    def _observe_experts(self, channel: int, symbols: np.ndarray) -> None:
        """Version 5: each expert's weight gradient, the code length's: how much more (or less)
        probable the expert made the coded value than the product expected of it, in bits; and
        the blend's, as version 4's mixing weight's."""
        table, totals, predictions, inverse, product, out, bucket, inside, expected = self._experts
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        if _KERNELS and self.compiled:
            _experts_observe_kernel(
                symbols, table, totals, predictions, inverse, product, out, bucket, inside, expected, self._logs,
                self._shape, self.pending_expert[channel], self.pending_blend[channel],
            )  # fmt: skip
            return
        index = np.arange(len(symbols))
        model = np.floor(table[index, symbols].astype(np.float64) * (ONE / totals)).astype(np.int64)
        values = symbols << PRED_BITS
        logs = np.stack(
            [negative_log2(model, self._logs)]
            + [self._shape[self._shape_index(values, predictions[:, e], inverse)] for e in range(predictions.shape[1])],
            axis=1,
        )
        np.add.at(self.pending_expert[channel], bucket[inside], (expected - logs)[inside])
        p_product, p_mixed = product[index, symbols], out[index, symbols].astype(np.int64)
        gradient = np.clip(((model - p_product) << 16) // p_mixed, -(1 << 20), 1 << 20)
        np.add.at(self.pending_blend[channel], bucket[inside], gradient[inside])

    def _weights(self, rows: np.ndarray, cols: np.ndarray, channel: int) -> np.ndarray:
        """The predictor's weights for each pixel of a batch, (N or 1, F) int64 at 2**-WEIGHT_BITS:
        the image's (one row for all), or from version 4 each pixel's own local fit."""
        if self.local is None:
            return self.weights[channel][None, :]
        return self.local[channel].weights(rows, cols, self.compiled and _KERNELS)

    def _mix_compiled(self, rows, cols, channel, table, weights, mixing):
        n, size = len(rows), self.sizes[channel]
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        weights = np.ascontiguousarray(weights)
        table = np.ascontiguousarray(table, dtype=np.float32)
        out = np.empty(table.shape, dtype=np.float32)
        features = np.empty((n, size), dtype=np.int64)
        state = np.empty((n, 5), dtype=np.int64)  # W, prediction, bucket, 1/scale, mixing weight
        totals = np.empty(n, dtype=np.float64)
        mixed_totals = np.empty(n, dtype=np.float64)
        offset, grid_bits, count = self._grid
        _mix_kernel(
            rows, cols, channel, table, self.known, self.error, self.signed, self._offsets, weights,
            self._thresholds, self.error_sum[channel], self.error_count[channel], mixing,
            self._upper, offset, count, grid_bits, self.width, out, features, state, totals, mixed_totals,
        )  # fmt: skip
        self._last = (rows, cols, table, features, state, totals)
        self.mixed_totals = mixed_totals
        return out

    def _observe_compiled(self, rows, cols, channel, symbols):
        assert self._last is not None, "mix comes before observe"
        rows, cols, table, features, state, totals = self._last
        offset, grid_bits, count = self._grid
        inside = _observe_kernel(
            rows, cols, channel, np.ascontiguousarray(symbols, dtype=np.int64), table, features, state, totals,
            self.known, self.error, self.signed, self._upper, offset, count, grid_bits, self.width,
            self.pending_gradient[channel], self.pending_error[channel], not self.geometric,
        )  # fmt: skip
        y = symbols.astype(np.int64) - state[:, 0]
        if self.local is not None:
            self.local[channel].record(rows, cols, features, y, inside, compiled=True)
        if self.wide is not None:
            self.wide[channel].record(rows, cols, features, y, inside, compiled=True)
        if self.local is None or self.geometric:  # the image-wide fit's
            _accumulate_kernel(features, y, inside, self.pending_normal[channel], self.pending_target[channel])

    @staticmethod
    def _prediction(features: np.ndarray, west: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The linear prediction at 2**-PRED_BITS, clamped to the pixel range."""
        prediction = (west << PRED_BITS) + ((features * weights).sum(axis=1) >> (WEIGHT_BITS - PRED_BITS))
        return np.clip(prediction, 0, 255 << PRED_BITS)

    def _predicted(self, rows, cols, channel: int, weights):
        """(features, W, prediction, error context, 1 / scale) of a batch, as the kernels compute them."""
        features, west = self._features(rows, cols, channel)
        prediction = self._prediction(features, west, weights)
        b = BORDER
        r, c = rows + b, cols + b
        errors = [
            self.error[channel, r + dr, c + dc].astype(np.int64) for dr, dc in ((0, -1), (-1, 0), (-1, -1), (-1, 1))
        ]
        activity = 2 * errors[0] + 2 * errors[1] + errors[2] + errors[3]
        if channel > 0:  # the previous channel's error at the pixel tells the most
            activity = (activity >> 1) + 2 * self.error[channel - 1][r, c].astype(np.int64)
        bucket = np.searchsorted(self._thresholds, activity, side="right")
        inverse = self._inverse_scale(self.error_sum[channel, bucket], self.error_count[channel, bucket])
        return features, west, prediction, bucket, inverse

    def _mix_numpy(self, rows, cols, channel: int, table: np.ndarray, weights, mixing) -> np.ndarray:
        """The reference of the compiled kernel (and the path without numba): the same numbers."""
        features, west, prediction, bucket, inverse = self._predicted(rows, cols, channel, weights)
        cumulative = self._cdf_at(self.edges[None, :], prediction[:, None], inverse[:, None])
        n = len(rows)
        cumulative = np.concatenate([np.zeros((n, 1), np.int64), cumulative, np.full((n, 1), ONE, np.int64)], axis=1)
        logistic = np.diff(cumulative, axis=1)  # (N, 256) at 2**-24, summing to ONE
        total = table.sum(axis=1, dtype=np.float64)
        model = np.floor(table.astype(np.float64) * (ONE / total)[:, None]).astype(np.int64)
        inside = self._inside(rows, cols)
        a = np.where(inside, mixing[bucket], 0)
        mixed = np.maximum((model * ((1 << 16) - a[:, None]) + logistic * a[:, None]) >> 16, 1)
        self._last = (features, west, prediction, bucket, model, logistic, mixed, inside)
        self.mixed_totals = mixed.sum(axis=1).astype(np.float64)  # whole numbers: exact
        return mixed.astype(np.float32)

    @staticmethod
    def _inverse_scale(error_sum: np.ndarray, error_count: np.ndarray) -> np.ndarray:
        """1 / the logistic's scale, at 2**-(24 - PRED_BITS): the scale is the context's mean
        absolute error / (2 ln 2) (739 / 1024), at least a quarter of a pixel."""
        scale = np.maximum(((error_sum // error_count) * 739) >> 10, 1 << (PRED_BITS - 2))
        return (1 << 24) // scale

    def _cdf_at(self, edge: np.ndarray, prediction: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        """The logistic CDF at 2**-24 of (edge - prediction) * inverse (see ``_inverse_scale``)."""
        offset, grid_bits, count = self._grid
        z = ((edge - prediction) * inverse) >> (24 - grid_bits)  # at the grid's 2**-grid_bits
        return self.cdf[np.clip(z + offset, 0, count - 1)]

    def _observe_numpy(self, rows: np.ndarray, cols: np.ndarray, channel: int, symbols: np.ndarray) -> None:
        assert self._last is not None, "mix comes before observe"
        features, west, prediction, bucket, model, logistic, mixed, inside = self._last
        b = BORDER
        symbols = symbols.astype(np.int64)
        self.known[channel, rows + b, cols + b] = symbols
        error = (symbols << PRED_BITS) - prediction
        self.error[channel, rows + b, cols + b] = np.abs(error)
        self.signed[channel, rows + b, cols + b] = error
        if self.local is not None:
            self.local[channel].record(rows, cols, features, symbols - west, inside, compiled=False)
        if self.wide is not None:
            self.wide[channel].record(rows, cols, features, symbols - west, inside, compiled=False)
        if self.local is None or self.geometric:  # the image-wide fit's
            f, y = features[inside], (symbols - west)[inside]
            self.pending_normal[channel] += f.T @ f
            self.pending_target[channel] += f.T @ y
        if not self.geometric:  # (version 5 learns its own weights: _observe_experts)
            index = np.arange(len(rows))
            p_model, p_logistic, p_mixed = model[index, symbols], logistic[index, symbols], mixed[index, symbols]
            gradient = np.clip(((p_logistic - p_model) << 16) // p_mixed, -(1 << 20), 1 << 20)
            np.add.at(self.pending_gradient[channel], bucket[inside], gradient[inside])
        np.add.at(self.pending_error[channel, :, 0], bucket, np.abs(error))
        np.add.at(self.pending_error[channel, :, 1], bucket, 1)

    def end_step(self) -> None:
        # version 3's fit, and version 5's image-wide expert (version 4's local fits are each
        # pixel's own, made as it comes)
        if self.local is None or self.geometric:
            self._fit_the_image()
        if self.geometric:
            step = self.pending_expert >> EXPERT_RATE_SHIFT
            self.expert_weights = np.clip(self.expert_weights + step, *EXPERT_WEIGHT_RANGE)
            self.pending_expert[:] = 0
            self.blend = np.clip(self.blend + (self.pending_blend >> self.rate_shift), 0, self.max_mix)
            self.pending_blend[:] = 0
        else:
            step = self.pending_gradient >> self.rate_shift
            self.mixing = np.clip(self.mixing + step, 0, self.max_mix)
        self.pending_gradient[:] = 0
        self.error_sum += self.pending_error[..., 0]
        self.error_count += self.pending_error[..., 1]
        over = self.error_count > 4096
        self.error_sum[over] >>= 1
        self.error_count[over] >>= 1
        self.pending_error[:] = 0

    def _fit_the_image(self) -> None:
        """Version 3's weights: the normal equations of the image so far, older steps decaying."""
        if _KERNELS and self.compiled:
            for channel in range(self.channels):
                _fit_kernel(
                    self.normal[channel], self.target[channel], self.pending_normal[channel],
                    self.pending_target[channel], self.decay_shift, self.ridge, self.weights[channel],
                )  # fmt: skip
            return
        for channel in range(self.channels):
            normal, target = self.normal[channel], self.target[channel]
            normal -= normal >> self.decay_shift
            target -= target >> self.decay_shift
            if not self.pending_normal[channel].any():
                continue
            normal += self.pending_normal[channel]
            target += self.pending_target[channel]
            self.pending_normal[channel][:] = 0
            self.pending_target[channel][:] = 0
            size = len(target)
            matrix = normal.astype(np.float64) + np.eye(size) * float(self.ridge)
            solution = _solve(matrix, target.astype(np.float64))
            self.weights[channel] = np.clip(
                np.floor(solution * float(1 << WEIGHT_BITS) + 0.5), -(1 << 22), 1 << 22
            ).astype(np.int64)


def _solve_symmetric(systems: np.ndarray) -> np.ndarray:
    """x of each system (N, F, F + 1) [matrix | vector], symmetric positive definite: an LDL^T
    factorization of the lower triangle (no square roots), then the two triangular solves. The
    compiled kernel does the same correctly rounded operations in the same order (each sum from
    its first term up), so the bits are the same."""
    a = systems.copy()
    n, size = a.shape[:2]
    diagonal = np.zeros((n, size), dtype=np.float64)
    for j in range(size):
        scaled = a[:, j, :j] * diagonal[:, :j]  # L[j, k] D[k]
        d = a[:, j, j].copy()
        for k in range(j):
            d = d - a[:, j, k] * scaled[:, k]
        diagonal[:, j] = d
        column = a[:, j + 1 :, j].copy()
        for k in range(j):
            column = column - a[:, j + 1 :, k] * scaled[:, k : k + 1]
        a[:, j + 1 :, j] = column / d[:, None]
    z = np.zeros((n, size), dtype=np.float64)
    for i in range(size):
        total = a[:, i, size].copy()
        for k in range(i):
            total = total - a[:, i, k] * z[:, k]
        z[:, i] = total
    x = np.zeros((n, size), dtype=np.float64)
    for i in range(size - 1, -1, -1):
        total = z[:, i] / diagonal[:, i]
        for k in range(i + 1, size):
            total = total - a[:, k, i] * x[:, k]
        x[:, i] = total
    return x


class LocalSums:
    """Version 4's local fit for one channel with ``size`` features: each pixel's predictor solves
    the normal equations of the pixels in a causal window around it, the ``window`` rows above
    (from ``window`` columns left to one right) and ``window`` pixels to its left, with a ridge
    that pulls the weights towards zero (towards predicting W) where the window says little.

    A photograph's texture, a render's gradient, the stripes of a pattern change across the image;
    a fit to the last few rows and columns follows them where one fit for the whole image cannot
    (the least-squares codecs, TMW, MRP and LS-CALIC, predict this way).

    The window's sums are kept incrementally, integers all: each coded pixel's outer product
    (features x features and features x target, upper triangle packed) is kept for the last
    ``window + 2`` rows; per column, the sum over the ``window`` rows above (``vertical``); per
    row, the sum of those over the window's columns (``horizontal``) and of the row's own pixels
    to the left (``same_row``), advanced by one column as each row's next pixel comes. Every read
    is of pixels of earlier wavefront steps (the window reaches up-right no further than the stage
    reads anyway), and every row's sums advance once per pixel, however a step is split."""

    ridge = 4  # (A + ridge I) w = b, in pixels squared: where the window is flat, predict W

    def __init__(self, size: int, height: int, width: int, window: int):
        self.size, self.height, self.width, self.window = size, height, width, window
        self.ring = window + 2
        self.pad = window + 1  # column c is stored at c + pad: reads reach window + 1 left
        upper = np.triu_indices(size)
        self.pair_rows, self.pair_cols = upper[0].astype(np.int64), upper[1].astype(np.int64)
        self.packed = len(self.pair_rows) + size  # the triangle, then the target's products
        # int32 rings: a pixel's products are below 4080**2, sums of window rows below 2**31
        self.outer = np.zeros((self.ring, width + 2 * self.pad, self.packed), dtype=np.int32)
        self.vertical = np.zeros_like(self.outer)
        self.horizontal = np.zeros((height, self.packed), dtype=np.int64)
        self.same_row = np.zeros((height, self.packed), dtype=np.int64)
        self.at = np.full(height, -1, dtype=np.int64)  # the column each row's sums are for

    def weights(self, rows: np.ndarray, cols: np.ndarray, compiled: bool) -> np.ndarray:
        """(N, F) int64 weights at 2**-WEIGHT_BITS for a batch (one pixel per row, as a wavefront
        step has), the rows' sums first advanced to the batch's columns."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        out = np.empty((len(rows), self.size), dtype=np.int64)
        if compiled:
            _local_weights_kernel(
                rows, cols, self.width, self.window, self.outer, self.vertical, self.horizontal, self.same_row,
                self.at, self.pair_rows, self.pair_cols, self.ridge, out,
            )  # fmt: skip
            return out
        self._advance(rows, cols)
        sums = self.horizontal[rows] + self.same_row[rows]
        n, size, triangle = len(rows), self.size, len(self.pair_rows)
        matrix = np.zeros((n, size, size), dtype=np.int64)
        matrix[:, self.pair_rows, self.pair_cols] = sums[:, :triangle]
        matrix[:, self.pair_cols, self.pair_rows] = sums[:, :triangle]
        matrix[:, np.arange(size), np.arange(size)] += self.ridge
        vector = sums[:, triangle:]
        solution = _solve_symmetric(np.concatenate([matrix, vector[:, :, None]], axis=2).astype(np.float64))
        scaled = np.floor(solution * float(1 << WEIGHT_BITS) + 0.5)
        scaled = np.where(np.isnan(scaled), 0.0, np.clip(scaled, -(1 << 22), 1 << 22))
        out[:] = scaled.astype(np.int64)
        return out

    def _vertical(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Store V(r, c), the sum of the products of the ``window`` pixels above (r, c)."""
        slots, at = rows % self.ring, cols + self.pad
        above = rows >= 1
        value = np.zeros((len(rows), self.packed), dtype=np.int32)
        previous = (rows[above] - 1) % self.ring
        value[above] = self.vertical[previous, at[above]] + self.outer[previous, at[above]]
        leaving = rows - 1 - self.window >= 0
        value[leaving] -= self.outer[(rows[leaving] - 1 - self.window) % self.ring, at[leaving]]
        self.vertical[slots, at] = value

    def _advance(self, rows: np.ndarray, cols: np.ndarray) -> None:
        stale = self.at[rows] != cols
        rows, cols = rows[stale], cols[stale]
        if not (self.at[rows] == cols - 1).all():
            raise ValueError("the local fit's rows must advance one column at a time")
        slots, pad = rows % self.ring, self.pad
        first = cols == 0
        self._vertical(rows[first], cols[first])
        self.horizontal[rows[first]] = self.vertical[slots[first], pad]
        self.same_row[rows[first]] = 0
        entering = cols + 1 < self.width
        self._vertical(rows[entering], cols[entering] + 1)
        self.horizontal[rows[entering]] += self.vertical[slots[entering], cols[entering] + 1 + pad]
        leaving = cols - self.window - 1 >= 0
        self.horizontal[rows[leaving]] -= self.vertical[slots[leaving], cols[leaving] - self.window - 1 + pad]
        entering = cols >= 1
        self.same_row[rows[entering]] += self.outer[slots[entering], cols[entering] - 1 + pad]
        leaving = cols - 1 - self.window >= 0
        self.same_row[rows[leaving]] -= self.outer[slots[leaving], cols[leaving] - 1 - self.window + pad]
        self.at[rows] = cols

    def record(self, rows, cols, features, targets, inside, compiled: bool) -> None:
        """Keep the coded pixels' products (zero outside the region the predictor learns from)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if compiled:
            _local_record_kernel(
                rows, cols, np.ascontiguousarray(features), np.ascontiguousarray(targets, dtype=np.int64),
                np.ascontiguousarray(inside), self.outer, self.ring, self.pad, self.pair_rows, self.pair_cols,
            )  # fmt: skip
            return
        products = np.concatenate(
            [features[:, self.pair_rows] * features[:, self.pair_cols], features * targets[:, None]], axis=1
        )
        self.outer[rows % self.ring, cols + self.pad] = np.where(inside[:, None], products, 0)


if _KERNELS:

    @numba.njit(cache=True, nogil=True)
    def table_total(table, n):  # pragma: no cover
        """The float64 sum of row ``n`` of ``table``, entry 0 first, as the stage's kernels take
        it. Where the entries are whole numbers below 2**40, as every exact model's and the
        stage's own are, every order of summing gives that same exact sum, so it is summed in
        integers, a loop the compiler vectorizes; otherwise one entry after the other."""
        whole, exact_sum = True, np.int64(0)
        for j in range(table.shape[1]):
            v = np.float64(table[n, j])
            whole &= (v >= 0.0) & (v < 1099511627776.0) & (np.floor(v) == v)
            exact_sum += np.int64(v)  # (where whole is False, the sum is not used)
        if whole:
            return np.float64(exact_sum)
        total = 0.0
        for j in range(table.shape[1]):
            total += np.float64(table[n, j])
        return total

    @numba.njit(cache=True, nogil=True)
    def _logistic_cdf(edge, prediction, inverse, upper, offset, count, grid_bits):  # pragma: no cover
        # the CDF table's entry at the index, read from its upper half (``exact_cpu.upper_half``)
        index = min(max((((edge - prediction) * inverse) >> (24 - grid_bits)) + offset, 0), count - 1) - offset
        return symmetric_lookup(upper, index)

    @numba.njit(cache=True, nogil=True)
    def _first_edge_at(index, prediction, inverse, offset, grid_bits, edges):  # pragma: no cover
        # the first of the edges 0 .. edges - 1 (edge j at ((j + 1) << 8) - 128) whose grid index,
        # unclamped, is at least ``index`` (``edges`` where none is): a binary search, the index
        # not decreasing from edge to edge
        low, high = 0, edges
        while low < high:
            middle = (low + high) >> 1
            if (((((middle + 1) << 8) - 128 - prediction) * inverse) >> (24 - grid_bits)) + offset >= index:
                high = middle
            else:
                low = middle + 1
        return low

    @numba.njit(cache=True, nogil=True)
    def _features_at(n, rows, cols, channel, known, signed, offsets, features):  # pragma: no cover
        # LeastSquaresMix._features of position n into features[n]; returns W
        r, c = rows[n] + 3, cols[n] + 3
        west = known[channel, r, c - 1]
        neighbours = offsets.shape[0] - 1
        for k in range(neighbours):
            features[n, k] = known[channel, r + offsets[k + 1, 0], c + offsets[k + 1, 1]] - west
        k = neighbours
        for earlier in range(channel):
            here = known[earlier, r, c]
            features[n, k] = here - known[earlier, r, c - 1]
            features[n, k + 1] = here - known[earlier, r - 1, c]
            k += 2
        if channel > 0:
            features[n, k] = signed[channel - 1, r, c] >> 4
        return west

    @numba.njit(cache=True, nogil=True)
    def _prediction(n, west, features, weights, w):  # pragma: no cover
        dot = 0
        for k in range(features.shape[1]):
            dot += features[n, k] * weights[w, k]
        return min(max((west << 8) + (dot >> 8), 0), 255 << 8)

    @numba.njit(cache=True, nogil=True)
    def _bucket_at(n, rows, cols, channel, error, thresholds):  # pragma: no cover
        # the error context: the neighbours' errors (and the previous channel's at the pixel)
        r, c = rows[n] + 3, cols[n] + 3
        activity = 2 * error[channel, r, c - 1] + 2 * error[channel, r - 1, c]
        activity += error[channel, r - 1, c - 1] + error[channel, r - 1, c + 1]
        if channel > 0:
            activity = (activity >> 1) + 2 * error[channel - 1, r, c]
        bucket = 0
        while bucket < thresholds.shape[0] and thresholds[bucket] <= activity:
            bucket += 1
        return bucket

    @numba.njit(cache=True, nogil=True)
    def _logistic_cumulative(prediction, inverse, cdf, offset, count, grid_bits, cumulative):  # pragma: no cover
        # the logistic's CDF at the 255 inner edges into cumulative[1:256] (cumulative[0] is 0,
        # cumulative[256] ONE): its grid index does not decrease from edge to edge, so below
        # the first edge inside the grid it is the grid's first value and from the first edge
        # at its end on the last one, and only the edges between are looked up (the fewer, the
        # smaller the scale)
        inner = cumulative.shape[0] - 2
        low = _first_edge_at(1, prediction, inverse, offset, grid_bits, inner)
        high = _first_edge_at(count - 1, prediction, inverse, offset, grid_bits, inner)
        for j in range(low):
            cumulative[j + 1] = 16777216 - np.int64(cdf[count - 1 - offset])
        # (_logistic_cdf without its clamp: between low and high every index is inside the
        # grid, and this loop is half the kernel's time)
        shift = 24 - grid_bits
        for j in range(low, high):
            cumulative[j + 1] = symmetric_lookup(cdf, ((((j + 1) << 8) - 128 - prediction) * inverse) >> shift)
        for j in range(high, inner):
            cumulative[j + 1] = np.int64(cdf[count - 1 - offset])

    @numba.njit(cache=True, nogil=True)
    def _mix_kernel(
        rows, cols, channel, table, known, error, signed, offsets, weights, thresholds, error_sum, error_count,
        mixing, cdf, offset, count, grid_bits, width, out, features, state, totals, mixed_totals,
    ):  # pragma: no cover  # fmt: skip
        # LeastSquaresMix._mix_numpy, pixel by pixel: integer arithmetic, and the one float64
        # product per entry (table * (ONE / total), floored) that the numpy code does
        per_pixel = weights.shape[0] == rows.shape[0]
        cumulative = np.empty(table.shape[1] + 1, dtype=np.int64)
        cumulative[0], cumulative[table.shape[1]] = 0, 16777216
        for n in range(rows.shape[0]):
            west = _features_at(n, rows, cols, channel, known, signed, offsets, features)
            prediction = _prediction(n, west, features, weights, n if per_pixel else 0)
            bucket = _bucket_at(n, rows, cols, channel, error, thresholds)
            scale = max(((error_sum[bucket] // error_count[bucket]) * 739) >> 10, 1 << 6)
            inverse = (1 << 24) // scale
            inside = rows[n] >= 3 and cols[n] >= 3 and cols[n] < width - 2
            a = mixing[bucket] if inside else 0
            total = table_total(table, n)
            factor = 16777216.0 / total
            _logistic_cumulative(prediction, inverse, cdf, offset, count, grid_bits, cumulative)
            # then the entries (a loop the compiler can vectorize), and their sum: whole numbers
            mixed_sum = 0
            for j in range(table.shape[1]):
                model = np.int64(np.floor(np.float64(table[n, j]) * factor))
                mixed = (model * (65536 - a) + (cumulative[j + 1] - cumulative[j]) * a) >> 16
                mixed = mixed if mixed > 1 else 1  # noqa: FURB136 (max() confuses mypy here)
                out[n, j] = np.float32(mixed)
                mixed_sum += mixed
            state[n, 0], state[n, 1], state[n, 2], state[n, 3], state[n, 4] = west, prediction, bucket, inverse, a
            totals[n] = total
            mixed_totals[n] = np.float64(mixed_sum)

    @numba.njit(cache=True, nogil=True)
    def _predictions_kernel(
        rows, cols, channel, known, error, signed, offsets, local_weights, image_weights, wide_weights, thresholds,
        error_sum, error_count, features, state, predictions,
    ):  # pragma: no cover  # fmt: skip
        # version 5's predictions, the local fit's and the image-wide fit's (version 6's also the
        # wide local fit's), and the pixel's error context and scale (state as _mix_kernel's,
        # with the logistic's whole weight)
        for n in range(rows.shape[0]):
            west = _features_at(n, rows, cols, channel, known, signed, offsets, features)
            bucket = _bucket_at(n, rows, cols, channel, error, thresholds)
            scale = max(((error_sum[bucket] // error_count[bucket]) * 739) >> 10, 1 << 6)
            inverse = (1 << 24) // scale
            prediction = _prediction(n, west, features, local_weights, n)
            state[n, 0], state[n, 1], state[n, 2], state[n, 3], state[n, 4] = west, prediction, bucket, inverse, 65536
            predictions[n, 0] = prediction
            predictions[n, 1] = _prediction(n, west, features, image_weights, 0)
            if predictions.shape[1] > 2:
                predictions[n, 2] = _prediction(n, west, features, wide_weights, n)

    try:  # LLVM's count of leading zeros, one instruction: 13% off the geometric mix's time
        from numba.cpython.unsafe.numbers import leading_zeros

        _LEADING_ZEROS = True
    except ImportError:  # pragma: no cover - a numba without it: the float64's exponent instead
        _LEADING_ZEROS = False

    if _LEADING_ZEROS:

        @numba.njit(cache=True, nogil=True)
        def _exponent(v):  # pragma: no cover
            # floor(log2 v) of an integer v >= 1
            return 63 - np.int64(leading_zeros(np.uint64(v)))  # type: ignore[call-arg]  # (an intrinsic)

    else:  # pragma: no cover

        @numba.njit(cache=True, nogil=True)
        def _exponent(v):
            # floor(log2 v) of an integer v >= 1, which a float64 holds exactly (as negative_log2)
            return np.int64(math.frexp(np.float64(v))[1]) - 1

    @numba.njit(cache=True, nogil=True)
    def _negative_log(value, logs):  # pragma: no cover
        # negative_log2 of one integer
        v = max(value, 1)
        e = _exponent(v)
        return ((24 - e) << 16) - logs[(((v << 24) >> e) >> 14) - 1024]

    @numba.njit(cache=True, nogil=True)
    def _negative_logs(values, logs, out):  # pragma: no cover
        # negative_log2 of a row of integers
        for j in range(values.shape[0]):
            out[j] = _negative_log(values[j], logs)

    @numba.njit(cache=True, nogil=True)
    def _shape_at(value, prediction, inverse, shape):  # pragma: no cover
        # LeastSquaresMix._shape_index, and the shape there
        return shape[min((abs(value - prediction) * inverse) >> 19, shape.shape[0] - 1)]

    @numba.njit(cache=True, nogil=True)
    def _geometric_kernel(
        table, predictions, inverse, weights, blend, inside, out, product, expected, mixed_totals, totals, logs,
        powers, shape,
    ):  # pragma: no cover  # fmt: skip
        # LeastSquaresMix._geometric_numpy, pixel by pixel: the same integer arithmetic
        size, experts = table.shape[1], weights.shape[1]
        last = shape.shape[0] - 1
        floor = shape[last]
        negative = np.empty((experts, size), dtype=np.int64)
        model = np.empty(size, dtype=np.int64)
        exponent = np.empty(size, dtype=np.int64)
        for n in range(table.shape[0]):
            total = table_total(table, n)
            totals[n] = total
            factor = 16777216.0 / total
            for j in range(size):
                model[j] = np.int64(np.floor(np.float64(table[n, j]) * factor))
            _negative_logs(model, logs, negative[0])
            inverse_scale = inverse[n]
            for e in range(1, experts):
                prediction, negative_e = predictions[n, e - 1], negative[e]
                # _shape_at clamps to the shape's floor (its last value) from SHAPE_END scales
                # away from the prediction (``reach``, at 2**-8 pixel): there the floor is
                # written, and only the values between are looked up
                reach = ((last << 19) + inverse_scale - 1) // inverse_scale
                low = min(max((prediction - reach) >> 8, 0), size)
                high = min(max(((prediction + reach) >> 8) + 1, low), size)
                for j in range(low):
                    negative_e[j] = floor
                for j in range(low, high):
                    negative_e[j] = _shape_at(j << 8, prediction, inverse_scale, shape)
                for j in range(high, size):
                    negative_e[j] = floor
            w0 = weights[n, 0]
            for j in range(size):
                exponent[j] = -w0 * negative[0, j]
            for e in range(1, experts):
                w_e, negative_e = weights[n, e], negative[e]
                for j in range(size):
                    exponent[j] -= w_e * negative_e[j]
            top = -(1 << 62)
            for j in range(size):
                top = max(top, exponent[j])
            power_sum = 0
            for j in range(size):
                distance = (top - exponent[j]) >> 20
                product[n, j] = powers[distance & 4095] >> min(distance >> 12, 40)
                power_sum += product[n, j]
            reciprocal = (16777216 << 32) // power_sum
            product_sum = 0
            for j in range(size):
                p = max((product[n, j] * reciprocal) >> 32, 1)
                product[n, j] = p
                product_sum += p
            for e in range(experts):
                weighted, negative_e = 0, negative[e]
                for j in range(size):
                    weighted += product[n, j] * negative_e[j]
                expected[n, e] = weighted // product_sum
            b, blended = blend[n], inside[n]  # (outside, the model's table as it is)
            mixed_sum = 0
            for j in range(size):
                mixed = max((product[n, j] * (65536 - b) + model[j] * b) >> 16 if blended else model[j], 1)
                out[n, j] = np.float32(mixed)
                mixed_sum += mixed
            mixed_totals[n] = np.float64(mixed_sum)

    @numba.njit(cache=True, nogil=True)
    def _experts_observe_kernel(
        symbols, table, totals, predictions, inverse, product, out, bucket, inside, expected, logs, shape,
        pending_expert, pending_blend,
    ):  # pragma: no cover  # fmt: skip
        # LeastSquaresMix._observe_experts' numpy code
        for n in range(symbols.shape[0]):
            if not inside[n]:
                continue
            x = symbols[n]
            model = np.int64(np.floor(np.float64(table[n, x]) * (16777216.0 / totals[n])))
            k = bucket[n]
            pending_expert[k, 0] += expected[n, 0] - _negative_log(model, logs)
            for e in range(1, expected.shape[1]):
                pending_expert[k, e] += expected[n, e] - _shape_at(x << 8, predictions[n, e - 1], inverse[n], shape)
            gradient = ((model - product[n, x]) << 16) // np.int64(out[n, x])
            pending_blend[k] += min(max(gradient, -(1 << 20)), 1 << 20)

    @numba.njit(cache=True, nogil=True)
    def _accumulate_kernel(features, targets, inside, normal, target):  # pragma: no cover
        # the image-wide fit's normal equations: f.T @ f and f.T @ y of the pixels inside
        size = features.shape[1]
        for n in range(features.shape[0]):
            if not inside[n]:
                continue
            for i in range(size):
                f_i = features[n, i]
                for j in range(size):
                    normal[i, j] += f_i * features[n, j]
                target[i] += f_i * targets[n]

    @numba.njit(cache=True, nogil=True)
    def _fit_kernel(normal, target, pending_normal, pending_target, decay_shift, ridge, weights):  # pragma: no cover
        # LeastSquaresMix._fit_the_image's numpy code for one channel, and _solve's Gauss-Jordan
        # elimination: the same correctly rounded operations on each entry, so the same bits
        size = target.shape[0]
        for i in range(size):
            for j in range(size):
                normal[i, j] -= normal[i, j] >> decay_shift
            target[i] -= target[i] >> decay_shift
        pending = False
        for i in range(size):
            for j in range(size):
                pending |= pending_normal[i, j] != 0
        if not pending:
            return
        a = np.empty((size, size + 1), dtype=np.float64)
        for i in range(size):
            for j in range(size):
                normal[i, j] += pending_normal[i, j]
                pending_normal[i, j] = 0
                a[i, j] = np.float64(normal[i, j]) + (np.float64(ridge) if i == j else 0.0)
            target[i] += pending_target[i]
            pending_target[i] = 0
            a[i, size] = np.float64(target[i])
        pivot = np.empty(size + 1, dtype=np.float64)
        factors = np.empty(size, dtype=np.float64)
        for k in range(size):
            for j in range(size + 1):
                pivot[j] = a[k, j]
            for i in range(size):
                factors[i] = a[i, k] / pivot[k]
            factors[k] = 0.0
            for i in range(size):
                for j in range(size + 1):
                    a[i, j] -= factors[i] * pivot[j]
        for i in range(size):
            x = a[i, size] / a[i, i]
            weights[i] = np.int64(min(max(np.floor(x * 65536.0 + 0.5), -4194304.0), 4194304.0))

    @numba.njit(cache=True, nogil=True)
    def _observe_kernel(
        rows, cols, channel, symbols, table, features, state, totals, known, error, signed, cdf, offset, count,
        grid_bits, width, pending_gradient, pending_error, learn_mixing,
    ):  # pragma: no cover  # fmt: skip
        b = 3
        inside = np.empty(rows.shape[0], dtype=np.bool_)
        for n in range(rows.shape[0]):
            x = symbols[n]
            r, c = rows[n] + b, cols[n] + b
            prediction, bucket, inverse, a = state[n, 1], state[n, 2], state[n, 3], state[n, 4]
            known[channel, r, c] = x
            signed[channel, r, c] = (x << 8) - prediction
            e = abs((x << 8) - prediction)
            error[channel, r, c] = e
            pending_error[bucket, 0] += e
            pending_error[bucket, 1] += 1
            inside[n] = rows[n] >= 3 and cols[n] >= 3 and cols[n] < width - 2
            if not (inside[n] and learn_mixing):  # (version 5 learns its weights in _experts_observe_kernel)
                continue
            low = 0 if x == 0 else _logistic_cdf((x << 8) - 128, prediction, inverse, cdf, offset, count, grid_bits)
            high = (
                16777216
                if x == 255
                else _logistic_cdf((x << 8) + 128, prediction, inverse, cdf, offset, count, grid_bits)
            )
            p_logistic = high - low
            p_model = np.int64(np.floor(np.float64(table[n, x]) * (16777216.0 / totals[n])))
            p_mixed = max((p_model * (65536 - a) + p_logistic * a) >> 16, 1)
            gradient = ((p_logistic - p_model) << 16) // p_mixed
            pending_gradient[bucket] += min(max(gradient, -(1 << 20)), 1 << 20)
        return inside

    @numba.njit(cache=True, nogil=True)
    def _local_vertical(row, col, window, outer, vertical):  # pragma: no cover
        ring, pad = window + 2, window + 1
        slot, at = row % ring, col + pad
        packed = outer.shape[2]
        if row == 0:
            for t in range(packed):
                vertical[slot, at, t] = 0
            return
        previous = (row - 1) % ring
        if row - 1 - window >= 0:
            leaving = (row - 1 - window) % ring
            for t in range(packed):
                vertical[slot, at, t] = vertical[previous, at, t] + outer[previous, at, t] - outer[leaving, at, t]
        else:
            for t in range(packed):
                vertical[slot, at, t] = vertical[previous, at, t] + outer[previous, at, t]

    @numba.njit(cache=True, nogil=True)
    def _local_advance(r, c, width, window, outer, vertical, horizontal, same_row, at):  # pragma: no cover
        # LocalSums._advance for one row
        ring, pad = window + 2, window + 1
        packed = horizontal.shape[1]
        slot = r % ring
        if at[r] == c:
            return
        if at[r] != c - 1:
            raise ValueError("the local fit's rows must advance one column at a time")
        if c == 0:
            _local_vertical(r, 0, window, outer, vertical)
            for t in range(packed):
                horizontal[r, t] = vertical[slot, pad, t]
                same_row[r, t] = 0
        if c + 1 < width:
            _local_vertical(r, c + 1, window, outer, vertical)
            for t in range(packed):
                horizontal[r, t] += vertical[slot, c + 1 + pad, t]
        if c - window - 1 >= 0:
            for t in range(packed):
                horizontal[r, t] -= vertical[slot, c - window - 1 + pad, t]
        if c >= 1:
            for t in range(packed):
                same_row[r, t] += outer[slot, c - 1 + pad, t]
        if c - 1 - window >= 0:
            for t in range(packed):
                same_row[r, t] -= outer[slot, c - 1 - window + pad, t]
        at[r] = c

    #: pixels whose systems are solved together, each operation vectorized across them
    _BLOCK = 32

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _local_weights_kernel(
        rows, cols, width, window, outer, vertical, horizontal, same_row, at, pair_rows, pair_cols, ridge, out,
    ):  # pragma: no cover  # fmt: skip
        # LocalSums._advance and LocalSums.weights' numpy code. The systems of up to _BLOCK
        # pixels are solved together, the pixel the innermost index, so that each operation of
        # _solve_symmetric is one elementwise loop over the pixels, which the compiler
        # vectorizes: per pixel the same correctly rounded operations in the same order (as the
        # numpy reference does them across its batch), so the same bits. (error_model="numpy":
        # a division by zero gives inf or nan, as numpy's does, instead of a branch per division
        # that keeps the loop from being vectorized.)
        # The sums' packed upper triangle, row by row, is the lower triangle column by column:
        # entry (i, k), i >= k, of the lower triangle is at first[k] + i - k, and the factors
        # overwrite it in place.
        size, triangle, packed = out.shape[1], pair_rows.shape[0], horizontal.shape[1]
        ring, pad = window + 2, window + 1
        sums = np.empty(packed, dtype=np.int64)
        first = np.empty(size, dtype=np.int64)
        for k in range(size):
            first[k] = k * size - (k * (k - 1)) // 2
        a = np.empty((packed, _BLOCK), dtype=np.float64)
        diagonal = np.empty((size, _BLOCK), dtype=np.float64)
        scaled = np.empty((size, _BLOCK), dtype=np.float64)
        z = np.empty((size, _BLOCK), dtype=np.float64)
        solution = np.empty((size, _BLOCK), dtype=np.float64)
        for start in range(0, rows.shape[0], _BLOCK):
            block = min(_BLOCK, rows.shape[0] - start)
            for m in range(block):
                r, c = rows[start + m], cols[start + m]
                if at[r] == c - 1 and window + 1 <= c < width - 1 and r > window:
                    # the usual case: the five updates of _local_advance in one pass
                    slot, previous, leaving = r % ring, (r - 1) % ring, (r - 1 - window) % ring
                    enter, leave = c + 1 + pad, c - window - 1 + pad
                    for t in range(packed):
                        v = vertical[previous, enter, t] + outer[previous, enter, t] - outer[leaving, enter, t]
                        vertical[slot, enter, t] = v
                        h = horizontal[r, t] + v - vertical[slot, leave, t]
                        horizontal[r, t] = h
                        s = same_row[r, t] + outer[slot, c - 1 + pad, t] - outer[slot, c - 1 - window + pad, t]
                        same_row[r, t] = s
                        sums[t] = h + s
                    at[r] = c
                else:
                    _local_advance(r, c, width, window, outer, vertical, horizontal, same_row, at)
                    for t in range(packed):
                        sums[t] = horizontal[r, t] + same_row[r, t]
                for t in range(packed):
                    a[t, m] = np.float64(sums[t])
                for p in range(size):
                    a[first[p], m] = np.float64(horizontal[r, first[p]] + same_row[r, first[p]] + ridge)
            # LDL^T in the lower triangle
            for j in range(size):
                d_j, a_jj = diagonal[j], a[first[j]]
                for m in range(block):
                    d_j[m] = a_jj[m]
                for k in range(j):
                    a_jk, d_k, s_k = a[first[k] + j - k], diagonal[k], scaled[k]
                    for m in range(block):
                        s_k[m] = a_jk[m] * d_k[m]
                    for m in range(block):
                        d_j[m] = d_j[m] - a_jk[m] * s_k[m]
                for i in range(j + 1, size):
                    a_ij = a[first[j] + i - j]
                    for k in range(j):
                        a_ik, s_k = a[first[k] + i - k], scaled[k]
                        for m in range(block):
                            a_ij[m] = a_ij[m] - a_ik[m] * s_k[m]
                    for m in range(block):
                        a_ij[m] = a_ij[m] / d_j[m]
            # L z = b, then D L^T x = z
            for i in range(size):
                z_i, b_i = z[i], a[triangle + i]
                for m in range(block):
                    z_i[m] = b_i[m]
                for k in range(i):
                    a_ik, z_k = a[first[k] + i - k], z[k]
                    for m in range(block):
                        z_i[m] = z_i[m] - a_ik[m] * z_k[m]
            for i in range(size - 1, -1, -1):
                x_i, z_i, d_i = solution[i], z[i], diagonal[i]
                for m in range(block):
                    x_i[m] = z_i[m] / d_i[m]
                for k in range(i + 1, size):
                    a_ki, x_k = a[first[i] + k - i], solution[k]
                    for m in range(block):
                        x_i[m] = x_i[m] - a_ki[m] * x_k[m]
            for p in range(size):
                for m in range(block):
                    x = np.floor(solution[p, m] * 65536.0 + 0.5)
                    if np.isnan(x):
                        out[start + m, p] = 0
                    else:
                        out[start + m, p] = np.int64(min(max(x, -4194304.0), 4194304.0))

    @numba.njit(cache=True, nogil=True)
    def _local_record_kernel(
        rows, cols, features, targets, inside, outer, ring, pad, pair_rows, pair_cols,
    ):  # pragma: no cover  # fmt: skip
        size, triangle = features.shape[1], pair_rows.shape[0]
        for n in range(rows.shape[0]):
            slot, at = rows[n] % ring, cols[n] + pad
            if not inside[n]:
                for t in range(outer.shape[2]):
                    outer[slot, at, t] = 0
                continue
            for t in range(triangle):
                outer[slot, at, t] = features[n, pair_rows[t]] * features[n, pair_cols[t]]
            for p in range(size):
                outer[slot, at, triangle + p] = features[n, p] * targets[n]
