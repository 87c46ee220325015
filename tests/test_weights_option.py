"""Weights of one's own (`--weights FILE`, API ``weights=``): trained weights code and decode from
the command line, the file records their digest, and a decoder without them says what to pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec.cli import main
from ridecodec.errors import InputError, ModelNotFoundError, WeightsMismatchError
from ridecodec.models import mcgsm
from ridecodec.testing import synthetic_image

SHIPPED = Path(ridecodec.__file__).parent / "weights"


@pytest.fixture(scope="module")
def own_weights(tmp_path_factory) -> Path:
    """mcgsm's shipped gray weights, nudged: what `ridecodec train mcgsm` writes, other numbers."""
    config, models, _ = mcgsm.load_weights(SHIPPED / "mcgsm-gray.pt")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in models.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("weights") / "mine.pt"
    mcgsm.save_weights(path, config, models, {"note": "test"})
    return path


def test_own_weights_code_and_are_needed_to_decode(own_weights):
    image = synthetic_image(18, 21)
    data = ridecodec.compress(image, model="mcgsm", weights=own_weights)
    shipped_digest = ridecodec.load_model("mcgsm").weights_digest()
    assert ridecodec.read_header(data).weights_digest != shipped_digest
    with pytest.raises(WeightsMismatchError, match="--weights FILE"):
        ridecodec.decompress(data)
    assert np.array_equal(ridecodec.decompress(data, weights=own_weights), image)


def test_gray_weights_keep_the_shipped_colour_weights(own_weights):
    image = synthetic_image(9, 11, 3)
    data = ridecodec.compress(image, model="mcgsm", weights=own_weights)
    assert np.array_equal(ridecodec.decompress(data, weights=own_weights), image)


def test_other_weights_than_the_files_are_refused_in_one_line(own_weights, tmp_path):
    data = ridecodec.compress(synthetic_image(8, 9), model="mcgsm")
    with pytest.raises(WeightsMismatchError, match=r"mine\.pt gives"):
        ridecodec.decompress(data, weights=own_weights)


def test_unusable_weights_files_are_input_errors(tmp_path):
    image = synthetic_image(6, 7)
    (tmp_path / "text.pt").write_text("not weights")
    ride_weights = SHIPPED / "ride-gray.pt"
    for path, message in [
        (tmp_path / "none.pt", "no such"),
        (tmp_path / "text.pt", "not usable as mcgsm"),
        (ride_weights, "not usable as mcgsm"),
    ]:
        with pytest.raises(InputError, match=message):
            ridecodec.compress(image, model="mcgsm", weights=path)
    with pytest.raises(ModelNotFoundError, match="takes no weights"):
        ridecodec.compress(image, model="loco", weights=tmp_path / "text.pt")


def test_weights_option_on_the_command_line(own_weights, tmp_path):
    Image.fromarray(synthetic_image(12, 14)).save(tmp_path / "a.png")
    runner = CliRunner()
    done = runner.invoke(
        main, ["compress", str(tmp_path / "a.png"), "-m", "mcgsm", "--weights", str(own_weights), "-q"]
    )
    assert done.exit_code == 0, done.output
    refused = runner.invoke(main, ["decompress", str(tmp_path / "a.rdc"), "-o", str(tmp_path / "b.png")])
    assert refused.exit_code == 6 and "--weights FILE" in refused.output
    decoded = runner.invoke(
        main, ["decompress", str(tmp_path / "a.rdc"), "-o", str(tmp_path / "b.png"), "-w", str(own_weights), "-q"]
    )
    assert decoded.exit_code == 0, decoded.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(Image.open(tmp_path / "a.png")))


def test_eval_measures_own_weights(own_weights, tmp_path):
    """`ridecodec eval --weights FILE` codes with the file's weights (how trained weights are
    compared with the shipped ones before they ship), and says so in its report."""
    Image.fromarray(synthetic_image(12, 14)).save(tmp_path / "a.png")
    runner = CliRunner()
    sizes = {}
    for name, extra in (("shipped", []), ("own", ["--weights", str(own_weights)])):
        done = runner.invoke(
            main, ["eval", str(tmp_path), "-m", "mcgsm", "--no-classical", "--verify", "--json", "-q", *extra]
        )
        assert done.exit_code == 0, done.output
        report = json.loads(done.stdout)
        assert report["totals"]["verified"] is True
        assert report["weights"] == (str(own_weights) if extra else None)
        sizes[name] = report["images"][0]["likelihood_bpp"]
    assert sizes["own"] != sizes["shipped"]  # the nudged weights were the ones measured
