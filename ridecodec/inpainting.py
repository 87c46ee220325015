"""Filling in missing pixels with a density model, as in the RIDE paper (Theis & Bethge 2015).

The missing pixels are drawn from the model's posterior given the rest of the image, in two
phases:

1. **Initialization by ancestral sampling.** The missing pixels are drawn in the model's
   decoding order (``sampling.fill``), each from its table given everything before it; of
   ``candidates`` such drafts, the one the model finds most probable as a whole (its joint
   log-probability over a window around the missing region, which is the posterior density up
   to a constant) is kept. Ancestral sampling sees only what lies above and to the left, so a
   draft can clash with the pixels below or right of the hole; the sweeps repair that.

2. **Metropolis-within-Gibbs sweeps** over overlapping BLOCK x BLOCK blocks (every STRIDE
   pixels) that contain missing pixels. For each block the proposal redraws its missing pixels
   by ancestral sampling given the current image. Because that proposal is the model's own
   conditional, its probability cancels the block's own terms in the Metropolis-Hastings ratio,
   and what remains is the ratio of the probabilities of the *other* pixels, those whose tables
   read the block, under the proposed and the current image:

       log alpha = sum over the window, outside the redrawn pixels, of log p_new - log p_old

   Only pixels within the model's reach of the block can change, so both sides are scored on a
   local window: the block, the pixels its reach covers (below and to its right), and their own
   context. That keeps a sweep affordable (two passes over a few hundred pixels per block) where
   scoring the whole image per block would not be. A model of unbounded reach (``ride``'s
   recurrence) is scored on a window of UNBOUNDED_MARGIN pixels each way, which neglects the
   weak influence of its far states. Between sweeps the image is flipped (left-right, then
   upside down, then both), so the sweeps look at the hole from every side. (A causal model
   read in another orientation is another density, so strictly the sweeps alternate between
   four targets, each the posterior of one reading of the model: a heuristic, which a test
   shows keeps a posterior the orientations agree on.)

Everything is decided with integers (``sampling``: integer draws, fixed-point logarithms), so an
exact model inpaints an image identically, for a given seed, on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ModelNotFoundError
from .models.base import DensityModel
from .sampling import Draws, ProgressCallback, fill, require_sampling

#: The side of the blocks the sweeps redraw, and the distance between neighbouring blocks (less
#: than the side: blocks overlap, so no boundary between blocks stays fixed).
BLOCK, STRIDE = 5, 3

#: How far windows reach where the model's reach is unbounded (``ride``: up and left).
UNBOUNDED_MARGIN = 8

#: The orientation of each sweep, cycled: (flip rows, flip columns).
FLIPS = ((False, False), (False, True), (True, False), (True, True))

#: Defaults of ``ridecodec inpaint``.
DEFAULT_SWEEPS, DEFAULT_CANDIDATES = 5, 4


@dataclass
class Inpainting:
    """The completed image and how the sweeps went."""

    pixels: np.ndarray  # uint8 (C, H, W)
    proposals: int  # block proposals made by the sweeps
    accepted: int  # of them, accepted


def margins(model: DensityModel) -> tuple[int, int, int]:
    """(up, left, right): how far the model's tables read, capped at UNBOUNDED_MARGIN."""
    reach = model.reach
    if reach is None:  # raster order, anything before may count
        return UNBOUNDED_MARGIN, UNBOUNDED_MARGIN, UNBOUNDED_MARGIN
    up, left, right = (UNBOUNDED_MARGIN if math.isinf(v) else int(v) for v in (reach.up, reach.left, reach.right))
    return up, left, right


def window(
    top: int, bottom: int, left: int, right: int, shape: tuple[int, int], reach: tuple[int, int, int]
) -> tuple[slice, slice]:
    """The crop that scores a change of the pixels in rows [top, bottom), columns [left, right).

    A pixel (i, j) reads pixels up to ``up`` rows above, ``left`` columns left and ``right``
    columns right (in earlier rows). So the pixels whose tables read the changed ones lie in rows
    [top, bottom + up) and columns [left - right, right + left); each of those reads at most up
    rows above, left columns left and right columns right of that: the crop holds them all with
    their whole context, so their tables in the crop are their tables in the image."""
    up, reach_left, reach_right = reach
    height, width = shape
    rows = slice(max(0, top - up), min(height, bottom + up))
    cols = slice(max(0, left - reach_right - reach_left), min(width, right + reach_left + reach_right))
    return rows, cols


