"""Row LSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016) in float, for training: the
architecture the exact model (``model.py``) computes in integers. Gray only.

    u      = (x - 128) / 128                                  the pixels, centred
    h_0    = conv7x7_A(u)                                     mask A: a pixel never sees itself
    s      = conv1x3_B(relu(h_0))                             input-to-state: (i, j-1), (i, j); 4H gates
    gates  = s[row i] + conv1x3(state[row i-1])               state-to-state: (i-1, j-1 .. j+1)
    c_i    = sigmoid(f) c_(i-1) + sigmoid(i) tanh(g)          a whole row at once
    state_i = sigmoid(o) tanh(c_i)
    h_1    = h_0 + state                                      residual
    logits = conv1x1(relu(conv1x1(relu(h_1))))                256-way softmax
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ridecodec.exact import causal_mask

ALPHABET = 256


class MaskedConv2d(torch.nn.Conv2d):
    mask: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, in_channels: int, out_channels: int, height: int, width: int, kind: str):
        super().__init__(in_channels, out_channels, (height, width), padding=(height // 2, width // 2))
        self.register_buffer("mask", causal_mask(out_channels, in_channels, height, width, kind).float())

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class RowLSTM(torch.nn.Module):
    def __init__(self, channels: int = 32, hidden: int = 32):
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.first = MaskedConv2d(1, channels, 7, 7, "A")
        self.input_state = MaskedConv2d(channels, 4 * channels, 1, 3, "B")  # gates i, f, o, g
        self.state_state = torch.nn.Conv1d(channels, 4 * channels, 3, padding=1, bias=False)
        self.head = torch.nn.Conv2d(channels, hidden, 1)
        self.out = torch.nn.Conv2d(hidden, ALPHABET, 1)
        with torch.no_grad():  # forget gates open at first
            assert self.input_state.bias is not None
            self.input_state.bias[channels : 2 * channels] = 1.0
            self.state_state.weight.mul_(0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1, H, W) -> logits (B, 256, H, W)."""
        h = self.first((pixels.float() - 128.0) / 128.0)
        s = self.input_state(F.relu(h))
        b, _, height, width = h.shape
        c = h.new_zeros(b, self.channels, width)
        state = h.new_zeros(b, self.channels, width)
        states = []
        for row in range(height):
            gates = s[:, :, row] + self.state_state(state)
            i, f, o, g = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            state = torch.sigmoid(o) * torch.tanh(c)
            states.append(state)
        h = h + torch.stack(states, 2)
        return self.out(F.relu(self.head(F.relu(h))))

    def nll_bits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in bits per pixel."""
        loss = F.cross_entropy(self(pixels), pixels.long()[:, 0])
        return loss / torch.log(torch.tensor(2.0))

    def config(self) -> dict:
        return {"channels": self.channels, "hidden": self.hidden}
