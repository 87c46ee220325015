"""The conformance kit: checks that a density model keeps the plug-in contract, for any model's
own tests to import.

    # tests/test_my_model.py of a plug-in package
    import pytest
    from ridecodec import testing

    @pytest.mark.parametrize("check", testing.CHECKS)
    def test_conformance(check):
        check("my-model")

Each check takes a registered model name, raises AssertionError with a message that says what
broke, and needs no data files (the images are synthetic). What they check:

* :func:`check_tables` -- every table is (N, 256), finite, positive where an exact model says so;
* :func:`check_causality` -- the tables never depend on pixels the decoder does not yet know;
* :func:`check_log_prob` -- ``log_prob`` is the sum of the logs of the stepped probabilities;
* :func:`check_file_size` -- a compressed file costs the model's code length, within 0.1%;
* :func:`check_determinism` -- the same calls give the same tables; for a model that claims
  ``exact_across_devices``, also whatever the split of a step into calls (1, 3 or all positions)
  and the thread count (1 or 2);
* :func:`check_cross_kernel` -- for an exact model, a file encoded here decodes to the same
  pixels in fresh processes running torch's generic, AVX2 and (where the CPU has it) AVX-512
  kernels, with MKL and oneDNN held to the same instruction sets: on 1 thread with whole steps
  and on 2 threads with each step split in calls of 1 and of 3 positions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import api, engine, registry
from .models.base import ALPHABET_SIZE, CHANNEL_LAYOUTS, DensityModel


def synthetic_image(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth, textured uint8 image (random-walk fields plus noise, correlated channels), the
    statistics a predictive model is built for. (H, W) for one channel, else (H, W, C)."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(0, 1.5, (height, width)), axis=0), axis=1)
    base = (base - base.min()) / max(np.ptp(base), 1e-9) * 200 + 28
    planes = [base + rng.normal(0, 2 + 3 * c, (height, width)) + 10 * c for c in range(channels)]
    image = np.clip(np.stack(planes, axis=-1), 0, 255).round().astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


def synthetic_graphic(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A uint8 image like a render or a diagram: flat rectangles of a few colours and a line on a
    gradient, so that most pixels equal a neighbour (what online adaptation learns). (H, W) for
    one channel, else (H, W, C)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    colours = rng.integers(0, 256, (6, channels))
    image = np.empty((height, width, channels), dtype=np.int64)
    image[:] = (40 + (x * 3 + y * 2) // 4)[..., None] + np.arange(channels) * 20
    for _ in range(7):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        bottom, right = top + rng.integers(3, height // 2), left + rng.integers(3, width // 2)
        image[top:bottom, left:right] = colours[rng.integers(0, len(colours))]
    image[rng.integers(0, height), :] = colours[0]
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


def synthetic_image16(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A 16-bit (uint16) image with information in its low bytes: :func:`synthetic_image` scaled
    to 16 bits plus mild noise, as a high-bit-depth photograph has."""
    rng = np.random.default_rng(seed)
    base = synthetic_image(height, width, channels, seed).astype(np.float64) * 257
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 65535).round().astype(np.uint16)


