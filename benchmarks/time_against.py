"""Encode and decode time of this checkout against another one, as ratios measured in one run.

    git worktree add /tmp/ridecodec-before 244e933
    python benchmarks/time_against.py --before /tmp/ridecodec-before --model ride \\
        ../shared/data/bsds500/val/101085.jpg ../shared/data/mcmaster/mcmaster-01.png ...

Each image is compressed and decompressed (default effort, one thread) by each checkout in a fresh
subprocess, alternating the checkouts and repeating ``--repeats`` times, so that both see the same
load on a shared machine; the best time of each is kept (``--clock cpu``: CPU seconds, which that
load disturbs less than elapsed ones). Prints a markdown table of seconds and
ratios (this checkout over the other). This checkout's package is copied first and measured from
the copy, so editing it while the run goes on spoils nothing. A fresh copy's first run compiles
its numba kernels inside the timed calls: keep ``--repeats`` at 2 or more (the best is kept).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from PIL import Image
import ridecodec
image = Image.open(sys.argv[2])
image = image.convert("L" if sys.argv[4] == "gray" else "RGB")
pixels = np.asarray(image)
ridecodec.compress(pixels[:8, :8], model=sys.argv[3])  # load the model before timing
clock = time.process_time if sys.argv[5] == "cpu" else time.perf_counter
started = clock()
data = ridecodec.compress(pixels, model=sys.argv[3])
encoded = clock()
back = ridecodec.decompress(data)
decoded = clock()
assert np.array_equal(back, pixels)
print(json.dumps({"encode": encoded - started, "decode": decoded - encoded, "bytes": len(data)}))
"""


def _measure(checkout: Path, image: str, model: str, color: str, clock: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(checkout), image, model, color, clock],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--model", default="ride")
    parser.add_argument("--color", choices=("gray", "color"), default="gray")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed seconds; cpu: the process's CPU seconds, which other load on a shared "
        "machine disturbs less (both checkouts code on one thread)",
    )
    args = parser.parse_args()
    # This checkout's package, copied: edits made while the run goes on (a numba kernel's source,
    # say, which also throws away its compiled cache) do not reach the measurement.
    with tempfile.TemporaryDirectory(prefix="time-against-") as snapshot:
        here = Path(snapshot)
        shutil.copytree(
            Path(__file__).resolve().parents[1] / "ridecodec",
            here / "ridecodec",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        _compare(args, here)


def _compare(args, here: Path) -> None:
    """Measure each image with both checkouts and print the table (``here``: this one's copy)."""
    rows, totals = [], {"before": [0.0, 0.0], "now": [0.0, 0.0]}
    for image in args.images:
        best = {"before": None, "now": None}
        for _ in range(args.repeats):
            for label, checkout in (("before", args.before), ("now", here)):
                timing = _measure(checkout, image, args.model, args.color, args.clock)
                if best[label] is None:
                    best[label] = timing
                else:
                    best[label] = {key: min(best[label][key], timing[key]) for key in timing}
        for label, total in totals.items():
            total[0] += best[label]["encode"]
            total[1] += best[label]["decode"]
        rows.append((Path(image).name, best))
    print(
        "| image | encode before s | encode now s | ratio | decode before s | decode now s | ratio "
        "| bytes before | bytes now |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, best in rows:
        b, n = best["before"], best["now"]
        print(
            f"| {name} | {b['encode']:.2f} | {n['encode']:.2f} | {n['encode'] / b['encode']:.3f} | "
            f"{b['decode']:.2f} | {n['decode']:.2f} | {n['decode'] / b['decode']:.3f} | {b['bytes']} | {n['bytes']} |"
        )
    (be, bd), (ne, nd) = totals["before"], totals["now"]
    print(f"| **total** | {be:.2f} | {ne:.2f} | {ne / be:.3f} | {bd:.2f} | {nd:.2f} | {nd / bd:.3f} | | |")


if __name__ == "__main__":
    main()
