"""Spatial LSTM layers (Theis & Bethge 2015, "Generative Image Modeling Using Spatial LSTMs").

At pixel (i, j) a layer reads its input u_ij (the first layer: the pixel's causal neighbourhood
x_<ij; a stacked layer: the hidden state of the layer below at the same position) and the states
of its left and upper neighbours:

    (i, o, f_c, f_r) = sigmoid(T [u_ij; h_(i,j-1); h_(i-1,j)])     gates
    g                = tanh(T [u_ij; h_(i,j-1); h_(i-1,j)])         candidate
    c_ij = g * i + c_(i,j-1) * f_c + c_(i-1,j) * f_r                 memory
    h_ij = tanh(c_ij * o)                                           hidden state

T is affine (``input_weights``, ``recurrent_weights``, ``bias``). States outside the image are
zero. The *extended* variant also feeds the neighbouring memory cells c_(i,j-1) and c_(i-1,j)
to T. h_ij depends on everything up and to the left of (i, j), through the recurrence; to the
right it sees only what the inputs see.

Two ways of running a layer stack, giving the same states up to the quantization's precision:

* :meth:`SpatialLSTMStack.scan`, whole images or patches at once (training, ``log_prob``): the
  positions of one anti-diagonal i + j = d depend only on diagonal d - 1, so a layer costs
  H + W - 1 batched steps. Bands of rows can be scanned one after another, handing the last
  row's states down, so memory follows the band, not the image.
* :class:`ExactSpatialLSTMStepper`, for the coding engine: the layers quantized to integer
  arithmetic (:class:`ExactSpatialLSTM`), computing the states of the positions of one wavefront
  step from stored states. See its docstring for why one row of states per layer is all it keeps.

The scan and the exact layers share the weight layout, and tests check that their states agree to
the quantization's precision.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, cast

import torch

from .. import exact, exact_cpu

#: Gates per hidden unit, in the order of the pre-activation columns: i, o, f_c, f_r (sigmoid)
#: and g (tanh).
NUM_GATES = 5
#: Memory cells are clipped to +-CELL_LIMIT. Nothing in the equations keeps c bounded: where
#: f_c + f_r > 1, c grows geometrically along the diagonals, and a model trained on 22 x 22
#: patches never sees what that does 500 pixels in. (Measured with random weights and zero
#: forget-gate biases: c reached 1e8 by diagonal 64 of a 512 x 512 image, inf by diagonal 256,
#: then NaN; whole BSDS images gave NaN likelihoods.) h = tanh(c * o) is saturated long before
#: the limit, so a well-behaved model never meets it; a misbehaving one stays finite.
CELL_LIMIT = 50.0
#: Initial bias of the forget gates f_c and f_r: sigmoid(-1) = 0.27 each, so the memory starts
#: out leaky (f_c + f_r around 0.5) rather than at the edge of growing (1, with zero bias).
FORGET_BIAS = -1.0


class SpatialLSTM(torch.nn.Module):
    """One spatial LSTM layer: its affine map T and its cell equations."""

    def __init__(self, dim_in: int, num_hiddens: int, extended: bool = False):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.extended = extended
        #: the recurrent inputs, stacked in this order: h_(i,j-1), h_(i-1,j) [, c_(i,j-1), c_(i-1,j)]
        self.num_recurrent = 4 if extended else 2
        gates = NUM_GATES * num_hiddens  # pre-activation columns: i, o, f_c, f_r, g, each `hidden` wide
        self.input_weights = torch.nn.Parameter(torch.zeros(dim_in, gates))
        self.recurrent_weights = torch.nn.Parameter(torch.zeros(self.num_recurrent * num_hiddens, gates))
        self.bias = torch.nn.Parameter(torch.zeros(gates))

    def initialize(self, generator: torch.Generator) -> None:
        """Random weights with unit-variance pre-activations for unit-variance inputs; zero
        bias except for the forget gates (FORGET_BIAS)."""
        hidden = self.num_hiddens
        with torch.no_grad():
            for weights in (self.input_weights, self.recurrent_weights):
                weights.copy_(torch.randn(weights.shape, generator=generator) / math.sqrt(len(weights)))
            self.bias.zero_()
            self.bias[2 * hidden : 4 * hidden] = FORGET_BIAS  # f_c, f_r

    def cell(self, pre: torch.Tensor, c_left: torch.Tensor, c_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's equations, from pre-activations (N, 5 * hidden) and the neighbours'
        memories (N, hidden) to (h, c) of the positions, each (N, hidden)."""
        hidden = self.num_hiddens
        i, o, f_c, f_r = torch.sigmoid(pre[:, : 4 * hidden]).split(hidden, dim=1)
        g = torch.tanh(pre[:, 4 * hidden :])
        c = torch.addcmul(torch.addcmul(g * i, c_left, f_c), c_up, f_r).clamp(-CELL_LIMIT, CELL_LIMIT)
        return torch.tanh(c * o), c


