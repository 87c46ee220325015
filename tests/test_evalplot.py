"""`ridecodec eval --plot`: bits per pixel per image and codec in a PNG, drawn with matplotlib where
it is installed and with Pillow without it; output refused as everywhere else in the CLI."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ridecodec import evalplot, evaluation
from ridecodec.cli import main
from ridecodec.errors import RidecodecError

from conftest import natural_like

EXIT_OUTPUT_EXISTS = 8
EXIT_CANNOT_WRITE_OUTPUT = 11
RENDERERS = ["pillow"] + (["matplotlib"] if evalplot.matplotlib_available() else [])


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ridecodec: error: "), result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "set"
    images.mkdir()
    for seed in range(3):
        Image.fromarray(natural_like(12, 16, seed=seed)).save(images / f"img{seed}.png")
    return images


@pytest.fixture
def no_matplotlib(monkeypatch):
    """As if matplotlib were not installed: importing it fails."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def result(name, file_bpp, classical=None):
    return evaluation.ImageResult(name, 16, 12, 1, file_bpp - 0.3, file_bpp, file_bpp - 0.2, 0.1, classical or {})


def report(*results, model="loco"):
    return evaluation.Report(model, "cpu", "gray", list(results))


def png_of(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_sensible_png(path_or_bytes) -> Image.Image:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as picture:
        assert picture.format == "PNG"
        picture.verify()
    picture = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    width, height = picture.size
    assert evalplot.MIN_WIDTH <= width <= evalplot.MAX_WIDTH and 300 <= height <= 1200, picture.size
    pixels = np.asarray(picture.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 4  # not blank: text, bars, axes
    return picture


def test_eval_writes_the_plot_and_the_report_stays_as_it_was(folder, tmp_path, no_matplotlib):
    out = tmp_path / "bpp.png"
    plotted = run("eval", folder, "-m", "loco", "--no-classical", "--json", "--plot", out)
    assert plotted.exit_code == 0, plotted.output
    assert json.loads(plotted.stdout)["totals"]["images"] == 3  # stdout is still the JSON alone
    assert f"wrote {out}" in plotted.stderr
    assert_sensible_png(out)
    assert not list(tmp_path.glob(".bpp.png.*"))  # no temporary file left behind


@pytest.mark.skipif(not evalplot.matplotlib_available(), reason="matplotlib is not installed")
def test_eval_draws_with_matplotlib_where_it_is_installed(folder, tmp_path, monkeypatch):
    drawn = []
    real = evalplot.render_matplotlib
    monkeypatch.setattr(evalplot, "render_matplotlib", lambda r: drawn.append(r) or real(r))
    out = tmp_path / "bpp.png"
    assert run("eval", folder, "-m", "loco", "--no-classical", "-q", "--plot", out).exit_code == 0
    assert len(drawn) == 1
    assert_sensible_png(out)


def test_the_chart_has_a_group_per_image_a_total_and_a_bar_per_codec():
    chart = evalplot.chart_data(
        report(
            result("a.png", 4.0, {"png": 5.0, "webp": 3.0}),
            result("b.png", 2.0, {"png": 3.0}),  # webp not measured here: a gap, and no webp total
        )
    )
    assert chart.groups == ["a.png", "b.png", "total"]
    assert [s.label for s in chart.series] == ["loco (.rdc file)", "PNG", "WebP"]
    assert chart.series[0].values == [4.0, 2.0, 3.0]
    assert chart.series[1].values == [5.0, 3.0, 4.0]
    assert chart.series[2].values == [3.0, None, None]
    assert "loco" in chart.title and "2 images" in chart.title
    assert "loco 3.000" in chart.subtitle and "PNG 4.000" in chart.subtitle and "WebP" not in chart.subtitle
    kept = report(result("graphic.png", 1.0), result("noise.png", 8.3))
    kept.images[0].coder, kept.images[1].coder = "png", "stored"
    chart = evalplot.chart_data(kept)
    labels = [chart.label(g, upright=False) for g in range(3)]
    assert labels == ["graphic.png\n(as PNG)", "noise.png\n(stored)", "total"]
    assert chart.label(0, upright=True) == "graphic.png (as PNG)"
    single = evalplot.chart_data(report(result("only.png", 4.0)))
    assert single.groups == ["only.png"] and not single.has_total


@pytest.mark.parametrize("renderer", RENDERERS)
def test_the_picture_changes_with_the_numbers(renderer):
    first = report(result("a.png", 4.0, {"png": 5.0}), result("b.png", 2.0, {"png": 3.0}))
    second = report(result("a.png", 4.0, {"png": 5.0}), result("b.png", 6.5, {"png": 3.0}))
    drawn = [evalplot.render(r, renderer) for r in (first, second)]
    for picture in drawn:
        assert_sensible_png(png_of(picture))
    again = evalplot.render(first, renderer)
    assert np.array_equal(np.asarray(again), np.asarray(drawn[0]))  # deterministic
    assert drawn[0].size != drawn[1].size or not np.array_equal(np.asarray(drawn[0]), np.asarray(drawn[1]))


@pytest.mark.parametrize("renderer", RENDERERS)
def test_one_to_a_hundred_images_stay_within_the_size_caps(renderer):
    codecs = {name: 3.0 + i / 10 for i, name in enumerate(evaluation.CLASSICAL_CODECS)}
    one = evalplot.render(report(result("x.png", 4.0, codecs)), renderer)
    many = evalplot.render(
        report(*[result(f"a_rather_long_file_name_{i:03d}.png", 2 + i % 5, codecs) for i in range(100)]), renderer
    )
    assert_sensible_png(png_of(one))
    assert_sensible_png(png_of(many))
    assert one.width == evalplot.MIN_WIDTH
    assert many.width == evalplot.MAX_WIDTH  # wider with the images, up to the cap
    assert many.height > one.height  # names turned upright


def test_without_matplotlib_pillow_draws_and_matplotlib_is_refused_in_one_line(no_matplotlib):
    assert not evalplot.matplotlib_available()
    picture = evalplot.render(report(result("a.png", 4.0)))  # auto: Pillow
    assert_sensible_png(png_of(picture))
    with pytest.raises(RidecodecError, match=r"^matplotlib is not installed: pip install 'ridecodec\[plot\]'"):
        evalplot.render(report(result("a.png", 4.0)), "matplotlib")
    with pytest.raises(RidecodecError, match="nothing to plot"):
        evalplot.render(report())


def test_classical_codecs_on_tiny_images_are_plotted(tmp_path):
    pytest.importorskip("imagecodecs")
    image = tmp_path / "tiny.png"
    Image.fromarray(natural_like(12, 16)).save(image)
    measured = evaluation.evaluate([image], model="loco", device="cpu")
    chart = evalplot.chart_data(measured)
    assert [s.label for s in chart.series] == ["loco (.rdc file)", *evaluation.CLASSICAL_CODECS.values()]
    assert chart.series[1].values == [measured.images[0].classical_bpp["png"]]
    assert_sensible_png(png_of(evalplot.render(measured, "pillow")))


def test_bad_plot_paths_are_refused_in_one_line_before_the_evaluation(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated despite a bad --plot"))
    missing = run("eval", folder, "-m", "loco", "--no-classical", "-q", "--plot", tmp_path / "no" / "such" / "p.png")
    assert missing.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    assert "does not exist" in one_error_line(missing)

    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    refused = run("eval", folder, "-m", "loco", "--no-classical", "-q", "--plot", existing)
    assert refused.exit_code == EXIT_OUTPUT_EXISTS
    assert "--force" in one_error_line(refused)
    assert existing.read_bytes() == b"keep me"

    an_input = folder / "img1.png"
    before = an_input.read_bytes()
    for args in ([folder], [an_input]):
        replacing = run("eval", *args, "-m", "loco", "--no-classical", "-q", "--force", "--plot", an_input)
        assert replacing.exit_code != 0
        assert "is an input" in one_error_line(replacing)
    assert an_input.read_bytes() == before


def test_force_replaces_an_existing_plot(folder, tmp_path, no_matplotlib):
    out = tmp_path / "bpp.png"
    out.write_bytes(b"old")
    result_ = run("eval", folder, "-m", "loco", "--no-classical", "-q", "--force", "--plot", out)
    assert result_.exit_code == 0, result_.output
    assert result_.stderr == ""  # --quiet
    assert_sensible_png(out)
