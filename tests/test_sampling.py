"""Sampling: `ridecodec sample` and ridecodec.sampling (drawing images from a model's tables)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import engine, registry, sampling
from ridecodec.cli import main
from ridecodec.errors import ModelNotFoundError, PluginError
from ridecodec.models import CausalReach, DensityModel


class FixedTables(DensityModel):
    """Every pixel ~ the same table: only a few values possible, in known proportions."""

    name = "fixed-tables"
    version = "1"
    modes = ("L", "RGB")
    reach = CausalReach(up=0, left=0, right=0)
    exact_across_devices = True
    can_sample = True

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.register_buffer("table", torch.tensor(table, dtype=torch.float32))

    def begin(self, canvas):
        return lambda rows, cols, channel: self.table.expand(len(rows), -1).clone()

    def log_prob(self, images):
        probability = (self.table / self.table.sum()).double()
        return probability[images.long()].log().flatten(1).sum(1)


def support_table(values: dict[int, float]) -> np.ndarray:
    table = np.zeros(256)
    for value, weight in values.items():
        table[value] = weight
    return table


@pytest.fixture(scope="module")
def mcgsm():
    return registry.load_model("mcgsm")


def test_a_seed_reproduces_the_image_and_another_seed_does_not(mcgsm):
    first = sampling.sample(mcgsm, "L", 10, 12, seed=5)
    assert first.shape == (1, 10, 12) and first.dtype == np.uint8
    assert np.array_equal(first, sampling.sample(mcgsm, "L", 10, 12, seed=5))
    assert not np.array_equal(first, sampling.sample(mcgsm, "L", 10, 12, seed=6))


def test_the_draws_do_not_depend_on_the_threads(mcgsm):
    # an exact model's tables are the same on any thread count, and the draws are integers
    assert np.array_equal(
        sampling.sample(mcgsm, "RGB", 6, 9, seed=2, threads=1), sampling.sample(mcgsm, "RGB", 6, 9, seed=2, threads=2)
    )


def test_a_seed_gives_the_same_image_everywhere(mcgsm):
    # Pinned: the draws are PCG64's raw words reduced with integer arithmetic on an exact model's
    # integer tables, so nothing may change these pixels on any machine, thread count or numpy
    # release. A change here breaks every published seed (a new model version changes it too).
    pixels = sampling.sample(mcgsm, "L", 8, 8, seed=0)
    assert hashlib.sha256(pixels.tobytes()).hexdigest()[:16] == PINNED_MCGSM_SAMPLE


PINNED_MCGSM_SAMPLE = "cbdcb12a4a442281"


def test_sampling_drives_the_model_causally(mcgsm):
    """The tables the sampler drew from are the tables of the finished image, pixel for pixel: the
    sampler showed the model only what the decoder would have (had it peeked at later pixels, or
    written them late, they would differ). So the image costs, coded, what the draws' probabilities say."""
    drawn = sampling.fill(mcgsm, np.zeros((3, 7, 9), np.uint8), np.ones((7, 9), bool), sampling.Draws(3))
    scored = sampling.fill(mcgsm, drawn.pixels, np.zeros((7, 9), bool), None)
    assert np.array_equal(drawn.pixels, scored.pixels)
    assert np.array_equal(drawn.log2_probability, scored.log2_probability)
    bits = engine.code_length_bits(mcgsm, drawn.pixels)
    assert -drawn.total() / 2**sampling.LOG_BITS == pytest.approx(bits, rel=1e-4)
    image = drawn.pixels.transpose(1, 2, 0)
    assert np.array_equal(ridecodec.decompress(ridecodec.compress(image, model="mcgsm")), image)


def test_fill_keeps_the_known_pixels(mcgsm):
    known = np.arange(6 * 8, dtype=np.uint8).reshape(1, 6, 8) * 5
    missing = np.zeros((6, 8), bool)
    missing[2:4, 3:6] = True
    filled = sampling.fill(mcgsm, known, missing, sampling.Draws(0)).pixels
    assert np.array_equal(filled[:, ~missing], known[:, ~missing])


@pytest.mark.parametrize("scale", [1.0, 0.37], ids=["integer tables", "float tables"])
def test_values_come_from_the_model_support_in_its_proportions(scale):
    model = FixedTables(support_table({3: 1 * scale, 77: 2 * scale, 200: 5 * scale}))
    pixels = sampling.sample(model, "L", 64, 64, seed=1)
    values, counts = np.unique(pixels, return_counts=True)
    assert values.tolist() == [3, 77, 200]
    # 4096 draws: each share within 4 standard deviations of 1/8, 2/8, 5/8
    assert np.allclose(counts / pixels.size, [1 / 8, 2 / 8, 5 / 8], atol=4 * np.sqrt(0.25 / pixels.size))


def test_a_broken_table_is_the_plugins_fault():
    model = FixedTables(np.zeros(256))
    with pytest.raises(PluginError, match="fixed-tables"):
        sampling.sample(model, "L", 2, 2, seed=0)


def test_a_model_that_has_not_opted_in_is_refused():
    model = FixedTables(support_table({1: 1}))
    model.can_sample = False
    with pytest.raises(ModelNotFoundError, match="model 'fixed-tables' cannot sample"):
        sampling.sample(model, "L", 2, 2, seed=0)