class RowStates(NamedTuple):
    """One layer's states along a row of positions, what the next band of rows reads above it."""

    h: torch.Tensor  # (B, W, hidden)
    c: torch.Tensor  # (B, W, hidden)


class Diagonals(NamedTuple):
    """The anti-diagonals d = i + j of an H x W grid, in the order a scan visits them."""

    first_rows: list[int]  # per diagonal, its first row
    indices: list[torch.Tensor]  # per diagonal, the raster indices i * W + j of its positions, rows ascending
    to_raster: torch.Tensor  # the permutation from diagonal order back to raster order


@functools.lru_cache(maxsize=16)
def _diagonals(height: int, width: int, device: torch.device) -> Diagonals:
    first_rows, indices = [], []
    for d in range(height + width - 1):
        lo, hi = max(0, d - width + 1), min(height - 1, d)
        rows = torch.arange(lo, hi + 1)
        first_rows.append(lo)
        indices.append((rows * width + d - rows).to(device))
    to_raster = torch.argsort(torch.cat(indices).cpu()).to(device)
    return Diagonals(first_rows, indices, to_raster)


class SpatialLSTMStack(torch.nn.Module):
    """Layers stacked as in the paper: layer l > 0 reads the hidden state of layer l - 1 at the
    same position; the top layer's hidden state is the stack's output."""

    def __init__(self, dim_in: int, num_hiddens: int, num_layers: int, extended: bool = False):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.layers = torch.nn.ModuleList(
            SpatialLSTM(dim_in if l == 0 else num_hiddens, num_hiddens, extended) for l in range(num_layers)
        )

    def initialize(self, generator: torch.Generator) -> None:
        for layer in cast("list[SpatialLSTM]", self.layers):
            layer.initialize(generator)

    def scan(
        self, first_pre: torch.Tensor, tops: list[RowStates] | None = None
    ) -> tuple[torch.Tensor, list[RowStates]]:
        """Run the stack over images or patches.

        ``first_pre`` (B, H, W, 5 * hidden): the first layer's pre-activations from its inputs,
        bias included (the caller folds its input normalisation into them). ``tops``: per layer,
        the states of the row just above, or None for the image's top edge. Returns the top
        layer's h (B, H, W, hidden) and, per layer, the states of the last row, to continue with
        the next band of rows.
        """
        pre = first_pre
        h = first_pre  # the layer below's states: set by each layer, read from the second on
        last_rows = []
        for l, layer in enumerate(cast("list[SpatialLSTM]", self.layers)):
            if l > 0:  # the layer below's states, at the same positions
                pre = torch.addmm(layer.bias, h.flatten(0, 2), layer.input_weights).view(*h.shape[:3], -1)
            h, last_row = _scan_layer(layer, pre, None if tops is None else tops[l])
            last_rows.append(last_row)
        return h, last_rows


def _scan_layer(layer: SpatialLSTM, pre: torch.Tensor, top: RowStates | None) -> tuple[torch.Tensor, RowStates]:
    """One layer over (B, H, W, 5 * hidden) input pre-activations, anti-diagonal by anti-diagonal.

    Diagonal d holds rows lo..hi (position (i, d - i) for row i). The left neighbour of (i, d - i)
    is row i of diagonal d - 1 and its upper neighbour is row i - 1 there, so padding the previous
    diagonal's states with a zero row on either side turns both into contiguous slices: the
    zeros are the states outside the image (column -1, row -1), unless ``top`` gives row -1.
    Everything is functional (no in-place writes), so autograd can run through it."""
    batch, height, width, _ = pre.shape
    hidden = layer.num_hiddens
    first_rows, indices, to_raster = _diagonals(height, width, pre.device)
    flat_pre = pre.reshape(batch, height * width, -1)
    zero = pre.new_zeros(batch, 1, hidden)
    h_prev = c_prev = pre.new_zeros(batch, 0, hidden)
    lo_prev = 0
    hs, cs = [], []
    for d, (lo, index) in enumerate(zip(first_rows, indices)):
        n = len(index)
        shift = lo - lo_prev  # 0, or 1 once row lo_prev has reached the last column
        h_pad, c_pad = torch.cat([zero, h_prev, zero], 1), torch.cat([zero, c_prev, zero], 1)
        h_left, c_left = h_pad[:, shift + 1 : shift + 1 + n], c_pad[:, shift + 1 : shift + 1 + n]
        h_up, c_up = h_pad[:, shift : shift + n], c_pad[:, shift : shift + n]
        if top is not None and lo == 0:  # row 0 reads the band above instead of zeros
            h_up = torch.cat([top.h[:, d : d + 1], h_up[:, 1:]], 1)
            c_up = torch.cat([top.c[:, d : d + 1], c_up[:, 1:]], 1)
        recurrent = torch.cat([h_left, h_up] + ([c_left, c_up] if layer.extended else []), 2).reshape(batch * n, -1)
        step_pre = torch.addmm(flat_pre[:, index].reshape(batch * n, -1), recurrent, layer.recurrent_weights)
        h, c = layer.cell(step_pre, c_left.reshape(batch * n, hidden), c_up.reshape(batch * n, hidden))
        h_prev, c_prev = h.view(batch, n, hidden), c.view(batch, n, hidden)
        hs.append(h_prev)
        cs.append(c_prev)
        lo_prev = lo
    h_all = torch.cat(hs, 1)[:, to_raster].view(batch, height, width, hidden)
    # the last row is the last position of each diagonal from d = H - 1 on
    last_row = RowStates(*(torch.stack([s[:, -1] for s in states[height - 1 :]], 1) for states in (hs, cs)))
    return h_all, last_row


