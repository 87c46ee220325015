"""Training the MCGSM: ``ridecodec train mcgsm``.

The objective is the coder's: the discrete probability of each 8-bit pixel (the mixture's mass
on the pixel's bin, floor included), so the validation figure is the bits per pixel a file would
cost (before the table truncation to ``table_components``, which is reported too).

Optimization is mini-batch Adam with the learning rate halved when validation stalls; training
stops early when it has not improved for ``patience`` epochs, and the best epoch is kept. Every
epoch writes a checkpoint from which ``--resume`` continues exactly (same samples from the same
seed, optimizer state, history).

Under torchrun the processes share every batch and the validation (``distributed.py``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from ..models.mcgsm import ChannelMCGSM, MCGSMConfig, build_channel_models, load_weights, save_weights
from ..models.neighbourhood import CausalNeighbourhood
from .common import TrainingLog, atomic_save, fit_whitening, machine_description, starting_weights, training_split
from .data import sample_pairs
from .distributed import Distributed, report_processes, session

LOG2 = math.log(2.0)


@dataclass
class TrainingOptions:
    data: list[str]
    out: str
    color: str = "gray"
    model: MCGSMConfig = field(default_factory=MCGSMConfig)
    validation_fraction: float = 0.1
    seed: int = 0
    samples_per_image: int = 8000
    batch_size: int = 8192
    learning_rate: float = 3e-3
    max_epochs: int = 60
    patience: int = 4
    init: str | None = None  # start from these weights (fine-tuning) instead of from scratch
    checkpoint: str | None = None
    log: str | None = None
    resume: bool = False
    command: str = ""


def _bits_per_pixel(
    models, x: torch.Tensor, y: torch.Tensor, batch: int = 65536, tables: bool = False, dist: Distributed | None = None
) -> float:
    """Mean bits per sample, summed over channels: from the training objective, or (``tables``)
    from the float32 tables that coding uses (the same definition; a check of it). With ``dist``,
    each process scores its share of the samples and the sums are added up."""
    count = len(x)
    if dist is not None:
        x, y = dist.part(x), dist.part(y)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb, yb = x[start : start + batch], y[start : start + batch].long()
            for channel, model in enumerate(models):
                xc = xb[:, : x.shape[1] - (len(models) - 1 - channel)]
                if tables:
                    table = model.pmf(xc).double()
                    total -= (
                        torch.log(table.gather(1, yb[:, channel : channel + 1]) / table.sum(1, keepdim=True))
                        .sum()
                        .item()
                    )
                else:
                    total -= model.bin_log_prob(xc, yb[:, channel]).double().sum().item()
    if dist is not None:
        (total,) = dist.sum(total)
    return total / LOG2 / count


def _negative_log_likelihood(models, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch's summed nats over all channels (the objective, before dividing)."""
    loss = 0.0
    for channel, model in enumerate(models):
        xc = x[:, : x.shape[1] - (len(models) - 1 - channel)]
        loss = loss - model.bin_log_prob(xc, y[:, channel]).sum()
    return cast(torch.Tensor, loss)  # (a tensor: there is a channel at least)


def train_mcgsm(options: TrainingOptions, echo=None) -> dict:
    """Train, write the weights to ``options.out``, return the training summary (in every
    process under torchrun; process 0 writes)."""
    with session("cpu") as dist:
        return _train(options, echo, dist)


