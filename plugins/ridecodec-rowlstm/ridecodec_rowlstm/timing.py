"""Time to encode and decode a crop with rowlstm (and, for comparison, other models).

    python -m ridecodec_rowlstm.timing ../shared/data/bsds500/val/100007.jpg [--size 256] [--models rowlstm loco]

Takes the top-left size x size crop of the image in gray, compresses it with each model on one
CPU thread, decodes it, checks the pixels and prints bits per pixel and seconds per pixel.
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
    parser.add_argument("--models", nargs="+", default=["rowlstm"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with Image.open(args.image) as image:
        pixels = np.ascontiguousarray(np.asarray(image.convert("L"))[: args.size, : args.size])
    count = pixels.size
    for model in args.models:
        start = time.perf_counter()
        data = api.compress(pixels, model=model, device="cpu")
        encode = time.perf_counter() - start
        start = time.perf_counter()
        back = api.decompress(data, device="cpu")
        decode = time.perf_counter() - start
        assert np.array_equal(back, pixels), f"{model}: the decoded pixels differ"
        print(
            f"{model}: {pixels.shape[0]}x{pixels.shape[1]} gray, {8 * len(data) / count:.3f} bits/pixel (file), "
            f"encode {encode:.2f} s, decode {decode:.2f} s = {1e6 * decode / count:.1f} us/pixel"
        )


if __name__ == "__main__":
    main()