def planes_of(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (C, H, W), as the engine codes it."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)) if image.ndim == 3 else image[None].copy()


def stepped_tables(
    model: DensityModel, pixels: np.ndarray, reveal_everything: bool = False, split: engine.Split = engine.Split()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every table the engine's schedule asks for, concatenated (float64), with the true value of
    each row, for ``pixels`` (C, H, W) uint8. With ``reveal_everything`` the canvas holds the whole
    image from the start, so a model that peeks at pixels it may not know gives other tables."""
    truth = torch.from_numpy(np.ascontiguousarray(pixels)).to(model.device)
    canvas = truth.clone() if reveal_everything else torch.zeros_like(truth)
    tables, symbols = [], []
    with engine.coding_context(split.threads):
        step = model.begin(canvas)
        for _, step_rows, step_cols in engine.wavefront_for(model, *pixels.shape[1:]).steps():
            for channel in range(pixels.shape[0]):
                for rows, cols in engine.split_step(step_rows, step_cols, split.rows_per_call):
                    rows, cols = rows.to(truth.device), cols.to(truth.device)
                    tables.append(step(rows, cols, channel).to("cpu", torch.float64))
                    symbols.append(truth[channel, rows, cols].long().cpu())
                    canvas[channel, rows, cols] = truth[channel, rows, cols]
    return torch.cat(tables), torch.cat(symbols)


def _images(model: DensityModel, height: int = 11, width: int = 14):
    """One synthetic image per layout the model codes, as (C, H, W)."""
    return {
        layout: planes_of(synthetic_image(height, width, CHANNEL_LAYOUTS[layout], seed=len(layout)))
        for layout in model.modes
    }


def check_tables(name: str) -> None:
    model = registry.load_model(name)
    for layout, pixels in _images(model).items():
        tables, _ = stepped_tables(model, pixels)
        assert tables.shape == (pixels.size, ALPHABET_SIZE), f"{name} {layout}: tables of shape {tuple(tables.shape)}"
        assert torch.isfinite(tables).all() and (tables >= 0).all(), f"{name} {layout}: negative or non-finite tables"
        assert (tables.sum(1) > 0).all(), f"{name} {layout}: an all-zero table"
        if model.exact_across_devices:
            assert (tables > 0).all(), f"{name} {layout}: an exact model's table gives a value zero frequency"


def check_causality(name: str) -> None:
    model = registry.load_model(name)
    for layout, pixels in _images(model).items():
        honest, _ = stepped_tables(model, pixels)
        peeking, _ = stepped_tables(model, pixels, reveal_everything=True)
        assert torch.equal(honest, peeking), f"{name} {layout}: the tables depend on pixels not yet decoded"


def check_log_prob(name: str) -> None:
    model = registry.load_model(name)
    for layout, pixels in _images(model).items():
        tables, symbols = stepped_tables(model, pixels)
        stepped = float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())
        with torch.inference_mode():
            log_prob = model.log_prob(torch.from_numpy(pixels)[None].to(model.device))
        assert log_prob.shape == (1,) and log_prob.dtype == torch.float64, f"{name}: log_prob must give (B,) float64"
        assert math.isclose(float(log_prob), stepped, rel_tol=1e-6, abs_tol=1e-3), (
            f"{name} {layout}: log_prob {float(log_prob):.4f} nats, the stepped tables {stepped:.4f}"
        )


def check_file_size(name: str) -> None:
    model = registry.load_model(name)
    image = synthetic_image(40, 48, seed=3)
    code_length = engine.code_length_bits(model, image[None])
    encoded = api.encode(image, model=name, device="cpu")
    assert encoded.coder == "model", f"{name}: a smooth image was stored raw or as PNG"
    payload_bits = 8 * encoded.payload_bytes
    assert payload_bits <= code_length * 1.001 + 64, (
        f"{name}: the payload costs {payload_bits} bits, the code length is {code_length:.0f}"
    )


def check_determinism(name: str) -> None:
    model = registry.load_model(name)
    for layout, pixels in _images(model, 9, 17).items():
        reference, _ = stepped_tables(model, pixels)
        again, _ = stepped_tables(model, pixels)
        assert torch.equal(reference, again), f"{name} {layout}: the same calls gave other tables"
        if not model.exact_across_devices:
            continue
        for split in (engine.Split(1), engine.Split(3), engine.Split(None, 2), engine.Split(3, 2)):
            tables, _ = stepped_tables(model, pixels, split=split)
            assert torch.equal(reference, tables), (
                f"{name} {layout}: tables change with {split.rows_per_call or 'all'} positions per call "
                f"on {split.threads} threads, but the model claims to be exact"
            )


#: The kernel sets the cross-kernel check runs, weakest first: torch's ATEN_CPU_CAPABILITY, and
#: the same limit for MKL and oneDNN, which pick their own kernels for matrix products.
KERNEL_SETS = {
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    },
}


def available_kernel_sets() -> list[str]:
    """The kernel sets of KERNEL_SETS this CPU runs: up to the one torch picks by itself."""
    best = torch.backends.cpu.get_cpu_capability().lower()
    order = list(KERNEL_SETS)
    return order[: order.index(best) + 1] if best in order else ["default"]


_DECODE_SCRIPT = r"""
import json, sys
import torch
from ridecodec import api, codec, container, registry
results = {"capability": torch.backends.cpu.get_cpu_capability(), "files": {}}
rotation = int(sys.argv[1])  # -1: every way; else file k decodes only ways[(k + rotation) % len(ways)]
for index, path in enumerate(sys.argv[2:]):
    data = open(path, "rb").read()
    header = api.read_header(data, max_pixels=2**64)
    # only what can differ: a stored or PNG payload runs no model (one decode), a model in raster
    # order has one position per step (no split to make); otherwise each thread count and each
    # split once (the in-process check_determinism compares the tables of every pair)
    if header.coder != container.CODER_RANGE_CATEGORICAL:
        ways = [(1, None)]
    elif registry.describe_model(header.model_name).reach.startswith("unbounded"):
        ways = [(1, None), (2, None)]
    else:
        ways = [(1, None), (2, 1), (2, 3)]
    if rotation >= 0:
        ways = [ways[(index + rotation) % len(ways)]]
    outcomes = []
    for threads, rows in ways:
        try:  # the whole decoder, 16-bit low bytes and pixel CRC included
            codec.decode(data, "cpu", None, api.DEFAULT_MAX_PIXELS, threads, rows)
        except Exception as error:
            outcomes.append(f"{threads} threads, {rows or 'all'} per call: {error}")
    results["files"][path] = outcomes
print(json.dumps(results))
"""


def decode_under_kernels(
    paths: Sequence[str | Path], kernel_set: str, timeout: float = 600, rotation: int | None = None
) -> dict[str, list[str]]:
    """Decode .rdc files in a fresh process restricted to ``kernel_set`` (KERNEL_SETS): on 1 thread
    with whole steps, and on 2 threads with steps split in calls of 1 and of 3 positions (a stored
    or PNG file once, a raster-order model's on 1 and 2 threads without splits: nothing else can
    differ there); returns, per file, what went wrong (empty lists: every decode matched the file's
    pixel CRC). With ``rotation`` (for a corpus of many files), each file is decoded one of those
    ways only, the k-th file the ``(k + rotation)``-th, so that the corpus still runs every way."""
    environment = {**os.environ, **KERNEL_SETS[kernel_set]}
    rotate = -1 if rotation is None else rotation
    completed = subprocess.run(
        [sys.executable, "-c", _DECODE_SCRIPT, str(rotate), *map(str, paths)],
        env=environment,
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, f"the {kernel_set} decoder failed: {completed.stderr.strip()[-2000:]}"
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["capability"].lower() == kernel_set, (
        f"asked torch for {kernel_set} kernels, it ran {results['capability']}"
    )
    return results["files"]


def check_cross_kernel(name: str) -> None:
    model = registry.load_model(name)
    if not model.exact_across_devices:
        return  # a float model promises only same-device decoding
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for layout, pixels in _images(model, 13, 19).items():
            image = pixels[0] if layout == "L" else pixels.transpose(1, 2, 0)
            path = Path(folder) / f"{layout}.rdc"
            path.write_bytes(api.compress(image, model=name, device="cpu"))
            paths.append(path)
        failures = {
            f"{kernels}: {Path(path).name}: {problem}"
            for kernels in available_kernel_sets()
            for path, problems in decode_under_kernels(paths, kernels).items()
            for problem in problems
        }
    assert not failures, f"{name} is not exact across kernels: " + "; ".join(sorted(failures))


#: Every check, for ``pytest.mark.parametrize``.
CHECKS = [check_tables, check_causality, check_log_prob, check_file_size, check_determinism, check_cross_kernel]


def check_model(name: str) -> None:
    """Run every check on the model registered as ``name``."""
    for check in CHECKS:
        check(name)


def synthetic_texture(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 gray texture (H, W) of one of the two kinds the RIDE paper's texture figure
    contrasts: "regular", a periodic brick wall (bricks of 8 x 16 pixels, each its own shade,
    rows offset by half a brick, dark mortar), and "irregular", pebbles (blobs of a smooth random
    field, each its own shade, on a darker ground). Both with fine noise; the same for a seed."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    if kind == "regular":
        brick_row = rows // 8
        shifted = cols + 8 * (brick_row % 2)
        shades = rng.normal(160, 14, (height // 8 + 1, width // 16 + 2))
        texture = shades[brick_row, shifted // 16]
        texture = np.where((rows % 8 == 0) | (shifted % 16 == 0), 70.0, texture)
    elif kind == "irregular":

        def smooth(sigma: float, field: np.ndarray) -> np.ndarray:  # a Gaussian blur through the FFT (periodic)
            fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
            kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
            return np.real(np.fft.ifft2(np.fft.fft2(field) * kernel))

        field = smooth(3.0, rng.normal(size=(height, width)))
        pebbles = field > np.quantile(field, 0.45)
        shade = smooth(6.0, rng.normal(size=(height, width)))
        texture = np.where(pebbles, 165 + 200 * shade, 75.0)
        texture = smooth(0.8, texture)
    else:
        raise ValueError(f"kind must be 'regular' or 'irregular', not {kind!r}")
    return np.clip(texture + rng.normal(0, 5, (height, width)), 0, 255).round().astype(np.uint8)
