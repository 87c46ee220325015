"""Train the float PixelCNN on random crops: gray (version 1's network: BSDS500 train + test) or
colour (version 2's RGB network: lossless-like photos, bsds500-half train + test and photos).

    python -m ridecodec_pixelcnn.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/pixelcnn-train [--minutes 25] [--channels 32] [--blocks 4] [--crop 40] [--batch 24]
        [--resume CHECKPOINT --lr 5e-4]
    python -m ridecodec_pixelcnn.train --color rgb --channels 96 --from-gray --lr 1e-3 \
        ../shared/data/bsds500-half/train ../shared/data/bsds500-half/test ../shared/data/photos \
        --out /tmp/pixelcnn-rgb96 [--continue]

Runs for a fixed wall-clock time (the learning rate follows a cosine over it), logs to
OUT/train.log and writes OUT/checkpoint.pt (float weights, config, optimizer state and the time
spent) every hundred iterations and at the end. ``--continue`` picks an interrupted run up from
OUT/checkpoint.pt on the same schedule; ``--resume`` starts a new schedule from a checkpoint's
weights. Then ``python -m ridecodec_pixelcnn.export OUT/checkpoint.pt`` makes the shipped integer
weights. Colour crops are drawn from an image with probability proportional to its area (the
few large photos weigh as much as the many small BSDS images). Never train on the val sets (they
are the benchmark) nor on McMaster.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ridecodec.training.crops import load_gray, load_rgb, random_crops, random_rgb_crops
from ridecodec.training.pixelrnn import fit, open_log, save_checkpoint

from .network import MaskedConv2d, PixelCNN


def from_gray(network: PixelCNN) -> None:
    """An RGB ``network`` of 3 x 32 channels started as three copies of the shipped gray network,
    one per channel group, each reading only its own colour channel (cross-group weights zero):
    every channel starts with the gray model's likelihood, and training adds what the channels
    tell about each other (G given R, B given R and G)."""
    from .model import ACT_BITS, CHANNELS, INPUT_BITS, WEIGHT_BITS, PixelCNNModel

    if network.groups != 3 or network.channels != 3 * CHANNELS or network.blocks != 4:
        raise SystemExit(f"--from-gray needs --color rgb --channels {3 * CHANNELS} --blocks 4")
    arrays = PixelCNNModel(colour=False).state_dict()
    modules = {"first": network.first, "head": network.head, "out": network.out}
    modules.update({f"residual{b}": conv for b, conv in enumerate(cast("list[MaskedConv2d]", network.residual))})
    with torch.no_grad():
        for layer, module in modules.items():
            input_bits = INPUT_BITS if layer == "first" else ACT_BITS
            weight = arrays[f"{layer}_weight"].double() / 2**WEIGHT_BITS
            bias = arrays[f"{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS)
            out, inputs = weight.shape[:2]
            module.weight.zero_()
            for g in range(3):
                module.weight[g * out : (g + 1) * out, g * inputs : (g + 1) * inputs] = weight
                module.bias[g * out : (g + 1) * out] = bias  # type: ignore[index]  # (a Conv2d with a bias)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", default="/tmp/pixelcnn-train")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--crop", type=int, default=40)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", help="a checkpoint to continue from (its weights; a fresh optimizer and schedule)")
    parser.add_argument("--continue", dest="proceed", action="store_true", help="pick OUT/checkpoint.pt's run up")
    parser.add_argument("--color", choices=("gray", "rgb"), default="gray")
    parser.add_argument("--from-gray", action="store_true", help="start RGB as 3 copies of the shipped gray network")
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name or "mcmaster" in Path(folder).name for folder in args.folders):
        raise SystemExit("refusing to train on a val set or McMaster")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = open_log(out)

    colour = args.color == "rgb"
    images = load_rgb(args.folders) if colour else load_gray(args.folders)
    crops = random_rgb_crops if colour else random_crops
    model = PixelCNN(args.channels, args.blocks, groups=3 if colour else 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    iteration, running, spent = 0, None, 0.0
    if args.from_gray:
        from_gray(model)
    if args.resume:
        model.load_state_dict(torch.load(args.resume, map_location="cpu")["state"])
    if args.proceed:
        checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu")
        model.load_state_dict(checkpoint["state"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        iteration, spent = checkpoint["iteration"], checkpoint["elapsed"]
        running = np.array([checkpoint["loss_bits"]])
        rng = np.random.default_rng([args.seed, iteration])
        say(f"continuing at iteration {iteration}, {spent:.0f}s spent")
    say(f"{len(images)} images, {sum(p.numel() for p in model.parameters())} parameters, {vars(args)}")

    def save(iteration, running, elapsed):
        save_checkpoint(
            out,
            {
                "config": model.config(),
                "state": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "loss_bits": None if running is None else float(running[0]),
                "elapsed": elapsed,
                "args": vars(args),
            },
        )

    fit(
        model,
        optimizer,
        lambda: model.nll_bits(crops(images, args.batch, args.crop, rng))[None],
        minutes=args.minutes,
        lr=args.lr,
        say=say,
        save=save,
        iteration=iteration,
        running=running,
        spent=spent,
        save_every=100,
    )


if __name__ == "__main__":
    main()
