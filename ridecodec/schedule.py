"""The decoding schedule and the likelihood it implies: the part of coding that models may use too.

Below both the engine (which adds the entropy coder) and the models (a model whose batched
arithmetic differs from its stepped one computes ``log_prob`` by replaying the schedule): so
models never import the engine.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from . import exact_cpu
from .models.base import ALPHABET_SIZE, CausalReach, CodingOrder, DensityModel


@dataclass(frozen=True)
class Wavefront:
    """The decoding schedule of an H x W image for a model of a given right-reach.

    Pixel (i, j) belongs to step ``t = (right + 1) * i + j``. Everything it may depend on, (i, j-1)
    and (i-1, j+right) and anything further up or left, lies in an earlier step, so all pixels of
    one step can be computed at once: about ``(right + 1) * H + W`` steps instead of ``H * W``.
    """

    height: int
    width: int
    right: int | None  # None: unbounded reach, one pixel per step (raster order)

    @property
    def num_steps(self) -> int:
        if self.height == 0 or self.width == 0:
            return 0
        if self.right is None:
            return self.height * self.width
        return (self.right + 1) * (self.height - 1) + self.width

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield (t, rows, cols) for every non-empty step t; rows and cols are int64 CPU tensors,
        rows ascending within a step. (A tall, narrow image has empty steps; they are skipped.)"""
        if self.right is None:
            for t in range(self.num_steps):
                row, col = divmod(t, self.width)
                yield t, torch.tensor([row]), torch.tensor([col])
            return
        stride = self.right + 1
        all_rows = torch.arange(self.height)
        for t in range(self.num_steps):
            # rows i with 0 <= t - stride * i < width
            first = max(0, -(-(t - self.width + 1) // stride))
            last = min(self.height - 1, t // stride)
            if first > last:
                continue
            rows = all_rows[first : last + 1]
            yield t, rows, t - stride * rows


@dataclass(frozen=True)
class Scaled:
    """``order``'s positions scaled by ``factor``: (r, c) becomes (factor * r, factor * c). The
    order of a subsampled image (every ``factor``-th row and column) on the full image's grid."""

    order: CodingOrder
    factor: int

    @property
    def num_steps(self) -> int:
        return self.order.num_steps

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for t, rows, cols in self.order.steps():
            yield t, rows * self.factor, cols * self.factor


@dataclass(frozen=True, eq=False)
class Skipping:
    """``order`` without the positions where ``skip`` (bool (H, W)) is true; steps left empty are
    dropped. For the later stage of an order in stages, which skips what earlier stages coded."""

    order: CodingOrder
    skip: np.ndarray

    @functools.cached_property
    def _kept(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The kept positions of each non-empty step, worked out once (counting the steps needs
        them too)."""
        skip = torch.from_numpy(np.asarray(self.skip, dtype=bool))
        kept = []
        for _, rows, cols in self.order.steps():
            keep = ~skip[rows, cols]
            if bool(keep.any()):
                kept.append((rows[keep], cols[keep]))
        return kept

    @property
    def num_steps(self) -> int:
        return len(self._kept)

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for t, (rows, cols) in enumerate(self._kept):
            yield t, rows, cols


@dataclass(frozen=True)
class Stages:
    """Several orders one after the other, numbered as one (their positions must not overlap and
    must cover the image together). The multi-scale order: a subsampled image first, then the
    rest of the pixels, each stage in its own order."""

    stages: tuple[CodingOrder, ...]

    @property
    def num_steps(self) -> int:
        return sum(stage.num_steps for stage in self.stages)

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        first = 0  # a stage numbers its steps after the earlier stages (with gaps, like a wavefront)
        for stage in self.stages:
            for t, rows, cols in stage.steps():
                yield first + t, rows, cols
            first += stage.num_steps


def subsampled_first(height: int, width: int, factor: int, small_right: int | None, right: int | None) -> Stages:
    """The multi-scale order of an H x W image: first the subsampled image of pixels
    (factor * i, factor * j) in the wavefront order of right-reach ``small_right`` on its own
    grid, then every other pixel in the wavefront order of right-reach ``right`` on the full grid
    (None: raster order). A model of the second stage may read every pixel of the first, above,
    below, left or right, besides those of earlier steps."""
    small = Wavefront(-(-height // factor), -(-width // factor), small_right)
    skip = np.zeros((height, width), dtype=bool)
    skip[::factor, ::factor] = True
    return Stages((Scaled(small, factor), Skipping(Wavefront(height, width, right), skip)))


def wavefront_for(model: DensityModel, height: int, width: int) -> CodingOrder:
    """The order in which ``model`` codes an H x W image: its own (``coding_order``), or the
    wavefront of its reach (raster order for an unbounded one)."""
    order = model.coding_order(height, width)
    if order is not None:
        return order
    reach: CausalReach | None = model.reach
    return Wavefront(height, width, None if reach is None else reach.right)


def used_values(pixels: np.ndarray) -> np.ndarray:
    """(C, 256) bool: the values each channel of ``pixels`` (uint8, (C, H, W)) takes."""
    return np.stack([np.bincount(plane.ravel(), minlength=ALPHABET_SIZE) > 0 for plane in pixels])


def restricted(table: np.ndarray, used: np.ndarray) -> np.ndarray:
    """``table`` (N, 256) with every value outside ``used`` (256 bools, or (N, 256): one set per
    row) set to zero.

    Why: many images take only some of the 256 values (a stretched histogram, a scan, a synthetic
    image), and a model trained on natural images spreads probability over all of them. Coding
    with the image's value set, stored in the header, renormalizes that mass onto the values
    that occur. A row left with no mass at all (the model put it all on absent values) becomes
    uniform over the used values, the same on both sides.
    """
    if exact_cpu.AVAILABLE and table.dtype == np.float32 and table.ndim == 2 and used.ndim in (1, 2):
        sets = np.ascontiguousarray(used.reshape(-1, table.shape[1]), dtype=np.bool_)  # (1 or N, 256)
        return _restricted_kernel(np.ascontiguousarray(table), sets)
    return restricted_reference(table, used)


def restricted_reference(table: np.ndarray, used: np.ndarray) -> np.ndarray:
    """:func:`restricted` in numpy: the compiled kernel's reference (the same bits), and the
    path without numba."""
    table = np.where(used, table, np.float32(0))
    empty = table.sum(axis=1) <= 0  # exact for non-negative numbers: zero only if all are zero
    if empty.any():
        table[empty] = used if used.ndim == 1 else used[empty]
    return table


if exact_cpu.AVAILABLE:

    @exact_cpu.numba.njit(cache=True, nogil=True)
    def _restricted_kernel(table, sets):  # pragma: no cover
        # restricted's numpy code in one pass over the table, ``sets`` one row for every row of
        # the table or one for all (the engine has checked that the table's entries are finite
        # and not negative, so a row sums to zero only where all its entries are zero)
        # On the entries' bits (int32), so that the loops vectorize: an entry is kept by AND with
        # all ones or made +0 by AND with zero; +0 and -0 are the only entries with no bit set
        # but the sign's.
        out = np.empty_like(table)
        given, bits = table.view(np.int32), out.view(np.int32)
        zero, one = np.float32(0), np.float32(1)
        for n in range(table.shape[0]):
            used = sets[n if sets.shape[0] > 1 else 0]
            for j in range(table.shape[1]):
                bits[n, j] = given[n, j] & -np.int32(used[j])
            mass = np.int32(0)
            for j in range(table.shape[1]):
                mass |= bits[n, j] & 0x7FFFFFFF
            if mass == 0:
                for j in range(table.shape[1]):
                    out[n, j] = one if used[j] else zero
        return out


@contextlib.contextmanager
def coding_context(threads: int = 1):
    """How every table is computed: under inference mode, on ``threads`` CPU threads (1 unless
    the caller knows the model is exact).

    One thread by default, because torch's float CPU arithmetic depends on the thread count (a
    matrix product splits its work differently: measured, the float RGB MCGSM's tables changed in
    the last bits between 1 and 2 threads), so for a model that is not exact the encoder and
    decoder must agree on it, and one is what every machine has. An exact model's tables do not
    depend on it (``ridecodec.testing`` checks), so more threads are safe for it.
    """
    previous = torch.get_num_threads(), exact_cpu.get_threads()
    torch.set_num_threads(max(1, threads))
    exact_cpu.set_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous[0])
        exact_cpu.set_threads(previous[1])


def split_step(rows: torch.Tensor, cols: torch.Tensor, rows_per_call: int | None):
    """A step's positions in consecutive calls of ``rows_per_call`` (None: one call)."""
    if rows_per_call is None or len(rows) <= rows_per_call:
        yield rows, cols
        return
    for start in range(0, len(rows), rows_per_call):
        yield rows[start : start + rows_per_call], cols[start : start + rows_per_call]


@dataclass(frozen=True)
class Split:
    """How the loop hands a step's positions to the model: ``rows_per_call`` positions per call
    (None: the whole step in one call), on ``threads`` CPU threads. Only an exact model
    (``exact_across_devices``) may be coded with anything but the default, since only its tables
    are the same whatever the split; the conformance kit (``ridecodec.testing``) decodes with
    several to prove it."""

    rows_per_call: int | None = None
    threads: int = 1


def replayed_log_prob(model: DensityModel, image: torch.Tensor, value_sets: np.ndarray | None = None) -> float:
    """Natural-log likelihood of one uint8 image (C, H, W) from the coder's own tables: the
    decoding schedule replayed on the whole image. A causal model gives exactly the tables it
    gives while coding, so this equals the ideal code length to the last bit; a model whose
    batched arithmetic differs from its stepped one (float rounding in far tails) can implement
    ``log_prob`` with it. ``value_sets`` restricts the tables as coding does."""
    image = image.to(model.device)
    total = 0.0
    with coding_context():
        step = model.begin(image)
        for _, rows, cols in wavefront_for(model, *image.shape[1:]).steps():
            rows, cols = rows.to(image.device), cols.to(image.device)
            for channel in range(image.shape[0]):
                table = step(rows, cols, channel)
                if value_sets is not None:
                    table = torch.from_numpy(restricted(table.cpu().numpy(), value_sets[channel]))
                table = table.double()
                actual = image[channel, rows, cols].long().to(table.device)
                total += float(torch.log(table.gather(1, actual[:, None]) / table.sum(1, keepdim=True)).sum())
    return total


def code_length_bits(model: DensityModel, pixels: np.ndarray, value_sets: np.ndarray | None = None) -> float:
    """The model's code length of ``pixels`` (uint8 (C, H, W)) in bits, from ``log_prob``; with
    ``value_sets``, of the model restricted to them, from the replayed tables (a model's
    ``log_prob`` gives only the actual values' probabilities, not the mass on the rest)."""
    if value_sets is not None:
        image = torch.from_numpy(np.array(pixels, dtype=np.uint8))
        return -replayed_log_prob(model, image, value_sets) / np.log(2.0)
    images = torch.from_numpy(np.array(pixels, dtype=np.uint8))[None].to(model.device)
    with torch.inference_mode():
        log_likelihood = model.log_prob(images)
    return float(-log_likelihood.sum().item() / np.log(2.0))
