"""Compiled CPU kernels (numba) for the exact models' per-pixel work: the spatial LSTM cell and
the MCGSM head, from its projections to the integer frequency tables.

They compute the very integers of the torch code they replace (``exact.py``,
``models/slstm.ExactSpatialLSTM.cell``, ``models/mcgsm.ExactMCGSMHead.frequencies``), which stays
the reference and the path on GPUs: only integer arithmetic, in the same order where order
matters (ties, remainders), and ``tests/test_exact.py`` compares the two on random and extreme
inputs. What they buy is fewer, fused operations: the torch path spends most of a step in the
fixed cost of some two hundred small tensor operations, and a compiled loop over the positions of
a step does the same work in one call, in parallel over the step's positions (exact arithmetic
makes any split safe).

Without numba (``import numba`` fails), :data:`AVAILABLE` is False and the models use the torch
code: the same tables, more slowly.
"""

from __future__ import annotations

import numpy as np

from . import exact

try:  # numba is a dependency, but the codec works (more slowly) without it
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba cannot be installed
    numba = None  # type: ignore[assignment]
    AVAILABLE = False

_SIG_BITS = exact.SIGMOID_GRID[1]
_SIG_OFFSET = int(-exact.SIGMOID_GRID[0] * 2**_SIG_BITS)
_SIG_LAST = exact.SIGMOID_GRID[2] - 1
_EXP_LAST = exact.EXP_NEG_GRID[2] - 1
_PHI_OFFSET = int(-exact.GAUSSIAN_CDF_GRID[0] * 2 ** exact.GAUSSIAN_CDF_GRID[1])
_PHI_LAST = exact.GAUSSIAN_CDF_GRID[2] - 1
_PHI_SHIFT = exact.Z_BITS - exact.GAUSSIAN_CDF_GRID[1]  # z's fixed point -> the table's grid
_PRE = exact.PRE_BITS
_ACT = exact.ACT_BITS
_PROB = exact.PROB_BITS
_MEAN = exact.MEAN_BITS


def _jit(function):
    if not AVAILABLE:
        return None
    return numba.njit(cache=True, parallel=True, nogil=True)(function)


def _lookup_sigmoid(value, in_bits, sigmoid_table):
    """exact._lookup of the sigmoid table, for in_bits > its grid bits."""
    shift = in_bits - _SIG_BITS
    index = ((value + (1 << (shift - 1))) >> shift) + _SIG_OFFSET
    if index < 0:
        index = 0
    elif index > _SIG_LAST:
        index = _SIG_LAST
    return sigmoid_table[index]


def _sigmoid(value, sigmoid_table):
    """exact.sigmoid: from 2**-PRE_BITS to 2**-ACT_BITS."""
    table_value = _lookup_sigmoid(value, _PRE, sigmoid_table)
    return (table_value + (1 << (_PROB - _ACT - 1))) >> (_PROB - _ACT)


def _cell_unit(pre, row, unit, c_left, c_up, sigmoid_table, h_out, c_out):
    """One unit of one position of ExactSpatialLSTM.cell: its c and h into c_out and h_out."""
    hidden = h_out.shape[1]
    gate_i = _sigmoid(np.int64(pre[row, unit]), sigmoid_table)
    gate_o = _sigmoid(np.int64(pre[row, hidden + unit]), sigmoid_table)
    forget_left = _sigmoid(np.int64(pre[row, 2 * hidden + unit]), sigmoid_table)
    forget_up = _sigmoid(np.int64(pre[row, 3 * hidden + unit]), sigmoid_table)
    doubled = _lookup_sigmoid(np.int64(pre[row, 4 * hidden + unit]), _PRE - 1, sigmoid_table)
    g = (2 * doubled - (1 << _PROB) + (1 << (_PROB - _ACT - 1))) >> (_PROB - _ACT)
    total = g * gate_i + np.int64(c_left) * forget_left + np.int64(c_up) * forget_up
    c = (total + (1 << (_ACT - 1))) >> _ACT
    limit = 50 << _ACT
    if c > limit:
        c = limit
    elif c < -limit:
        c = -limit
    c_out[row, unit] = np.float64(c)
    doubled = _lookup_sigmoid(c * gate_o, 2 * _ACT - 1, sigmoid_table)
    h_out[row, unit] = np.float64((2 * doubled - (1 << _PROB) + (1 << (_PROB - _ACT - 1))) >> (_PROB - _ACT))


