"""Shared test helpers: synthetic images (tests never need ../shared)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ridecodec.testing import synthetic_image as natural_like  # the tests' name for it

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core already (pyproject.toml's addopts): a worker's torch on more threads
    # would only make the workers take turns; tests that run threads ask for them
    torch.set_num_threads(1)


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
