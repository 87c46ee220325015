"""What 16-bit images cost: ridecodec against PNG and JPEG XL (lossless, 16 bits per sample).

    python benchmarks/deep_cost.py [--model ride] [--limit N] [--size S] [--out FILE.json]

There are no lossless 16-bit photographs in ../shared/data, so 16-bit images are made from the
lossless-origin development sets the way high-bit-depth images arise: an 8-bit image downscaled
2x in floating point (Lanczos), which averages away part of its noise and leaves real information
below the 8-bit step, then scaled to 16 bits (x 257). Crops of S x S (default 192) keep the run
short. Sets: mcmaster (colour photos), graphics (renders), waterloo (gray and colour), all
development-only sets. Each image is also coded as "8-bit scaled by 257" data (v = 257 h, as most
converters write 8-bit images as 16-bit), where ridecodec must cost what the 8-bit image costs.
Bits per pixel are per pixel (all channels together).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

import ridecodec

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"mcmaster": "color", "graphics": "color", "waterloo": "as-is"}


def sixteen_bit(path: Path, size: int) -> np.ndarray:
    image = Image.open(path)
    image = image.convert("L" if image.mode in ("L", "1") else "RGB")
    width, height = image.size[0] // 2, image.size[1] // 2
    planes = [
        np.asarray(Image.fromarray(np.asarray(band, dtype=np.float32), "F").resize((width, height), Image.LANCZOS))
        for band in image.split()
    ]
    values = np.clip(np.round(np.stack(planes, -1) * 257), 0, 65535).astype(np.uint16)
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    values = values[top : top + size, left : left + size]
    return values[:, :, 0] if values.shape[2] == 1 else values


def measure(image: np.ndarray, model: str) -> dict:
    pixels = image.shape[0] * image.shape[1]
    started = time.perf_counter()
    data = ridecodec.compress(image, model=model, device="cpu")
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    assert np.array_equal(ridecodec.decompress(data, device="cpu"), image)
    decode_seconds = time.perf_counter() - started
    header = ridecodec.read_header(data)
    return {
        "ridecodec": 8 * len(data) / pixels,
        "low_bytes": 8 * (header.deep.low_payload_length if header.deep else 0) / pixels,
        "coding": header.deep.coding.name if header.deep else "stored",
        "png": 8 * len(imagecodecs.png_encode(image, level=9)) / pixels,
        "jpegxl_e7": 8 * len(imagecodecs.jpegxl_encode(image, lossless=True, effort=7)) / pixels,
        "encode_s": encode_seconds,
        "decode_s": decode_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ride")
    parser.add_argument("--limit", type=int, default=4, help="images per set")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "deep_cost.json"))
    arguments = parser.parse_args()
    rows = []
    for name in SETS:
        for path in sorted((DATA / name).glob("*.png"))[: arguments.limit]:
            image = sixteen_bit(path, arguments.size)
            row = {"set": name, "image": path.name, "shape": list(image.shape)}
            row.update(measure(image, arguments.model))
            scaled = (image >> 8).astype(np.uint16) * 257  # 8-bit data written as 16-bit
            row["scaled_ridecodec"] = (
                8 * len(ridecodec.compress(scaled, model=arguments.model)) / (image.shape[0] * image.shape[1])
            )
            row["scaled_as_8_bit"] = (
                8
                * len(ridecodec.compress((image >> 8).astype(np.uint8), model=arguments.model))
                / (image.shape[0] * image.shape[1])
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in SETS:
        chosen = [row for row in rows if row["set"] == name]
        if chosen:
            summary[name] = {
                key: float(np.mean([row[key] for row in chosen]))
                for key in (
                    "ridecodec",
                    "low_bytes",
                    "png",
                    "jpegxl_e7",
                    "scaled_ridecodec",
                    "scaled_as_8_bit",
                    "decode_s",
                )
            }
    result = {
        "command": "python benchmarks/deep_cost.py "
        + " ".join(f"--{k} {v}" for k, v in vars(arguments).items() if k != "out"),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "ridecodec": ridecodec.__version__,
        "summary": summary,
        "images": rows,
    }
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
