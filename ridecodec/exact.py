"""Exact arithmetic for density models: tables that are bit-identical on every device.

A range coder needs the decoder's probability tables to equal the encoder's to the last bit, and
float arithmetic does not give that across machines: torch's AVX-512, AVX2 and generic CPU
kernels vectorise softmax, sigmoid and fused multiply-adds differently, a matrix product's
summation order changes with the batch size and the library, and a GPU differs again. So a model
whose files must decode anywhere computes its tables from integers only:

* **Fixed point.** A real number ``v`` at scale ``b`` bits is the integer ``round(v * 2**b)``,
  held in an int64 tensor. Elementwise integer arithmetic (``+ - *``, shifts, floor division,
  comparisons, gathers) is exact on every device.
* **Matrix products and convolutions** (:class:`ExactLinear`, :class:`ExactConv2d` with
  PixelCNN's :func:`causal_mask`) run in float64 on integer values,
  where a bound proven from the weights and the inputs' range keeps every partial sum below
  2**53: then every product and every sum is an exact integer, whatever the order, blocking,
  fused multiply-add or device (BLAS, MKL, cuBLAS; float64 has no TF32), and the result is
  converted back to int64 exactly. Inputs whose bound is too big are split into limbs.
* **Nonlinearities** (:func:`sigmoid`, :func:`tanh`, :func:`exp_neg`, :func:`gaussian_cdf`,
  :func:`logistic_cdf`) are lookups in integer tables shipped with the package
  (``exact_tables.npz``, generated once by :func:`build_tables` and pinned by its SHA-256), on a
  fixed-point grid, rounding the argument to the nearest grid point.
* **Probability tables** (:func:`mixture_frequencies`) are positive integer frequencies, at most
  2**24 each, returned as float32 (which holds them exactly): the engine hands the coder the same
  numbers on every device. No value is impossible.

Integer reductions (``sum`` over a dimension) are exact in any order, so they are safe too; what
must never appear in an exact model's path is a float operation on non-integers whose rounding
depends on the kernel (softmax, erf, exp, sigmoid, float sums, addcmul).

Plug-in authors: build your model from these pieces and set ``exact_across_devices = True``;
``ridecodec.testing`` checks the claim (README, "Write your own model").
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from .errors import DamagedInstallationError

#: Largest integer below which float64 arithmetic on integers is exact.
FLOAT64_EXACT = 2**53

#: Pre-activations and the outputs of matrix products (ExactLinear): real numbers at 2**-32.
PRE_BITS = 32
#: Activations (sigmoid, tanh, hidden states, memory cells): real numbers at 2**-16.
ACT_BITS = 16
#: Probabilities inside the tables (CDF values, exp weights): 2**-24.
PROB_BITS = 24

#: The lookup grids: (first argument, grid bits, number of entries). Arguments outside the grid
#: are clamped to its ends, where each function is flat to within its output resolution.
SIGMOID_GRID = (-16.0, 12, 2 * 16 * 4096 + 1)  # also tanh (tanh x = 2 sigmoid 2x - 1) and the logistic CDF
EXP_NEG_GRID = (0.0, 12, 32 * 4096 + 1)  # exp(-z), z in [0, 32]
GAUSSIAN_CDF_GRID = (-8.0, 12, 2 * 8 * 4096 + 1)

TABLES_FILE = "exact_tables.npz"
#: SHA-256 of the shipped tables' contents (see :func:`tables_digest`): a changed table would
#: change every exact model's tables, so it is refused rather than used.
TABLES_SHA256 = "9ead66d3c91c88c4af1ff40128bb14e36630f60a89091afcdc91510e080a4c40"


def _grid_points(grid) -> np.ndarray:
    first, bits, count = grid
    return first + np.arange(count, dtype=np.float64) / 2**bits


def build_tables() -> dict[str, np.ndarray]:
    """Compute the lookup tables (float64 math, then rounded): how ``exact_tables.npz`` was made.
    Run once; the shipped file, not this function, defines the tables (a platform's libm may
    differ in a last bit, which could move a rounding)."""
    x = _grid_points(SIGMOID_GRID)
    sigmoid_values = 1.0 / (1.0 + np.exp(-x))
    z = _grid_points(EXP_NEG_GRID)
    g = _grid_points(GAUSSIAN_CDF_GRID)
    gaussian = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in g])
    scale = 2.0**PROB_BITS
    return {
        "sigmoid": np.floor(sigmoid_values * scale + 0.5).astype(np.int32),
        "exp_neg": np.floor(np.exp(-z) * scale + 0.5).astype(np.int32),
        "gaussian_cdf": np.floor(gaussian * scale + 0.5).astype(np.int32),
    }


def tables_digest(tables: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tables):
        array = np.ascontiguousarray(tables[name], dtype="<i4")
        digest.update(f"{name}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _shipped_tables() -> dict[str, np.ndarray]:
    with resources.files("ridecodec").joinpath(TABLES_FILE).open("rb") as handle, np.load(handle) as archive:
        tables = {name: archive[name].astype(np.int32) for name in archive.files}
    if tables_digest(tables) != TABLES_SHA256:
        raise DamagedInstallationError(
            f"ridecodec's {TABLES_FILE} is damaged (its SHA-256 differs from the release's); reinstall ridecodec"
        )
    return tables


_device_tables: dict[tuple[str, torch.device], torch.Tensor] = {}


def table(name: str, device: torch.device | str) -> torch.Tensor:
    """A shipped lookup table as an int64 tensor on ``device`` (cached)."""
    device = torch.device(device)
    key = (name, device)
    if key not in _device_tables:
        _device_tables[key] = torch.from_numpy(_shipped_tables()[name].astype(np.int64)).to(device)
    return _device_tables[key]


# --- fixed point ---------------------------------------------------------------------------------


def to_fixed(values: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Real numbers -> int64 at scale 2**-bits (round half up, in float64). For converting
    weights once, when a model is exported; never in a model's coding path."""
    values = torch.as_tensor(values, dtype=torch.float64)
    return torch.floor(values * 2.0**bits + 0.5).to(torch.int64)


