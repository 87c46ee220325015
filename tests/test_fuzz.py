"""Fuzzing the header parser and the decoder with hypothesis (a small budget; the long campaign is
benchmarks/fuzz_decoder.py). Whatever the bytes, the codec either raises its own error or returns
exactly the original image: no other exception, no wrong image, and no decode that runs on for
the size a header declares when its payload cannot hold that image (decompression bombs)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import zlib

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

import ridecodec
from ridecodec import container, engine, repeats
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
    with contextlib.suppress(FormatError):
        container.parse(data)


@FUZZ
@given(st.binary(max_size=200))
def test_parser_on_bytes_after_a_valid_magic(data):
    with contextlib.suppress(FormatError):
        container.parse(container.MAGIC + bytes([1]) + data)


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


# -- Decompression bombs: a small file whose header declares a huge image ----------------------


def bomb(data: bytes, width: int, height: int) -> bytes:
    """``data`` with its dimensions replaced and its header checksum repaired (a repeated-lines
    record, which must match the dimensions, replaced by one of that size with no line repeated:
    the payload then has to code the whole declared image)."""
    header, payload = container.parse(data)
    lines = None
    if header.repeated_lines is not None:
        lines = repeats.RepeatedLines(np.zeros(height, bool), np.zeros(width, bool)).pack()
    forged = dataclasses.replace(header, width=width, height=height, repeated_lines=lines)
    return container.pack(forged, bytes(payload))


class StillDecoding(BaseException):
    """A BaseException, so that no ``except Exception`` on the way (the engine wraps a model's
    exceptions in PluginError, a RidecodecError) can turn it into an accepted refusal."""


@contextlib.contextmanager
def hang_guard(seconds: int = 120):
    """Fail instead of hanging CI: without the payload budget (engine.PayloadBudget) an 8192 x
    8192 bomb decodes for hours. Generous on purpose: nothing here is a timing measurement."""

    def expired(signum, frame):
        raise StillDecoding(f"still decoding after {seconds} s: the bomb was not stopped")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "image",
    [natural_like(8, 8, seed=3), np.zeros((8, 8), np.uint8), np.full((8, 8, 3), (10, 200, 30), np.uint8)],
    ids=["natural", "flat", "flat-rgb"],
)
@pytest.mark.parametrize("size", [(8192, 8192), (1024, 1024), (4000, 3000)])
def test_bomb_is_refused(image, size):
    """The issue's bomb, made from small real files of the default model (a flat one has a
    one-word payload, the cheapest symbols there are), under the pixel limit of ridecodec 0.2
    (2^28; what a user who raises --max-pixels gets): refused from its size alone, or as soon as
    decoding proves that the payload is used up, never after decoding the declared size."""
    data = ridecodec.compress(image)
    assert ridecodec.read_header(data).coder == container.CODER_RANGE_CATEGORICAL
    with hang_guard(), pytest.raises(FormatError, match="the payload ends before the image does"):
        ridecodec.decompress(bomb(data, *size), device="cpu", max_pixels=2**28)
    assert np.array_equal(ridecodec.decompress(data), image)  # the file itself is fine


@pytest.mark.parametrize("size", [(8192, 8192), (65535, 65535)])
def test_bomb_over_the_default_pixel_limit_is_refused_by_the_parser(size):
    data = bomb(ridecodec.compress(natural_like(8, 8, seed=3), model="loco"), *size)
    with pytest.raises(FormatError, match="over the limit"):
        ridecodec.decompress(data, device="cpu")


def test_truncated_payload_with_a_consistent_header_is_refused():
    """A payload cut to a quarter, its length in the header repaired: refused as used up."""
    data = ridecodec.compress(natural_like(48, 48, seed=4), model="loco")
    header, payload = container.parse(data)
    cut = bytes(payload)[: len(payload) // 16 * 4]
    with hang_guard(), pytest.raises(FormatError, match="the payload ends before the image does"):
        ridecodec.decompress(container.pack(header, cut), device="cpu")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(["gray", "rgba", "palette"]), width=st.integers(1, 8192), height=st.integers(1, 8192))
def test_decoder_on_bombs(seed, width, height):
    """Real files with any dimensions up to 8192 x 8192, header CRC repaired, under a pixel limit
    that lets them all reach the decoder: the codec's own error (or the original image, at the
    original size)."""
    data = bomb(SEED_FILES[seed], width, height)
    same = ridecodec.read_header(SEED_FILES[seed])
    with hang_guard():
        if (width, height) == (same.width, same.height):
            decodes_safely(data, ORIGINALS[seed])
        else:
            with pytest.raises(RidecodecError):
                ridecodec.decompress(data, device="cpu", max_pixels=8192 * 8192)


# -- The payload budget is sound: it never refuses what the coder itself wrote -----------------


def coder_frequency(table: np.ndarray, symbol: int) -> int:
    """The integer frequency (of 2^24) that constriction's coder gives ``symbol`` for ``table``,
    read back from its decoder: a fresh decoder's first symbol is the one whose interval holds
    the quantile point // (2^40 - 1), where point is the first two words."""

    def decoded(quantile: int) -> int:
        point = quantile * ((2**64 - 1) >> 24)
        words = np.array([point >> 32, point & 0xFFFFFFFF], dtype=np.uint32)
        return int(constriction.stream.queue.RangeDecoder(words).decode(engine._CATEGORICAL, table[None])[0])

    def first_quantile_of(value: int) -> int:  # the smallest quantile decoding to value or more
        low, high = 0, 2**24
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if decoded(middle) >= value else (middle + 1, high)
        return low

    return first_quantile_of(symbol + 1) - first_quantile_of(symbol)


