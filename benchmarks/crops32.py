"""Bits per dimension on 32x32 crops, for comparison with the PixelRNN paper (van den Oord et al.
2016 report bits per dimension of 32x32 images: -log2 p(image) / (32 * 32 * channels)).

    python benchmarks/crops32.py ../shared/data/bsds500-half/val --models pixelcnn rowlstm ride loco \\
        [--color gray|color] [--limit N] [--json OUT]

Each image (sorted by name; gray by default: Pillow's convert("L")) is cut into non-overlapping
32x32 tiles from its top-left corner (bsds500-half's 240x160 images give 35 each); every model
scores every tile on its own, from its likelihood (``log_prob``, which the conformance kit ties
to the coded size), so each crop is an image of its own, borders and all, as in the paper.
Models that do not code the layout are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ridecodec import registry
from ridecodec.evaluation import find_images

CROP = 32


def tiles(path: Path, mode: str) -> np.ndarray:
    """(N, C, 32, 32) uint8: the image's non-overlapping 32x32 tiles, row by row."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert(mode))
    planes = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    _, height, width = planes.shape
    return np.stack(
        [
            planes[:, top : top + CROP, left : left + CROP]
            for top in range(0, height - CROP + 1, CROP)
            for left in range(0, width - CROP + 1, CROP)
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--models", nargs="+", default=["ride"])
    parser.add_argument("--color", choices=["gray", "color"], default="gray")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    mode = "L" if args.color == "gray" else "RGB"
    files, _ = find_images([args.folder])
    files = files[: args.limit]
    crops = torch.from_numpy(np.concatenate([tiles(path, mode) for path in files]))
    results = {}
    for name in args.models:
        model = registry.load_model(name, "cpu")
        if mode not in model.modes:
            print(f"{name}: does not code {mode}, skipped")
            continue
        with torch.inference_mode():
            nats = -sum(float(model.log_prob(crops[start : start + 64]).sum()) for start in range(0, len(crops), 64))
        bits_per_dim = nats / math.log(2) / crops.numel()
        results[name] = {"version": model.version, "bits_per_dimension": round(bits_per_dim, 4)}
    print(f"{len(crops)} crops of 32x32 ({args.color}) from {len(files)} images of {args.folder}\n")
    print("| model | version | bits per dimension |\n| --- | --- | ---: |")
    for name, result in results.items():
        print(f"| {name} | {result['version']} | {result['bits_per_dimension']:.3f} |")
    if args.json_out:
        summary = {"folder": args.folder, "color": args.color, "images": len(files), "crops": len(crops)}
        Path(args.json_out).write_text(json.dumps({**summary, "models": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
