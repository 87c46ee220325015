"""``encode``: the file ``compress`` writes, and an account of the choices that made it which
agrees with the file."""

from __future__ import annotations

import numpy as np
import pytest

import ridecodec
from ridecodec import adaptive, codec, orientation
from ridecodec.testing import synthetic_image

from conftest import noise


@pytest.mark.parametrize("effort", [1, 3])
def test_encode_writes_what_compress_writes_and_says_why(effort):
    image = synthetic_image(24, 30, seed=2)
    encoded = ridecodec.encode(image, model="mcgsm", device="cpu", effort=effort)
    assert encoded.data == ridecodec.compress(image, model="mcgsm", device="cpu", effort=effort)
    assert encoded.header == ridecodec.read_header(encoded.data)
    assert encoded.coder == "model"
    assert np.array_equal(encoded.coded.pixels[0], image)
    assert encoded.bits_per_pixel == 8 * len(encoded.data) / (24 * 30)
    # every orientation of the search was tried, each with every variant of the tables
    variants = codec.candidate_variants(encoded.coded.pixels, adaptive.VERSION)
    assert [c.orientation for c in encoded.candidates] == [
        o for o in orientation.SEARCH_ORDER[:effort] for _ in variants
    ]
    chosen = min(encoded.candidates, key=lambda candidate: candidate.cost_bytes)
    assert encoded.header.orientation == chosen.orientation
    assert encoded.header.adaptation == chosen.variant.adaptation
    assert encoded.payload_bytes + codec.variant_header_bytes(chosen.variant, 1) == chosen.cost_bytes
    assert encoded.png_bytes is not None and encoded.png_bytes > encoded.payload_bytes
    assert encoded.model.version == encoded.header.model_version
    assert encoded.probe_bits == {}  # the gray model keeps no alternative versions


def test_encode_says_when_the_raw_samples_won():
    image = noise(16, 16, seed=1)
    encoded = ridecodec.encode(image, model="mcgsm", device="cpu")
    assert encoded.coder == "stored"
    assert encoded.payload_bytes == encoded.stored_bytes == image.size
    assert min(candidate.cost_bytes for candidate in encoded.candidates) >= encoded.stored_bytes
    assert np.array_equal(ridecodec.decompress(encoded.data), image)


def test_model_only_tries_no_png():
    encoded = ridecodec.encode(synthetic_image(16, 16), model="mcgsm", device="cpu", model_only=True)
    assert encoded.png_bytes is None