def _train(options: TrainingOptions, echo, dist: Distributed) -> dict:
    log = TrainingLog(options.log, echo) if dist.is_main else TrainingLog(None, None)
    config = options.model
    neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
    train_paths, validation_paths = training_split(options.data, options.validation_fraction, options.seed)
    started = time.time()
    x_train, y_train = sample_pairs(train_paths, options.color, neighbourhood, options.samples_per_image, options.seed)
    x_val, y_val = sample_pairs(
        validation_paths, options.color, neighbourhood, options.samples_per_image, options.seed + 1
    )
    num_channels = y_train.shape[1]
    log(
        event="data",
        train_images=len(train_paths),
        validation_images=len(validation_paths),
        train_samples=len(x_train),
        validation_samples=len(x_val),
        seconds=round(time.time() - started, 1),
    )

    generator = torch.Generator().manual_seed(options.seed)
    initialized_from = None
    if options.init:
        config, models, initialized_from = starting_weights(
            options.init, load_weights, neighbourhood, num_channels, options.model
        )
    else:
        models = build_channel_models(config, num_channels)
        fit_whitening(models, x_train, y_train)
        for model in cast("list[ChannelMCGSM]", models):
            model.mcgsm.initialize(generator)
    optimizer = torch.optim.Adam(models.parameters(), lr=options.learning_rate)
    state: dict[str, Any] = {
        "epoch": 0,
        "best_bits": math.inf,
        "best_epoch": 0,
        "best_state": None,
        "history": [],
        "seconds": 0.0,
        "stale": 0,
    }

    if options.resume and options.checkpoint and Path(options.checkpoint).exists():
        saved = torch.load(options.checkpoint, map_location="cpu", weights_only=True)
        models.load_state_dict(saved["models"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        generator.set_state(saved["generator"])
        log(event="resumed", epoch=state["epoch"], best_bits=state["best_bits"], processes=dist.world_size)
    if state["epoch"] == 0:
        log(event="initial", validation_bits_per_pixel=_bits_per_pixel(models, x_val, y_val, dist=dist) / num_channels)
    objective = dist.wrap(models, _negative_log_likelihood)  # in DDP under torchrun

    while state["epoch"] < options.max_epochs and state["stale"] < options.patience:
        epoch_started = time.time()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), options.batch_size):
            batch, scale = dist.local(order[start : start + options.batch_size])  # this process's share
            nats = objective(x_train[batch], y_train[batch].long())
            loss = nats * scale  # the global batch's mean, once DDP averages the gradients
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += nats.item() if scale else 0.0
        state["epoch"] += 1
        (total,) = dist.sum(total)
        train_bits = total / len(x_train) / LOG2 / num_channels
        val_bits = _bits_per_pixel(models, x_val, y_val, dist=dist) / num_channels
        improved = val_bits < state["best_bits"] - 1e-4
        if improved:
            state.update(
                best_bits=val_bits,
                best_epoch=state["epoch"],
                stale=0,
                best_state={k: v.clone() for k, v in models.state_dict().items()},
            )
        else:
            state["stale"] += 1
            for group in optimizer.param_groups:  # a stalled epoch halves the step size
                group["lr"] /= 2
        state["seconds"] += dist.max(time.time() - epoch_started)  # the same in every process
        record = {
            "epoch": state["epoch"],
            "train_bits_per_pixel": round(train_bits, 5),
            "validation_bits_per_pixel": round(val_bits, 5),
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": round(state["seconds"], 1),
        }
        state["history"].append(record)
        log(event="epoch", **record)
        if options.checkpoint and dist.is_main:
            atomic_save(
                {
                    "models": models.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                    "generator": generator.get_state(),
                },
                options.checkpoint,
            )

    models.load_state_dict(state["best_state"] or models.state_dict())
    table_bits = _bits_per_pixel(models, x_val, y_val, tables=True, dist=dist) / num_channels
    fingerprints = dist.fingerprints(models)
    summary = {
        "data": [str(Path(d)) for d in options.data],
        "color": options.color,
        "images": {"train": len(train_paths), "validation": len(validation_paths)},
        "samples": {"train": len(x_train), "validation": len(x_val)},
        "seed": options.seed,
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "training_seconds": round(state["seconds"], 1),
        "validation_bits_per_pixel": round(state["best_bits"], 5),
        "validation_bits_per_pixel_tables": round(table_bits, 5),
        "command": options.command,
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "options": {k: v for k, v in asdict(options).items() if k not in ("data", "out", "command", "model")},
        "initialized_from": initialized_from,  # the earlier stage's summary, when fine-tuning
        "processes": dist.world_size,
    }
    log(
        event="done",
        **{
            k: summary[k]
            for k in (
                "epochs",
                "best_epoch",
                "validation_bits_per_pixel",
                "validation_bits_per_pixel_tables",
                "training_seconds",
            )
        },
    )
    report_processes(log, fingerprints)
    if dist.is_main:
        save_weights(options.out, config, models, summary)
    dist.barrier()  # the weights exist when any process returns
    return summary


if __name__ == "__main__":  # quick runs without the CLI: python -m ridecodec.training.mcgsm OUT DIR...
    train_mcgsm(TrainingOptions(data=sys.argv[2:], out=sys.argv[1]), echo=print)
