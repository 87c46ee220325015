"""The multi-scale PixelRNN (van den Oord et al. 2016, section 3.5) in float, for training: the
architecture the exact model (``model.py``) computes in integers. Factor 2. Gray (one channel
group) or colour (``groups = 3``: R, G, B, with ``ridecodec_pixelcnn``'s masks over the groups).

Stage 1, the small image ``s = x[::2, ::2]``: an unconditional PixelCNN (``ridecodec_pixelcnn``'s
network: 7x7 mask A, residual 3x3 mask-B blocks, two 1x1 layers, 256-way softmax).

Stage 2, every other pixel of ``x``, given all of ``s``: a PixelCNN on the full grid whose layers
are biased by features of the subsampled image::

    u      = (x - 128) / 128;  k = 1 at the stage-1 positions (2i, 2j), else 0
    c_0    = conv5x5([u * k, k])                       unmasked: only stage-1 pixels are read
                                                       (in colour all three channels of them)
    c_a+1  = c_a + conv3x3(relu(c_a))                  unmasked, on the full grid
    b      = conv1x1(relu(c_A))                        one bias plane per layer below
    h_0    = conv7x7_A(u) + b_first                    mask A on the canvas (known: up and left)
    h_n+1  = h_n + conv3x3_B(relu(h_n)) + b_n          residual blocks, mask B
    logits = conv1x1(relu(conv1x1(relu(h_N)) + b_head))

The loss counts the stage-2 positions only. The "upsampling" of the small image is the
conditioning stack run on the sparse full-grid image ``[u * k, k]``: a convolution there sees
each stage-1 neighbour at its true offset, so every parity class of pixel gets its own taps.
Without ``b`` the stage-2 network is ``ridecodec_pixelcnn``'s, which training starts from.

In colour every masked layer has its features in three ordered groups (R, G, B): at a pixel,
channel g's logits read the earlier pixels (all channels), the pixel's channels before g, and,
through ``b``, every channel of every stage-1 pixel in reach (they are all coded before stage 2).
The conditioning stack itself is unmasked: it has no groups to keep apart.
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

    def __init__(self, channels: int = 32, blocks: int = 4, cond_blocks: int = 2, groups: int = 1):
        super().__init__()
        self.channels, self.blocks, self.cond_blocks, self.groups = channels, blocks, cond_blocks, groups
        self.first = MaskedConv2d(groups, channels, 7, "A", groups)
        self.residual = torch.nn.ModuleList(MaskedConv2d(channels, channels, 3, "B", groups) for _ in range(blocks))
        self.head = MaskedConv2d(channels, channels, 1, "B", groups)
        self.out = MaskedConv2d(channels, groups * ALPHABET, 1, "B", groups)
        self.cond_first = torch.nn.Conv2d(groups + 1, channels, 5, padding=2)
        self.cond_residual = torch.nn.ModuleList(
            torch.nn.Conv2d(channels, channels, 3, padding=1) for _ in range(cond_blocks)
        )
        self.bias = torch.nn.Conv2d(channels, channels * (blocks + 2), 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, groups, H, W) -> logits (B, groups, 256, H, W) (meaningful at the stage-2
        positions)."""
        return self.logits((pixels.float() - 128.0) / 128.0)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """The centred input u = (x - 128) / 128, float (B, groups, H, W) -> logits."""
        b, _, height, width = u.shape
        known = stage1_indicator(height, width, u.device)[None, None]
        c = self.cond_first(torch.cat([u * known, known.expand(b, 1, height, width)], 1))
        for conv in self.cond_residual:
            c = c + conv(F.relu(c))
        biases = self.bias(F.relu(c)).chunk(self.blocks + 2, dim=1)
        h = self.first(u) + biases[0]
        for k, conv in enumerate(self.residual):
            h = h + conv(F.relu(h)) + biases[k + 1]
        logits = self.out(F.relu(self.head(F.relu(h)) + biases[-1]))
        return logits.view(b, self.groups, ALPHABET, height, width)

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the stage-2 pixels, bits per sample (pixel and channel)."""
        logits = self(pixels)
        known = stage1_indicator(pixels.shape[2], pixels.shape[3], pixels.device).bool()
        picked = logits.permute(0, 1, 3, 4, 2)[:, :, ~known]  # (B, groups, n, 256)
        symbols = pixels[:, :, ~known].long()  # (B, groups, n)
        loss = F.cross_entropy(picked.reshape(-1, ALPHABET), symbols.reshape(-1))
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        config = {"channels": self.channels, "blocks": self.blocks, "cond_blocks": self.cond_blocks}
        return config | ({"groups": self.groups} if self.groups > 1 else {})  # (gray: version 1's config)


class MultiScale(torch.nn.Module):
    """Both stages: ``small`` (a PixelCNN of the subsampled image) and ``conditional``, each of
    ``channels`` features in ``groups`` groups (the exact model reuses pixelcnn's network, of the
    sizes it ships: 32 channels gray, 96 in three groups RGB)."""

    def __init__(self, channels: int = 32, blocks: int = 4, cond_blocks: int = 2, groups: int = 1):
        super().__init__()
        self.small = PixelCNN(channels, blocks, groups=groups)
        self.conditional = Conditional(channels, blocks, cond_blocks, groups)

    def config(self) -> dict:
        return self.conditional.config()
