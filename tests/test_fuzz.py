"""Fuzzing the header parser and the decoder with hypothesis (a small budget; the long campaign is
benchmarks/fuzz_decoder.py). Whatever the bytes, the codec either raises its own error or returns
exactly the original image: no other exception, no wrong image."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ridecodec
from ridecodec import container
from ridecodec.errors import FormatError, RidecodecError
from conftest import natural_like, noise

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_LIMIT = 64 * 64  # keeps decodes of hostile dimensions short

SEEDS = {  # small, so that a decode is quick; the first two are range coded, the last stored
    "gray": natural_like(8, 8, seed=2),
    "rgba": natural_like(8, 8, 4, seed=2),
    "stored": noise(4, 5, 3),
}
SEED_FILES = {name: ridecodec.compress(image, model="loco") for name, image in SEEDS.items()}
PALETTE_IMAGE = Image.fromarray(natural_like(5, 6, 3)).quantize(colors=4)
SEED_FILES["palette"] = ridecodec.compress(PALETTE_IMAGE, model="loco")
ORIGINALS = {**SEEDS, "palette": np.asarray(PALETTE_IMAGE)}


def decodes_safely(data: bytes, original: np.ndarray | None = None) -> None:
    try:
        pixels = ridecodec.decompress(data, device="cpu", max_pixels=SMALL_LIMIT)
    except RidecodecError:
        return
    if original is not None:
        assert np.array_equal(pixels, original), "a damaged file decoded to a different image"


@FUZZ
@given(st.binary(max_size=300))
def test_parser_on_arbitrary_bytes(data):
    try:
        container.parse(data)
    except FormatError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_parser_on_bytes_after_a_valid_magic(data):
    try:
        container.parse(container.MAGIC + bytes([1]) + data)
    except FormatError:
        pass


@FUZZ
@given(
    seed=st.sampled_from(sorted(SEED_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_decoder_on_flipped_bytes(seed, edits):
    data = bytearray(SEED_FILES[seed])
    for position, mask in edits:
        data[position % len(data)] ^= mask
    decodes_safely(bytes(data), ORIGINALS[seed])


@FUZZ
@given(seed=st.sampled_from(sorted(SEED_FILES)), cut=st.integers(0, 10_000), extra=st.binary(max_size=16))
def test_decoder_on_truncated_and_extended_files(seed, cut, extra):
    data = SEED_FILES[seed]
    decodes_safely(data[: cut % len(data)] + extra, ORIGINALS[seed])


@FUZZ
@given(
    seed=st.sampled_from(sorted(SEED_FILES)),
    width=st.integers(0, 2**32 - 1),
    height=st.integers(0, 2**32 - 1),
    transform=st.sampled_from(list(ridecodec.imageio.ModeTransform)),
    layout=st.sampled_from(["L", "RGB", "RGBA"]),
    original_mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1"]),
    payload_length=st.integers(0, 2**64 - 1),
)
def test_decoder_on_headers_with_valid_checksums(seed, width, height, transform, layout, original_mode, payload_length):
    """Hostile headers that pass the checksum: the parser's deeper checks must catch them."""
    header, payload = container.parse(SEED_FILES[seed])
    hostile = dataclasses.replace(
        header, width=width, height=height, transform=transform, layout=layout, original_mode=original_mode
    )
    data = bytearray(container.pack(hostile, bytes(payload)))
    if payload_length != len(payload):  # also lie about the payload length, checksum repaired
        offset = data.index(bytes.fromhex(header.weights_digest)) + 32
        offset += 1 + len(header.encoder_device) + 4
        data[offset : offset + 8] = payload_length.to_bytes(8, "little")
        header_end = len(data) - len(payload)
        data[header_end - 4 : header_end] = zlib.crc32(data[: header_end - 4]).to_bytes(4, "little")
    decodes_safely(bytes(data))


@pytest.mark.parametrize("seed", sorted(SEED_FILES))
def test_seed_files_decode(seed):
    assert np.array_equal(ridecodec.decompress(SEED_FILES[seed]), ORIGINALS[seed])
    stored = ridecodec.read_header(SEED_FILES[seed]).coder == container.CODER_STORED
    assert stored == (seed == "stored")  # both decoding paths get fuzzed
