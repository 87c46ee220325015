"""The MCGSM's parts: neighbourhoods, whitening, discretization, weights files and training.

(The codec contract of the shipped model, likelihood against stepped tables, causality, file
size, is checked with every other installed model in test_models.py.)"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ridecodec import engine, exact_cpu
from ridecodec.cli import main
from ridecodec.models.discretize import mixture_bin_log_mass, mixture_pmf
from ridecodec.models.mcgsm import MCGSMConfig, MCGSMModel, build_channel_models, load_weights, save_weights
from ridecodec.models.neighbourhood import MID_GREY, CausalNeighbourhood
from ridecodec.models.whitening import ConditionalWhitening
from ridecodec.training.data import split_images
from ridecodec.training.mcgsm import TrainingOptions, train_mcgsm

from conftest import natural_like

# -- neighbourhood ------------------------------------------------------------------------------


def test_neighbourhood_shape_matches_the_paper_default():
    hood = CausalNeighbourhood(up=2, left=2, right=2)
    assert hood.size == 12
    assert (0, -1) in hood.offsets and (-2, 2) in hood.offsets and (0, 0) not in hood.offsets


def _raster_positions(height, width):
    rows = torch.arange(height).repeat_interleave(width)
    return rows, torch.arange(width).repeat(height)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_neighbourhood_reads_only_earlier_pixels(channel):
    """Changing every pixel at or after (i, j) in raster order (and channels >= channel of
    (i, j) itself) never changes what (i, j) reads."""
    hood = CausalNeighbourhood(up=3, left=2, right=1)
    image = torch.from_numpy(natural_like(9, 11, channels=3).transpose(2, 0, 1).copy())
    rows, cols = _raster_positions(9, 11)
    reference = hood.gather(image, rows, cols, channel)
    for position in [0, 1, 10, 11, 12, 50, 98]:
        scrambled = image.clone().reshape(3, -1)
        scrambled[:, position + 1 :] = torch.randint(0, 256, scrambled[:, position + 1 :].shape, dtype=torch.uint8)
        scrambled[channel:, position] = 255 - scrambled[channel:, position]
        scrambled = scrambled.reshape(image.shape)
        here = rows[position : position + 1], cols[position : position + 1]
        assert torch.equal(hood.gather(scrambled, *here, channel), reference[position : position + 1])


def test_neighbourhood_border_fill():
    hood = CausalNeighbourhood(up=1, left=1, right=1)  # offsets: (-1,-1) (-1,0) (-1,1) (0,-1)
    plane = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
    read = lambda r, c: hood.gather(plane, torch.tensor([r]), torch.tensor([c]))[0].tolist()
    assert read(0, 0) == [MID_GREY] * 4  # nothing is known yet
    assert read(0, 2) == [1, 1, 1, 1]  # first row: the left neighbour everywhere
    assert read(1, 0) == [0, 0, 1, 0]  # first column: columns clamped, own row from above
    assert read(2, 3) == [6, 7, 7, 10]  # last column: right neighbour clamped
    assert read(1, 2) == [1, 2, 3, 5]  # interior: plain neighbours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_the_compiled_gather_reads_what_the_torch_gather_reads(dtype, monkeypatch):
    """On the CPU one canvas's neighbourhoods are read by a compiled loop; it must give the torch
    code's vectors everywhere: borders, later rows, every channel, a canvas that is a slice."""
    hood = CausalNeighbourhood(up=3, left=2, right=4)
    canvas = torch.from_numpy(natural_like(13, 9, channels=4).transpose(2, 0, 1).copy())
    rows, cols = _raster_positions(13, 9)
    for planes in (canvas, canvas[1:]):
        for channel in range(len(planes)):
            compiled = hood.gather(planes, rows, cols, channel, dtype)
            with monkeypatch.context() as torch_only:
                torch_only.setattr(exact_cpu, "enabled", False)
                reference = hood.gather(planes, rows, cols, channel, dtype)
            assert compiled.dtype == dtype and torch.equal(compiled, reference)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_a_prepared_gatherer_reads_what_gather_reads_and_sees_later_writes(dtype):
    """A coding pass prepares its gather once per canvas (``gatherer``); it must read what
    ``gather`` reads, on a canvas and on a slice of one, including the pixels written after it
    was made (the engine writes each step's pixels into the canvas)."""
    hood = CausalNeighbourhood(up=3, left=2, right=4)
    image = torch.from_numpy(natural_like(13, 9, channels=4).transpose(2, 0, 1).copy())
    rows, cols = _raster_positions(13, 9)
    canvas = torch.zeros_like(image)
    for planes in (canvas, canvas[1:]):
        gatherers = [hood.gatherer(planes, channel, dtype) for channel in range(len(planes))]
        canvas.copy_(image)  # written after the gatherers were made
        for channel, gather in enumerate(gatherers):
            assert torch.equal(gather(rows, cols), hood.gather(planes, rows, cols, channel, dtype))
        canvas.zero_()


