"""Training data: image files (or the regions of one texture), the split into training and
validation images, and sampled (conditioning vector, pixel) pairs."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..imageio import IMAGE_SUFFIXES, open_image
from ..models.neighbourhood import CausalNeighbourhood

#: How images are turned into training planes, by --color. "rct" (G, R - G + 128, B - G + 128,
#: modulo 256: a reversible colour transform within 8 bits) exists for the colour experiment
#: (benchmarks/colour_choice.py); the codec ships the "rgb" model.
COLOR_MODES = {"gray": "L", "rgb": "RGB", "rct": "RGB"}


#: The least side of a texture's regions (``texture_regions``): patches of up to 32 pixels fit.
REGION_SIDE = 32


@dataclass(frozen=True, order=True)
class Region:
    """A rectangle of an image file, trained on as an image of its own (see :func:`texture_regions`)."""

    path: Path
    top: int
    left: int
    height: int
    width: int

    def __str__(self) -> str:
        return (
            f"{self.path} rows {self.top}-{self.top + self.height - 1}, "
            f"columns {self.left}-{self.left + self.width - 1}"
        )


def texture_regions(path: Path) -> list[Region]:
    """One image file given as training data: a texture, cut as in the RIDE paper's texture
    synthesis (a 640 x 640 texture into 16 regions of 160 x 160, one held out) into a grid of
    regions a quarter of its shorter side square, but at least REGION_SIDE pixels (4 x 4 for a
    square texture of 128 pixels or more, fewer for a smaller one, more along the longer side of
    an elongated one). The regions are split like images, so whole regions are held back for
    validation: the model is validated on a part of the texture it never saw, and training
    patches are drawn from the others."""
    # A file that is not a readable image: one-line InputError. (The ignore: open_image gives an
    # array, no context manager, for 16-bit colour files, so training cannot read those yet.)
    with open_image(path) as image:  # type: ignore[union-attr]
        width, height = image.size
    side = max(1, min(height, width, max(REGION_SIDE, min(height, width) // 4)))
    row_edges = np.linspace(0, height, max(1, height // side) + 1).round().astype(int)
    col_edges = np.linspace(0, width, max(1, width // side) + 1).round().astype(int)
    return [
        Region(path, int(top), int(left), int(bottom - top), int(right - left))
        for top, bottom in itertools.pairwise(row_edges)
        for left, right in itertools.pairwise(col_edges)
    ]


def list_images(folders: Sequence[str | Path]) -> list[Path | Region]:
    """Every image file in the folders (not recursive), sorted, so a seed fixes the split; an
    image file given instead of a folder is a texture and contributes its regions."""
    found: list[Path | Region] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found += texture_regions(folder)
            continue
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder or an image file")
        found += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no images in {', '.join(map(str, folders))}")
    return found


def split_images(paths: list[Path | Region], validation_fraction: float, seed: int) -> tuple[list, list]:
    """Hold back whole images (or regions of a texture; not pixels of seen images) for validation."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(validation_fraction * len(shuffled))) if validation_fraction > 0 else 0
    return shuffled[count:], shuffled[:count]


def load_planes(path: Path | Region, color: str) -> torch.Tensor:
    """The image (or the region of one) as uint8 planes (C, H, W); gray is Pillow's convert("L")."""
    region = path if isinstance(path, Region) else None
    source = path.path if isinstance(path, Region) else path
    # not a readable image: one-line InputError (the ignore: as in texture_regions)
    with open_image(source) as image:  # type: ignore[union-attr]
        array = np.array(image.convert(COLOR_MODES[color]))
    if region is not None:
        array = array[region.top : region.top + region.height, region.left : region.left + region.width]
    planes = np.ascontiguousarray(array.transpose(2, 0, 1) if array.ndim == 3 else array[None])
    if color == "rct":
        r, g, b = planes.astype(np.int16)
        planes = np.stack([g, (r - g + 128) % 256, (b - g + 128) % 256]).astype(np.uint8)
    return torch.from_numpy(planes)


def sample_pairs(
    paths: list[Path | Region], color: str, neighbourhood: CausalNeighbourhood, per_image: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning vectors and pixels at ``per_image`` random positions of each image (all
    positions, borders included, are candidates: the codec codes borders too).

    Returns x (N, C * size + C - 1) float32, the conditioning of the last channel (earlier
    channels use a prefix of it), and y (N, C) uint8."""
    generator = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for path in paths:
        planes = load_planes(path, color)
        channels, height, width = planes.shape
        chosen = torch.randperm(height * width, generator=generator)[:per_image]
        rows, cols = chosen // width, chosen % width
        xs.append(neighbourhood.gather(planes, rows, cols, channels - 1))
        ys.append(planes[:, rows, cols].T.contiguous())
    return torch.cat(xs), torch.cat(ys)
