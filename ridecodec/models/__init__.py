"""Density models: the plug-in contract (base.py) and the built-in models."""

from .base import ALPHABET_SIZE, CHANNEL_LAYOUTS, CausalReach, DensityModel, StepFunction

__all__ = ["ALPHABET_SIZE", "CHANNEL_LAYOUTS", "CausalReach", "DensityModel", "StepFunction"]
