"""The Pillow plug-in (ridecodec.pillow), through Pillow's own API only: Image.open, im.load,
im.save, im.mode, im.size."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import ridecodec
from ridecodec.testing import synthetic_image, synthetic_image16


@pytest.fixture(scope="module", autouse=True)
def plugin():
    """Registered for this module's tests only: other tests expect Pillow not to read .rdc files."""
    from ridecodec import pillow

    pillow.register()
    yield pillow
    pillow.unregister()


def palette_image(transparency=None) -> Image.Image:
    image = Image.fromarray(synthetic_image(14, 19, 3, seed=2)).convert("P", palette=Image.Palette.ADAPTIVE, colors=12)
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


IMAGES = {
    "L": lambda: Image.fromarray(synthetic_image(14, 19)),
    "RGB": lambda: Image.fromarray(synthetic_image(14, 19, 3)),
    "RGBA": lambda: Image.fromarray(synthetic_image(14, 19, 4)),
    "LA": lambda: Image.fromarray(synthetic_image(14, 19, 2), "LA"),
    "1": lambda: Image.fromarray(synthetic_image(14, 19) > 120),
    "P": palette_image,
    "P-transparent": lambda: palette_image(transparency=3),
    "I;16": lambda: Image.fromarray(synthetic_image16(14, 19)),
}


def same(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.mode == b.mode
        and a.size == b.size
        and np.array_equal(np.asarray(a), np.asarray(b))
        and a.getpalette() == b.getpalette()
        and a.info.get("transparency") == b.info.get("transparency")
    )


@pytest.mark.parametrize("kind", list(IMAGES))
def test_round_trip_through_a_file(kind, tmp_path):
    original = IMAGES[kind]()
    path = tmp_path / "image.rdc"
    original.save(path, model="loco")  # the extension picks the format
    assert path.read_bytes().startswith(b"\x89RDC")
    with Image.open(path) as opened:
        assert opened.format == "RDC"
        assert opened.mode == original.mode and opened.size == original.size  # from the header, before loading
        opened.load()
        assert same(opened, original)


@pytest.mark.parametrize("kind", ["L", "RGB", "P"])
def test_round_trip_through_a_stream(kind):
    original = IMAGES[kind]()
    buffer = io.BytesIO()
    original.save(buffer, format="RDC", model="loco")
    buffer.seek(0)
    opened = Image.open(buffer)
    assert opened.format == "RDC" and same(opened.convert(opened.mode), original)


def test_save_parameters_reach_the_codec(tmp_path):
    original = IMAGES["RGB"]()
    original.save(tmp_path / "loco.rdc", model="loco")
    original.save(tmp_path / "mcgsm.rdc", model="mcgsm", effort=2)
    with Image.open(tmp_path / "loco.rdc") as loco, Image.open(tmp_path / "mcgsm.rdc") as mcgsm:
        assert loco.info["ridecodec_model"] == "loco" and mcgsm.info["ridecodec_model"] == "mcgsm"
        assert same(loco, original) and same(mcgsm, original)
    assert ridecodec.read_header((tmp_path / "mcgsm.rdc").read_bytes()).model_name == "mcgsm"
    # the same bytes as the API gives
    assert (tmp_path / "loco.rdc").read_bytes() == ridecodec.compress(original, model="loco")


def test_files_from_the_api_open_and_pixels_survive_conversion(tmp_path):
    pixels = synthetic_image(11, 13, 3, seed=9)
    path = tmp_path / "api.rdc"
    path.write_bytes(ridecodec.compress(pixels, model="loco"))
    with Image.open(path) as opened:
        assert np.array_equal(np.asarray(opened), pixels)
        assert np.array_equal(np.asarray(opened.convert("L")), np.asarray(Image.fromarray(pixels).convert("L")))


def test_the_magic_bytes_identify_the_format_whatever_the_name(tmp_path):
    path = tmp_path / "photo.bin"
    path.write_bytes(ridecodec.compress(synthetic_image(8, 9), model="loco"))
    with Image.open(path) as opened:
        assert opened.format == "RDC" and opened.size == (9, 8)


def test_sixteen_bit_colour_is_refused_in_one_line():
    buffer = io.BytesIO(ridecodec.compress(synthetic_image16(6, 7, 3), model="loco"))
    with pytest.raises(OSError, match="16-bit RGB ridecodec image has no Pillow mode") as caught:
        Image.open(buffer)
    assert "\n" not in str(caught.value)


def test_corrupt_files_give_pillow_style_errors():
    data = ridecodec.compress(synthetic_image(12, 14), model="loco")
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(data[:30]))
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(data[:-8]))
    damaged = bytearray(data)
    damaged[-6] ^= 0xFF  # a payload byte: the header opens, decoding fails
    opened = Image.open(io.BytesIO(bytes(damaged)))
    assert opened.size == (14, 12)
    with pytest.raises(OSError, match="cannot decode ridecodec file"):
        opened.load()
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image, nor an rdc file"))


def test_modes_ridecodec_does_not_code_are_refused_on_save(tmp_path):
    with pytest.raises(OSError, match="CMYK"):
        Image.new("CMYK", (4, 4)).save(tmp_path / "x.rdc")
    assert not (tmp_path / "x.rdc").exists()  # Pillow removes what it created
    with pytest.raises(OSError, match="not installed"):
        Image.new("L", (4, 4)).save(tmp_path / "y.rdc", model="no-such-model")


def test_unregister_leaves_pillow_as_it_was(plugin):
    buffer = io.BytesIO(ridecodec.compress(synthetic_image(5, 5), model="loco"))
    plugin.unregister()
    try:
        assert "RDC" not in Image.registered_extensions().values()
        with pytest.raises(UnidentifiedImageError):
            Image.open(buffer)
    finally:
        plugin.register()
    buffer.seek(0)
    assert Image.open(buffer).format == "RDC"


def test_importing_the_module_is_all_it_takes(tmp_path):
    """In a fresh interpreter: Pillow has no plug-in discovery, so `import ridecodec.pillow`
    registers the format; without it, Pillow does not read .rdc files."""
    path = tmp_path / "x.rdc"
    script = (
        "import sys, numpy as np\n"
        "from PIL import Image, UnidentifiedImageError\n"
        "path = sys.argv[1]\n"
        "try:\n"
        "    Image.open(path)\n"
        "    sys.exit('opened without the plug-in')\n"
        "except UnidentifiedImageError:\n"
        "    pass\n"
        "import ridecodec.pillow\n"
        "image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8))\n"
        "image.save(path + '.copy.rdc', model='loco')\n"
        "with Image.open(path + '.copy.rdc') as back:\n"
        "    assert back.format == 'RDC' and np.array_equal(np.asarray(back), np.asarray(image))\n"
        "print('ok')\n"
    )
    path.write_bytes(ridecodec.compress(synthetic_image(5, 6), model="loco"))
    completed = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr[-2000:]
