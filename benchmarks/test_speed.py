"""Encoding and decoding speed of the installed models on synthetic grayscale images.

    pytest -n 0 benchmarks/test_speed.py --benchmark-only
    pytest -n 0 benchmarks/test_speed.py --benchmark-only -k "mcgsm and decode"
    pytest -n 0 benchmarks/test_speed.py --benchmark-only -k "files"      # a batch of files in one call

Not part of the test suite (pyproject's testpaths is tests/): these take seconds each. The image
is synthetic, smooth plus noise, so the benchmark runs anywhere without data sets.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import ridecodec
from ridecodec import registry
from ridecodec.api import describe_device, resolve_device

MODELS = [name for name in ("loco", "mcgsm", "ride") if name in registry.available_models()]
DEVICE = resolve_device("auto")
SIZES = [256, 512, 1024]  # time should grow about linearly in the pixel count
DECODE_SIZES = SIZES + [2048]  # one round at 2048 (a minute for ride on one core)
ROUNDS = 3  # the minimum of a few rounds is steadier on a shared machine
BATCH = 4  # files of 512 x 512 decoded by one `ridecodec decompress` call


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic size x size uint8 image: smooth waves and a ramp, plus mild noise, so it
    costs a few bits per pixel like a photo (pure noise or flat images would time the extremes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    smooth = 100 + 60 * np.sin(7 * x + 3 * y) * np.cos(5 * y) + 50 * x
    return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(params=MODELS)
def model(request):
    registry.load_model(request.param, DEVICE)  # load once, outside the timings
    return request.param


def describe(benchmark, model: str, image: np.ndarray, data: bytes) -> None:
    benchmark.extra_info.update(
        model=model, device=describe_device(DEVICE), pixels=image.size, bpp=8 * len(data) / image.size
    )


@pytest.mark.parametrize("size", SIZES)
def test_encode(benchmark, model, size):
    image = synthetic_image(size)
    data = benchmark.pedantic(
        ridecodec.compress, args=(image,), kwargs={"model": model, "device": DEVICE}, rounds=ROUNDS, iterations=1
    )
    describe(benchmark, model, image, data)


@pytest.mark.parametrize("size", DECODE_SIZES)
def test_decode(benchmark, model, size):
    image = synthetic_image(size)
    data = ridecodec.compress(image, model=model, device=DEVICE)
    decoded = benchmark.pedantic(
        ridecodec.decompress,
        args=(data,),
        kwargs={"device": DEVICE},
        rounds=ROUNDS if size <= 1024 else 1,
        iterations=1,
    )
    assert np.array_equal(decoded, image)
    describe(benchmark, model, image, data)


@pytest.mark.parametrize("jobs", [1, 2])
def test_decode_files(benchmark, model, jobs, tmp_path):
    """Throughput of one `ridecodec decompress --jobs N` call on BATCH files (process start and
    model loading included): files per second is BATCH over the time."""
    files = []
    for seed in range(BATCH):
        path = tmp_path / f"{seed}.rdc"
        path.write_bytes(ridecodec.compress(synthetic_image(512, seed), model=model, device=DEVICE))
        files.append(str(path))
    command = [
        sys.executable,
        "-m",
        "ridecodec.cli",
        "decompress",
        *files,
        "--jobs",
        str(jobs),
        "--force",
        "-q",
        "--device",
        DEVICE.type,
    ]
    benchmark.pedantic(subprocess.run, args=(command,), kwargs={"check": True}, rounds=1, iterations=1)
    benchmark.extra_info.update(model=model, device=describe_device(DEVICE), files=BATCH, jobs=jobs)
