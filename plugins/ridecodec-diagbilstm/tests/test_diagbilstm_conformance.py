"""diagbilstm keeps the plug-in contract (ridecodec's conformance kit), its float network is
causal, and its integer network agrees with the float network it was exported from."""

import math

import numpy as np
import pytest
import torch

from ridecodec import testing
from ridecodec_diagbilstm.export import quantize
from ridecodec_diagbilstm.model import ACT_BITS, INPUT_BITS, LAYERS, WEIGHT_BITS, DiagBiLSTMModel
from ridecodec_diagbilstm.network import DiagBiLSTM

#: the checks that take more than about 10 seconds here (subprocesses; steps of one position)
SLOW = {"check_cross_kernel", "check_determinism"}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(check, id=check.__name__, marks=[pytest.mark.slow] if check.__name__ in SLOW else [])
        for check in testing.CHECKS
    ],
)
def test_diagbilstm_conforms(check):
    check("diagbilstm")


def test_class_attributes_for_the_codec():
    assert DiagBiLSTMModel.reach is None  # raster order
    assert 0 < DiagBiLSTMModel.seconds_per_pixel < 0.01
    assert DiagBiLSTMModel.pixel_limit * DiagBiLSTMModel.seconds_per_pixel <= 180


@pytest.mark.parametrize(("height", "width"), [(5, 23), (21, 4), (1, 9), (7, 1)])
def test_steps_match_the_whole_image(height, width):
    """The recurrences over many rows and columns: the stepped tables (cached planes, the
    right-to-left sweep of the row above) equal log_prob's diagonal-by-diagonal computation on
    images wider than tall, taller than wide, one row and one column."""
    model = DiagBiLSTMModel()
    pixels = testing.synthetic_image(height, width, seed=height)[None]
    tables, symbols = testing.stepped_tables(model, pixels)
    stepped = float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())
    assert math.isclose(float(model.log_prob(torch.from_numpy(pixels)[None])), stepped, rel_tol=1e-12)


def test_steps_refuse_another_order():
    model = DiagBiLSTMModel()
    step = model.begin(torch.zeros(1, 3, 4, dtype=torch.uint8))
    step(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="raster order"):
        step(torch.tensor([1]), torch.tensor([0]), 0)


def test_the_float_network_is_causal():
    """With random weights, the logits at a pixel do not change when that pixel or any later one
    (in raster order) changes, and they do change with the end of the row above (read through the
    right-to-left direction) and with the pixel to the left."""
    torch.manual_seed(0)
    network = DiagBiLSTM(8, 8)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    height, width = 6, 7
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (1, 1, height, width), dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        base = network(pixels)
        for row in range(height):
            for col in range(width):
                changed = pixels.clone().view(-1)
                start = row * width + col
                changed[start:] = torch.randint(
                    0, 256, (changed.numel() - start,), dtype=torch.uint8, generator=generator
                )
                logits = network(changed.view(1, 1, height, width))
                assert torch.allclose(logits[..., row, col], base[..., row, col], atol=1e-5), (row, col)
        for source, target in (((2, width - 2), (3, 0)), ((3, 2), (3, 3))):
            changed = pixels.clone()
            changed[0, 0, source[0], source[1]] ^= 0x55
            assert not torch.allclose(network(changed)[..., target[0], target[1]], base[..., target[0], target[1]])


def test_integer_network_matches_the_float_export():
    """The shipped integers come from the float Diagonal BiLSTM: the exact softmax's code length
    on a smooth image is within 1% of the float network's, quantization included."""
    model = DiagBiLSTMModel()
    network = DiagBiLSTM()
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        for layer in LAYERS:
            module = getattr(network, layer)
            module.weight.copy_(arrays[f"{layer}_weight"].double() / 2**WEIGHT_BITS)
            if module.bias is not None:
                input_bits = INPUT_BITS if layer == "first" else ACT_BITS
                module.bias.copy_(arrays[f"{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS))
    assert all(np.array_equal(value, arrays[key].numpy()) for key, value in quantize(network).items())
    image = torch.from_numpy(testing.synthetic_image(24, 32, seed=5))[None, None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        float_nats = float(network.nll_bits(image)) * math.log(2) * image.numel()
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats
