"""The exact PixelCNN: the trained network (``network.py``) in integer arithmetic.

Fixed point (``ridecodec.exact``): the input is ``v = x - 128`` at scale 2**-7 (the float model's
``(x - 128) / 128``); weights are integers at 2**-WEIGHT_BITS; every activation (the residual
stream, the head, the logits) is an integer at 2**-ACT_BITS, clamped to +-ACT_CLAMP. Every
convolution is a float64 product of integers whose partial sums are proven below 2**53
(``ExactConv2d``'s bound), rescaled by ``shift_round``; ReLU is a clamp. The softmax over the 256
logits is integer too: the row maximum minus each logit goes through the ``exp_neg`` lookup table
(2**-24), and the cumulative sums, scaled to ``MIXTURE_UNITS``, give frequencies whose differences
plus ``FLOOR_UNITS`` are positive and sum to exactly 2**24.

Decoding caches every layer (Ramachandran et al. 2017): ``begin`` keeps one plane per 3x3 layer
input (``relu(h_b)``); a step computes each layer only at its own positions, gathering from the
previous layer's plane the offsets its mask allows (all at earlier wavefront steps, plus the
position itself for mask B). ``log_prob`` runs the same convolutions on the whole image at once:
the same integers, so the same tables.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import CausalReach, DensityModel

WEIGHTS_FILE = "pixelcnn-gray.npz"
#: The shipped network: CHANNELS feature maps, BLOCKS 3x3 residual blocks (reach follows from it).
CHANNELS = 32
BLOCKS = 4
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
ALPHABET = 256
LAYERS = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head", "out"]


def _offsets(size: int, kind: str) -> list[tuple[int, int]]:
    """The (dy, dx) a masked size x size kernel reads, for one group (gray)."""
    half = size // 2
    offsets = [(dy, dx) for dy in range(-half, 1) for dx in range(-half, half + 1) if dy < 0 or dx < 0]
    return offsets + ([(0, 0)] if kind == "B" else [])


def _rescale(values: torch.Tensor, bits: int) -> torch.Tensor:
    return exact.shift_round(values, bits).clamp_(-ACT_CLAMP, ACT_CLAMP)


class _Layer:
    """One masked convolution: the whole-image ExactConv2d and the gathered per-position product."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, kind: str, input_bits: int, input_bound: int):
        out_channels, in_channels, size, _ = weight.shape
        mask = exact.causal_mask(out_channels, in_channels, size, size, kind)
        self.conv = exact.ExactConv2d(weight, bias, input_bound, mask)  # proves the 2**53 bound
        self.offsets = _offsets(size, kind)
        half = size // 2
        picked = torch.stack([weight[:, :, half + dy, half + dx] for dy, dx in self.offsets], -1)  # (out, in, K)
        self.matrix = picked.reshape(out_channels, -1).t().to(torch.float64).contiguous()  # (in * K, out)
        self.bias = bias.to(torch.float64)
        self.shift = input_bits + WEIGHT_BITS - ACT_BITS
        self.half = half

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return _rescale(self.conv(x), self.shift)

    def at(self, gathered: torch.Tensor) -> torch.Tensor:
        """gathered (N, in * K) float64 integers -> (N, out) int64 at ACT_BITS."""
        return _rescale(torch.addmm(self.bias, gathered, self.matrix).to(torch.int64), self.shift)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 layer at positions: (N, in) int64 -> (N, out)."""
        return self.at(x.to(torch.float64))


class PixelCNNModel(DensityModel):
    """PixelCNN (van den Oord et al. 2016), gray: a 7x7 mask-A convolution, 4 residual 3x3 mask-B
    convolutions, two ReLU + 1x1 mask-B layers and a 256-way softmax, in exact integers."""

    name = "pixelcnn"
    version = "1"
    modes = ("L",)
    #: 7x7 mask A reaches 3 each way, each 3x3 mask-B layer one more
    reach = CausalReach(up=3 + BLOCKS, left=3 + BLOCKS, right=3 + BLOCKS)
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function

    def __init__(self):
        super().__init__()
        with resources.files(__package__).joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
            arrays = {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers = None  # built at first use

    def layers(self) -> dict[str, _Layer]:
        if self._layers is None or self._layers["first"].matrix.device != self.device:
            bound = ACT_CLAMP
            self._layers = {
                layer: _Layer(
                    getattr(self, f"{layer}_weight"),
                    getattr(self, f"{layer}_bias"),
                    "A" if layer == "first" else "B",
                    INPUT_BITS if layer == "first" else ACT_BITS,
                    128 if layer == "first" else bound,
                )
                for layer in LAYERS
            }
        return self._layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        return super()._apply(fn, *args, **kwargs)

    # --- the whole image at once ----------------------------------------------------------------

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, H, W) -> relu(h_BLOCKS), int64 (B, CHANNELS, H, W) at 2**-ACT_BITS."""
        layers = self.layers()
        h = layers["first"].whole(pixels.to(torch.int64) - 128)
        for b in range(BLOCKS):
            h = (h + layers[f"residual{b}"].whole(h.clamp(min=0))).clamp_(-ACT_CLAMP, ACT_CLAMP)
        return h.clamp(min=0)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """relu(h) at positions (N, CHANNELS) -> (N, 256) int64 logits: the two 1x1 layers."""
        layers = self.layers()
        return layers["out"].pointwise(layers["head"].pointwise(features).clamp(min=0))

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        b, c, _, _ = images.shape
        if c != 1:
            raise ValueError("pixelcnn codes gray images only")
        total = torch.zeros(b, dtype=torch.float64, device=images.device)
        for i in range(b):
            features = self.features(images[i : i + 1])[0].reshape(CHANNELS, -1).t()  # (H*W, C)
            symbols = images[i, 0].reshape(-1).long()
            total[i] = exact.softmax_log_prob(self.head, features, symbols, ACT_BITS)
        return total

    # --- decoding, layer by layer at the step's positions ---------------------------------------

    def begin(self, canvas: torch.Tensor):
        if canvas.shape[0] != 1:
            raise ValueError("pixelcnn codes gray images only")
        layers = self.layers()
        _, height, width = canvas.shape
        device = canvas.device
        # relu(h_b) for b = 0 .. BLOCKS - 1, zero-padded by one on each side (float64: exact integers)
        planes = torch.zeros(BLOCKS, CHANNELS, height + 2, width + 2, dtype=torch.float64, device=device)
        flat_planes = planes.view(BLOCKS, CHANNELS, -1)
        first_dy = torch.tensor([dy for dy, _ in layers["first"].offsets], device=device)
        first_dx = torch.tensor([dx for _, dx in layers["first"].offsets], device=device)
        block_offsets = torch.tensor([dy * (width + 2) + dx for dy, dx in layers["residual0"].offsets], device=device)
        padded_width = width + 2

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            n = len(rows)
            # the first layer reads the canvas (only pixels of earlier steps: mask A)
            r = rows[:, None] + first_dy[None, :]
            c = cols[:, None] + first_dx[None, :]
            inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
            values = canvas[0, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128
            h = layers["first"].at(torch.where(inside, values, 0).to(torch.float64))  # (N, C)
            centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
            where = centre[:, None] + block_offsets[None, :]  # (N, K)
            for b in range(BLOCKS):
                flat_planes[b][:, centre] = h.clamp(min=0).t().to(torch.float64)
                gathered = flat_planes[b][:, where.reshape(-1)].view(CHANNELS, n, -1)  # (C, N, K)
                gathered = gathered.permute(1, 0, 2).reshape(n, -1)
                h = (h + layers[f"residual{b}"].at(gathered)).clamp_(-ACT_CLAMP, ACT_CLAMP)
            return exact.softmax_frequencies(self.head(h.clamp(min=0)), ACT_BITS)

        return step
