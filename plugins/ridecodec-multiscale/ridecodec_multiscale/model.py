"""The exact multi-scale PixelRNN: the trained networks (``network.py``) in integer arithmetic,
coded in two stages (``ridecodec.schedule.subsampled_first``).

Stage 1 codes the subsampled image ``s = x[::2, ::2]`` (the pixels (2i, 2j)) in the wavefront of
its own grid with an unconditional PixelCNN: ``ridecodec_pixelcnn``'s exact model, run with this
package's weights on a strided view of the canvas. Stage 2 codes every other pixel in the
wavefront of the full grid with a PixelCNN whose layers are biased by features of the stage-1
pixels (``network.Conditional``). When stage 2 starts, every stage-1 pixel is known: the
conditioning stack (unmasked 5x5 and 3x3 convolutions of the sparse image ``[u * k, k]``) runs
once on the whole image, and each step gathers its per-layer biases at its positions.

Fixed point as in ``ridecodec_pixelcnn`` (whose constants and layer class this reuses): inputs
``x - 128`` (and the indicator ``k`` as 128) at 2**-7, weights at 2**-16, every activation an
integer at 2**-12 clamped to +-2**22; convolutions are ``ExactConv2d`` (whole image) or the same
integers gathered at a step's positions; ``shift_round`` rescales; the softmax is
``exact.softmax_frequencies``. ``log_prob`` runs both stages' convolutions on the whole image:
the same integers, so the same tables.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from ridecodec import exact, schedule
from ridecodec.models import CausalReach, DensityModel
from ridecodec_pixelcnn import model as pixelcnn
from ridecodec_pixelcnn.model import ACT_BITS, ACT_CLAMP, INPUT_BITS, WEIGHT_BITS, PixelCNNModel

WEIGHTS_FILE = "multiscale-gray.npz"
FACTOR = 2
#: Stage 2: CHANNELS feature maps, BLOCKS masked 3x3 residual blocks, COND_BLOCKS unmasked ones.
CHANNELS = 32
BLOCKS = 4
COND_BLOCKS = 2
#: right-reach of each stage's wavefront: 7x7 mask A reaches 3, each masked 3x3 block one more
#: (stage 1 on its own grid)
SMALL_RIGHT = pixelcnn.PixelCNNModel.reach.right
RIGHT = 3 + BLOCKS
MASKED_LAYERS = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head", "out"]
COND_LAYERS = ["cond_first"] + [f"cond_residual{a}" for a in range(COND_BLOCKS)] + ["bias"]
LAYERS = MASKED_LAYERS + COND_LAYERS
SMALL_LAYERS = pixelcnn.LAYERS
#: the layers the ``bias`` convolution's output chunks feed, in order
BIASED = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head"]


class _Unmasked:
    """An unmasked convolution of the conditioning stack, whole image only."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_bits: int, input_bound: int):
        self.conv = exact.ExactConv2d(weight, bias, input_bound)
        self.shift = input_bits + WEIGHT_BITS - ACT_BITS

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return pixelcnn._rescale(self.conv(x), self.shift)


class _SmallPixelCNN(PixelCNNModel):
    """Stage 1: ``pixelcnn``'s exact model (features, head, log_prob, cached stepping), with the
    weights handed in instead of pixelcnn's own."""

    def __init__(self, arrays: dict[str, torch.Tensor]):
        super(PixelCNNModel, self).__init__()  # (skips loading pixelcnn's weights file)
        for layer in SMALL_LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers = None


def stage1_mask(height: int, width: int, device) -> torch.Tensor:
    """(H, W) bool: the stage-1 positions."""
    known = torch.zeros(height, width, dtype=torch.bool, device=device)
    known[::FACTOR, ::FACTOR] = True
    return known


