"""Coverage-guided fuzzing of the .rdc header parser and decoder with atheris (libFuzzer).

    pip install atheris
    python benchmarks/fuzz_decoder.py raw -max_total_time=600        # whole files, 10 minutes
    python benchmarks/fuzz_decoder.py repaired -runs=100000          # checksummed header bodies

Two targets. `raw` feeds the input to the decoder as a whole file. `repaired` treats it as a
header body and payload (a 2-byte body length first) and wraps it in a valid magic, version,
length and header CRC, as libpng's fuzzers repair chunk CRCs: otherwise nearly every mutation
stops at the checksum and the deeper parser and the decoder go untested. Any libFuzzer flag may
follow the target. Each target's corpus starts from small valid files (gray, RGB, RGBA, palette,
bilevel, one pixel) and decompression bombs (those files and a flat one, whose payload is one
word, with their dimensions patched to 1024 x 1024 up to 8192 x 8192 and 65535 x 65535, header
CRC repaired) written to benchmarks/fuzz-corpus/<target>/ (not committed) with the installed
model, and grows there, so successive runs continue where the last stopped. After the model's
weights change, delete the folder: inputs grown from old seeds carry the old weights digest and
only test the refusal. An input "fails" if decoding raises anything other than a
RidecodecError, or takes more than SLOW_SECONDS; libFuzzer then stops and writes the input to
crash-<hash> (and `-timeout`, default here 120 s, catches a decode that never returns). The
pixel limit is 8192 x 8192, so that bombs of that size reach the decoder: what stops them is
the payload budget (ridecodec.engine.PayloadBudget), not the limit.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
import time
import zlib
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    import ridecodec
    from ridecodec import container
    from ridecodec.errors import RidecodecError

from PIL import Image

CORPUS = Path(__file__).parent / "fuzz-corpus"
PIXEL_LIMIT = 8192 * 8192
SLOW_SECONDS = 30.0  # a decode slower than this is a failure: the bombs' budget should stop it
BOMB_SIZES = [(1024, 1024), (4096, 4096), (8192, 8192), (65535, 65535), (65535, 1)]


def seed_images() -> dict[str, object]:
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (6, 9)), 0), 1)
    gray = np.clip(smooth + 128, 0, 255).astype(np.uint8)
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1)
    return {
        "gray": gray,
        "rgb": rgb,
        "rgba": np.concatenate([rgb, gray[..., None]], axis=-1),
        "palette": Image.fromarray(rgb).quantize(colors=5),
        "bilevel": Image.fromarray(gray > 128),
        "one-pixel": gray[:1, :1],
    }


_FIXED = len(container.MAGIC) + 5  # magic, version byte, body length


def to_repaired_input(rdc: bytes) -> bytes:
    """A valid file as the `repaired` target's input: body length, body, payload."""
    (body_length,) = struct.unpack("<I", rdc[_FIXED - 4 : _FIXED])
    body = rdc[_FIXED : _FIXED + body_length]
    return struct.pack("<H", body_length) + body + rdc[_FIXED + body_length + 4 :]


def from_repaired_input(data: bytes) -> bytes:
    """The file the `repaired` target decodes: its input wrapped with a valid header checksum."""
    (body_length,) = struct.unpack("<H", data[:2].ljust(2, b"\0"))
    body, payload = data[2 : 2 + body_length], data[2 + body_length :]
    front = container.MAGIC + struct.pack("<BI", container.FORMAT_VERSION, len(body)) + body
    return front + struct.pack("<I", zlib.crc32(front)) + payload


TARGETS = {"raw": lambda rdc: rdc, "repaired": to_repaired_input}


def bomb(rdc: bytes, width: int, height: int) -> bytes:
    """A decompression bomb: ``rdc`` declaring another size, its header checksum repaired."""
    header, payload = container.parse(rdc)
    return container.pack(dataclasses.replace(header, width=width, height=height), bytes(payload))


def seed_files() -> dict[str, bytes]:
    files = {name: ridecodec.compress(image, model="loco", device="cpu") for name, image in seed_images().items()}
    flat = ridecodec.compress(np.zeros((8, 8), np.uint8), model="loco", device="cpu")  # a one-word payload
    for name, rdc in (("gray", files["gray"]), ("rgb", files["rgb"]), ("flat", flat)):
        for width, height in BOMB_SIZES:
            files[f"bomb-{name}-{width}x{height}"] = bomb(rdc, width, height)
    return files


def write_seed_corpus(target: str) -> Path:
    """Write the seeds afresh on every run: seeds made with other weights would stop at the
    weights-digest check, and the fuzzer would never reach the decoder (this happened)."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, rdc in seed_files().items():
        (folder / f"seed-{name}").write_bytes(TARGETS[target](rdc))
    return folder


class SlowDecode(Exception):
    """Not a RidecodecError: libFuzzer reports the input."""


def decode(data: bytes) -> None:
    start = time.monotonic()
    try:
        container.parse(data, max_pixels=PIXEL_LIMIT)
        ridecodec.decompress(data, device="cpu", max_pixels=PIXEL_LIMIT)
    except RidecodecError:
        pass  # the codec's own, one-line error: the expected outcome for damaged input
    if time.monotonic() - start > SLOW_SECONDS:
        raise SlowDecode(f"decoding took {time.monotonic() - start:.1f} s")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags]")
    target = sys.argv[1]
    folder = write_seed_corpus(target)
    fuzz_one = decode if target == "raw" else (lambda data: decode(from_repaired_input(data)))
    arguments = [sys.argv[0], *sys.argv[2:], str(folder)]
    if not any(a.startswith("-max_len") for a in arguments):
        arguments.insert(1, "-max_len=4096")
    if not any(a.startswith("-timeout") for a in arguments):
        arguments.insert(1, "-timeout=120")
    if not any(a.startswith("-rss_limit_mb") for a in arguments):
        # libFuzzer's default of 2 GB stops long runs: the process grows to it through atheris's
        # instrumentation of torch, not through any input (a decode needs about 0.6 GB, replaying
        # the whole corpus thousands of times keeps it there).
        arguments.insert(1, "-rss_limit_mb=6144")
    atheris.Setup(arguments, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
