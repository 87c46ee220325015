"""The registry describes models from their classes, builds them only to use them, and refuses a
model name that two installed packages claim."""

from __future__ import annotations

import importlib.metadata
import json
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import registry
from ridecodec.cli import main
from ridecodec.errors import PluginError

#: A plug-in module: every model it builds is appended to BUILT.
PLUGIN_SOURCE = """
import torch
from ridecodec.models import CausalReach, DensityModel

BUILT = []


class Fake(DensityModel):
    name = {name!r}
    version = "0.1"
    {metadata}

    def __init__(self):
        super().__init__()
        BUILT.append(self)
        self.register_buffer("level", torch.tensor(1.0))
        {instance_metadata}

    def begin(self, canvas):
        return lambda rows, cols, channel: torch.ones(len(rows), 256)

    def log_prob(self, images):
        return torch.zeros(len(images), dtype=torch.float64)
"""

CLASS_LEVEL = "modes = {modes!r}\n    reach = CausalReach(up=1, left=2, right=0)\n    exact_across_devices = True"


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """``install(package, name, modes=..., per_instance=False)`` installs a plug-in distribution
    on sys.path, found through entry points like any installed one; the registry then sees only
    these plug-ins. Returns the list of models each plug-in module has built."""
    packages: set[str] = set()
    modules: list[str] = []
    real_entry_points = importlib.metadata.entry_points

    def install(package, name, modes=("L",), per_instance=False):
        module = f"fake_{package.replace('-', '_')}_{name.replace('-', '_')}"
        if per_instance:  # the old way: metadata set in __init__, not on the class
            metadata, instance = "", f"self.modes = {modes!r}; self.reach = CausalReach(up=3, left=3, right=1)"
        else:
            metadata, instance = CLASS_LEVEL.format(modes=modes), "pass"
        (tmp_path / f"{module}.py").write_text(
            PLUGIN_SOURCE.format(name=name, metadata=metadata, instance_metadata=instance)
        )
        info = tmp_path / f"{package.replace('-', '_')}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        with open(info / "entry_points.txt", "a") as file:
            if file.tell() == 0:
                file.write("[ridecodec.models]\n")
            file.write(f"{name} = {module}:Fake\n")
        packages.add(package)
        modules.append(module)
        monkeypatch.delitem(sys.modules, module, raising=False)

    def built(package, name):
        module = sys.modules.get(f"fake_{package.replace('-', '_')}_{name.replace('-', '_')}")
        return [] if module is None else module.BUILT

    def only_these(**selection):
        found = real_entry_points(**selection)
        if selection.get("group") != registry.ENTRY_POINT_GROUP:
            return found
        return [entry_point for entry_point in found if entry_point.dist and entry_point.dist.name in packages]

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "entry_points", only_these)
    registry._load_on.cache_clear()
    install.built = built
    yield install
    registry._load_on.cache_clear()
    for module in modules:
        sys.modules.pop(module, None)


