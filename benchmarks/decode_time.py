"""Encode and decode time of a crop, per model, on one CPU thread (issue 15: "decode time of a
256x256 image").

    python benchmarks/decode_time.py ../shared/data/bsds500/val/101085.jpg --size 256 \\
        --models rowlstm pixelcnn ride loco [--color color]

Takes the top-left size x size crop of the image (gray by default: Pillow's convert("L")),
compresses it with each model, decodes it, checks the pixels and prints bits per pixel (of the
file) and seconds per pixel. Each model is loaded (by coding an 8 x 8 crop) before it is timed.
Timings on a shared machine vary: compare models within one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from ridecodec import api


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=["ride"])
    parser.add_argument("--color", choices=["gray", "color"], default="gray")
    parser.add_argument("--model-pixel-limit", type=int, help="code the crop with a slow model above its pixel limit")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with Image.open(args.image) as image:
        image = image.convert("L" if args.color == "gray" else "RGB")
        pixels = np.ascontiguousarray(np.asarray(image)[: args.size, : args.size])
    count = pixels.shape[0] * pixels.shape[1]
    for model in args.models:
        api.compress(pixels[:8, :8], model=model, device="cpu")  # load the model before timing
        start = time.perf_counter()
        data = api.compress(pixels, model=model, device="cpu", model_pixel_limit=args.model_pixel_limit)
        encode = time.perf_counter() - start
        start = time.perf_counter()
        back = api.decompress(data, device="cpu", model_pixel_limit=args.model_pixel_limit)
        decode = time.perf_counter() - start
        if not np.array_equal(back, pixels):
            raise SystemExit(f"{model}: the decoded pixels differ")
        print(
            f"{model}: {pixels.shape[0]}x{pixels.shape[1]} {args.color}, {8 * len(data) / count:.3f} bits/pixel "
            f"(file), encode {encode:.2f} s, decode {decode:.2f} s = {1e6 * decode / count:.1f} us/pixel"
        )


if __name__ == "__main__":
    main()
