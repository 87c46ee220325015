"""Float checkpoint (``train.py``) -> the shipped integer weights (``rowlstm-gray.npz``).

    python -m ridecodec_rowlstm.export /tmp/rowlstm-train/checkpoint.pt [--out PATH]

Weights are masked, then rounded to integers at 2**-WEIGHT_BITS; biases at the scale of their
layer's products (2**-(input bits + WEIGHT_BITS)). Stored as int32 (every value fits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ridecodec import exact

from .model import ACT_BITS, CHANNELS, HIDDEN, INPUT_BITS, LAYERS, WEIGHT_BITS, WEIGHTS_FILE
from .network import RowLSTM


def quantize(network: RowLSTM) -> dict[str, np.ndarray]:
    arrays = {}
    for layer in LAYERS:
        module = getattr(network, layer)
        weight = module.weight * module.mask if hasattr(module, "mask") else module.weight
        input_bits = INPUT_BITS if layer == "first" else ACT_BITS
        arrays.update(exact.fixed_point_layer(layer, weight, module.bias, input_bits, WEIGHT_BITS))
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / WEIGHTS_FILE))
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    if (config["channels"], config["hidden"]) != (CHANNELS, HIDDEN):
        raise SystemExit(f"the exact model is built for {CHANNELS} channels, {HIDDEN} hidden; got {config}")
    network = RowLSTM(**config)
    network.load_state_dict(checkpoint["state"])
    np.savez_compressed(args.out, **quantize(network))  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training loss {checkpoint['loss_bits']:.4f} bits/pixel)"
    )


if __name__ == "__main__":
    main()
