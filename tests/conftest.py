"""Shared test helpers: synthetic images (tests never need ../shared)."""

from __future__ import annotations

import numpy as np
import pytest


def natural_like(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth, textured uint8 image (random walk fields plus noise, correlated channels), the
    kind of statistics a predictive model is built for. (H, W) for one channel, else (H, W, C)."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(0, 1.5, (height, width)), axis=0), axis=1)
    base = (base - base.min()) / max(np.ptp(base), 1e-9) * 200 + 28
    planes = [base + rng.normal(0, 2 + 3 * c, (height, width)) + 10 * c for c in range(channels)]
    image = np.clip(np.stack(planes, axis=-1), 0, 255).round().astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


def noise(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def gray_image():
    return natural_like(23, 37)


@pytest.fixture
def rgb_image():
    return natural_like(19, 26, channels=3, seed=1)
