"""`ridecodec explain`: per-pixel bit costs (ridecodec.explain) and their heat map."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import codec, depth, engine, explain, imageio, registry
from ridecodec.cli import main
from ridecodec.errors import RidecodecError, UnsupportedImageError
from ridecodec.models.lowbyte import LowByteModel
from ridecodec.testing import planes_of, stepped_tables, synthetic_graphic, synthetic_image, synthetic_image16


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-3)


def kept_code_length(model, pixels: np.ndarray) -> float:
    """The ideal code length of the variant of the model's tables the encoder keeps for ``pixels``
    (the smallest with what it adds to the header), worked out apart from explain's own choice."""
    candidates = []
    _, height, width = pixels.shape
    for variant in codec.candidate_variants(pixels, engine.adaptation_version_for(model, height, width)):
        bits = engine.variant_code_length_bits(model, pixels, variant)
        candidates.append((bits / 8 + codec.variant_header_bytes(variant, len(pixels)), bits))
    return min(candidates)[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("name", ["loco", "mcgsm"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_costs_sum_to_the_code_length(name, channels):
    image = synthetic_image(13, 17, channels, seed=channels)
    bits = explain.bit_costs(image, model=name, device="cpu")
    assert bits.shape == (channels, 13, 17) and bits.dtype == np.float64
    assert (bits > 0).all()  # an exact model gives every value some probability, never all of it
    code_length = kept_code_length(registry.load_model(name), planes_of(image))
    assert close(bits.sum(), code_length), (bits.sum(), code_length)


@pytest.mark.parametrize("name", ["loco", "mcgsm"])
def test_each_pixel_costs_what_its_stepped_table_says(name):
    """The per-pixel map, not only its sum: each pixel's cost is -log2 of the probability of its
    own value in the table the coder gets for it (the schedule replayed by the conformance kit)."""
    pixels = planes_of(synthetic_image(9, 12, 3, seed=5))
    model = registry.load_model(name)
    tables, symbols = stepped_tables(model, pixels)
    expected = -torch.log2(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).numpy()
    order = [
        (channel, int(row), int(col))
        for _, rows, cols in engine.wavefront_for(model, 9, 12).steps()
        for channel in range(3)
        for row, col in zip(rows, cols)
    ]
    costs, _ = explain.plane_costs(model, pixels, variants=[engine.Variant()])
    np.testing.assert_allclose([costs[position] for position in order], expected, rtol=1e-12)


def test_a_surprising_pixel_is_where_the_cost_is():
    image = np.full((16, 16), 100, dtype=np.uint8)
    image[9, 5] = 240
    bits = explain.bit_costs(image, model="loco", device="cpu")[0]
    inner = bits.copy()
    inner[0, 0] = 0  # the first pixel has no context: it costs what the model's prior says
    assert np.unravel_index(inner.argmax(), bits.shape) == (9, 5)
    assert bits[9, 5] > 20 * np.median(bits)


@pytest.mark.parametrize("image", [synthetic_image(30, 40, 3, seed=2), synthetic_graphic(30, 40, 3, seed=2)])
def test_the_file_costs_what_explain_says(image):
    explained = explain.explain(image, model="loco", device="cpu")
    data = ridecodec.compress(image, model="loco", device="cpu", model_only=True)
    header = ridecodec.read_header(data)
    payload_bits = 8 * (len(data) - header.header_length)
    # the variant compress keeps (adapted, restricted or not) is the one explained
    assert abs(payload_bits - explained.total_bits) <= 0.002 * payload_bits + 64
    assert any("adapted online" in note for note in explained.notes) == bool(header.adaptation)


def test_mode_conversions_are_explained_as_coded():
    gray = synthetic_image(10, 14, seed=3)
    as_rgb = explain.explain(Image.fromarray(np.stack([gray] * 3, axis=-1)), model="loco", device="cpu")
    assert as_rgb.labels == ["L"] and as_rgb.original_mode == "RGB" and as_rgb.transform == "gray_as_rgb"
    assert close(as_rgb.total_bits, explain.bit_costs(gray, model="loco", device="cpu").sum())

    la = explain.explain(Image.fromarray(synthetic_image(10, 14, 2), "LA"), model="loco", device="cpu")
    assert la.labels == ["R", "G", "B", "A"] and la.layout == "RGBA"

    bilevel = explain.explain(Image.fromarray(gray > 120), model="loco", device="cpu")
    assert bilevel.labels == ["L"] and bilevel.original_mode == "1"

    palette = Image.fromarray(synthetic_image(10, 14, 3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 2  # coded as its index plane
    indices = explain.explain(palette, model="loco", device="cpu")
    assert indices.labels == ["index"] and indices.transform == "palette_indices"
    coded = imageio.to_coded(palette)
    code_length = engine.code_length_bits(registry.load_model("loco"), coded.pixels)
    assert close(indices.total_bits, code_length)


def test_sixteen_bit_images_are_explained_as_high_and_low_bytes():
    samples = synthetic_image16(12, 15, 3, seed=4)
    explanation = explain.explain(samples, model="loco", device="cpu")
    assert explanation.bit_depth == 16 and explanation.bits.shape == (6, 12, 15)
    assert explanation.labels[:3] == ["R high byte", "G high byte", "B high byte"]
    assert explanation.labels[3:] == ["R low byte", "G low byte", "B low byte"]
    coding, high, low = depth.split(planes_of(samples))
    assert coding == depth.DeepCoding.HIGH_THEN_LOW
    high_bits = kept_code_length(registry.load_model("loco"), high)
    low_bits = engine.code_length_bits(LowByteModel(torch.from_numpy(high), "RGB"), low)
    assert close(explanation.bits[:3].sum(), high_bits)
    assert close(explanation.bits[3:].sum(), low_bits)
    data = ridecodec.compress(samples, model="loco", device="cpu")
    assert 8 * (len(data) - ridecodec.read_header(data).header_length) <= explanation.total_bits * 1.001 + 128

    # 8-bit data scaled to 16 bits: the low bytes are free
    scaled = explain.explain(synthetic_image(8, 9).astype(np.uint16) * 257, model="loco", device="cpu")
    assert scaled.labels == ["L high byte", "L low byte"] and not scaled.bits[1].any()
    assert close(scaled.total_bits, explain.bit_costs(synthetic_image(8, 9), model="loco", device="cpu").sum())


def test_progress_runs_to_the_end():
    calls = []
    explain.explain(
        synthetic_image(7, 9), model="loco", device="cpu", progress=lambda done, total: calls.append((done, total))
    )
    total = engine.wavefront_for(registry.load_model("loco"), 7, 9).num_steps
    assert calls[-1] == (total, total)


def test_refusals():
    with pytest.raises(UnsupportedImageError, match="CMYK"):
        explain.explain(Image.new("CMYK", (4, 4)), model="loco", device="cpu")
    with pytest.raises(UnsupportedImageError, match="more than 100"):
        explain.explain(synthetic_image(11, 11), model="loco", device="cpu", max_pixels=100)


def test_summary_numbers():
    explanation = explain.explain(synthetic_image(10, 12, 3), model="loco", device="cpu")
    summary = explanation.summary()
    assert [plane["name"] for plane in summary["planes"]] == ["R", "G", "B"]
    assert close(sum(plane["total_bits"] for plane in summary["planes"]), summary["total_bits"])
    assert close(summary["bits_per_pixel"], explanation.bits.sum() / 120)
    assert close(summary["planes"][1]["bits_per_pixel"], explanation.bits[1].sum() / 120)


def test_pillow_rendering_draws_a_panel_per_channel_and_a_colour_bar():
    gray = explain.render(explain.explain(synthetic_image(20, 30), model="loco", device="cpu"), "pillow")
    colour = explain.render(explain.explain(synthetic_image(20, 30, 3), model="loco", device="cpu"), "pillow")
    assert gray.mode == colour.mode == "RGB"
    assert colour.width > 2 * (explain.MIN_PANEL - 10) and colour.width > gray.width
    pixels = np.asarray(colour).reshape(-1, 3)
    # the colour map's ends (the colour bar holds every entry) and the text are all drawn
    for colour_entry in (explain.COLORMAP[0], explain.COLORMAP[255], np.array([0, 0, 0])):
        assert (pixels == colour_entry).all(axis=1).any()


def test_large_panels_are_block_means_and_small_ones_are_enlarged():
    plane = np.arange(2100 * 30, dtype=np.float64).reshape(30, 2100)
    reduced, note = explain._resampled(plane)
    assert reduced.shape[1] <= explain.MAX_PANEL and "mean" in note
    np.testing.assert_allclose(reduced.mean(), plane.mean(), rtol=0.01)
    enlarged, note = explain._resampled(np.ones((8, 4)))
    assert enlarged.shape == (256, 128) and note == "shown 32x"


def test_sixteen_bit_rendering():
    explanation = explain.explain(synthetic_image16(10, 12, 1), model="loco", device="cpu")
    picture = explain.render(explanation, "pillow")
    assert picture.height > 2 * explain.MIN_PANEL  # high and low bytes, one above the other


def test_matplotlib_rendering_or_its_absence():
    explanation = explain.explain(synthetic_image(10, 12, 3), model="loco", device="cpu")
    if not explain.matplotlib_available():
        with pytest.raises(RidecodecError, match="ridecodec\\[plot\\]"):
            explain.render(explanation, "matplotlib")
        assert explain.render(explanation, "auto").size == explain.render(explanation, "pillow").size
        return
    picture = explain.render(explanation, "matplotlib")
    assert picture.mode == "RGB" and picture.width > 200


# --- the command --------------------------------------------------------------------------------


@pytest.fixture
def rgb_png(tmp_path):
    path = tmp_path / "rgb.png"
    Image.fromarray(synthetic_image(18, 22, 3, seed=7)).save(path)
    return path


def test_command_writes_the_heat_map_beside_the_input(rgb_png):
    result = run("explain", rgb_png, "--model", "loco", "--renderer", "pillow", "--device", "cpu")
    assert result.exit_code == 0, result.output
    picture = Image.open(rgb_png.with_suffix(".cost.png"))
    assert picture.format == "PNG" and picture.mode == "RGB" and picture.width > 3 * 200
    bits = explain.bit_costs(rgb_png, model="loco", device="cpu")
    assert f"{bits.sum() / (18 * 22):.3f} bits per pixel" in result.stdout


def test_command_json_and_npy(rgb_png, tmp_path):
    npy = tmp_path / "bits.npy"
    result = run("explain", rgb_png, "-m", "loco", "--json", "--npy", npy, "-q")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    saved = np.load(npy)
    assert saved.shape == (3, 18, 22)
    np.testing.assert_array_equal(saved, explain.bit_costs(rgb_png, model="loco", device="cpu"))
    assert close(numbers["total_bits"], saved.sum())
    assert close(numbers["bits_per_pixel"], saved.sum() / (18 * 22))
    assert [plane["name"] for plane in numbers["planes"]] == ["R", "G", "B"]
    assert close(numbers["planes"][2]["total_bits"], saved[2].sum())
    assert numbers["output"] is None and not rgb_png.with_suffix(".cost.png").exists()  # --json alone: no picture
    code_length = kept_code_length(registry.load_model("loco"), planes_of(np.asarray(Image.open(rgb_png))))
    assert close(numbers["total_bits"], code_length)


def test_command_refusals(rgb_png, tmp_path):
    out = tmp_path / "cost.png"
    out.write_bytes(b"keep me")
    result = run("explain", rgb_png, "-m", "loco", "-o", out)
    assert result.exit_code == 8 and out.read_bytes() == b"keep me"
    assert result.output.strip().count("\n") == 0 and "--force" in result.output
    assert run("explain", rgb_png, "-m", "loco", "-o", out, "--force", "-q").exit_code == 0
    assert Image.open(out).format == "PNG"

    assert run("explain", tmp_path / "missing.png", "-m", "loco").exit_code == 3
    cmyk = tmp_path / "cmyk.tif"
    Image.new("CMYK", (5, 5)).save(cmyk)
    result = run("explain", cmyk, "-m", "loco", "-o", tmp_path / "c.png")
    assert result.exit_code == 4 and "CMYK" in result.output
    result = run("explain", rgb_png, "-m", "no-such-model", "-o", tmp_path / "m.png")
    assert result.exit_code == 6
    result = run("explain", rgb_png, "-m", "loco", "-o", rgb_png, "--force")
    assert result.exit_code == 11 and "input" in result.output
    if not explain.matplotlib_available():
        result = run("explain", rgb_png, "-m", "loco", "--renderer", "matplotlib", "-o", tmp_path / "p.png")
        assert result.exit_code == 1 and "pip install" in result.output
        assert not (tmp_path / "p.png").exists()


def test_vmax_sets_the_top_of_the_colour_bar():
    explanation = explain.explain(synthetic_image(16, 16), model="loco", device="cpu")
    assert explain.colour_scale(explanation.bits) >= 1
    top = explain.COLORMAP[255]

    def top_coloured(picture):
        return int((np.asarray(picture).reshape(-1, 3) == top).all(axis=1).sum())

    # every pixel costs more than 0.01 bits: with that as the top, the panel is all top colour
    assert (
        top_coloured(explain.render(explanation, "pillow", vmax=0.01))
        > top_coloured(explain.render(explanation, "pillow")) + 200 * 200
    )


def test_sixteen_bit_values_below_256_cost_their_low_bytes_only():
    small = synthetic_image(8, 9, seed=6)
    explanation = explain.explain(small.astype(np.uint16), model="loco", device="cpu")
    assert explanation.labels == ["L high byte", "L low byte"] and not explanation.bits[0].any()
    np.testing.assert_array_equal(explanation.bits[1], explain.bit_costs(small, model="loco", device="cpu")[0])
