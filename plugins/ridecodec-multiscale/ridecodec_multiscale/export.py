"""Float checkpoint (``train.py``) -> the shipped integer weights (``multiscale-gray.npz``).

    python -m ridecodec_multiscale.export /tmp/multiscale-train/checkpoint.pt [--out PATH]

Stage 1 (``small_*``) is quantized by ``ridecodec_pixelcnn.export.quantize``; stage 2's layers the
same way (``exact.fixed_point_layer``: masked weights at 2**-16, biases at their products' scale),
the conditioning stack's first layer reading inputs at 2**-7, every other layer activations at
2**-12. Stored as int32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ridecodec import exact
from ridecodec_pixelcnn.export import quantize as quantize_pixelcnn

from .model import BLOCKS, CHANNELS, COND_BLOCKS, INPUT_BITS, LAYERS, WEIGHT_BITS, WEIGHTS_FILE
from .network import MultiScale

FIRST_LAYERS = ("first", "cond_first")  # the layers that read pixels (2**-7), not activations


def quantize(network: MultiScale) -> dict[str, np.ndarray]:
    from ridecodec_pixelcnn.model import ACT_BITS

    arrays = {f"small_{key}": value for key, value in quantize_pixelcnn(network.small).items()}
    conditional = network.conditional
    for layer in LAYERS:
        if layer.startswith(("residual", "cond_residual")):
            kind, index = layer.rstrip("0123456789"), int(layer[len(layer.rstrip("0123456789")) :])
            module = getattr(conditional, kind)[index]
        else:
            module = getattr(conditional, layer)
        weight = module.weight * module.mask if hasattr(module, "mask") else module.weight
        input_bits = INPUT_BITS if layer in FIRST_LAYERS else ACT_BITS
        arrays.update(exact.fixed_point_layer(layer, weight, module.bias, input_bits, WEIGHT_BITS))
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / WEIGHTS_FILE))
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    if (config["channels"], config["blocks"], config["cond_blocks"]) != (CHANNELS, BLOCKS, COND_BLOCKS):
        raise SystemExit(f"the exact model has {CHANNELS} channels, {BLOCKS} + {COND_BLOCKS} blocks; got {config}")
    network = MultiScale(**config)
    network.load_state_dict(checkpoint["state"])
    np.savez_compressed(args.out, **quantize(network))  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training losses {checkpoint['loss_bits']} bits/pixel, stage 1 and stage 2)"
    )


if __name__ == "__main__":
    main()