def test_precomputed_tables_follow_the_rule():
    """The step loop reads indices from per-width tables; they must equal the rule everywhere."""
    hood = CausalNeighbourhood(up=3, left=2, right=4)
    rows, cols = _raster_positions(11, 9)
    assert torch.equal(torch.stack(hood.flat_indices(9, rows, cols)), torch.stack(hood._rule(9, rows, cols)))


# -- whitening ----------------------------------------------------------------------------------


def test_conditional_whitening_whitens_and_predicts():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=generator) @ torch.tensor([[3.0, 1, 0], [0, 2, 0.5], [0, 0, 1]]) + 100
    y = x @ torch.tensor([0.5, -0.2, 0.3]) + 7 + 2 * torch.randn(20000, generator=generator)
    whitening = ConditionalWhitening.fit(x, y, ridge=0)
    x_w = whitening.whiten_inputs(x.double().float())
    assert torch.allclose(torch.cov(x_w.T.double()), torch.eye(3, dtype=torch.float64), atol=1e-3)
    y_w = whitening.whiten_outputs(y, x_w)
    assert abs(float(y_w.mean())) < 1e-3 and abs(float(y_w.std()) - 1) < 1e-3
    assert math.isclose(float(whitening.y_scale), 2.0, rel_tol=0.02)
    assert math.isclose(whitening.log_jacobian(), -math.log(float(whitening.y_scale)))


# -- discretization -----------------------------------------------------------------------------


def _random_mixture(n, k, seed=0):
    generator = torch.Generator().manual_seed(seed)
    log_weights = torch.log_softmax(torch.randn(n, k, generator=generator), 1)
    means = torch.rand(n, k, generator=generator) * 300 - 20  # some beyond either end
    inverse_stds = torch.exp(torch.randn(n, k, generator=generator) * 1.5 - 1)
    return log_weights, means, inverse_stds


def test_pmf_is_a_distribution_with_a_floor():
    log_weights, means, inverse_stds = _random_mixture(500, 5)
    table = mixture_pmf(log_weights.exp(), means, inverse_stds, floor=2.0**-12)
    assert table.shape == (500, 256) and table.dtype == torch.float32
    assert torch.allclose(table.double().sum(1), torch.ones(500, dtype=torch.float64), atol=1e-5)
    assert float(table.min()) >= 2.0**-12 / 256 * 0.999


def test_table_and_training_objective_agree():
    """Both implementations of "mass of the value's bin" give the same numbers (the training
    loss is the coded size)."""
    log_weights, means, inverse_stds = _random_mixture(400, 4, seed=1)
    values = torch.randint(0, 256, (400,), generator=torch.Generator().manual_seed(2))
    values[:5] = torch.tensor([0, 255, 0, 255, 128])
    table = mixture_pmf(log_weights.exp(), means, inverse_stds, floor=1e-3).double()
    from_table = torch.log(table[torch.arange(400), values])
    direct = mixture_bin_log_mass(values, log_weights.exp().double(), means.double(), inverse_stds.double(), 1e-3)
    # float32 tables are differences of cumulative sums near 1: masses to within ~1e-7 each
    # (the floor, 2^-12 / 256 here ~ 4e-6, covers what they cannot resolve)
    assert torch.allclose(from_table.exp(), direct.exp(), rtol=1e-4, atol=1e-6)


