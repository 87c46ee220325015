"""Which way to code colour with the MCGSM: measured, not guessed (issue 3).

Trains two small RGB models with the same budget, neighbourhood and seed, and compares their
bits per pixel (all three channels) on the same held-back training images:

* ``rgb``: R, G, B coded channel after channel, each conditioned on the neighbourhood in all three
  channels and on the pixel's channels coded before it (what the codec ships);
* ``rct``: the reversible colour transform G, R - G + 128, B - G + 128 (mod 256, so it stays
  8-bit), coded the same way.

    python benchmarks/colour_choice.py ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out benchmarks/results/colour-choice.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ridecodec.models.mcgsm import MCGSMConfig
from ridecodec.training.mcgsm import TrainingOptions, train_mcgsm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--samples-per-image", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/colour-choice.md")
    args = parser.parse_args()
    rows = []
    for color in ("rgb", "rct"):
        options = TrainingOptions(
            data=args.folders,
            out=f"/tmp/colour-choice-{color}.pt",
            color=color,
            model=MCGSMConfig(up=2, left=2, right=2),
            samples_per_image=args.samples_per_image,
            max_epochs=args.epochs,
            patience=args.epochs,
        )
        summary = train_mcgsm(options, echo=print)
        rows.append((color, 3 * summary["validation_bits_per_pixel_tables"], summary["training_seconds"]))
    lines = [
        "# Colour: channel-conditional RGB against a reversible colour transform",
        "",
        (
            f"`python benchmarks/colour_choice.py {' '.join(args.folders)} --samples-per-image "
            f"{args.samples_per_image} --epochs {args.epochs}`, {time.strftime('%Y-%m-%d')}"
        ),
        "",
        "Same neighbourhood (5 wide, 3 rows), mixture, seed, samples and held-back images (10% of the",
        "training images); bits per RGB pixel from the coding tables.",
        "",
        "| planes | bits per pixel | training seconds |",
        "|---|---|---|",
    ] + [f"| {color} | {bits:.4f} | {seconds:.0f} |" for color, bits, seconds in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
