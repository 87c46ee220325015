"""ridecodec.evaluation on tiny synthetic images (the real benchmarks live in benchmarks/)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from ridecodec.errors import InputError, RidecodecError
from ridecodec.evaluation import (
    CLASSICAL_CODECS,
    ImageResult,
    Report,
    classical_bits,
    evaluate,
    image_paths,
    load_pixels,
)

needs_imagecodecs = pytest.mark.skipif(
    importlib.util.find_spec("imagecodecs") is None, reason="imagecodecs is not installed"
)


def smooth_plus_noise(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like image: smooth waves plus a little noise, uint8. In colour the
    noise is mostly shared by the channels, as in photographs (independent noise in each channel
    would be incompressible, and the codec would store such an image raw)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = 128 + 60 * np.sin(x / 5.0) + 40 * np.cos(y / 4.0)
    if channels == 1:
        return np.clip(smooth + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)
    noise = rng.normal(0, 6, (height, width, 1)) + rng.normal(0, 1, (height, width, channels))
    return np.clip(smooth[:, :, None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """a.png (gray 32x24), b.png (RGB 24x20) and a file that is not an image."""
    Image.fromarray(smooth_plus_noise(24, 32), "L").save(tmp_path / "a.png")
    Image.fromarray(smooth_plus_noise(20, 24, 3, seed=1), "RGB").save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@needs_imagecodecs
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_classical_bits_gives_every_codec(channels):
    pixels = smooth_plus_noise(20, 24, channels)
    if channels == 4:
        pixels[:, :, 3] = 255  # opaque alpha: libwebp would drop it unless asked to keep it
    sizes = classical_bits(pixels)
    assert list(sizes) == list(CLASSICAL_CODECS)
    assert all(isinstance(bits, int) and bits > 0 for bits in sizes.values())


def test_classical_bits_without_imagecodecs_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # makes `import imagecodecs` fail
    with pytest.raises(RidecodecError, match="pip install imagecodecs"):
        classical_bits(np.zeros((4, 4), np.uint8))


def check_result(result: ImageResult) -> None:
    """Likelihood and file size agree, and the file decoded exactly."""
    pixels = result.width * result.height
    likelihood_bits = result.likelihood_bpp * pixels
    payload_bits = result.payload_bpp * pixels
    # 0.5% for the coder, plus up to one 32-bit word that the payload is rounded up to
    assert abs(payload_bits - likelihood_bits) <= 0.005 * likelihood_bits + 32
    assert result.file_bpp > result.payload_bpp  # the header
    assert abs(result.overhead_percent) < 2
    assert result.verified is True
    assert result.decode_seconds is not None and result.encode_seconds > 0


@needs_imagecodecs
def test_evaluate_gray_folder(folder):
    report = evaluate([folder], model="loco", device="cpu", color="gray", verify=True)
    assert (report.model, report.mode) == ("loco", "gray") and report.device.startswith("cpu (")
    assert [image.name for image in report.images] == ["a.png", "b.png"]
    assert [(i.width, i.height, i.channels) for i in report.images] == [(32, 24, 1), (24, 20, 1)]
    for result in report.images:
        check_result(result)
        assert list(result.classical_bpp) == list(CLASSICAL_CODECS)

    markdown = report.to_markdown()
    assert "| a.png | 32x24 |" in markdown and "| b.png | 24x20 |" in markdown
    assert "| **total** (2) |" in markdown
    assert "JPEG XL e9" in markdown

    data = json.loads(report.to_json())
    assert len(data["images"]) == 2
    assert data["totals"]["verified"] is True
    assert data["totals"]["classical_bpp"].keys() == CLASSICAL_CODECS.keys()


def test_evaluate_color_without_classical(folder):
    seen = []
    report = evaluate(
        [folder / "b.png"],
        model="loco",
        device="cpu",
        color="color",
        classical=False,
        verify=True,
        progress=seen.append,
    )
    assert seen == ["b.png"]
    [result] = report.images
    assert (result.width, result.height, result.channels) == (24, 20, 3)
    check_result(result)
    assert result.classical_bpp == {}
    assert "JPEG" not in report.to_markdown()


def test_evaluate_limit_and_no_verify(folder):
    report = evaluate([folder], model="loco", device="cpu", classical=False, limit=1)
    [result] = report.images
    assert result.name == "a.png"
    assert result.verified is None and result.decode_seconds is None
    assert report.totals()["verified"] is None and report.totals()["decode_seconds"] is None


def test_totals_are_pixel_weighted():
    def result(name, width, likelihood, payload, png):
        return ImageResult(
            name,
            width,
            10,
            1,
            likelihood,
            payload + 1,
            payload,
            0.0,
            {"png": png},
            encode_seconds=1.0,
            decode_seconds=2.0,
            verified=True,
        )

    # 100 pixels at 2 bpp and 300 pixels at 4 bpp: 3.5 bpp, not the mean 3
    report = Report("loco", "cpu", "gray", [result("x", 10, 2.0, 2.2, 5.0), result("y", 30, 4.0, 4.0, 1.0)])
    totals = report.totals()
    assert totals["pixels"] == 400 and totals["images"] == 2
    assert totals["likelihood_bpp"] == pytest.approx(3.5)
    assert totals["payload_bpp"] == pytest.approx((220 + 1200) / 400)
    assert totals["file_bpp"] == pytest.approx((320 + 1500) / 400)
    assert totals["overhead_percent"] == pytest.approx(100 * (1420 - 1400) / 1400)
    assert totals["classical_bpp"] == {"png": pytest.approx(2.0)}
    assert (totals["encode_seconds"], totals["decode_seconds"], totals["verified"]) == (2.0, 4.0, True)


def test_image_paths(folder):
    Image.fromarray(smooth_plus_noise(4, 4)).save(folder / "C.PNG")
    (folder / "sub").mkdir()
    Image.fromarray(smooth_plus_noise(4, 4)).save(folder / "sub" / "d.png")  # not recursive
    explicit = folder / "notes.txt"  # a file named explicitly is taken whatever its name
    assert image_paths([folder, explicit]) == [folder / "C.PNG", folder / "a.png", folder / "b.png", explicit]
    with pytest.raises(InputError, match="no such file"):
        image_paths([folder / "missing"])
    (folder / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        evaluate([folder / "empty"], "loco")


@pytest.mark.parametrize(
    ("mode", "color", "expected_shape"),
    [
        ("RGB", "gray", (6, 8)),
        ("L", "color", (6, 8, 3)),
        ("RGBA", "as-is", (6, 8, 4)),
        ("L", "as-is", (6, 8)),
        ("LA", "as-is", (6, 8, 3)),
        ("P", "as-is", (6, 8, 3)),
    ],
)
def test_load_pixels_modes(tmp_path, mode, color, expected_shape):
    path = tmp_path / "image.png"
    Image.fromarray(smooth_plus_noise(6, 8, 3)).convert(mode).save(path)
    pixels = load_pixels(path, color)
    assert pixels.shape == expected_shape and pixels.dtype == np.uint8
    if color == "gray":
        assert np.array_equal(pixels, np.asarray(Image.open(path).convert("L")))


def test_load_pixels_refuses_unknown_color(folder):
    with pytest.raises(ValueError, match="color"):
        load_pixels(folder / "a.png", "grey")
