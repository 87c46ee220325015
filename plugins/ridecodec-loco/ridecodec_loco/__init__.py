"""ridecodec-loco: the worked example of a ridecodec density-model plug-in (see model.py)."""

from .model import LocoModel

__all__ = ["LocoModel"]
