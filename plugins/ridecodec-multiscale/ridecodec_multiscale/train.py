"""Train the float multi-scale network: gray (version 1's network, random crops of BSDS500 train +
test) or colour (version 2's RGB stage 2, crops of bsds500-half train + test and photos).

    python -m ridecodec_multiscale.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/multiscale-train [--minutes 30] [--crop 32] [--batch 16] [--small-crop 32]
        [--small-batch 8] [--threads 1] [--resume CHECKPOINT --lr 5e-4]
    python -m ridecodec_multiscale.train --color rgb --lr 1e-3 --minutes 24 \
        ../shared/data/bsds500-half/train ../shared/data/bsds500-half/test ../shared/data/photos \
        --out /tmp/multiscale-rgb [--continue]

Colour (``--color rgb``) trains stage 2 only: stage 1 is ``pixelcnn`` 2's shipped RGB network,
unchanged (frozen here, copied verbatim by the export); stage 2 starts as three copies of the
shipped gray stage 2 (``from_gray``), so each channel starts with the gray model's likelihood.

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

GROUPS = 3  # colour: R, G, B


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


def _shipped_arrays(package: str, file_name: str) -> dict[str, torch.Tensor]:
    with resources.files(package).joinpath(file_name).open("rb") as handle, np.load(handle) as archive:
        return {key: torch.from_numpy(archive[key].astype(np.float64)) for key in archive.files}


def _float_of(arrays: dict[str, torch.Tensor], layer: str, input_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's shipped integers as float weight and bias (the export, inverted)."""
    from ridecodec_pixelcnn.model import WEIGHT_BITS

    return arrays[f"{layer}_weight"] / 2**WEIGHT_BITS, arrays[f"{layer}_bias"] / 2 ** (input_bits + WEIGHT_BITS)


def load_shipped_pixelcnn_rgb(network: PixelCNN) -> None:
    """Stage 1 of colour: ``pixelcnn`` 2's shipped RGB network (its export, inverted)."""
    from ridecodec_pixelcnn.model import ACT_BITS, INPUT_BITS, RGB_WEIGHTS_FILE

    arrays = _shipped_arrays("ridecodec_pixelcnn", RGB_WEIGHTS_FILE)
    modules = {"first": network.first, "head": network.head, "out": network.out}
    modules.update({f"residual{b}": conv for b, conv in enumerate(cast("list[MaskedConv2d]", network.residual))})
    with torch.no_grad():
        for layer, module in modules.items():
            weight, bias = _float_of(arrays, layer, INPUT_BITS if layer == "first" else ACT_BITS)
            module.weight.copy_(weight)
            module.bias.copy_(bias)  # type: ignore[union-attr]  # (a Conv2d with a bias)


def from_gray(network: Conditional) -> None:
    """An RGB stage 2 (3 x 32 channels) as three copies of the shipped gray stage 2, group g
    reading only channel g (and the indicator ``k``), cross-group weights zero: the masked layers
    and the conditioning stack block-diagonal; bias chunk j's group g is the gray chunk j of
    group g's conditioning features. Each channel's tables then start as the gray model's."""
    from .model import ACT_BITS, CHANNELS, COND_LAYERS, INPUT_BITS, MASKED_LAYERS, WEIGHTS_FILE

    if network.groups != GROUPS or network.channels != GROUPS * CHANNELS:
        raise SystemExit(f"the RGB stage 2 has {GROUPS * CHANNELS} channels in {GROUPS} groups")
    arrays = _shipped_arrays(__package__, WEIGHTS_FILE)
    chunks = network.blocks + 2
    with torch.no_grad():
        for layer in MASKED_LAYERS + COND_LAYERS:
            module = _module(network, layer)
            weight, bias = _float_of(arrays, layer, INPUT_BITS if layer in ("first", "cond_first") else ACT_BITS)
            module.weight.zero_()
            out, inputs = weight.shape[:2]
            for g in range(GROUPS):
                if layer == "cond_first":  # inputs [u_R k, u_G k, u_B k, k]; gray [u k, k]
                    rows = slice(g * out, (g + 1) * out)
                    module.weight[rows, g] = weight[:, 0]
                    module.weight[rows, GROUPS] = weight[:, 1]
                    module.bias[rows] = bias  # type: ignore[index]
                elif layer == "bias":  # chunk j of the gray (j * 32 ...) -> chunk j, group g
                    size = out // chunks
                    for j in range(chunks):
                        rows = slice(j * GROUPS * size + g * size, j * GROUPS * size + (g + 1) * size)
                        module.weight[rows, g * inputs : (g + 1) * inputs] = weight[j * size : (j + 1) * size]
                        module.bias[rows] = bias[j * size : (j + 1) * size]  # type: ignore[index]
                else:
                    rows = slice(g * out, (g + 1) * out)
                    module.weight[rows, g * inputs : (g + 1) * inputs] = weight
                    module.bias[rows] = bias  # type: ignore[index]


