"""The exact Row LSTM: the trained network (``network.py``) in integer arithmetic.

Fixed point (``ridecodec.exact``): the input is ``v = x - 128`` at scale 2**-7 (the float model's
``(x - 128) / 128``); weights are integers at 2**-WEIGHT_BITS; every activation (``h_0``, the gate
pre-activations, the gates, the memory cells, the states, the head, the logits) is an integer at
2**-ACT_BITS, clamped to +-ACT_CLAMP. Every convolution is a float64 product of integers whose
partial sums are proven below 2**53 (``ExactConv2d``'s bound, checked for every layer at
construction), converted back to int64 exactly. The gates' input-to-state and state-to-state
products are added as integers at 2**-(ACT_BITS + WEIGHT_BITS) before one ``shift_round``;
sigmoid and tanh are ``exact.sigmoid`` / ``exact.tanh`` lookups (the shipped tables), and the
cell update ``f c + i g`` and ``o tanh(c)`` are int64 products rescaled by ``shift_round``. The
softmax is the exact toolkit's (``exact.softmax_frequencies``): 256 positive frequencies summing to 2**24.

Decoding caches every layer: ``begin`` keeps one plane of ``relu(h_0)``, one of the LSTM states
and one of the memory cells. A step computes, at its own positions only: ``h_0`` from the canvas
(mask A), the input-to-state product from the cached ``relu(h_0)`` at (i, j-1) and (i, j), the
state-to-state product from the cached states of row i-1 at columns j-1, j, j+1, the cell and
state (stored for the next row), and the head. Every cached value it reads belongs to an earlier
wavefront step of ``t = 4 * row + col`` (the state at (i-1, j+1) is 3 steps back).
``log_prob`` computes the same integers for the whole image at once (the recurrence row by row).
"""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import CausalReach, DensityModel

WEIGHTS_FILE = "rowlstm-gray.npz"
#: The shipped network: CHANNELS features (the residual stream and the LSTM state), HIDDEN in the head.
CHANNELS = 32
HIDDEN = 32
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
ALPHABET = 256
#: npz keys: every layer has ``_weight``; all but ``state_state`` a ``_bias``.
LAYERS = ["first", "input_state", "state_state", "head", "out"]
#: The offsets (dy, dx) each gathered layer reads around a position.
FIRST_OFFSETS = [(dy, dx) for dy in range(-3, 1) for dx in range(-3, 4) if dy < 0 or dx < 0]  # 7x7, mask A
INPUT_STATE_OFFSETS = [(0, -1), (0, 0)]  # 1x3, mask B
STATE_STATE_OFFSETS = [(-1, -1), (-1, 0), (-1, 1)]  # the previous row's states: a 1x3 kernel's taps
STATE_STATE_TAPS = [(0, dx) for _, dx in STATE_STATE_OFFSETS]


def _rescale(values: torch.Tensor, bits: int) -> torch.Tensor:
    return exact.shift_round(values, bits).clamp_(-ACT_CLAMP, ACT_CLAMP)


class _Layer:
    """One convolution: the whole-image ExactConv2d (which proves the 2**53 bound) and the same
    weights as a matrix for the products gathered at a step's positions."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, taps, input_bound: int, mask=None):
        """``taps``: the kernel positions (dy, dx) from its centre that the gathered product reads,
        in the order the step gathers them."""
        out_channels, _, height, width = weight.shape
        if mask is not None:
            weight = weight * mask.to(weight.device)
        self.conv = exact.ExactConv2d(weight, bias, input_bound)
        picked = torch.stack([weight[:, :, height // 2 + dy, width // 2 + dx] for dy, dx in taps], -1)  # (out, in, K)
        self.matrix = picked.reshape(out_channels, -1).t().to(torch.float64).contiguous()  # (in * K, out)
        self.bias = None if bias is None else bias.to(torch.float64)

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) int64 -> (B, out, H, W) int64 products (not rescaled)."""
        return self.conv(x)

    def at(self, gathered: torch.Tensor) -> torch.Tensor:
        """gathered (N, in * K) float64 integers -> (N, out) int64 products (not rescaled)."""
        if self.bias is None:
            return (gathered @ self.matrix).to(torch.int64)
        return torch.addmm(self.bias, gathered, self.matrix).to(torch.int64)


