"""The exact Diagonal BiLSTM: the trained network (``network.py``) in integer arithmetic.

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
i-1 (now known): its input-to-state and up products for the whole row in one matrix product,
then the recurrence from the right. Each pixel then computes only its own ``h_0`` (a 4x7
window of a padded copy of the known pixels), its left-to-right gates (one product of
``[relu(h_0), lr(i, j-1), lr(i-1, j)]``), cell and state, adds the cached ``rl(i-1, j)`` and
runs the head. ``log_prob`` computes the same integers for the whole image at once: the
convolutions over the image, the recurrence of both directions diagonal by diagonal (the skewed
map, a column at a time).
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import DensityModel

WEIGHTS_FILE = "diagbilstm-gray.npz"
#: The shipped network: CHANNELS features (the residual stream and each direction's state), HIDDEN in the head.
CHANNELS = 32
HIDDEN = 32
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
STATE_BOUND = 1 << ACT_BITS  # |o tanh(c)| <= 1
ALPHABET = 256
#: npz keys: every layer has ``_weight``; all but the state-to-state ones a ``_bias``.
LAYERS = ["first", "lr_input", "lr_state", "rl_input", "rl_state", "head", "out"]
NO_BIAS = ("lr_state", "rl_state")
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
        self.table = torch.cat([sigmoid, tanh]).to(device)
        self.tanh_base = len(sigmoid) - self.tanh_range[0]  # tanh(x) = table[x + tanh_base]
        c = CHANNELS
        base = [-self.sigmoid_range[0]] * 3 * c + [self.tanh_base] * c  # argument -> table index
        low = [0] * 3 * c + [self.tanh_base + self.tanh_range[0]] * c  # the indices' ranges
        high = [len(sigmoid) - 1] * 3 * c + [len(self.table) - 1] * c
        self.gate_base = torch.tensor(base, device=device)
        self.gate_low = torch.tensor(low, device=device)
        self.gate_high = torch.tensor(high, device=device)
        self.tanh_low, self.tanh_high = self.tanh_base + self.tanh_range[0], len(self.table) - 1

    def cell(self, pre: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate pre-activations (N, 4C: i, f, o, g) at 2**-ACT_BITS and the previous cell (N, C) ->
        (new cell, new state), (N, C) int64 at 2**-ACT_BITS: ``c = f c + i g``, ``o tanh(c)``
        (sigmoid of i, f, o and tanh of g in one lookup; few operations: a step runs it per pixel)."""
        index = torch.clamp(pre + self.gate_base, self.gate_low, self.gate_high)
        gates = self.table.index_select(0, index.view(-1)).view(index.shape)  # several times faster than take
        i, f, o, g = gates.chunk(4, 1)
        new = f * cell
        new += i * g
        new = exact.shift_round(new, ACT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
        index = (new + self.tanh_base).clamp_(self.tanh_low, self.tanh_high)
        tanh = self.table.index_select(0, index.view(-1)).view(index.shape)
        return new, exact.shift_round(o * tanh, ACT_BITS)  # |state| <= STATE_BOUND


class _Layers:
    """The integer weights, arranged for the whole image (ExactConv2d, which proves its bound) and
    as float64 matrices for a step's products (bounds checked here)."""

    def __init__(self, model: DiagBiLSTMModel):
        c = CHANNELS
        self.activations = _Activations(model.device)
        weight = {layer: model.tensor(f"{layer}_weight") for layer in LAYERS}
        bias = {layer: model.tensor(f"{layer}_bias") for layer in LAYERS if layer not in NO_BIAS}
        first = weight["first"] * exact.causal_mask(c, 1, 7, 7, "A").to(weight["first"].device)
        self.first = exact.ExactConv2d(first, bias["first"], 128)
        self.lr_input = exact.ExactConv2d(weight["lr_input"], bias["lr_input"], ACT_CLAMP)
        self.rl_input = exact.ExactConv2d(weight["rl_input"], bias["rl_input"], ACT_CLAMP)
        # state-to-state: (2 directions, 2C: [the row's neighbour; the state above], 4C)
        self.state = torch.stack([weight["lr_state"][:, :, 0].t(), weight["rl_state"][:, :, 0].t()]).double()
        for direction in range(2):
            _check_bound(self.state[direction], [STATE_BOUND, STATE_BOUND])
        # A step adds half of the rescaling's unit to the biases of the products it rescales:
        # (x + bias + 2**(b-1)) >> b is shift_round(x + bias, b), one operation fewer per pixel.
        # Its first layer reads raw pixels x (0..255) of the 4x7 window, v = x - 128 folded into
        # the bias (outside the image the padded copy holds 128: v = 0).
        window = first[:, 0, :4, :].reshape(c, -1)  # (C, 28): rows i-3 .. i, columns j-3 .. j+3
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


class _StepArrays:
    """What a step multiplies, as NumPy arrays on the CPU: a pixel's work is a few dozen operations
    on vectors of 32 to 128 values, where NumPy's overhead per operation is a fraction of torch's.
    The same integers as the whole-image path: float64 products of integers below the proven bound
    (exact in any summation order, on any BLAS), int64 shifts (arithmetic, rounding down, as
    torch's) and clamps, the activation table of :class:`_Activations`."""

    def __init__(self, layers: _Layers):
        def array(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(tensor.detach().cpu().numpy())

        self.first_matrix, self.first_bias = array(layers.first_matrix), array(layers.first_bias)
        self.lr_pixel_matrix, self.lr_up_matrix = array(layers.lr_pixel_matrix), array(layers.lr_up_matrix)
        self.lr_bias = array(layers.lr_bias)
        self.rl_row_matrix, self.rl_next_matrix = array(layers.rl_row_matrix), array(layers.rl_next_matrix)
        self.rl_bias = array(layers.rl_bias)
        self.head_matrix, self.head_bias = array(layers.head_matrix), array(layers.head_bias)
        self.out_matrix, self.out_bias = array(layers.out_matrix), array(layers.out_bias)
        activations = layers.activations
        self.table = array(activations.table)
        self.gate_base, self.gate_low = array(activations.gate_base), array(activations.gate_low)
        self.gate_high = array(activations.gate_high)
        self.tanh_base = np.int64(activations.tanh_base)
        self.tanh_low, self.tanh_high = np.int64(activations.tanh_low), np.int64(activations.tanh_high)

    def cell(self, pre: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_Activations.cell` for one position: pre (4C,) and cell (C,) int64."""
        c = CHANNELS
        gates = self.table[np.minimum(np.maximum(pre + self.gate_base, self.gate_low), self.gate_high)]
        new = gates[c : 2 * c] * cell + gates[:c] * gates[3 * c :]
        new = _clamp((new + _HALF_ACT) >> _ACT_BITS)
        tanh = self.table[np.minimum(np.maximum(new + self.tanh_base, self.tanh_low), self.tanh_high)]
        return new, (gates[2 * c : 3 * c] * tanh + _HALF_ACT) >> _ACT_BITS

    def head(self, h: np.ndarray) -> np.ndarray:
        """:meth:`DiagBiLSTMModel.head` for one position: h_1 (C,) int64 -> logits (256,) int64."""
        hidden = (np.maximum(h, 0).astype(np.float64) @ self.head_matrix + self.head_bias).astype(np.int64)
        hidden = np.minimum(np.maximum(hidden >> _WEIGHT_BITS, 0), _ACT_CLAMP)
        logits = (hidden.astype(np.float64) @ self.out_matrix + self.out_bias).astype(np.int64)
        return _clamp(logits >> _WEIGHT_BITS)


#: NumPy scalars for the step (Python ints cost a conversion per operation)
_ACT_BITS, _WEIGHT_BITS = np.int64(ACT_BITS), np.int64(WEIGHT_BITS)
_FIRST_SHIFT = np.int64(INPUT_BITS + WEIGHT_BITS - ACT_BITS)
_HALF_ACT, _ACT_CLAMP = np.int64(1 << (ACT_BITS - 1)), np.int64(ACT_CLAMP)


def _clamp(values: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(values, -_ACT_CLAMP), _ACT_CLAMP)


class DiagBiLSTMModel(DensityModel):
    """Diagonal BiLSTM (van den Oord et al. 2016), gray: a 7x7 mask-A convolution, one Diagonal
    BiLSTM layer (input-to-state 1x1, state-to-state 2x1 along the diagonals, left to right and
    right to left, the latter one row down) with a residual connection, two ReLU + 1x1 layers and
    a 256-way softmax, in exact integers. Decoded in raster order."""

    name = "diagbilstm"
    version = "1"
    modes = ("L",)
    #: The right-to-left direction reads the whole row above (and so, row by row, everything up and
    #: right): the reach cannot be bounded, so the engine codes in raster order, one pixel per step.
    reach = None
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function
    #: One-thread decode time per pixel, measured on the 2-core development machine: decoding a
    #: 256x256 gray crop (``benchmarks/decode_time.py``) took 70.1 s of CPU time, 1.07 ms per pixel
    #: (the coder's and the online adaptation's work per pixel included); for the codec's estimate.
    seconds_per_pixel: ClassVar[float] = 1.07e-3
    #: The largest image (pixels) coded without the user raising the limit: about 2 minutes of
    #: coding here (120 s / seconds_per_pixel, rounded down). A BSDS500 image (154,401) needs
    #: ``--model-pixel-limit``.
    pixel_limit: ClassVar[int] = 110_000

    def __init__(self):
        super().__init__()
        with resources.files(__package__).joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
            arrays = {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            if layer not in NO_BIAS:
                self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers: _Layers | None = None  # built at first use

    def tensor(self, name: str) -> torch.Tensor:
        return getattr(self, name)  # a buffer

    def layers(self) -> _Layers:
        if self._layers is None or self._layers.first_matrix.device != self.device:
            self._layers = _Layers(self)
        return self._layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        return super()._apply(fn, *args, **kwargs)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h_1 at positions (N, CHANNELS) int64 -> (N, 256) int64 logits: relu, 1x1, relu, 1x1
        (each product rescaled by WEIGHT_BITS with shift_round: the rounding is in the biases)."""
        layers = self.layers()
        hidden = torch.addmm(layers.head_bias, h.clamp(min=0).to(torch.float64), layers.head_matrix)
        hidden = (hidden.to(torch.int64) >> WEIGHT_BITS).clamp_(0, ACT_CLAMP)
        logits = torch.addmm(layers.out_bias, hidden.to(torch.float64), layers.out_matrix)
        return (logits.to(torch.int64) >> WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)

    # --- the whole image at once ----------------------------------------------------------------

    def directions(self, inputs: torch.Tensor) -> torch.Tensor:
        """Both directions' input-to-state products (2, 4C, H, W) int64 at 2**-(ACT + WEIGHT) (the
        right-to-left one mirrored) -> their states (2, C, H, W) int64 at 2**-ACT_BITS (the
        right-to-left one still mirrored), the recurrence a diagonal at a time."""
        layers = self.layers()
        c = CHANNELS
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

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> h_1, int64 (CHANNELS, H, W) at 2**-ACT_BITS."""
        layers = self.layers()
        h = _rescale(layers.first(pixels.to(torch.int64) - 128), INPUT_BITS + WEIGHT_BITS - ACT_BITS)
        active = h.clamp(min=0)
        inputs = torch.cat([layers.lr_input(active), layers.rl_input(active).flip(3)])  # (2, 4C, H, W)
        states = self.directions(inputs)
        lr, rl = states[0], states[1].flip(2)
        rl_down = torch.cat([torch.zeros_like(rl[:, :1]), rl[:, :-1]], 1)  # (i, j) gets rl(i-1, j)
        return (h[0] + lr + rl_down).clamp_(-ACT_CLAMP, ACT_CLAMP)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        b, c, _, _ = images.shape
        if c != 1:
            raise ValueError("diagbilstm codes gray images only")
        total = torch.zeros(b, dtype=torch.float64, device=images.device)
        for i in range(b):
            features = self.features(images[i : i + 1]).reshape(CHANNELS, -1).t()  # (H*W, C)
            symbols = images[i, 0].reshape(-1).long()
            total[i] = exact.softmax_log_prob(self.head, features, symbols, ACT_BITS)
        return total

    # --- decoding: raster order, from cached planes ---------------------------------------------

    def begin(self, canvas: torch.Tensor):
        if canvas.shape[0] != 1:
            raise ValueError("diagbilstm codes gray images only")
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
                above = np.concatenate([live["active"], live["rl"].astype(np.float64)], 1)
                base = above @ arrays.rl_row_matrix + arrays.rl_bias  # (W, 4C)
                state, cell = zero_state, zero_cell
                states = np.empty((width, c), dtype=np.int64)
                for col in range(width - 1, -1, -1):
                    pre = (state @ arrays.rl_next_matrix + base[col]).astype(np.int64)
                    cell, states[col] = arrays.cell(_clamp(pre >> _WEIGHT_BITS), cell)
                    state = states[col].astype(np.float64)
                live["rl"] = states  # rl(i-1, j): what pixel (i, j) adds
            live["lr_up"] = live["lr"] @ arrays.lr_up_matrix + arrays.lr_bias  # (W, 4C)
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
