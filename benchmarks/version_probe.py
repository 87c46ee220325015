"""Does a probe choose a model's version as well as coding the whole image would?

For each image of a set, the encoder (codec.model_for) codes a centre crop of SIDE x SIDE pixels
with the model's current version and each of its ``alternative_versions`` and keeps the shortest.
This script makes the same choice and compares it with whole-image results of each version (two
`benchmarks/compare.py --json` runs, one per version's weights, e.g. with `--weights`):

    python benchmarks/version_probe.py ride 64 \\
        --set ../shared/data/mcmaster results/colour/ride4-mcmaster.json results/colour/ride3-mcmaster.json

It prints, per set, how often the probe picked the version whose whole-image file is smaller, and
the totals of always-current, always-earlier, the probe's choice and the best choice, relative to
always-earlier.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ridecodec import engine, registry
from ridecodec.evaluation import load_pixels


def _files(result_path: str) -> dict[str, float]:
    return {image["name"]: image["file_bpp"] for image in json.load(open(result_path))["images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("side", type=int)
    parser.add_argument(
        "--set",
        nargs=3,
        action="append",
        required=True,
        metavar=("FOLDER", "CURRENT", "EARLIER"),
        help="image folder, and the whole-image results of the current and the earlier version",
    )
    args = parser.parse_args()
    current = registry.load_model(args.model)
    [earlier_version] = current.alternative_versions["RGB"]
    models = [current, registry.load_model(args.model, version=earlier_version)]
    for folder, current_json, earlier_json in args.set:
        whole = [_files(current_json), _files(earlier_json)]
        totals = dict.fromkeys(("current", "earlier", "probe", "best"), 0.0)
        agree = count = 0
        for name in sorted(set(whole[0]) & set(whole[1])):
            pixels = load_pixels(f"{folder}/{name}", "color").transpose(2, 0, 1)
            _, height, width = pixels.shape
            top, left = max(0, (height - args.side) // 2), max(0, (width - args.side) // 2)
            probe = np.ascontiguousarray(pixels[:, top : top + args.side, left : left + args.side])
            pick = int(np.argmin([engine.variant_code_length_bits(m, probe, engine.Variant()) for m in models]))
            sizes = [whole[0][name] * height * width, whole[1][name] * height * width]
            totals["current"] += sizes[0]
            totals["earlier"] += sizes[1]
            totals["probe"] += sizes[pick]
            totals["best"] += min(sizes)
            agree += pick == int(np.argmin(sizes))
            count += 1
        relative = {key: round(value / totals["earlier"], 4) for key, value in totals.items()}
        print(f"{folder}: {count} images, the probe chose the better version for {agree}; totals {relative}")


if __name__ == "__main__":
    main()