class ExactSpatialLSTM(torch.nn.Module):
    """One spatial LSTM layer in integer arithmetic (exact.py): the same equations as
    :class:`SpatialLSTM`, with the sigmoid and tanh from lookup tables and every number fixed
    point, so its states are identical on every device.

    Formats: pre-activations at 2**-PRE_BITS; gates, g, h and c at 2**-ACT_BITS, c clipped to
    +-CELL_LIMIT. Buffers (int64): ``recurrent_weights`` (2 or 4 hidden, 5 hidden) at
    2**-(PRE_BITS - ACT_BITS), and for a stacked layer ``input_weights`` (hidden, 5 hidden) at the
    same scale and ``bias`` at 2**-PRE_BITS (the first layer's input map is folded into the
    model's input matrix)."""

    # buffers (register_buffer), typed for mypy; a first layer has no input_weights and no bias
    recurrent_weights: torch.Tensor
    input_weights: torch.Tensor
    bias: torch.Tensor

    def __init__(self, num_hiddens: int, extended: bool, stacked: bool):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.extended = extended
        gates = NUM_GATES * num_hiddens
        self.register_buffer(
            "recurrent_weights", torch.zeros((4 if extended else 2) * num_hiddens, gates, dtype=torch.int64)
        )
        if stacked:
            self.register_buffer("input_weights", torch.zeros(num_hiddens, gates, dtype=torch.int64))
            self.register_buffer("bias", torch.zeros(gates, dtype=torch.int64))
        self._linear: dict[tuple[torch.device, int], tuple[exact.ExactLinear, exact.ExactLinear | None]] = {}

    @classmethod
    def quantize(cls, layer: SpatialLSTM, stacked: bool) -> ExactSpatialLSTM:
        weight_bits = exact.PRE_BITS - exact.ACT_BITS
        exact_layer = cls(layer.num_hiddens, layer.extended, stacked)
        with torch.no_grad():
            exact_layer.recurrent_weights.copy_(exact.to_fixed(layer.recurrent_weights, weight_bits))
            if stacked:
                exact_layer.input_weights.copy_(exact.to_fixed(layer.input_weights, weight_bits))
                exact_layer.bias.copy_(exact.to_fixed(layer.bias, exact.PRE_BITS))
        return exact_layer

    def linears(self):
        """(recurrent, input) exact products, built once per device and weights."""
        stacked = hasattr(self, "input_weights")
        key = (self.recurrent_weights.device, self.recurrent_weights._version)
        if key not in self._linear:
            state_bound = max(1 << exact.ACT_BITS, int(CELL_LIMIT) << exact.ACT_BITS if self.extended else 0)
            recurrent = exact.ExactLinear(self.recurrent_weights, None, state_bound)
            upward = exact.ExactLinear(self.input_weights, self.bias, 1 << exact.ACT_BITS) if stacked else None
            self._linear = {key: (recurrent, upward)}
        return self._linear[key]

    def cell(self, pre: torch.Tensor, c_left: torch.Tensor, c_up: torch.Tensor):
        """(h, c) from pre-activations (N, 5 hidden) and the neighbours' memories (N, hidden); on
        the CPU a compiled kernel computes the same integers (exact_cpu.py)."""
        if exact_cpu.usable(pre):
            h, c = exact_cpu.lstm_cell(pre.to(torch.float64), c_left.to(torch.float64), c_up.to(torch.float64))
            return h.to(pre.dtype), c.to(pre.dtype)
        hidden = self.num_hiddens
        i, o, f_c, f_r = exact.sigmoid(pre[:, : 4 * hidden]).split(hidden, dim=1)
        g = exact.tanh(pre[:, 4 * hidden :])
        limit = int(CELL_LIMIT) << exact.ACT_BITS
        c = exact.shift_round(g * i + c_left * f_c + c_up * f_r, exact.ACT_BITS).clamp_(-limit, limit)
        return exact.tanh(c * o, in_bits=2 * exact.ACT_BITS), c


