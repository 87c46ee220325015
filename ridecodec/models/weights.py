"""Weights files of the built-in models, and where the shipped ones live.

A weights file is a dict of plain tensors, numbers and strings written with ``torch.save``:
its format name, the model's config, the channel count, the state dict and a free-form metadata
dict (the training summary). It is read with ``torch.load(weights_only=True)``, so loading a
file never runs code from it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from .neighbourhood import CausalNeighbourhood

#: Where shipped weights live inside the package (with MODEL_CARD.md).
SHIPPED_FOLDER = "weights"


def _write(
    path: str | Path, format_name: str, config, models: torch.nn.ModuleList, state: dict, metadata: dict
) -> None:
    temporary = f"{path}.partial"  # never a half-written weights file under the real name
    torch.save(
        {
            "format": format_name,
            "config": asdict(config),
            "num_channels": len(models),
            "state": state,
            "metadata": metadata,
        },
        temporary,
    )
    os.replace(temporary, path)


def save(path: str | Path, format_name: str, config, models: torch.nn.ModuleList, metadata: dict) -> None:
    _write(path, format_name, config, models, {k: v.detach().cpu() for k, v in models.state_dict().items()}, metadata)


def save_exact(path: str | Path, format_name: str, config, models: torch.nn.ModuleList, metadata: dict) -> None:
    """Exact (integer) weights: the state as int32 where every value fits, else int64."""
    state = {}
    for key, tensor in models.state_dict().items():
        tensor = tensor.detach().cpu()
        fits = tensor.numel() == 0 or int(tensor.abs().max()) < 2**31
        state[key] = tensor.to(torch.int32) if fits else tensor
    _write(path, format_name, config, models, state, metadata)


def read(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's own message runs to a dozen lines
        raise pickle.UnpicklingError(
            f"{path} is not a weights file that loads without running code (weights_only)"
        ) from error


def _is_format(blob, format_name: str) -> bool:
    return isinstance(blob, dict) and blob.get("format") == format_name


def _models_from(blob, config_type: type, build: Callable[[Any, int], torch.nn.ModuleList], dtype=None):
    config = config_type(**blob["config"])
    models = build(config, blob["num_channels"])
    state = blob["state"] if dtype is None else {key: value.to(dtype) for key, value in blob["state"].items()}
    models.load_state_dict(state)
    return config, models, blob["metadata"]


def load(path, format_name: str, config_type: type, build: Callable[[Any, int], torch.nn.ModuleList]):
    """(config, models, metadata) from a file written by :func:`save` with ``format_name``."""
    blob = read(path)
    if not _is_format(blob, format_name):
        raise ValueError(f"{path} is not a {format_name} weights file")
    return _models_from(blob, config_type, build)


def load_exact(
    path,
    format_name: str,
    config_type: type,
    build: Callable,
    float_format: str,
    float_build: Callable,
    quantize: Callable,
):
    """(config, exact models, metadata) from exact weights written by :func:`save_exact`, or from
    trained float weights (``float_format``, built by ``float_build``), quantized on loading with
    ``quantize`` per channel.

    Quantizing runs float64 arithmetic whose last bits may differ between machines, and so may, very
    rarely, a rounded weight: the weights digest covers the integers, so such a file is refused with
    a clear error, never decoded wrongly. Shipped weights are exact files, the same everywhere."""
    blob = read(path)
    if _is_format(blob, float_format):
        config, models, metadata = _models_from(blob, config_type, float_build)
        return config, torch.nn.ModuleList(quantize(model) for model in models), metadata
    if not _is_format(blob, format_name):
        raise ValueError(f"{path} is not a {format_name} or {float_format} weights file")
    return _models_from(blob, config_type, build, dtype=torch.int64)


def shipped(file_names: dict[str, str]) -> dict[str, Path]:
    """The shipped weights files, by channel layout, of those that are installed."""
    folder = resources.files("ridecodec") / SHIPPED_FOLDER
    found = {layout: Path(str(folder / name)) for layout, name in file_names.items()}
    return {layout: path for layout, path in found.items() if path.exists()}


def build_per_channel(channel_type: type, config, num_channels: int) -> torch.nn.ModuleList:
    """One ``channel_type(inputs, config)`` per channel of a layout, each sized for what it reads
    (:func:`conditioning_size`): what every built-in model's weights file is made of."""
    neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
    return torch.nn.ModuleList(
        channel_type(conditioning_size(neighbourhood, num_channels, c), config) for c in range(num_channels)
    )


def conditioning_size(neighbourhood: CausalNeighbourhood, channels: int, channel: int) -> int:
    """Inputs of the model for ``channel``: the neighbourhood in every channel, then the pixel's
    own channels coded before it (the layout of ``CausalNeighbourhood.gather``)."""
    return channels * neighbourhood.size + channel


ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class WeightsFiles(Generic[ConfigT]):
    """A built-in model's two kinds of weights file: its trained float networks
    (``channel_type``, files of ``float_format``) and their exact quantization (``exact_type``,
    made by ``exact_type.quantize``, files of ``exact_format``), one network per channel."""

    float_format: str
    exact_format: str
    config_type: type[ConfigT]
    channel_type: type
    exact_type: Any  # a class with a classmethod quantize(float network) -> exact network

    def build(self, config: ConfigT, num_channels: int) -> torch.nn.ModuleList:
        return build_per_channel(self.channel_type, config, num_channels)

    def build_exact(self, config: ConfigT, num_channels: int) -> torch.nn.ModuleList:
        return build_per_channel(self.exact_type, config, num_channels)

    def save(self, path: str | Path, config: ConfigT, models: torch.nn.ModuleList, metadata: dict) -> None:
        save(path, self.float_format, config, models, metadata)

    def load(self, path) -> tuple[ConfigT, torch.nn.ModuleList, dict]:
        """Float weights written by :meth:`save`; never executes code from the file."""
        return load(path, self.float_format, self.config_type, self.build)

    def load_exact(self, path) -> tuple[ConfigT, torch.nn.ModuleList, dict]:
        """Exact weights (``python -m ridecodec.models.export``'s files), or trained float weights
        quantized on loading."""
        return load_exact(
            path,
            self.exact_format,
            self.config_type,
            self.build_exact,
            self.float_format,
            self.build,
            self.exact_type.quantize,
        )
