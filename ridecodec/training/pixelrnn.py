"""Training and export shared by the PixelRNN plug-ins: small float networks trained on random
crops of photographs for a fixed wall-clock time, then exported to the integer arrays a plug-in
ships.

* :func:`fit` is the loop every plug-in's ``train.py`` runs: Adam steps on the sum of a batch's
  losses (bits per pixel), the learning rate on a cosine over the time budget, gradients clipped
  at norm 1, a running average of each loss logged and checkpointed (resumable, ``spent``);
  :func:`open_log` and :func:`save_checkpoint` are its log and atomic checkpoint.
* :func:`train_main` and :func:`export_main` are the whole command lines of the recurrent
  plug-ins (``rowlstm``, ``diagbilstm``: a network of ``channels`` features and ``hidden`` head
  units on gray crops), and :func:`quantize_layers` their export:

    python -m ridecodec_rowlstm.train ../shared/data/bsds500/train ../shared/data/bsds500/test \\
        --out /tmp/rowlstm-train [--minutes 25] [--channels 32] [--hidden 32] [--crop 32] [--batch 16]
        [--resume CHECKPOINT --lr 5e-4]
    python -m ridecodec_rowlstm.export /tmp/rowlstm-train/checkpoint.pt [--out PATH]

Training logs to OUT/train.log and writes OUT/checkpoint.pt (float weights and config) every few
hundred iterations and at the end. It refuses val sets (they are the benchmark).
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
    parser.add_argument(
        "--continue",
        dest="proceed",
        action="store_true",
        help="pick OUT/checkpoint.pt's run up where it stopped, on the same schedule (a run longer than a session)",
    )
    args = parser.parse_args(argv)
    if any("val" in Path(folder).name for folder in args.folders):
        raise SystemExit("refusing to train on a val set")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    say = open_log(out)
    images = load_gray(args.folders)
    model = network_class(args.channels, args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    iteration, running, spent = 0, None, 0.0
    if args.resume:
        resumed = torch.load(args.resume, map_location="cpu")
        model.load_state_dict(resumed["state"])
        if "optimizer" in resumed:
            optimizer.load_state_dict(resumed["optimizer"])
    if args.proceed:
        checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu")
        if "elapsed" not in checkpoint:
            raise SystemExit(f"{out / 'checkpoint.pt'} records no elapsed time: continue it with --resume instead")
        model.load_state_dict(checkpoint["state"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        iteration, spent = checkpoint["iteration"], checkpoint["elapsed"]
        running = None if checkpoint["loss_bits"] is None else np.array([checkpoint["loss_bits"]])
        rng = np.random.default_rng([args.seed, iteration])  # not the crops the run has seen
        say(f"continuing at iteration {iteration}, {spent:.0f}s of {args.minutes * 60:.0f}s spent")
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
        lambda: model.nll_bits(random_crops(images, args.batch, args.crop, rng))[None],
        minutes=args.minutes,
        lr=args.lr,
        say=say,
        save=save,
        iteration=iteration,
        running=running,
        spent=spent,
    )


def open_log(out: Path) -> Callable[[str], None]:
    """``say(line)``: print a line and append it to OUT/train.log (``out`` is made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train.log", "a", buffering=1)  # noqa: SIM115 (open for the whole run, line-buffered)

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")

    return say


def save_checkpoint(out: Path, checkpoint: dict) -> None:
    """OUT/checkpoint.pt, written whole or not at all (a run killed while saving keeps the last)."""
    torch.save(checkpoint, out / "checkpoint.tmp")
    (out / "checkpoint.tmp").replace(out / "checkpoint.pt")


def _one_loss(now: np.ndarray, running: np.ndarray) -> str:
    return f"loss {now[0]:.4f} running {running[0]:.4f} bits/pixel"


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    losses: Callable[[], torch.Tensor],
    *,
    minutes: float,
    lr: float,
    say: Callable[[str], None],
    save: Callable[[int, np.ndarray | None, float], None],
    iteration: int = 0,
    running: np.ndarray | None = None,
    spent: float = 0.0,
    save_every: int = 300,
    report_every: int = 50,
    describe: Callable[[np.ndarray, np.ndarray], str] = _one_loss,
) -> tuple[int, np.ndarray | None]:
    """Train until ``minutes`` of wall-clock time (``spent`` of them already, in a resumed run)
    are up. Each step: ``losses()`` (a 1-D tensor of losses in bits per pixel, drawing its own
    batch), Adam on their sum at the cosine rate from ``lr`` down to 2% of it, gradients clipped at
    norm 1; a running average of each loss; a line ``describe(now, running)`` every
    ``report_every`` steps; ``save(iteration, running, elapsed)`` every ``save_every`` steps and at
    the end. Returns the iteration count and the running losses."""
    start = time.monotonic() - spent
    budget = minutes * 60
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        rate = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        for group in optimizer.param_groups:
            group["lr"] = rate
        parts = losses()
        optimizer.zero_grad()
        parts.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        iteration += 1
        now = parts.detach().double().numpy()
        running = now if running is None else 0.98 * running + 0.02 * now
        if iteration % report_every == 0:
            say(f"iter {iteration} {elapsed:.0f}s lr {rate:.2e} {describe(now, running)}")
        if iteration % save_every == 0:
            save(iteration, running, elapsed)
    save(iteration, running, time.monotonic() - start)
    summary = "none" if running is None else ", ".join(f"{value:.4f}" for value in running)
    say(f"done: {iteration} iterations in {time.monotonic() - start:.0f}s, running losses {summary} bits/pixel")
    return iteration, running


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
