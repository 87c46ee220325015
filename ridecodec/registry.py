"""Plug-in discovery: density models are found through the entry-point group ``ridecodec.models``.

Built-in models register through the same group as third-party ones, so there is one path.
Models are imported lazily, only when asked for by name: listing names costs no imports, and a
broken plug-in only hurts the users who ask for it. Describing a model (``ridecodec models``,
choosing the default) imports its class and reads its class attributes (name, version, modes,
reach, exact_across_devices) without building it: building may load weights or tables. A model
is built only to be used, to compute its weights digest (``describe_model(name, digest=True)``,
``ridecodec models --digests``), or when its class leaves ``reach`` or ``modes`` to be set in
``__init__`` (then that model alone is built, once, to read them).

A name claimed by two installed distributions belongs to neither: using it raises a PluginError
that names both packages, rather than silently taking the first on sys.path.

Security note: a file header can only *name* a model. The name is looked up among installed
entry points; nothing in a file can make the codec import a module of its choosing.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError, ModelNotFoundError, PluginError, RidecodecError
from .models.base import CHANNEL_LAYOUTS, CausalReach, DensityModel

ENTRY_POINT_GROUP = "ridecodec.models"

#: The default model is the first of these that is installed: the best model we ship first.
DEFAULT_MODEL_PREFERENCE = ("ride", "mcgsm", "loco")

#: Metadata a model class must itself declare (not inherit from DensityModel) to be described
#: without being built. ``exact_across_devices`` may be inherited (its default, False).
_CLASS_METADATA = ("name", "version", "modes", "reach")


@dataclass(frozen=True)
class ModelInfo:
    """What ``ridecodec models`` shows for one registered model. ``weights_digest`` is None
    unless asked for (``describe_model(name, digest=True)``): computing it builds the model."""

    name: str
    version: str
    package: str
    package_version: str
    weights_digest: str | None
    modes: tuple[str, ...]
    reach: str
    exact_across_devices: bool
    can_sample: bool = False  # ridecodec sample and inpaint may draw from it (models/base.py)
    reads_versions: tuple[str, ...] = ()  # earlier versions whose files it still decodes
    seconds_per_pixel: float | dict[str, float] | None = None  # a slow model's declared speed (models/base.py)
    pixel_limit: int | None = None  # the largest image a slow model codes unless the limit is raised


def _package(entry_point: importlib.metadata.EntryPoint) -> str:
    distribution = entry_point.dist
    return distribution.name if distribution else "?"


def _entry_points() -> dict[str, list[importlib.metadata.EntryPoint]]:
    """Every registered name, with the entry points claiming it: one per distribution, in sys.path
    order. More than one is a clash, reported when the name is used (see _entry_point)."""
    found: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        claims = found.setdefault(entry_point.name, [])
        if all(_package(claim) != _package(entry_point) for claim in claims):
            claims.append(entry_point)
    return found


def available_models() -> list[str]:
    """Names of every installed model, sorted (names claimed by two packages included: using them
    raises a PluginError naming both)."""
    return sorted(_entry_points())


def default_model(layout: str | None = None) -> str:
    """The best installed model: the first of DEFAULT_MODEL_PREFERENCE, else the first by name.
    With ``layout`` ("L", "RGB", ...), the best that codes images of that layout, since a model
    may ship weights for some layouts only; if none does, the best, whose refusal then says so.
    Reads the models' class-level ``modes``: it builds none (but one that sets them in __init__)."""
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
                if layout in describe_model(name).modes:
                    return name
            except RidecodecError:  # a broken or doubly claimed plug-in is nobody's default
                continue
    return ranked[0]


def _entry_point(name: str) -> importlib.metadata.EntryPoint:
    entry_points = _entry_points()
    if name not in entry_points:
        installed = ", ".join(sorted(entry_points)) or "none"
        raise ModelNotFoundError(
            f"model {name!r} is not installed (installed: {installed}); install the plug-in that provides it"
        )
    claims = entry_points[name]
    if len(claims) > 1:
        packages = " and ".join(
            f"{_package(claim)} {claim.dist.version if claim.dist else '?'} ({claim.value})" for claim in claims
        )
        raise PluginError(
            f"model {name!r} is registered by {len(claims)} installed packages, {packages}; "
            "ridecodec will not guess which one wrote or should read a file: uninstall all but one"
        )
    return claims[0]


def _model_class(name: str) -> tuple[Any, importlib.metadata.EntryPoint]:
    """The registered factory (a DensityModel class, or a function that builds one) and its entry point."""
    entry_point = _entry_point(name)
    try:
        factory = entry_point.load()
    except Exception as error:  # a plug-in's import failure is the plug-in's fault, not ours
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) failed to import: {error}") from error
    return factory, entry_point


def _check_metadata(name: str, entry_point, own_name, modes, reach) -> None:
    """The registry's checks of a model's metadata, read from its class or from an instance."""
    if own_name != name:
        raise PluginError(f"plug-in registered as {name!r} calls itself {own_name!r}")
    unknown = set(modes) - set(CHANNEL_LAYOUTS)
    if unknown:
        raise PluginError(f"plug-in model {name!r} declares unknown modes {sorted(unknown)}")
    if reach is not None and not isinstance(reach, CausalReach):
        raise PluginError(
            f"plug-in model {name!r} ({entry_point.value}) declares a reach that is not a CausalReach: {reach!r}"
        )


