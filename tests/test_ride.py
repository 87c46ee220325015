"""RIDE: spatial LSTM scans against stepping, the codec contract with small random weights
(explicit weight files, so that every path is exercised quickly; the shipped weights go through
the contract tests of test_models.py), memory, training and its command."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ridecodec import engine, exact
from ridecodec.cli import main
from ridecodec.engine import Wavefront
from ridecodec.errors import InputError
from ridecodec.models import ride as ride_module
from ridecodec.models.neighbourhood import CausalNeighbourhood
from ridecodec.models.ride import RIDEConfig, RIDEModel, build_channel_models, conditioning, load_weights, save_weights
from ridecodec.models.slstm import CELL_LIMIT, ExactSpatialLSTM, ExactSpatialLSTMStepper, SpatialLSTMStack
from ridecodec.models.whitening import ConditionalWhitening
from ridecodec.testing import planes_of as _planes, stepped_tables
from ridecodec.training.ride import RIDETrainingOptions, sample_patches, train_ride

from conftest import natural_like


def _random_weights(path, channels: int, seed: int = 0, **changes) -> RIDEConfig:
    """A small RIDE with random spatial LSTM and MCGSM weights and a whitening fitted on a
    synthetic image, written to ``path``."""
    config = RIDEConfig(
        **{
            "num_layers": 2,
            "num_hiddens": 5,
            "num_components": 3,
            "num_scales": 2,
            "num_features": 3,
            "table_components": 2,
            **changes,
        }
    )
    models = build_channel_models(config, channels)
    image = torch.from_numpy(_planes(natural_like(20, 24, channels, seed=seed)))
    hood = CausalNeighbourhood(config.up, config.left, config.right)
    rows, cols = torch.arange(20).repeat_interleave(24), torch.arange(24).repeat(20)
    x = hood.gather(image, rows, cols, channels - 1)
    generator = torch.Generator().manual_seed(seed)
    for channel, model in enumerate(models):
        fitted = ConditionalWhitening.fit(x[:, : model.whitening.x_mean.numel()], image[channel, rows, cols].float())
        model.whitening.load_state_dict(fitted.state_dict())
        model.initialize(generator)
        with torch.no_grad():  # livelier than the initial near-uniform gates, to test more of the math
            model.mcgsm.features.mul_(30)
            model.mcgsm.priors.normal_(generator=generator)
    save_weights(path, config, models, {"note": "random"})
    return config


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ride")
    _random_weights(folder / "gray.pt", 1, seed=1)
    _random_weights(folder / "rgb.pt", 3, seed=2, right=1, extended=True)
    return folder


@pytest.fixture(scope="module")
def model(weights_folder):
    """The exact model, quantized on loading from random float weights."""
    return RIDEModel({"L": weights_folder / "gray.pt", "RGB": weights_folder / "rgb.pt"})


@pytest.fixture(scope="module")
def float_channels(weights_folder):
    """The float channel models those weights hold, as training uses them: by channel count."""
    return {1: load_weights(weights_folder / "gray.pt")[1], 3: load_weights(weights_folder / "rgb.pt")[1]}


# -- spatial LSTM: the scan and the stepping compute the same states ----------------------------


def _stack(layers, extended, dim_in=4, hidden=6, seed=0):
    stack = SpatialLSTMStack(dim_in, hidden, layers, extended)
    stack.initialize(torch.Generator().manual_seed(seed))
    return stack


def _first_pre(stack, inputs):
    first = stack.layers[0]
    return (inputs.flatten(0, 2) @ first.input_weights + first.bias).view(*inputs.shape[:3], -1)


@pytest.mark.parametrize(("layers", "extended"), [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("right", [0, 2, None])  # None: raster order
def test_scan_equals_exact_stepping(layers, extended, right):
    """The float scan (training) and the exact layers stepped in the coder's order (coding) give
    the same states, to the quantization's precision, in every schedule."""
    stack = _stack(layers, extended)
    height, width = 7, 9
    pre = _first_pre(stack, torch.randn(2, height, width, 4, generator=torch.Generator().manual_seed(1)))
    exact_layers = [ExactSpatialLSTM.quantize(layer, stacked=l > 0) for l, layer in enumerate(stack.layers)]
    with torch.no_grad():
        scanned, _ = stack.scan(pre)
        for b in range(2):
            stepper = ExactSpatialLSTMStepper(exact_layers, width, torch.device("cpu"))
            stepped = torch.full((height, width, 6), math.nan, dtype=torch.float64)
            for _, rows, cols in Wavefront(height, width, right).steps():
                first = exact.to_fixed(pre[b, rows, cols], exact.PRE_BITS).to(stepper.dtype)
                stepped[rows, cols] = exact.from_fixed(stepper.step(first, cols).to(torch.int64), exact.ACT_BITS)
            assert torch.allclose(stepped, scanned[b].double(), atol=2e-3)
    assert scanned.abs().mean() > 0.01  # not trivially zero


