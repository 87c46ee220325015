"""Which device a model runs on, and how a file records it."""

from __future__ import annotations

import platform

import torch

from .errors import DeviceUnavailableError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks the GPU when there is one; 'cuda' without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("device cuda was asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def describe_device(device: torch.device) -> str:
    """How a file records the device it was encoded on, for diagnosis: the device kind and what
    its arithmetic depends on, e.g. 'cpu (x86_64, AVX512)' (torch's CPU kernels: AVX512, AVX2,
    DEFAULT, ...) or 'cuda (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.machine() or '?'}, {torch.backends.cpu.get_cpu_capability()})"
    return device.type