def _cell(pre: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate pre-activations (N, 4C: i, f, o, g) at 2**-ACT_BITS and the previous cell (N, C) ->
    (new cell, new state), (N, C) int64 at 2**-ACT_BITS."""
    i, f, o, g = (part.contiguous() for part in pre.chunk(4, 1))
    i = exact.sigmoid(i, ACT_BITS, ACT_BITS)
    f = exact.sigmoid(f, ACT_BITS, ACT_BITS)
    o = exact.sigmoid(o, ACT_BITS, ACT_BITS)
    g = exact.tanh(g, ACT_BITS, ACT_BITS)
    cell = exact.shift_round(f * cell + i * g, ACT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
    state = exact.shift_round(o * exact.tanh(cell, ACT_BITS, ACT_BITS), ACT_BITS)  # |state| <= 2**ACT_BITS
    return cell, state


class RowLSTMModel(DensityModel):
    """Row LSTM (van den Oord et al. 2016), gray: a 7x7 mask-A convolution, one Row LSTM layer
    (input-to-state 1x3 mask B, state-to-state 1x3 over the row above) with a residual connection,
    two ReLU + 1x1 layers and a 256-way softmax, in exact integers."""

    name = "rowlstm"
    version = "1"
    modes = ("L",)
    #: The recurrence reaches every earlier row (up, left: unbounded); d rows up it reaches d + 2
    #: columns right (the 7x7 mask A: 3 in the row above; the state at (i-1, j+1) one more per
    #: row). Every such pixel is on an earlier step of the wavefront t = 4 * row + col
    #: (4 i - 4 d + j + d + 2 < 4 i + j for d >= 1), so right = 3 schedules the model.
    reach = CausalReach(up=math.inf, left=math.inf, right=3)
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function

    def __init__(self):
        super().__init__()
        with resources.files(__package__).joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
            arrays = {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            if layer != "state_state":
                self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers: dict[str, _Layer] | None = None  # built at first use

    def _tensor(self, name: str) -> torch.Tensor:
        return getattr(self, name)  # a buffer

    def layers(self) -> dict[str, _Layer]:
        if self._layers is None or self._layers["first"].matrix.device != self.device:
            c = CHANNELS
            masks = {"first": exact.causal_mask(c, 1, 7, 7, "A"), "input_state": exact.causal_mask(4 * c, c, 1, 3, "B")}
            taps = {"first": FIRST_OFFSETS, "input_state": INPUT_STATE_OFFSETS, "state_state": STATE_STATE_TAPS}
            bounds = {"first": 128, "state_state": 1 << ACT_BITS}  # the others: ACT_CLAMP
            layers = {}
            for layer in LAYERS:
                weight = self._tensor(f"{layer}_weight")
                if layer == "state_state":
                    weight = weight[:, :, None, :]  # a 1x3 kernel, applied to the row above
                bias = None if layer == "state_state" else self._tensor(f"{layer}_bias")
                bound = bounds.get(layer, ACT_CLAMP)
                layers[layer] = _Layer(weight, bias, taps.get(layer, [(0, 0)]), bound, masks.get(layer))
            self._layers = layers
        return self._layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        return super()._apply(fn, *args, **kwargs)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h_1 at positions (N, CHANNELS) -> (N, 256) int64 logits: relu, 1x1, relu, 1x1."""
        layers = self.layers()
        shift = ACT_BITS + WEIGHT_BITS - ACT_BITS
        hidden = _rescale(layers["head"].at(h.clamp(min=0).to(torch.float64)), shift).clamp_(min=0)
        return _rescale(layers["out"].at(hidden.to(torch.float64)), shift)

    # --- the whole image at once ----------------------------------------------------------------

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> h_1, int64 (CHANNELS, H, W) at 2**-ACT_BITS."""
        layers = self.layers()
        h = _rescale(layers["first"].whole(pixels.to(torch.int64) - 128), INPUT_BITS + WEIGHT_BITS - ACT_BITS)
        inputs = layers["input_state"].whole(h.clamp(min=0))[0]  # (4C, H, W) at 2**-(ACT + WEIGHT)
        _, height, width = inputs.shape
        cell = torch.zeros(CHANNELS, width, dtype=torch.int64, device=pixels.device)
        state = torch.zeros(1, CHANNELS, 1, width, dtype=torch.int64, device=pixels.device)
        states = []
        for row in range(height):
            recurrent = layers["state_state"].whole(state)[0, :, 0]  # (4C, W)
            pre = exact.shift_round(inputs[:, row] + recurrent, WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
            cell, new_state = _cell(pre.t().contiguous(), cell.t().contiguous())
            cell, new_state = cell.t(), new_state.t()
            states.append(new_state)
            state = new_state[None, :, None, :]
        return (h[0] + torch.stack(states, 1)).clamp_(-ACT_CLAMP, ACT_CLAMP)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        b, c, _, _ = images.shape
        if c != 1:
            raise ValueError("rowlstm codes gray images only")
        total = torch.zeros(b, dtype=torch.float64, device=images.device)
        for i in range(b):
            features = self.features(images[i : i + 1]).reshape(CHANNELS, -1).t()  # (H*W, C)
            symbols = images[i, 0].reshape(-1).long()
            total[i] = exact.softmax_log_prob(self.head, features, symbols, ACT_BITS)
        return total

    # --- decoding, layer by layer at the step's positions ---------------------------------------

    def begin(self, canvas: torch.Tensor):
        if canvas.shape[0] != 1:
            raise ValueError("rowlstm codes gray images only")
        layers = self.layers()
        _, height, width = canvas.shape
        device = canvas.device
        padded_width = width + 2
        # relu(h_0) and the LSTM states, zero-padded by one column each side and one row on top
        # (float64: exact integers); the memory cells, one row on top (row -1: zeros)
        inputs = torch.zeros(CHANNELS, (height + 1) * padded_width, dtype=torch.float64, device=device)
        states = torch.zeros(CHANNELS, (height + 1) * padded_width, dtype=torch.float64, device=device)
        cells = torch.zeros(CHANNELS, (height + 1) * width, dtype=torch.int64, device=device)
        first_dy = torch.tensor([dy for dy, _ in FIRST_OFFSETS], device=device)
        first_dx = torch.tensor([dx for _, dx in FIRST_OFFSETS], device=device)
        input_offsets = torch.tensor([dy * padded_width + dx for dy, dx in INPUT_STATE_OFFSETS], device=device)
        state_offsets = torch.tensor([dy * padded_width + dx for dy, dx in STATE_STATE_OFFSETS], device=device)

        def gather(plane: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            n, k = where.shape
            return plane[:, where.reshape(-1)].view(CHANNELS, n, k).permute(1, 0, 2).reshape(n, -1)

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            # h_0 reads the canvas (only pixels of earlier steps: mask A)
            r = rows[:, None] + first_dy[None, :]
            c = cols[:, None] + first_dx[None, :]
            inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
            values = canvas[0, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128
            products = layers["first"].at(torch.where(inside, values, 0).to(torch.float64))
            h = _rescale(products, INPUT_BITS + WEIGHT_BITS - ACT_BITS)  # (N, C)
            centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
            inputs[:, centre] = h.clamp(min=0).t().to(torch.float64)
            pre = layers["input_state"].at(gather(inputs, centre[:, None] + input_offsets[None, :]))
            pre += layers["state_state"].at(gather(states, centre[:, None] + state_offsets[None, :]))
            pre = exact.shift_round(pre, WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
            cell, state = _cell(pre, cells[:, rows * width + cols].t())
            cells[:, (rows + 1) * width + cols] = cell.t()
            states[:, centre] = state.t().to(torch.float64)
            h = (h + state).clamp_(-ACT_CLAMP, ACT_CLAMP)
            return exact.softmax_frequencies(self.head(h), ACT_BITS)

        return step
