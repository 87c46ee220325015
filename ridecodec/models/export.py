"""Quantize trained float weights into the exact (integer) weights that coding uses.

    python -m ridecodec.models.export mcgsm trained-gray.pt mcgsm-gray-exact.pt
    python -m ridecodec.models.export ride trained-gray.pt ride-gray-exact.pt

The shipped ``*-exact.pt`` files were made this way from the shipped float files. Quantizing
involves float64 arithmetic whose last bits may differ between machines, so it is done once and
its result shipped: exact files are identical everywhere, and so are the tables they give.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from . import mcgsm, ride
from .weights import WeightsFiles, save_exact

_KINDS: dict[str, WeightsFiles] = {"mcgsm": mcgsm.WEIGHTS_FILES, "ride": ride.WEIGHTS_FILES}


def export(kind: str, source: str | Path, destination: str | Path) -> None:
    files = _KINDS[kind]
    config, models, metadata = files.load(source)
    import torch

    exact_models = torch.nn.ModuleList(files.exact_type.quantize(model) for model in models)
    source_digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    save_exact(
        destination,
        files.exact_format,
        config,
        exact_models,
        {**metadata, "quantized_from": Path(source).name, "quantized_from_sha256": source_digest},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(_KINDS))
    parser.add_argument("source", help="float weights written by `ridecodec train`")
    parser.add_argument("destination", help="exact weights file to write")
    arguments = parser.parse_args(argv)
    export(arguments.kind, arguments.source, arguments.destination)


if __name__ == "__main__":
    main()