def test_edge_bins_take_the_tails():
    one = lambda mean: mixture_pmf(torch.ones(1, 1), torch.tensor([[mean]]), torch.tensor([[1.0]]), floor=0.0)[0]
    assert float(one(-50.0)[0]) == pytest.approx(1.0) and float(one(400.0)[255]) == pytest.approx(1.0)
    assert float(one(0.0)[0]) == pytest.approx(0.5 + 0.3829 / 2, abs=1e-3)  # half the mass below 0


# -- weights files ------------------------------------------------------------------------------


class _Sneaky:
    """Stands for any object whose unpickling could run code."""


def test_weights_round_trip_and_refuse_pickles(tmp_path):
    config = MCGSMConfig(num_components=3, num_scales=2, num_features=4)
    models = build_channel_models(config, 1)
    models[0].mcgsm.initialize(torch.Generator().manual_seed(0))
    save_weights(tmp_path / "w.pt", config, models, {"note": "test"})
    loaded_config, loaded, metadata = load_weights(tmp_path / "w.pt")
    assert loaded_config == config and metadata == {"note": "test"}
    assert all(torch.equal(a, b) for a, b in zip(models.state_dict().values(), loaded.state_dict().values()))
    torch.save({"format": "ridecodec-mcgsm-1", "payload": _Sneaky()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):  # no code runs from a file
        load_weights(tmp_path / "bad.pt")


# -- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    for seed in range(6):
        Image.fromarray(natural_like(24, 30, channels=3, seed=seed)).save(folder / f"{seed}.png")
    return folder


def _options(folder, tmp_path, **changes):
    config = MCGSMConfig(num_components=4, num_scales=2, num_features=4, table_components=3)
    base = {
        "data": [str(folder)],
        "out": str(tmp_path / "w.pt"),
        "model": config,
        "samples_per_image": 300,
        "batch_size": 256,
        "max_epochs": 2,
        "validation_fraction": 0.34,
        "checkpoint": str(tmp_path / "ck.pt"),
        "log": str(tmp_path / "log.jsonl"),
    }
    return TrainingOptions(**{**base, **changes})


def _assert_round_trip(model, pixels):
    payload = engine.encode_pixels(model, pixels)
    assert np.array_equal(engine.decode_pixels(model, payload, pixels.shape), pixels)


def test_split_holds_back_whole_images():
    paths = [f"{i}.png" for i in range(10)]
    train, validation = split_images(paths, 0.2, seed=3)
    assert len(validation) == 2 and not set(train) & set(validation)
    assert split_images(paths, 0.2, seed=3) == (train, validation)


def test_training_writes_usable_weights_and_a_log(image_folder, tmp_path):
    summary = train_mcgsm(_options(image_folder, tmp_path))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    initial = next(r for r in records if r["event"] == "initial")["validation_bits_per_pixel"]
    assert summary["validation_bits_per_pixel"] < initial  # training improved on its start
    assert summary["images"] == {"train": 4, "validation": 2} and summary["epochs"] == 2
    model = MCGSMModel({"L": tmp_path / "w.pt"})
    _assert_round_trip(model, natural_like(12, 16)[None])


def test_training_resumes_from_its_checkpoint(image_folder, tmp_path):
    train_mcgsm(_options(image_folder, tmp_path, max_epochs=1))
    resumed = train_mcgsm(_options(image_folder, tmp_path, max_epochs=2, resume=True))
    straight = train_mcgsm(
        _options(image_folder, tmp_path / "..", max_epochs=2, checkpoint=None, out=str(tmp_path / "s.pt"))
    )
    assert resumed["epochs"] == 2
    assert resumed["validation_bits_per_pixel"] == pytest.approx(straight["validation_bits_per_pixel"], abs=1e-6)


def test_fine_tuning_starts_from_given_weights(image_folder, tmp_path):
    first = train_mcgsm(_options(image_folder, tmp_path, max_epochs=1, checkpoint=None))
    tuned_options = _options(
        image_folder, tmp_path, init=str(tmp_path / "w.pt"), out=str(tmp_path / "t.pt"), checkpoint=None, max_epochs=1
    )
    tuned_options.model = MCGSMConfig(num_components=4, num_scales=2, num_features=4, table_components=2)
    tuned = train_mcgsm(tuned_options)
    assert tuned["initialized_from"]["metadata"]["validation_bits_per_pixel"] == first["validation_bits_per_pixel"]
    config, _, _ = load_weights(tmp_path / "t.pt")
    assert config.table_components == 2  # the new table size, the old mixture
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    starts = [r["validation_bits_per_pixel"] for r in records if r["event"] == "initial"]
    assert starts[1] < starts[0]  # the second run started from the trained weights, not afresh


def test_rgb_training_and_coding(image_folder, tmp_path):
    train_mcgsm(_options(image_folder, tmp_path, color="rgb", out=str(tmp_path / "rgb.pt"), max_epochs=1))
    train_mcgsm(_options(image_folder, tmp_path, out=str(tmp_path / "gray.pt"), max_epochs=1, checkpoint=None))
    model = MCGSMModel({"L": tmp_path / "gray.pt", "RGB": tmp_path / "rgb.pt"})
    assert model.modes == ("L", "RGB", "RGBA")
    for channels in (3, 4):
        image = natural_like(10, 13, channels=channels, seed=channels)
        _assert_round_trip(model, np.ascontiguousarray(image.transpose(2, 0, 1)))


def test_train_command_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["train", "mcgsm", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "w.pt")])
    assert missing.exit_code == 3 and "nope" in missing.output
    (tmp_path / "w.pt").write_bytes(b"keep me")
    exists = runner.invoke(main, ["train", "mcgsm", "--data", str(tmp_path), "--out", str(tmp_path / "w.pt")])
    assert exists.exit_code == 8 and (tmp_path / "w.pt").read_bytes() == b"keep me"
    (tmp_path / "images").mkdir()
    Image.fromarray(natural_like(20, 20)).save(tmp_path / "images" / "a.png")
    too_few = runner.invoke(
        main, ["train", "mcgsm", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "v.pt")]
    )
    assert too_few.exit_code == 3 and "at least 2 images" in too_few.output
    Image.fromarray(natural_like(20, 20, seed=1)).save(tmp_path / "images" / "b.png")
    bad_init = runner.invoke(
        main,
        [
            "train",
            "mcgsm",
            "--data",
            str(tmp_path / "images"),
            "--out",
            str(tmp_path / "v.pt"),
            "--init",
            str(tmp_path / "w.pt"),
        ],
    )
    assert bad_init.exit_code == 3 and "--init" in bad_init.output and "Traceback" not in bad_init.output
    nowhere = runner.invoke(
        main, ["train", "mcgsm", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "missing" / "w.pt")]
    )
    assert nowhere.exit_code == 3 and "folder does not exist" in nowhere.output
    (tmp_path / "images" / "c.png").write_bytes(b"not a png")
    broken = runner.invoke(
        main, ["train", "mcgsm", "--data", str(tmp_path / "images"), "--out", str(tmp_path / "v.pt")]
    )
    assert broken.exit_code == 3 and "c.png" in broken.output and len(broken.output.strip().splitlines()) == 1
    assert not (tmp_path / "v.pt").exists() and (tmp_path / "w.pt").read_bytes() == b"keep me"


def test_interrupted_training_leaves_no_weights(image_folder, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ridecodec.training.mcgsm.sample_pairs", interrupt)
    result = CliRunner().invoke(main, ["train", "mcgsm", "--data", str(image_folder), "--out", str(tmp_path / "w.pt")])
    assert result.exit_code == 130 and "interrupted" in result.output and not (tmp_path / "w.pt").exists()