def from_fixed(values: torch.Tensor, bits: int) -> torch.Tensor:
    """int64 at scale 2**-bits -> float64 (for inspection and tests)."""
    return values.to(torch.float64) / 2.0**bits


def shift_round(values: torch.Tensor, bits: int) -> torch.Tensor:
    """values * 2**-bits rounded to the nearest integer (halves up): a rescaling between fixed-point
    scales. ``bits`` must be positive."""
    return (values + (1 << (bits - 1))) >> bits


def _lookup(values: torch.Tensor, in_bits: int, grid, name: str) -> torch.Tensor:
    """Table ``name`` at ``values`` (int64 at 2**-in_bits), the argument rounded to the grid."""
    first, grid_bits, count = grid
    offset = int(round(-first * 2**grid_bits))  # noqa: RUF046 (kept: round() of a numpy scalar is a float in numpy 1.x)
    shift = in_bits - grid_bits
    index = (shift_round(values, shift) if shift > 0 else values << -shift) + offset
    index = index.clamp_(0, count - 1)
    # index_select on the flat index: several times faster than advanced indexing on the CPU
    return table(name, values.device).index_select(0, index.view(-1)).view(index.shape)


def _interpolated_lookup(values: torch.Tensor, in_bits: int, grid, name: str) -> torch.Tensor:
    """Table ``name`` at ``values`` (int64 at 2**-in_bits, in_bits above the grid's bits),
    interpolated linearly between grid points in integer arithmetic: for arguments finer than
    the grid (a wide distribution's bins)."""
    first, grid_bits, count = grid
    offset = int(round(-first * 2**grid_bits))  # noqa: RUF046 (kept: round() of a numpy scalar is a float in numpy 1.x)
    shift = in_bits - grid_bits
    index = (values >> shift) + offset
    fraction = values & ((1 << shift) - 1)
    fraction = torch.where(index < 0, 0, torch.where(index >= count - 1, 0, fraction))
    index = index.clamp(0, count - 1)
    lookup = table(name, values.device)
    low = lookup.index_select(0, index.view(-1)).view(index.shape)
    high = lookup.index_select(0, (index + 1).clamp_(max=count - 1).view(-1)).view(index.shape)
    return low + (((high - low) * fraction) >> shift)


