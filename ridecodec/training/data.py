"""Training data: image files, the split into training and validation images, and sampled
(conditioning vector, pixel) pairs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from ..errors import InputError
from ..imageio import open_image
from ..models.neighbourhood import CausalNeighbourhood

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}

#: How images are turned into training planes, by --color. "rct" (G, R - G + 128, B - G + 128,
#: modulo 256: a reversible colour transform within 8 bits) exists for the colour experiment
#: (benchmarks/colour_choice.py); the codec ships the "rgb" model.
COLOR_MODES = {"gray": "L", "rgb": "RGB", "rct": "RGB"}


def list_images(folders: list[str | Path]) -> list[Path]:
    """Every image file in the folders (not recursive), sorted, so a seed fixes the split."""
    found = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        found += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no images in {', '.join(map(str, folders))}")
    return found


def split_images(paths: list[Path], validation_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Hold back whole images (not pixels of seen images) for validation."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(validation_fraction * len(shuffled))) if validation_fraction > 0 else 0
    return shuffled[count:], shuffled[:count]


def load_planes(path: Path, color: str) -> torch.Tensor:
    """The image as uint8 planes (C, H, W); gray is Pillow's convert("L")."""
    with open_image(path) as image:  # a file that is not a readable image: one-line InputError
        array = np.array(image.convert(COLOR_MODES[color]))
    planes = np.ascontiguousarray(array.transpose(2, 0, 1) if array.ndim == 3 else array[None])
    if color == "rct":
        r, g, b = planes.astype(np.int16)
        planes = np.stack([g, (r - g + 128) % 256, (b - g + 128) % 256]).astype(np.uint8)
    return torch.from_numpy(planes)


def sample_pairs(
    paths: list[Path], color: str, neighbourhood: CausalNeighbourhood, per_image: int, seed: int
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