class MultiScaleModel(DensityModel):
    """The multi-scale PixelRNN (van den Oord et al. 2016), gray, factor 2: a PixelCNN of the
    subsampled image, then a PixelCNN of the rest biased by it, in exact integers."""

    name = "multiscale"
    version = "1"
    modes = ("L",)
    #: On the full grid. Stage 1 reads 7 small pixels (14 full ones) up, left and right; stage 2
    #: reads 7 up, left and right through its masked stack, and its biases read stage-1 pixels up
    #: to 4 further in every direction, below included (the order is ``coding_order``'s, not this
    #: reach's wavefront).
    reach = CausalReach(up=2 * SMALL_RIGHT, left=2 * SMALL_RIGHT, right=2 * SMALL_RIGHT)
    exact_across_devices = True

    def __init__(self):
        super().__init__()
        with resources.files(__package__).joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
            arrays = {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}
        small = {key.removeprefix("small_"): value for key, value in arrays.items() if key.startswith("small_")}
        self.small = _SmallPixelCNN(small)
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers: dict | None = None  # built at first use

    def coding_order(self, height: int, width: int):
        return schedule.subsampled_first(height, width, FACTOR, SMALL_RIGHT, RIGHT)

    def layers(self) -> dict:
        if self._layers is None or self._layers["first"].matrix.device != self.device:
            weights = {layer: getattr(self, f"{layer}_weight") for layer in LAYERS}
            biases = {layer: getattr(self, f"{layer}_bias") for layer in LAYERS}
            built: dict = {
                layer: pixelcnn._Layer(
                    weights[layer],
                    biases[layer],
                    "A" if layer == "first" else "B",
                    INPUT_BITS if layer == "first" else ACT_BITS,
                    128 if layer == "first" else ACT_CLAMP,
                )
                for layer in MASKED_LAYERS
            }
            built["cond_first"] = _Unmasked(weights["cond_first"], biases["cond_first"], INPUT_BITS, 128)
            for a in range(COND_BLOCKS):
                layer = f"cond_residual{a}"
                built[layer] = _Unmasked(weights[layer], biases[layer], ACT_BITS, ACT_CLAMP)
            # the per-layer biases: one 1x1 product at a step's positions (all chunks at once), one
            # 1x1 convolution per chunk on the whole image; the same integers either way
            built["bias"] = pixelcnn._Layer(weights["bias"], biases["bias"], "B", ACT_BITS, ACT_CLAMP)
            built["bias_chunks"] = [
                pixelcnn._Layer(
                    weights["bias"][k * CHANNELS : (k + 1) * CHANNELS],
                    biases["bias"][k * CHANNELS : (k + 1) * CHANNELS],
                    "B",
                    ACT_BITS,
                    ACT_CLAMP,
                )
                for k in range(len(BIASED))
            ]
            self._layers = built
        return self._layers

    def _apply(self, fn, *args, **kwargs):  # .to(device): rebuild the derived layers there
        self._layers = None
        return super()._apply(fn, *args, **kwargs)

    # --- stage 2 on the whole image -------------------------------------------------------------

    def conditioning(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> relu(c), int64 (1, CHANNELS, H, W) at 2**-ACT_BITS: the
        conditioning stack, which reads only the stage-1 pixels."""
        layers = self.layers()
        _, _, height, width = pixels.shape
        known = stage1_mask(height, width, pixels.device).to(torch.int64)[None, None]
        sparse = torch.cat([(pixels.to(torch.int64) - 128) * known, known << INPUT_BITS], 1)
        c = layers["cond_first"].whole(sparse)
        for a in range(COND_BLOCKS):
            c = (c + layers[f"cond_residual{a}"].whole(c.clamp(min=0))).clamp_(-ACT_CLAMP, ACT_CLAMP)
        return c.clamp(min=0)

    def stage2_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> (H * W, 2 * CHANNELS) int64: relu(h_BLOCKS) and the head's bias."""
        layers = self.layers()
        _, _, height, width = pixels.shape
        rc = self.conditioning(pixels)
        chunks = layers["bias_chunks"]
        m = (~stage1_mask(height, width, pixels.device)).to(torch.int64)[None, None]
        h = (layers["first"].whole(pixels.to(torch.int64) - 128) + chunks[0].whole(rc)).clamp_(-ACT_CLAMP, ACT_CLAMP)
        h = h * m
        for b in range(BLOCKS):
            update = layers[f"residual{b}"].whole(h.clamp(min=0)) + chunks[b + 1].whole(rc)
            h = (h + update).clamp_(-ACT_CLAMP, ACT_CLAMP) * m
        features = torch.cat([h.clamp(min=0), chunks[-1].whole(rc)], 1)[0]
        return features.reshape(2 * CHANNELS, -1).t()

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 2 * CHANNELS): relu(h) and the head's bias -> (N, 256) int64 logits."""
        layers = self.layers()
        hidden = layers["head"].pointwise(features[:, :CHANNELS]) + features[:, CHANNELS:]
        return layers["out"].pointwise(hidden.clamp_(-ACT_CLAMP, ACT_CLAMP).clamp(min=0))

    def stage_log_probs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Natural-log likelihood of one uint8 image (1, 1, H, W): (stage 1, stage 2), float64."""
        image = image.to(self.device)
        small = self.small.log_prob(image[:, :, ::FACTOR, ::FACTOR].contiguous())[0]
        rest = ~stage1_mask(image.shape[2], image.shape[3], image.device).reshape(-1)
        if not bool(rest.any()):
            return small, torch.zeros((), dtype=torch.float64, device=image.device)
        features = self.stage2_features(image)[rest]
        symbols = image[0, 0].reshape(-1)[rest].long()
        return small, exact.softmax_log_prob(self.head, features, symbols, ACT_BITS)

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != 1:
            raise ValueError("multiscale codes gray images only")
        totals = []
        for i in range(images.shape[0]):
            small, rest = self.stage_log_probs(images[i : i + 1])
            totals.append(small + rest)
        return torch.stack(totals).to(torch.float64)

    # --- decoding, layer by layer at the step's positions ---------------------------------------

    def begin(self, canvas: torch.Tensor):
        if canvas.shape[0] != 1:
            raise ValueError("multiscale codes gray images only")
        layers = self.layers()
        _, height, width = canvas.shape
        device = canvas.device
        small_step = self.small.begin(canvas[:, ::FACTOR, ::FACTOR])  # a view: it sees what is coded
        first_dy = torch.tensor([dy for dy, _ in layers["first"].offsets], device=device)
        first_dx = torch.tensor([dx for _, dx in layers["first"].offsets], device=device)
        padded_width = width + 2
        block_offsets = torch.tensor([dy * padded_width + dx for dy, dx in layers["residual0"].offsets], device=device)
        state: dict[str, torch.Tensor] = {}

        def start_stage2() -> None:
            """Every stage-1 pixel is known: the conditioning planes, and empty caches."""
            rc = self.conditioning(canvas[None])[0]
            state["rc"] = rc.reshape(CHANNELS, -1).t().to(torch.float64).contiguous()  # (H * W, C)
            # relu(h_b) for b = 0 .. BLOCKS - 1, zero-padded by one on each side and zero at the
            # stage-1 positions (never written)
            state["planes"] = torch.zeros(BLOCKS, CHANNELS, height + 2, width + 2, dtype=torch.float64, device=device)

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            rows, cols = rows.long(), cols.long()
            if int(rows[0]) % FACTOR == 0 and int(cols[0]) % FACTOR == 0:  # stage 1 (stage 2 has none)
                return small_step(rows // FACTOR, cols // FACTOR, channel)
            if not state:
                start_stage2()
            n = len(rows)
            flat_planes = state["planes"].view(BLOCKS, CHANNELS, -1)
            biases = layers["bias"].at(state["rc"][rows * width + cols])  # (N, len(BIASED) * C)
            bias = [biases[:, k * CHANNELS : (k + 1) * CHANNELS] for k in range(len(BIASED))]
            # the first layer reads the canvas: pixels up and left, all coded (stage 1 or earlier steps)
            r = rows[:, None] + first_dy[None, :]
            c = cols[:, None] + first_dx[None, :]
            inside = (r >= 0) & (c >= 0) & (c < width)  # r < height always (dy <= 0)
            values = canvas[0, r.clamp(min=0), c.clamp(0, width - 1)].to(torch.int64) - 128
            h = layers["first"].at(torch.where(inside, values, 0).to(torch.float64))
            h = (h + bias[0]).clamp_(-ACT_CLAMP, ACT_CLAMP)
            centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
            where = centre[:, None] + block_offsets[None, :]  # (N, K)
            for b in range(BLOCKS):
                flat_planes[b][:, centre] = h.clamp(min=0).t().to(torch.float64)
                gathered = flat_planes[b][:, where.reshape(-1)].view(CHANNELS, n, -1)  # (C, N, K)
                gathered = gathered.permute(1, 0, 2).reshape(n, -1)
                h = (h + layers[f"residual{b}"].at(gathered) + bias[b + 1]).clamp_(-ACT_CLAMP, ACT_CLAMP)
            features = torch.cat([h.clamp(min=0), bias[-1]], 1)
            return exact.softmax_frequencies(self.head(features), ACT_BITS)

        return step