@functools.cache
def _load_on(
    name: str, device: str, weights: tuple[str, int, int] | None = None, version: str | None = None
) -> DensityModel:
    factory, entry_point = _model_class(name)
    try:
        if weights is not None:
            model = _with_weights(name, factory, weights[0])
        elif version is not None:
            model = factory.for_version(version)  # load_model checked that the class reads it
        else:
            model = factory()
    except RidecodecError:
        raise
    except Exception as error:
        raise PluginError(f"plug-in model {name!r} failed to initialise: {error}") from error
    if not isinstance(model, DensityModel):
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) is not a ridecodec DensityModel")
    if not hasattr(model, "reach"):
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) declares no causal reach")
    _check_metadata(name, entry_point, model.name, model.modes, model.reach)
    return model.to(device).eval().requires_grad_(False)


def _with_weights(name: str, factory, path: str) -> DensityModel:
    """The model built with the weights in ``path`` (``DensityModel.from_weights_file``)."""
    builder = getattr(factory, "from_weights_file", None)
    try:
        if builder is None:
            raise NotImplementedError(f"model {name!r} takes no weights files")
        return builder(path)
    except NotImplementedError as error:
        raise ModelNotFoundError(f"{error}; --weights works with models that do, e.g. ride and mcgsm") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such weights file") from None
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not usable as {name} weights ({reason})") from None


def load_model(
    name: str,
    device: torch.device | str = "cpu",
    weights: str | os.PathLike | None = None,
    version: str | None = None,
) -> DensityModel:
    """The model registered as ``name``, on ``device``, in eval mode, with its shipped weights or,
    given ``weights``, those of that file (``DensityModel.from_weights_file``, e.g. weights made
    by ``ridecodec train``). ``version``: the model as it was at that version, when its class
    still reads it (``readable_versions``; a file's decoder asks for the file's version), else
    the current one. Cached per (name, device, weights file and its modification, version)."""
    if version is not None and weights is None:
        factory, _ = _model_class(name)
        if inspect.isclass(factory) and version in getattr(factory, "readable_versions", ()):
            return _load_on(name, str(torch.device(device)), None, version)
    key = None
    if weights is not None:
        path = os.path.abspath(os.fspath(weights))
        try:
            status = os.stat(path)
        except OSError:
            raise InputError(f"{weights}: no such weights file") from None
        key = (path, status.st_mtime_ns, status.st_size)
    return _load_on(name, str(torch.device(device)), key)


def _declares(cls: type, attribute: str) -> bool:
    """Whether ``cls`` or a base class below DensityModel sets ``attribute`` itself."""
    return any(
        attribute in vars(klass)
        for klass in cls.__mro__
        if klass is not DensityModel and issubclass(klass, DensityModel)
    )


def _class_metadata(name: str, factory, entry_point) -> type[DensityModel] | None:
    """The model's class, checked, when its metadata can be read from it; None when the factory
    is not a class, or the class leaves ``reach`` or ``modes`` to its instances."""
    if not inspect.isclass(factory):
        return None  # a factory function: only what it builds can tell
    if not issubclass(factory, DensityModel):
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) is not a ridecodec DensityModel")
    if inspect.isabstract(factory):
        missing = ", ".join(sorted(factory.__abstractmethods__))
        raise PluginError(f"plug-in model {name!r} ({entry_point.value}) does not implement {missing}")
    if not all(_declares(factory, attribute) for attribute in _CLASS_METADATA):
        return None
    _check_metadata(name, entry_point, factory.name, factory.modes, factory.reach)
    return factory


def _plain(speed):
    """A declared per-layout speed as a dict (JSON and the listing take it), a figure as it is."""
    return dict(speed) if isinstance(speed, Mapping) else speed


def describe_model(name: str, digest: bool = False) -> ModelInfo:
    """What ``ridecodec models`` shows for ``name``, read from the model's class without building
    it. ``digest=True`` builds the model (on the CPU) to compute its weights digest; a model whose
    class leaves ``reach`` or ``modes`` to ``__init__`` is built in any case. Raises a
    RidecodecError (PluginError, ModelNotFoundError) when the model cannot be used."""
    factory, entry_point = _model_class(name)
    source: type[DensityModel] | DensityModel | None = _class_metadata(name, factory, entry_point)
    if source is None:
        source = load_model(name, "cpu")
    distribution = entry_point.dist
    reach = source.reach
    if source.has_own_order():
        described_reach = "its own coding order"
    elif reach is None:
        described_reach = "unbounded (raster order)"
    else:
        described_reach = f"up {reach.up}, left {reach.left}, right {reach.right}"
    return ModelInfo(
        name=name,
        version=source.version,
        package=distribution.name if distribution else "?",
        package_version=distribution.version if distribution else "?",
        weights_digest=load_model(name, "cpu").weights_digest() if digest else None,
        modes=tuple(source.modes),
        reach=described_reach,
        exact_across_devices=bool(source.exact_across_devices),
        can_sample=bool(getattr(source, "can_sample", False)),
        reads_versions=tuple(getattr(source, "readable_versions", ())),
        seconds_per_pixel=_plain(getattr(source, "seconds_per_pixel", None)),
        pixel_limit=getattr(source, "pixel_limit", None),
    )