def hostile_tables(rng: np.random.Generator, count: int) -> np.ndarray:
    """Tables of every shape the coder may receive: exact-model integers (peaked, with the floor of
    16), random floats, values over 20 orders of magnitude, and value-set tables with zeros."""
    tables = []
    for index in range(count):
        kind = index % 4
        if kind == 0:
            table = np.full(256, 16.0)
            table[rng.integers(256)] += 2**24 - 4096
        elif kind == 1:
            table = rng.random(256)
        elif kind == 2:
            table = rng.random(256) ** 20 * 10.0 ** rng.uniform(-10, 10)
        else:
            table = np.zeros(256)
            table[rng.choice(256, int(rng.integers(1, 4)), replace=False)] = rng.random() + 1e-3
        tables.append(table.astype(np.float32))
    return np.stack(tables)


def test_budget_bounds_the_coders_frequencies():
    """PayloadBudget.bits rests on an upper bound of each symbol's frequency in the coder: check
    it against the coder's own frequencies, for the symbols where it is tightest."""
    rng = np.random.default_rng(12)
    for table in hostile_tables(rng, 24):
        for symbol in {int(table.argmax()), 255, int(table.argmin()), int(rng.integers(256))}:
            frequency = coder_frequency(table, symbol)  # 0: a symbol no encoder can code
            bits = engine.PayloadBudget.bits(table[None], np.array([symbol]))
            assert frequency == 0 or -np.log2(frequency / 2**24) >= bits, (table, symbol, frequency)


def test_budget_never_refuses_what_the_coder_wrote():
    """Random tables and symbols (mostly the likeliest, so payloads are short and many symbols
    share a word), encoded by constriction and decoded in batches of random sizes through the
    budget, as the engine does: never refused, always exact."""
    rng = np.random.default_rng(7)
    for _ in range(150):
        tables = hostile_tables(rng, int(rng.integers(1, 300)))
        likeliest = rng.random(len(tables)) < 0.9
        symbols = np.where(likeliest, tables.argmax(1), rng.integers(0, 256, len(tables))).astype(np.int32)
        impossible = tables[np.arange(len(tables)), symbols] == 0  # never coded: not in the value sets
        symbols[impossible] = tables.argmax(1)[impossible]
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(symbols, engine._CATEGORICAL, tables)
        words = encoder.get_compressed()
        budget = engine.PayloadBudget(len(words), len(symbols))
        decoder = constriction.stream.queue.RangeDecoder(words)
        start = 0
        while start < len(symbols):
            stop = min(len(symbols), start + int(rng.integers(1, 20)))
            at_end = decoder.maybe_exhausted()
            decoded = decoder.decode(engine._CATEGORICAL, tables[start:stop])
            assert np.array_equal(decoded, symbols[start:stop])
            budget.spend(tables[start:stop], decoded, at_end)
            start = stop
