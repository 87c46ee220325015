"""The exact multi-scale PixelRNN: the trained networks (``network.py``) in integer arithmetic,
coded in two stages (``ridecodec.schedule.subsampled_first``).

Stage 1 codes the subsampled image ``s = x[::2, ::2]`` (the pixels (2i, 2j)) in the wavefront of
its own grid with an unconditional PixelCNN (``ridecodec_pixelcnn``'s architecture, this
package's weights) reading a strided view of the canvas. Stage 2 codes every other pixel in the
wavefront of the full grid with a PixelCNN whose layers are biased by features of the stage-1
pixels (``network.Conditional``). When stage 2 starts, every stage-1 pixel is known: the
conditioning stack (unmasked 5x5 and 3x3 convolutions of the sparse image ``[u * k, k]``) runs
once on the whole image, and each step gathers its per-layer biases at its positions. Stage 2's
network runs at the stage-1 positions too (as in the float network: later pixels read its
features there); a stage-1 position's features need the stage-2 pixels before it in stage 2's
wavefront, so a step first computes those of every stage-1 position of earlier wavefront steps.
Decoding caches every layer, as ``pixelcnn`` does: each position's layers are computed once.

Version 2 adds colour. Gray images get version 1's networks (the same weights, so the same
tables); RGB images both stages' RGB networks, each of 96 features in three channel groups (R, G,
B) with ``pixelcnn``'s masks over the groups: stage 1 is ``pixelcnn`` 2's RGB network (a copy of
its shipped integers), stage 2 the RGB network biased by a conditioning stack that reads all three
channels of the stage-1 pixels. The engine calls a step once per channel at the same positions; the
call for channel g computes group g of every layer there (reading the cached planes: all groups at
earlier positions, groups < g at these), as ``pixelcnn`` 2 does. The stage-1 positions that a
stage-2 step computes first get all three groups at once (every channel of theirs is known).
RGBA: the RGB networks, then the alpha plane by itself with the gray networks. Version 1 (gray
only) is ``MultiScaleModel.for_version("1")``: the gray buffers alone, so version 1's digest.

Fixed point as in ``ridecodec_pixelcnn`` (whose constants and exact layer class this reuses): inputs
``x - 128`` (and the indicator ``k`` as 128) at 2**-7, weights at 2**-16, every activation an
integer at 2**-12 clamped to +-2**22; convolutions are ``ExactConv2d`` (whole image) or the same
integers gathered at a step's positions; ``shift_round`` rescales; the softmax is
``exact.softmax_frequencies``. ``log_prob`` runs both stages' convolutions on the whole image:
the same integers, so the same tables.
"""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

import numpy as np
import torch

from ridecodec import exact, schedule
from ridecodec.models import CausalReach, DensityModel
from ridecodec_pixelcnn import model as pixelcnn
from ridecodec_pixelcnn.model import ACT_BITS, ACT_CLAMP, INPUT_BITS, WEIGHT_BITS

WEIGHTS_FILE = "multiscale-gray.npz"
RGB_WEIGHTS_FILE = "multiscale-rgb.npz"
FACTOR = 2
#: Both stages: CHANNELS feature maps (gray; RGB_CHANNELS in GROUPS channel groups in colour),
#: BLOCKS masked 3x3 residual blocks (pixelcnn's networks); stage 2 adds COND_BLOCKS unmasked 3x3
#: blocks in its conditioning stack.
CHANNELS = 32
RGB_CHANNELS = 96
GROUPS = 3
BLOCKS = 4
COND_BLOCKS = 2
#: right-reach of each stage's wavefront (stage 1 on its own grid): 7x7 mask A reaches 3, each
#: masked 3x3 block one more
SMALL_RIGHT = RIGHT = 3 + BLOCKS
MASKED_LAYERS = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head", "out"]
COND_LAYERS = ["cond_first"] + [f"cond_residual{a}" for a in range(COND_BLOCKS)] + ["bias"]
#: every weight of a file: stage 1's (``small_`` + a masked layer) and stage 2's
LAYERS = [f"small_{layer}" for layer in MASKED_LAYERS] + MASKED_LAYERS + COND_LAYERS
#: the layers the ``bias`` convolution's output chunks feed, in order
BIASED = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head"]


