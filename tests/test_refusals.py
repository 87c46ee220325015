"""The decoder refuses, with the codec's own errors, every file it cannot decode correctly."""

from __future__ import annotations

import copy
import dataclasses
import struct
import zlib

import numpy as np
import pytest

import ridecodec
from ridecodec import container
from ridecodec.errors import (
    FormatError,
    IntegrityError,
    ModelNotFoundError,
    UnsupportedImageError,
    VersionError,
    WeightsMismatchError,
)


@pytest.fixture
def rdc(gray_image) -> bytes:
    return ridecodec.compress(gray_image, model="loco")


def _rewritten(data: bytes, **changes) -> bytes:
    """The same file with header fields changed, and a valid header checksum."""
    header, payload = container.parse(data)
    return container.pack(dataclasses.replace(header, **changes), bytes(payload))


def test_unchanged_rewrite_is_identical(rdc):
    assert _rewritten(rdc) == rdc


def test_model_not_installed(rdc):
    with pytest.raises(ModelNotFoundError, match="'no-such-model' is not installed"):
        ridecodec.decompress(_rewritten(rdc, model_name="no-such-model"))


def test_weights_digest_differs(rdc):
    with pytest.raises(WeightsMismatchError, match="weights"):
        ridecodec.decompress(_rewritten(rdc, weights_digest="ab" * 32))


def test_newer_format_version(rdc):
    newer = bytearray(rdc)
    newer[len(container.MAGIC)] = container.FORMAT_VERSION + 1
    with pytest.raises(VersionError, match="newer"):
        ridecodec.decompress(bytes(newer))


def test_wrong_header_checksum(rdc):
    header = ridecodec.read_header(rdc)
    corrupt = bytearray(rdc)
    corrupt[header.header_length - 6] ^= 0x01  # a bit inside the header body
    with pytest.raises(FormatError, match="checksum"):
        ridecodec.decompress(bytes(corrupt))


def test_pixels_failing_the_crc(rdc):
    header = ridecodec.read_header(rdc)
    with pytest.raises(IntegrityError, match="CRC"):
        ridecodec.decompress(_rewritten(rdc, pixel_crc32=header.pixel_crc32 ^ 1))


def test_crc_failure_names_the_encoding_device_when_models_are_device_dependent(rdc, monkeypatch):
    model = ridecodec.load_model("loco")
    monkeypatch.setattr(type(model), "exact_across_devices", False)
    header = ridecodec.read_header(rdc)
    altered = _rewritten(rdc, pixel_crc32=header.pixel_crc32 ^ 1, encoder_device="cuda (Test GPU)")
    with pytest.raises(IntegrityError, match=r"encoded on cuda \(Test GPU\)"):
        ridecodec.decompress(altered, device="cpu")


def test_corrupt_payload_never_gives_a_wrong_image(rdc):
    header = ridecodec.read_header(rdc)
    for position in range(header.header_length, len(rdc), 7):
        corrupt = bytearray(rdc)
        corrupt[position] ^= 0x10
        with pytest.raises((IntegrityError, FormatError)):
            ridecodec.decompress(bytes(corrupt))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "PNG"),
        (b"hello world, not an image", "magic"),
        (container.MAGIC[:5], "truncated"),
    ],
)
def test_not_rdc_files(data, message):
    with pytest.raises(FormatError, match=message):
        ridecodec.decompress(data)


def test_truncated_anywhere(rdc):
    for length in range(0, len(rdc) - 1, 3):
        with pytest.raises(FormatError):
            ridecodec.decompress(rdc[:length])


def test_trailing_garbage(rdc):
    with pytest.raises(FormatError, match="trailing"):
        ridecodec.decompress(rdc + b"\0\0\0\0")


def test_absurd_dimensions_refused_before_decoding(rdc):
    huge = _rewritten(rdc, width=100_000, height=100_000)
    with pytest.raises(FormatError, match="over the limit"):
        ridecodec.decompress(huge)
    with pytest.raises(FormatError, match="over the limit"):
        ridecodec.decompress(rdc, max_pixels=10)


def test_header_fields_round_trip(rdc, gray_image):
    header = ridecodec.read_header(rdc)
    assert (header.width, header.height) == (gray_image.shape[1], gray_image.shape[0])
    assert header.layout == header.original_mode == "L"
    assert header.model_name == "loco"
    assert header.weights_digest == ridecodec.load_model("loco").weights_digest()
    assert header.pixel_crc32 == zlib.crc32(gray_image.tobytes())
    assert header.payload_length == len(rdc) - header.header_length
    assert struct.unpack("<I", rdc[header.header_length - 4 : header.header_length])[0] == zlib.crc32(
        rdc[: header.header_length - 4]
    )


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 4), np.int16), "int16"),  # uint16 is coded: tests/test_deep.py
        (np.zeros((4, 4), np.float32), "float32"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 2, 2, 2), np.uint8), "shape"),
    ],
)
def test_unsupported_arrays(array, match):
    with pytest.raises(UnsupportedImageError, match=match):
        ridecodec.compress(array, model="loco")


@pytest.mark.parametrize("mode", ["F", "CMYK", "YCbCr", "HSV"])  # I;16 and I are coded: tests/test_deep.py
def test_unsupported_modes_name_the_mode(mode):
    from PIL import Image

    with pytest.raises(UnsupportedImageError, match=f"'{mode}'"):
        ridecodec.compress(Image.new(mode, (4, 4)), model="loco")


def test_unknown_model_for_compress(gray_image):
    with pytest.raises(ModelNotFoundError):
        ridecodec.compress(gray_image, model="no-such-model")


def test_extra_bytes_in_the_header_body_are_refused(rdc):
    """A header body with bytes after its last field (checksum repaired) is malformed, not ignored."""
    header, payload = container.parse(rdc)
    body = container._pack_body(dataclasses.replace(header, payload_length=len(payload))) + b"\0\0"
    front = container.MAGIC + struct.pack("<BI", container.FORMAT_VERSION, len(body)) + body
    forged = front + struct.pack("<I", zlib.crc32(front)) + bytes(payload)
    with pytest.raises(FormatError, match="extra bytes"):
        ridecodec.read_header(forged)


@pytest.mark.parametrize("name", ["mcgsm", "ride", "loco"])
def test_the_weights_digest_covers_every_tensor(name):
    """Changing any one number of any parameter or buffer changes the digest (a digest that
    skipped some weights would let a file decode with the wrong ones)."""
    model = ridecodec.load_model(name)
    reference = model.weights_digest()
    state = model.state_dict()
    for key in sorted(state)[:: max(1, len(state) // 12)]:  # a dozen tensors, spread over the model
        if state[key].numel() == 0:
            continue
        changed = copy.deepcopy(model)
        tensor = changed.state_dict()[key]
        flat = tensor.view(-1)
        flat[flat.numel() // 2] += 1
        assert changed.weights_digest() != reference, f"{name}: the digest ignores {key}"
