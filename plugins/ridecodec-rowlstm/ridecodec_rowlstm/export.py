"""Float checkpoint (``train.py``) -> the shipped integer weights (``rowlstm-gray-3.npz`` for a
gray checkpoint of 64 features, ``rowlstm-rgb.npz`` for an RGB one).

    python -m ridecodec_rowlstm.export /tmp/rowlstm-train/checkpoint.pt [--out PATH]

Shipped weights belong to a model version: re-exporting them changes tables that files were
written with (the golden test refuses it), so new weights come with a new version. Version 1's
gray network (32 features, ``rowlstm-gray.npz``) is never written again.

Weights are masked, then rounded to integers at 2**-WEIGHT_BITS; biases at the scale of their
layer's products (2**-(input bits + WEIGHT_BITS)). Stored as int32 (every value fits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ridecodec.training.pixelrnn import quantize_layers

from .model import (
    ACT_BITS,
    GRAY_3_WEIGHTS_FILE,
    GROUPS,
    INPUT_BITS,
    LAYERS,
    RGB_CHANNELS,
    RGB_HIDDEN,
    RGB_WEIGHTS_FILE,
    WEIGHT_BITS,
)
from .network import RowLSTM

#: (channels, hidden, groups) of a checkpoint -> the weights file it becomes
SHAPES = {(64, 64, 1): GRAY_3_WEIGHTS_FILE, (RGB_CHANNELS, RGB_HIDDEN, GROUPS): RGB_WEIGHTS_FILE}


def quantize(network: RowLSTM) -> dict[str, np.ndarray]:
    return quantize_layers(network, LAYERS, INPUT_BITS, ACT_BITS, WEIGHT_BITS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="default: the plug-in's weights file for the checkpoint's colour")
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    found = (config["channels"], config["hidden"], config.get("groups", 1))
    if found not in SHAPES:
        raise SystemExit(f"the shipped networks have (channels, hidden, groups) in {sorted(SHAPES)}; got {config}")
    args.out = args.out or str(Path(__file__).resolve().parent / SHAPES[found])
    network = RowLSTM(**config)
    network.load_state_dict(checkpoint["state"])
    np.savez_compressed(args.out, **quantize(network))  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training loss {checkpoint['loss_bits']:.4f} bits/pixel)"
    )


if __name__ == "__main__":
    main()
