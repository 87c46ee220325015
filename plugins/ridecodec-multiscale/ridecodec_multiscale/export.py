"""Float checkpoint (``train.py``) -> the shipped integer weights (``multiscale-gray.npz`` for a
gray checkpoint, ``multiscale-rgb.npz`` for an RGB one).

    python -m ridecodec_multiscale.export /tmp/multiscale-train/checkpoint.pt [--out PATH]
    python -m ridecodec_multiscale.export CHECKPOINT --compare ../shared/data/bsds500/val --limit 25

The gray weights are version 1's and stay as they are: re-exporting them changes the tables that
version 1 files were written with (the golden test refuses it). An RGB checkpoint's stage 1 is
``pixelcnn`` 2's shipped RGB network: its integers are copied from ``pixelcnn-rgb.npz`` as they
are (and checked against the checkpoint's, re-quantized).

The second form writes nothing: for the first ``--limit`` images of a folder (sorted, gray), it
prints the float networks' and the shipped integer model's bits per pixel, each stage's apart
(stage 1: per subsampled pixel; stage 2: per other pixel; total: per pixel).

Every layer, stage 1's (``small_*``) and stage 2's, by ``exact.fixed_point_layer``: masked weights
at 2**-16, biases at their products' scale (the layers that read pixels at 2**-7, the others
activations at 2**-12). Stored as int32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ridecodec import exact

from .model import (
    ACT_BITS,
    BLOCKS,
    CHANNELS,
    COND_BLOCKS,
    GROUPS,
    INPUT_BITS,
    LAYERS,
    MASKED_LAYERS,
    RGB_CHANNELS,
    RGB_WEIGHTS_FILE,
    WEIGHT_BITS,
    WEIGHTS_FILE,
)
from .network import MultiScale

FIRST_LAYERS = ("first", "cond_first")  # the layers that read pixels (2**-7), not activations


def module_of(network: MultiScale, layer: str) -> torch.nn.Conv2d:
    """The float convolution behind one of the exact model's layers (``LAYERS``)."""
    stage: torch.nn.Module = network.conditional
    if layer.startswith("small_"):
        stage, layer = network.small, layer.removeprefix("small_")
    name = layer.rstrip("0123456789")
    if name != layer:  # residual3, cond_residual1: an entry of a ModuleList
        return stage.get_submodule(f"{name}.{layer[len(name) :]}")  # type: ignore[return-value]
    return stage.get_submodule(layer)  # type: ignore[return-value]


def quantize(network: MultiScale) -> dict[str, np.ndarray]:
    arrays = {}
    for layer in LAYERS:
        module = module_of(network, layer)
        mask = getattr(module, "mask", None)
        weight = module.weight if mask is None else module.weight * mask
        input_bits = INPUT_BITS if layer.removeprefix("small_") in FIRST_LAYERS else ACT_BITS
        arrays.update(exact.fixed_point_layer(layer, weight, module.bias, input_bits, WEIGHT_BITS))
    return arrays


def pixelcnn_rgb_arrays() -> dict[str, np.ndarray]:
    """``pixelcnn`` 2's shipped RGB integers, as stage 1's (``small_*``) arrays."""
    from importlib import resources

    from ridecodec_pixelcnn.model import RGB_WEIGHTS_FILE as PIXELCNN_RGB

    with resources.files("ridecodec_pixelcnn").joinpath(PIXELCNN_RGB).open("rb") as handle, np.load(handle) as archive:
        return {f"small_{key}": archive[key] for key in archive.files}


def quantize_rgb(network: MultiScale) -> dict[str, np.ndarray]:
    """An RGB network's arrays: stage 1 pixelcnn 2's shipped RGB integers (which the network's
    stage 1 must round to), stage 2 quantized."""
    arrays = quantize(network)
    shipped = pixelcnn_rgb_arrays()
    for layer in MASKED_LAYERS:
        for part in ("weight", "bias"):
            key = f"small_{layer}_{part}"
            if not np.array_equal(arrays[key], shipped[key]):
                raise SystemExit(f"stage 1 is not pixelcnn 2's shipped RGB network ({key} differs)")
    return arrays | shipped


def compare(network: MultiScale, folder: str, limit: int) -> None:
    """Float against integer likelihood, per stage, on the first ``limit`` images of ``folder``
    (gray or RGB as the network is; per sample: pixel and channel)."""
    from ridecodec.training.crops import load_gray, load_rgb

    from .model import FACTOR, MultiScaleModel

    exact_model = MultiScaleModel()
    colour = network.conditional.groups > 1
    sums, counts, k = np.zeros(4), np.zeros(2), 0
    images = load_rgb([folder]) if colour else load_gray([folder])
    for k, image in enumerate(images[:limit]):
        pixels = torch.from_numpy(np.array(image))
        pixels = pixels.permute(2, 0, 1)[None].contiguous() if colour else pixels[None, None]
        small = pixels[:, :, ::FACTOR, ::FACTOR].contiguous()
        n1, n2 = small.numel(), pixels.numel() - small.numel()
        with torch.no_grad():
            float1 = float(network.small.nll_bits(small)) * n1
            float2 = float(network.conditional.nll_bits(pixels)) * n2
        stage1, stage2 = (-float(value) / np.log(2.0) for value in exact_model.stage_log_probs(pixels))
        print(
            f"image {k}: float {(float1 + float2) / pixels.numel():.4f} bpp "
            f"(stage 1 {float1 / n1:.4f}, stage 2 {float2 / n2:.4f}); integer {(stage1 + stage2) / pixels.numel():.4f} "
            f"(stage 1 {stage1 / n1:.4f}, stage 2 {stage2 / n2:.4f})",
            flush=True,
        )
        sums += [float1, float2, stage1, stage2]
        counts += [n1, n2]
    total = counts.sum()
    print(
        f"all {k + 1}: float {(sums[0] + sums[1]) / total:.4f} bpp (stage 1 {sums[0] / counts[0]:.4f}, "
        f"stage 2 {sums[1] / counts[1]:.4f}); integer {(sums[2] + sums[3]) / total:.4f} "
        f"(stage 1 {sums[2] / counts[0]:.4f}, stage 2 {sums[3] / counts[1]:.4f})"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="default: the plug-in's weights file for the checkpoint's colour")
    parser.add_argument("--compare", metavar="FOLDER", help="compare float and integer likelihoods; write nothing")
    parser.add_argument("--limit", type=int, default=25)
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    shapes = {
        (CHANNELS, BLOCKS, COND_BLOCKS, 1): WEIGHTS_FILE,
        (RGB_CHANNELS, BLOCKS, COND_BLOCKS, GROUPS): RGB_WEIGHTS_FILE,
    }
    found = (config["channels"], config["blocks"], config["cond_blocks"], config.get("groups", 1))
    if found not in shapes:
        raise SystemExit(
            f"the exact model is built for (channels, blocks, cond_blocks, groups) in {sorted(shapes)}; got {config}"
        )
    network = MultiScale(**config)
    network.load_state_dict(checkpoint["state"])
    if args.compare:
        compare(network, args.compare, args.limit)
        return
    args.out = args.out or str(Path(__file__).resolve().parent / shapes[found])
    arrays = quantize_rgb(network) if found[3] > 1 else quantize(network)
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training losses {checkpoint['loss_bits']} bits/pixel, stage 1 and stage 2)"
    )


if __name__ == "__main__":
    main()