def sigmoid(values: torch.Tensor, in_bits: int = PRE_BITS, out_bits: int = ACT_BITS) -> torch.Tensor:
    """sigmoid of int64 fixed-point ``values`` (scale 2**-in_bits), at scale 2**-out_bits."""
    return shift_round(_lookup(values, in_bits, SIGMOID_GRID, "sigmoid"), PROB_BITS - out_bits)


def tanh(values: torch.Tensor, in_bits: int = PRE_BITS, out_bits: int = ACT_BITS) -> torch.Tensor:
    """tanh of int64 fixed-point ``values``, as 2 sigmoid(2x) - 1 from the sigmoid table."""
    doubled = _lookup(values, in_bits - 1, SIGMOID_GRID, "sigmoid")  # sigmoid(2x)
    return shift_round(2 * doubled - (1 << PROB_BITS), PROB_BITS - out_bits)


def exp_neg(values: torch.Tensor, in_bits: int, out_bits: int = PROB_BITS) -> torch.Tensor:
    """exp(-z) for int64 fixed-point z >= 0 (larger z gives 0 beyond the table)."""
    result = _lookup(values, in_bits, EXP_NEG_GRID, "exp_neg")  # the table ends at exp(-32), 0
    return result if out_bits == PROB_BITS else shift_round(result, PROB_BITS - out_bits)


def gaussian_cdf(values: torch.Tensor, in_bits: int) -> torch.Tensor:
    """Phi(z), the standard normal CDF, at scale 2**-PROB_BITS."""
    return _lookup(values, in_bits, GAUSSIAN_CDF_GRID, "gaussian_cdf")


def logistic_cdf(values: torch.Tensor, in_bits: int) -> torch.Tensor:
    """The standard logistic CDF (= sigmoid), at scale 2**-PROB_BITS."""
    return _lookup(values, in_bits, SIGMOID_GRID, "sigmoid")


