"""Bits of the adaptive stage's versions on centre crops, from one model pass per crop.

    python benchmarks/stage_versions.py --side 128 --color color ../shared/data/mcmaster/*.png --versions 4 5

The model's tables do not depend on the stage (the model reads the image's pixels, not the
coder's tables), so each crop's tables are taken once, in the encoder's order, and every version
of the stage is replayed on them: its ideal code length (-log2 of the probability its tables give
each pixel's value), per crop and in total, in bits per pixel. No value sets, colour sets or
per-image choice: the stage alone, as the engine runs it (``ridecodec.engine``'s loop). The
crops' figures in ``ridecodec/adaptive.py`` and RESULTS.md come from here. ``--time`` also
prints each version's time, in microseconds per pixel and channel, from a second replay (the
first compiles numba's kernels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ridecodec import adaptive, engine, registry


def centre_crop(path: Path, side: int, color: bool) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB" if color else "L"))
    planes = pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels[None]
    _, height, width = planes.shape
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return np.ascontiguousarray(planes[:, top : top + side, left : left + side])


def model_calls(model, pixels: np.ndarray) -> list:
    """The engine's calls on ``pixels``: (rows, cols, channel, table) per call, None after each step."""
    calls: list = []
    source = torch.from_numpy(pixels)

    def step(rows, cols, channel, table):
        calls.append((rows.numpy().astype(np.int64), cols.numpy().astype(np.int64), channel, table.copy()))
        return source[channel, rows, cols].numpy().astype(np.int32)

    canvas = torch.zeros(source.shape, dtype=torch.uint8)
    engine._run(model, canvas, step, None, engine.Split(), lambda: calls.append(None))
    return calls


def stage_bits(calls: list, pixels: np.ndarray, version: int) -> float:
    channels, height, width = pixels.shape
    stage = adaptive.Adaptation(channels, height, width, version=version)
    bits = 0.0
    for call in calls:
        if call is None:
            stage.end_step()
            continue
        rows, cols, channel, table = call
        symbols = pixels[channel, rows, cols].astype(np.int64)
        coded = stage.refine(rows, cols, channel, table)
        chosen = coded[np.arange(len(symbols)), symbols].astype(np.float64)
        bits -= np.log2(chosen / coded.sum(axis=1, dtype=np.float64)).sum()
        stage.observe(rows, cols, channel, symbols)
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="ride")
    parser.add_argument("--color", choices=("gray", "color"), default="gray")
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--versions", type=int, nargs="+", default=[adaptive.VERSION - 1, adaptive.VERSION])
    parser.add_argument("--time", action="store_true", help="also time each version's stage")
    args = parser.parse_args()
    model = registry.load_model(args.model)
    totals, pixel_count = np.zeros(len(args.versions)), 0
    seconds, samples = np.zeros(len(args.versions)), 0
    print("| crop | " + " | ".join(f"version {v}" for v in args.versions) + " |")
    print("| --- |" + " ---: |" * len(args.versions))
    for path in args.images:
        pixels = centre_crop(path, args.side, args.color == "color")
        calls = model_calls(model, pixels)
        bits = np.array([stage_bits(calls, pixels, v) for v in args.versions])
        if args.time:  # (after the first replay: numba's kernels compiled)
            for k, version in enumerate(args.versions):
                started = time.perf_counter()
                stage_bits(calls, pixels, version)
                seconds[k] += time.perf_counter() - started
            samples += pixels.size
        count = pixels.shape[1] * pixels.shape[2]
        totals += bits
        pixel_count += count
        print(f"| {path.name} | " + " | ".join(f"{b / count:.4f}" for b in bits) + " |", flush=True)
    ratios = " | ".join(f"**{t / pixel_count:.4f}** ({t / totals[0]:.4f})" for t in totals)
    print(f"| **total** ({len(args.images)}) | {ratios} |")
    if args.time:
        each = (f"version {v} {1e6 * t / samples:.2f}" for v, t in zip(args.versions, seconds, strict=True))
        print("\nus per pixel and channel: " + ", ".join(each))


if __name__ == "__main__":
    main()
