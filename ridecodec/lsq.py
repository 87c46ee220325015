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

Exact: the normal equations are sums of integer products (int64); their solution is a fixed
sequence of IEEE float64 operations (elementwise, no reductions whose order could vary, no fused
multiply-add: numpy never fuses) on those integers, rounded to fixed-point weights; everything
after that is integer arithmetic and lookups in the exact logistic table. State changes only
between wavefront steps and reads only pixels of earlier steps, so the tables are the same on
every machine and for every split of a step.
"""

from __future__ import annotations

import numpy as np

from . import exact

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

    def __init__(self, channels: int, height: int, width: int):
        self.channels, self.height, self.width = channels, height, width
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
        self._thresholds = np.array(THRESHOLDS, dtype=np.int64)
        self._offsets = np.array(NEIGHBOURS, dtype=np.int64)
        self._last: tuple | None = None

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
        if _KERNELS and self.compiled:
            return self._mix_compiled(rows, cols, channel, table)
        return self._mix_numpy(rows, cols, channel, table)

    def observe(self, rows: np.ndarray, cols: np.ndarray, channel: int, symbols: np.ndarray) -> None:
        """Record the symbols coded for the batch ``mix`` was last called on."""
        if _KERNELS and self.compiled:
            self._observe_compiled(rows, cols, channel, symbols)
        else:
            self._observe_numpy(rows, cols, channel, symbols)

    def _mix_compiled(self, rows, cols, channel, table):
        n, size = len(rows), self.sizes[channel]
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        table = np.ascontiguousarray(table, dtype=np.float32)
        out = np.empty(table.shape, dtype=np.float32)
        features = np.empty((n, size), dtype=np.int64)
        state = np.empty((n, 5), dtype=np.int64)  # W, prediction, bucket, 1/scale, mixing weight
        totals = np.empty(n, dtype=np.float64)
        offset, grid_bits, count = self._grid
        _mix_kernel(
            rows, cols, channel, table, self.known, self.error, self.signed, self._offsets, self.weights[channel],
            self._thresholds, self.error_sum[channel], self.error_count[channel], self.mixing[channel],
            self.cdf, offset, count, grid_bits, self.width, out, features, state, totals,
        )  # fmt: skip
        self._last = (rows, cols, table, features, state, totals)
        return out

    def _observe_compiled(self, rows, cols, channel, symbols):
        assert self._last is not None, "mix comes before observe"
        rows, cols, table, features, state, totals = self._last
        offset, grid_bits, count = self._grid
        inside = _observe_kernel(
            rows, cols, channel, np.ascontiguousarray(symbols, dtype=np.int64), table, features, state, totals,
            self.known, self.error, self.signed, self.cdf, offset, count, grid_bits, self.width,
            self.pending_gradient[channel], self.pending_error[channel],
        )  # fmt: skip
        f, y = features[inside], symbols.astype(np.int64)[inside] - state[inside, 0]
        self.pending_normal[channel] += f.T @ f
        self.pending_target[channel] += f.T @ y

    def _mix_numpy(self, rows: np.ndarray, cols: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
        """The reference of the compiled kernel (and the path without numba): the same numbers."""
        features, west = self._features(rows, cols, channel)
        prediction = (west << PRED_BITS) + ((features @ self.weights[channel]) >> (WEIGHT_BITS - PRED_BITS))
        prediction = np.clip(prediction, 0, 255 << PRED_BITS)
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
        cumulative = self._cdf_at(self.edges[None, :], prediction[:, None], inverse[:, None])
        n = len(rows)
        cumulative = np.concatenate([np.zeros((n, 1), np.int64), cumulative, np.full((n, 1), ONE, np.int64)], axis=1)
        logistic = np.diff(cumulative, axis=1)  # (N, 256) at 2**-24, summing to ONE
        total = table.sum(axis=1, dtype=np.float64)
        model = np.floor(table.astype(np.float64) * (ONE / total)[:, None]).astype(np.int64)
        inside = self._inside(rows, cols)
        a = np.where(inside, self.mixing[channel, bucket], 0)
        mixed = np.maximum((model * ((1 << 16) - a[:, None]) + logistic * a[:, None]) >> 16, 1)
        self._last = (features, west, prediction, bucket, model, logistic, mixed, inside)
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
        f, y = features[inside], (symbols - west)[inside]
        self.pending_normal[channel] += f.T @ f
        self.pending_target[channel] += f.T @ y
        index = np.arange(len(rows))
        p_model, p_logistic, p_mixed = model[index, symbols], logistic[index, symbols], mixed[index, symbols]
        gradient = np.clip(((p_logistic - p_model) << 16) // p_mixed, -(1 << 20), 1 << 20)
        np.add.at(self.pending_gradient[channel], bucket[inside], gradient[inside])
        np.add.at(self.pending_error[channel, :, 0], bucket, np.abs(error))
        np.add.at(self.pending_error[channel, :, 1], bucket, 1)

    def end_step(self) -> None:
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
        step = self.pending_gradient >> self.rate_shift
        self.mixing = np.clip(self.mixing + step, 0, self.max_mix)
        self.pending_gradient[:] = 0
        self.error_sum += self.pending_error[..., 0]
        self.error_count += self.pending_error[..., 1]
        over = self.error_count > 4096
        self.error_sum[over] >>= 1
        self.error_count[over] >>= 1
        self.pending_error[:] = 0


try:  # numba is a dependency; without it the numpy code computes the same numbers, more slowly
    import numba

    _KERNELS = True
except ImportError:  # pragma: no cover
    numba = None  # type: ignore[assignment]
    _KERNELS = False


if _KERNELS:

    @numba.njit(cache=True, nogil=True)
    def _logistic_cdf(edge, prediction, inverse, cdf, offset, count, grid_bits):  # pragma: no cover
        index = (((edge - prediction) * inverse) >> (24 - grid_bits)) + offset
        return cdf[min(max(index, 0), count - 1)]

    @numba.njit(cache=True, nogil=True)
    def _mix_kernel(
        rows, cols, channel, table, known, error, signed, offsets, weights, thresholds, error_sum, error_count,
        mixing, cdf, offset, count, grid_bits, width, out, features, state, totals,
    ):  # pragma: no cover  # fmt: skip
        # LeastSquaresMix._mix_numpy, pixel by pixel: integer arithmetic, and the one float64
        # product per entry (table * (ONE / total), floored) that the numpy code does
        b = 3
        size = weights.shape[0]
        neighbours = offsets.shape[0] - 1
        cumulative = np.empty(table.shape[1] + 1, dtype=np.int64)
        cumulative[0], cumulative[table.shape[1]] = 0, 16777216
        for n in range(rows.shape[0]):
            r, c = rows[n] + b, cols[n] + b
            west = known[channel, r, c - 1]
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
            dot = 0
            for k in range(size):
                dot += features[n, k] * weights[k]
            prediction = (west << 8) + (dot >> 8)
            prediction = min(max(prediction, 0), 255 << 8)
            activity = 2 * error[channel, r, c - 1] + 2 * error[channel, r - 1, c]
            activity += error[channel, r - 1, c - 1] + error[channel, r - 1, c + 1]
            if channel > 0:
                activity = (activity >> 1) + 2 * error[channel - 1, r, c]
            bucket = 0
            while bucket < thresholds.shape[0] and thresholds[bucket] <= activity:
                bucket += 1
            scale = max(((error_sum[bucket] // error_count[bucket]) * 739) >> 10, 1 << 6)
            inverse = (1 << 24) // scale
            inside = rows[n] >= 3 and cols[n] >= 3 and cols[n] < width - 2
            a = mixing[bucket] if inside else 0
            total = 0.0
            for j in range(table.shape[1]):
                total += np.float64(table[n, j])
            factor = 16777216.0 / total
            # the logistic's CDF at the 255 inner edges, then the entries (a loop the compiler
            # can vectorize)
            for j in range(table.shape[1] - 1):
                cumulative[j + 1] = _logistic_cdf(
                    ((j + 1) << 8) - 128, prediction, inverse, cdf, offset, count, grid_bits
                )
            for j in range(table.shape[1]):
                model = np.int64(np.floor(np.float64(table[n, j]) * factor))
                mixed = (model * (65536 - a) + (cumulative[j + 1] - cumulative[j]) * a) >> 16
                out[n, j] = np.float32(mixed if mixed > 1 else 1)  # noqa: FURB136 (max() confuses mypy here)
            state[n, 0], state[n, 1], state[n, 2], state[n, 3], state[n, 4] = west, prediction, bucket, inverse, a
            totals[n] = total

    @numba.njit(cache=True, nogil=True)
    def _observe_kernel(
        rows, cols, channel, symbols, table, features, state, totals, known, error, signed, cdf, offset, count,
        grid_bits, width, pending_gradient, pending_error,
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
            if not inside[n]:
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
