"""ridecodec: a lossless image codec whose probabilities come from learned density models."""

from .api import (
    Encoded,
    compress,
    compress_file,
    decompress,
    decompress_file,
    decompress_image,
    decompress_to_png,
    encode,
    read_header,
)
from .errors import RidecodecError
from .registry import available_models, default_model, load_model

__version__ = "0.10.0"

__all__ = [
    "Encoded",
    "RidecodecError",
    "available_models",
    "compress",
    "compress_file",
    "decompress",
    "decompress_file",
    "decompress_image",
    "decompress_to_png",
    "default_model",
    "encode",
    "load_model",
    "read_header",
]
