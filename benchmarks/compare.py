"""Compare a model's compression with classical lossless codecs on folders of images.

    python benchmarks/compare.py ../shared/data/bsds500/val --model loco [--color gray|color|as-is]
        [--limit N] [--verify] [--effort N] [--out PREFIX]

Prints a markdown table (machine information first, ready to paste into benchmarks/RESULTS.md)
and writes PREFIX.md and PREFIX.json; the default prefix is
benchmarks/results/<model>-<first folder's name>-<color>.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch

import ridecodec
from ridecodec.errors import RidecodecError
from ridecodec.evaluation import COLOR_MODES, evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    try:
        import imagecodecs

        imagecodecs_version = imagecodecs.__version__
    except ImportError:
        imagecodecs_version = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": device,
        "torch": torch.__version__,
        "ridecodec": ridecodec.__version__,
        "imagecodecs": imagecodecs_version,
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", metavar="DIR", help="image folders (or files)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--color", choices=COLOR_MODES, default="gray")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--verify", action="store_true", help="also decode, and time it")
    parser.add_argument(
        "--effort",
        type=int,
        choices=range(1, 9),
        default=1,
        metavar="N",
        help="orientations (flips/transposes) tried per image, 1..8 (compress --effort)",
    )
    parser.add_argument(
        "--no-classical",
        dest="classical",
        action="store_false",
        help="skip the classical codecs (WebP at method 6 takes seconds per image)",
    )
    parser.add_argument("--crop", type=int, help="only the centre N x N pixels of each image")
    parser.add_argument("--weights", help="a weights file for the model instead of its shipped weights")
    parser.add_argument(
        "--model-pixel-limit", type=int, help="code images up to this many pixels with a slow model (raster order)"
    )
    parser.add_argument("--out", type=Path, help="output prefix (PREFIX.md and PREFIX.json)")
    args = parser.parse_args(argv)

    effort = f"-effort{args.effort}" if args.effort > 1 else ""
    prefix = args.out or RESULTS / f"{args.model}-{Path(args.folders[0]).resolve().name}-{args.color}{effort}"
    try:
        report = evaluate(
            args.folders,
            args.model,
            device=args.device,
            color=args.color,
            classical=args.classical,
            verify=args.verify,
            limit=args.limit,
            effort=args.effort,
            crop=args.crop,
            weights=args.weights,
            model_pixel_limit=args.model_pixel_limit,
            progress=lambda name: print(f"  {name}", file=sys.stderr),
        )
    except RidecodecError as error:
        sys.exit(f"error: {error}")
    machine = machine_info(report.device)
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    markdown = (
        f"`{command}`\n\n"
        + "".join(f"- {key}: {value}\n" for key, value in machine.items())
        + "\n"
        + report.to_markdown()
    )
    print(markdown)

    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.md").write_text(markdown)
    data = {"command": command, "machine": machine, **json.loads(report.to_json())}
    Path(f"{prefix}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {prefix}.md and {prefix}.json", file=sys.stderr)


if __name__ == "__main__":
    main()