def _clamp(values: torch.Tensor) -> torch.Tensor:
    return values.clamp_(-ACT_CLAMP, ACT_CLAMP)


def _gather(plane: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """plane (P, C) at where (N, K) -> (N, C * K) float64, channel-major like the layers' matrices.
    (Position-major planes: a position's C features are one contiguous read, which at 256 x 256
    gathers about twice as fast as channel-major planes.)"""
    n, k = where.shape
    picked = plane[where.reshape(-1)].view(n, k, plane.shape[1])
    return picked.permute(0, 2, 1).reshape(n, -1).to(torch.float64)


class _Unmasked:
    """An unmasked convolution of the conditioning stack, whole image only."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_bits: int, input_bound: int):
        self.conv = exact.ExactConv2d(weight, bias, input_bound)
        self.shift = input_bits + WEIGHT_BITS - ACT_BITS

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return pixelcnn._rescale(self.conv(x), self.shift)


class _Stack:
    """pixelcnn's network in exact integers (gray, or ``groups`` channel groups), each layer
    optionally biased (stage 2): on the whole image, or at a step's positions from cached planes
    of relu(h_b)."""

    def __init__(self, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor], groups: int = 1):
        self.groups = groups
        self.channels = weights["first"].shape[0]
        self.size = self.channels // groups  # features per group
        self.layers = {
            layer: pixelcnn._Layer(
                weights[layer],
                biases[layer],
                "A" if layer == "first" else "B",
                INPUT_BITS if layer == "first" else ACT_BITS,
                128 if layer == "first" else ACT_CLAMP,
                groups,
            )
            for layer in MASKED_LAYERS
        }
        device = weights["first"].device
        self.first_dy = torch.tensor([dy for dy, _ in self.layers["first"].offsets], device=device)
        self.first_dx = torch.tensor([dx for _, dx in self.layers["first"].offsets], device=device)
        self.block_offsets: dict[int, torch.Tensor] = {}  # per padded width: the 3x3 layers' reads

    def whole(self, pixels: torch.Tensor, bias: list[torch.Tensor] | None = None) -> torch.Tensor:
        """uint8 (1, groups, H, W), per-layer biases (1, C, H, W) -> relu(h_BLOCKS) (1, C, H, W)."""
        h = self.layers["first"].whole(pixels.to(torch.int64) - 128)
        if bias is not None:
            h = _clamp(h + bias[0])
        for b in range(BLOCKS):
            update = self.layers[f"residual{b}"].whole(h.clamp(min=0))
            h = _clamp(h + update if bias is None else h + update + bias[b + 1])
        return h.clamp(min=0)

    def logits(self, features: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """relu(h) at positions (N, C) [and the head's bias (N, C)] -> (N, groups * 256) int64 logits."""
        hidden = self.layers["head"].pointwise(features)
        if bias is not None:
            hidden = _clamp(hidden + bias)
        return self.layers["out"].pointwise(hidden.clamp(min=0))

    def _offsets(self, padded_width: int, device: torch.device) -> torch.Tensor:
        if padded_width not in self.block_offsets:
            offsets = [dy * padded_width + dx for dy, dx in self.layers["residual0"].offsets]
            self.block_offsets[padded_width] = torch.tensor(offsets, device=device)
        return self.block_offsets[padded_width]

    def at(
        self,
        canvas: torch.Tensor,
        planes: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        bias: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Gray: relu(h_BLOCKS) (N, C) at positions whose inputs are coded and cached: ``canvas``
        (H, W) uint8 (a view of the engine's), ``planes`` (BLOCKS, C, H + 2, W + 2) float64,
        relu(h_b) zero-padded by one, into which this writes the positions' own."""
        width = canvas.shape[1]
        n = len(rows)
        r = rows[:, None] + self.first_dy[None, :]
        c = cols[:, None] + self.first_dx[None, :]
        inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
        values = canvas[r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128
        h = self.layers["first"].at(torch.where(inside, values, 0).to(torch.float64))
        if bias is not None:
            h = _clamp(h + bias[0])
        padded_width = width + 2
        centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
        where = (centre[:, None] + self._offsets(padded_width, rows.device)[None, :]).reshape(-1)  # (N * K,)
        flat_planes = planes.view(BLOCKS, self.channels, -1)
        for b in range(BLOCKS):
            flat_planes[b][:, centre] = h.clamp(min=0).t().to(torch.float64)
            gathered = flat_planes[b][:, where].view(self.channels, n, -1).permute(1, 0, 2).reshape(n, -1)
            update = self.layers[f"residual{b}"].at(gathered)
            h = _clamp(h + update if bias is None else h + update + bias[b + 1])
        return h.clamp(min=0)

    def group_at(
        self,
        canvas: torch.Tensor,
        planes: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        group: int,
        bias: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Colour: group ``group`` of relu(h_BLOCKS), (N, C / groups), at positions whose inputs
        are coded and cached: ``canvas`` (groups, H, W) uint8 (a view of the engine's), ``planes``
        (BLOCKS, (H + 2) * (W + 2), C) float64, relu(h_b) zero-padded by one, position-major,
        into whose group ``group`` this writes the positions' own; ``bias``: that group's
        per-layer biases."""
        width = canvas.shape[2]
        n = len(rows)
        features = slice(group * self.size, (group + 1) * self.size)
        r = rows[:, None] + self.first_dy[None, :]
        c = cols[:, None] + self.first_dx[None, :]
        inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
        values = canvas[:, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128  # (groups, N, K)
        values = torch.where(inside[None], values, 0).permute(1, 0, 2).reshape(n, -1)
        h = self.layers["first"].group_at(values.to(torch.float64), group)
        if bias is not None:
            h = _clamp(h + bias[0])
        padded_width = width + 2
        centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
        where = centre[:, None] + self._offsets(padded_width, rows.device)[None, :]  # (N, K)
        for b in range(BLOCKS):
            planes[b, centre, features] = h.clamp(min=0).to(torch.float64)
            update = self.layers[f"residual{b}"].group_at(_gather(planes[b], where), group)
            h = _clamp(h + update if bias is None else h + update + bias[b + 1])
        return h.clamp(min=0)

    def group_logits(
        self, top: torch.Tensor, here: torch.Tensor, features: torch.Tensor, group: int, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """Colour: group ``group``'s 256 logits at positions ``here`` (flat indices) from its
        features (N, C / groups) [and the head's bias]: ``top`` (2, H * W, C) float64 caches
        relu(h_BLOCKS) and the head's relu by group (mask B: group g reads groups <= g)."""
        features_slice = slice(group * self.size, (group + 1) * self.size)
        top[0, here, features_slice] = features.to(torch.float64)
        hidden = self.layers["head"].group_at(_gather(top[0], here[:, None]), group)
        if bias is not None:
            hidden = _clamp(hidden + bias)
        top[1, here, features_slice] = hidden.clamp(min=0).to(torch.float64)
        return self.layers["out"].group_at(_gather(top[1], here[:, None]), group)


def stage1_mask(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(H, W) bool: the stage-1 positions."""
    known = torch.zeros(height, width, dtype=torch.bool, device=device)
    known[::FACTOR, ::FACTOR] = True
    return known


def _load(file_name: str) -> dict[str, torch.Tensor]:
    with resources.files(__package__).joinpath(file_name).open("rb") as handle, np.load(handle) as archive:
        return {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}


class MultiScaleModel(DensityModel):
    """The multi-scale PixelRNN (van den Oord et al. 2016), factor 2: a PixelCNN of the
    subsampled image, then a PixelCNN of the rest biased by it, in exact integers; gray, and RGB
    with masks over the channel groups (R, then G given R, then B)."""

    name = "multiscale"
    #: 2: RGB (and RGBA: alpha by the gray networks) added; gray exactly as in 1
    version = "2"
    modes: ClassVar[tuple[str, ...]] = ("L", "RGB", "RGBA")
    #: version 1 (gray only) still decodes: ``for_version("1")``, the gray weights alone
    readable_versions: ClassVar[tuple[str, ...]] = ("1",)
    #: On the full grid. Stage 1 reads 7 small pixels (14 full ones) up, left and right; stage 2
    #: reads 7 up, left and right through its masked stack, and its biases read stage-1 pixels up
    #: to 4 further in every direction, below included (the order is ``coding_order``'s, not this
    #: reach's wavefront).
    reach = CausalReach(up=FACTOR * SMALL_RIGHT, left=FACTOR * SMALL_RIGHT, right=FACTOR * SMALL_RIGHT)
    exact_across_devices = True
    #: ridecodec.sampling draws in the declared order (inpainting refuses models in their own order)
    can_sample = True

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
        self._layers: dict | None = None  # built at first use
        self._rgb_layers: dict | None = None

    @classmethod
    def for_version(cls, version: str) -> MultiScaleModel:
        """Version 1: the gray networks alone (their buffers, so their digest)."""
        if version != "1":
            raise NotImplementedError(f"model {cls.name!r} does not keep version {version}")
        model = cls(colour=False)
        model.version = version  # type: ignore[misc]  # (the instance's; the class's is the current one)
        return model

    def coding_order(self, height: int, width: int) -> schedule.Stages:
        return schedule.subsampled_first(height, width, FACTOR, SMALL_RIGHT, RIGHT)

    def _build(self, prefix: str, groups: int) -> dict:
        weights = {layer: getattr(self, f"{prefix}{layer}_weight") for layer in LAYERS}
        biases = {layer: getattr(self, f"{prefix}{layer}_bias") for layer in LAYERS}
        small = {layer: weights[f"small_{layer}"] for layer in MASKED_LAYERS}
        small_biases = {layer: biases[f"small_{layer}"] for layer in MASKED_LAYERS}
        built: dict = {"small": _Stack(small, small_biases, groups), "stage2": _Stack(weights, biases, groups)}
        built["cond_first"] = _Unmasked(weights["cond_first"], biases["cond_first"], INPUT_BITS, 128)
        for a in range(COND_BLOCKS):
            layer = f"cond_residual{a}"
            built[layer] = _Unmasked(weights[layer], biases[layer], ACT_BITS, ACT_CLAMP)
        # the per-layer biases: one 1x1 product at a step's positions (all chunks at once), one
        # 1x1 convolution per chunk on the whole image; the same integers either way
        channels = weights["first"].shape[0]
        built["bias"] = pixelcnn._Layer(weights["bias"], biases["bias"], "B", ACT_BITS, ACT_CLAMP)
        built["bias_chunks"] = [
            pixelcnn._Layer(
                weights["bias"][k * channels : (k + 1) * channels],
                biases["bias"][k * channels : (k + 1) * channels],
                "B",
                ACT_BITS,
                ACT_CLAMP,
            )
            for k in range(len(BIASED))
        ]
        if groups > 1:  # colour: group g's part of every chunk, at a step's positions
            size = channels // groups
            built["bias_groups"] = []
            for g in range(groups):
                picked = torch.cat(
                    [torch.arange(k * channels + g * size, k * channels + (g + 1) * size) for k in range(len(BIASED))]
                ).to(weights["bias"].device)
                built["bias_groups"].append(
                    pixelcnn._Layer(weights["bias"][picked], biases["bias"][picked], "B", ACT_BITS, ACT_CLAMP)
                )
        return built

    def layers(self) -> dict:
        """The gray networks' layers."""
        if self._layers is None or self._layers["small"].first_dy.device != self.device:
            self._layers = self._build("", 1)
        return self._layers

    def rgb_layers(self) -> dict:
        """The RGB networks' layers (masks over GROUPS channel groups)."""
        if not hasattr(self, "rgb_first_weight"):
            raise ValueError(f"multiscale {self.version} codes gray images only")
        if self._rgb_layers is None or self._rgb_layers["small"].first_dy.device != self.device:
            self._rgb_layers = self._build("rgb_", GROUPS)
        return self._rgb_layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        self._rgb_layers = None
        return super()._apply(fn, *args, **kwargs)

    def _check_mode(self, channels: int) -> None:
        if channels not in (1, 3, 4) or (channels > 1 and "RGB" not in self.modes):
            modes = " and ".join(self.modes)
            raise ValueError(f"multiscale {self.version} codes {modes} images, not {channels} channels")

    # --- the whole image at once ----------------------------------------------------------------

    def conditioning(self, pixels: torch.Tensor, layers: dict | None = None) -> torch.Tensor:
        """uint8 (1, C, H, W) -> relu(c), int64 (1, channels, H, W) at 2**-ACT_BITS: the
        conditioning stack (of ``layers``, default the gray networks'), which reads only the
        stage-1 pixels (all C channels of them)."""
        layers = self.layers() if layers is None else layers
        _, _, height, width = pixels.shape
        known = stage1_mask(height, width, pixels.device).to(torch.int64)[None, None]
        sparse = torch.cat([(pixels.to(torch.int64) - 128) * known, known << INPUT_BITS], 1)
        c = layers["cond_first"].whole(sparse)
        for a in range(COND_BLOCKS):
            c = _clamp(c + layers[f"cond_residual{a}"].whole(c.clamp(min=0)))
        return c.clamp(min=0)

    def stage_log_probs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Natural-log likelihood of one uint8 image (1, C, H, W), C = 1 (gray) or 3 (RGB):
        (stage 1, stage 2), float64, summed over the channels."""
        image = image.to(self.device)
        groups = image.shape[1]
        layers = self.layers() if groups == 1 else self.rgb_layers()
        small_stack, stack = layers["small"], layers["stage2"]
        channels = small_stack.channels
        small = image[:, :, ::FACTOR, ::FACTOR].contiguous()
        features = small_stack.whole(small)[0].reshape(channels, -1).t()
        stage1 = torch.zeros((), dtype=torch.float64, device=image.device)
        for g in range(groups):

            def small_logits(rows: torch.Tensor, g: int = g) -> torch.Tensor:
                return small_stack.logits(rows)[:, g * 256 : (g + 1) * 256]

            symbols = small[0, g].reshape(-1).long()
            stage1 = stage1 + exact.softmax_log_prob(small_logits, features, symbols, ACT_BITS)
        rest = ~stage1_mask(image.shape[2], image.shape[3], image.device).reshape(-1)
        stage2 = torch.zeros((), dtype=torch.float64, device=image.device)
        if not bool(rest.any()):
            return stage1, stage2
        rc = self.conditioning(image, layers)
        bias = [chunk.whole(rc) for chunk in layers["bias_chunks"]]
        features = torch.cat([stack.whole(image, bias), bias[-1]], 1)[0].reshape(2 * channels, -1).t()[rest]
        for g in range(groups):

            def logits(f: torch.Tensor, g: int = g) -> torch.Tensor:
                return stack.logits(f[:, :channels], f[:, channels:])[:, g * 256 : (g + 1) * 256]

            symbols = image[0, g].reshape(-1)[rest].long()
            stage2 = stage2 + exact.softmax_log_prob(logits, features, symbols, ACT_BITS)
        return stage1, stage2

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        self._check_mode(images.shape[1])
        totals = []
        for i in range(images.shape[0]):
            image = images[i : i + 1]
            stage1, stage2 = self.stage_log_probs(image[:, :3])
            total = stage1 + stage2
            if image.shape[1] == 4:  # alpha by itself, with the gray networks
                total = total + sum(self.stage_log_probs(image[:, 3:]))
            totals.append(total)
        return torch.stack(totals).to(torch.float64)

    # --- decoding, layer by layer at the step's positions ---------------------------------------

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

    @staticmethod
    def _stage1_schedule(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The stage-1 positions by their step in stage 2's wavefront (t = (RIGHT + 1) * row + col)."""
        rows, cols = torch.meshgrid(
            torch.arange(0, height, FACTOR, device=device),
            torch.arange(0, width, FACTOR, device=device),
            indexing="ij",
        )
        t = ((RIGHT + 1) * rows + cols).reshape(-1)
        order = torch.argsort(t, stable=True)
        return t[order], rows.reshape(-1)[order], cols.reshape(-1)[order]

    @staticmethod
    def _pending(state: dict, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stage-1 positions of every earlier step of stage 2's wavefront than this one's
        whose stage-2 features are not computed yet (marked done)."""
        t = (RIGHT + 1) * int(rows[0]) + int(cols[0])
        steps, stage1_rows, stage1_cols = state["stage1"]
        upto = int(torch.searchsorted(steps, torch.tensor(t, device=steps.device)))
        done = state["done"]
        state["done"] = max(upto, done)
        return stage1_rows[done:upto], stage1_cols[done:upto]

    def _gray_begin(self, canvas: torch.Tensor):
        layers = self.layers()
        small_stack, stack = layers["small"], layers["stage2"]
        _, height, width = canvas.shape
        device = canvas.device
        small_canvas = canvas[0, ::FACTOR, ::FACTOR]  # a view: it sees what is coded
        small_planes = torch.zeros(
            BLOCKS, CHANNELS, small_canvas.shape[0] + 2, small_canvas.shape[1] + 2, dtype=torch.float64, device=device
        )
        state: dict = {}

        def start_stage2() -> None:
            """Every stage-1 pixel is known: the conditioning planes, empty caches, and the
            stage-1 positions by their step in stage 2's wavefront."""
            rc = self.conditioning(canvas[None], layers)[0]
            state["rc"] = rc.reshape(CHANNELS, -1).t().to(torch.float64).contiguous()  # (H * W, C)
            state["planes"] = torch.zeros(BLOCKS, CHANNELS, height + 2, width + 2, dtype=torch.float64, device=device)
            state["stage1"] = self._stage1_schedule(height, width, device)
            state["done"] = 0  # stage-1 positions computed so far (in the order above)

        def stage2_at(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """relu(h_BLOCKS) and the head's bias at positions whose inputs are cached."""
            biases = layers["bias"].at(state["rc"][rows * width + cols])  # (N, len(BIASED) * C)
            bias = [biases[:, k * CHANNELS : (k + 1) * CHANNELS] for k in range(len(BIASED))]
            return stack.at(canvas[0], state["planes"], rows, cols, bias), bias[-1]

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            if int(rows[0]) % FACTOR == 0 and int(cols[0]) % FACTOR == 0:  # stage 1 (stage 2 has none)
                features = small_stack.at(small_canvas, small_planes, rows // FACTOR, cols // FACTOR)
                return exact.softmax_frequencies(small_stack.logits(features), ACT_BITS)
            if not state:
                start_stage2()
            # The stage-1 positions' features (stage 2's network there, which later steps read)
            # depend on stage-2 pixels, so they are computed in the wavefront too: those of every
            # earlier step than this one not yet done join this call's positions in one batch
            # (the layers run one after the other over the whole batch, each reading the previous
            # one's outputs, cached or in the batch: a batch may hold positions that read others).
            pending_rows, pending_cols = self._pending(state, rows, cols)
            n = len(pending_rows)  # this call's own positions start at n in the batch
            if n:
                rows, cols = torch.cat([pending_rows, rows]), torch.cat([pending_cols, cols])
            features, head_bias = stage2_at(rows, cols)
            return exact.softmax_frequencies(stack.logits(features[n:], head_bias[n:]), ACT_BITS)

        return step

    def _rgb_begin(self, canvas: torch.Tensor):
        """The step function of an RGB canvas (3, H, W): channel g's call computes group g of each
        layer at its positions."""
        layers = self.rgb_layers()
        small_stack, stack = layers["small"], layers["stage2"]
        _, height, width = canvas.shape
        device = canvas.device
        small_canvas = canvas[:, ::FACTOR, ::FACTOR]  # a view: it sees what is coded
        small_height, small_width = small_canvas.shape[1:]
        # position-major caches (``_Stack.group_at``, ``group_logits``)
        padded = (small_height + 2) * (small_width + 2)
        small_planes = torch.zeros(BLOCKS, padded, RGB_CHANNELS, dtype=torch.float64, device=device)
        small_top = torch.zeros(2, small_height * small_width, RGB_CHANNELS, dtype=torch.float64, device=device)
        size = RGB_CHANNELS // GROUPS
        state: dict = {}

        def start_stage2() -> None:
            """Every stage-1 pixel (all three channels) is known: the conditioning planes, empty
            caches, and the stage-1 positions by their step in stage 2's wavefront."""
            rc = self.conditioning(canvas[None], layers)[0]
            state["rc"] = rc.reshape(RGB_CHANNELS, -1).t().to(torch.float64).contiguous()  # (H * W, C)
            padded = (height + 2) * (width + 2)
            state["planes"] = torch.zeros(BLOCKS, padded, RGB_CHANNELS, dtype=torch.float64, device=device)
            state["top"] = torch.zeros(2, height * width, RGB_CHANNELS, dtype=torch.float64, device=device)
            state["stage1"] = self._stage1_schedule(height, width, device)
            state["done"] = 0

        def stage2_at(rows: torch.Tensor, cols: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
            """Group ``group`` of relu(h_BLOCKS) and of the head's bias at positions whose inputs
            are cached."""
            biases = layers["bias_groups"][group].at(state["rc"][rows * width + cols])  # (N, len(BIASED) * size)
            bias = [biases[:, k * size : (k + 1) * size] for k in range(len(BIASED))]
            return stack.group_at(canvas, state["planes"], rows, cols, group, bias), bias[-1]

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            if int(rows[0]) % FACTOR == 0 and int(cols[0]) % FACTOR == 0:  # stage 1 (stage 2 has none)
                small_rows, small_cols = rows // FACTOR, cols // FACTOR
                features = small_stack.group_at(small_canvas, small_planes, small_rows, small_cols, channel)
                here = small_rows * small_width + small_cols
                logits = small_stack.group_logits(small_top, here, features, channel, None)
                return exact.softmax_frequencies(logits, ACT_BITS)
            if not state:
                start_stage2()
            # The stage-1 positions of earlier steps not yet done (see the gray step), all three
            # groups of them at once, group after group (every channel of theirs is known; they
            # never read each other, being FACTOR apart), before this call's own positions, which
            # may read them.
            pending_rows, pending_cols = self._pending(state, rows, cols)
            if len(pending_rows):
                for group in range(GROUPS):
                    stage2_at(pending_rows, pending_cols, group)
            features, head_bias = stage2_at(rows, cols, channel)
            logits = stack.group_logits(state["top"], rows * width + cols, features, channel, head_bias)
            return exact.softmax_frequencies(logits, ACT_BITS)

        return step
