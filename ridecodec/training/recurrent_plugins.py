"""Training and export shared by the recurrent PixelRNN plug-ins (``rowlstm``, ``diagbilstm``): a
float network of ``channels`` features and ``hidden`` head units, trained on gray random crops of
photographs for a fixed wall-clock time, then exported to the integer arrays the plug-in ships.

A plug-in's ``train.py`` and ``export.py`` call :func:`train_main` and :func:`export_main` with its
network class (and its ``quantize``); the command lines are theirs:

    python -m ridecodec_rowlstm.train ../shared/data/bsds500/train ../shared/data/bsds500/test \\
        --out /tmp/rowlstm-train [--minutes 25] [--channels 32] [--hidden 32] [--crop 32] [--batch 16]
        [--resume CHECKPOINT --lr 5e-4]
    python -m ridecodec_rowlstm.export /tmp/rowlstm-train/checkpoint.pt [--out PATH]

Training runs for a fixed wall-clock time (the learning rate follows a cosine over it), logs to
OUT/train.log and writes OUT/checkpoint.pt (float weights and config) every 300 iterations and at
the end. It refuses val sets (they are the benchmark).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import exact
from .crops import load_gray, random_crops


def train_main(network_class: type, name: str, description: str, argv=None) -> None:
    """Train ``network_class(channels, hidden)`` (a module with ``nll_bits(crops)`` and
    ``config()``) as the command line ``argv`` says; ``name`` names the default output folder."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", default=f"/tmp/{name}-train")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", help="a checkpoint to continue from (weights, optimizer state; a new schedule)")
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name for folder in args.folders):
        raise SystemExit("refusing to train on a val set")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", buffering=1)  # noqa: SIM115 (open for the whole run, line-buffered)

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")

    images = load_gray(args.folders)
    model = network_class(args.channels, args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.resume:
        resumed = torch.load(args.resume, map_location="cpu")
        model.load_state_dict(resumed["state"])
        if "optimizer" in resumed:
            optimizer.load_state_dict(resumed["optimizer"])
    say(f"{len(images)} images, {sum(p.numel() for p in model.parameters())} parameters, {vars(args)}")

    def save(iteration, loss):
        torch.save(
            {
                "config": model.config(),
                "state": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "loss_bits": loss,
                "args": vars(args),
            },
            out / "checkpoint.tmp",
        )
        (out / "checkpoint.tmp").replace(out / "checkpoint.pt")

    start = time.monotonic()
    budget = args.minutes * 60
    iteration, running = 0, None
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model.nll_bits(random_crops(images, args.batch, args.crop, rng))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        iteration += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if iteration % 50 == 0:
            say(f"iter {iteration} {elapsed:.0f}s lr {lr:.2e} loss {loss.item():.4f} running {running:.4f} bits/pixel")
        if iteration % 300 == 0:
            save(iteration, running)
    save(iteration, running)
    say(f"done: {iteration} iterations in {time.monotonic() - start:.0f}s, running loss {running:.4f} bits/pixel")


def quantize_layers(
    network: torch.nn.Module, layers: list[str], input_bits: int, act_bits: int, weight_bits: int
) -> dict[str, np.ndarray]:
    """The int32 arrays of ``network``'s ``layers`` (attributes of it, each with a ``weight``, a
    ``bias`` or None, and maybe a ``mask``): weights masked, then at 2**-``weight_bits``; biases at
    their products' scale, the first layer's inputs being the pixels at 2**-``input_bits`` and
    every later layer's activations at 2**-``act_bits``."""
    arrays = {}
    for layer in layers:
        module = getattr(network, layer)
        weight = module.weight * module.mask if hasattr(module, "mask") else module.weight
        bits = input_bits if layer == layers[0] else act_bits
        arrays.update(exact.fixed_point_layer(layer, weight, module.bias, bits, weight_bits))
    return arrays


def export_main(
    network_class: type,
    quantize: Callable[[Any], dict[str, np.ndarray]],
    shape: tuple[int, int],
    weights_path: Path,
    description: str,
    argv=None,
) -> None:
    """Write ``quantize(network)`` of a training checkpoint to ``weights_path`` (or ``--out``),
    refusing a checkpoint whose (channels, hidden) is not ``shape``, the exact model's."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", default=str(weights_path))
    args = parser.parse_args(argv)
    checkpoint = torch.load(args.checkpoint, map_location="cpu")
    config = checkpoint["config"]
    if (config["channels"], config["hidden"]) != shape:
        raise SystemExit(f"the exact model is built for {shape[0]} channels, {shape[1]} hidden; got {config}")
    network = network_class(**config)
    network.load_state_dict(checkpoint["state"])
    np.savez_compressed(args.out, **quantize(network))  # type: ignore[arg-type]  # (stubs: ** might be allow_pickle)
    print(
        f"wrote {args.out} from {args.checkpoint} (iteration {checkpoint['iteration']}, "
        f"training loss {checkpoint['loss_bits']:.4f} bits/pixel)"
    )
