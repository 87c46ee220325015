"""Float checkpoint (``train.py``) -> the shipped integer weights (``pixelcnn-gray.npz`` for a
gray checkpoint, ``pixelcnn-rgb.npz`` for an RGB one).

    python -m ridecodec_pixelcnn.export /tmp/pixelcnn-train/checkpoint.pt [--out PATH]

The gray weights are version 1's and stay as they are: re-exporting them changes the version 1
tables that files were written with (the golden test refuses it).

Weights are masked, then rounded to integers at 2**-WEIGHT_BITS; biases at the scale of their
layer's products (2**-(input bits + WEIGHT_BITS)). Stored as int32 (every value fits).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ridecodec import exact

from .model import (
    ACT_BITS,
    BLOCKS,
    CHANNELS,
    GROUPS,
    INPUT_BITS,
    LAYERS,
    RGB_CHANNELS,
    RGB_WEIGHTS_FILE,
    WEIGHT_BITS,
    WEIGHTS_FILE,
)
from .network import MaskedConv2d, PixelCNN


def quantize(network: PixelCNN) -> dict[str, np.ndarray]:
    modules = {"first": network.first, "head": network.head, "out": network.out}
    modules.update({f"residual{b}": conv for b, conv in enumerate(cast("list[MaskedConv2d]", network.residual))})
    arrays = {}
    for layer in LAYERS:
        module = modules[layer]
        input_bits = INPUT_BITS if layer == "first" else ACT_BITS
        weight = module.weight * module.mask
        arrays.update(exact.fixed_point_layer(layer, weight, module.bias, input_bits, WEIGHT_BITS))
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="default: the plug-in's weights file for the checkpoint's colour")
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    shapes = {(CHANNELS, BLOCKS, 1): WEIGHTS_FILE, (RGB_CHANNELS, BLOCKS, GROUPS): RGB_WEIGHTS_FILE}
    found = (config["channels"], config["blocks"], config["groups"])
    if found not in shapes:
        raise SystemExit(f"the exact model is built for (channels, blocks, groups) in {sorted(shapes)}; got {config}")
    args.out = args.out or str(Path(__file__).resolve().parent / shapes[found])
    network = PixelCNN(**config)
    network.load_state_dict(checkpoint["state"])
    np.savez_compressed(args.out, **quantize(network))  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training loss {checkpoint['loss_bits']:.4f} bits/pixel)"
    )


if __name__ == "__main__":
    main()
