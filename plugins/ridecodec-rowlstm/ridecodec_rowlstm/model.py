"""The exact Row LSTM: the trained networks (``network.py``) in integer arithmetic.

Version 3 codes gray images (and RGBA's alpha) with a gray network of 64 features and 64 head
units (``rowlstm-gray-3.npz``), and RGB as version 2 does. Version 2
(``RowLSTMModel.for_version("2")``) codes gray images with version 1's gray network of 32 (the
same weights, so the same tables)
and RGB images with an RGB network whose features are split into three channel groups (R, G, B)
by masks over the groups (``exact.causal_mask``): the first layer's mask A, the input-to-state
mask B and the head's and output's 1x1 masks B; the state-to-state convolution reads the row
above, all known, unmasked. R's logits see earlier pixels only, G's also the pixel's R, B's also
its R and G. RGBA: the RGB network, then the alpha plane by itself with the gray network. Version
1 (gray only) is ``RowLSTMModel.for_version("1")``: the gray buffers alone, so its weights digest
and files are those version 1 wrote.

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
In colour, the call for channel g computes only group g's ``h_0``, gates, cell, state and head
at its positions (they read groups <= g at the position, all groups before it) and writes them
into the cached planes (also ``relu(h_1)`` and the head's units, for the later groups' 1x1
layers), so a position's cache holds all three groups once its B has been coded, before any
later position reads it. The RGB gates are laid out group-major (``network.py``).
"""

from __future__ import annotations

import math
from importlib import resources
from typing import ClassVar

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import CausalReach, DensityModel

#: Versions 1 and 2's gray network (32 features), and version 3's (64).
WEIGHTS_FILE = "rowlstm-gray.npz"
GRAY_3_WEIGHTS_FILE = "rowlstm-gray-3.npz"
RGB_WEIGHTS_FILE = "rowlstm-rgb.npz"
#: Versions 1 and 2's gray network: CHANNELS features (the residual stream and the LSTM state),
#: HIDDEN in the head. (The gray code reads a network's sizes from its weights.)
CHANNELS = 32
HIDDEN = 32
#: The shipped RGB network: GROUPS groups of CHANNELS features and of HIDDEN head units.
GROUPS = 3
RGB_CHANNELS = GROUPS * CHANNELS
RGB_HIDDEN = GROUPS * HIDDEN
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
ALPHABET = 256
#: npz keys: every layer has ``_weight``; all but ``state_state`` a ``_bias``.
LAYERS = ["first", "input_state", "state_state", "head", "out"]
#: The offsets (dy, dx) each gathered layer reads around a position.
FIRST_OFFSETS = [(dy, dx) for dy in range(-3, 1) for dx in range(-3, 4) if dy < 0 or dx < 0]  # 7x7, mask A
#: In colour, mask A over the groups also reads the pixel's earlier channels (G: R; B: R and G).
RGB_FIRST_OFFSETS = [*FIRST_OFFSETS, (0, 0)]
INPUT_STATE_OFFSETS = [(0, -1), (0, 0)]  # 1x3, mask B
STATE_STATE_OFFSETS = [(-1, -1), (-1, 0), (-1, 1)]  # the previous row's states: a 1x3 kernel's taps
STATE_STATE_TAPS = [(0, dx) for _, dx in STATE_STATE_OFFSETS]


def _rescale(values: torch.Tensor, bits: int) -> torch.Tensor:
    return exact.shift_round(values, bits).clamp_(-ACT_CLAMP, ACT_CLAMP)