class WarmAdam(torch.optim.Adam):
    """Adam whose rate (set by ``fit`` each step) ramps up linearly over its first ``warmup``
    steps: the cross-channel weights start at zero, and Adam's first, sign-like steps of the full
    rate on all of them at once cost more than a bit per sample before they help."""

    def __init__(self, params, lr: float, warmup: int, done: int = 0):
        super().__init__(params, lr=lr)
        self.warmup, self.done = warmup, done

    def step(self, closure=None):
        self.done += 1
        scale = min(1.0, self.done / self.warmup)
        rates = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * scale
        loss = super().step(closure)
        for group, rate in zip(self.param_groups, rates, strict=True):
            group["lr"] = rate
        return loss


def _module(network: Conditional, layer: str) -> torch.nn.Conv2d:
    name = layer.rstrip("0123456789")
    if name != layer:  # residual3, cond_residual1: an entry of a ModuleList
        return network.get_submodule(f"{name}.{layer[len(name) :]}")  # type: ignore[return-value]
    return network.get_submodule(layer)  # type: ignore[return-value]


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
    parser.add_argument("--continue", dest="proceed", action="store_true", help="pick OUT/checkpoint.pt's run up")
    parser.add_argument("--color", choices=("gray", "rgb"), default="gray")
    parser.add_argument("--warmup", type=int, default=40, help="colour: iterations of linear learning-rate warmup")
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name or "mcmaster" in str(folder) for folder in args.folders):
        raise SystemExit("refusing to train on a val set or McMaster")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = open_log(out)

    if args.color == "rgb":
        return train_rgb(args, rng, out, say)
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


def train_rgb(args, rng: np.random.Generator, out: Path, say) -> None:
    """Stage 2 of colour on RGB crops; stage 1 (pixelcnn 2's RGB network) stays as shipped."""
    from ridecodec.training.crops import load_rgb, random_rgb_crops

    images = load_rgb(args.folders)
    model = MultiScale(GROUPS * args.channels, args.blocks, args.cond_blocks, groups=GROUPS)
    load_shipped_pixelcnn_rgb(model.small)
    model.small.requires_grad_(False)
    from_gray(model.conditional)
    if args.resume:
        model.load_state_dict(torch.load(args.resume, map_location="cpu")["state"])
    optimizer = WarmAdam(model.conditional.parameters(), lr=args.lr, warmup=args.warmup)
    iteration, running, spent = 0, None, 0.0
    if args.proceed:
        checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu")
        model.load_state_dict(checkpoint["state"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        iteration, spent = checkpoint["iteration"], checkpoint["elapsed"]
        optimizer.done = iteration
        running = np.array(checkpoint["loss_bits"])
        rng = np.random.default_rng([args.seed, iteration])
        say(f"continuing at iteration {iteration}, {spent:.0f}s spent")
    trained = sum(p.numel() for p in model.conditional.parameters())
    say(f"{len(images)} images, {trained} trained parameters, {vars(args)}")

    def save(iteration, running, elapsed):
        save_checkpoint(
            out,
            {
                "config": model.config(),
                "state": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "loss_bits": None if running is None else running.tolist(),
                "elapsed": elapsed,
                "args": vars(args),
            },
        )

    fit(
        model,
        optimizer,
        lambda: model.conditional.nll_bits(random_rgb_crops(images, args.batch, args.crop, rng))[None],
        minutes=args.minutes,
        lr=args.lr,
        say=say,
        save=save,
        iteration=iteration,
        running=running,
        spent=spent,
        save_every=50,
        report_every=10,
        describe=lambda now, running: f"stage 2 {now[0]:.4f} (running {running[0]:.4f}) bits per sample",
    )


if __name__ == "__main__":
    main()
