"""The plug-in contract beyond the conformance kit (test_conformance.py), and plug-in registration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ridecodec
from ridecodec import engine, registry
from ridecodec.errors import PluginError
from ridecodec.models import CausalReach, DensityModel
from ridecodec.testing import stepped_tables

from conftest import natural_like

INSTALLED = registry.available_models()


@pytest.mark.parametrize("name", INSTALLED)
def test_log_prob_of_a_batch_is_per_image(name):
    model = registry.load_model(name)
    images = torch.from_numpy(np.stack([natural_like(9, 11, seed=s)[None] for s in range(3)]))
    batch = model.log_prob(images)
    singles = torch.cat([model.log_prob(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, singles)


@pytest.mark.parametrize("name", INSTALLED)
def test_weights_digest_is_stable(name):
    model = registry.load_model(name)
    assert model.weights_digest() == model.weights_digest()
    assert len(model.weights_digest()) == 64


def test_loco_compresses_natural_images_better_than_raw():
    image = natural_like(64, 64)
    assert len(ridecodec.compress(image, model="loco")) * 8 / image.size < 6


# --- registering a plug-in through the entry-point group, as a third party would -----------

PLUGIN_SOURCE = '''
import torch
from ridecodec.models import DensityModel


class LeftNeighbour(DensityModel):
    """Raster-order test model: a peaked distribution around the left neighbour."""

    name = "test-left"
    version = "0.1"
    modes = ("L",)
    reach = None  # unbounded: exercises the engine's raster order

    def __init__(self):
        super().__init__()
        self.register_buffer("sharpness", torch.tensor(0.05))

    def _tables(self, image, rows, cols, channel):
        left = torch.where(cols > 0, image[channel, rows, (cols - 1).clamp(min=0)].long(), 128)
        values = torch.arange(256)
        logits = -self.sharpness * (values[None, :] - left[:, None]).abs()
        return torch.softmax(logits, dim=1).float()

    def begin(self, canvas):
        return lambda rows, cols, channel: self._tables(canvas, rows, cols, channel)

    def log_prob(self, images):
        b, c, h, w = images.shape
        rows, cols = (g.reshape(-1) for g in torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"))
        out = []
        for image in images:
            tables = self._tables(image, rows, cols, 0)
            out.append(tables.double()[torch.arange(len(rows)), image[0, rows, cols].long()].log().sum())
        return torch.stack(out)
'''


@pytest.fixture
def installed_test_plugin(tmp_path, monkeypatch):
    """A plug-in distribution on sys.path, found through entry points like any installed one."""
    (tmp_path / "test_left_plugin.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "test_left_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: test-left-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ridecodec.models]\ntest-left = test_left_plugin:LeftNeighbour\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "test-left"
    registry._load_on.cache_clear()


def test_registering_a_plugin(installed_test_plugin):
    assert installed_test_plugin in ridecodec.available_models()
    info = registry.describe_model(installed_test_plugin)
    assert (info.package, info.package_version, info.modes) == ("test-left-plugin", "0.1", ("L",))
    assert info.reach.startswith("unbounded")
    image = natural_like(7, 9)
    data = ridecodec.compress(image, model=installed_test_plugin)
    assert ridecodec.read_header(data).model_name == installed_test_plugin
    assert np.array_equal(ridecodec.decompress(data), image)
    # its log_prob agrees with its steps too
    tables, symbols = stepped_tables(registry.load_model(installed_test_plugin), image[None].copy())
    model = registry.load_model(installed_test_plugin)
    expected = tables.double()[torch.arange(len(symbols)), symbols].log().sum()
    assert math.isclose(float(model.log_prob(torch.from_numpy(image)[None, None])), float(expected), rel_tol=1e-6)


def test_plugin_modes_are_enforced(installed_test_plugin, rgb_image):
    with pytest.raises(ridecodec.RidecodecError, match="does not code RGB"):
        ridecodec.compress(rgb_image, model=installed_test_plugin)


def test_default_model_is_the_best_that_codes_the_layout(installed_test_plugin, monkeypatch, rgb_image):
    """A preferred model that codes gray images only is the default for gray images; colour
    images go to the next preferred model that codes them."""
    monkeypatch.setattr(registry, "DEFAULT_MODEL_PREFERENCE", (installed_test_plugin, "loco"))
    assert ridecodec.default_model() == ridecodec.default_model("L") == installed_test_plugin
    assert ridecodec.default_model("RGB") == "loco"
    assert ridecodec.read_header(ridecodec.compress(natural_like(5, 6))).model_name == installed_test_plugin
    assert ridecodec.read_header(ridecodec.compress(rgb_image[:5, :6])).model_name == "loco"


# --- plug-ins that misbehave are reported as such ------------------------------------------


class BadModel(DensityModel):
    name, version, reach = "bad", "0", CausalReach(0, 1, 0)

    def __init__(self, table_maker):
        super().__init__()
        self.table_maker = table_maker

    def begin(self, canvas):
        return lambda rows, cols, channel: self.table_maker(len(rows))

    def log_prob(self, images):
        return torch.zeros(len(images), dtype=torch.float64)


def _raises(count):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("table_maker", "match"),
    [
        (lambda n: torch.full((n, 256), float("nan")), "NaN"),
        (lambda n: -torch.ones(n, 256), "negative"),
        (lambda n: torch.ones(n, 255), "shape"),
        (lambda n: torch.ones(n, 256, dtype=torch.float64), "float32"),
        (lambda n: torch.zeros(n, 256), "all-zero"),
        (lambda n: [[1.0] * 256] * n, "shape"),
        (_raises, "boom"),
    ],
)
def test_bad_tables_are_the_plugins_fault(table_maker, match):
    with pytest.raises(PluginError, match=match):
        engine.encode_pixels(BadModel(table_maker), natural_like(3, 4)[None].copy())


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("raise ImportError('missing dependency xyz')", "failed to import: missing dependency xyz"),
        (
            "class Broken:\n    def __init__(self):\n        raise ValueError('no weights')",
            "failed to initialise: no weights",
        ),
        ("class Broken:\n    pass", "is not a ridecodec DensityModel"),
    ],
)
def test_broken_plugins_are_reported_as_theirs(tmp_path, monkeypatch, gray_image, source, match):
    (tmp_path / "broken_plugin.py").write_text(source + "\n")
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ridecodec.models]\nbroken = broken_plugin:Broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "broken_plugin", raising=False)
    try:
        with pytest.raises(PluginError, match=match):
            ridecodec.compress(gray_image, model="broken")
        # the other models still work, and `models` lists the broken one as unusable
        assert ridecodec.decompress(ridecodec.compress(gray_image, model="loco")).shape == gray_image.shape
        from click.testing import CliRunner

        from ridecodec.cli import main

        listing = CliRunner().invoke(main, ["models"]).output
        assert "broken: unusable" in listing and "loco" in listing
    finally:
        registry._load_on.cache_clear()