def test_integer_logarithms_are_close_to_the_real_ones():
    values = np.unique(np.concatenate([np.arange(1, 5000), np.random.default_rng(0).integers(1, 2**52, 5000)]))
    fixed = sampling.log2_fixed(values) / 2**sampling.LOG_BITS
    assert np.all(np.abs(fixed - np.log2(values.astype(np.float64))) < 4 * 2.0**-sampling.LOG_BITS)
    assert np.array_equal(sampling.log2_fixed(2 ** np.arange(40)), np.arange(40) << sampling.LOG_BITS)


def test_draws_fall_in_their_ranges_evenly():
    totals = np.full(60000, 3)
    drawn = sampling.Draws(7).below(totals)
    assert drawn.min() == 0 and drawn.max() == 2
    assert np.allclose(np.bincount(drawn) / len(drawn), 1 / 3, atol=0.01)
    assert np.array_equal(drawn, sampling.Draws(7).below(totals))
    assert np.all(sampling.Draws(1).below(np.array([2**31, 1, 2**24])) < [2**31, 1, 2**24])


# --- the command ---------------------------------------------------------------------------------


def run(*arguments):
    return CliRunner().invoke(main, list(arguments))


def test_sample_writes_a_png_that_a_seed_reproduces(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    result = run("sample", "--model", "mcgsm", "--size", "9x7", "--mode", "RGB", "--seed", "4", "-o", str(first))
    assert result.exit_code == 0, result.output
    assert "seed 4" in result.output
    assert (
        run("sample", "--model", "mcgsm", "--size", "9x7", "--mode", "RGB", "--seed", "4", "-o", str(second)).exit_code
        == 0
    )
    image = Image.open(first)
    assert (image.size, image.mode) == ((9, 7), "RGB")
    assert first.read_bytes() == second.read_bytes()


def test_sample_without_a_seed_reports_the_one_it_used(tmp_path):
    result = run("sample", "--model", "mcgsm", "--size", "5x4", "-o", str(tmp_path / "a.png"))
    assert result.exit_code == 0, result.output
    seed = int(result.output.rsplit("seed ", 1)[1].split()[0])
    assert (
        run("sample", "--model", "mcgsm", "--size", "5x4", "--seed", str(seed), "-o", str(tmp_path / "b.png")).exit_code
        == 0
    )
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("ridecodec: error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_sample_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "a.png"
    out.write_bytes(b"keep me")
    result = run("sample", "--model", "mcgsm", "--size", "4x4", "-o", str(out))
    assert result.exit_code == 8
    assert "exists" in one_error_line(result)
    assert out.read_bytes() == b"keep me"
    assert run("sample", "--model", "mcgsm", "--size", "4x4", "-o", str(out), "--force").exit_code == 0
    assert Image.open(io.BytesIO(out.read_bytes())).size == (4, 4)


def test_sample_refuses_a_size_too_large_with_an_estimate(tmp_path):
    result = run(
        "sample", "--model", "loco", "--size", "300x200", "--max-pixels", "1000", "-o", str(tmp_path / "a.png")
    )
    assert result.exit_code == 4
    line = one_error_line(result)
    assert "60000 pixels" in line and "would take about" in line and "--max-pixels" in line
    assert not (tmp_path / "a.png").exists()


def test_sample_refuses_a_model_that_cannot_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(type(registry.load_model("loco")), "can_sample", False)
    result = run("sample", "--model", "loco", "--size", "4x4", "-o", str(tmp_path / "a.png"))
    assert result.exit_code == ModelNotFoundError.exit_code
    assert "model 'loco' cannot sample" in one_error_line(result)


def test_sample_refuses_a_mode_the_model_does_not_code(tmp_path, monkeypatch):
    # every model that samples codes gray and colour now: a gray-only rowlstm (its version 1)
    monkeypatch.setattr(type(registry.load_model("rowlstm")), "modes", ("L",))
    result = run("sample", "--model", "rowlstm", "--mode", "RGB", "--size", "4x4", "-o", str(tmp_path / "a.png"))
    assert result.exit_code == 4
    assert "does not code RGB" in one_error_line(result)


def test_sample_refuses_a_malformed_size(tmp_path):
    result = run("sample", "--size", "12", "-o", str(tmp_path / "a.png"))
    assert result.exit_code == 2 and "WIDTHxHEIGHT" in result.output


def test_a_primer_starts_the_drawing_and_is_cut_away(tmp_path):
    # loco predicts from the neighbours: a sample primed with white starts white, with black black
    loco = registry.load_model("loco")
    white = sampling.sample(loco, "L", 6, 10, seed=0, prime=np.full((1, 3, 4), 255, np.uint8))
    black = sampling.sample(loco, "L", 6, 10, seed=0, prime=np.zeros((1, 3, 4), np.uint8))
    assert white.shape == black.shape == (1, 6, 10)
    assert white[0, 0].mean() > 200 and black[0, 0].mean() < 55
    Image.new("L", (5, 5), 255).save(tmp_path / "white.png")
    result = run(
        "sample",
        "--model",
        "loco",
        "--size",
        "10x6",
        "--seed",
        "0",
        "--prime",
        str(tmp_path / "white.png"),
        "-o",
        str(tmp_path / "a.png"),
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), white[0])


def test_models_says_which_can_sample():
    import json

    entries = {entry["name"]: entry for entry in json.loads(run("models", "--json").output)}
    assert entries["mcgsm"]["can_sample"] is True
    assert "can sample: yes" in run("models").output
