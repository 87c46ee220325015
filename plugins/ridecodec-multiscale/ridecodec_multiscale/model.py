"""The exact multi-scale PixelRNN: the trained networks (``network.py``) in integer arithmetic,
coded in two stages (``ridecodec.schedule.subsampled_first``).

Stage 1 codes the subsampled image ``s = x[::2, ::2]`` (the pixels (2i, 2j)) in the wavefront of
its own grid with an unconditional PixelCNN (``ridecodec_pixelcnn``'s gray architecture, this
package's weights) reading a strided view of the canvas. Stage 2 codes every other pixel in the
wavefront of the full grid with a PixelCNN whose layers are biased by features of the stage-1
pixels (``network.Conditional``). When stage 2 starts, every stage-1 pixel is known: the
conditioning stack (unmasked 5x5 and 3x3 convolutions of the sparse image ``[u * k, k]``) runs
once on the whole image, and each step gathers its per-layer biases at its positions. Stage 2's
network runs at the stage-1 positions too (as in the float network: later pixels read its
features there); a stage-1 position's features need the stage-2 pixels before it in stage 2's
wavefront, so a step first computes those of every stage-1 position of earlier wavefront steps.
Decoding caches every layer, as ``pixelcnn`` does: each position's layers are computed once.

Fixed point as in ``ridecodec_pixelcnn`` (whose constants and exact layer class this reuses): inputs
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
from ridecodec_pixelcnn.model import ACT_BITS, ACT_CLAMP, INPUT_BITS, WEIGHT_BITS

WEIGHTS_FILE = "multiscale-gray.npz"
FACTOR = 2
#: Both stages: CHANNELS feature maps, BLOCKS masked 3x3 residual blocks (pixelcnn's gray
#: network); stage 2 adds COND_BLOCKS unmasked 3x3 blocks in its conditioning stack.
CHANNELS = 32
BLOCKS = 4
COND_BLOCKS = 2
#: right-reach of each stage's wavefront (stage 1 on its own grid): 7x7 mask A reaches 3, each
#: masked 3x3 block one more
SMALL_RIGHT = RIGHT = 3 + BLOCKS
MASKED_LAYERS = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head", "out"]
COND_LAYERS = ["cond_first"] + [f"cond_residual{a}" for a in range(COND_BLOCKS)] + ["bias"]
#: every weight of the file: stage 1's (``small_`` + a masked layer) and stage 2's
LAYERS = [f"small_{layer}" for layer in MASKED_LAYERS] + MASKED_LAYERS + COND_LAYERS
#: the layers the ``bias`` convolution's output chunks feed, in order
BIASED = ["first"] + [f"residual{b}" for b in range(BLOCKS)] + ["head"]


def _clamp(values: torch.Tensor) -> torch.Tensor:
    return values.clamp_(-ACT_CLAMP, ACT_CLAMP)


class _Unmasked:
    """An unmasked convolution of the conditioning stack, whole image only."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, input_bits: int, input_bound: int):
        self.conv = exact.ExactConv2d(weight, bias, input_bound)
        self.shift = input_bits + WEIGHT_BITS - ACT_BITS

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return pixelcnn._rescale(self.conv(x), self.shift)


