"""Decoding speed of the exact models against the float models of ridecodec 0.1 (commit 8a797f6),
and against JPEG XL, in one run on one machine (timings on a shared machine drift through the
day, so only ratios within one run mean anything).

    git worktree add /tmp/ridecodec-0.1 8a797f6
    python benchmarks/decode_vs_float.py --old-checkout /tmp/ridecodec-0.1 [--image IMG] [--rounds 3]

Each decode runs in a fresh process that has loaded the model already (load time excluded),
old and new alternating round by round; the table gives the best and the median of the rounds.
The new models also decode on 2 threads (exact arithmetic makes any split of a step safe).

``--plain``: the new models code with their own tables only (no online adaptation, no value
sets; ``engine.encode_pixels``), so that the table compares the models' arithmetic alone. Without
it the new files are what ``ridecodec compress`` writes, which may be adapted online (0.10 on:
the adaptive stage's time is then part of the decode).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGE = HERE.parent.parent / "shared" / "data" / "waterloo" / "boat.png"

_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
import ridecodec
from ridecodec import container, engine, orientation, registry
mode, path, threads = sys.argv[2], sys.argv[3], int(sys.argv[4])
if mode == "encode":
    from PIL import Image
    data = ridecodec.compress(np.asarray(Image.open(sys.argv[5])), model=sys.argv[6], device="cpu")
    open(path, "wb").write(data)
    print(json.dumps({"bytes": len(data)}))
elif mode == "encode-plain":
    from PIL import Image
    pixels = np.asarray(Image.open(sys.argv[5]))[None]
    words = engine.encode_pixels(registry.load_model(sys.argv[6], "cpu"), pixels)
    np.savez(path, words=words, shape=np.array(pixels.shape), model=np.array(sys.argv[6]))
    print(json.dumps({"bytes": 4 * len(words)}))
elif mode == "decode-plain":
    saved = np.load(path)
    model = registry.load_model(str(saved["model"]), "cpu")
    kwargs = {} if threads == 1 else {"split": engine.Split(None, threads)}
    start = time.perf_counter()
    engine.decode_pixels(model, saved["words"], tuple(saved["shape"]), None, None, **kwargs)
    print(json.dumps({"seconds": time.perf_counter() - start, "file": ridecodec.__file__}))
else:
    data = open(path, "rb").read()
    header, payload = container.parse(data)
    model = registry.load_model(header.model_name, "cpu")
    shape = (header.channels, header.height, header.width)
    words = np.frombuffer(payload, dtype="<u4")
    kwargs = {} if threads == 1 else {"split": engine.Split(None, threads)}
    if hasattr(header, "adaptation"):  # 0.4 on: the encoder may have chosen adapted tables
        kwargs.update(adaptation=header.adaptation, colour_set=header.colours())
    start = time.perf_counter()
    engine.decode_pixels(model, words, shape, None, header.used_values(), **kwargs)
    print(json.dumps({"seconds": time.perf_counter() - start, "file": ridecodec.__file__}))
"""


def _run(checkout: Path, *arguments) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(checkout), *map(str, arguments)], capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-checkout", type=Path, required=True)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--models", default="ride,mcgsm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="the new models' own tables only (module docstring)")
    arguments = parser.parse_args(argv)
    new_checkout = HERE.parent
    image = np.asarray(Image.open(arguments.image).convert("L"))
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        gray = Path(folder) / "gray.png"
        Image.fromarray(image).save(gray)
        files = {}
        for model in arguments.models.split(","):
            for label, checkout in (("0.1 float", arguments.old_checkout), ("exact", new_checkout)):
                plain = arguments.plain and label == "exact"
                path = Path(folder) / f"{model}-{label.replace(' ', '-')}.{'npz' if plain else 'rdc'}"
                _run(checkout, "encode-plain" if plain else "encode", path, 1, gray, model)
                files[model, label] = (checkout, path)
        import imagecodecs

        jxl = imagecodecs.jpegxl_encode(image, lossless=True, effort=9)
        for _ in range(arguments.rounds):
            for (model, label), (checkout, path) in files.items():
                for threads in (1, 2) if label == "exact" else (1,):
                    key = f"{model} {label}, {threads} thread{'s' if threads > 1 else ''}"
                    mode = "decode-plain" if path.suffix == ".npz" else "decode"
                    times.setdefault(key, []).append(_run(checkout, mode, path, threads)["seconds"])
            start = time.perf_counter()
            imagecodecs.jpegxl_decode(jxl)
            times.setdefault("JPEG XL e9", []).append(time.perf_counter() - start)
    print(
        f"{arguments.image.name} {image.shape[1]} x {image.shape[0]} gray, {arguments.rounds} rounds, "
        f"{'the new models on their own tables, ' if arguments.plain else ''}"
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print("| decoder | best (s) | median (s) | best / 0.1 float best | best / JPEG XL best |")
    print("| --- | ---: | ---: | ---: | ---: |")
    jxl_best = min(times["JPEG XL e9"])
    for key, values in times.items():
        model = key.split()[0]
        old = times.get(f"{model} 0.1 float, 1 thread")
        ratio = f"{min(values) / min(old):.2f}" if old else "-"
        print(
            f"| {key} | {min(values):.3f} | {statistics.median(values):.3f} | {ratio} | {min(values) / jxl_best:.0f} |"
        )


if __name__ == "__main__":
    main()
