"""Random gray and colour crops for training convolutional and recurrent plug-ins (the PixelRNN family's
`train` modules share them): whole images loaded once, crops drawn per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imageio import IMAGE_SUFFIXES


def load_gray(folders: list[str]) -> list[np.ndarray]:
    """Every image in ``folders``, as Pillow's convert("L") gives it."""
    images = []
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(path) as image:
                    images.append(np.asarray(image.convert("L")))
    if not images:
        raise SystemExit("no training images found")
    return images


def random_crops(images: list[np.ndarray], size: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """(size, 1, crop, crop) uint8 crops of random images, each transposed and mirrored at random:
    the orientations --effort may code in."""
    out = np.empty((size, 1, crop, crop), dtype=np.uint8)
    for k in range(size):
        image = images[rng.integers(len(images))]
        if rng.random() < 0.5:
            image = image.T
        top = rng.integers(image.shape[0] - crop + 1)
        left = rng.integers(image.shape[1] - crop + 1)
        patch = image[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out[k, 0] = patch
    return torch.from_numpy(out)


def load_rgb(folders: list[str]) -> list[np.ndarray]:
    """Every image in ``folders`` as (H, W, 3) uint8, Pillow's convert("RGB")."""
    images = []
    for folder in folders:
        for path in sorted(Path(folder).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(path) as image:
                    images.append(np.asarray(image.convert("RGB")))
    if not images:
        raise SystemExit("no training images found")
    return images


def random_rgb_crops(images: list[np.ndarray], size: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """(size, 3, crop, crop) uint8 crops, each of an image drawn with probability proportional to
    its area, transposed and mirrored at random."""
    areas = np.array([image.shape[0] * image.shape[1] for image in images], dtype=np.float64)
    out = np.empty((size, 3, crop, crop), dtype=np.uint8)
    for k, index in enumerate(rng.choice(len(images), size=size, p=areas / areas.sum())):
        image = images[index]
        if rng.random() < 0.5:
            image = image.transpose(1, 0, 2)
        top = rng.integers(image.shape[0] - crop + 1)
        left = rng.integers(image.shape[1] - crop + 1)
        patch = image[top : top + crop, left : left + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        out[k] = patch.transpose(2, 0, 1)
    return torch.from_numpy(out)
