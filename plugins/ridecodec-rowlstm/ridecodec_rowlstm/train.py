"""Train the float RowLSTM on random crops: gray (version 1's network: BSDS500 train + test) or
colour (version 2's RGB network: lossless-like photos, bsds500-half train + test and photos).

    python -m ridecodec_rowlstm.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/rowlstm-train [--minutes 25] [--channels 32] [--hidden 32] [--crop 32] [--batch 16]
        [--resume CHECKPOINT --lr 5e-4] [--continue]
    python -m ridecodec_rowlstm.train --color rgb --from-gray --lr 1e-3 \
        ../shared/data/bsds500-half/train ../shared/data/bsds500-half/test ../shared/data/photos \
        --out /tmp/rowlstm-rgb [--minutes 25] [--crop 32] [--batch 16] [--continue]

The gray loop is shared with the other recurrent plug-ins (``ridecodec.training.pixelrnn``): it
runs for a fixed wall-clock time (the learning rate follows a cosine over it), logs to
OUT/train.log and writes OUT/checkpoint.pt (float weights and config) every few hundred
iterations and at the end. The colour run (``--color rgb``: 3 x 32 features, 3 x 32 head units)
uses the same loop (``fit``); ``--from-gray`` starts it as three copies of the shipped gray
network. In both, ``--continue`` picks a run that was interrupted (a session's end) up from
OUT/checkpoint.pt on the same schedule: give it the same arguments.
Colour crops are drawn from an image with probability proportional to its area. Then
``python -m ridecodec_rowlstm.export OUT/checkpoint.pt`` makes the shipped integer weights. Never
train on the val sets (they are the benchmark) nor on McMaster.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ridecodec.training.crops import load_rgb, random_rgb_crops
from ridecodec.training.pixelrnn import fit, open_log, save_checkpoint, train_main

from .network import RowLSTM

GROUPS = 3


def from_gray(network: RowLSTM) -> None:
    """An RGB ``network`` (3 groups of the gray network's sizes) started as three copies of the
    shipped gray network, one per channel group, each reading only its own colour channel
    (cross-group weights zero): every channel starts with the gray model's likelihood, and
    training adds what the channels tell about each other (G given R, B given R and G). The gate
    layout is group-major, so group g's gate block is the gray network's gates as they are."""
    from .model import ACT_BITS, CHANNELS, HIDDEN, INPUT_BITS, LAYERS, WEIGHT_BITS, RowLSTMModel

    if network.groups != GROUPS or network.channels != GROUPS * CHANNELS or network.hidden != GROUPS * HIDDEN:
        raise SystemExit(f"--from-gray needs --channels {GROUPS * CHANNELS} --hidden {GROUPS * HIDDEN}")
    arrays = RowLSTMModel.for_version("1").state_dict()
    with torch.no_grad():
        for layer in LAYERS:
            module = getattr(network, layer)
            input_bits = INPUT_BITS if layer == "first" else ACT_BITS
            weight = arrays[f"{layer}_weight"].double() / 2**WEIGHT_BITS
            out, inputs = weight.shape[:2]
            module.weight.zero_()
            for g in range(GROUPS):
                module.weight[g * out : (g + 1) * out, g * inputs : (g + 1) * inputs] = weight
                if module.bias is not None:
                    bias = arrays[f"{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS)
                    module.bias[g * out : (g + 1) * out] = bias


def colour_main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--color", choices=("rgb",), default="rgb")
    parser.add_argument("--out", default="/tmp/rowlstm-rgb")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--continue", dest="proceed", action="store_true", help="pick OUT/checkpoint.pt's run up")
    parser.add_argument("--from-gray", action="store_true", help="start as 3 copies of the shipped gray network")
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name or "mcmaster" in Path(folder).name for folder in args.folders):
        raise SystemExit("refusing to train on a val set or McMaster")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = open_log(out)
    images = load_rgb(args.folders)
    model = RowLSTM(args.channels, args.hidden, groups=GROUPS)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    iteration, running, spent = 0, None, 0.0
    if args.from_gray:
        from_gray(model)
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
        lambda: model.nll_bits(random_rgb_crops(images, args.batch, args.crop, rng))[None],
        minutes=args.minutes,
        lr=args.lr,
        say=say,
        save=save,
        iteration=iteration,
        running=running,
        spent=spent,
        save_every=50,
    )


def main(argv=None):
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--color", choices=("gray", "rgb"), default="gray")
    known, rest = probe.parse_known_args(argv)
    if known.color == "rgb":
        colour_main(argv)
    else:
        train_main(RowLSTM, "rowlstm", __doc__, rest)


if __name__ == "__main__":
    main()
