"""Calibrate the per-context logistic scales of `loco` and write the shipped table tails.npy.

    python -m ridecodec_loco.calibrate ../shared/data/bsds500/train ../shared/data/bsds500/test \\
        --out plugins/ridecodec-loco/ridecodec_loco/tails.npy            # about 10 minutes

For every pixel of the training images (in grayscale for the contexts of gray, R and alpha; in
colour, G and B, for the contexts of chained channels) it records the model's prediction and
context, then, context by context, finds the scale that minimises the code length of the pixels
in that context (golden-section search over the log scale; the code length is unimodal in it).
Contexts do not depend on the scales, so one pass suffices. Never run it on a development or
test set (BSDS500 val).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ridecodec.imageio import IMAGE_SUFFIXES

from .model import (
    ACTIVITY_THRESHOLDS,
    ALPHABET_SIZE,
    CONTEXTS,
    EIGHTHS,
    MAX_PREDICTION,
    UNIFORM_FLOOR,
    logistic_tails,
    prediction_and_context,
)

LOG_SCALE_RANGE = (np.log(0.1), np.log(64.0))


def pair_counts(paths: list[Path], mode: str, channels: tuple[int, ...]) -> np.ndarray:
    """counts[context, prediction, value] over ``channels`` of ``paths`` converted to ``mode``."""
    counts = np.zeros(CONTEXTS * (MAX_PREDICTION + 1) * ALPHABET_SIZE, dtype=np.int64)
    thresholds = torch.tensor(ACTIVITY_THRESHOLDS, dtype=torch.int32)
    for path in paths:
        array = np.array(Image.open(path).convert(mode), dtype=np.uint8)
        image = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
        height, width = image.shape[1:]
        rows, cols = (g.reshape(-1) for g in torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))
        for channel in channels:
            prediction, context = prediction_and_context(image, rows, cols, channel, thresholds)
            values = image[channel, rows, cols].to(torch.int64)
            index = (context.to(torch.int64) * (MAX_PREDICTION + 1) + prediction) * ALPHABET_SIZE + values
            counts += np.bincount(index.numpy(), minlength=counts.size)
    return counts.reshape(CONTEXTS, MAX_PREDICTION + 1, ALPHABET_SIZE)


def code_length_bits(counts: np.ndarray, scale: float) -> float:
    """Bits to code the (prediction, value) pairs in ``counts`` with one logistic scale."""
    used_predictions = np.flatnonzero(counts.sum(axis=1))
    counts = counts[used_predictions]
    predictions = used_predictions[:, None] / EIGHTHS
    values = np.arange(ALPHABET_SIZE)[None, :]

    def cdf(x):
        return np.exp(-np.logaddexp(0.0, -x / scale))  # the logistic, without overflow

    upper = np.where(values == ALPHABET_SIZE - 1, 1.0, cdf(values + 0.5 - predictions))
    lower = np.where(values == 0, 0.0, cdf(values - 0.5 - predictions))
    mass = (upper - lower) * (1 - UNIFORM_FLOOR) + UNIFORM_FLOOR / ALPHABET_SIZE
    used = counts > 0
    return float(-(counts[used] * np.log2(mass[used])).sum())


def golden_section_minimum(function, low: float, high: float, tolerance: float = 1e-3) -> float:
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = function(a), function(b)
    while high - low > tolerance:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = function(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = function(b)
    return (low + high) / 2


def calibrate(paths: list[Path]) -> tuple[np.ndarray, float]:
    # gray images fill the unchained contexts; G and B of the colour images the chained ones
    counts = pair_counts(paths, "L", (0,)) + pair_counts(paths, "RGB", (1, 2))
    scales: list[float] = []
    total_bits = 0.0
    for context_counts in counts:
        if context_counts.sum() == 0:  # an empty context keeps a neighbour's scale
            scales.append(scales[-1] if scales else 1.0)
            continue
        log_scale = golden_section_minimum(
            lambda log_scale: code_length_bits(context_counts, np.exp(log_scale)),  # noqa: B023 (called here, not later)
            *LOG_SCALE_RANGE,
        )
        scales.append(float(np.exp(log_scale)))
        total_bits += code_length_bits(context_counts, scales[-1])
    return np.array(scales), total_bits / counts.sum()  # over gray pixels and G, B samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = sorted(p for folder in args.folders for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        sys.exit("no images found")
    start = time.time()
    scales, bits_per_pixel = calibrate(paths)
    np.save(args.out, logistic_tails(scales).numpy(), allow_pickle=False)
    print(f"{len(paths)} images, {time.time() - start:.0f} s; training-set rate {bits_per_pixel:.4f} bpp")
    print("scales:", ", ".join(f"{s:.3f}" for s in scales))


if __name__ == "__main__":
    main()
