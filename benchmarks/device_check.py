"""Exactness across devices, checked on a machine with a GPU (no CI machine has one).

    python benchmarks/device_check.py --device cuda --out DIR [--deadline SECONDS] [IMAGE ...]

1. Decodes every golden file (tests/golden) on the device and compares the pixels with the
   manifest: files written on CPUs must decode there.
2. Encodes small images with every installed model's current version on the device, keeps the
   files in DIR/encoded.tar with the pixels' digests (DIR/encoded.json), and decodes them again
   there. Decode the tar on a CPU machine with ``--decode DIR`` (files written on a GPU must
   decode on CPUs).
3. Times encoding and decoding of a 512 x 512 crop (RGB and gray) with ``ride`` on the device.

Prints one line per check and a summary; exits non-zero if any file decodes wrongly. Work stops
at ``--deadline`` seconds (what is left is reported as not run), so that the check fits a lease.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

import ridecodec
from ridecodec import registry
from ridecodec.testing import synthetic_image

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"


def digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def decode_golden(device: str, deadline: float) -> tuple[int, int, list[str]]:
    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())
    installed = set(registry.available_models())
    # the current versions first: they matter most if the deadline cuts the list short
    names = sorted(manifest, key=lambda n: (-int(manifest[n]["version"]) if manifest[n]["version"].isdigit() else 0, n))
    passed, failed, skipped = 0, [], 0
    for name in names:
        entry = manifest[name]
        if entry["model"] not in installed:
            skipped += 1
            continue
        if time.time() > deadline:
            print(f"golden: deadline reached, {len(names) - passed - len(failed) - skipped} files not run")
            break
        try:
            pixels = ridecodec.decompress((GOLDEN / name).read_bytes(), device=device)
            ok = digest(pixels) == entry["pixels_sha256"]
        except Exception as error:  # reported, the check goes on
            print(f"golden: {name}: {type(error).__name__}: {error}")
            ok = False
        if ok:
            passed += 1
        else:
            failed.append(name)
            print(f"golden: {name}: WRONG PIXELS on {device}")
    return passed, skipped, failed


def sample_images(paths: list[str]) -> dict[str, np.ndarray]:
    images = {"synthetic-gray": synthetic_image(40, 48, seed=3)}
    rgb = np.stack([synthetic_image(40, 48, seed=s) for s in (4, 5, 6)], axis=-1)
    images["synthetic-rgb"] = rgb
    for path in paths:
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))[:64, :64]
        images[f"{Path(path).stem}-rgb"] = np.ascontiguousarray(array)
        images[f"{Path(path).stem}-gray"] = np.ascontiguousarray(array[..., 1])
    return images


def encode_on_device(device: str, images: dict[str, np.ndarray], out: Path, deadline: float) -> list[str]:
    failed, record = [], {}
    with tarfile.open(out / "encoded.tar", "w") as tar:
        for model in sorted(registry.available_models()):
            for label, pixels in images.items():
                if time.time() > deadline:
                    print("encode: deadline reached")
                    break
                try:
                    data = ridecodec.compress(pixels, model=model, device=device)
                    back = ridecodec.decompress(data, device=device)
                    ok = digest(back) == digest(pixels)
                except Exception as error:  # a model that cannot code this image says so
                    print(f"encode: {model} {label}: {type(error).__name__}: {error}")
                    continue
                name = f"{model}-{label}.rdc"
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                record[name] = digest(pixels)
                if not ok:
                    failed.append(name)
                    print(f"encode: {name}: WRONG PIXELS decoded on {device}")
    (out / "encoded.json").write_text(json.dumps(record, indent=1))
    print(f"encode: {len(record)} files written on {device}, {len(failed)} decoded wrongly there")
    return failed


def time_ride(device: str, path: str | None) -> None:
    if path is None:
        pixels = np.stack([synthetic_image(512, 512, seed=s) for s in (7, 8, 9)], axis=-1)
    else:
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:512, :512])
    for label, image in (("rgb", pixels), ("gray", np.ascontiguousarray(pixels[..., 1]))):
        started = time.perf_counter()
        data = ridecodec.compress(image, model="ride", device=device)
        encoded = time.perf_counter() - started
        started = time.perf_counter()
        back = ridecodec.decompress(data, device=device)
        decoded = time.perf_counter() - started
        same = digest(back) == digest(image)
        bits = 8 * len(data) / image[..., 0].size if image.ndim == 3 else 8 * len(data) / image.size
        print(
            f"time: ride {label} {image.shape}: encode {encoded:.1f} s, decode {decoded:.1f} s, "
            f"{bits:.3f} bits/pixel, {'exact' if same else 'WRONG'}"
        )


def decode_here(folder: Path, device: str) -> int:
    record = json.loads((folder / "encoded.json").read_text())
    failed = 0
    with tarfile.open(folder / "encoded.tar") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            ok = digest(ridecodec.decompress(data, device=device)) == record[member.name]
            failed += not ok
            print(f"{member.name}: {'exact' if ok else 'WRONG PIXELS'}")
    print(f"{len(record) - failed} of {len(record)} files written on the other device decode exactly on {device}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help="images whose 64 x 64 corners are encoded too")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, help="folder for the encoded files")
    parser.add_argument("--deadline", type=float, default=600, help="seconds of work at most")
    parser.add_argument("--decode", type=Path, help="decode the files of an earlier run here instead")
    args = parser.parse_args()
    if args.decode:
        return decode_here(args.decode, args.device)
    deadline = time.time() + args.deadline
    started = time.time()
    passed, skipped, failed = decode_golden(args.device, started + args.deadline * 0.55)
    print(f"golden: {passed} decoded exactly on {args.device}, {len(failed)} wrong, {skipped} of models not installed")
    out = args.out or Path(".")
    out.mkdir(parents=True, exist_ok=True)
    failed += encode_on_device(args.device, sample_images(args.images), out, started + args.deadline * 0.85)
    if time.time() < deadline:
        time_ride(args.device, args.images[0] if args.images else None)
    print(f"done in {time.time() - started:.0f} s: {'FAILED ' + ', '.join(failed) if failed else 'all exact'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
