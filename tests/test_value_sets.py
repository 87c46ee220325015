"""Value sets: tables restricted to the values an image takes (engine.restricted), recorded in
the header, chosen by the encoder only where they make the file smaller."""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import api, codec, container, engine, registry, schedule
from ridecodec.cli import main
from ridecodec.errors import FormatError
from ridecodec.evaluation import evaluate_image

from conftest import natural_like


def sparse(height: int = 24, width: int = 32, channels: int = 1) -> np.ndarray:
    """A natural-looking image whose values are multiples of 8 (a stretched histogram)."""
    return (natural_like(height, width, channels) // 8 * 8).astype(np.uint8)


def test_restricted_tables_keep_only_used_values():
    table = np.full((2, 256), 1.0, dtype=np.float32)
    table[1, :] = 0
    table[1, 7] = 1.0  # all of row 1's mass on a value the image never takes
    used = np.zeros(256, dtype=bool)
    used[[3, 200]] = True
    out = engine.restricted(table, used)
    assert out[0].nonzero()[0].tolist() == [3, 200] and out[0, 3] == out[0, 200] == 1.0
    assert out[1].nonzero()[0].tolist() == [3, 200]  # uniform over the used values instead


@pytest.mark.parametrize("per_row", [False, True])
def test_the_compiled_restriction_gives_the_numpy_references_bits(per_row):
    rng = np.random.default_rng(5)
    table = (rng.random((70, 256)) * 1000).astype(np.float32)
    table[3] = 0  # rows with no mass, and rows whose mass is all on values left out
    table[4] = -0.0  # (a plug-in may well return -0: its rows have no mass either)
    table[6, ::2] = -0.0
    used = rng.random((70, 256) if per_row else 256) > 0.4
    table[5] = np.where(used[5] if per_row else used, 0, table[5])
    out = engine.restricted(table, used)
    assert out.view(np.uint32).tolist() == schedule.restricted_reference(table, used).view(np.uint32).tolist()
    for row in (3, 4, 5):  # uniform over the row's set
        assert np.array_equal(out[row] > 0, used[row] if per_row else used)


def test_used_values_per_channel():
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0, 0], pixels[1] = 9, 255
    used = engine.used_values(pixels)
    assert used[0].nonzero()[0].tolist() == [0, 9] and used[1].nonzero()[0].tolist() == [255]


@pytest.mark.parametrize("channels", [1, 3])
def test_sparse_images_are_coded_with_their_value_sets(channels):
    image = sparse(channels=channels)
    planes = np.ascontiguousarray(image[None] if channels == 1 else image.transpose(2, 0, 1))
    model = registry.load_model(registry.default_model("L" if channels == 1 else "RGB"), "cpu")
    payload, chosen, _ = codec._encode_smallest(model, planes, 1, None)
    variant = chosen.variant
    assert variant.value_sets is not None and variant.value_sets.shape == (channels, 256)
    # against the same image coded with the model's own tables
    plain = engine.encode_pixels(model, planes)
    assert len(payload) + container.value_sets_bytes(channels) < 0.7 * plain.nbytes
    data = ridecodec.compress(image)  # (the synthetic colour image is one PNG codes smaller)
    header = api.read_header(data)
    assert header.coder == container.CODER_PNG or len(header.value_sets) == 32 * channels
    assert np.array_equal(ridecodec.decompress(data), image)


def test_value_sets_are_left_out_where_they_do_not_pay():
    full = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every value: nothing to restrict
    assert api.read_header(ridecodec.compress(full)).value_sets is None
    nearly = full.copy()
    nearly[0, 0] = 1  # value 0 missing: 35 header bytes cannot pay for one value's mass
    data = ridecodec.compress(nearly)
    assert api.read_header(data).value_sets is None
    assert np.array_equal(ridecodec.decompress(data), nearly)


def test_the_likelihood_of_a_value_set_file_is_of_the_restricted_model():
    image = sparse(40, 48)
    result = evaluate_image("sparse", image, model=registry.default_model("L"), device="cpu", classical=False)
    assert result.value_sets
    assert abs(result.overhead_percent) < 0.5  # against the plain model's likelihood: far off
    plain_bits = engine.code_length_bits(registry.load_model(registry.default_model("L"), "cpu"), image[None])
    assert result.likelihood_bpp < 0.8 * plain_bits / image.size


def _rewritten(data: bytes, **changes) -> bytes:
    header, payload = container.parse(data)
    return container.pack(dataclasses.replace(header, **changes), bytes(payload))


def test_malformed_value_sets_are_refused():
    data = ridecodec.compress(sparse())
    header = api.read_header(data)
    for bad in (header.value_sets[:31], bytes(32)):  # wrong length; a channel with no values
        with pytest.raises(FormatError, match="malformed value sets"):
            ridecodec.decompress(_rewritten(data, value_sets=bad))


def test_value_sets_missing_a_value_of_the_image_fail_the_crc():
    image = sparse()
    data = ridecodec.compress(image)
    used = container.unpack_value_sets(api.read_header(data).value_sets, 1)
    used[0, image[0, 0]] = False  # the header (CRC and all) says the value never occurs
    forged = _rewritten(data, value_sets=container.pack_value_sets(used))
    with pytest.raises(ridecodec.errors.RidecodecError):
        ridecodec.decompress(forged)
    assert zlib.crc32(image.tobytes()) == api.read_header(forged).pixel_crc32


def test_info_shows_how_many_values_each_channel_takes(tmp_path):
    Image.fromarray(sparse(channels=3)).save(tmp_path / "s.png")
    runner = CliRunner()
    assert runner.invoke(main, ["compress", "-q", "--model-only", str(tmp_path / "s.png")]).exit_code == 0
    counts = [len(np.unique(plane)) for plane in sparse(channels=3).transpose(2, 0, 1)]
    text = runner.invoke(main, ["info", str(tmp_path / "s.rdc")]).output
    assert f"values:   {', '.join(map(str, counts))} of 256 per channel" in text
    fields = json.loads(runner.invoke(main, ["info", "--json", str(tmp_path / "s.rdc")]).output)
    assert fields[0]["value_sets"] == counts


def test_value_sets_combine_with_effort():
    image = sparse(30, 40)
    data = ridecodec.compress(image, effort=4)
    assert api.read_header(data).value_sets is not None
    assert np.array_equal(ridecodec.decompress(data), image)
    assert len(data) <= len(ridecodec.compress(image))  # effort 4 includes effort 1's candidates
