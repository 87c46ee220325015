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
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from ..models.mcgsm import ChannelMCGSM, MCGSMConfig, build_channel_models, load_weights, save_weights
from ..models.neighbourhood import CausalNeighbourhood
from .common import fit_whitening, starting_weights
from .data import sample_pairs
from .distributed import Distributed, session
from .loop import TrainingLoop, TrainingState

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


def train_mcgsm(options: TrainingOptions, echo=None) -> dict:
    """Train, write the weights to ``options.out``, return the training summary (in every
    process under torchrun; process 0 writes)."""
    with session("cpu") as dist:
        return _MCGSMTraining(options, echo, dist).run()


class _MCGSMTraining(TrainingLoop[TrainingOptions, TrainingState]):
    def __init__(self, options: TrainingOptions, echo, dist: Distributed):
        super().__init__(options, echo, dist, TrainingState())
        config = options.model
        neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
        started = time.time()
        color, per_image, seed = options.color, options.samples_per_image, options.seed
        self.x_train, self.y_train = sample_pairs(self.train_paths, color, neighbourhood, per_image, seed)
        self.x_val, self.y_val = sample_pairs(self.validation_paths, color, neighbourhood, per_image, seed + 1)
        self.num_channels = self.y_train.shape[1]
        self.log_data(started, train_samples=len(self.x_train), validation_samples=len(self.x_val))

        self.initialized_from: dict[str, Any] | None = None  # the earlier stage's summary, when fine-tuning
        if options.init:
            config, self.models, self.initialized_from = starting_weights(
                options.init, load_weights, neighbourhood, self.num_channels, options.model
            )
        else:
            self.models = build_channel_models(config, self.num_channels)
            fit_whitening(self.models, self.x_train, self.y_train)
            for model in cast("list[ChannelMCGSM]", self.models):
                model.mcgsm.initialize(self.generator)
        self.config = config

    def batch_nats(self, models: torch.nn.ModuleList, batch: torch.Tensor) -> torch.Tensor:
        """``batch``: indices of training samples."""
        x, y = self.x_train[batch], self.y_train[batch].long()
        nats: torch.Tensor | float = 0.0
        for channel, model in enumerate(cast("list[ChannelMCGSM]", models)):
            xc = x[:, : x.shape[1] - (len(models) - 1 - channel)]
            nats = nats - model.bin_log_prob(xc, y[:, channel]).sum()
        return cast(torch.Tensor, nats)  # (a tensor: there is a channel at least)

    def finished(self) -> bool:
        return self.state.epoch >= self.options.max_epochs or self.state.stale >= self.options.patience

    def train_epoch(self) -> tuple[float, dict[str, Any]]:
        nats = self.descend(torch.randperm(len(self.x_train), generator=self.generator))
        return nats / len(self.x_train) / LOG2 / self.num_channels, {}

    def validate(self, models: torch.nn.Module) -> float:
        return _bits_per_pixel(models, self.x_val, self.y_val, dist=self.dist) / self.num_channels

    def final_scores(self) -> dict[str, float]:
        tables = _bits_per_pixel(self.models, self.x_val, self.y_val, tables=True, dist=self.dist)
        return {"validation_bits_per_pixel_tables": tables / self.num_channels}

    def summary_details(self) -> dict[str, Any]:
        samples = {"train": len(self.x_train), "validation": len(self.x_val)}
        return {"samples": samples, "initialized_from": self.initialized_from}

    def write_weights(self, summary: dict[str, Any]) -> None:
        save_weights(self.options.out, self.config, self.models, summary)


if __name__ == "__main__":  # quick runs without the CLI: python -m ridecodec.training.mcgsm OUT DIR...
    train_mcgsm(TrainingOptions(data=sys.argv[2:], out=sys.argv[1]), echo=print)