class _Stack:
    """pixelcnn's gray network in exact integers, each layer optionally biased (stage 2): on the
    whole image, or at a step's positions from cached planes of relu(h_b)."""

    def __init__(self, weights: dict[str, torch.Tensor], biases: dict[str, torch.Tensor]):
        self.layers = {
            layer: pixelcnn._Layer(
                weights[layer],
                biases[layer],
                "A" if layer == "first" else "B",
                INPUT_BITS if layer == "first" else ACT_BITS,
                128 if layer == "first" else ACT_CLAMP,
            )
            for layer in MASKED_LAYERS
        }
        device = weights["first"].device
        self.first_dy = torch.tensor([dy for dy, _ in self.layers["first"].offsets], device=device)
        self.first_dx = torch.tensor([dx for _, dx in self.layers["first"].offsets], device=device)
        self.block_offsets: dict[int, torch.Tensor] = {}  # per padded width: the 3x3 layers' reads

    def whole(self, pixels: torch.Tensor, bias: list[torch.Tensor] | None = None) -> torch.Tensor:
        """uint8 (1, 1, H, W), per-layer biases (1, C, H, W) -> relu(h_BLOCKS) (1, C, H, W)."""
        h = self.layers["first"].whole(pixels.to(torch.int64) - 128)
        if bias is not None:
            h = _clamp(h + bias[0])
        for b in range(BLOCKS):
            update = self.layers[f"residual{b}"].whole(h.clamp(min=0))
            h = _clamp(h + update if bias is None else h + update + bias[b + 1])
        return h.clamp(min=0)

    def logits(self, features: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """relu(h) at positions (N, C) [and the head's bias (N, C)] -> (N, 256) int64 logits."""
        hidden = self.layers["head"].pointwise(features)
        if bias is not None:
            hidden = _clamp(hidden + bias)
        return self.layers["out"].pointwise(hidden.clamp(min=0))

    def at(
        self,
        canvas: torch.Tensor,
        planes: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        bias: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """relu(h_BLOCKS) (N, C) at positions whose inputs are coded and cached: ``canvas`` (H, W)
        uint8 (a view of the engine's), ``planes`` (BLOCKS, C, H + 2, W + 2) float64, relu(h_b)
        zero-padded by one, into which this writes the positions' own."""
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
        if padded_width not in self.block_offsets:
            offsets = [dy * padded_width + dx for dy, dx in self.layers["residual0"].offsets]
            self.block_offsets[padded_width] = torch.tensor(offsets, device=rows.device)
        centre = (rows + 1) * padded_width + cols + 1  # in the padded planes
        where = (centre[:, None] + self.block_offsets[padded_width][None, :]).reshape(-1)  # (N * K,)
        flat_planes = planes.view(BLOCKS, CHANNELS, -1)
        for b in range(BLOCKS):
            flat_planes[b][:, centre] = h.clamp(min=0).t().to(torch.float64)
            gathered = flat_planes[b][:, where].view(CHANNELS, n, -1).permute(1, 0, 2).reshape(n, -1)
            update = self.layers[f"residual{b}"].at(gathered)
            h = _clamp(h + update if bias is None else h + update + bias[b + 1])
        return h.clamp(min=0)


def stage1_mask(height: int, width: int, device: torch.device) -> torch.Tensor:
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
    reach = CausalReach(up=FACTOR * SMALL_RIGHT, left=FACTOR * SMALL_RIGHT, right=FACTOR * SMALL_RIGHT)
    exact_across_devices = True
    #: ridecodec.sampling draws in the declared order (inpainting refuses models in their own order)
    can_sample = True

    def __init__(self):
        super().__init__()
        with resources.files(__package__).joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
            arrays = {key: torch.from_numpy(archive[key].astype(np.int64)) for key in archive.files}
        for layer in LAYERS:
            self.register_buffer(f"{layer}_weight", arrays[f"{layer}_weight"])
            self.register_buffer(f"{layer}_bias", arrays[f"{layer}_bias"])
        self._layers: dict | None = None  # built at first use

    def coding_order(self, height: int, width: int) -> schedule.Stages:
        return schedule.subsampled_first(height, width, FACTOR, SMALL_RIGHT, RIGHT)

    def layers(self) -> dict:
        if self._layers is None or self._layers["small"].first_dy.device != self.device:
            weights = {layer: getattr(self, f"{layer}_weight") for layer in LAYERS}
            biases = {layer: getattr(self, f"{layer}_bias") for layer in LAYERS}
            small = {layer: weights[f"small_{layer}"] for layer in MASKED_LAYERS}
            small_biases = {layer: biases[f"small_{layer}"] for layer in MASKED_LAYERS}
            built: dict = {"small": _Stack(small, small_biases), "stage2": _Stack(weights, biases)}
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

    # --- the whole image at once ----------------------------------------------------------------

    def conditioning(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (1, 1, H, W) -> relu(c), int64 (1, CHANNELS, H, W) at 2**-ACT_BITS: the
        conditioning stack, which reads only the stage-1 pixels."""
        layers = self.layers()
        _, _, height, width = pixels.shape
        known = stage1_mask(height, width, pixels.device).to(torch.int64)[None, None]
        sparse = torch.cat([(pixels.to(torch.int64) - 128) * known, known << INPUT_BITS], 1)
        c = layers["cond_first"].whole(sparse)
        for a in range(COND_BLOCKS):
            c = _clamp(c + layers[f"cond_residual{a}"].whole(c.clamp(min=0)))
        return c.clamp(min=0)

    def stage_log_probs(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Natural-log likelihood of one uint8 image (1, 1, H, W): (stage 1, stage 2), float64."""
        layers = self.layers()
        image = image.to(self.device)
        small_stack, stack = layers["small"], layers["stage2"]
        small = image[:, :, ::FACTOR, ::FACTOR].contiguous()
        features = small_stack.whole(small)[0].reshape(CHANNELS, -1).t()
        stage1 = exact.softmax_log_prob(small_stack.logits, features, small.reshape(-1).long(), ACT_BITS)
        rest = ~stage1_mask(image.shape[2], image.shape[3], image.device).reshape(-1)
        if not bool(rest.any()):
            return stage1, torch.zeros((), dtype=torch.float64, device=image.device)
        rc = self.conditioning(image)
        bias = [chunk.whole(rc) for chunk in layers["bias_chunks"]]
        features = torch.cat([stack.whole(image, bias), bias[-1]], 1)[0].reshape(2 * CHANNELS, -1).t()[rest]
        symbols = image.reshape(-1)[rest].long()
        stage2 = exact.softmax_log_prob(
            lambda f: stack.logits(f[:, :CHANNELS], f[:, CHANNELS:]), features, symbols, ACT_BITS
        )
        return stage1, stage2

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != 1:
            raise ValueError("multiscale codes gray images only")
        totals = []
        for i in range(images.shape[0]):
            stage1, stage2 = self.stage_log_probs(images[i : i + 1])
            totals.append(stage1 + stage2)
        return torch.stack(totals).to(torch.float64)

    # --- decoding, layer by layer at the step's positions ---------------------------------------

    def begin(self, canvas: torch.Tensor):
        if canvas.shape[0] != 1:
            raise ValueError("multiscale codes gray images only")
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
            stage-1 positions by their step in stage 2's wavefront (t = (RIGHT + 1) * row + col)."""
            rc = self.conditioning(canvas[None])[0]
            state["rc"] = rc.reshape(CHANNELS, -1).t().to(torch.float64).contiguous()  # (H * W, C)
            state["planes"] = torch.zeros(BLOCKS, CHANNELS, height + 2, width + 2, dtype=torch.float64, device=device)
            rows, cols = torch.meshgrid(
                torch.arange(0, height, FACTOR, device=device),
                torch.arange(0, width, FACTOR, device=device),
                indexing="ij",
            )
            t = ((RIGHT + 1) * rows + cols).reshape(-1)
            order = torch.argsort(t, stable=True)
            state["stage1"] = (t[order], rows.reshape(-1)[order], cols.reshape(-1)[order])
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
            n = 0  # this call's own positions start at n in the batch
            # The stage-1 positions' features (stage 2's network there, which later steps read)
            # depend on stage-2 pixels, so they are computed in the wavefront too: those of every
            # earlier step than this one not yet done join this call's positions in one batch
            # (the layers run one after the other over the whole batch, each reading the previous
            # one's outputs, cached or in the batch: a batch may hold positions that read others).
            t = (RIGHT + 1) * int(rows[0]) + int(cols[0])
            steps, stage1_rows, stage1_cols = state["stage1"]
            upto = int(torch.searchsorted(steps, torch.tensor(t, device=device)))
            if upto > state["done"]:
                rows = torch.cat([stage1_rows[state["done"] : upto], rows])
                cols = torch.cat([stage1_cols[state["done"] : upto], cols])
                n = upto - state["done"]
                state["done"] = upto
            features, head_bias = stage2_at(rows, cols)
            return exact.softmax_frequencies(stack.logits(features[n:], head_bias[n:]), ACT_BITS)

        return step
