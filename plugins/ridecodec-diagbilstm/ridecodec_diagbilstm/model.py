"""The exact Diagonal BiLSTM: the trained networks (``network.py``) in integer arithmetic.

Version 2 codes gray images with version 1's gray network (the same weights, so the same tables)
and RGB images with an RGB network whose features (the residual stream, each direction's states
and cells, the head) are split into three channel groups (R, G, B) by masks over the groups
(``exact.causal_mask``): the first layer mask A, the left-to-right input-to-state, the head and
the output layer mask B; the state-to-state kernels read earlier pixels only and are unmasked, as
is the right-to-left input-to-state (its states are used one row down). R's logits see earlier
pixels only, G's also the pixel's R, B's also its R and G. RGBA: the RGB network, then the alpha
plane by itself with the gray network. Version 1 (gray only) is ``DiagBiLSTMModel.for_version("1")``:
the gray buffers alone, so its weights digest and files are those version 1 wrote.

Fixed point (``ridecodec.exact``), as ``rowlstm``: the input is ``v = x - 128`` at 2**-7 (the float
model's ``(x - 128) / 128``); weights are integers at 2**-WEIGHT_BITS; every activation (``h_0``,
the gate pre-activations, the gates, the memory cells, the states, the head, the logits) is an
integer at 2**-ACT_BITS, clamped to +-ACT_CLAMP. Every product is a float64 product of integers
whose partial sums are proven below 2**53 (``ExactConv2d``'s bound for the whole-image
convolutions; :func:`_check_bound` for the matrices a step multiplies), so exact in any summation
order, converted back to int64. A direction's input-to-state and state-to-state products are
added as integers at 2**-(ACT_BITS + WEIGHT_BITS) before one ``shift_round``; sigmoid and tanh are
``exact.sigmoid`` / ``exact.tanh`` lookups; ``f c + i g`` and ``o tanh(c)`` are int64 products
rescaled by ``shift_round``. The softmax is ``exact.softmax_frequencies``.

The left-to-right state at (i, j) comes from the states at (i, j-1) and (i-1, j) (the paper's
2x1 state-to-state kernel along a diagonal of the skewed map), its cell from (i, j-1); the
right-to-left one from (i, j+1) and (i-1, j). ``h_1 = h_0 + lr(i, j) + rl(i-1, j)``.

Decoding is raster order (``reach = None``: the right-to-left states read the whole row above)
and never recomputes the image: ``begin`` keeps planes of ``relu(h_0)``, of both directions'
states, and the cells. At the first pixel of row i the right-to-left sweep runs once over row
i-1 (now known, all groups): its input-to-state and up products for the whole row in one matrix
product, then the recurrence from the right. Each pixel then computes only its own ``h_0`` (a 4x7
window of a padded copy of the known pixels), its left-to-right gates (one product of
``[relu(h_0), lr(i, j-1), lr(i-1, j)]``), cell and state, adds the cached ``rl(i-1, j)`` and
runs the head. In colour the engine calls the step once per channel at a pixel (R, G, B): the
call for channel g computes group g's ``h_0``, gates, cell, state, head and logits only (they
read groups <= g at the pixel, which earlier calls computed, and every group at earlier pixels).
``log_prob`` computes the same integers for the whole image at once: the convolutions over the
image, the recurrence of both directions diagonal by diagonal (the skewed map, a column at a
time). The gates are stored group-major (``network.py``); the exact model reorders them gate-major
(all i, all f, all o, all g) for the whole image, and takes group g's columns for its step.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import DensityModel

WEIGHTS_FILE = "diagbilstm-gray.npz"
RGB_WEIGHTS_FILE = "diagbilstm-rgb.npz"
#: The shipped networks: CHANNELS features (the residual stream and each direction's state), HIDDEN
#: in the head (gray); the RGB network has GROUPS times as many of each, in GROUPS ordered groups.
CHANNELS = 32
HIDDEN = 32
GROUPS = 3
RGB_CHANNELS = GROUPS * CHANNELS
RGB_HIDDEN = GROUPS * HIDDEN
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
STATE_BOUND = 1 << ACT_BITS  # |o tanh(c)| <= 1
ALPHABET = 256
#: npz keys: every layer has ``_weight``; all but the state-to-state ones a ``_bias``.
LAYERS = ["first", "lr_input", "lr_state", "rl_input", "rl_state", "head", "out"]
NO_BIAS = ("lr_state", "rl_state")
#: The gate layers (outputs i, f, o, g: group-major in the weights, gate-major in the products)
GATE_LAYERS = ("lr_input", "lr_state", "rl_input", "rl_state")
#: The first layer's window around (i, j): rows i-3 .. i, columns j-3 .. j+3 (mask A zeroes the rest).
WINDOW = (4, 7)


def _rescale(values: torch.Tensor, bits: int) -> torch.Tensor:
    return exact.shift_round(values, bits).clamp_(-ACT_CLAMP, ACT_CLAMP)


def _check_bound(matrix: torch.Tensor, input_bounds: list[int], bias: torch.Tensor | None = None) -> None:
    """``matrix`` (in, out) of integers, its inputs' blocks bounded by ``input_bounds`` (equal
    blocks): every output's partial sums stay below 2**53, so a float64 product is exact."""
    block = matrix.shape[0] // len(input_bounds)
    bounds = torch.tensor(input_bounds, dtype=torch.float64).repeat_interleave(block)
    total = (matrix.abs().double() * bounds[:, None]).sum(0)
    if bias is not None:
        total = total + bias.abs().double()
    if float(total.max()) >= exact.FLOAT64_EXACT / 2:  # margin: float64 sums of the bound itself
        raise ValueError("weights too large for an exact product of inputs this large")


