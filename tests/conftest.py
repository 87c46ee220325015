"""Shared test helpers: synthetic images (tests never need ../shared)."""

from __future__ import annotations

import numpy as np
import pytest

from ridecodec.testing import synthetic_image as natural_like  # the tests' name for it


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
