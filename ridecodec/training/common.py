"""What every training loop needs: the image split, starting weights, the whitening fit,
checkpoints, the log, and the facts a model card records."""

from __future__ import annotations

import io
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

import torch

from ..errors import InputError
from ..fileio import write_atomically
from ..models.neighbourhood import CausalNeighbourhood
from ..models.whitening import ConditionalWhitening
from .data import Region, list_images, split_images


def training_split(
    folders: list[str], validation_fraction: float, seed: int
) -> tuple[list[Path | Region], list[Path | Region]]:
    """The images of ``folders``, split into training and held-back validation images."""
    paths = list_images(folders)
    train_paths, validation_paths = split_images(paths, validation_fraction, seed)
    if not validation_paths and validation_fraction <= 0:
        raise InputError("training needs held-back validation images: use a --validation-fraction above 0")
    if not train_paths or not validation_paths:
        raise InputError(f"training needs at least 2 images (some to train on, some held back); found {len(paths)}")
    return train_paths, validation_paths


def starting_weights(path: str, load_weights, neighbourhood: CausalNeighbourhood, num_channels: int, asked):
    """Weights to fine-tune (``--init``): (config, models, a record of where they came from). The
    table size and floor come from ``asked``, the config on the command line."""
    try:
        config, models, metadata = load_weights(path)
    except Exception as error:  # missing, not a weights file, or not loadable without code
        raise InputError(f"--init {path}: {error}") from error
    if CausalNeighbourhood(config.up, config.left, config.right) != neighbourhood or len(models) != num_channels:
        raise InputError(f"--init {path} has another neighbourhood or channel count than asked for")
    config = replace(config, table_components=asked.table_components, floor=asked.floor)
    for model in models:
        model.config = config
    return config, models, {"weights": str(path), "metadata": metadata}


def fit_whitening(models: torch.nn.ModuleList, x: torch.Tensor, y: torch.Tensor) -> None:
    """Fit each channel model's whitening on samples from ``data.sample_pairs`` (channel c reads
    the first ``D_c`` columns of x)."""
    for channel, model in enumerate(models):
        whitening = cast(ConditionalWhitening, model.whitening)
        dim = whitening.x_mean.numel()
        fitted = ConditionalWhitening.fit(x[:, :dim], y[:, channel].float())
        whitening.load_state_dict(fitted.state_dict())


def atomic_save(obj, path: str) -> None:
    """torch.save that never leaves a half-written file under ``path`` (fileio's temporary
    file beside it, synced, then moved into place)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue(), force=True)


class TrainingLog:
    """JSON lines, appended to a file and echoed (e.g. to stderr)."""

    def __init__(self, path: str | None, echo):
        self.path, self.echo = path, echo

    def __call__(self, **record) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.echo:
            self.echo(json.dumps(record))


def machine_description(device: torch.device | str | None = None) -> str:
    described = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    return described if device is None else f"{described}, {device}"