def test_scan_follows_the_paper_equations():
    """Position by position, with the equations written out, for a 3 x 4 image."""
    stack = _stack(1, False, dim_in=2, hidden=3)
    layer = stack.layers[0]
    inputs = torch.randn(1, 3, 4, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scanned, _ = stack.scan(_first_pre(stack, inputs))
        h = {(-1, j): torch.zeros(3) for j in range(4)} | {(i, -1): torch.zeros(3) for i in range(3)}
        c = dict(h)
        for i in range(3):
            for j in range(4):
                z = (
                    torch.cat([inputs[0, i, j], h[i, j - 1], h[i - 1, j]])
                    @ torch.cat([layer.input_weights, layer.recurrent_weights])
                    + layer.bias
                )
                gate_i, gate_o, f_c, f_r, g = z.view(5, 3)
                c[i, j] = (
                    torch.tanh(g) * torch.sigmoid(gate_i)
                    + c[i, j - 1] * torch.sigmoid(f_c)
                    + c[i - 1, j] * torch.sigmoid(f_r)
                )
                h[i, j] = torch.tanh(c[i, j] * torch.sigmoid(gate_o))
                assert torch.allclose(scanned[0, i, j], h[i, j], atol=1e-6)


def test_scan_in_bands_equals_one_scan():
    stack = _stack(2, True)
    pre = _first_pre(stack, torch.randn(2, 10, 6, 4, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        whole, _ = stack.scan(pre)
        top, carried = stack.scan(pre[:, :4])
        rest, _ = stack.scan(pre[:, 4:], carried)
    assert torch.allclose(torch.cat([top, rest], 1), whole, atol=1e-6)


def test_memory_stays_finite_when_forget_gates_saturate():
    """f_c = f_r = 1 doubles c along every diagonal: float32 overflows after ~128 diagonals
    unless the cells are bounded."""
    stack = _stack(1, False, dim_in=4, hidden=2)
    with torch.no_grad():
        stack.layers[0].bias.copy_(torch.tensor([20.0, 20, 20, 20, 20, 20, 20, 20, 5, 5]))  # i, o, f_c, f_r, g
    pre = _first_pre(stack, torch.zeros(1, 100, 100, 4))
    with torch.no_grad():
        h, ((_, last_c),) = stack.scan(pre)
    assert torch.isfinite(h).all() and torch.isfinite(last_c).all() and last_c.abs().max() == CELL_LIMIT


def test_batched_conditioning_equals_gather():
    hood = CausalNeighbourhood(up=2, left=3, right=1)
    images = torch.from_numpy(np.stack([_planes(natural_like(7, 9, 3, seed=s)) for s in range(2)]))
    rows, cols = torch.arange(2, 6).repeat_interleave(9), torch.arange(9).repeat(4)
    batched = conditioning(hood, images, 2, first_row=2, last_row=6)
    for b in range(2):
        assert torch.equal(batched[b].reshape(36, -1), hood.gather(images[b], rows, cols, 2))


def test_stepping_memory_grows_with_width_not_height(model):
    sizes = {}
    for height, width in [(5, 16), (80, 16), (5, 32)]:
        steps = model.begin(torch.zeros(1, height, width, dtype=torch.uint8))
        sizes[height, width] = steps.state_elements()
    assert sizes[5, 16] == sizes[80, 16]
    # 2 layers x (h, c) x (W + 1) columns x 5 units
    assert sizes[5, 16] == 2 * 2 * 17 * 5 and sizes[5, 32] == 2 * 2 * 33 * 5


# -- the codec contract ---------------------------------------------------------------------------


def test_reach_is_the_neighbourhoods_to_the_right(model):
    # the gray neighbourhood reaches 2 columns right, the colour one 1: the schedule needs 2
    assert model.reach.right == 2 and math.isinf(model.reach.up) and math.isinf(model.reach.left)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_log_prob_equals_stepped_probabilities(model, float_channels, channels):
    pixels = _planes(natural_like(8, 11, channels, seed=channels))
    tables, symbols = stepped_tables(model, pixels)
    assert (tables > 0).all()
    stepped = torch.log(tables.double()[torch.arange(len(symbols)), symbols] / tables.double().sum(1)).sum()
    log_prob = model.log_prob(torch.from_numpy(pixels)[None])
    assert log_prob.shape == (1,) and log_prob.dtype == torch.float64
    assert math.isclose(float(log_prob), float(stepped), rel_tol=1e-12)  # the same tables, summed in another order
    # training's objective (the float model's bins' masses) is the same number, to the
    # quantization's cost
    planes = torch.from_numpy(pixels)[None]
    plan = [
        (float_channels[3 if channels > 1 else 1][c] if c < 3 else float_channels[1][0], hood, sl, index)
        for c, (_, hood, sl, index) in enumerate(model._plan(channels))
    ]
    with torch.no_grad():
        direct = sum(
            m.log_likelihood(hood, planes[:, sl], index, planes[:, c]) for c, (m, hood, sl, index) in enumerate(plan)
        )
    assert math.isclose(float(direct), float(stepped), rel_tol=1e-4)


def test_scan_in_bands_and_batches(model, float_channels, monkeypatch):
    """The whole-image scan (training's validation) gives the same likelihoods image by image,
    in one batch and band of rows by band of rows (states handed down between bands)."""
    images = torch.from_numpy(np.stack([_planes(natural_like(9, 7, 3, seed=s)) for s in range(3)]))
    plan = model._plan(3)[1]
    model_c = float_channels[3][1]

    def scanned(batch):
        with torch.no_grad():
            return model_c.log_likelihood(plan.neighbourhood, batch[:, plan.planes], plan.channel, batch[:, 1])

    whole = scanned(images)
    singles = torch.cat([scanned(images[i : i + 1]) for i in range(3)])
    monkeypatch.setattr(ride_module, "BAND_ELEMENTS", 1)  # one row per band
    banded = scanned(images)
    assert torch.allclose(whole, singles) and torch.allclose(whole, banded)


@pytest.mark.parametrize(("channels", "channel"), [(1, 0), (3, 0), (3, 2)])
def test_model_is_causal(model, channels, channel):
    """Changing every pixel after (i, j) in raster order, and channels >= channel of (i, j),
    never changes the tables of earlier pixels, nor those of (i, j) below ``channel``; and
    revealing the whole image at once changes nothing. (Gray and colour have different right
    reaches: the schedule must suit both.)"""
    pixels = _planes(natural_like(6, 7, channels, seed=4))
    honest, _ = stepped_tables(model, pixels)
    peeking, _ = stepped_tables(model, pixels, reveal_everything=True)
    assert torch.equal(honest, peeking)
    # the tables' positions and channels, in the schedule's order
    order = [
        (int(r) * 7 + int(k), c)
        for _, rows, cols in Wavefront(6, 7, model.reach.right).steps()
        for c in range(channels)
        for r, k in zip(rows, cols)
    ]
    generator = np.random.default_rng(0)
    for position in [0, 8, 20, 40]:
        scrambled = pixels.reshape(channels, -1).copy()
        scrambled[:, position + 1 :] = generator.integers(0, 256, scrambled[:, position + 1 :].shape)
        scrambled[channel:, position] = 255 - scrambled[channel:, position]
        tables, _ = stepped_tables(model, scrambled.reshape(pixels.shape))
        earlier = torch.tensor([p < position or (p == position and c <= channel) for p, c in order])
        assert torch.equal(tables[earlier], honest[earlier])
        assert not torch.equal(tables[~earlier], honest[~earlier])  # the rest did see the change


@pytest.mark.parametrize("shape", [(1, 9, 13), (3, 10, 7), (4, 5, 6), (1, 12, 1), (3, 1, 9), (1, 1, 1)])
def test_round_trip(model, shape):
    channels, height, width = shape
    pixels = _planes(natural_like(height, width, channels, seed=sum(shape)))
    payload = engine.encode_pixels(model, pixels)
    assert np.array_equal(engine.decode_pixels(model, payload, pixels.shape), pixels)
    # and the payload costs what log_prob says
    assert len(payload) * 32 <= engine.code_length_bits(model, pixels) * 1.001 + 64


def test_gray_only_weights_refuse_colour(tmp_path):
    _random_weights(tmp_path / "gray.pt", 1)
    model = RIDEModel({"L": tmp_path / "gray.pt"})
    assert model.modes == ("L",)
    with pytest.raises(ValueError, match="gray"):
        RIDEModel({"RGB": tmp_path / "gray.pt"})


class _Sneaky:
    """Stands for any object whose unpickling could run code."""


def test_weights_round_trip_and_refuse_pickles(tmp_path):
    config = _random_weights(tmp_path / "w.pt", 3, extended=True)
    loaded_config, models, metadata = load_weights(tmp_path / "w.pt")
    assert loaded_config == config and metadata == {"note": "random"} and len(models) == 3
    torch.save({"format": "ridecodec-ride-1", "payload": _Sneaky()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        load_weights(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a ridecodec-ride-1 weights file"):
        load_weights(_mcgsm_file(tmp_path))


def _mcgsm_file(tmp_path):
    from ridecodec.models import mcgsm

    config = mcgsm.MCGSMConfig(num_components=2, num_scales=1, num_features=2)
    mcgsm.save_weights(tmp_path / "mcgsm.pt", config, mcgsm.build_channel_models(config, 1), {})
    return tmp_path / "mcgsm.pt"


# -- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Smooth images with noise of two strengths (a third of the pixels are much noisier):
    something a mixture learns quickly beyond the whitening's linear-Gaussian start."""
    folder = tmp_path_factory.mktemp("train")
    for seed in range(6):
        rng = np.random.default_rng(seed)
        noise = rng.normal(0, 1, (14, 16, 3)) * np.where(rng.random((14, 16, 1)) < 0.7, 1, 16)
        image = np.clip(natural_like(14, 16, channels=3, seed=seed) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{seed}.png")
    return folder


def _options(folder, tmp_path, **changes):
    config = RIDEConfig(
        up=2, left=2, num_layers=1, num_hiddens=4, num_components=3, num_scales=2, num_features=3, table_components=2
    )  # a small neighbourhood: the images are 14 x 16
    base = {
        "data": [str(folder)],
        "out": str(tmp_path / "w.pt"),
        "model": config,
        "patch_sizes": (8, 12),
        "epochs": 1,
        "patches_per_image": 16,
        "batch_size": 8,
        "learning_rate": 1e-2,
        "validation_fraction": 0.34,
        "whitening_samples_per_image": 200,
        "lbfgs_steps": 0,
        "checkpoint": str(tmp_path / "ck.pt"),
        "log": str(tmp_path / "log.jsonl"),
    }
    return RIDETrainingOptions(**{**base, **changes})


def test_patches_are_sampled_and_flipped():
    image = torch.arange(5 * 7, dtype=torch.uint8).view(1, 5, 7)
    patches = sample_patches([image, image[:, :2]], 3, 40, torch.Generator().manual_seed(0))
    assert patches.shape == (40, 1, 3, 3)  # the 2-row image is too small for 3 x 3 patches
    rising = (patches[:, 0, :, 1:] > patches[:, 0, :, :-1]).all(dim=(1, 2))
    assert 5 < int(rising.sum()) < 35  # both orientations occur
    assert (patches[:, 0, 1:] - patches[:, 0, :-1] == 7).all()  # rows stay whole rows of the image


def test_training_writes_usable_weights_and_a_log(image_folder, tmp_path):
    summary = train_ride(_options(image_folder, tmp_path))
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    initial = next(r for r in records if r["event"] == "initial")["validation_bits_per_pixel"]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["patch_size"] for r in epochs] == [8, 12]  # one epoch per curriculum stage
    assert summary["validation_bits_per_pixel"] < initial - 0.02  # training improved on its start
    assert summary["images"] == {"train": 4, "validation": 2} and summary["epochs"] == 2
    torch.load(tmp_path / "w.pt", weights_only=True)
    model = RIDEModel({"L": tmp_path / "w.pt"})
    pixels = natural_like(10, 12)[None].copy()
    payload = engine.encode_pixels(model, pixels)
    assert np.array_equal(engine.decode_pixels(model, payload, pixels.shape), pixels)


class _Interrupted(Exception):
    pass


def _interrupt_at_second_stage(line):
    record = json.loads(line)
    if record["event"] == "head_tuned" and record["stage"] == 1:  # after stage 0's checkpoint
        raise _Interrupted


@pytest.mark.parametrize("average_decay", [0.0, 0.9])
def test_training_resumes_from_its_checkpoint(image_folder, tmp_path, average_decay):
    with pytest.raises(_Interrupted):
        train_ride(
            _options(image_folder, tmp_path, lbfgs_steps=3, average_decay=average_decay),
            echo=_interrupt_at_second_stage,
        )
    assert not (tmp_path / "w.pt").exists()
    resumed = train_ride(_options(image_folder, tmp_path, resume=True, lbfgs_steps=3, average_decay=average_decay))
    straight = train_ride(
        _options(
            image_folder,
            tmp_path / "..",
            checkpoint=None,
            out=str(tmp_path / "s.pt"),
            log=None,
            lbfgs_steps=3,
            average_decay=average_decay,
        )
    )
    assert resumed["epochs"] == 2
    assert resumed["validation_bits_per_pixel"] == pytest.approx(straight["validation_bits_per_pixel"], abs=1e-6)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    tuned = [r for r in records if r["event"] == "head_tuned"]  # L-BFGS before each stage
    assert [r["stage"] for r in tuned] == [0, 1, 1]  # the interrupted run's, then the resumed one's
    assert all(r["patch_bits_after"] <= r["patch_bits_before"] for r in tuned)
    assert tuned[-1]["patch_bits_after"] < tuned[-1]["patch_bits_before"] - 0.005


def test_rgb_training(image_folder, tmp_path):
    summary = train_ride(_options(image_folder, tmp_path, color="rgb", patch_sizes=(8,), checkpoint=None))
    assert summary["epochs"] == 1
    _, models, _ = load_weights(tmp_path / "w.pt")
    assert len(models) == 3


def test_time_budget_stops_after_the_epoch_that_spends_it(image_folder, tmp_path):
    """A spent budget ends training at the end of that epoch with the best weights so far; a
    resumed run counts the time of the run before (so a budget of 0 just writes the weights)."""
    summary = train_ride(_options(image_folder, tmp_path, time_budget_minutes=1e-6))
    assert summary["epochs"] == 1
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-2]["event"] == "time_budget_spent" and records[-2]["patch_size"] == 12  # not started
    resumed = train_ride(
        _options(image_folder, tmp_path, resume=True, time_budget_minutes=0, out=str(tmp_path / "r.pt"))
    )
    assert resumed["epochs"] == 1 and resumed["validation_bits_per_pixel"] == summary["validation_bits_per_pixel"]
    assert RIDEModel({"L": tmp_path / "r.pt"}).weights_digest() == RIDEModel({"L": tmp_path / "w.pt"}).weights_digest()


def test_a_ride_started_from_an_mcgsm_codes_as_it_does(tmp_path):
    """--from-mcgsm: with the head's weights on h at zero, the RIDE's tables are the MCGSM's
    (up to float rounding: the whitening is folded differently); the LSTM only comes in as
    training moves those weights."""
    from ridecodec.models import mcgsm
    from ridecodec.training.ride import start_from_mcgsm

    config = mcgsm.MCGSMConfig(up=2, left=2, right=1, num_components=3, num_scales=2, num_features=4)
    models = mcgsm.build_channel_models(config, 1)
    image = torch.from_numpy(natural_like(12, 14)[None].copy())
    hood = CausalNeighbourhood(2, 2, 1)
    rows, cols = torch.arange(12).repeat_interleave(14), torch.arange(14).repeat(12)
    x = hood.gather(image, rows, cols)
    models[0].whitening.load_state_dict(ConditionalWhitening.fit(x, image[0, rows, cols].float()).state_dict())
    models[0].mcgsm.initialize(torch.Generator().manual_seed(0))
    with torch.no_grad():
        models[0].mcgsm.features.mul_(30)  # lively gates
    mcgsm.save_weights(tmp_path / "m.pt", config, models, {})
    ride_config, rides = start_from_mcgsm(str(tmp_path / "m.pt"), RIDEConfig(num_hiddens=5), 1, torch.Generator())
    assert ride_config.head_reads_neighbourhood and (ride_config.up, ride_config.right, ride_config.num_components) == (
        2,
        1,
        3,
    )
    save_weights(tmp_path / "r.pt", ride_config, rides, {})
    pixels = image.numpy()
    ride_tables, _ = stepped_tables(RIDEModel({"L": tmp_path / "r.pt"}), pixels)
    mcgsm_tables, _ = stepped_tables(mcgsm.MCGSMModel({"L": tmp_path / "m.pt"}), pixels)
    assert torch.allclose(ride_tables, mcgsm_tables, rtol=1e-3, atol=1e-6)
    with pytest.raises(InputError, match="--from-mcgsm"):
        start_from_mcgsm(str(tmp_path / "r.pt"), RIDEConfig(), 1, torch.Generator())  # not MCGSM weights


def test_trained_starting_weights_are_kept_if_training_makes_them_worse(image_folder, tmp_path):
    """Starting from trained weights (--from-mcgsm, --init), the start is epoch 0 of the search
    for the best epoch: an epoch that makes them worse is not what gets written."""
    from ridecodec.models import mcgsm

    config = mcgsm.MCGSMConfig(
        up=2, left=2, right=1, num_components=2, num_scales=2, num_features=2, table_components=2
    )
    models = mcgsm.build_channel_models(config, 1)
    image = torch.from_numpy(np.asarray(Image.open(next(image_folder.glob("*.png"))).convert("L"))[None].copy())
    hood = CausalNeighbourhood(2, 2, 1)
    rows, cols = torch.arange(14).repeat_interleave(16), torch.arange(16).repeat(14)
    fitted = ConditionalWhitening.fit(hood.gather(image, rows, cols), image[0, rows, cols].float())
    models[0].whitening.load_state_dict(fitted.state_dict())
    models[0].mcgsm.initialize(torch.Generator().manual_seed(0))
    mcgsm.save_weights(tmp_path / "m.pt", config, models, {})
    summary = train_ride(
        _options(
            image_folder,
            tmp_path,
            from_mcgsm=str(tmp_path / "m.pt"),
            learning_rate=30.0,
            patch_sizes=(8,),
            color="gray",
        )
    )
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    initial = next(r for r in records if r["event"] == "initial")["validation_bits_per_pixel"]
    epoch = next(r for r in records if r["event"] == "epoch")["validation_bits_per_pixel"]
    assert not epoch <= initial  # the step size ruined it (NaN included)
    assert summary["best_epoch"] == 0 and summary["validation_bits_per_pixel"] == pytest.approx(initial, abs=1e-5)


@pytest.mark.parametrize("average_decay", [0.0, 0.99999])
def test_validation_sees_the_weight_average(image_folder, tmp_path, average_decay):
    """Fine-tuning with a step size far too large ruins the last step's weights, while an average
    with a decay close to 1 barely leaves the start; validation must score the average."""
    train_ride(_options(image_folder, tmp_path, patch_sizes=(8,), checkpoint=None, log=None))
    train_ride(
        _options(
            image_folder,
            tmp_path,
            init=str(tmp_path / "w.pt"),
            out=str(tmp_path / "t.pt"),
            patch_sizes=(8,),
            learning_rate=3.0,
            checkpoint=None,
            average_decay=average_decay,
        )
    )
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    initial = next(r for r in records if r["event"] == "initial")["validation_bits_per_pixel"]
    epoch = next(r for r in records if r["event"] == "epoch")["validation_bits_per_pixel"]
    if average_decay:
        assert epoch == pytest.approx(initial, abs=0.01)
    else:
        assert not epoch < initial + 0.1  # ruined (NaN included)


def test_head_tuning_sees_patches_scanned_in_bands(monkeypatch):
    """Many or large patches are scanned in several bands of rows; L-BFGS on the head must fit
    the same pixels as from one band (it once assumed a single band)."""
    from ridecodec.training.ride import tune_head

    config = RIDEConfig(up=2, left=2, num_hiddens=4, num_components=2, num_scales=2, num_features=2)
    patches = torch.from_numpy(np.stack([_planes(natural_like(9, 9, seed=s)) for s in range(4)]))

    def tuned():
        models = build_channel_models(config, 1)
        models[0].initialize(torch.Generator().manual_seed(0))
        return tune_head(models, CausalNeighbourhood(2, 2, 2), patches, steps=3)

    one_band = tuned()
    monkeypatch.setattr(ride_module, "BAND_ELEMENTS", 1)  # one row per band
    assert tuned() == pytest.approx(one_band, rel=1e-4)


def test_train_command(image_folder, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["train", "ride", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "w.pt")])
    assert missing.exit_code == 3 and "nope" in missing.output
    (tmp_path / "w.pt").write_bytes(b"keep me")
    exists = runner.invoke(main, ["train", "ride", "--data", str(image_folder), "--out", str(tmp_path / "w.pt")])
    assert exists.exit_code == 8 and (tmp_path / "w.pt").read_bytes() == b"keep me"
    too_big = runner.invoke(
        main, ["train", "ride", "--data", str(image_folder), "--out", str(tmp_path / "x.pt"), "--patch-sizes", "8,15"]
    )
    assert too_big.exit_code == 3 and "larger than every training image" in too_big.output
    unvalidated = runner.invoke(
        main,
        ["train", "ride", "--data", str(image_folder), "--out", str(tmp_path / "x.pt"), "--validation-fraction", "0"],
    )
    assert unvalidated.exit_code == 3 and "validation" in unvalidated.output
    not_weights = runner.invoke(
        main,
        [
            "train",
            "ride",
            "--data",
            str(image_folder),
            "--out",
            str(tmp_path / "x.pt"),
            "--patch-sizes",
            "8",
            "--from-mcgsm",
            str(next(image_folder.glob("*.png"))),
        ],
    )
    error = [line for line in not_weights.output.splitlines() if not line.startswith("{")]  # the log's lines
    assert not_weights.exit_code == 3 and len(error) == 1 and "is not a weights file that loads" in error[0]
    no_interior = runner.invoke(
        main, ["train", "ride", "--data", str(image_folder), "--out", str(tmp_path / "x.pt"), "--patch-sizes", "6,8"]
    )  # the default neighbourhood reaches 4 up
    assert no_interior.exit_code == 3 and "patch size 6 leaves no pixel" in no_interior.output
    tiny = [
        "--patch-sizes",
        "6",
        "--up",
        "2",
        "--left",
        "2",
        "--epochs",
        "1",
        "--patches-per-image",
        "2",
        "--layers",
        "2",
        "--hidden",
        "3",
        "--extended",
        "--lbfgs-steps",
        "2",
        "--components",
        "2",
        "--scales",
        "2",
        "--features",
        "2",
        "--device",
        "cpu",
    ]
    done = runner.invoke(main, ["train", "ride", "--data", str(image_folder), "--out", str(tmp_path / "t.pt"), *tiny])
    assert done.exit_code == 0, done.output
    config, _, metadata = load_weights(tmp_path / "t.pt")
    assert (config.num_layers, config.num_hiddens, config.extended) == (2, 3, True)
    assert metadata["command"].startswith("ridecodec train ride")
