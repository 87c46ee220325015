"""What the built-in learned models (``mcgsm``, ``ride``) share: one network per channel of a
layout, loaded from weights files, and the order the channels of an image are coded in.

Gray weights ("L") code gray images and the alpha plane of RGBA; colour weights ("RGB"), if
given, code R, G and B in turn, the network of each channel reading the neighbourhood in all
three channels plus the pixel's channels coded before it. Likelihoods come from the coder's own
tables (``log_prob``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, cast

import torch

from ..schedule import replayed_log_prob
from .base import DensityModel
from .neighbourhood import CausalNeighbourhood
from .weights import read as read_weights_file, shipped


class ChannelPlan(NamedTuple):
    """How one channel of a canvas is coded (``PerChannelModel._plan``)."""

    network: Any  # the channel's network (a module of the model's own kind)
    neighbourhood: CausalNeighbourhood
    planes: slice  # the canvas channels the network reads
    channel: int  # the coded channel, counted within ``planes``


class PerChannelModel(DensityModel):
    """A density model with a network per channel; subclasses set ``name``, ``version``,
    ``reach`` and ``begin``.

    ``weights`` maps "L" (required) and "RGB" (optional) to weights files that ``read_weights``
    reads as (config, one network per channel, metadata); configs carry the neighbourhood
    (``up``, ``left``, ``right``). By default, the shipped weights of the current version."""

    #: The current version's shipped weights files, by layout (subclasses set it).
    SHIPPED_WEIGHTS: ClassVar[dict[str, str]]
    #: The shipped weights of each earlier version still read (version -> files by layout);
    #: subclasses that change their weights add the version they replace here, and so read it.
    EARLIER_SHIPPED_WEIGHTS: ClassVar[dict[str, dict[str, str]]] = {}

    @staticmethod
    def read_weights(path: str | Path) -> tuple[Any, torch.nn.ModuleList, dict]:
        """(config, one network per channel, metadata) from a weights file (subclasses set it)."""
        raise NotImplementedError

    def __init__(self, weights: Mapping[str, str | Path] | None = None):
        super().__init__()
        self.layouts = torch.nn.ModuleDict()
        self.configs: dict[str, Any] = {}
        for layout, path in (weights or shipped(self.SHIPPED_WEIGHTS)).items():
            self.configs[layout], self.layouts[layout], _ = self.read_weights(path)
        if "L" not in self.layouts:
            raise ValueError(f"the {self.name} model needs gray weights")
        self.neighbourhoods = {
            layout: CausalNeighbourhood(config.up, config.left, config.right) for layout, config in self.configs.items()
        }
        # the modes these weights code (the class lists every mode the model can code)
        self.modes = ("L", "RGB", "RGBA") if "RGB" in self.layouts else ("L",)  # type: ignore[misc]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.readable_versions = tuple(cls.EARLIER_SHIPPED_WEIGHTS)

    @classmethod
    def for_version(cls, version: str) -> PerChannelModel:
        """The model with the weights ``version`` shipped (``EARLIER_SHIPPED_WEIGHTS``)."""
        if version not in cls.EARLIER_SHIPPED_WEIGHTS:
            raise NotImplementedError(f"model {cls.name!r} does not keep version {version}")
        model = cls(shipped(cls.EARLIER_SHIPPED_WEIGHTS[version]))
        # the instance's version (the class's is the current one): its digest and files say it
        model.version = version  # type: ignore[misc]
        return model

    @classmethod
    def from_weights_file(cls, path):
        """The shipped weights, with those of the layout ``path`` holds (a file of this model's
        float or exact weights, gray or RGB) replaced by it."""
        blob = read_weights_file(path)  # the loaders check the format itself
        if not isinstance(blob, dict) or "num_channels" not in blob:
            raise ValueError(f"{path} is not a {cls.name} weights file")
        layout = "L" if blob["num_channels"] == 1 else "RGB"
        return cls({**shipped(cls.SHIPPED_WEIGHTS), layout: path})

    def _networks(self, layout: str) -> torch.nn.ModuleList:
        return cast(torch.nn.ModuleList, self.layouts[layout])

    def _plan(self, num_channels: int) -> list[ChannelPlan]:
        """How each channel of a canvas of ``num_channels`` channels is coded."""
        if num_channels == 1:
            return [ChannelPlan(self._networks("L")[0], self.neighbourhoods["L"], slice(0, 1), 0)]
        if "RGB" not in self.layouts:
            raise ValueError(f"these {self.name} weights code grayscale images only")
        plan = [ChannelPlan(self._networks("RGB")[c], self.neighbourhoods["RGB"], slice(0, 3), c) for c in range(3)]
        if num_channels == 4:
            plan.append(ChannelPlan(self._networks("L")[0], self.neighbourhoods["L"], slice(3, 4), 0))
        return plan

    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """From the coder's own tables, replaying the decoding schedule (engine.replayed_log_prob).

        A batched pass over all pixels computes the same function but not the same numbers: in
        the far tails a float32 table is a difference of cumulative sums near 1, and a different
        batch shape rounds them differently (measured for the MCGSM: 6e-5 nats per pixel on noisy
        images). Replayed, likelihood and file size agree to the coder's overhead; it costs what
        decoding costs.
        """
        return torch.tensor([replayed_log_prob(self, image) for image in images], dtype=torch.float64)