def listing(*options):
    result = CliRunner().invoke(main, ["models", *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_listing_models_builds_none(plugins):
    plugins("fake-gray", "gray-only", modes=("L",))
    plugins("fake-colour", "colour", modes=("L", "RGB"))
    text = listing()
    assert "gray-only  version 0.1  from fake-gray 0.1" in text
    assert "modes: L, RGB; reach: up 1, left 2, right 0; exact across devices: yes" in text
    entries = {entry["name"]: entry for entry in json.loads(listing("--json"))}
    assert entries["colour"]["modes"] == ["L", "RGB"] and entries["colour"]["weights_digest"] is None
    info = registry.describe_model("gray-only")
    assert (info.package, info.modes, info.reach) == ("fake-gray", ("L",), "up 1, left 2, right 0")
    assert plugins.built("fake-gray", "gray-only") == [] and plugins.built("fake-colour", "colour") == []


def test_digests_are_computed_when_asked(plugins):
    plugins("fake-gray", "gray-only")
    entries = {entry["name"]: entry for entry in json.loads(listing("--json", "--digests"))}
    assert entries["gray-only"]["weights_digest"] == ridecodec.load_model("gray-only").weights_digest()
    assert len(plugins.built("fake-gray", "gray-only")) == 1
    assert "weights: " + entries["gray-only"]["weights_digest"] in listing("--digests")


def test_default_model_builds_none(plugins, monkeypatch):
    plugins("fake-gray", "gray-only", modes=("L",))
    plugins("fake-colour", "colour", modes=("L", "RGB", "RGBA"))
    monkeypatch.setattr(registry, "DEFAULT_MODEL_PREFERENCE", ("gray-only", "colour"))
    assert registry.default_model("L") == registry.default_model() == "gray-only"
    assert registry.default_model("RGB") == registry.default_model("RGBA") == "colour"
    assert plugins.built("fake-gray", "gray-only") == [] and plugins.built("fake-colour", "colour") == []


def test_metadata_set_per_instance_still_works(plugins, monkeypatch):
    """A class that sets modes and reach in __init__ is built, once, to read them."""
    plugins("fake-old", "old-style", modes=("L", "RGB"), per_instance=True)
    monkeypatch.setattr(registry, "DEFAULT_MODEL_PREFERENCE", ("old-style",))
    info = registry.describe_model("old-style")
    assert (info.modes, info.reach) == (("L", "RGB"), "up 3, left 3, right 1")
    assert registry.default_model("RGB") == "old-style"
    assert "old-style (default)  version 0.1" in listing()
    assert len(plugins.built("fake-old", "old-style")) == 1


def test_a_name_claimed_by_two_packages_is_refused(plugins, gray_image, tmp_path):
    plugins("first-pkg", "twin")
    plugins("second-pkg", "twin")
    plugins("fake-gray", "gray-only")
    assert "twin" in registry.available_models()
    for use in (
        lambda: registry.load_model("twin"),
        lambda: registry.describe_model("twin"),
        lambda: ridecodec.compress(gray_image, model="twin"),
    ):
        with pytest.raises(PluginError, match="registered by 2 installed packages") as error:
            use()
        assert "first-pkg" in str(error.value) and "second-pkg" in str(error.value)
    text = listing()
    assert "twin: unusable: model 'twin' is registered by 2 installed packages" in text
    assert "first-pkg" in text and "second-pkg" in text and "gray-only (default)  version 0.1" in text
    (twin,) = [entry for entry in json.loads(listing("--json")) if entry["name"] == "twin"]
    assert "first-pkg" in twin["error"] and "second-pkg" in twin["error"]
    Image.fromarray(gray_image).save(tmp_path / "gray.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "gray.png"), "--model", "twin"])
    assert result.exit_code == PluginError.exit_code and "second-pkg" in result.output
    assert not (tmp_path / "gray.rdc").exists()
    # neither twin was imported, let alone built
    assert plugins.built("first-pkg", "twin") == [] and plugins.built("second-pkg", "twin") == []


def test_loco_is_listed_without_being_built(monkeypatch):
    loco = pytest.importorskip("ridecodec_loco")

    def refuse(self, *args, **kwargs):
        raise AssertionError("loco was built")

    monkeypatch.setattr(loco.LocoModel, "__init__", refuse)
    info = registry.describe_model("loco")
    assert (info.version, info.modes, info.exact_across_devices) == ("1.0", ("L", "RGB", "RGBA"), True)
    assert info.reach == "up 2, left 3, right 1" and info.package == "ridecodec-loco"
    assert "loco" in listing() and "loco" in listing("--json")


@pytest.mark.parametrize(
    ("declaration", "match"),
    [
        ('modes = ("L", "CMYK")\n    reach = None', "declares unknown modes"),
        ('modes = ("L",)\n    reach = (0, 1, 0)', "not a CausalReach"),
    ],
)
def test_class_metadata_is_checked_without_building(plugins, declaration, match, tmp_path):
    plugins("fake-bad", "bad-meta")
    path = tmp_path / "fake_fake_bad_bad_meta.py"
    path.write_text(path.read_text().replace(CLASS_LEVEL.format(modes=("L",)), declaration))
    with pytest.raises(PluginError, match=match):
        registry.describe_model("bad-meta")
    assert "bad-meta: unusable" in listing()
    assert plugins.built("fake-bad", "bad-meta") == []


def test_a_class_calling_itself_another_name_is_refused(plugins, tmp_path):
    plugins("fake-bad", "alias")
    path = tmp_path / "fake_fake_bad_alias.py"
    path.write_text(path.read_text().replace("name = 'alias'", "name = 'someone-else'"))
    with pytest.raises(PluginError, match="registered as 'alias' calls itself 'someone-else'"):
        registry.describe_model("alias")
    with pytest.raises(PluginError, match="calls itself"):
        registry.load_model("alias")
