"""`lowbyte`: the low bytes of a 16-bit image, given its high bytes (``ridecodec.depth``).

A 16-bit image is coded as two 8-bit images: its high bytes with any model (``ride`` by
default), then its low bytes with this one, which knows every high byte. For a sample
v = 256 h + l whose high byte h is known, the low byte l is the position of v inside the window
[256 h, 256 h + 255], so the model predicts v in 16-bit units and gives l the distribution of that
prediction *conditioned on the window*:

1. the prediction is LOCO-I's median edge detector over the 16-bit causal neighbours W, N, NW
   (N when there is no W, W when there is no N; the middle of the window for the first pixel); in
   colour images G and B add half the previous channel's error at the same pixel (their errors are
   correlated, and half is safe when they are not);
2. the scale is a quarter of the local activity |W-NW| + |N-NW| + |N-NE| (plus the previous
   channel's |error| for G and B), plus 2 units;
3. l gets a discretized logistic of that centre and scale, restricted to the window and
   renormalized (``exact.truncated_frequencies``).

Most 16-bit photographs carry sensor noise far above one 8-bit step, so their low bytes are close
to incompressible and the model's job is mostly not to lose: it pays about 8 bits per sample on
noisy photographs, fewer where the image is smooth. The cases where the low byte is redundant
(8-bit data scaled by 257, or values below 256) never reach this model (``ridecodec.depth``).

Exact on every device: integer arithmetic and the shipped logistic CDF table.
"""

from __future__ import annotations

import torch

from .. import exact
from .base import CausalReach, DensityModel

#: Largest scale (16-bit units): beyond it the window's distribution is flat to the table's grid.
MAX_SCALE = 1 << 13
#: Centres are kept within this many scales of the window: further out, a logistic's shape over
#: the window is its exponential tail, the same whatever the distance.
CENTRE_REACH = 4
#: Channels whose prediction adds half the previous channel's error (G and B, not gray or alpha).
CHAINED = {"RGB": (1, 2), "RGBA": (1, 2)}


class LowByteModel(DensityModel):
    """Low bytes (uint8 (C, H, W) canvases) of a 16-bit image whose high bytes ``high`` (uint8
    (C, H, W)) are known. Not a plug-in: ridecodec builds one per image."""

    name = "lowbyte"
    version = "1"
    modes = ("L", "RGB", "RGBA")
    reach = CausalReach(up=1, left=1, right=1)
    exact_across_devices = True
    window_start: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, high: torch.Tensor | None = None, layout: str = "L"):
        super().__init__()
        if high is None:  # the registry's plain construction: an empty model, for listing
            high = torch.zeros(1, 1, 1, dtype=torch.uint8)
        self.register_buffer("window_start", high.to(torch.int64) << 8, persistent=False)
        self.chained = CHAINED.get(layout, ())

    def _tables(self, low: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
        """(N, 256) frequencies of ``channel``'s low byte at (rows, cols), from ``low`` (C, H, W)
        holding every earlier pixel and channels < ``channel`` of these."""
        values = self.window_start + low.to(torch.int64)  # 16-bit samples, where known
        _, _, width = values.shape
        up, left, right = (rows - 1).clamp(min=0), (cols - 1).clamp(min=0), (cols + 1).clamp(max=width - 1)
        first_row, first_col = rows == 0, cols == 0

        def predict(c: int) -> tuple[torch.Tensor, torch.Tensor]:
            plane = values[c]
            w, n, nw, ne = plane[rows, left], plane[up, cols], plane[up, left], plane[up, right]
            w = torch.where(first_col, n, w)  # no left neighbour: lean on the one above
            nw = torch.where(first_col, n, nw)
            n, nw, ne = (torch.where(first_row, w, x) for x in (n, nw, ne))  # no row above
            middle = self.window_start[c, rows, cols] + 128  # the first pixel: nothing known
            origin = first_row & first_col
            w, n, nw, ne = (torch.where(origin, middle, x) for x in (w, n, nw, ne))
            larger, smaller = torch.maximum(w, n), torch.minimum(w, n)
            prediction = torch.where(nw >= larger, smaller, torch.where(nw <= smaller, larger, w + n - nw))
            activity = (w - nw).abs() + (n - nw).abs() + (n - ne).abs()
            if c in self.chained:
                previous, _ = predict(c - 1)
                error = values[c - 1, rows, cols] - previous
                prediction = prediction + (error >> 1)
                activity = activity + error.abs()
            return prediction, activity

        prediction, activity = predict(channel)
        scale = ((activity >> 2) + 2).clamp_(max=MAX_SCALE)
        centre = prediction - self.window_start[channel, rows, cols]
        centre = torch.maximum(torch.minimum(centre, 255 + CENTRE_REACH * scale), -CENTRE_REACH * scale)
        inverse_scale = exact.inverse_scales((scale << exact.MEAN_BITS) ** 2)
        return exact.truncated_frequencies(centre << exact.MEAN_BITS, inverse_scale, "logistic")

    def begin(self, canvas):
        if canvas.shape != self.window_start.shape:
            raise ValueError(
                f"low bytes of shape {tuple(canvas.shape)} for high bytes of {tuple(self.window_start.shape)}"
            )

        def step(rows, cols, channel):
            return self._tables(canvas, rows, cols, channel)

        return step

    def log_prob(self, images):
        batch, channels, height, width = images.shape
        result = torch.zeros(batch, dtype=torch.float64, device=images.device)
        rows_per_chunk = max(1, 2**16 // width)  # bounds the (N, 256) tables' memory
        for start in range(0, height, rows_per_chunk):
            grid_rows, grid_cols = torch.meshgrid(
                torch.arange(start, min(height, start + rows_per_chunk), device=images.device),
                torch.arange(width, device=images.device),
                indexing="ij",
            )
            rows, cols = grid_rows.reshape(-1), grid_cols.reshape(-1)
            for b in range(batch):
                for channel in range(channels):
                    tables = self._tables(images[b], rows, cols, channel).double()
                    values = images[b, channel, rows, cols].to(torch.int64)
                    chosen = tables.gather(1, values[:, None])[:, 0]
                    result[b] += (chosen.log() - tables.sum(1).log()).sum()
        return result
