"""Encoding and decoding speed of model "loco" on synthetic grayscale images.

    pytest benchmarks/test_speed.py --benchmark-only

Not part of the test suite (pyproject's testpaths is tests/): these take seconds each. The image
is synthetic, smooth plus noise, so the benchmark runs anywhere without data sets.
"""

from __future__ import annotations

import numpy as np
import pytest

import ridecodec
from ridecodec import registry
from ridecodec.api import describe_device, resolve_device

MODEL = "loco"
DEVICE = resolve_device("auto")
SIZES = [256, 512, 1024]  # time should grow about linearly in the pixel count
ROUNDS = 3  # the minimum of a few rounds is steadier on a shared machine


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic size x size uint8 image: smooth waves and a ramp, plus mild noise, so it
    costs a few bits per pixel like a photo (pure noise or flat images would time the extremes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = 100 + 60 * np.sin(7 * x + 3 * y) * np.cos(5 * y) + 50 * x
    return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def loaded_model():
    registry.load_model(MODEL, DEVICE)  # load once, outside the timings


def describe(benchmark, image: np.ndarray, data: bytes) -> None:
    benchmark.extra_info.update(
        model=MODEL, device=describe_device(DEVICE), pixels=image.size, bpp=8 * len(data) / image.size
    )


@pytest.mark.parametrize("size", SIZES)
def test_encode(benchmark, size):
    image = synthetic_image(size)
    data = benchmark.pedantic(ridecodec.compress, args=(image,), kwargs={"model": MODEL, "device": DEVICE},
                              rounds=ROUNDS, iterations=1)
    describe(benchmark, image, data)


@pytest.mark.parametrize("size", SIZES)
def test_decode(benchmark, size):
    image = synthetic_image(size)
    data = ridecodec.compress(image, model=MODEL, device=DEVICE)
    decoded = benchmark.pedantic(ridecodec.decompress, args=(data,), kwargs={"device": DEVICE},
                                 rounds=ROUNDS, iterations=1)
    assert np.array_equal(decoded, image)
    describe(benchmark, image, data)