def _lstm_cell(pre, c_left, c_up, sigmoid_table, h_out, c_out):
    n, hidden = c_left.shape
    for row in numba.prange(n):
        for unit in range(hidden):
            _cell_unit(pre, row, unit, c_left[row, unit], c_up[row, unit], sigmoid_table, h_out, c_out)


def _lstm_cell_on_states(pre, h_states, c_states, cols, sigmoid_table, h_out, c_out):
    """:func:`_lstm_cell` for the positions in columns ``cols`` of a spatial LSTM's skyline
    states (``slstm.ExactSpatialLSTMStepper``: slot j + 1 holds column j's last (h, c)): each
    position's left and upper memories are c_states[col] and c_states[col + 1], and its new
    (h, c) go to slot col + 1 as well as to h_out and c_out. Every read comes before any write,
    as in the stepper's torch code (positions in adjacent columns may share a step)."""
    n, hidden = h_out.shape
    for row in numba.prange(n):
        col = cols[row]
        for unit in range(hidden):
            _cell_unit(pre, row, unit, c_states[col, unit], c_states[col + 1, unit], sigmoid_table, h_out, c_out)
    for row in range(n):
        for unit in range(hidden):
            h_states[cols[row] + 1, unit] = h_out[row, unit]
            c_states[cols[row] + 1, unit] = c_out[row, unit]


def _shift_round(value, bits):
    """exact.shift_round (bits > 0), or a left shift for bits <= 0."""
    if bits > 0:
        return (value + (np.int64(1) << (bits - 1))) >> bits
    return value << -bits


def _isqrt(value):
    root = np.int64(np.sqrt(np.float64(value)))
    if root * root > value:
        root -= 1
    if (root + 1) * (root + 1) <= value:
        root += 1
    return root


def _squared_feature_limbs(projected, feature_shift, feature_limit, limb_bits, num_features, out):
    """The head's squared features, rounded and clamped as ExactMCGSMHead.frequencies does, split
    into their high and low limbs of ``limb_bits`` bits: ``out`` (2, N, F) float64 of integers."""
    mask = (np.int64(1) << limb_bits) - 1
    for row in numba.prange(projected.shape[0]):
        for f in range(num_features):
            value = (np.int64(projected[row, f]) + (np.int64(1) << (feature_shift - 1))) >> feature_shift
            if value > feature_limit:
                value = feature_limit
            elif value < -feature_limit:
                value = -feature_limit
            square = value * value
            out[0, row, f] = np.float64(square >> limb_bits)
            out[1, row, f] = np.float64(square & mask)