def isqrt(values: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(n)) of int64 values 0 <= n < 2**52, exactly: float64 sqrt gives an estimate
    within one of the answer, and integer comparisons correct it on every device."""
    root = torch.sqrt(values.to(torch.float64)).to(torch.int64)
    root = root - (root * root > values).to(torch.int64)
    return root + ((root + 1) * (root + 1) <= values).to(torch.int64)


# --- exact matrix products -----------------------------------------------------------------------


class ExactLinear:
    """``x @ weight + bias`` for int64 x, exact on every device.

    ``weight`` (D, K) and ``bias`` (K,) are int64; inputs are promised to satisfy |x| <= input_bound
    (callers clamp to it). When input_bound * (largest column sum of |weight|) is below 2**53 the
    product is one float64 matrix product; otherwise the inputs are split into ``limbs`` pieces of
    ``limb_bits`` bits each, one product per piece, recombined in int64. The bound is checked here,
    once: if it fails, no limb split helps and construction fails (the model's weights are too big
    for its fixed-point formats)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, input_bound: int):
        if weight.dtype != torch.int64 or (bias is not None and bias.dtype != torch.int64):
            raise TypeError("ExactLinear takes int64 weights")
        self.input_bound = int(input_bound)
        column_bound = int(weight.abs().sum(0).max()) if weight.numel() else 0
        bias_bound = int(bias.abs().max()) if bias is not None and bias.numel() else 0
        if column_bound * self.input_bound + bias_bound >= 2**62:
            raise ValueError("an exact product's result would overflow int64")
        # limbs of limb_bits bits, each limb's product below 2**53 (the top limb, signed, may
        # reach -2**limb_bits)
        input_bits = max(1, self.input_bound.bit_length())
        self.limb_bits = input_bits
        while self.limb_bits > 0 and column_bound << self.limb_bits >= FLOAT64_EXACT:
            self.limb_bits -= 1
        if self.limb_bits == 0:
            raise ValueError("weights too large for an exact product")
        self.limbs = -(-input_bits // self.limb_bits)
        self.weight = weight.to(torch.float64)
        self.bias = bias
        #: the largest magnitude a result can have (for callers adding results together)
        self.result_bound = column_bound * self.input_bound + bias_bound
        self.float_bias = None if bias is None else bias.to(torch.float64)

    def float_result(self, x: torch.Tensor) -> torch.Tensor:
        """The same integers as ``self(x)``, held in float64 (exact: they are below 2**53), for a
        float64 input of integers: one matrix product, no conversions. Only for layers that need
        no limbs and whose results with the bias stay below 2**53."""
        if self.limbs != 1 or self.result_bound >= FLOAT64_EXACT:
            raise ValueError("this product needs int64 arithmetic (float_result)")
        result = x @ self.weight
        return result if self.float_bias is None else result.add_(self.float_bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.limbs == 1:
            result = (x.to(torch.float64) @ self.weight).to(torch.int64)
        else:
            # two's-complement limbs of x: x = sum_k limb_k * 2**(k * limb_bits), the top limb signed
            mask = (1 << self.limb_bits) - 1
            combined: torch.Tensor | None = None
            for k in reversed(range(self.limbs)):
                limb = x >> (k * self.limb_bits)
                if k < self.limbs - 1:
                    limb = limb & mask
                part = (limb.to(torch.float64) @ self.weight).to(torch.int64)
                combined = part if combined is None else (combined << self.limb_bits) + part
            assert combined is not None  # (limbs > 1: the loop ran)
            result = combined
        return result if self.bias is None else result + self.bias


def causal_mask(
    out_channels: int, in_channels: int, height: int, width: int, kind: str, groups: int = 1
) -> torch.Tensor:
    """PixelCNN's masks (van den Oord et al. 2016) for a (height x width) kernel, odd sizes: 1 on
    the rows above the centre and left of it in its row; at the centre, with the channels split
    into ``groups`` ordered groups (R, G, B), output group g sees input groups before g (kind "A",
    the first layer: a pixel never sees itself) or up to g (kind "B"). (out, in, height, width)
    int64 of 0 and 1."""
    if kind not in ("A", "B") or height % 2 == 0 or width % 2 == 0:
        raise ValueError("a causal mask is of kind 'A' or 'B', for odd kernel sizes")
    if out_channels % groups or in_channels % groups:
        raise ValueError("channels must split evenly into the groups")
    mask = torch.zeros(out_channels, in_channels, height, width, dtype=torch.int64)
    centre_row, centre_col = height // 2, width // 2
    mask[:, :, :centre_row] = 1
    mask[:, :, centre_row, :centre_col] = 1
    out_group = torch.arange(out_channels) // (out_channels // groups)
    in_group = torch.arange(in_channels) // (in_channels // groups)
    allowed = in_group[None, :] < out_group[:, None] if kind == "A" else in_group[None, :] <= out_group[:, None]
    mask[:, :, centre_row, centre_col] = allowed.to(torch.int64)
    return mask


class ExactConv2d:
    """A 2-D convolution (same padding: zeros outside the image, odd kernel sizes) of int64
    images, exact on every device: float64 on integers, with the bound of :class:`ExactLinear`
    (every output's partial sums below 2**53, proven from the weights and ``input_bound``).
    ``mask``: a 0/1 tensor like the weight (:func:`causal_mask` for a masked convolution).
    Inputs (B, in, H, W), int64 with |x| <= input_bound; outputs (B, out, H, W) int64, at the
    scale of the inputs' times the weights'."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, input_bound: int, mask: torch.Tensor | None = None
    ):
        if weight.dtype != torch.int64 or weight.dim() != 4 or weight.shape[2] % 2 == 0 or weight.shape[3] % 2 == 0:
            raise TypeError("ExactConv2d takes int64 weights (out, in, height, width), odd sizes")
        if mask is not None:
            weight = weight * mask.to(weight.device, torch.int64)
        bias_bound = int(bias.abs().max()) if bias is not None and bias.numel() else 0
        self.result_bound = int(input_bound) * int(weight.abs().flatten(1).sum(1).max()) + bias_bound
        if self.result_bound >= FLOAT64_EXACT:
            raise ValueError("weights too large for an exact convolution of inputs this large")
        self.weight = weight.to(torch.float64)
        self.bias = None if bias is None else bias.to(torch.float64)
        self.padding = (weight.shape[2] // 2, weight.shape[3] // 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        result = torch.nn.functional.conv2d(x.to(torch.float64), self.weight, self.bias, padding=self.padding)
        return result.to(torch.int64)


# --- probability tables --------------------------------------------------------------------------

#: Every table has this many entries (8-bit values).
ALPHABET = 256
#: Mixture mass is distributed over this many frequency units, plus ...
MIXTURE_UNITS = 2**24 - 2**12
#: ... this many on every value (2**12 in all: a 2**-12 uniform floor), so no value costs more
#: than about 20 bits and none is impossible.
FLOOR_UNITS = 2**12 // ALPHABET
#: Fixed-point scale of means and of the bin edges (pixel units) in mixture_frequencies.
MEAN_BITS = 8
#: Means are clamped to this range (pixel units): beyond it every bin's mass is in a tail.
MEAN_RANGE = (-1024, 1280)
#: Fixed-point scale of the standardized argument z = (edge - mean) / scale.
Z_BITS = 36
#: Inverse scales as (2**_INVERSE_NUMERATOR_BITS) // (scale at 2**-_SCALE_BITS):
_SCALE_BITS = 12
_INVERSE_NUMERATOR_BITS = Z_BITS - MEAN_BITS + _SCALE_BITS

_edge_cache: dict[torch.device, torch.Tensor] = {}


def _inner_edges(device: torch.device) -> torch.Tensor:
    """The 255 bin edges between 8-bit values, 0.5 .. 254.5, at 2**-MEAN_BITS, int64."""
    if device not in _edge_cache:
        _edge_cache[device] = ((torch.arange(1, ALPHABET, dtype=torch.int64) << MEAN_BITS) - (1 << (MEAN_BITS - 1))).to(
            device
        )
    return _edge_cache[device]


def inverse_scales(variances: torch.Tensor) -> torch.Tensor:
    """For variances in pixel units squared at 2**-(2 * MEAN_BITS) (int64, >= 1): the inverse
    standard deviations as :func:`mixture_frequencies` takes them."""
    std = isqrt(variances << (2 * (_SCALE_BITS - MEAN_BITS))).clamp_(min=1)  # at 2**-_SCALE_BITS
    return (1 << _INVERSE_NUMERATOR_BITS) // std


def inverse_scale_of(scale: float) -> int:
    """A constant scale (pixel units) as :func:`mixture_frequencies` takes it, e.g. a fixed
    logistic scale of a plug-in. Its arithmetic is exact (a power-of-two scaling, a floor and
    integer operations), so every machine gets the same integer."""
    variance = to_fixed(torch.tensor([[float(scale) ** 2]]), 2 * MEAN_BITS).clamp(min=1)
    return int(inverse_scales(variance))


def mixture_frequencies(
    weights: torch.Tensor, means: torch.Tensor, inverse_scale: torch.Tensor, cdf: str = "gaussian"
) -> torch.Tensor:
    """Integer frequency tables (N, 256), returned as float32, of N mixtures of K components.

    ``weights`` (N, K): non-negative int64, each row summing to a positive total below 2**40;
    ``means`` (N, K): int64 pixel units at 2**-MEAN_BITS; ``inverse_scale`` (N, K): from
    :func:`inverse_scales` (Gaussian: the standard deviation; logistic: its scale parameter).
    ``cdf``: "gaussian" or "logistic".

    Value k's frequency is FLOOR_UNITS plus its share of MIXTURE_UNITS: the mixture's mass on
    [k - 1/2, k + 1/2], the bins of 0 and 255 taking the tails, computed from the CDF at the 255
    inner edges. Every frequency is a positive integer below 2**24, the same on every device.
    """
    n, _ = weights.shape
    device = weights.device
    means = means.clamp(MEAN_RANGE[0] << MEAN_BITS, MEAN_RANGE[1] << MEAN_BITS)
    # normalized weights summing to exactly 2**15 per row; the rounding remainder goes to the first
    total = weights.sum(1, keepdim=True).clamp_(min=1)
    normalized = (weights << 15) // total
    normalized[:, :1] += (1 << 15) - normalized.sum(1, keepdim=True)
    # z at 2**-Z_BITS for every component and edge: (edge - mean) * inverse scale
    z = (_inner_edges(device)[None, None, :] - means[:, :, None]) * inverse_scale[:, :, None]  # (N, K, 255)
    values = gaussian_cdf(z, Z_BITS) if cdf == "gaussian" else logistic_cdf(z, Z_BITS)
    cumulative = (values * normalized[:, :, None]).sum(1)  # (N, 255) at 2**-(PROB_BITS + 15)
    top = torch.full((n, 1), 1 << (PROB_BITS + 15), dtype=torch.int64, device=device)
    cumulative = torch.cat([torch.zeros_like(top), cumulative, top], dim=1)  # (N, 257)
    # frequencies: scale the CDF to MIXTURE_UNITS first, then take differences, so they sum exactly
    scaled = (cumulative * (MIXTURE_UNITS >> 12)) >> (PROB_BITS + 15 - 12)
    return (torch.diff(scaled, dim=1) + FLOOR_UNITS).to(torch.float32)


def softmax_frequencies(logits: torch.Tensor, in_bits: int) -> torch.Tensor:
    """Integer frequency tables (N, 256), returned as float32, of a softmax over 256 logits (the
    PixelRNN family's output): ``logits`` (N, 256) int64 at 2**-``in_bits``.

    Each logit's weight is exp(logit - the row's maximum) from the ``exp_neg`` table (at 2**-24;
    the maximum's is 2**24); the cumulative weights, scaled to MIXTURE_UNITS, are differenced and
    FLOOR_UNITS added, so the 256 frequencies are positive integers summing to exactly 2**24, the
    same on every device."""
    logits = logits.contiguous()
    difference = logits.max(1, keepdim=True).values - logits  # >= 0
    weights = exp_neg(difference, in_bits)
    cumulative = torch.cumsum(weights, 1)
    total = cumulative[:, -1:]
    scaled = (cumulative * MIXTURE_UNITS) // total  # < 2**32 * 2**24: exact in int64
    scaled = torch.cat([torch.zeros_like(total), scaled], 1)
    return (torch.diff(scaled, dim=1) + FLOOR_UNITS).to(torch.float32)


def softmax_log_prob(
    logits_of, features: torch.Tensor, symbols: torch.Tensor, in_bits: int, chunk: int = 16384
) -> torch.Tensor:
    """Natural log-probability (a float64 scalar) of ``symbols`` (N,) under the tables
    :func:`softmax_frequencies` makes of ``logits_of(features[rows])`` (int64 logits at
    2**-``in_bits``), the tables the coder is handed: what a softmax model's ``log_prob`` returns
    for one image. Computed ``chunk`` rows at a time, so that memory stays bounded on large images."""
    total = torch.zeros((), dtype=torch.float64, device=features.device)
    for start in range(0, len(symbols), chunk):
        table = softmax_frequencies(logits_of(features[start : start + chunk]), in_bits).double()
        actual = table.gather(1, symbols[start : start + chunk, None].long())[:, 0]
        total += torch.log(actual / table.sum(1)).sum()
    return total


def fixed_point_layer(
    name: str, weight: torch.Tensor, bias: torch.Tensor | None, input_bits: int, weight_bits: int
) -> dict[str, np.ndarray]:
    """A trained float layer -> the int32 arrays a model ships (``{name}_weight`` and, with a bias,
    ``{name}_bias``): weights at 2**-``weight_bits`` (mask them first), the bias at the scale of the
    layer's products, 2**-(``input_bits`` + ``weight_bits``). For exporting weights once; raises
    ValueError if a value does not fit int32."""
    values = {f"{name}_weight": to_fixed(weight.detach().double(), weight_bits)}
    if bias is not None:
        values[f"{name}_bias"] = to_fixed(bias.detach().double(), input_bits + weight_bits)
    arrays = {}
    for key, value in values.items():
        if value.numel() and int(value.abs().max()) >= 2**31:
            raise ValueError(f"{key} does not fit int32 at these scales")
        arrays[key] = value.cpu().numpy().astype(np.int32)
    return arrays


def _all_edges(device: torch.device) -> torch.Tensor:
    """The 257 bin edges -0.5 .. 255.5 at 2**-MEAN_BITS, int64."""
    return (torch.arange(ALPHABET + 1, dtype=torch.int64, device=device) << MEAN_BITS) - (1 << (MEAN_BITS - 1))


def truncated_frequencies(means: torch.Tensor, inverse_scale: torch.Tensor, cdf: str = "logistic") -> torch.Tensor:
    """Integer frequency tables (N, 256), as float32, of N distributions *conditioned* on the
    window [-1/2, 255 + 1/2]: value k's share of MIXTURE_UNITS is the mass on [k - 1/2, k + 1/2]
    divided by the window's mass (no tails folded into the end values, unlike
    :func:`mixture_frequencies`), plus FLOOR_UNITS. For a value known to lie in a window of 256,
    e.g. the low byte of a 16-bit sample whose high byte is known.

    ``means`` (N,): int64 at 2**-MEAN_BITS, any distance from the window (callers keep them within
    a few scales of it, where the CDF table still resolves the window's mass; beyond that a
    logistic's shape over the window barely changes); ``inverse_scale`` (N,): from
    :func:`inverse_scales`. A window with no mass on the table's grid gets the uniform table."""
    z = (_all_edges(means.device)[None, :] - means[:, None]) * inverse_scale[:, None]  # (N, 257)
    grid, name = (GAUSSIAN_CDF_GRID, "gaussian_cdf") if cdf == "gaussian" else (SIGMOID_GRID, "sigmoid")
    # interpolated: a wide distribution's bins are narrower than the table's grid
    cumulative = _interpolated_lookup(z, Z_BITS, grid, name)
    cumulative = cumulative - cumulative[:, :1]  # mass from the window's left edge, at 2**-PROB_BITS
    window = cumulative[:, -1:]
    empty = window == 0
    uniform = torch.arange(ALPHABET + 1, dtype=torch.int64, device=means.device)[None, :]
    cumulative = torch.where(empty, uniform, cumulative)
    window = torch.where(empty, torch.full_like(window, ALPHABET), window)
    scaled = (cumulative * MIXTURE_UNITS) // window  # both < 2**25: no overflow
    return (torch.diff(scaled, dim=1) + FLOOR_UNITS).to(torch.float32)
