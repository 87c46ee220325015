"""Compress then decompress gives back the identical pixels, for every size and mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import ridecodec

from conftest import natural_like, noise

SIZES = [(1, 1), (1, 17), (17, 1), (2, 2), (3, 64), (64, 3), (31, 45), (33, 8)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_awkward_sizes_round_trip(height, width, channels):
    for image in (natural_like(height, width, channels), noise(height, width, channels, seed=height)):
        data = ridecodec.compress(image, model="loco", device="cpu")
        assert np.array_equal(ridecodec.decompress(data, device="cpu"), image)


@pytest.mark.slow
def test_large_image_round_trip():
    image = natural_like(1500, 2000, seed=7)  # 3 Mpx: 2 * 1500 + 2000 wavefront steps
    data = ridecodec.compress(image, model="loco", device="cpu")
    assert np.array_equal(ridecodec.decompress(data, device="cpu"), image)
    assert len(data) < image.size  # a predictive model compresses a smooth image


def test_compression_is_deterministic(gray_image):
    assert ridecodec.compress(gray_image, model="loco") == ridecodec.compress(gray_image, model="loco")


def _round_trip_pil(image: Image.Image) -> Image.Image:
    return ridecodec.decompress_image(ridecodec.compress(image, model="loco"))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_native_modes_keep_mode(mode):
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    image = Image.fromarray(natural_like(20, 30, channels), mode)
    restored = _round_trip_pil(image)
    assert restored.mode == mode
    assert np.array_equal(np.asarray(restored), np.asarray(image))


def test_gray_alpha_is_restored_as_la():
    image = Image.fromarray(natural_like(20, 30, 2), "LA")
    restored = _round_trip_pil(image)
    assert restored.mode == "LA"
    assert np.array_equal(np.asarray(restored), np.asarray(image))
    assert ridecodec.read_header(ridecodec.compress(image, model="loco")).layout == "RGBA"


def test_bilevel_is_restored_as_mode_1():
    image = Image.fromarray(natural_like(20, 30) > 128)
    assert image.mode == "1"
    restored = _round_trip_pil(image)
    assert restored.mode == "1"
    assert np.array_equal(np.asarray(restored), np.asarray(image))


def test_palette_with_unique_colours_is_coded_as_rgb_and_restored_exactly():
    image = Image.fromarray(natural_like(24, 32, 3)).quantize(colors=16)
    data = ridecodec.compress(image, model="loco")
    assert ridecodec.read_header(data).layout == "RGB"
    restored = ridecodec.decompress_image(data)
    assert restored.mode == "P"
    assert np.array_equal(np.asarray(restored), np.asarray(image))
    assert restored.getpalette() == image.getpalette()


def test_palette_with_duplicate_colours_and_transparency_keeps_indices():
    indices = (natural_like(24, 32) // 64).astype(np.uint8)  # 4 indices
    image = Image.fromarray(indices, "P")
    image.putpalette([10, 20, 30] * 2 + [200, 0, 0, 0, 0, 255])  # indices 0 and 1 share a colour
    image.info["transparency"] = 3
    data = ridecodec.compress(image, model="loco")
    assert ridecodec.read_header(data).layout == "L"
    restored = ridecodec.decompress_image(data)
    assert restored.mode == "P"
    assert np.array_equal(np.asarray(restored), indices)
    assert restored.getpalette() == image.getpalette()
    assert restored.info["transparency"] == 3
    # and it survives being written as PNG
    buffer = io.BytesIO()
    restored.save(buffer, format="PNG")
    reread = Image.open(buffer)
    assert reread.info.get("transparency") == 3 and np.array_equal(np.asarray(reread), indices)


def test_path_api_round_trip(tmp_path, rgb_image):
    source = tmp_path / "photo.png"
    Image.fromarray(rgb_image).save(source)
    compressed = ridecodec.compress_file(source, model="loco")
    assert compressed == tmp_path / "photo.rdc"
    output = ridecodec.decompress_file(compressed, tmp_path / "back.png")
    assert np.array_equal(np.asarray(Image.open(output)), rgb_image)


def test_array_shapes_accepted(gray_image):
    data = ridecodec.compress(gray_image[:, :, None], model="loco")
    assert np.array_equal(ridecodec.decompress(data), gray_image)


def test_gray_saved_as_rgb_is_coded_as_gray_and_restored_as_rgb(gray_image):
    rgb = np.repeat(gray_image[:, :, None], 3, axis=2)
    data = ridecodec.compress(rgb, model="loco")
    header = ridecodec.read_header(data)
    assert (header.layout, header.original_mode) == ("L", "RGB")
    assert len(data) < len(ridecodec.compress(gray_image, model="loco")) + 8
    assert np.array_equal(ridecodec.decompress(data), rgb)
    assert ridecodec.decompress_image(data).mode == "RGB"


def test_incompressible_images_are_stored_and_never_expand(monkeypatch):
    image = noise(40, 50, 3, seed=11)
    data = ridecodec.compress(image, model="loco")
    header = ridecodec.read_header(data)
    assert header.coder == ridecodec.container.CODER_STORED
    assert len(data) == image.nbytes + header.header_length
    # decoding a stored file needs no model
    monkeypatch.setattr(ridecodec.registry, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert np.array_equal(ridecodec.decompress(data), image)


def test_compressible_images_use_the_range_coder(gray_image):
    assert ridecodec.read_header(ridecodec.compress(gray_image, model="loco")).coder == 1
