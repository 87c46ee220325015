"""Two runs of compare.py side by side: file bits per pixel per image, before and now, against
the classical codecs (from either run, or a third that measured them on the same pixels).

    python benchmarks/compare_runs.py benchmarks/results/adaptive/ride-waterloo-rgb.json \\
        --before benchmarks/results/ride-waterloo-rgb.json \\
        --classical benchmarks/results/mcgsm-waterloo-rgb.json

Prints a markdown table: each image's file bpp before and now, the change, how the new file codes
it, PNG and JPEG XL e9, and the new file over JPEG XL e9; totals are total bits over total pixels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ridecodec.evaluation import how_coded


def _images(path: Path) -> dict[str, dict]:
    return {image["name"]: image for image in json.loads(path.read_text())["images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("now", type=Path)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--classical", type=Path, help="the run with classical codecs (default: now, else before)")
    args = parser.parse_args()
    now, before = _images(args.now), _images(args.before)
    classical = _images(args.classical) if args.classical else None
    print("| image | before | now | change | coded | PNG | JPEG XL e9 | now / JPEG XL e9 |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    sums = {"before": 0.0, "now": 0.0, "png": 0.0, "jxl": 0.0, "pixels": 0}
    for name, image in now.items():
        pixels = image["width"] * image["height"]
        codecs = (
            (classical or {}).get(name, {}).get("classical_bpp")
            or image["classical_bpp"]
            or before[name]["classical_bpp"]
        )
        old, new = before[name]["file_bpp"], image["file_bpp"]
        png, jxl = codecs.get("png", float("nan")), codecs.get("jpegxl-e9", float("nan"))
        coded = how_coded(image)
        print(
            f"| {name} | {old:.3f} | {new:.3f} | {100 * (new / old - 1):+.1f}% | {coded} | {png:.3f} | {jxl:.3f} | "
            f"{new / jxl:.3f} |"
        )
        for key, value in (("before", old), ("now", new), ("png", png), ("jxl", jxl)):
            sums[key] += value * pixels
        sums["pixels"] += pixels
    total = {key: sums[key] / sums["pixels"] for key in ("before", "now", "png", "jxl")}
    print(
        f"| **total** ({len(now)}) | {total['before']:.3f} | {total['now']:.3f} | "
        f"{100 * (total['now'] / total['before'] - 1):+.1f}% | | {total['png']:.3f} | {total['jxl']:.3f} | "
        f"{total['now'] / total['jxl']:.3f} |"
    )


if __name__ == "__main__":
    main()