def _mcgsm_frequencies(
    projected,
    energy_limbs,
    half_precisions,
    caps,
    priors,
    variances,
    num_scales,
    table_components,
    formats,
    exp_table,
    phi_upper,
    phi_cells,
    exp_zero,
    chunks,
    out,
):
    """``formats``: the head's fixed-point shifts and limits, as ExactMCGSMHead.KERNEL_FORMATS gives
    them (the model defines them; this only follows). ``energy_limbs`` (2, N, C): the gate's
    products with the squared features' high and low limbs (:func:`_squared_feature_limbs`),
    integers held in float64.

    The positions are split into ``chunks`` (a few per thread), each with its scratch allocated
    once."""
    limb_bits, drop, penalty_shift, logit_bits = formats[2], formats[3], formats[4], formats[5]
    variance_min, variance_max, residual_bits, spread_limit = formats[6], formats[7], formats[8], formats[9]
    n = projected.shape[0]
    num_components = energy_limbs.shape[2]
    num_features = projected.shape[1] - num_components
    pairs = num_components * num_scales
    mean_low, mean_high = exact.MEAN_RANGE[0] << _MEAN, exact.MEAN_RANGE[1] << _MEAN
    k = table_components + 1
    for chunk in numba.prange(chunks):
        means = np.empty(num_components, dtype=np.int64)
        logits = np.empty(pairs, dtype=np.int64)
        weights = np.empty(pairs, dtype=np.int64)
        top = np.empty(table_components, dtype=np.int64)
        taken = np.zeros(pairs, dtype=np.bool_)
        mixture_weights = np.empty(k, dtype=np.int64)
        mixture_means = np.empty(k, dtype=np.int64)
        inverse = np.empty(k, dtype=np.int64)
        normalized = np.empty(k, dtype=np.int64)
        cumulative = np.empty(257, dtype=np.int64)
        steps = np.empty(257, dtype=np.int64)
        for row in range(chunk * n // chunks, (chunk + 1) * n // chunks):
            for c in range(num_components):
                value = (np.int64(projected[row, num_features + c]) + (1 << (_PRE - _MEAN - 1))) >> (_PRE - _MEAN)
                means[c] = min(max(value, mean_low), mean_high)
            best = np.int64(-(1 << 62))
            for c in range(num_components):
                high = np.int64(energy_limbs[0, row, c])
                low = np.int64(energy_limbs[1, row, c])
                energy = (high << (limb_bits - drop)) + (low >> drop)
                for s in range(num_scales):
                    p = c * num_scales + s
                    capped = min(energy, caps[p])
                    logits[p] = priors[p] - (
                        (capped * half_precisions[p] + (np.int64(1) << (penalty_shift - 1))) >> penalty_shift
                    )
                    if logits[p] > best:
                        best = logits[p]
            for p in range(pairs):
                index = _shift_round(best - logits[p], logit_bits - exact.EXP_NEG_GRID[1])
                if index > _EXP_LAST:
                    index = _EXP_LAST
                # from exp_zero on the table holds only zeros: no lookup (the same integers)
                weights[p] = exp_table[index] if index < exp_zero else 0
            # the heaviest pairs, by weight then lower index (the torch code's unique keys): one
            # pass in index order, inserting behind every kept pair of at least the same weight
            kept = 0
            for p in range(pairs):
                w = weights[p]
                if kept == table_components and (kept == 0 or w <= weights[top[kept - 1]]):
                    continue
                slot = kept if kept < table_components else table_components - 1
                while slot > 0 and weights[top[slot - 1]] < w:
                    top[slot] = top[slot - 1]
                    slot -= 1
                top[slot] = p
                if kept < table_components:
                    kept += 1
            for t in range(table_components):
                taken[top[t]] = True
            # the rest, moment-matched
            rest_total = np.int64(0)
            mean_sum = np.int64(0)
            for c in range(num_components):
                per_component = np.int64(0)
                for s in range(num_scales):
                    p = c * num_scales + s
                    if not taken[p]:
                        per_component += weights[p]
                rest_total += per_component
                mean_sum += per_component * means[c]
            divisor = rest_total if rest_total > 1 else np.int64(1)
            rest_mean = mean_sum // divisor
            shift = np.int64(0)  # the bit length of rest_total, less residual_bits
            while (rest_total >> shift) >= (np.int64(1) << residual_bits):
                shift += 1
            coarse_total = np.int64(0)
            second = np.int64(0)
            for c in range(num_components):
                coarse_component = np.int64(0)
                for s in range(num_scales):
                    p = c * num_scales + s
                    if not taken[p]:
                        coarse = weights[p] >> shift
                        coarse_component += coarse
                        second += coarse * variances[p]
                distance = min(max(means[c] - rest_mean, -spread_limit), spread_limit)
                second += coarse_component * distance * distance
                coarse_total += coarse_component
            if coarse_total > 0:
                rest_variance = second // coarse_total
            else:
                rest_variance = np.int64(1 << 16)
            rest_variance = min(max(rest_variance, variance_min), variance_max)
            # the condensed mixture
            for t in range(k):
                if t < table_components:
                    mixture_weights[t] = weights[top[t]]
                    mixture_means[t] = means[top[t] // num_scales]
                    variance = variances[top[t]]
                    taken[top[t]] = False  # (for the next row)
                else:
                    mixture_weights[t] = rest_total
                    mixture_means[t] = rest_mean
                    variance = rest_variance
                mixture_means[t] = min(max(mixture_means[t], mean_low), mean_high)
                std = _isqrt(variance << 8)
                if std < 1:
                    std = 1
                inverse[t] = (np.int64(1) << 40) // std
            _mixture_row(
                mixture_weights, mixture_means, inverse, phi_upper, phi_cells, normalized, cumulative, steps, out[row]
            )


def _ceil_div(numerator, denominator):
    """ceil(numerator / denominator) for a positive denominator, in integers."""
    return -((-numerator) // denominator)


def upper_half(table: np.ndarray, middle: int, name: str) -> np.ndarray:
    """A CDF table at 2**-PROB_BITS from its ``middle`` (z = 0) up, int32, for kernels that read it
    with :func:`symmetric_lookup`. The table is symmetric, entry middle - i being 1 less entry
    middle + i (checked here), so the upper half gives every entry in half the cache: a kernel's
    lookups land all over the table, and those into a quarter of its int64 bytes stay in cache
    (measured: the MCGSM head 25-40% faster, the adaptive stage's mix likewise)."""
    one = 1 << exact.PROB_BITS
    table = table.astype(np.int64)
    lower, upper = table[middle::-1], table[middle:]
    if len(lower) != len(upper) or not np.array_equal(lower + upper, np.full(len(upper), one)):
        raise RuntimeError(f"the {name} table is not symmetric about its centre (exact.py's generator)")
    return np.ascontiguousarray(upper.astype(np.int32))


def symmetric_lookup(upper, index):
    """Entry ``index`` of a symmetric CDF table, counted from its centre, from its upper half
    (:func:`upper_half`)."""
    value = np.int64(upper[abs(index)])
    return value if index >= 0 else (np.int64(1) << _PROB) - value


def _mixture_row(weights, means, inverse, phi_upper, phi_cells, normalized, cumulative, steps, out_row):
    """exact.mixture_frequencies for one row (Gaussian CDF); ``phi_upper``: the table's upper half
    (:func:`_phi_upper`: the table is symmetric, and reading half of it touches half the cache
    lines; this kernel took 25-40% less time); ``phi_cells``: the table's
    first nonzero and first full cell (:func:`_phi_cells`); ``normalized``: scratch of one per
    component, ``cumulative`` and ``steps``: of 257 each.

    The same integers as evaluating every component at every edge: where z lies below the
    table's first cell the lookup gives Phi = 0 and contributes nothing, and from where it reaches
    the last cell on it gives 1; so each component is looked up only on the edges in between
    (found by integer division: z = (edge - mean) * inverse increases with the edge), and adds a
    constant from there on (a step, summed in the final pass)."""
    k = weights.shape[0]
    total = np.int64(0)
    for t in range(k):
        total += weights[t]
    if total < 1:
        total = 1  # type: ignore[assignment]  # (numba types it int64)
    normalized_sum = np.int64(0)
    for t in range(k):
        normalized[t] = (weights[t] << 15) // total
        normalized_sum += normalized[t]
    normalized[0] += (1 << 15) - normalized_sum
    # z below `low` looks up a cell before the table's first nonzero one (Phi = 0); from `high` on,
    # one at or after its first full one (Phi = 1): the table is monotone
    grid = np.int64(1) << _PHI_SHIFT
    low = (phi_cells[0] - _PHI_OFFSET) * grid - (grid >> 1)
    high = (phi_cells[1] - _PHI_OFFSET) * grid - (grid >> 1)
    half = np.int64(1) << (_MEAN - 1)
    unit = np.int64(1) << _MEAN
    for edge in range(257):
        cumulative[edge] = 0
        steps[edge] = 0
    for t in range(k):
        # edge e (1..255) is (e << MEAN) - half; z >= low  <=>  edge - mean >= ceil(low / inverse)
        first = _ceil_div(means[t] + _ceil_div(low, inverse[t]) + half, unit)
        saturated = _ceil_div(means[t] + _ceil_div(high, inverse[t]) + half, unit)
        first = min(max(first, 1), 256)
        saturated = min(max(saturated, first), 256)
        for edge in range(first, saturated):
            z = ((np.int64(edge) << _MEAN) - half - means[t]) * inverse[t]
            cell = (z + (grid >> 1)) >> _PHI_SHIFT  # from the table's centre
            cumulative[edge] += symmetric_lookup(phi_upper, cell) * normalized[t]
        steps[saturated] += (np.int64(1) << _PROB) * normalized[t]
    previous = np.int64(0)
    running = np.int64(0)
    for edge in range(1, 256):
        running += steps[edge]
        scaled = ((cumulative[edge] + running) * (exact.MIXTURE_UNITS >> 12)) >> (_PROB + 15 - 12)
        out_row[edge - 1] = np.float32(scaled - previous + exact.FLOOR_UNITS)
        previous = scaled
    top = ((np.int64(1) << (_PROB + 15)) * (exact.MIXTURE_UNITS >> 12)) >> (_PROB + 15 - 12)
    out_row[255] = np.float32(top - previous + exact.FLOOR_UNITS)


if AVAILABLE:
    _lookup_sigmoid = numba.njit(inline="always", cache=True)(_lookup_sigmoid)
    _sigmoid = numba.njit(inline="always", cache=True)(_sigmoid)
    _isqrt = numba.njit(inline="always", cache=True)(_isqrt)
    _shift_round = numba.njit(inline="always", cache=True)(_shift_round)
    _ceil_div = numba.njit(inline="always", cache=True)(_ceil_div)
    _cell_unit = numba.njit(inline="always", cache=True)(_cell_unit)
    symmetric_lookup = numba.njit(inline="always", cache=True)(symmetric_lookup)
    _mixture_row = numba.njit(cache=True)(_mixture_row)
lstm_cell_kernel = _jit(_lstm_cell)
lstm_cell_on_states_kernel = _jit(_lstm_cell_on_states)
mcgsm_frequencies_kernel = _jit(_mcgsm_frequencies)
squared_feature_limbs_kernel = _jit(_squared_feature_limbs)


def tables_numpy(name: str) -> np.ndarray:
    """A shipped lookup table as a contiguous int32 array (cached): half the cache of int64."""
    if name not in _numpy_tables:
        _numpy_tables[name] = np.ascontiguousarray(exact.table(name, "cpu").numpy().astype(np.int32))
    return _numpy_tables[name]


_numpy_tables: dict[str, np.ndarray] = {}


def _formats(formats: tuple) -> np.ndarray:
    """A head's formats as the kernel's int64 array (cached: the same few tuples every step)."""
    if formats not in _numpy_formats:
        _numpy_formats[formats] = np.asarray(formats, dtype=np.int64)
    return _numpy_formats[formats]


_numpy_formats: dict[tuple, np.ndarray] = {}


def _phi_cells() -> np.ndarray:
    """The Gaussian CDF table's first nonzero cell and first cell at 1 (it is monotone): below
    and from them on, a component's CDF is flat (cached; read on first use, not on import)."""
    if "phi_cells" not in _numpy_tables:
        phi = tables_numpy("gaussian_cdf")
        _numpy_tables["phi_cells"] = np.array(
            [np.argmax(phi > 0), np.argmax(phi >= 1 << exact.PROB_BITS)], dtype=np.int64
        )
    return _numpy_tables["phi_cells"]


def _phi_upper() -> np.ndarray:
    """The Gaussian CDF table's upper half (:func:`upper_half`; cached). Its last cell is 1
    (checked here), which the head takes for every edge beyond it."""
    if "phi_upper" not in _numpy_tables:
        phi = tables_numpy("gaussian_cdf")
        if len(phi) != 2 * _PHI_OFFSET + 1 or phi[_PHI_LAST] != 1 << exact.PROB_BITS:
            raise RuntimeError("the Gaussian CDF table does not end at 1 (exact.py's generator)")
        _numpy_tables["phi_upper"] = upper_half(phi, _PHI_OFFSET, "Gaussian CDF")
    return _numpy_tables["phi_upper"]


def _exp_zero() -> int:
    """The first cell of the exp(-z) table from which on it holds only zeros (cached)."""
    if "exp_zero" not in _numpy_tables:
        table = tables_numpy("exp_neg")
        nonzero = np.flatnonzero(table)
        _numpy_tables["exp_zero"] = np.array([nonzero[-1] + 1 if len(nonzero) else 0], dtype=np.int64)
    return int(_numpy_tables["exp_zero"][0])


def get_threads() -> int:
    return numba.get_num_threads() if AVAILABLE else 1


def set_threads(threads: int) -> None:
    """Threads the kernels split a step's positions over (numba's own pool)."""
    if AVAILABLE:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


#: Whether the models use the kernels (where numba is there); tests switch it off to compare.
enabled = AVAILABLE


def usable(tensor) -> bool:
    """Whether the kernels can take over for this tensor's computation (CPU, numba, enabled)."""
    return enabled and tensor.device.type == "cpu"


def lstm_cell(pre, c_left, c_up):
    """ExactSpatialLSTM.cell on the CPU, on float64 tensors holding the integers (exact below
    2**53): (h, c) as float64 tensors of integers."""
    import torch

    pre, c_left, c_up = (np.ascontiguousarray(t.numpy()) for t in (pre, c_left, c_up))
    h = np.empty_like(c_left)
    c = np.empty_like(c_left)
    lstm_cell_kernel(pre, c_left, c_up, tables_numpy("sigmoid"), h, c)
    return torch.from_numpy(h), torch.from_numpy(c)


def lstm_cell_on_states(pre, h_states, c_states, cols):
    """ExactSpatialLSTM.cell for the positions in columns ``cols`` (int64), their memories read
    from and their new states written to the skyline ``h_states``, ``c_states`` (W + 1, hidden)
    float64 tensors of integers, in place (``slstm.ExactSpatialLSTMStepper``): returns the new h
    (N, hidden) as a float64 tensor."""
    import torch

    h = np.empty((len(cols), h_states.shape[1]), dtype=np.float64)
    c = np.empty_like(h)
    lstm_cell_on_states_kernel(
        np.ascontiguousarray(pre.numpy()),
        h_states.numpy(),
        c_states.numpy(),
        cols.numpy(),
        tables_numpy("sigmoid"),
        h,
        c,
    )
    return torch.from_numpy(h)


class PreparedHead:
    """ExactMCGSMHead.frequencies on the CPU for one head's weights, called with float64
    projections holding integers, giving (N, 256) float32 tables. ``gate_weight``: the gate as a
    float64 (F, C) tensor of integers. The constants are made into the kernels' arrays once: a
    coding pass calls the head thousands of times with the same weights.

    The gate's products with the squared features' two limbs are one float64 matrix product: its
    terms and every partial sum are integers below 2**53 (ExactMCGSMHead proves the bound from
    the weights), so every order of summation gives the same numbers, and the BLAS's vectorized
    product is several times faster than an integer loop."""

    def __init__(self, gate_weight, half_precisions, caps, priors, variances, num_scales, table_components, formats):
        self.gate_weight = gate_weight
        self.constants = tuple(np.ascontiguousarray(t.numpy()) for t in (half_precisions, caps, priors, variances))
        self.num_scales, self.table_components = num_scales, table_components
        self.formats = _formats(formats)
        self.tables = (tables_numpy("exp_neg"), _phi_upper(), _phi_cells(), _exp_zero())

    def __call__(self, projected):
        import torch

        formats = self.formats
        projected = np.ascontiguousarray(projected.numpy())
        n, num_features = projected.shape[0], self.gate_weight.shape[0]
        limbs = np.empty((2, n, num_features), dtype=np.float64)
        squared_feature_limbs_kernel(projected, formats[0], formats[1], formats[2], num_features, limbs)
        energy_limbs = (torch.from_numpy(limbs) @ self.gate_weight).numpy()
        out = np.empty((n, exact.ALPHABET), dtype=np.float32)
        mcgsm_frequencies_kernel(
            projected,
            energy_limbs,
            *self.constants,
            self.num_scales,
            self.table_components,
            formats,
            *self.tables,
            min(n, 4 * get_threads()),
            out,
        )
        return torch.from_numpy(out)
