"""Ensemble coding: ``compress(effort=N)`` / ``--effort N`` codes the image in up to 8
orientations (flips and transposes), keeps the smallest and records its orientation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import adaptive, container, engine, imageio, orientation, registry
from ridecodec.cli import main
from ridecodec.errors import FormatError, IntegrityError, RidecodecError
from ridecodec.evaluation import evaluate

from conftest import natural_like, noise


def gentle(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A diagonal ramp with a little noise: compressible even one pixel thin."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = 60 + 0.7 * (x + y)[..., None] + 20 * np.arange(channels)
    image = np.clip(ramp + rng.normal(0, 1, (height, width, channels)), 0, 255).round().astype(np.uint8)
    return image[..., 0] if channels == 1 else image


IMAGES = {  # none square; the thin ones are where a transpose changes the schedule most
    "L": natural_like(13, 21),
    "RGB": natural_like(11, 17, channels=3, seed=1),
    "RGBA": natural_like(9, 14, channels=4, seed=2),
    "L row": gentle(1, 120),
    "L column": gentle(120, 1),
    "RGB two columns": gentle(60, 2, channels=3),
}


def rows_smooth(height: int = 20, width: int = 30) -> np.ndarray:
    """Each row a random walk, the rows independent: loco codes it smaller in another
    orientation than as it is (checked below, so the tests can see a wrong choice)."""
    rng = np.random.default_rng(0)
    return np.clip(np.cumsum(rng.normal(0, 3, (height, width)), axis=1) + 128, 0, 255).astype(np.uint8)


def _rewritten(data: bytes, **changes) -> bytes:
    header, payload = container.parse(data)
    return container.pack(dataclasses.replace(header, **changes), bytes(payload))


def _payload_bytes(pixels: np.ndarray, o: int) -> int:
    """The payload size of an image coded by loco in orientation ``o``, straight from the engine:
    the smaller of the plain and the adapted coding, as the encoder keeps."""
    model = registry.load_model("loco", torch.device("cpu"))
    planes = orientation.orient(imageio.to_coded(pixels).pixels, o)
    variants = [engine.Variant(), engine.Variant(adaptation=adaptive.VERSION)]
    return min(payload.nbytes for payload in engine.encode_variants(model, planes, variants))


# --- the transforms -----------------------------------------------------------------------------


def test_orientation_bits_mean_what_the_format_says():
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    assert np.array_equal(orientation.orient(x, 0), x)
    assert np.array_equal(orientation.orient(x, 1), x[:, :, ::-1])  # bit 0: flip the columns
    assert np.array_equal(orientation.orient(x, 2), x[:, ::-1, :])  # bit 1: flip the rows
    assert np.array_equal(orientation.orient(x, 4), x.transpose(0, 2, 1))  # bit 2: transpose
    # transpose first, then the flips
    assert np.array_equal(orientation.orient(x, 7), x.transpose(0, 2, 1)[:, ::-1, ::-1])
    assert np.array_equal(orientation.orient(x, 5)[0], np.rot90(x[0], -1))  # clockwise
    assert np.array_equal(orientation.orient(x, 6)[0], np.rot90(x[0], 1))


@pytest.mark.parametrize("shape", [(1, 3, 5), (3, 4, 4), (4, 1, 7)])
def test_unorient_inverts_orient_and_all_eight_differ(shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    seen = set()
    for o in range(8):
        oriented = orientation.orient(x, o)
        assert oriented.shape == orientation.oriented_shape(shape, o)
        assert oriented.flags.c_contiguous
        assert np.array_equal(orientation.unorient(oriented, o), x)
        seen.add(oriented.tobytes() + bytes(oriented.shape))
    assert len(seen) == 8 or shape[1] == 1  # a single row has fewer distinct orientations


def test_search_order_tries_each_orientation_once_identity_first():
    assert sorted(orientation.SEARCH_ORDER) == list(range(8)) and orientation.SEARCH_ORDER[0] == 0


# --- coding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("o", range(8))
def test_every_orientation_round_trips(name, o, monkeypatch):
    image = IMAGES[name]
    monkeypatch.setattr(orientation, "SEARCH_ORDER", (o,))  # effort 1 now codes orientation o
    data = ridecodec.compress(image, model="loco", model_only=True)
    header = ridecodec.read_header(data)
    assert header.orientation == o and header.coder == container.CODER_RANGE_CATEGORICAL
    assert (header.width, header.height) == (image.shape[1], image.shape[0])  # the original's
    assert np.array_equal(ridecodec.decompress(data), image)


def test_effort_1_is_orientation_0():
    data = ridecodec.compress(IMAGES["L"], model="loco", effort=1)
    assert data == ridecodec.compress(IMAGES["L"], model="loco")
    assert ridecodec.read_header(data).orientation == 0


def test_effort_keeps_the_smallest_of_the_first_n_orientations():
    image = rows_smooth()
    sizes = {o: _payload_bytes(image, o) for o in range(8)}
    assert min(sizes, key=sizes.get) != 0  # else this test could not see a wrong choice
    previous = None
    for effort in range(1, 9):
        data = ridecodec.compress(image, model="loco", effort=effort)
        header = ridecodec.read_header(data)
        candidates = orientation.SEARCH_ORDER[:effort]
        best = min(candidates, key=lambda o: sizes[o])  # min keeps the first on a tie
        assert header.orientation == best
        assert header.payload_length == sizes[best]
        assert previous is None or len(data) <= previous
        previous = len(data)
        assert np.array_equal(ridecodec.decompress(data), image)
    assert previous < len(ridecodec.compress(image, model="loco"))


@pytest.mark.parametrize("name", IMAGES)
def test_effort_8_is_never_larger_than_effort_1(name):
    image = IMAGES[name]
    best = ridecodec.compress(image, model="loco", effort=8)
    assert len(best) <= len(ridecodec.compress(image, model="loco", effort=1))
    assert np.array_equal(ridecodec.decompress(best), image)


@pytest.mark.parametrize(
    ("image", "mode"),
    [
        (natural_like(12, 10, channels=2), "LA"),
        (natural_like(12, 10) > 128, "1"),
        (np.repeat(natural_like(12, 10)[:, :, None], 3, axis=2), "RGB"),  # coded as L
    ],
)
def test_effort_with_mode_conversions(image, mode):
    original = Image.fromarray(image, mode) if mode != "1" else Image.fromarray(image).convert("1")
    data = ridecodec.compress(original, model="loco", effort=8)
    restored = ridecodec.decompress_image(data)
    assert restored.mode == original.mode
    assert np.array_equal(np.asarray(restored), np.asarray(original))


def test_effort_with_a_palette_image():
    original = Image.fromarray(natural_like(14, 9, channels=3)).quantize(16)
    data = ridecodec.compress(original, model="loco", effort=8)
    restored = ridecodec.decompress_image(data)
    assert restored.mode == "P" and np.array_equal(np.asarray(restored), np.asarray(original))


def test_stored_fallback_records_orientation_0():
    image = noise(12, 17, channels=3)
    data = ridecodec.compress(image, model="loco", effort=8)
    header = ridecodec.read_header(data)
    assert header.coder == container.CODER_STORED and header.orientation == 0
    assert np.array_equal(ridecodec.decompress(data), image)


def test_a_stored_payload_is_read_in_the_recorded_orientation():
    image = noise(5, 7)  # stored: the payload is the oriented pixels, like a coded one
    data = ridecodec.compress(image, model="loco")
    header, _ = container.parse(data)
    payload = orientation.orient(image[None], 5).tobytes()
    transposed = container.pack(dataclasses.replace(header, orientation=5), payload)
    assert np.array_equal(ridecodec.decompress(transposed), image)


def test_wrong_orientation_recorded_fails_the_crc():
    square = natural_like(16, 16, seed=5)
    data = ridecodec.compress(square, model="loco")
    for wrong in range(1, 8):  # the same shape, so only the pixel CRC can tell
        with pytest.raises(IntegrityError, match="CRC"):
            ridecodec.decompress(_rewritten(data, orientation=wrong))
    oblong = ridecodec.compress(IMAGES["L"], model="loco")
    with pytest.raises((IntegrityError, FormatError)):  # decoded in the wrong shape
        ridecodec.decompress(_rewritten(oblong, orientation=4))


@pytest.mark.parametrize("bad", [8, 255])
def test_orientation_over_7_is_refused(bad):
    data = _rewritten(ridecodec.compress(IMAGES["L"], model="loco"), orientation=bad)
    with pytest.raises(FormatError, match=f"unknown orientation \\({bad}\\)"):
        ridecodec.read_header(data)


@pytest.mark.parametrize("effort", [0, 9, -1])
def test_effort_out_of_range_is_refused(effort):
    with pytest.raises(RidecodecError, match=r"effort must be 1..8"):
        ridecodec.compress(IMAGES["L"], model="loco", effort=effort)


def test_progress_runs_once_across_the_candidates():
    calls = []
    ridecodec.compress(IMAGES["L"], model="loco", effort=3, progress=lambda done, total: calls.append((done, total)))
    totals = {total for _, total in calls}
    assert len(totals) == 1
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == totals.pop()


def test_compress_file_passes_effort(tmp_path):
    source = tmp_path / "rows.png"
    Image.fromarray(rows_smooth()).save(source)
    path = ridecodec.compress_file(source, model="loco", effort=8)
    assert ridecodec.read_header(path.read_bytes()).orientation != 0


# --- command line and evaluation ---------------------------------------------------------------


def test_cli_effort_and_info(tmp_path):
    runner = CliRunner()
    source = tmp_path / "rows.png"
    Image.fromarray(rows_smooth()).save(source)
    result = runner.invoke(main, ["compress", str(source), "--model", "loco", "--effort", "8"])
    assert result.exit_code == 0, result.output
    data = (tmp_path / "rows.rdc").read_bytes()
    chosen = ridecodec.read_header(data).orientation
    assert chosen != 0 and orientation.describe(chosen) in result.output
    text = runner.invoke(main, ["info", str(tmp_path / "rows.rdc")])
    assert f"orientation {chosen} ({orientation.describe(chosen)})" in text.output
    (fields,) = json.loads(runner.invoke(main, ["info", "--json", str(tmp_path / "rows.rdc")]).output)
    assert fields["orientation"] == chosen and fields["orientation_name"] == orientation.describe(chosen)
    result = runner.invoke(main, ["decompress", str(tmp_path / "rows.rdc"), "-o", str(tmp_path / "back.png")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), rows_smooth())


@pytest.mark.parametrize("effort", ["0", "9"])
def test_cli_refuses_effort_outside_1_to_8(tmp_path, effort):
    source = tmp_path / "a.png"
    Image.fromarray(IMAGES["L"]).save(source)
    result = CliRunner().invoke(main, ["compress", str(source), "--model", "loco", "--effort", effort])
    assert result.exit_code == 2  # click's usage error
    assert "--effort" in result.output and not (tmp_path / "a.rdc").exists()


def test_evaluate_with_effort_reports_the_coder_overhead_of_the_chosen_orientation(tmp_path):
    Image.fromarray(rows_smooth()).save(tmp_path / "rows.png")
    report = evaluate([tmp_path], model="loco", device="cpu", classical=False, verify=True, effort=8)
    (result,) = report.images
    assert report.effort == 8 and result.orientation != 0 and result.verified
    assert abs(result.overhead_percent) < 2  # likelihood of the same orientation as the payload
    assert "effort 8" in report.to_markdown()