class _Layer:
    """One convolution: the whole-image ExactConv2d (which proves the 2**53 bound) and the same
    weights as a matrix for the products gathered at a step's positions."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, taps, input_bound: int, mask=None, groups: int = 1
    ):
        """``taps``: the kernel positions (dy, dx) from its centre that the gathered product reads,
        in the order the step gathers them. ``groups``: the output channels' groups (contiguous
        blocks), for ``group_at``."""
        out_channels, _, height, width = weight.shape
        if mask is not None:
            weight = weight * mask.to(weight.device)
        self.conv = exact.ExactConv2d(weight, bias, input_bound)
        picked = torch.stack([weight[:, :, height // 2 + dy, width // 2 + dx] for dy, dx in taps], -1)  # (out, in, K)
        self.matrix = picked.reshape(out_channels, -1).t().to(torch.float64).contiguous()  # (in * K, out)
        self.bias = None if bias is None else bias.to(torch.float64)
        size = out_channels // groups
        self.group_matrices = [self.matrix[:, g * size : (g + 1) * size].contiguous() for g in range(groups)]
        self.group_biases = [None if self.bias is None else self.bias[g * size : (g + 1) * size] for g in range(groups)]

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) int64 -> (B, out, H, W) int64 products (not rescaled)."""
        return self.conv(x)

    def at(self, gathered: torch.Tensor) -> torch.Tensor:
        """gathered (N, in * K) float64 integers -> (N, out) int64 products (not rescaled)."""
        if self.bias is None:
            return (gathered @ self.matrix).to(torch.int64)
        return torch.addmm(self.bias, gathered, self.matrix).to(torch.int64)

    def group_at(self, gathered: torch.Tensor, group: int) -> torch.Tensor:
        """``at`` for the outputs of one group only: (N, in * K) float64 -> (N, out / groups)."""
        bias, matrix = self.group_biases[group], self.group_matrices[group]
        if bias is None:
            return (gathered @ matrix).to(torch.int64)
        return torch.addmm(bias, gathered, matrix).to(torch.int64)


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


def _load(file_name: str) -> dict[str, torch.Tensor]:
    with resources.files(__package__).joinpath(file_name).open("rb") as handle, np.load(handle) as archive:
        return {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}


def _build_layers(tensor, channels: int, hidden: int, groups: int) -> dict[str, _Layer]:
    """The five layers from ``tensor(layer, "weight" or "bias")``, with their masks (gray: mask A
    and the input-to-state mask B; colour: also over the groups, and the 1x1 layers' masks B)."""
    first_channels = groups  # the pixel's channels
    masks = {
        "first": exact.causal_mask(channels, first_channels, 7, 7, "A", groups),
        "input_state": exact.causal_mask(4 * channels, channels, 1, 3, "B", groups),
    }
    if groups > 1:
        masks["head"] = exact.causal_mask(hidden, channels, 1, 1, "B", groups)
        masks["out"] = exact.causal_mask(groups * ALPHABET, hidden, 1, 1, "B", groups)
    taps = {
        "first": FIRST_OFFSETS if groups == 1 else RGB_FIRST_OFFSETS,
        "input_state": INPUT_STATE_OFFSETS,
        "state_state": STATE_STATE_TAPS,
    }
    bounds = {"first": 128, "state_state": 1 << ACT_BITS}  # the others: ACT_CLAMP
    layers = {}
    for layer in LAYERS:
        weight = tensor(layer, "weight")
        if layer == "state_state":
            weight = weight[:, :, None, :]  # a 1x3 kernel, applied to the row above
        bias = None if layer == "state_state" else tensor(layer, "bias")
        bound = bounds.get(layer, ACT_CLAMP)
        layers[layer] = _Layer(weight, bias, taps.get(layer, [(0, 0)]), bound, masks.get(layer), groups)
    return layers


