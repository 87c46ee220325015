"""Diagonal BiLSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016) in float, for training: the
architecture the exact model (``model.py``) computes in integers. Gray (``groups=1``, version 1's
network) or RGB (``groups=3``: features in three ordered groups R, G, B).

    u       = (x - 128) / 128                               the pixels, centred
    h_0     = conv7x7_A(u)                                  mask A: a pixel never sees itself
    s_d     = conv1x1_d(relu(h_0))                          input-to-state, per direction d: 4C gates
    gates   = s_lr(i, j) + K_lr [state_lr(i, j-1); state_lr(i-1, j)]       left to right
    c_lr    = sigmoid(f) c_lr(i, j-1) + sigmoid(i) tanh(g), state_lr = sigmoid(o) tanh(c_lr)
    (right to left: the same on the image mirrored left-right: from (i, j+1) and (i-1, j))
    h_1     = h_0 + state_lr(i, j) + state_rl(i-1, j)        the right-to-left states one row down
    logits  = conv1x1(relu(conv1x1(relu(h_1))))             256-way softmax (per channel)

The state-to-state product is the paper's 2x1 convolution along a diagonal of the skewed map
(row i shifted right by i columns): in skewed coordinates a column at a time, ``(i, j-1)`` and
``(i-1, j)`` are the previous column's rows i and i-1. The memory cell follows the row: c at
(i, j-1). Both directions run in the same loop (stacked, one batched matrix product per column).

Colour (``groups=3``): every feature map (h, each direction's states and cells, the head) is split
into three contiguous groups R, G, B, and the gates are laid out group-major (group g's i, f, o, g
gates together: 4C/3 contiguous channels), so ``causal_mask(..., groups=3)`` splits them right.
The first layer has mask A over the groups (G's features see the pixel's R, B's its R and G, R's
nothing of the pixel); the left-to-right input-to-state 1x1, the head and the output 1x1 mask B
(group g reads groups <= g at the pixel). The state-to-state kernels are unmasked: they read
states of earlier pixels only. The right-to-left direction's input-to-state is unmasked too: its
states are used one row down, where the whole row is known. The logits are groups x 256 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ridecodec.exact import causal_mask

ALPHABET = 256


class MaskedConv2d(torch.nn.Conv2d):
    mask: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, in_channels: int, out_channels: int, height: int, width: int, kind: str, groups: int = 1):
        super().__init__(in_channels, out_channels, (height, width), padding=(height // 2, width // 2))
        mask = causal_mask(out_channels, in_channels, height, width, kind, groups).float()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def skew_index(height: int, width: int, device=None) -> torch.Tensor:
    """(H, W + H - 1) indices into a row-major (H, W + 1) plane whose last column is zero: row i
    shifted right by i columns (the skewed map), zeros elsewhere."""
    rows = torch.arange(height, device=device)[:, None]
    j = torch.arange(width + height - 1, device=device)[None, :] - rows
    inside = (j >= 0) & (j < width)
    return torch.where(inside, rows * (width + 1) + j, rows * (width + 1) + width)


def unskew_index(height: int, width: int, device=None) -> torch.Tensor:
    """(H, W) indices into a row-major skewed (H, W + H - 1) plane: the inverse of the skew."""
    rows = torch.arange(height, device=device)[:, None]
    return rows * (width + height - 1) + rows + torch.arange(width, device=device)[None, :]


class DiagBiLSTM(torch.nn.Module):
    def __init__(self, channels: int = 32, hidden: int = 32, groups: int = 1):
        super().__init__()
        self.channels, self.hidden, self.groups = channels, hidden, groups
        self.first = MaskedConv2d(groups, channels, 7, 7, "A", groups)
        # per direction: input-to-state 1x1 (gates i, f, o, g, group-major); state-to-state over
        # [state(i, j -+ 1); state(i-1, j)] (the 2x1 diagonal kernel), no bias
        if groups == 1:  # version 1's layers (a 1x1 mask B of one group masks nothing)
            self.lr_input = torch.nn.Conv2d(channels, 4 * channels, 1)
            self.head = torch.nn.Conv2d(channels, hidden, 1)
            self.out = torch.nn.Conv2d(hidden, ALPHABET, 1)
        else:
            self.lr_input = MaskedConv2d(channels, 4 * channels, 1, 1, "B", groups)
            self.head = MaskedConv2d(channels, hidden, 1, 1, "B", groups)
            self.out = MaskedConv2d(hidden, groups * ALPHABET, 1, 1, "B", groups)
        self.rl_input = torch.nn.Conv2d(channels, 4 * channels, 1)
        self.lr_state = torch.nn.Conv1d(2 * channels, 4 * channels, 1, bias=False)
        self.rl_state = torch.nn.Conv1d(2 * channels, 4 * channels, 1, bias=False)
        size = channels // groups
        with torch.no_grad():  # forget gates open at first
            for layer in (self.lr_input, self.rl_input, self.lr_state, self.rl_state):
                if layer.bias is not None:
                    for g in range(groups):
                        layer.bias[(4 * g + 1) * size : (4 * g + 2) * size] = 1.0
                else:
                    layer.weight.mul_(0.5)

    def directions(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_0 (B, C, H, W) -> the left-to-right and right-to-left states (B, C, H, W), unshifted."""
        b, channels, height, width = h.shape
        groups, size = self.groups, channels // self.groups
        x = F.relu(h)
        s = torch.cat([self.lr_input(x), self.rl_input(x).flip(3)], 0)  # right to left: mirrored
        s = F.pad(s.permute(0, 2, 3, 1), (0, 0, 0, 1))  # (2B, H, W + 1, 4C), a zero column
        s = s.reshape(2 * b, height * (width + 1), 4 * channels)[:, skew_index(height, width, h.device)]
        # per skewed column (unbind: its backward stacks; indexing a column would fill a zero
        # tensor of the whole size for every column)
        columns = s.permute(2, 0, 1, 3).reshape(-1, 2, b * height, 4 * channels).unbind(0)
        # (2, 2C, 4C): per direction, the state-to-state weights as a matrix
        kernels = torch.stack([self.lr_state.weight[:, :, 0].t(), self.rl_state.weight[:, :, 0].t()])
        started = torch.arange(height, device=h.device)[None, None, :, None]
        c = h.new_zeros(2, b, height, channels)
        state = h.new_zeros(2, b, height, channels)
        states = []
        for column, inputs in enumerate(columns):
            up = F.pad(state, (0, 0, 1, 0))[:, :, :height]  # the previous column's row i-1: (i-1, j)
            previous = torch.cat([state, up], 3).view(2, b * height, 2 * channels)
            gates = torch.baddbmm(inputs, previous, kernels).view(2, b, height, groups, 4, size)
            i, f, o, g = (gate.reshape(2, b, height, channels) for gate in gates.unbind(4))
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            state = torch.sigmoid(o) * torch.tanh(c)
            if column < height:  # rows i > column have not started (j < 0): zero
                keep = (started <= column).to(h.dtype)
                c, state = c * keep, state * keep
            states.append(state)
        out = torch.stack(states, 3)  # (2, B, H, W + H - 1, C)
        out = out.reshape(2, b, -1, channels)[:, :, unskew_index(height, width, h.device)]  # (2, B, H, W, C)
        out = out.permute(0, 1, 4, 2, 3)
        return out[0], out[1].flip(3)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, groups, H, W) -> logits (B, groups * 256, H, W), group after group."""
        return self.logits((pixels.float() - 128.0) / 128.0)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """The centred input u = (x - 128) / 128, float (B, groups, H, W) -> logits (B, groups * 256, H, W)."""
        h = self.first(u)
        lr, rl = self.directions(h)
        h = h + lr + F.pad(rl, (0, 0, 1, 0))[:, :, :-1]  # right to left: one row down
        return self.out(F.relu(self.head(F.relu(h))))

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in bits per sample (pixel and channel)."""
        logits = self(pixels)
        b, _, height, width = logits.shape
        if self.groups == 1:  # version 1's computation
            loss = F.cross_entropy(logits, pixels.long()[:, 0])
        else:
            logits = logits.view(b, self.groups, ALPHABET, height, width).transpose(1, 2)
            loss = F.cross_entropy(logits, pixels.long())
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        return {"channels": self.channels, "hidden": self.hidden, "groups": self.groups}
