"""Model versions side by side: a newer version's weights replace an earlier one's for new files,
the earlier one stays readable, and where the two suit different images (``ride`` 4's and
``mcgsm`` 3's RGB weights lossless-origin photographs, their predecessors' decoded JPEGs) the
encoder codes each image with the version that codes a probe of it shortest."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import ridecodec
from ridecodec import codec, evaluation, registry
from ridecodec.testing import synthetic_image

SHIPPED = ("ride", "mcgsm")


def _decoded_jpeg(image: np.ndarray) -> np.ndarray:
    """``image`` through a JPEG (quality 90, 4:2:0 chroma): smooth chroma, as BSDS500 has."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _lossless_like(image: np.ndarray) -> np.ndarray:
    """``image`` with independent noise in every channel: chroma as sharp as a lossless photo's."""
    noise = np.random.default_rng(1).integers(-6, 7, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", SHIPPED)
def test_alternatives_are_versions_the_model_reads(name):
    model = registry.load_model(name)
    assert model.alternative_versions, f"{name} keeps no alternative"
    for layout, versions in model.alternative_versions.items():
        assert layout in model.modes
        assert set(versions) <= set(model.readable_versions)
    for version in model.readable_versions:  # an earlier version is the model as it was
        earlier = registry.load_model(name, version=version)
        assert earlier.version == version and type(earlier) is type(model)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_colour_image_is_coded_with_the_version_that_suits_it(name):
    current = registry.load_model(name).version
    [earlier] = registry.load_model(name).alternative_versions["RGB"]
    image = synthetic_image(80, 96, 3, seed=4)
    for pixels, expected in ((_decoded_jpeg(image), earlier), (_lossless_like(image), current)):
        encoded = ridecodec.encode(pixels, model=name)
        assert encoded.header.model_version == expected == min(encoded.probe_bits, key=encoded.probe_bits.__getitem__)
        assert np.array_equal(ridecodec.decompress(encoded.data), pixels)
        # whichever version is offered first, the probe picks the same one
        other = current if expected == earlier else earlier
        models = [registry.load_model(name, version=version) for version in (other, expected)]
        costs = codec._probe_bits(models, codec.coded_image(pixels))
        assert costs[1] < costs[0]


@pytest.mark.parametrize("name", SHIPPED)
def test_gray_images_and_own_weights_use_the_current_version(name, tmp_path):
    model = registry.load_model(name)
    gray = synthetic_image(70, 70, seed=2)
    assert ridecodec.read_header(ridecodec.compress(gray, model=name)).model_version == model.version
    jpeg_like = _decoded_jpeg(synthetic_image(80, 96, 3, seed=4))
    weights = ridecodec.__file__.replace("__init__.py", f"weights/{model.SHIPPED_WEIGHTS['RGB']}")
    data = ridecodec.compress(jpeg_like, model=name, weights=weights)  # the user's weights, no choice
    assert ridecodec.read_header(data).model_version == model.version


def test_eval_measures_each_image_with_the_version_its_file_uses(tmp_path):
    image = synthetic_image(80, 96, 3, seed=4)
    Image.fromarray(_decoded_jpeg(image)).save(tmp_path / "jpeg.png")
    Image.fromarray(_lossless_like(image)).save(tmp_path / "lossless.png")
    report = evaluation.evaluate([tmp_path], "ride", device="cpu", color="color", classical=False)
    versions = {result.name: result.model_version for result in report.images}
    model = registry.load_model("ride")
    assert versions == {"jpeg.png": model.alternative_versions["RGB"][0], "lossless.png": model.version}
    coded_by_model = [result for result in report.images if result.coder == "model"]
    assert coded_by_model  # (noise this strong may go to the PNG fallback)
    for result in coded_by_model:  # the likelihood is that of the version that coded the file
        assert abs(result.overhead_percent) < 0.5, result
    assert "Model versions chosen per image" in report.to_markdown()