def blocks(missing: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of the BLOCK x BLOCK blocks, every STRIDE pixels over the
    missing pixels' bounding box, that hold at least one missing pixel, in raster order."""
    rows, cols = np.nonzero(missing)
    height, width = missing.shape
    found = []
    for top in range(rows.min(), rows.max() + 1, STRIDE):
        for left in range(cols.min(), cols.max() + 1, STRIDE):
            bottom, right = min(height, top + BLOCK), min(width, left + BLOCK)
            if missing[top:bottom, left:right].any():
                found.append((top, bottom, left, right))
    return found


def _flipped(array: np.ndarray, flip: tuple[bool, bool]) -> np.ndarray:
    """A view of ``array`` (..., H, W) with its rows and/or columns reversed (writes go through)."""
    axes = tuple(axis for axis, wanted in zip((-2, -1), flip) if wanted)
    return np.flip(array, axis=axes) if axes else array


def require_inpainting(model: DensityModel) -> None:
    """Refuse, in one line, a model that cannot sample, or that codes in its own order (a
    multi-scale model: its second stage reads pixels below and right, which the local windows
    below, made for wavefront and raster orders, do not follow)."""
    require_sampling(model)
    if model.has_own_order():
        raise ModelNotFoundError(
            f"model {model.name!r} codes in its own order, which inpainting does not follow; "
            "use a model coded in raster or wavefront order, e.g. ride or mcgsm"
        )


def inpaint(
    model: DensityModel,
    pixels: np.ndarray,
    missing: np.ndarray,
    sweeps: int = DEFAULT_SWEEPS,
    seed: int = 0,
    candidates: int = DEFAULT_CANDIDATES,
    progress: ProgressCallback | None = None,
    threads: int = 1,
) -> Inpainting:
    """``pixels`` (uint8 (C, H, W)) with its ``missing`` pixels ((H, W) bool, every channel) drawn
    from the model's posterior given the others; the others are returned unchanged (the missing
    pixels' values in ``pixels`` are ignored). ``progress(done, total)`` counts the candidates and
    the blocks of every sweep."""
    require_inpainting(model)
    if missing.shape != pixels.shape[1:]:
        raise InputError(
            f"the mask is {missing.shape[1]}x{missing.shape[0]}, the image "
            f"{pixels.shape[2]}x{pixels.shape[1]}: they must be the same size"
        )
    if not missing.any():
        raise InputError("the mask marks no pixel as missing (nonzero = missing): nothing to inpaint")
    image = np.array(pixels, dtype=np.uint8)
    missing = np.asarray(missing, dtype=bool)
    draws = Draws(seed)
    reach = margins(model)
    per_sweep = len(blocks(missing))  # the same in every orientation: the grid starts at the box's corner
    total = candidates + sweeps * per_sweep
    done = 0

    def advance():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    # 1. the best of a few ancestral drafts, by the joint probability of a window around the hole
    rows, cols = np.nonzero(missing)
    crop = window(rows.min(), rows.max() + 1, cols.min(), cols.max() + 1, missing.shape, reach)
    best = None
    for _ in range(candidates):
        draft = fill(model, image[:, crop[0], crop[1]], missing[crop], draws, threads=threads)
        if best is None or draft.total() > best.total():
            best = draft
        advance()
    image[:, crop[0], crop[1]] = best.pixels  # type: ignore[union-attr]  # (None if candidates is 0: not refused)

    # 2. Metropolis-within-Gibbs over overlapping blocks, the image flipped between sweeps
    proposals = accepted = 0
    for sweep in range(sweeps):
        flip = FLIPS[sweep % len(FLIPS)]
        view, hole = _flipped(image, flip), _flipped(missing, flip)
        for top, bottom, left, right in blocks(hole):
            crop = window(top, bottom, left, right, hole.shape, reach)
            redrawn = np.zeros(hole.shape, dtype=bool)
            redrawn[top:bottom, left:right] = hole[top:bottom, left:right]
            redrawn = redrawn[crop]
            current = fill(model, view[:, crop[0], crop[1]], np.zeros_like(redrawn), None, threads=threads)
            proposed = fill(model, view[:, crop[0], crop[1]], redrawn, draws, threads=threads)
            others = ~redrawn
            log_alpha = proposed.total(others) - current.total(others)
            proposals += 1
            if draws.log2_uniform() < log_alpha:
                view[:, crop[0], crop[1]] = proposed.pixels
                accepted += 1
            advance()
    return Inpainting(image, proposals, accepted)


def read_mask(path) -> np.ndarray:
    """(H, W) bool: True where the mask file's gray value (Pillow's convert("L")) is nonzero."""
    from .imageio import open_image

    mask = open_image(path)
    if isinstance(mask, np.ndarray):  # 16-bit colour, which Pillow cannot hold
        return mask.reshape(mask.shape[0], mask.shape[1], -1).any(axis=2)  # type: ignore[return-value]  # (an array)
    gray_modes = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
    return np.asarray(mask if mask.mode in gray_modes else mask.convert("L")) != 0


def inpaint_file(
    image_path,
    mask_path,
    model: str | None = None,
    weights: str | None = None,
    device: str = "auto",
    sweeps: int = DEFAULT_SWEEPS,
    candidates: int = DEFAULT_CANDIDATES,
    seed: int = 0,
    threads: int = 1,
    progress: ProgressCallback | None = None,
) -> tuple[str, bytes, Inpainting]:
    """What ``ridecodec inpaint`` does: (model name, the completed image as a PNG file in the
    image's own mode, the inpainting). Everything that can be refused is refused before the
    work: an image that is not 8-bit L, RGB or RGBA (or RGB with equal channels, inpainted as
    gray), a mask of another size or with no missing pixel, a model that cannot sample."""
    from dataclasses import replace

    from . import api, imageio
    from .errors import UnsupportedImageError

    coded = api.coded_image(image_path)
    if coded.bit_depth != 8 or coded.transform not in (imageio.ModeTransform.NONE, imageio.ModeTransform.GRAY_AS_RGB):
        raise UnsupportedImageError(
            f"{image_path}: inpaint works on 8-bit L, RGB and RGBA images, not {coded.original_mode}; convert it first"
        )
    missing = read_mask(mask_path)
    if missing.shape != (coded.height, coded.width):
        raise InputError(
            f"{mask_path}: the mask is {missing.shape[1]}x{missing.shape[0]}, the image "
            f"{coded.width}x{coded.height}: they must be the same size"
        )
    if not missing.any():
        raise InputError(f"{mask_path}: the mask marks no pixel as missing (nonzero = missing): nothing to inpaint")
    name, density_model = api.model_for(coded, model, api.resolve_device(device), weights)
    require_inpainting(density_model)
    result = inpaint(density_model, coded.pixels, missing, sweeps, seed, candidates, progress, threads)
    return name, imageio.coded_png_bytes(replace(coded, pixels=result.pixels)), result
