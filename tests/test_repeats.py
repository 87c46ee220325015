"""Repeated lines (ridecodec.repeats): an image enlarged by repeating rows and columns is coded as
the image without them, decodes exactly, and malformed records are refused with one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

import ridecodec
from ridecodec import codec, container, evaluation, explain, repeats
from ridecodec.cli import main
from ridecodec.errors import FormatError
from ridecodec.testing import planes_of, synthetic_image


def _enlarged(channels: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth image whose rows and columns are each repeated 1 to 3 times, as an uneven
    nearest-neighbour upscale leaves them."""
    rng = np.random.default_rng(seed)
    small = synthetic_image(14, 12, channels, seed=seed)
    rows, cols = rng.integers(1, 4, 14), rng.integers(1, 4, 12)
    return np.repeat(np.repeat(small, rows, axis=0), cols, axis=1)


def test_removing_and_restoring_repeated_lines_gives_the_image_back():
    image = planes_of(_enlarged(3))
    lines = repeats.find(image)
    assert not lines.rows[0] and not lines.cols[0]
    reduced = lines.remove(image)
    assert reduced.shape == (3, *lines.reduced_size)
    # every line left is new: none repeats the one before
    assert not repeats.find(reduced).rows.any() and not repeats.find(reduced).cols.any()
    assert np.array_equal(lines.restore(reduced), image)
    again = repeats.RepeatedLines.unpack(lines.pack(), image.shape[1], image.shape[2])
    assert np.array_equal(again.rows, lines.rows) and np.array_equal(again.cols, lines.cols)


def test_only_images_with_many_repeats_are_worth_a_second_coding():
    photo = planes_of(synthetic_image(40, 48, seed=3))
    assert repeats.worth_trying(photo) is None
    one_row = photo.copy()
    one_row[:, 1] = one_row[:, 0]  # one repeated row of 40: far below 1/16 of the pixels
    assert repeats.find(one_row).rows.sum() == 1 and repeats.worth_trying(one_row) is None
    assert repeats.worth_trying(planes_of(_enlarged())) is not None
    assert repeats.worth_trying(planes_of(_enlarged()).astype(np.uint16)) is None  # 8-bit only
    # a strip too long for the header's record (its length field is 16 bits) is not tried
    strip = np.zeros((1, 1, 8 * repeats.MAX_RECORD_BYTES + 8), dtype=np.uint8)
    assert repeats.find(strip).removed_share() > 0.9 and repeats.worth_trying(strip) is None


@pytest.mark.parametrize(("model", "channels"), [("loco", 1), ("ride", 1), ("ride", 3)])
def test_an_enlarged_image_is_coded_without_its_repeats_and_decodes_exactly(model, channels):
    image = _enlarged(channels)
    encoded = codec.encode(image, model=model, model_only=True)
    header = encoded.header
    assert header.repeated_lines is not None and header.coder == container.CODER_RANGE_CATEGORICAL
    lines = header.repeats()
    assert lines is not None and lines.reduced_size == (14, 12)
    assert np.array_equal(ridecodec.decompress(encoded.data), image)
    # the encoder tried the image as it is too, and kept the smaller
    whole = [c.cost_bytes for c in encoded.candidates if c.repeated_lines is None]
    without = [c.cost_bytes for c in encoded.candidates if c.repeated_lines is not None]
    assert whole and without and min(without) < min(whole)


def test_photographs_are_coded_as_they_are_and_not_twice():
    encoded = codec.encode(synthetic_image(24, 30, seed=4), model="loco")
    assert encoded.header.repeated_lines is None
    assert all(candidate.repeated_lines is None for candidate in encoded.candidates)


def test_info_eval_and_explain_say_what_repeats(tmp_path):
    image = _enlarged(seed=5)
    path = tmp_path / "enlarged.png"
    from PIL import Image

    Image.fromarray(image).save(path)
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(path), "--model", "loco", "--quiet"]).exit_code == 0
    shown = runner.invoke(main, ["info", str(tmp_path / "enlarged.rdc")])
    assert shown.exit_code == 0
    lines = repeats.find(planes_of(image))
    assert f"repeats:  {lines.rows.sum()} rows and {lines.cols.sum()} columns" in shown.output
    fields = json.loads(runner.invoke(main, ["info", "--json", str(tmp_path / "enlarged.rdc")]).output)[0]
    assert fields["repeated_lines"] == {"rows": int(lines.rows.sum()), "columns": int(lines.cols.sum())}
    result = evaluation.evaluate_image("enlarged", image, "loco", classical=False)
    assert result.repeated_lines and evaluation.how_coded(dataclasses.asdict(result)).startswith("model+r")
    # the likelihood is that of the planes the file codes: the payload matches it but for the
    # coder's last words
    assert 0 <= (result.payload_bpp - result.likelihood_bpp) * result.num_pixels < 64
    explained = explain.explain(image, model="loco", device="cpu")
    assert any("repeat" in note for note in explained.notes)
    assert (explained.bits[:, lines.rows] == 0).all() and (explained.bits[:, :, lines.cols] == 0).all()
    header = ridecodec.read_header((tmp_path / "enlarged.rdc").read_bytes())
    record = container.repeated_lines_bytes(lines)
    assert explained.bits.sum() / 8 == pytest.approx(header.payload_length, abs=16 + record)


@pytest.mark.parametrize("damage", ["length", "padding", "first-row", "first-column"])
def test_malformed_repeated_lines_are_refused_with_one_line(damage):
    image = _enlarged(seed=6)
    data = ridecodec.compress(image, model="loco", model_only=True)
    header, payload = container.parse(data)
    assert header.repeated_lines is not None
    packed = bytearray(header.repeated_lines)
    row_bytes = -(-header.height // 8)
    if damage == "length":
        packed = packed[:-1]
    elif damage == "padding":
        assert header.height % 8
        packed[row_bytes - 1] |= 0x80  # a row past the last
    elif damage == "first-row":
        packed[0] |= 1
    else:
        packed[row_bytes] |= 1
    forged = dataclasses.replace(header, repeated_lines=bytes(packed))
    with pytest.raises(FormatError, match="repeated-lines record") as error:
        container.parse(container.pack(forged, bytes(payload)))
    assert "\n" not in str(error.value)


def test_a_repeated_lines_record_on_stored_samples_is_refused():
    noise = np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)
    stored_header, stored_payload = container.parse(ridecodec.compress(noise))
    assert stored_header.coder == container.CODER_STORED
    lines = repeats.RepeatedLines(np.zeros(16, bool), np.zeros(16, bool))
    forged = dataclasses.replace(stored_header, repeated_lines=lines.pack())
    with pytest.raises(FormatError, match="repeated-lines record is out of place"):
        container.parse(container.pack(forged, bytes(stored_payload)))


def test_an_enlarged_graphic_may_be_kept_as_a_png_of_the_image_without_its_repeats():
    """Noise tiled across the image: deflate finds the tiles, no model does; enlarged, the PNG of
    the image without its repeats is smaller than the PNG of the image."""
    tile = np.random.default_rng(11).integers(0, 256, (8, 40), dtype=np.uint8)
    image = np.repeat(np.repeat(np.tile(tile, (6, 1)), 2, axis=0), 3, axis=1)
    encoded = codec.encode(image, model="loco")
    header = encoded.header
    assert header.coder == container.CODER_PNG and header.repeated_lines is not None
    assert header.payload_length < encoded.png_bytes
    assert np.array_equal(ridecodec.decompress(encoded.data), image)
    result = evaluation.evaluate_image("tiled", image, "loco", classical=False)
    assert evaluation.how_coded(dataclasses.asdict(result)) == "PNG+r"
