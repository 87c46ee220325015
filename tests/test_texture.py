"""Texture synthesis as in the RIDE paper: `ridecodec train ride --data texture.png` trains on the
regions of one image, one held out, and `ridecodec sample --weights` draws new texture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ridecodec.cli import main
from ridecodec.testing import synthetic_texture
from ridecodec.training.data import Region, list_images, load_planes, split_images, texture_regions


@pytest.fixture
def texture(tmp_path) -> Path:
    path = tmp_path / "bricks.png"
    Image.fromarray(synthetic_texture("regular", 64, 72, seed=1)).save(path)
    return path


def test_a_texture_is_cut_into_regions_that_tile_it(texture):
    regions = texture_regions(texture)
    assert len(regions) == 4  # 64 x 72: regions of at least 32 pixels
    covered = np.zeros((64, 72), int)
    for region in regions:
        covered[region.top : region.top + region.height, region.left : region.left + region.width] += 1
    assert (covered == 1).all()
    planes = load_planes(regions[3], "gray")
    whole = np.asarray(Image.open(texture))
    region = regions[3]
    assert torch.equal(planes[0], torch.from_numpy(whole[region.top :, region.left :].copy()))


def test_a_large_texture_gives_sixteen_regions_as_in_the_paper(tmp_path):
    path = tmp_path / "large.png"
    Image.fromarray(synthetic_texture("irregular", 160, 160)).save(path)
    regions = list_images([path])
    assert len(regions) == 16 and all(isinstance(region, Region) for region in regions)
    train, held_out = split_images(regions, 0.06, seed=0)
    assert len(held_out) == 1 and len(train) == 15


def test_textures_are_what_their_kind_says():
    regular = synthetic_texture("regular", 32, 64).astype(float)
    # a brick wall repeats every 16 rows (two courses) in its mortar lines
    assert np.all(regular[0::8].mean(axis=1) < 110) and np.all(regular[4::8].mean(axis=1) > 120)
    assert np.array_equal(synthetic_texture("irregular", 20, 20, 3), synthetic_texture("irregular", 20, 20, 3))
    with pytest.raises(ValueError, match="kind must be"):
        synthetic_texture("woven", 8, 8)


def test_train_ride_on_one_texture_then_sample_it(texture, tmp_path):
    weights, log = tmp_path / "tuned.pt", tmp_path / "log.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "ride",
            "--data",
            str(texture),
            "--out",
            str(weights),
            "--log",
            str(log),
            "--hidden",
            "4",
            "--components",
            "2",
            "--scales",
            "1",
            "--features",
            "4",
            "--patch-sizes",
            "12",
            "--epochs",
            "1",
            "--patches-per-image",
            "8",
            "--lbfgs-steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in log.read_text().splitlines()]
    data = next(record for record in records if record["event"] == "data")
    assert (data["train_images"], data["validation_images"]) == (3, 1)  # regions: one held out

    samples = []
    for model_weights in (str(weights), None):
        out = tmp_path / f"sample{len(samples)}.png"
        arguments = ["sample", "--model", "ride", "--size", "16x12", "--seed", "2", "-o", str(out)]
        result = CliRunner().invoke(main, arguments + (["--weights", model_weights] if model_weights else []))
        assert result.exit_code == 0, result.output
        samples.append(np.asarray(Image.open(out)))
    assert samples[0].shape == (12, 16)
    assert not np.array_equal(samples[0], samples[1])  # drawn from the texture's weights, not the shipped ones
