"""Time a model's coding steps alone (no coder, no adaptive stage) with the ridecodec of a given
source tree, so that two trees' steps can be compared in alternating processes:

    for i in 1 2 3; do for tree in /tmp/ridecodec-before .; do
        python benchmarks/steps_only.py $tree ../shared/data/mcmaster/mcmaster-05.png; done; done

Prints the tree, the model, the best of ``--passes`` passes in seconds, and a checksum of every
table (equal checksums: the same tables). The image is cropped to ``--crop`` (rows x columns)
from its top left, in colour.
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", help="the ridecodec source tree to import")
    parser.add_argument("image")
    parser.add_argument("--model", default="ride")
    parser.add_argument("--crop", default="200x300")
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, args.tree)

    import numpy as np
    import torch
    from PIL import Image

    import ridecodec
    from ridecodec import engine, registry
    from ridecodec.schedule import coding_context

    height, width = (int(side) for side in args.crop.split("x"))
    pixels = np.asarray(Image.open(args.image).convert("RGB"))[:height, :width]
    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    model = registry.load_model(args.model, torch.device("cpu"))
    steps = list(engine.wavefront_for(model, *image.shape[1:]).steps())
    best, checksum = float("inf"), 0.0
    for _ in range(args.passes):
        with coding_context(1):
            step = model.begin(image.clone())  # the whole image known: the encoder's case
            start, checksum = time.perf_counter(), 0.0
            for _, rows, cols in steps:
                for channel in range(image.shape[0]):
                    checksum += float(step(rows, cols, channel).double().sum())
            best = min(best, time.perf_counter() - start)
    print(ridecodec.__file__, args.model, f"{best:.3f} s", checksum)


if __name__ == "__main__":
    main()
