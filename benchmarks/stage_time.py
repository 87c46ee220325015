"""The adaptive stage alone (``ridecodec.adaptive``), this checkout against another: CPU seconds
per coded sample, and a digest of every table it hands the coder, which must agree (a speed-up
must not change a bit).

    git worktree add /tmp/ridecodec-before 3b31955
    python benchmarks/stage_time.py --before /tmp/ridecodec-before ../shared/data/mcmaster/mcmaster-05.png

Each checkout runs in its own subprocess, alternating, ``--repeats`` times (the best kept). The
model's tables are stand-ins, the same for both: a discretized Laplace distribution around each
pixel's left neighbour, whole numbers summing to about 2**24 as an exact model's do; the stage's
time hardly depends on them. The wavefront is that of a model reaching one column right (RIDE's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from PIL import Image
from ridecodec import adaptive, engine, registry
image = np.asarray(Image.open(sys.argv[2]).convert(sys.argv[3]))
pixels = np.ascontiguousarray(image.reshape(image.shape[0], image.shape[1], -1).transpose(2, 0, 1))
channels, height, width = pixels.shape
steps = [(r.numpy(), c.numpy()) for _, r, c in engine.wavefront_for(registry.load_model("loco"), height, width).steps()]
values = np.arange(256)
def tables(centre):
    t = np.exp(-np.abs(values[None, :] - centre[:, None]) / 6.0) + 1e-4
    return np.maximum(np.floor(t / t.sum(1, keepdims=True) * 2**24), 1).astype(np.float32)
warm = adaptive.Adaptation(channels, 12, 12, version=int(sys.argv[4]))  # compile or load the kernels first
for _, r, c in engine.wavefront_for(registry.load_model("loco"), 12, 12).steps():
    for ch in range(channels):
        warm.refine(r.numpy(), c.numpy(), ch, np.full((len(r), 256), 65536, np.float32))
        warm.observe(r.numpy(), c.numpy(), ch, pixels[ch, r.numpy(), c.numpy()])
    warm.end_step()
given = [[tables(pixels[ch, r, np.maximum(c - 1, 0)].astype(np.float64)) for ch in range(channels)] for r, c in steps]
stage = adaptive.Adaptation(channels, height, width, version=int(sys.argv[4]))
digest, seconds = hashlib.sha256(), 0.0
for (rows, cols), step_tables in zip(steps, given):
    started = time.process_time()
    for ch in range(channels):
        coded = stage.refine(rows, cols, ch, step_tables[ch])
        seconds += time.process_time() - started
        digest.update(coded.tobytes())
        started = time.process_time()
        stage.observe(rows, cols, ch, pixels[ch, rows, cols])
    stage.end_step()
    seconds += time.process_time() - started
print(json.dumps({"us_per_sample": seconds / pixels.size * 1e6, "digest": digest.hexdigest()[:16]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--mode", choices=("L", "RGB"), default="RGB")
    parser.add_argument("--version", type=int, default=4, help="the adaptation version (default 4)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    print("| image | before us/sample | now us/sample | ratio | same tables |")
    print("| --- | ---: | ---: | ---: | --- |")
    for image in args.images:
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for label, checkout in (("before", args.before), ("now", here)):
                command = [sys.executable, "-c", _CHILD, str(checkout), image, args.mode, str(args.version)]
                result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
                if label not in best or result["us_per_sample"] < best[label]["us_per_sample"]:
                    best[label] = result
        b, n = best["before"], best["now"]
        same = "yes" if b["digest"] == n["digest"] else f"**no** ({b['digest']} / {n['digest']})"
        print(
            f"| {Path(image).name} | {b['us_per_sample']:.2f} | {n['us_per_sample']:.2f} | "
            f"{n['us_per_sample'] / b['us_per_sample']:.3f} | {same} |"
        )


if __name__ == "__main__":
    main()
