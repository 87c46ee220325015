"""Row LSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016) in float, for training: the
architecture the exact model (``model.py``) computes in integers.

    u      = (x - 128) / 128                                  the pixels, centred
    h_0    = conv7x7_A(u)                                     mask A: a pixel never sees itself
    s      = conv1x3_B(relu(h_0))                             input-to-state: (i, j-1), (i, j); 4H gates
    gates  = s[row i] + conv1x3(state[row i-1])               state-to-state: (i-1, j-1 .. j+1)
    c_i    = sigmoid(f) c_(i-1) + sigmoid(i) tanh(g)          a whole row at once
    state_i = sigmoid(o) tanh(c_i)
    h_1    = h_0 + state                                      residual
    logits = conv1x1(relu(conv1x1(relu(h_1))))                256-way softmax

Gray: ``groups=1`` (version 1's network, unchanged). Colour: ``groups=3``, the features split into
three ordered groups (R, G, B) by the masks of ``ridecodec.exact.causal_mask``: the first layer's
mask A and the input-to-state mask B run over the groups, and so do the head's and the output's 1x1
masks B (the gray head and output have none). The state-to-state convolution reads the row above,
all of it known, so it is unmasked. The gate channels are laid out group-major,
``[group][i, f, o, g][channels / groups]``, so that ``causal_mask`` (which splits the outputs into
``groups`` contiguous blocks) gives each group's four gates the same group; with one group it is
version 1's ``[i, f, o, g][channels]``. The logits are ``groups * 256`` channels, group after group.
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
        self.register_buffer("mask", causal_mask(out_channels, in_channels, height, width, kind, groups).float())

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def gate_major(gates: torch.Tensor, groups: int) -> torch.Tensor:
    """Gate channels (B, 4C, ...) laid out ``[group][i, f, o, g][C / groups]`` ->
    ``[i, f, o, g][group][C / groups]`` (so ``chunk(4, 1)`` gives i, f, o, g over all C)."""
    if groups == 1:
        return gates
    b, four_c = gates.shape[:2]
    rest = gates.shape[2:]
    return gates.reshape(b, groups, 4, four_c // (4 * groups), *rest).transpose(1, 2).reshape(b, four_c, *rest)


class RowLSTM(torch.nn.Module):
    def __init__(self, channels: int = 32, hidden: int = 32, groups: int = 1):
        super().__init__()
        self.channels, self.hidden, self.groups = channels, hidden, groups
        self.first = MaskedConv2d(groups, channels, 7, 7, "A", groups)
        self.input_state = MaskedConv2d(channels, 4 * channels, 1, 3, "B", groups)  # gates, group-major
        self.state_state = torch.nn.Conv1d(channels, 4 * channels, 3, padding=1, bias=False)
        self.head: torch.nn.Conv2d
        self.out: torch.nn.Conv2d
        if groups == 1:  # version 1's gray network: plain 1x1 layers
            self.head = torch.nn.Conv2d(channels, hidden, 1)
            self.out = torch.nn.Conv2d(hidden, ALPHABET, 1)
        else:
            self.head = MaskedConv2d(channels, hidden, 1, 1, "B", groups)
            self.out = MaskedConv2d(hidden, groups * ALPHABET, 1, 1, "B", groups)
        with torch.no_grad():  # forget gates open at first
            assert self.input_state.bias is not None
            size = channels // groups
            for g in range(groups):
                self.input_state.bias[(4 * g + 1) * size : (4 * g + 2) * size] = 1.0
            self.state_state.weight.mul_(0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, groups, H, W) -> logits (B, groups * 256, H, W)."""
        return self.logits((pixels.float() - 128.0) / 128.0)

    def logits(self, u: torch.Tensor) -> torch.Tensor:
        """The centred input u = (x - 128) / 128, float (B, groups, H, W) -> logits (B, groups * 256, H, W)."""
        h = self.first(u)
        s = self.input_state(F.relu(h))
        b, _, height, width = h.shape
        c = h.new_zeros(b, self.channels, width)
        state = h.new_zeros(b, self.channels, width)
        states = []
        for row in range(height):
            gates = gate_major(s[:, :, row] + self.state_state(state), self.groups)
            i, f, o, g = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            state = torch.sigmoid(o) * torch.tanh(c)
            states.append(state)
        h = h + torch.stack(states, 2)
        return self.out(F.relu(self.head(F.relu(h))))

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in bits per sample (per pixel in gray)."""
        logits = self(pixels)
        b, _, height, width = logits.shape
        logits = logits.view(b, self.groups, ALPHABET, height, width).transpose(1, 2)  # (B, 256, groups, H, W)
        loss = F.cross_entropy(logits, pixels.long())
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        if self.groups == 1:  # (version 1's checkpoints and export_main know no groups)
            return {"channels": self.channels, "hidden": self.hidden}
        return {"channels": self.channels, "hidden": self.hidden, "groups": self.groups}