def _gate_major(size: int, groups: int) -> torch.Tensor:
    """The gate outputs' order for products: index k of the result is output ``order[k]`` of the
    group-major weights ((group, gate, unit) -> (gate, group, unit)); the identity for one group."""
    gate, group, unit = torch.meshgrid(torch.arange(4), torch.arange(groups), torch.arange(size), indexing="ij")
    return (group * 4 * size + gate * size + unit).reshape(-1)


def _group_gates(size: int, groups: int, group: int) -> np.ndarray:
    """The columns of a gate-major product that are group ``group``'s gates (i, f, o, g: ``size`` each)."""
    channels = size * groups
    return np.concatenate(
        [np.arange(gate * channels + group * size, gate * channels + (group + 1) * size) for gate in range(4)]
    )


class _Activations:
    """``exact.sigmoid`` and ``exact.tanh`` at 2**-ACT_BITS in and out, as one table of their
    values over the grid they read (made by calling them on every argument there, so the same
    integers; beyond the grid they are constant, and the argument is clamped), so that a cell
    looks up its four gates in one ``index_select`` instead of four lookups."""

    def __init__(self, device: torch.device):
        # sigmoid reads exact.SIGMOID_GRID at its own scale (2**-12 here), tanh at twice it
        first, grid_bits, count = exact.SIGMOID_GRID
        if grid_bits != ACT_BITS:
            raise ValueError("the activation table expects ACT_BITS to be the sigmoid grid's bits")
        offset = round(-first * 2**grid_bits)
        self.sigmoid_range = (-offset, count - 1 - offset)
        self.tanh_range = (-(offset // 2), (count - 1 - offset) // 2)
        sigmoid = exact.sigmoid(torch.arange(self.sigmoid_range[0], self.sigmoid_range[1] + 1), ACT_BITS, ACT_BITS)
        tanh = exact.tanh(torch.arange(self.tanh_range[0], self.tanh_range[1] + 1), ACT_BITS, ACT_BITS)
        far = torch.tensor([-(1 << 40), 1 << 40])
        for function, values in ((exact.sigmoid, sigmoid), (exact.tanh, tanh)):
            if not torch.equal(function(far, ACT_BITS, ACT_BITS), values[[0, -1]]):
                raise ValueError("the exact activations are not constant beyond their grid")
        self.device = device
        self.sigmoid_count = len(sigmoid)
        self.table = torch.cat([sigmoid, tanh]).to(device)
        self.tanh_base = len(sigmoid) - self.tanh_range[0]  # tanh(x) = table[x + tanh_base]
        self.tanh_low, self.tanh_high = self.tanh_base + self.tanh_range[0], len(self.table) - 1
        self._gates: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def gates(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For gate pre-activations of ``c`` cells (4c: i, f, o, g): each one's offset into the
        table and the range of indices it may take."""
        if c not in self._gates:
            base = [-self.sigmoid_range[0]] * 3 * c + [self.tanh_base] * c  # argument -> table index
            low = [0] * 3 * c + [self.tanh_low] * c  # the indices' ranges
            high = [self.sigmoid_count - 1] * 3 * c + [self.tanh_high] * c
            self._gates[c] = tuple(torch.tensor(v, device=self.device) for v in (base, low, high))  # type: ignore[assignment]
        return self._gates[c]

    def cell(self, pre: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate pre-activations (N, 4C: i, f, o, g) at 2**-ACT_BITS and the previous cell (N, C) ->
        (new cell, new state), (N, C) int64 at 2**-ACT_BITS: ``c = f c + i g``, ``o tanh(c)``
        (sigmoid of i, f, o and tanh of g in one lookup; few operations: a step runs it per pixel)."""
        base, low, high = self.gates(cell.shape[-1])
        index = torch.clamp(pre + base, low, high)
        gates = self.table.index_select(0, index.view(-1)).view(index.shape)  # several times faster than take
        i, f, o, g = gates.chunk(4, 1)
        new = f * cell
        new += i * g
        new = exact.shift_round(new, ACT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
        index = (new + self.tanh_base).clamp_(self.tanh_low, self.tanh_high)
        tanh = self.table.index_select(0, index.view(-1)).view(index.shape)
        return new, exact.shift_round(o * tanh, ACT_BITS)  # |state| <= STATE_BOUND


class _Layers:
    """One network's integer weights (gray: the unprefixed buffers; RGB: ``rgb_``), arranged for
    the whole image (ExactConv2d, which proves its bound) and as float64 matrices for a step's
    products (bounds checked here). The gate layers' outputs are reordered gate-major."""

    def __init__(self, model: DiagBiLSTMModel, colour: bool = False):
        prefix = "rgb_" if colour else ""
        groups = GROUPS if colour else 1
        c = RGB_CHANNELS if colour else CHANNELS
        self.channels, self.groups, self.hidden = c, groups, RGB_HIDDEN if colour else HIDDEN
        self.activations = _Activations(model.device)
        weight = {layer: model.tensor(f"{prefix}{layer}_weight") for layer in LAYERS}
        bias = {layer: model.tensor(f"{prefix}{layer}_bias") for layer in LAYERS if layer not in NO_BIAS}
        device = weight["first"].device
        first = weight["first"] * exact.causal_mask(c, groups, 7, 7, "A", groups).to(device)
        for layer in ("lr_input", "head", "out"):  # mask B over the groups (one group: all ones)
            out, inputs = weight[layer].shape[:2]
            weight[layer] = weight[layer] * exact.causal_mask(out, inputs, 1, 1, "B", groups).to(device)
        order = _gate_major(c // groups, groups).to(device)
        for layer in GATE_LAYERS:
            weight[layer] = weight[layer][order]
            if layer in bias:
                bias[layer] = bias[layer][order]
        self.first = exact.ExactConv2d(first, bias["first"], 128)
        self.lr_input = exact.ExactConv2d(weight["lr_input"], bias["lr_input"], ACT_CLAMP)
        self.rl_input = exact.ExactConv2d(weight["rl_input"], bias["rl_input"], ACT_CLAMP)
        # state-to-state: (2 directions, 2C: [the row's neighbour; the state above], 4C)
        self.state = torch.stack([weight["lr_state"][:, :, 0].t(), weight["rl_state"][:, :, 0].t()]).double()
        for direction in range(2):
            _check_bound(self.state[direction], [STATE_BOUND, STATE_BOUND])
        # A step adds half of the rescaling's unit to the biases of the products it rescales:
        # (x + bias + 2**(b-1)) >> b is shift_round(x + bias, b), one operation fewer per pixel.
        # Its first layer reads raw pixels x (0..255) of the 4x7 window (channel-major), v = x - 128
        # folded into the bias (outside the image the padded copy holds 128: v = 0).
        window = first[:, :, :4, :].reshape(c, -1)  # (C, groups * 28): rows i-3 .. i, columns j-3 .. j+3
        self.first_matrix = window.t().double().contiguous()
        first_bias = bias["first"] - 128 * window.sum(1)
        _check_bound(self.first_matrix, [255], first_bias)
        self.first_bias = (first_bias + (1 << (INPUT_BITS + WEIGHT_BITS - ACT_BITS - 1))).double()
        # left to right: at the first pixel of a row, the products of the row above's states and
        # the bias, (W, 4C); at a pixel, [relu(h_0), lr(i, j-1)] added to them, one product
        lr_state = weight["lr_state"][:, :, 0].t()
        self.lr_pixel_matrix = torch.cat([weight["lr_input"][:, :, 0, 0].t(), lr_state[:c]]).double().contiguous()
        self.lr_up_matrix = lr_state[c:].double().contiguous()
        _check_bound(
            torch.cat([self.lr_pixel_matrix, self.lr_up_matrix]),
            [ACT_CLAMP, STATE_BOUND, STATE_BOUND],
            bias["lr_input"],
        )
        self.lr_bias = (bias["lr_input"] + (1 << (WEIGHT_BITS - 1))).double()
        # right to left over a known row: [relu(h_0), rl(i-1, j)] for the whole row, then rl(i, j+1)
        rl_state = weight["rl_state"][:, :, 0].t()
        self.rl_row_matrix = torch.cat([weight["rl_input"][:, :, 0, 0].t(), rl_state[c:]]).double().contiguous()
        self.rl_next_matrix = rl_state[:c].double().contiguous()
        _check_bound(
            torch.cat([self.rl_row_matrix, self.rl_next_matrix]),
            [ACT_CLAMP, STATE_BOUND, STATE_BOUND],
            bias["rl_input"],
        )
        self.rl_bias = (bias["rl_input"] + (1 << (WEIGHT_BITS - 1))).double()
        # the head: relu, 1x1, relu, 1x1 (products at 2**-(ACT + WEIGHT), rescaled by WEIGHT_BITS)
        self.head_matrix = weight["head"][:, :, 0, 0].t().double().contiguous()
        _check_bound(self.head_matrix, [ACT_CLAMP], bias["head"])
        self.head_bias = (bias["head"] + (1 << (WEIGHT_BITS - 1))).double()
        self.out_matrix = weight["out"][:, :, 0, 0].t().double().contiguous()
        _check_bound(self.out_matrix, [ACT_CLAMP], bias["out"])
        self.out_bias = (bias["out"] + (1 << (WEIGHT_BITS - 1))).double()
        self.step = _StepArrays(self)
        self.group_steps = [_GroupStepArrays(self, g) for g in range(groups)] if colour else []

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h_1 at positions (N, C) int64 -> (N, groups * 256) int64 logits: relu, 1x1, relu, 1x1
        (each product rescaled by WEIGHT_BITS with shift_round: the rounding is in the biases)."""
        hidden = torch.addmm(self.head_bias, h.clamp(min=0).to(torch.float64), self.head_matrix)
        hidden = (hidden.to(torch.int64) >> WEIGHT_BITS).clamp_(0, ACT_CLAMP)
        logits = torch.addmm(self.out_bias, hidden.to(torch.float64), self.out_matrix)
        return (logits.to(torch.int64) >> WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy())


class _StepArrays:
    """What a step multiplies, as NumPy arrays on the CPU: a pixel's work is a few dozen operations
    on vectors of 32 to 384 values, where NumPy's overhead per operation is a fraction of torch's.
    The same integers as the whole-image path: float64 products of integers below the proven bound
    (exact in any summation order, on any BLAS), int64 shifts (arithmetic, rounding down, as
    torch's) and clamps, the activation table of :class:`_Activations`."""

    def __init__(self, layers: _Layers):
        self.first_matrix, self.first_bias = _array(layers.first_matrix), _array(layers.first_bias)
        self.lr_pixel_matrix, self.rl_next_matrix = _array(layers.lr_pixel_matrix), _array(layers.rl_next_matrix)
        self.head_matrix, self.head_bias = _array(layers.head_matrix), _array(layers.head_bias)
        self.out_matrix, self.out_bias = _array(layers.out_matrix), _array(layers.out_bias)
        # the products of a whole row (once per row) in torch, on the CPU: on the thread count the
        # codec sets (NumPy's BLAS would spread them over every core, slowly on a loaded machine)
        self.rl_row = (layers.rl_row_matrix.detach().cpu(), layers.rl_bias.detach().cpu())
        self.lr_up = (layers.lr_up_matrix.detach().cpu(), layers.lr_bias.detach().cpu())
        activations = layers.activations
        self.table = _array(activations.table)
        self.tanh_base = np.int64(activations.tanh_base)
        self.tanh_low, self.tanh_high = np.int64(activations.tanh_low), np.int64(activations.tanh_high)
        # per cell count (a group's or the whole network's): the gates' table offsets and ranges
        sizes = {layers.channels, layers.channels // layers.groups}
        self.gates = {c: tuple(_array(v) for v in activations.gates(c)) for c in sizes}

    @staticmethod
    def rows(values: np.ndarray, product: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """``values @ matrix + bias`` for a row's positions (W, in) float64 -> (W, out) float64."""
        matrix, bias = product
        return torch.addmm(bias, torch.from_numpy(values), matrix).numpy()

    def cell(self, pre: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_Activations.cell` for one position: pre (4C,) and cell (C,) int64."""
        c = len(cell)
        base, low, high = self.gates[c]
        gates = self.table[np.minimum(np.maximum(pre + base, low), high)]
        new = gates[c : 2 * c] * cell + gates[:c] * gates[3 * c :]
        new = _clamp((new + _HALF_ACT) >> _ACT_BITS)
        tanh = self.table[np.minimum(np.maximum(new + self.tanh_base, self.tanh_low), self.tanh_high)]
        return new, (gates[2 * c : 3 * c] * tanh + _HALF_ACT) >> _ACT_BITS

    def head(self, h: np.ndarray) -> np.ndarray:
        """:meth:`_Layers.head` for one position: h_1 (C,) int64 -> logits (256,) int64."""
        hidden = (np.maximum(h, 0).astype(np.float64) @ self.head_matrix + self.head_bias).astype(np.int64)
        hidden = np.minimum(np.maximum(hidden >> _WEIGHT_BITS, 0), _ACT_CLAMP)
        logits = (hidden.astype(np.float64) @ self.out_matrix + self.out_bias).astype(np.int64)
        return _clamp(logits >> _WEIGHT_BITS)


class _GroupStepArrays:
    """Group ``g``'s share of an RGB step's products: the columns of its outputs, and only the
    rows of inputs it may read at the pixel (groups <= g; the masks zero the others)."""

    def __init__(self, layers: _Layers, g: int):
        size, hidden_size = layers.channels // layers.groups, layers.hidden // layers.groups
        mine, upto = slice(g * size, (g + 1) * size), slice(0, (g + 1) * size)
        hidden_mine, hidden_upto = slice(g * hidden_size, (g + 1) * hidden_size), slice(0, (g + 1) * hidden_size)
        self.channels = mine
        self.first_matrix, self.first_bias = _array(layers.first_matrix[:, mine]), _array(layers.first_bias[mine])
        self.gate_columns = _group_gates(size, layers.groups, g)
        columns = torch.from_numpy(self.gate_columns).to(layers.lr_pixel_matrix.device)
        c = layers.channels
        rows = torch.cat([torch.arange((g + 1) * size), c + torch.arange(c)]).to(columns.device)
        self.lr_pixel_matrix = _array(layers.lr_pixel_matrix[rows][:, columns])  # [relu(h_0) <= g; lr(i, j-1)]
        self.upto = (g + 1) * size
        self.head_matrix = _array(layers.head_matrix[upto, hidden_mine])
        self.head_bias = _array(layers.head_bias[hidden_mine])
        self.hidden, self.hidden_upto = hidden_mine, (g + 1) * hidden_size
        logits = slice(g * ALPHABET, (g + 1) * ALPHABET)
        self.out_matrix = _array(layers.out_matrix[hidden_upto, logits])
        self.out_bias = _array(layers.out_bias[logits])


#: NumPy scalars for the step (Python ints cost a conversion per operation)
_ACT_BITS, _WEIGHT_BITS = np.int64(ACT_BITS), np.int64(WEIGHT_BITS)
_FIRST_SHIFT = np.int64(INPUT_BITS + WEIGHT_BITS - ACT_BITS)
_HALF_ACT, _ACT_CLAMP = np.int64(1 << (ACT_BITS - 1)), np.int64(ACT_CLAMP)


def _clamp(values: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(values, -_ACT_CLAMP), _ACT_CLAMP)


def _load(file_name: str) -> dict[str, torch.Tensor]:
    with resources.files(__package__).joinpath(file_name).open("rb") as handle, np.load(handle) as archive:
        return {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}


class DiagBiLSTMModel(DensityModel):
    """Diagonal BiLSTM (van den Oord et al. 2016): a 7x7 mask-A convolution, one Diagonal BiLSTM
    layer (input-to-state 1x1, state-to-state 2x1 along the diagonals, left to right and right to
    left, the latter one row down) with a residual connection, two ReLU + 1x1 layers and a 256-way
    softmax per channel, in exact integers; gray, and RGB with masks over the channel groups (R,
    then G given R, then B given R and G). Decoded in raster order."""

    name = "diagbilstm"
    #: 2: RGB (and RGBA: alpha by the gray network) added; gray exactly as in 1
    version = "2"
    modes: ClassVar[tuple[str, ...]] = ("L", "RGB", "RGBA")
    #: version 1 (gray only) still decodes: ``for_version("1")``, the gray weights alone
    readable_versions: ClassVar[tuple[str, ...]] = ("1",)
    #: The right-to-left direction reads the whole row above (and so, row by row, everything up and
    #: right): the reach cannot be bounded, so the engine codes in raster order, one pixel per step.
    reach = None
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function
    #: One-thread coding time per pixel, per layout, for the codec's estimate: gray as version 1
    #: measured it (decode); encoding a 128x128 RGB crop of mcmaster-01 took 2.19 ms of CPU per
    #: pixel on the loaded 2-core development machine (decoding it 1.61 ms); RGBA adds alpha by the
    #: gray network.
    seconds_per_pixel: ClassVar[dict[str, float]] = {"L": 1.07e-3, "RGB": 2.2e-3, "RGBA": 3.3e-3}
    #: The largest image (pixels) coded without the user raising the limit, as in version 1: about
    #: 2 minutes of gray coding here, 4 of RGB (a BSDS500 image needs ``--model-pixel-limit``).
    pixel_limit: ClassVar[int] = 110_000

    def __init__(self, colour: bool = True):
        super().__init__()
        arrays = _load(WEIGHTS_FILE)
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            if layer not in NO_BIAS:
                self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        if colour:
            arrays = _load(RGB_WEIGHTS_FILE)
            for layer in LAYERS:
                self.register_buffer(f"rgb_{layer}_weight", arrays[f"{layer}_weight"])
                if layer not in NO_BIAS:
                    self.register_buffer(f"rgb_{layer}_bias", arrays[f"{layer}_bias"])
        else:
            self.modes = ("L",)  # type: ignore[misc]  # (an instance of version 1)
        self._layers: _Layers | None = None  # built at first use
        self._rgb_layers: _Layers | None = None

    @classmethod
    def for_version(cls, version: str) -> DiagBiLSTMModel:
        """Version 1: the gray network alone (its buffers, so its digest)."""
        if version != "1":
            raise NotImplementedError(f"model {cls.name!r} does not keep version {version}")
        model = cls(colour=False)
        model.version = version  # type: ignore[misc]  # (the instance's; the class's is the current one)
        return model

    def tensor(self, name: str) -> torch.Tensor:
        return getattr(self, name)  # a buffer

    def layers(self) -> _Layers:
        if self._layers is None or self._layers.first_matrix.device != self.device:
            self._layers = _Layers(self)
        return self._layers

    def rgb_layers(self) -> _Layers:
        """The RGB network's layers (masks over GROUPS channel groups)."""
        if not hasattr(self, "rgb_first_weight"):
            raise ValueError(f"diagbilstm {self.version} codes gray images only")
        if self._rgb_layers is None or self._rgb_layers.first_matrix.device != self.device:
            self._rgb_layers = _Layers(self, colour=True)
        return self._rgb_layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        self._rgb_layers = None
        return super()._apply(fn, *args, **kwargs)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h_1 at positions (N, CHANNELS) int64 -> (N, 256) int64 logits of the gray network."""
        return self.layers().head(h)

    def _check_mode(self, channels: int) -> None:
        if channels not in (1, 3, 4) or (channels > 1 and "RGB" not in self.modes):
            modes = " and ".join(self.modes)
            raise ValueError(f"diagbilstm {self.version} codes {modes} images, not {channels} channels")

    # --- the whole image at once ----------------------------------------------------------------

    @staticmethod
    def _directions(layers: _Layers, inputs: torch.Tensor) -> torch.Tensor:
        """Both directions' input-to-state products (2, 4C, H, W) int64 at 2**-(ACT + WEIGHT) (the
        right-to-left one mirrored; gate-major) -> their states (2, C, H, W) int64 at 2**-ACT_BITS
        (the right-to-left one still mirrored), the recurrence a diagonal at a time."""
        c = layers.channels
        _, _, height, width = inputs.shape
        device = inputs.device
        flat = inputs.permute(0, 2, 3, 1).reshape(2, height * width, 4 * c)
        rows = torch.arange(height, device=device)
        # state[:, i + 1]: row i's latest state (row -1: zeros); a column of the skewed map updates
        # the rows it crosses, (i, column - i), from the previous column's (i, j-1) and (i-1, j)
        state = torch.zeros(2, height + 1, c, dtype=torch.int64, device=device)
        cell = torch.zeros(2, height, c, dtype=torch.int64, device=device)
        out = torch.zeros(2, height * width, c, dtype=torch.int64, device=device)
        for column in range(width + height - 1):
            first, last = max(0, column - width + 1), min(height - 1, column)
            count = last - first + 1
            previous = torch.cat([state[:, first + 1 : last + 2], state[:, first : last + 1]], 2)
            recurrent = torch.bmm(previous.to(torch.float64), layers.state).to(torch.int64)  # (2, count, 4C)
            where = rows[first : last + 1] * (width - 1) + column  # i * width + (column - i)
            pre = _rescale(flat[:, where] + recurrent, WEIGHT_BITS).view(2 * count, 4 * c)
            new_cell, new_state = layers.activations.cell(pre, cell[:, first : last + 1].reshape(2 * count, c))
            cell[:, first : last + 1] = new_cell.view(2, count, c)
            state[:, first + 1 : last + 2] = out[:, where] = new_state.view(2, count, c)
        return out.view(2, height, width, c).permute(0, 3, 1, 2)

    @classmethod
    def _features(cls, layers: _Layers, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, groups, H, W) -> h_1, int64 (C, H, W) at 2**-ACT_BITS."""
        h = _rescale(layers.first(pixels.to(torch.int64) - 128), INPUT_BITS + WEIGHT_BITS - ACT_BITS)
        active = h.clamp(min=0)
        inputs = torch.cat([layers.lr_input(active), layers.rl_input(active).flip(3)])  # (2, 4C, H, W)
        states = cls._directions(layers, inputs)
        lr, rl = states[0], states[1].flip(2)
        rl_down = torch.cat([torch.zeros_like(rl[:, :1]), rl[:, :-1]], 1)  # (i, j) gets rl(i-1, j)
        return (h[0] + lr + rl_down).clamp_(-ACT_CLAMP, ACT_CLAMP)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> h_1 of the gray network, int64 (CHANNELS, H, W) at 2**-ACT_BITS."""
        return self._features(self.layers(), pixels)

    def _log_prob(self, layers: _Layers, image: torch.Tensor) -> torch.Tensor:
        """One uint8 image (1, groups, H, W) -> its natural-log likelihood: each channel's tables."""
        features = self._features(layers, image).reshape(layers.channels, -1).t()  # (H*W, C)
        total = torch.zeros((), dtype=torch.float64, device=image.device)
        for g in range(layers.groups):

            def logits(rows: torch.Tensor, g: int = g) -> torch.Tensor:
                return layers.head(rows)[:, g * ALPHABET : (g + 1) * ALPHABET]

            total += exact.softmax_log_prob(logits, features, image[0, g].reshape(-1).long(), ACT_BITS)
        return total

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        b, c, _, _ = images.shape
        self._check_mode(c)
        total = torch.zeros(b, dtype=torch.float64, device=images.device)
        for i in range(b):
            image = images[i : i + 1]
            if c == 1:
                total[i] = self._log_prob(self.layers(), image)
            else:
                total[i] = self._log_prob(self.rgb_layers(), image[:, :3])
                if c == 4:  # alpha by itself, with the gray network
                    total[i] += self._log_prob(self.layers(), image[:, 3:])
        return total

    # --- decoding: raster order, from cached planes ---------------------------------------------

    def begin(self, canvas: torch.Tensor):
        channels = canvas.shape[0]
        self._check_mode(channels)
        if channels == 1:
            return self._gray_begin(canvas)
        colour = self._rgb_begin(canvas[:3])
        if channels == 3:
            return colour
        alpha = self._gray_begin(canvas[3:])  # views: they see what the engine writes

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            return colour(rows, cols, channel) if channel < 3 else alpha(rows, cols, 0)

        return step

    def _gray_begin(self, canvas: torch.Tensor):
        arrays = self.layers().step
        c = CHANNELS
        _, height, width = canvas.shape
        # The step computes on the CPU whatever the model's device (one pixel at a time, a GPU
        # would only add a synchronisation per pixel); on the CPU the canvas is read in place.
        on_cpu = canvas.device.type == "cpu"
        pixels = canvas[0].numpy() if on_cpu else np.empty((0, 0), dtype=np.uint8)
        # the known pixels, raw, padded 3 rows on top and 3 columns each side with 128 (v = 0)
        known = np.full((height + 3, width + 6), 128.0)
        zero_state, zero_cell = np.zeros(c), np.zeros(c, dtype=np.int64)
        live: dict = {"next": (0, 0), "active": np.zeros((width, c)), "lr": np.zeros((width, c))}
        live["rl"] = np.zeros((width, c), dtype=np.int64)

        def start_row(row: int) -> None:
            """Row ``row`` begins: row - 1 is known. Its right-to-left states (the sweep from the
            right, over the products of its relu(h_0) and of the states above it, made at once),
            and the left-to-right up products of its states, for the pixels of this row."""
            if row > 0:
                known[row + 2, 3 : 3 + width] = pixels[row - 1] if on_cpu else canvas[0, row - 1].cpu().numpy()
                live["rl"] = _sweep(arrays, live["active"], live["rl"])  # rl(i-1, j): what pixel (i, j) adds
            live["lr_up"] = arrays.rows(live["lr"], arrays.lr_up)  # (W, 4C)
            live["lr_state"], live["lr_cell"] = zero_state, zero_cell
            live["active"], live["lr"] = np.empty((width, c)), np.empty((width, c))

        def one(row: int, col: int) -> np.ndarray:
            if (row, col) != live["next"]:
                raise ValueError(f"diagbilstm steps in raster order: expected {live['next']}, got {(row, col)}")
            live["next"] = (row, col + 1) if col + 1 < width else (row + 1, 0)
            if col == 0:
                start_row(row)
            else:
                known[row + 3, col + 2] = pixels[row, col - 1] if on_cpu else canvas[0, row, col - 1].item()
            window = known[row : row + 4, col : col + 7].ravel()
            h = _clamp((window @ arrays.first_matrix + arrays.first_bias).astype(np.int64) >> _FIRST_SHIFT)
            active = live["active"][col] = np.maximum(h, 0)
            pre = np.concatenate([active, live["lr_state"]]) @ arrays.lr_pixel_matrix + live["lr_up"][col]
            live["lr_cell"], lr = arrays.cell(_clamp(pre.astype(np.int64) >> _WEIGHT_BITS), live["lr_cell"])
            live["lr_state"] = live["lr"][col] = lr
            return arrays.head(_clamp(h + lr + live["rl"][col]))

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            # raster order: one position per call (reach None); several would be taken in order
            logits = np.stack([one(row, col) for row, col in zip(rows.tolist(), cols.tolist())])
            return exact.softmax_frequencies(torch.from_numpy(logits), ACT_BITS)

        return step

    def _rgb_begin(self, canvas: torch.Tensor):
        """The step function of an RGB canvas (3, H, W): the call for channel g at a pixel
        computes group g's h_0, left-to-right gates, cell and state, h_1, head and logits, reading
        groups < g at the pixel (computed by the earlier calls) and every group at earlier pixels;
        the first call of a row runs the right-to-left sweep of the row above for all groups."""
        layers = self.rgb_layers()
        arrays, groups = layers.step, layers.group_steps
        c = layers.channels
        _, height, width = canvas.shape
        on_cpu = canvas.device.type == "cpu"
        pixels = canvas.numpy() if on_cpu else np.empty((0, 0, 0), dtype=np.uint8)
        # the known pixels, raw, padded 3 rows on top and 3 columns each side with 128 (v = 0);
        # a pixel's channels arrive one call at a time (mask A reads channels < g at the pixel)
        known = np.full((3, height + 3, width + 6), 128.0)
        zero_state = np.zeros(c)
        live: dict = {"next": (0, 0, 0), "active": np.zeros((width, c)), "lr": np.zeros((width, c))}
        live["rl"] = np.zeros((width, c), dtype=np.int64)
        h1, hidden = np.zeros(c, dtype=np.int64), np.zeros(layers.hidden)

        def start_row(row: int) -> None:
            """As the gray step's: the right-to-left sweep of row - 1 (all groups), and the
            left-to-right up products for this row, per group's gate columns."""
            if row > 0:
                known[:, row + 2, 3 : 3 + width] = pixels[:, row - 1] if on_cpu else canvas[:, row - 1].cpu().numpy()
                live["rl"] = _sweep(arrays, live["active"], live["rl"])
            up = arrays.rows(live["lr"], arrays.lr_up)  # (W, 4C), gate-major
            live["lr_up"] = [np.ascontiguousarray(up[:, group.gate_columns]) for group in groups]
            live["lr_cell"] = np.zeros(c, dtype=np.int64)
            live["active"], live["lr"] = np.zeros((width, c)), np.zeros((width, c))

        def one(row: int, col: int, channel: int) -> np.ndarray:
            if (row, col, channel) != live["next"]:
                expected = live["next"]
                raise ValueError(
                    f"diagbilstm steps in raster order, R, G, B: expected {expected}, got {(row, col, channel)}"
                )
            if channel < 2:
                live["next"] = (row, col, channel + 1)
            else:
                live["next"] = (row, col + 1, 0) if col + 1 < width else (row + 1, 0, 0)
            if channel > 0:  # the pixel's channel before this one is known now
                known[channel - 1, row + 3, col + 3] = (
                    pixels[channel - 1, row, col] if on_cpu else canvas[channel - 1, row, col].item()
                )
            elif col == 0:
                start_row(row)
            else:  # the pixel to the left is known whole
                known[2, row + 3, col + 2] = pixels[2, row, col - 1] if on_cpu else canvas[2, row, col - 1].item()
            group = groups[channel]
            mine = group.channels
            window = known[:, row : row + 4, col : col + 7].ravel()
            h = _clamp((window @ group.first_matrix + group.first_bias).astype(np.int64) >> _FIRST_SHIFT)
            active = live["active"][col]
            active[mine] = np.maximum(h, 0)
            previous = live["lr"][col - 1] if col > 0 else zero_state
            pre = np.concatenate([active[: group.upto], previous]) @ group.lr_pixel_matrix + live["lr_up"][channel][col]
            cell, lr = arrays.cell(_clamp(pre.astype(np.int64) >> _WEIGHT_BITS), live["lr_cell"][mine])
            live["lr_cell"][mine] = cell
            live["lr"][col, mine] = lr
            h1[mine] = _clamp(h + lr + live["rl"][col, mine])
            product = np.maximum(h1[: group.upto], 0).astype(np.float64) @ group.head_matrix + group.head_bias
            hidden[group.hidden] = np.minimum(np.maximum(product.astype(np.int64) >> _WEIGHT_BITS, 0), _ACT_CLAMP)
            logits = (hidden[: group.hidden_upto] @ group.out_matrix + group.out_bias).astype(np.int64)
            return _clamp(logits >> _WEIGHT_BITS)

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            logits = np.stack([one(row, col, channel) for row, col in zip(rows.tolist(), cols.tolist())])
            return exact.softmax_frequencies(torch.from_numpy(logits), ACT_BITS)

        return step


def _sweep(arrays: _StepArrays, active: np.ndarray, above: np.ndarray) -> np.ndarray:
    """The right-to-left states of a known row (W, C) int64, from its relu(h_0) (W, C) and the
    right-to-left states of the row above it (W, C): the products of both for the whole row at
    once, then the recurrence from the right end."""
    width, c = active.shape
    base = arrays.rows(np.concatenate([active, above.astype(np.float64)], 1), arrays.rl_row)  # (W, 4C)
    state, cell = np.zeros(c), np.zeros(c, dtype=np.int64)
    states = np.empty((width, c), dtype=np.int64)
    for col in range(width - 1, -1, -1):
        pre = (state @ arrays.rl_next_matrix + base[col]).astype(np.int64)
        cell, states[col] = arrays.cell(_clamp(pre >> _WEIGHT_BITS), cell)
        state = states[col].astype(np.float64)
    return states
