"""The exact PixelCNN: the trained networks (``network.py``) in integer arithmetic.

Version 2 codes gray images with version 1's gray network (the same weights, so the same tables)
and RGB images with an RGB network whose features are split into three channel groups (R, G, B)
by masks A and B over the groups (``exact.causal_mask``): R's logits see earlier pixels only, G's
also the pixel's R, B's also its R and G. RGBA: the RGB network, then the alpha plane by itself
with the gray network. Version 1 (gray only) is ``PixelCNNModel.for_version("1")``: the gray
buffers alone, so its weights digest and files are those version 1 wrote.

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
the same integers, so the same tables. In colour, the call for channel g computes only group g's
features of every layer at its positions (they read groups <= g at the position, all groups
before it) and writes them into the cached planes, so a position's cache holds all three groups
once its B has been coded, before any later position reads it.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import numpy as np
import torch

from ridecodec import exact
from ridecodec.models import CausalReach, DensityModel

WEIGHTS_FILE = "pixelcnn-gray.npz"
RGB_WEIGHTS_FILE = "pixelcnn-rgb.npz"
#: The shipped networks: CHANNELS (gray) or RGB_CHANNELS (RGB, three groups) feature maps, BLOCKS
#: 3x3 residual blocks (reach follows from it).
CHANNELS = 32
RGB_CHANNELS = 96
GROUPS = 3
BLOCKS = 4
INPUT_BITS = 7
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_CLAMP = 1 << 22  # 1024 in real units: far above what the trained network reaches
ALPHABET = 256
LAYERS = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head", "out"]


def _offsets(size: int, kind: str, groups: int = 1) -> list[tuple[int, int]]:
    """The (dy, dx) a masked size x size kernel reads (the centre: mask B, or mask A over several
    groups, where later groups read the pixel's earlier channels)."""
    half = size // 2
    offsets = [(dy, dx) for dy in range(-half, 1) for dx in range(-half, half + 1) if dy < 0 or dx < 0]
    return offsets + ([(0, 0)] if kind == "B" or groups > 1 else [])


def _rescale(values: torch.Tensor, bits: int) -> torch.Tensor:
    return exact.shift_round(values, bits).clamp_(-ACT_CLAMP, ACT_CLAMP)


class _Layer:
    """One masked convolution: the whole-image ExactConv2d and the gathered per-position product."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        kind: str,
        input_bits: int,
        input_bound: int,
        groups: int = 1,
    ):
        out_channels, in_channels, size, _ = weight.shape
        mask = exact.causal_mask(out_channels, in_channels, size, size, kind, groups).to(weight.device)
        self.conv = exact.ExactConv2d(weight, bias, input_bound, mask)  # proves the 2**53 bound
        self.offsets = _offsets(size, kind, groups)
        half = size // 2
        weight = weight * mask  # (gray: the offsets read are all unmasked)
        picked = torch.stack([weight[:, :, half + dy, half + dx] for dy, dx in self.offsets], -1)  # (out, in, K)
        self.matrix = picked.reshape(out_channels, -1).t().to(torch.float64).contiguous()  # (in * K, out)
        self.bias = bias.to(torch.float64)
        self.shift = input_bits + WEIGHT_BITS - ACT_BITS
        self.half = half
        # per output group: its columns (a step's call for channel g computes group g only)
        size_of_group = out_channels // groups
        self.group_matrices = [
            self.matrix[:, g * size_of_group : (g + 1) * size_of_group].contiguous() for g in range(groups)
        ]
        self.group_biases = [self.bias[g * size_of_group : (g + 1) * size_of_group] for g in range(groups)]

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return _rescale(self.conv(x), self.shift)

    def at(self, gathered: torch.Tensor) -> torch.Tensor:
        """gathered (N, in * K) float64 integers -> (N, out) int64 at ACT_BITS."""
        return _rescale(torch.addmm(self.bias, gathered, self.matrix).to(torch.int64), self.shift)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 layer at positions: (N, in) int64 -> (N, out)."""
        return self.at(x.to(torch.float64))

    def group_at(self, gathered: torch.Tensor, group: int) -> torch.Tensor:
        """``at`` for the outputs of one group only: (N, in * K) float64 -> (N, out / groups)."""
        product = torch.addmm(self.group_biases[group], gathered, self.group_matrices[group])
        return _rescale(product.to(torch.int64), self.shift)


def _load(file_name: str) -> dict[str, torch.Tensor]:
    with resources.files(__package__).joinpath(file_name).open("rb") as handle, np.load(handle) as archive:
        return {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}


class PixelCNNModel(DensityModel):
    """PixelCNN (van den Oord et al. 2016): a 7x7 mask-A convolution, 4 residual 3x3 mask-B
    convolutions, two ReLU + 1x1 mask-B layers and a 256-way softmax per channel, in exact
    integers; gray, and RGB with masks over the channel groups (R, then G given R, then B)."""

    name = "pixelcnn"
    #: 2: RGB (and RGBA: alpha by the gray network) added; gray exactly as in 1
    version = "2"
    modes: ClassVar[tuple[str, ...]] = ("L", "RGB", "RGBA")
    #: version 1 (gray only) still decodes: ``for_version("1")``, the gray weights alone
    readable_versions: ClassVar[tuple[str, ...]] = ("1",)
    #: 7x7 mask A reaches 3 each way, each 3x3 mask-B layer one more
    reach = CausalReach(up=3 + BLOCKS, left=3 + BLOCKS, right=3 + BLOCKS)
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function

    def __init__(self, colour: bool = True):
        super().__init__()
        arrays = _load(WEIGHTS_FILE)
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        if colour:
            arrays = _load(RGB_WEIGHTS_FILE)
            for layer in LAYERS:
                self.register_buffer(f"rgb_{layer}_weight", arrays[f"{layer}_weight"])
                self.register_buffer(f"rgb_{layer}_bias", arrays[f"{layer}_bias"])
        else:
            self.modes = ("L",)  # type: ignore[misc]  # (an instance of version 1)
        self._layers: dict[str, _Layer] | None = None  # built at first use
        self._rgb_layers: dict[str, _Layer] | None = None

    @classmethod
    def for_version(cls, version: str) -> PixelCNNModel:
        """Version 1: the gray network alone (its buffers, so its digest)."""
        if version != "1":
            raise NotImplementedError(f"model {cls.name!r} does not keep version {version}")
        model = cls(colour=False)
        model.version = version  # type: ignore[misc]  # (the instance's; the class's is the current one)
        return model

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

    def rgb_layers(self) -> dict[str, _Layer]:
        """The RGB network's layers (masks over GROUPS channel groups)."""
        if not hasattr(self, "rgb_first_weight"):
            raise ValueError(f"pixelcnn {self.version} codes gray images only")
        built = getattr(self, "_rgb_layers", None)
        if built is None or built["first"].matrix.device != self.device:
            built = {
                layer: _Layer(
                    getattr(self, f"rgb_{layer}_weight"),
                    getattr(self, f"rgb_{layer}_bias"),
                    "A" if layer == "first" else "B",
                    INPUT_BITS if layer == "first" else ACT_BITS,
                    128 if layer == "first" else ACT_CLAMP,
                    GROUPS,
                )
                for layer in LAYERS
            }
            self._rgb_layers = built
        return built

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        self._rgb_layers = None
        return super()._apply(fn, *args, **kwargs)

    # --- the whole image at once ----------------------------------------------------------------

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, H, W) -> relu(h_BLOCKS), int64 (B, CHANNELS, H, W) at 2**-ACT_BITS."""
        return self._features(self.layers(), pixels)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """relu(h) at positions (N, CHANNELS) -> (N, 256) int64 logits: the two 1x1 layers."""
        return self._head(self.layers(), features)

    @staticmethod
    def _features(layers: dict[str, _Layer], pixels: torch.Tensor) -> torch.Tensor:
        h = layers["first"].whole(pixels.to(torch.int64) - 128)
        for b in range(BLOCKS):
            h = (h + layers[f"residual{b}"].whole(h.clamp(min=0))).clamp_(-ACT_CLAMP, ACT_CLAMP)
        return h.clamp(min=0)

    @staticmethod
    def _head(layers: dict[str, _Layer], features: torch.Tensor) -> torch.Tensor:
        return layers["out"].pointwise(layers["head"].pointwise(features).clamp(min=0))

    def _gray_log_prob(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 image (1, 1, H, W) -> its natural-log likelihood, a float64 scalar."""
        features = self.features(image)[0].reshape(CHANNELS, -1).t()  # (H*W, C)
        return exact.softmax_log_prob(self.head, features, image[0, 0].reshape(-1).long(), ACT_BITS)

    def _rgb_log_prob(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 image (1, 3, H, W) -> its natural-log likelihood: each channel's tables."""
        layers = self.rgb_layers()
        features = self._features(layers, image)[0].reshape(RGB_CHANNELS, -1).t()  # (H*W, C)
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
            raise ValueError(f"pixelcnn {self.version} codes {' and '.join(self.modes)} images, not {c} channels")
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
            raise ValueError(f"pixelcnn {self.version} codes {modes} images, not {channels} channels")
        colour = self._rgb_begin(canvas[:3])
        if channels == 3:
            return colour
        alpha = self._gray_begin(canvas[3:])  # views: they see what the engine writes

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            return colour(rows, cols, channel) if channel < 3 else alpha(rows, cols, 0)

        return step

    def _rgb_begin(self, canvas: torch.Tensor):
        """The step function of an RGB canvas (3, H, W): channel g's call computes group g of each
        layer at its positions, reading the cached planes (all groups at earlier positions, groups
        < g at these) and adding group g there."""
        layers = self.rgb_layers()
        _, height, width = canvas.shape
        device = canvas.device
        size = RGB_CHANNELS // GROUPS
        padded_width = width + 2
        # relu(h_b) for b = 0 .. BLOCKS - 1, zero-padded by one on each side; then relu(h_BLOCKS)
        # and the head's relu, unpadded. float32 holds these integers (|v| <= 2**22) exactly.
        planes = torch.zeros(BLOCKS, RGB_CHANNELS, (height + 2) * padded_width, dtype=torch.float32, device=device)
        top = torch.zeros(2, RGB_CHANNELS, height * width, dtype=torch.float32, device=device)
        first_dy = torch.tensor([dy for dy, _ in layers["first"].offsets], device=device)
        first_dx = torch.tensor([dx for _, dx in layers["first"].offsets], device=device)
        block_offsets = torch.tensor([dy * padded_width + dx for dy, dx in layers["residual0"].offsets], device=device)

        def gather(plane: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
            """plane (C, P) at where (N, K) -> (N, C * K) float64, channel-major like the matrices."""
            n = where.shape[0]
            picked = plane[:, where.reshape(-1)].view(RGB_CHANNELS, n, -1)
            return picked.permute(1, 0, 2).reshape(n, -1).to(torch.float64)

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            n = len(rows)
            group = slice(channel * size, (channel + 1) * size)
            # the first layer reads the canvas: earlier pixels, and channels < channel here (mask A)
            r = rows[:, None] + first_dy[None, :]
            c = cols[:, None] + first_dx[None, :]
            inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
            values = canvas[:, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128  # (3, N, K)
            values = torch.where(inside[None], values, 0).permute(1, 0, 2).reshape(n, -1)
            h = layers["first"].group_at(values.to(torch.float64), channel)  # (N, size)
            centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
            where = centre[:, None] + block_offsets[None, :]  # (N, K)
            for b in range(BLOCKS):
                planes[b, group, centre] = h.clamp(min=0).t().to(torch.float32)
                h = (h + layers[f"residual{b}"].group_at(gather(planes[b], where), channel)).clamp_(
                    -ACT_CLAMP, ACT_CLAMP
                )
            here = rows * width + cols
            top[0, group, here] = h.clamp(min=0).t().to(torch.float32)
            hidden = layers["head"].group_at(gather(top[0], here[:, None]), channel).clamp(min=0)
            top[1, group, here] = hidden.t().to(torch.float32)
            logits = layers["out"].group_at(gather(top[1], here[:, None]), channel)
            return exact.softmax_frequencies(logits, ACT_BITS)

        return step

    def _gray_begin(self, canvas: torch.Tensor):
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
