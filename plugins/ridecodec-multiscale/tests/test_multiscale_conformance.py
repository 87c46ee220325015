"""multiscale keeps the plug-in contract (ridecodec's conformance kit) in its two-stage order, and
its integer networks agree with the float networks they were exported from."""

import math

import numpy as np
import pytest
import torch

from ridecodec import engine, testing
from ridecodec_multiscale.model import FACTOR, MultiScaleModel

#: the checks that take more than about 10 seconds here (subprocesses; steps of one position)
SLOW = {"check_cross_kernel", "check_determinism"}


@pytest.fixture(scope="module")
def model():
    return MultiScaleModel()


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(check, id=check.__name__, marks=[pytest.mark.slow] if check.__name__ in SLOW else [])
        for check in testing.CHECKS
    ],
)
def test_multiscale_conforms(check):
    check("multiscale")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (5, 7), (8, 3), (13, 10)])
def test_odd_and_thin_images(model, shape):
    """Every size codes in the two stages: the tables are honest (revealing the whole image changes
    none) and log_prob is their sum."""
    pixels = testing.synthetic_image(*shape, seed=sum(shape))[None] if min(shape) > 1 else None
    if pixels is None:  # (synthetic_image needs two rows and columns)
        pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)[None]
    honest, symbols = testing.stepped_tables(model, pixels)
    peeking, _ = testing.stepped_tables(model, pixels, reveal_everything=True)
    assert torch.equal(honest, peeking)
    assert honest.shape == (pixels.size, 256) and (honest > 0).all()
    stepped = float(torch.log(honest[torch.arange(len(symbols)), symbols] / honest.sum(1)).sum())
    log_prob = float(model.log_prob(torch.from_numpy(pixels)[None]))
    assert math.isclose(log_prob, stepped, rel_tol=1e-9, abs_tol=1e-6)


def test_stage_one_comes_first(model):
    """The order codes the subsampled pixels, then the rest, each once."""
    height, width = 7, 10
    order = [
        (int(r), int(c))
        for _, rows, cols in engine.wavefront_for(model, height, width).steps()
        for r, c in zip(rows, cols, strict=True)
    ]
    small = -(-height // FACTOR) * -(-width // FACTOR)
    assert all(r % FACTOR == 0 and c % FACTOR == 0 for r, c in order[:small])
    assert not any(r % FACTOR == 0 and c % FACTOR == 0 for r, c in order[small:])
    assert sorted(order) == [(r, c) for r in range(height) for c in range(width)]


def test_stage_two_ignores_later_stage_two_pixels_only(model):
    """Stage 2's tables do depend on stage-1 pixels below and right (that is the point), not on
    stage-2 pixels after them: changing the last stage-2 pixel changes no table."""
    pixels = testing.synthetic_image(9, 11, seed=4)[None]
    tables, _ = testing.stepped_tables(model, pixels)
    changed = pixels.copy()
    changed[0, 8, 9] ^= 0x55  # (8, 9) is stage 2 and coded last
    again, _ = testing.stepped_tables(model, changed)
    assert torch.equal(tables[:-1], again[:-1])
    below = pixels.copy()
    below[0, 8, 8] ^= 0x55  # a stage-1 pixel: stage-2 tables near it change
    third, _ = testing.stepped_tables(model, below)
    assert not torch.equal(tables[-10:], third[-10:])


def test_integer_network_matches_the_float_export(model):
    """The shipped integers come from the float networks: the exact code length of a smooth image
    is within 1% of the float networks', quantization included."""
    from ridecodec_multiscale.export import FIRST_LAYERS, LAYERS, module_of, quantize
    from ridecodec_multiscale.network import MultiScale

    network = MultiScale()
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        for layer in LAYERS:
            module = module_of(network, layer)
            input_bits = 7 if layer.removeprefix("small_") in FIRST_LAYERS else 12
            module.weight.copy_(arrays[f"{layer}_weight"].double() / 2**16)
            module.bias.copy_(arrays[f"{layer}_bias"].double() / 2 ** (input_bits + 16))
    assert all(np.array_equal(value, arrays[key].numpy()) for key, value in quantize(network).items())
    image = torch.from_numpy(testing.synthetic_image(24, 32, seed=5))[None, None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        small = image[:, :, ::FACTOR, ::FACTOR].contiguous()
        float_bits = float(network.small.nll_bits(small)) * small.numel()
        float_bits += float(network.conditional.nll_bits(image)) * (image.numel() - small.numel())
    float_nats = float_bits * math.log(2)
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats


def test_it_samples_in_its_own_order_the_same_on_every_run(model):
    from ridecodec import sampling

    drawn = sampling.sample(model, "L", 9, 12, seed=2)
    assert drawn.shape == (1, 9, 12) and np.array_equal(drawn, sampling.sample(model, "L", 9, 12, seed=2))
