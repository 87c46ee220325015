"""The multi-scale PixelRNN (van den Oord et al. 2016, section 3.5) in float, for training: the
architecture the exact model (``model.py``) computes in integers. Factor 2.

Stage 1, the small image ``s = x[::2, ::2]``: an unconditional PixelCNN (``ridecodec_pixelcnn``'s
network: 7x7 mask A, residual 3x3 mask-B blocks, two 1x1 layers, 256-way softmax).

Stage 2, every other pixel of ``x``, given all of ``s``: a PixelCNN on the full grid whose layers
are biased by features of the subsampled image::

    u      = (x - 128) / 128;  k = 1 at the stage-1 positions (2i, 2j), else 0
    c_0    = conv5x5([u * k, k])                       unmasked: only stage-1 pixels are read
    c_a+1  = c_a + conv3x3(relu(c_a))                  unmasked, on the full grid
    b      = conv1x1(relu(c_A))                        one bias plane per layer below
    h_0    = conv7x7_A(u) + b_first                    mask A on the canvas (known: up and left)
    h_n+1  = h_n + conv3x3_B(relu(h_n)) + b_n          residual blocks, mask B
    logits = conv1x1(relu(conv1x1(relu(h_N)) + b_head))

The loss counts the stage-2 positions only. The "upsampling" of the small image is the
conditioning stack run on the sparse full-grid image ``[u * k, k]``: a convolution there sees
each stage-1 neighbour at its true offset, so every parity class of pixel gets its own taps.
Without ``b`` the stage-2 network is ``ridecodec_pixelcnn``'s, which training starts from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ridecodec_pixelcnn.network import MaskedConv2d, PixelCNN

ALPHABET = 256
FACTOR = 2


def stage1_indicator(height: int, width: int, device=None) -> torch.Tensor:
    """(H, W) float: 1 at the stage-1 positions (multiples of FACTOR), 0 elsewhere."""
    known = torch.zeros(height, width, device=device)
    known[::FACTOR, ::FACTOR] = 1.0
    return known


class Conditional(torch.nn.Module):
    """Stage 2: the full image given its subsampled pixels."""

    def __init__(self, channels: int = 32, blocks: int = 4, cond_blocks: int = 2):
        super().__init__()
        self.channels, self.blocks, self.cond_blocks = channels, blocks, cond_blocks
        self.first = MaskedConv2d(1, channels, 7, "A", 1)
        self.residual = torch.nn.ModuleList(MaskedConv2d(channels, channels, 3, "B", 1) for _ in range(blocks))
        self.head = MaskedConv2d(channels, channels, 1, "B", 1)
        self.out = MaskedConv2d(channels, ALPHABET, 1, "B", 1)
        self.cond_first = torch.nn.Conv2d(2, channels, 5, padding=2)
        self.cond_residual = torch.nn.ModuleList(
            torch.nn.Conv2d(channels, channels, 3, padding=1) for _ in range(cond_blocks)
        )
        self.bias = torch.nn.Conv2d(channels, channels * (blocks + 2), 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, H, W) -> logits (B, 256, H, W) (meaningful at the stage-2 positions)."""
        _, _, height, width = pixels.shape
        u = (pixels.float() - 128.0) / 128.0
        known = stage1_indicator(height, width, pixels.device)[None, None]
        c = self.cond_first(torch.cat([u * known, known.expand_as(u)], 1))
        for conv in self.cond_residual:
            c = c + conv(F.relu(c))
        biases = self.bias(F.relu(c)).chunk(self.blocks + 2, dim=1)
        h = self.first(u) + biases[0]
        for b, conv in enumerate(self.residual):
            h = h + conv(F.relu(h)) + biases[b + 1]
        return self.out(F.relu(self.head(F.relu(h)) + biases[-1]))

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the stage-2 pixels, bits per pixel."""
        logits = self(pixels)
        known = stage1_indicator(pixels.shape[2], pixels.shape[3], pixels.device).bool()
        picked = logits.permute(0, 2, 3, 1)[:, ~known]  # (B, n, 256)
        symbols = pixels[:, 0][:, ~known].long()
        loss = F.cross_entropy(picked.reshape(-1, ALPHABET), symbols.reshape(-1))
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        return {"channels": self.channels, "blocks": self.blocks, "cond_blocks": self.cond_blocks}


class MultiScale(torch.nn.Module):
    """Both stages: ``small`` (a PixelCNN of the subsampled image) and ``conditional``."""

    def __init__(self, channels: int = 32, blocks: int = 4, cond_blocks: int = 2):
        super().__init__()
        self.small = PixelCNN(32, 4, groups=1)  # the exact model reuses pixelcnn's, of this size
        self.conditional = Conditional(channels, blocks, cond_blocks)

    def config(self) -> dict:
        return self.conditional.config()
