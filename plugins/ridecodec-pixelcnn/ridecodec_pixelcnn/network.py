"""PixelCNN (van den Oord et al. 2016) in float, for training: the architecture the exact model
(``model.py``) computes in integers.

    u      = (x - 128) / 128                            the pixels, centred
    h_0    = conv7x7_A(u)                               mask A: a pixel never sees itself
    h_b+1  = h_b + conv3x3_B(relu(h_b))                 residual blocks, mask B
    o      = relu(conv1x1_B(relu(h_n)))
    logits = conv1x1_B(o)                               256 logits per channel, softmax

Channels are split into ``groups`` ordered groups (1 for gray; R, G, B for colour) by the masks of
``ridecodec.exact.causal_mask``; the logits are (groups * 256) channels, group after group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ridecodec.exact import causal_mask

ALPHABET = 256


class MaskedConv2d(torch.nn.Conv2d):
    mask: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, in_channels, out_channels, size, kind, groups):
        super().__init__(in_channels, out_channels, size, padding=size // 2)
        self.register_buffer("mask", causal_mask(out_channels, in_channels, size, size, kind, groups).float())

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(torch.nn.Module):
    def __init__(self, channels: int = 32, blocks: int = 4, groups: int = 1):
        super().__init__()
        self.channels, self.blocks, self.groups = channels, blocks, groups
        self.first = MaskedConv2d(groups, channels, 7, "A", groups)
        self.residual = torch.nn.ModuleList(MaskedConv2d(channels, channels, 3, "B", groups) for _ in range(blocks))
        self.head = MaskedConv2d(channels, channels, 1, "B", groups)
        self.out = MaskedConv2d(channels, groups * ALPHABET, 1, "B", groups)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, groups, H, W) -> logits (B, groups, 256, H, W)."""
        return self.logits((pixels.float() - 128.0) / 128.0)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """The centred input u = (x - 128) / 128, float (B, groups, H, W) -> logits (B, groups, 256, H, W)."""
        h = self.first(u)
        for conv in self.residual:
            h = h + conv(F.relu(h))
        logits = self.out(F.relu(self.head(F.relu(h))))
        b, _, height, width = logits.shape
        return logits.view(b, self.groups, ALPHABET, height, width)

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in bits per sample."""
        logits = self(pixels)
        loss = F.cross_entropy(logits.permute(0, 1, 3, 4, 2).reshape(-1, ALPHABET), pixels.long().reshape(-1))
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        return {"channels": self.channels, "blocks": self.blocks, "groups": self.groups}
