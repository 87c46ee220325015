"""The rate cost of exactness: the code length (the model's likelihood, in bits per pixel) of the
exact models against the float models of ridecodec 0.1 (commit 8a797f6), image by image.

    git worktree add /tmp/ridecodec-0.1 8a797f6
    python benchmarks/exactness_cost.py measure --checkout /tmp/ridecodec-0.1 --model ride \\
        --color gray ../shared/data/bsds500/val --out benchmarks/results/exactness/ride-0.1-bsds-gray.json
    python benchmarks/exactness_cost.py measure --checkout . --model ride --color gray \\
        ../shared/data/bsds500/val --out benchmarks/results/exactness/ride-exact-bsds-gray.json
    python benchmarks/exactness_cost.py compare OLD.json NEW.json

``measure`` runs the models of the given checkout (put first on sys.path) and writes, per image,
its code length in bits from the model's ``log_prob`` (the tables as they are, no value sets:
this compares models, not encoder options). ``--crop N`` takes the centre N x N of larger
images (graphics are up to 2400 pixels wide). ``compare`` prints the totals and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: ridecodec.imageio.IMAGE_SUFFIXES, spelled out: ``measure`` imports ridecodec from the checkout it
#: measures (0.1 has no IMAGE_SUFFIXES), and importing this checkout's first would make every
#: --checkout measure this one.
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def measure(arguments) -> None:
    sys.path.insert(0, str(Path(arguments.checkout).resolve()))
    import numpy as np
    from PIL import Image

    import ridecodec
    from ridecodec import engine, registry

    model = registry.load_model(arguments.model, "cpu")
    files = sorted(p for folder in arguments.folders for p in Path(folder).iterdir() if p.suffix.lower() in SUFFIXES)
    files = files[: arguments.limit] if arguments.limit else files
    results = []
    for path in files:
        image = Image.open(path).convert("L" if arguments.color == "gray" else "RGB")
        pixels = np.asarray(image)
        if arguments.crop and min(pixels.shape[:2]) > arguments.crop:
            top, left = (pixels.shape[0] - arguments.crop) // 2, (pixels.shape[1] - arguments.crop) // 2
            pixels = pixels[top : top + arguments.crop, left : left + arguments.crop]
        planes = pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))
        start = time.perf_counter()
        bits = engine.code_length_bits(model, planes)
        results.append(
            {
                "image": path.name,
                "pixels": int(planes.shape[1] * planes.shape[2]),
                "bits": bits,
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"{path.name} {bits / results[-1]['pixels']:.4f} bpp", flush=True)
    Path(arguments.out).write_text(
        json.dumps(
            {
                "checkout": str(arguments.checkout),
                "ridecodec": ridecodec.__version__,
                "model": arguments.model,
                "version": model.version,
                "color": arguments.color,
                "crop": arguments.crop,
                "folders": [str(f) for f in arguments.folders],
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "images": results,
            },
            indent=1,
        )
    )


def compare(arguments) -> None:
    old, new = (json.loads(Path(p).read_text()) for p in (arguments.old, arguments.new))
    old_images = {r["image"]: r for r in old["images"]}
    common = [r for r in new["images"] if r["image"] in old_images]
    pixels = sum(r["pixels"] for r in common)
    old_bits = sum(old_images[r["image"]]["bits"] for r in common)
    new_bits = sum(r["bits"] for r in common)
    worst = max(common, key=lambda r: r["bits"] / old_images[r["image"]]["bits"])
    print(
        f"| {new['model']} {old['version']} -> {new['version']} | {len(common)} | {old_bits / pixels:.4f} | "
        f"{new_bits / pixels:.4f} | {100 * (new_bits / old_bits - 1):+.3f}% | "
        f"{worst['image']} {100 * (worst['bits'] / old_images[worst['image']]['bits'] - 1):+.3f}% |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure")
    run.add_argument("--checkout", default=".")
    run.add_argument("--model", required=True)
    run.add_argument("--color", choices=("gray", "color"), default="gray")
    run.add_argument("--limit", type=int)
    run.add_argument("--crop", type=int)
    run.add_argument("--out", required=True)
    run.add_argument("folders", nargs="+", type=Path)
    run.set_defaults(handler=measure)
    both = commands.add_parser("compare")
    both.add_argument("old")
    both.add_argument("new")
    both.set_defaults(handler=compare)
    arguments = parser.parse_args(argv)
    arguments.handler(arguments)


if __name__ == "__main__":
    main()
