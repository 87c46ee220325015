"""Plug-in discovery: density models are found through the entry-point group ``ridecodec.models``.

Built-in models register through the same group as third-party ones, so there is one path.
Models are imported lazily, only when asked for by name: listing names costs no imports, and a
broken plug-in only hurts the users who ask for it.

Security note: a file header can only *name* a model. The name is looked up among installed
entry points; nothing in a file can make the codec import a module of its choosing.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass

import torch

from .errors import ModelNotFoundError, PluginError, RidecodecError
from .models.base import CHANNEL_LAYOUTS, DensityModel

ENTRY_POINT_GROUP = "ridecodec.models"

#: The default model is the first of these that is installed: the best model we ship first.
DEFAULT_MODEL_PREFERENCE = ("ride", "mcgsm", "loco")


@dataclass(frozen=True)
class ModelInfo:
    """What ``ridecodec models`` shows for one registered model."""

    name: str
    version: str
    package: str
    package_version: str
    weights_digest: str
    modes: tuple[str, ...]
    reach: str
    exact_across_devices: bool


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        # If two distributions claim one name, the first on sys.path wins, as for imports.
        found.setdefault(entry_point.name, entry_point)
    return found


def available_models() -> list[str]:
    """Names of every installed model, sorted."""
    return sorted(_entry_points())


def default_model(layout: str | None = None) -> str:
    """The best installed model: the first of DEFAULT_MODEL_PREFERENCE, else the first by name.
    With ``layout`` ("L", "RGB", ...), the best that codes images of that layout, since a model
    may ship weights for some layouts only; if none does, the best, whose refusal then says so."""
    names = _entry_points()
    ranked = [name for name in DEFAULT_MODEL_PREFERENCE if name in names]
    ranked += sorted(set(names) - set(ranked))
    if not ranked:
        raise ModelNotFoundError(
            "no density model is installed; install one, e.g. `pip install plugins/ridecodec-loco`"
        )
    if layout is not None:
        for name in ranked:
            try:
                if layout in load_model(name).modes:
                    return name
            except RidecodecError:  # a broken plug-in is nobody's default
                continue
    return ranked[0]


def _model_class(name: str) -> tuple[type, importlib.metadata.EntryPoint]:
    entry_points = _entry_points()
    if name not in entry_points:
        installed = ", ".join(sorted(entry_points)) or "none"
        raise ModelNotFoundError(
            f"model {name!r} is not installed (installed: {installed}); "
            "install the plug-in that provides it"
        )
    entry_point = entry_points[name]
    try:
        factory = entry_point.load()
    except Exception as error:  # a plug-in's import failure is the plug-in's fault, not ours
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) failed to import: {error}")
    return factory, entry_point


@functools.lru_cache(maxsize=None)
def _load_on(name: str, device: str) -> DensityModel:
    factory, entry_point = _model_class(name)
    try:
        model = factory()
    except Exception as error:
        raise PluginError(f"plug-in model {name!r} failed to initialise: {error}")
    if not isinstance(model, DensityModel):
        raise PluginError(
            f"plug-in model {name!r} ({entry_point.value}) is not a ridecodec DensityModel"
        )
    if model.name != name:
        raise PluginError(f"plug-in registered as {name!r} calls itself {model.name!r}")
    unknown = set(model.modes) - set(CHANNEL_LAYOUTS)
    if unknown:
        raise PluginError(f"plug-in model {name!r} declares unknown modes {sorted(unknown)}")
    return model.to(device).eval().requires_grad_(False)


def load_model(name: str, device: torch.device | str = "cpu") -> DensityModel:
    """The model registered as ``name``, on ``device``, in eval mode. Cached per (name, device)."""
    return _load_on(name, str(torch.device(device)))


def describe_model(name: str) -> ModelInfo:
    model = load_model(name, "cpu")
    _, entry_point = _model_class(name)
    distribution = entry_point.dist
    reach = model.reach
    return ModelInfo(
        name=name,
        version=model.version,
        package=distribution.name if distribution else "?",
        package_version=distribution.version if distribution else "?",
        weights_digest=model.weights_digest(),
        modes=tuple(model.modes),
        reach="unbounded (raster order)"
        if reach is None
        else f"up {reach.up}, left {reach.left}, right {reach.right}",
        exact_across_devices=model.exact_across_devices,
    )