class ExactSpatialLSTMStepper:
    """The stack's states while coding one image, one wavefront step at a time.

    Pixel (i, j) needs the states of (i, j - 1) and (i - 1, j). In the engine's wavefront (step
    t = (right + 1) * i + j, any right >= 0) and in raster order alike, the positions of each
    column are visited top to bottom, and when (i, j) is visited, column j's last visited
    position is (i - 1, j) and column j - 1's is (i, j - 1): its next one, (i + 1, j - 1), is at
    step t + right. So one "skyline" per layer is all the state there is: for every column, the
    (h, c) of its last visited position. Slot 0 stands for column -1 and stays zero; slot j + 1
    holds column j, zero until the column's row 0 is visited (the row above the image is zero).
    Memory: 2 * (W + 1) * hidden numbers per layer, whatever the height.

    A step gathers the left and upper states of its positions, runs the cells and scatters the
    new states back: a fixed handful of tensor operations per layer, no host synchronisation,
    on whatever device the states live. The positions of one step lie in distinct columns and
    all reads come before the writes, so with right reach 0, where (i, j) and (i + 1, j - 1)
    share a step, (i, j) still reads the old value of column j - 1, which is (i, j - 1); the same
    holds when the engine splits a step into consecutive calls, in ascending rows.

    The states are integers, held as int64, or on the CPU (with the compiled kernels) as float64,
    which holds them exactly and feeds the float64 matrix products without conversions; the
    pre-activations then stay float64 too (``ExactLinear.float_result``)."""

    def __init__(self, layers, width: int, device: torch.device):
        self.layers = layers
        self.dtype = torch.float64 if exact_cpu.usable(torch.empty(0, device=device)) else torch.int64
        self.h = [torch.zeros(width + 1, layer.num_hiddens, dtype=self.dtype, device=device) for layer in layers]
        self.c = [torch.zeros(width + 1, layer.num_hiddens, dtype=self.dtype, device=device) for layer in layers]
        # views whose row j is slots j and j + 1 side by side: (left, upper) of a position in column j
        self.h_pairs = [_adjacent_pairs(h) for h in self.h]
        self.c_pairs = [_adjacent_pairs(c) for c in self.c]
        self.linears = [layer.linears() for layer in layers]  # the weights do not change while coding

    def state_elements(self) -> int:
        return sum(t.numel() for t in self.h + self.c)

    def step(self, first_pre: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Top layer's h (N, hidden) at 2**-ACT_BITS for the positions in columns ``cols``, given
        the first layer's input pre-activations (N, 5 * hidden) at 2**-PRE_BITS, both of the
        states' dtype."""
        pre = first_pre
        h = first_pre  # the layer below's states: set by each layer, read from the second on
        in_float = self.dtype == torch.float64
        for l, layer in enumerate(self.layers):
            hidden = layer.num_hiddens
            recurrent_linear, upward_linear = self.linears[l]
            h_both = self.h_pairs[l].index_select(0, cols)
            if l > 0:
                pre = upward_linear.float_result(h) if in_float else upward_linear(h)
            if in_float and not layer.extended:
                # the compiled cell reads the memories and writes the new states itself
                h = exact_cpu.lstm_cell_on_states(
                    pre + recurrent_linear.float_result(h_both), self.h[l], self.c[l], cols
                )
                continue
            c_both = self.c_pairs[l].index_select(0, cols)
            recurrent = torch.cat([h_both, c_both], 1) if layer.extended else h_both
            pre = pre + (recurrent_linear.float_result(recurrent) if in_float else recurrent_linear(recurrent))
            h, c = layer.cell(pre, c_both[:, :hidden], c_both[:, hidden:])
            self.h[l].index_copy_(0, cols + 1, h)
            self.c[l].index_copy_(0, cols + 1, c)
        return h


def _adjacent_pairs(states: torch.Tensor) -> torch.Tensor:
    """A (W, 2 * hidden) view of skyline ``states`` (W + 1, hidden) whose row j is slots j and
    j + 1: consecutive in memory, so one strided view, read by one index_select per step."""
    width, hidden = states.shape[0] - 1, states.shape[1]
    return states.as_strided((width, 2 * hidden), (hidden, 1))
