"""Train the float multi-scale network on gray random crops of BSDS500 train + test.

    python -m ridecodec_multiscale.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/multiscale-train [--minutes 30] [--crop 32] [--batch 16] [--small-crop 32]
        [--small-batch 8] [--threads 1] [--resume CHECKPOINT --lr 5e-4]

Each iteration takes one gradient step on the sum of both stages' losses: stage 1 (the PixelCNN
of the subsampled image) on ``--small-batch`` crops of 2 * ``--small-crop`` pixels subsampled by
2, stage 2 (the conditional network) on ``--batch`` crops of ``--crop``. Unless ``--resume`` is
given, both stages start from the shipped ``pixelcnn`` 1 weights (a PixelCNN of full-resolution
images, trained on the same data; stage 2's masked layers have its shape) and stage 2's
conditioning biases from zero, so that training starts from pixelcnn's likelihood. Runs for a
fixed wall-clock time (cosine learning rate), logs to OUT/train.log and writes
OUT/checkpoint.pt every 100 iterations and at the end. Then ``python -m
ridecodec_multiscale.export OUT/checkpoint.pt`` makes the shipped integer weights.
Never train on the val sets (they are the benchmark) nor McMaster.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ridecodec.training.crops import load_gray, random_crops
from ridecodec.training.pixelrnn import fit, open_log, save_checkpoint
from ridecodec_pixelcnn.network import MaskedConv2d, PixelCNN

from .network import FACTOR, Conditional, MultiScale


def load_shipped_pixelcnn(network: PixelCNN | Conditional) -> None:
    """``network``'s masked layers from the shipped integer ``pixelcnn`` 1 gray weights (their
    export, inverted)."""
    from ridecodec_pixelcnn.model import ACT_BITS, INPUT_BITS, WEIGHT_BITS, WEIGHTS_FILE

    with resources.files("ridecodec_pixelcnn").joinpath(WEIGHTS_FILE).open("rb") as handle, np.load(handle) as archive:
        arrays = {key: torch.from_numpy(archive[key].astype(np.float64)) for key in archive.files}
    modules = {"first": network.first, "head": network.head, "out": network.out}
    modules.update({f"residual{b}": conv for b, conv in enumerate(cast("list[MaskedConv2d]", network.residual))})
    with torch.no_grad():
        for layer, module in modules.items():
            input_bits = INPUT_BITS if layer == "first" else ACT_BITS
            module.weight.copy_(arrays[f"{layer}_weight"] / 2**WEIGHT_BITS)
            module.bias.copy_(  # type: ignore[union-attr]  # (a Conv2d with a bias)
                arrays[f"{layer}_bias"] / 2 ** (input_bits + WEIGHT_BITS)
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", default="/tmp/multiscale-train")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--cond-blocks", type=int, default=2)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--small-crop", type=int, default=32)
    parser.add_argument("--small-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", help="a checkpoint to continue from (its weights; a fresh optimizer and schedule)")
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name or "mcmaster" in str(folder) for folder in args.folders):
        raise SystemExit("refusing to train on a val set or McMaster")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = open_log(out)

    images = load_gray(args.folders)
    model = MultiScale(args.channels, args.blocks, args.cond_blocks)
    if args.resume:
        model.load_state_dict(torch.load(args.resume, map_location="cpu")["state"])
    else:  # both stages start as pixelcnn, stage 2 with its conditioning biases at zero
        load_shipped_pixelcnn(model.small)
        load_shipped_pixelcnn(model.conditional)
        with torch.no_grad():
            model.conditional.bias.weight.zero_()
            model.conditional.bias.bias.zero_()  # type: ignore[union-attr]  # (a Conv2d with a bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    say(f"{len(images)} images, {sum(p.numel() for p in model.parameters())} parameters, {vars(args)}")

    def save(iteration, running, elapsed):
        save_checkpoint(
            out,
            {
                "config": model.config(),
                "state": model.state_dict(),
                "iteration": iteration,
                "loss_bits": None if running is None else running.tolist(),
                "args": vars(args),
            },
        )

    def losses():
        small = random_crops(images, args.small_batch, FACTOR * args.small_crop, rng)[:, :, ::FACTOR, ::FACTOR]
        loss1 = model.small.nll_bits(small.contiguous())
        loss2 = model.conditional.nll_bits(random_crops(images, args.batch, args.crop, rng))
        return torch.stack([loss1, loss2])

    def describe(now, running):
        return (
            f"stage 1 {now[0]:.4f} (running {running[0]:.4f}) stage 2 {now[1]:.4f} (running {running[1]:.4f}) "
            "bits/pixel"
        )

    fit(
        model,
        optimizer,
        losses,
        minutes=args.minutes,
        lr=args.lr,
        say=say,
        save=save,
        save_every=100,
        report_every=25,
        describe=describe,
    )


if __name__ == "__main__":
    main()