def _gate_major(pre: torch.Tensor, groups: int) -> torch.Tensor:
    """Gate channels (4C, W) in the RGB network's group-major layout ``[group][i, f, o, g][C / groups]``
    -> ``[i, f, o, g][group][C / groups]``, the layout ``_cell`` splits (gray: as they are)."""
    if groups == 1:
        return pre
    four_c, width = pre.shape
    return pre.reshape(groups, 4, four_c // (4 * groups), width).transpose(0, 1).reshape(four_c, width)


class RowLSTMModel(DensityModel):
    """Row LSTM (van den Oord et al. 2016): a 7x7 mask-A convolution, one Row LSTM layer
    (input-to-state 1x3 mask B, state-to-state 1x3 over the row above) with a residual connection,
    two ReLU + 1x1 layers and a 256-way softmax per channel, in exact integers; gray, and RGB
    with masks over the channel groups (R, then G given R, then B given R and G)."""

    name = "rowlstm"
    #: 2: RGB (and RGBA: alpha by the gray network) added; gray exactly as in 1.
    #: 3: a gray network of 64 features (was 32), trained longer; RGB as in 2
    version = "3"
    modes: ClassVar[tuple[str, ...]] = ("L", "RGB", "RGBA")
    #: versions 1 (gray only) and 2 still decode: ``for_version``
    readable_versions: ClassVar[tuple[str, ...]] = ("1", "2")
    #: The recurrence reaches every earlier row (up, left: unbounded); d rows up it reaches d + 2
    #: columns right (the 7x7 mask A: 3 in the row above; the state at (i-1, j+1) one more per
    #: row). Every such pixel is on an earlier step of the wavefront t = 4 * row + col
    #: (4 i - 4 d + j + d + 2 < 4 i + j for d >= 1), so right = 3 schedules the model. In colour
    #: the same: a pixel's earlier channels are coded at the same step, before it.
    reach = CausalReach(up=math.inf, left=math.inf, right=3)
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function

    def __init__(self, gray_weights: str = GRAY_3_WEIGHTS_FILE, colour: bool = True):
        super().__init__()
        arrays = _load(gray_weights)
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            if layer != "state_state":
                self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        if colour:
            arrays = _load(RGB_WEIGHTS_FILE)
            for layer in LAYERS:
                self.register_buffer(f"rgb_{layer}_weight", arrays[f"{layer}_weight"])
                if layer != "state_state":
                    self.register_buffer(f"rgb_{layer}_bias", arrays[f"{layer}_bias"])
        else:
            self.modes = ("L",)  # type: ignore[misc]  # (an instance of version 1)
        self._layers: dict[str, _Layer] | None = None  # built at first use
        self._rgb_layers: dict[str, _Layer] | None = None

    @classmethod
    def for_version(cls, version: str) -> RowLSTMModel:
        """Version 1: its gray network alone (its buffers, so its digest); version 2: that gray
        network and the RGB one."""
        if version not in cls.readable_versions:
            raise NotImplementedError(f"model {cls.name!r} does not keep version {version}")
        model = cls(WEIGHTS_FILE, colour=version != "1")
        model.version = version  # type: ignore[misc]  # (the instance's; the class's is the current one)
        return model

    def _tensor(self, name: str) -> torch.Tensor:
        return getattr(self, name)  # a buffer

    @property
    def gray_channels(self) -> int:
        """The gray network's features (its first layer's outputs)."""
        return self._tensor("first_weight").shape[0]

    @property
    def gray_hidden(self) -> int:
        """The gray network's head units."""
        return self._tensor("head_weight").shape[0]

    def layers(self) -> dict[str, _Layer]:
        if self._layers is None or self._layers["first"].matrix.device != self.device:
            self._layers = _build_layers(
                lambda layer, kind: self._tensor(f"{layer}_{kind}"), self.gray_channels, self.gray_hidden, 1
            )
        return self._layers

    def rgb_layers(self) -> dict[str, _Layer]:
        """The RGB network's layers (masks over GROUPS channel groups)."""
        if not hasattr(self, "rgb_first_weight"):
            raise ValueError(f"rowlstm {self.version} codes gray images only")
        built = self._rgb_layers
        if built is None or built["first"].matrix.device != self.device:
            built = _build_layers(lambda layer, kind: self._tensor(f"rgb_{layer}_{kind}"), RGB_CHANNELS, RGB_HIDDEN, 3)
            self._rgb_layers = built
        return built

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        self._rgb_layers = None
        return super()._apply(fn, *args, **kwargs)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """h_1 at positions (N, gray_channels) -> (N, 256) int64 logits: relu, 1x1, relu, 1x1."""
        return self._head(self.layers(), h)

    @staticmethod
    def _head(layers: dict[str, _Layer], h: torch.Tensor) -> torch.Tensor:
        shift = ACT_BITS + WEIGHT_BITS - ACT_BITS
        hidden = _rescale(layers["head"].at(h.clamp(min=0).to(torch.float64)), shift).clamp_(min=0)
        return _rescale(layers["out"].at(hidden.to(torch.float64)), shift)

    # --- the whole image at once ----------------------------------------------------------------

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> h_1, int64 (gray_channels, H, W) at 2**-ACT_BITS."""
        return self._features(self.layers(), pixels, self.gray_channels, 1)

    @staticmethod
    def _features(layers: dict[str, _Layer], pixels: torch.Tensor, channels: int, groups: int) -> torch.Tensor:
        """uint8 (1, groups, H, W) -> h_1, int64 (channels, H, W) at 2**-ACT_BITS."""
        h = _rescale(layers["first"].whole(pixels.to(torch.int64) - 128), INPUT_BITS + WEIGHT_BITS - ACT_BITS)
        inputs = layers["input_state"].whole(h.clamp(min=0))[0]  # (4C, H, W) at 2**-(ACT + WEIGHT)
        _, height, width = inputs.shape
        cell = torch.zeros(channels, width, dtype=torch.int64, device=pixels.device)
        state = torch.zeros(1, channels, 1, width, dtype=torch.int64, device=pixels.device)
        states = []
        for row in range(height):
            recurrent = layers["state_state"].whole(state)[0, :, 0]  # (4C, W)
            pre = exact.shift_round(inputs[:, row] + recurrent, WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)
            pre = _gate_major(pre, groups)
            cell, new_state = _cell(pre.t().contiguous(), cell.t().contiguous())
            cell, new_state = cell.t(), new_state.t()
            states.append(new_state)
            state = new_state[None, :, None, :]
        return (h[0] + torch.stack(states, 1)).clamp_(-ACT_CLAMP, ACT_CLAMP)

    def _gray_log_prob(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 image (1, 1, H, W) -> its natural-log likelihood, a float64 scalar."""
        features = self.features(image).reshape(self.gray_channels, -1).t()  # (H*W, C)
        return exact.softmax_log_prob(self.head, features, image[0, 0].reshape(-1).long(), ACT_BITS)

    def _rgb_log_prob(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 image (1, 3, H, W) -> its natural-log likelihood: each channel's tables."""
        layers = self.rgb_layers()
        features = self._features(layers, image, RGB_CHANNELS, GROUPS).reshape(RGB_CHANNELS, -1).t()  # (H*W, C)
        total = torch.zeros((), dtype=torch.float64, device=image.device)
        for g in range(GROUPS):

            def logits(rows: torch.Tensor, g: int = g) -> torch.Tensor:
                return self._head(layers, rows)[:, g * ALPHABET : (g + 1) * ALPHABET]

            total += exact.softmax_log_prob(logits, features, image[0, g].reshape(-1).long(), ACT_BITS)
        return total

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        b, c, _, _ = images.shape
        if c not in (1, 3, 4) or (c > 1 and "RGB" not in self.modes):
            raise ValueError(f"rowlstm {self.version} codes {' and '.join(self.modes)} images, not {c} channels")
        total = torch.zeros(b, dtype=torch.float64, device=images.device)
        for i in range(b):
            image = images[i : i + 1]
            if c == 1:
                total[i] = self._gray_log_prob(image)
            else:
                total[i] = self._rgb_log_prob(image[:, :3])
                if c == 4:  # alpha by itself, with the gray network
                    total[i] += self._gray_log_prob(image[:, 3:])
        return total

    # --- decoding, layer by layer at the step's positions ---------------------------------------

    def begin(self, canvas: torch.Tensor):
        channels = canvas.shape[0]
        if channels == 1:
            return self._gray_begin(canvas)
        if channels not in (3, 4) or "RGB" not in self.modes:
            modes = " and ".join(self.modes)
            raise ValueError(f"rowlstm {self.version} codes {modes} images, not {channels} channels")
        colour = self._rgb_begin(canvas[:3])
        if channels == 3:
            return colour
        alpha = self._gray_begin(canvas[3:])  # views: they see what the engine writes

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            return colour(rows, cols, channel) if channel < 3 else alpha(rows, cols, 0)

        return step

    def _gray_begin(self, canvas: torch.Tensor):
        layers = self.layers()
        _, height, width = canvas.shape
        device = canvas.device
        padded_width = width + 2
        # relu(h_0) and the LSTM states, zero-padded by one column each side and one row on top
        # (float64: exact integers); the memory cells, one row on top (row -1: zeros)
        channels = self.gray_channels
        inputs = torch.zeros(channels, (height + 1) * padded_width, dtype=torch.float64, device=device)
        states = torch.zeros(channels, (height + 1) * padded_width, dtype=torch.float64, device=device)
        cells = torch.zeros(channels, (height + 1) * width, dtype=torch.int64, device=device)
        first_dy = torch.tensor([dy for dy, _ in FIRST_OFFSETS], device=device)
        first_dx = torch.tensor([dx for _, dx in FIRST_OFFSETS], device=device)
        input_offsets = torch.tensor([dy * padded_width + dx for dy, dx in INPUT_STATE_OFFSETS], device=device)
        state_offsets = torch.tensor([dy * padded_width + dx for dy, dx in STATE_STATE_OFFSETS], device=device)

        def gather(plane: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            n, k = where.shape
            return plane[:, where.reshape(-1)].view(channels, n, k).permute(1, 0, 2).reshape(n, -1)

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

    def _rgb_begin(self, canvas: torch.Tensor):
        """The step function of an RGB canvas (3, H, W): channel g's call computes group g of each
        layer at its positions, reading the cached planes (all groups at earlier positions, groups
        < g at these, and g's own h_0 just written) and adding group g there."""
        layers = self.rgb_layers()
        _, height, width = canvas.shape
        device = canvas.device
        size, hidden_size = CHANNELS, HIDDEN  # one group's features and head units
        padded_width = width + 2
        # relu(h_0) and the LSTM states, zero-padded by one column each side and one row on top;
        # relu(h_1) and the head's units at each position, unpadded. float32 holds these integers
        # (|v| <= 2**22) exactly. The memory cells (int32: |c| <= 2**22), one row on top (zeros).
        inputs = torch.zeros(RGB_CHANNELS, (height + 1) * padded_width, dtype=torch.float32, device=device)
        states = torch.zeros(RGB_CHANNELS, (height + 1) * padded_width, dtype=torch.float32, device=device)
        tops = torch.zeros(RGB_CHANNELS, height * width, dtype=torch.float32, device=device)
        hiddens = torch.zeros(RGB_HIDDEN, height * width, dtype=torch.float32, device=device)
        cells = torch.zeros(RGB_CHANNELS, (height + 1) * width, dtype=torch.int32, device=device)
        first_dy = torch.tensor([dy for dy, _ in RGB_FIRST_OFFSETS], device=device)
        first_dx = torch.tensor([dx for _, dx in RGB_FIRST_OFFSETS], device=device)
        input_offsets = torch.tensor([dy * padded_width + dx for dy, dx in INPUT_STATE_OFFSETS], device=device)
        state_offsets = torch.tensor([dy * padded_width + dx for dy, dx in STATE_STATE_OFFSETS], device=device)

        def gather(plane: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            """plane (C, P) at where (N, K) -> (N, C * K) float64, channel-major like the matrices."""
            n, k = where.shape
            picked = plane[:, where.reshape(-1)].view(plane.shape[0], n, k)
            return picked.permute(1, 0, 2).reshape(n, -1).to(torch.float64)

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            n = len(rows)
            group = slice(channel * size, (channel + 1) * size)
            # h_0 reads the canvas: earlier pixels, and channels < channel here (mask A over groups;
            # the masked weights of the others are zero)
            r = rows[:, None] + first_dy[None, :]
            c = cols[:, None] + first_dx[None, :]
            inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
            values = canvas[:, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128  # (3, N, K)
            values = torch.where(inside[None], values, 0).permute(1, 0, 2).reshape(n, -1)
            products = layers["first"].group_at(values.to(torch.float64), channel)
            h = _rescale(products, INPUT_BITS + WEIGHT_BITS - ACT_BITS)  # (N, size)
            centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
            inputs[group, centre] = h.clamp(min=0).t().to(torch.float32)
            pre = layers["input_state"].group_at(gather(inputs, centre[:, None] + input_offsets[None, :]), channel)
            pre += layers["state_state"].group_at(gather(states, centre[:, None] + state_offsets[None, :]), channel)
            pre = exact.shift_round(pre, WEIGHT_BITS).clamp_(-ACT_CLAMP, ACT_CLAMP)  # (N, 4 size): i, f, o, g
            cell, state = _cell(pre, cells[group, rows * width + cols].t().to(torch.int64))
            cells[group, (rows + 1) * width + cols] = cell.t().to(torch.int32)
            states[group, centre] = state.t().to(torch.float32)
            h = (h + state).clamp_(-ACT_CLAMP, ACT_CLAMP)
            here = rows * width + cols
            tops[group, here] = h.clamp(min=0).t().to(torch.float32)
            hidden = _rescale(layers["head"].group_at(gather(tops, here[:, None]), channel), WEIGHT_BITS).clamp_(min=0)
            hiddens[channel * hidden_size : (channel + 1) * hidden_size, here] = hidden.t().to(torch.float32)
            logits = _rescale(layers["out"].group_at(gather(hiddens, here[:, None]), channel), WEIGHT_BITS)
            return exact.softmax_frequencies(logits, ACT_BITS)

        return step
