"""Causal pixel neighbourhoods: what an autoregressive model may read when it predicts (i, j).

The neighbourhood of pixel (i, j) is the ``up`` rows above it, from ``left`` columns left of it
to ``right`` columns right of it, plus the ``left`` pixels to its left in its own row: for up=2,
left=right=2 (the RIDE paper's default, 12 pixels)::

    x x x x x
    x x x x x
    x x o

Positions outside the image are filled from known pixels so that border pixels look like
interior ones to the model (a model trained on interior statistics predicts them well):

1. a column left or right of the image is clamped to the nearest column (in an earlier row,
   that pixel is known);
2. anything still unknown (rows above the image; the current row left of column 0) takes the
   pixel's left neighbour, or, in column 0, its upper neighbour, or, for pixel (0, 0), mid-grey.

The fill reads only pixels that precede (i, j) in raster order and in every wavefront order, so
the same function serves coding (canvas partly known) and likelihoods (image fully known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from .. import exact_cpu

#: Value read where no known pixel exists at all (the neighbourhood of pixel (0, 0)).
MID_GREY = 128


@dataclass(frozen=True)
class CausalNeighbourhood:
    up: int
    left: int
    right: int

    def __post_init__(self):
        if self.up < 1 or self.left < 1 or self.right < 0:
            raise ValueError("a neighbourhood needs at least one row above and one column to the left")

    @cached_property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """(dy, dx) of every neighbour, row by row, top row first."""
        above = [(dy, dx) for dy in range(-self.up, 0) for dx in range(-self.left, self.right + 1)]
        return tuple(above + [(0, dx) for dx in range(-self.left, 0)])

    @property
    def size(self) -> int:
        return len(self.offsets)

    def _rule(self, width: int, rows: torch.Tensor, cols: torch.Tensor):
        """The border fill spelled out: flat indices into an (H * W) plane of the neighbours of
        each (row, col), and a mask of entries that read mid-grey instead. Both (N, size)."""
        dy = torch.tensor([o[0] for o in self.offsets])
        dx = torch.tensor([o[1] for o in self.offsets])
        rows, cols = rows[:, None], cols[:, None]
        r = rows + dy
        c = (cols + dx).clamp(0, width - 1)
        unknown = (r < 0) | ((dy == 0) & (c >= cols))
        # Fallback: the left neighbour, or in column 0 the upper one, or for (0, 0) none (r = -1).
        in_first_column = cols == 0
        r = torch.where(unknown, torch.where(in_first_column, rows - 1, rows), r)
        c = torch.where(unknown, torch.where(in_first_column, cols, cols - 1), c)
        return r.clamp(min=0) * width + c, r < 0

    def _tables(self, width: int, device: torch.device):
        """The rule evaluated once per image width: for rows 0 .. up-1, and for row ``up``, which
        stands for every later row (their indices differ by a whole number of rows). Each
        (up + 1, W, size). The step loop then costs a few tensor operations, not twenty."""
        cache = self.__dict__.setdefault("_table_cache", {})
        key = (width, device)
        if key not in cache:
            rows = torch.arange(self.up + 1).repeat_interleave(width)
            cols = torch.arange(width).repeat(self.up + 1)
            index, grey = self._rule(width, rows, cols)
            shape = (self.up + 1, width, self.size)
            cache[key] = (index.reshape(shape).to(device), grey.reshape(shape).to(device))
            if len(cache) > 8:  # a few widths at a time is plenty
                cache.pop(next(iter(cache)))
        return cache[key]

    def flat_indices(self, width: int, rows: torch.Tensor, cols: torch.Tensor):
        """Flat indices into an (H * W) plane of the neighbours of each (row, col) after the
        border fill, and the mask of entries that read mid-grey. Both (N, size)."""
        index, grey = self._tables(width, rows.device)
        band = rows.clamp(max=self.up)
        return index[band, cols] + ((rows - band) * width)[:, None], grey[band, cols]

    def gatherer(
        self, canvas: torch.Tensor, channel: int = 0, dtype: torch.dtype = torch.float32
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """:meth:`gather` from ``canvas`` (C, H, W) for a coding pass, as a function of (rows,
        cols): on the CPU the compiled loop with the canvas's planes and the border-fill tables
        made into its arrays once. It reads the canvas through a view, so it sees every pixel
        written since; where the planes cannot be a view, each call reads them anew."""
        compiled = self._compiled_gather(canvas, channel, dtype)
        if compiled is not None and compiled[1]:
            return compiled[0]
        return lambda rows, cols: self.gather(canvas, rows, cols, channel, dtype)

    def _compiled_gather(self, canvas: torch.Tensor, channel: int, dtype: torch.dtype):
        """(gather, whether it reads ``canvas`` itself rather than a copy of it as it is now) by
        the compiled loop (:func:`_gather_kernel`), or None where that does not apply."""
        if not (
            canvas.dim() == 3 and canvas.dtype == torch.uint8 and dtype in _NUMPY_DTYPES and exact_cpu.usable(canvas)
        ):
            return None
        flat = canvas.flatten(-2)  # a view where the planes are contiguous, else a copy
        index, grey = (table.numpy() for table in self._tables(canvas.shape[-1], canvas.device))
        planes, width, numpy_dtype = flat.numpy(), canvas.shape[0] * self.size + channel, _NUMPY_DTYPES[dtype]

        def gather(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            out = np.empty((len(rows), width), dtype=numpy_dtype)
            _gather_kernel(planes, index, grey, rows.numpy(), cols.numpy(), channel, out)
            return torch.from_numpy(out)

        return gather, flat.data_ptr() == canvas.data_ptr()

    def gather(
        self,
        canvas: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        channel: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The conditioning vector of each (row, col) for predicting ``channel``: the
        neighbourhood in every channel of ``canvas`` (C, H, W), channel-major, followed by the
        pixel's own channels before ``channel``. (N, C * size + channel), of ``dtype``. For a
        batch of canvases (B, C, H, W), the vectors at the same positions of each: (B, N, ...).

        On the CPU, for one canvas, a compiled loop reads the same values (:func:`_gather_kernel`):
        the torch version costs some ten small operations, a fifth of a millisecond per coding
        step, more than the reading itself. Elsewhere (GPUs, batches) the torch code runs."""
        compiled = self._compiled_gather(canvas, channel, dtype)
        if compiled is not None:
            return compiled[0](rows, cols)
        width = canvas.shape[-1]
        index, grey = self.flat_indices(width, rows, cols)
        planes = canvas.flatten(-2)  # ([B,] C, H * W)
        values = planes[..., index].to(dtype).masked_fill_(grey, MID_GREY)  # ([B,] C, N, size)
        values = values.movedim(-3, -2).flatten(-2)  # ([B,] N, C * size)
        if channel == 0:
            return values
        own = planes[..., :channel, rows * width + cols].to(dtype).transpose(-1, -2)  # ([B,] N, channel)
        return torch.cat([values, own], dim=-1)


#: The dtypes the compiled gather writes (what the models ask for).
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64}


def _gather(planes, index, grey, rows, cols, channel, out):
    """CausalNeighbourhood.gather for one uint8 canvas, its planes flattened (C, H * W), from the
    border-fill tables (``_tables``: rows 0 .. up, the last standing for every later row)."""
    num_channels, width = planes.shape[0], index.shape[1]
    band_last = index.shape[0] - 1
    size = index.shape[2]
    for k in range(rows.shape[0]):
        row, col = rows[k], cols[k]
        band = min(row, band_last)
        shift = (row - band) * width
        for c in range(num_channels):
            for s in range(size):
                if grey[band, col, s]:
                    out[k, c * size + s] = MID_GREY
                else:
                    out[k, c * size + s] = planes[c, index[band, col, s] + shift]
        for c in range(channel):
            out[k, num_channels * size + c] = planes[c, row * width + col]


_gather_kernel: Any = exact_cpu.numba.njit(cache=True, nogil=True)(_gather) if exact_cpu.AVAILABLE else None
