"""diagbilstm keeps the plug-in contract (ridecodec's conformance kit, gray, RGB and RGBA), its
float networks are causal (the RGB one over its channel groups too), its integer networks agree
with the float networks they were exported from, and version 1 (gray) is still what it was."""

import math

import numpy as np
import pytest
import torch

from ridecodec import engine, testing
from ridecodec_diagbilstm.export import quantize
from ridecodec_diagbilstm.model import (
    ACT_BITS,
    GROUPS,
    INPUT_BITS,
    LAYERS,
    NO_BIAS,
    RGB_CHANNELS,
    RGB_HIDDEN,
    WEIGHT_BITS,
    DiagBiLSTMModel,
)
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
    speeds = DiagBiLSTMModel.seconds_per_pixel
    assert set(speeds) == set(DiagBiLSTMModel.modes) and all(0 < speed < 0.01 for speed in speeds.values())
    assert speeds["L"] < speeds["RGB"] < speeds["RGBA"]
    assert DiagBiLSTMModel.pixel_limit * speeds["L"] <= 180  # a gray image at the limit: minutes, not hours


def _stepped_log_prob(model: DiagBiLSTMModel, pixels: np.ndarray) -> float:
    tables, symbols = testing.stepped_tables(model, pixels)
    return float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())


@pytest.mark.parametrize(
    ("height", "width", "channels"),
    [(5, 23, 1), (21, 4, 1), (1, 9, 1), (7, 1, 1), (4, 13, 3), (9, 3, 3), (1, 5, 3), (5, 1, 4)],
)
def test_steps_match_the_whole_image(height, width, channels):
    """The recurrences over many rows and columns: the stepped tables (cached planes, the
    right-to-left sweep of the row above, per channel group in colour) equal log_prob's
    diagonal-by-diagonal computation on images wider than tall, taller than wide, one row and one
    column."""
    model = DiagBiLSTMModel()
    pixels = testing.planes_of(testing.synthetic_image(height, width, channels, seed=height))
    stepped = _stepped_log_prob(model, pixels)
    assert math.isclose(float(model.log_prob(torch.from_numpy(pixels)[None])), stepped, rel_tol=1e-12)


def test_steps_refuse_another_order():
    model = DiagBiLSTMModel()
    step = model.begin(torch.zeros(1, 3, 4, dtype=torch.uint8))
    step(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="raster order"):
        step(torch.tensor([1]), torch.tensor([0]), 0)
    step = model.begin(torch.zeros(3, 3, 4, dtype=torch.uint8))
    step(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="raster order, R, G, B"):
        step(torch.tensor([0]), torch.tensor([0]), 2)


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


def test_the_float_rgb_network_is_causal_over_its_channel_groups():
    """Channel g's logits at a pixel depend on earlier pixels (raster order) and on the pixel's
    channels before g, on nothing else (R's not on the pixel's R, G, B; G's not on its G, B; B's not
    on its B): the gradients of a random RGB network say so, and that the end of the row above
    (through the right-to-left direction) counts."""
    torch.manual_seed(0)
    network = DiagBiLSTM(24, 24, groups=3)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    height, width, row, col = 6, 7, 3, 2
    later = torch.zeros(height, width, dtype=torch.bool)
    later.view(-1)[row * width + col + 1 :] = True
    for channel in range(3):
        u = torch.randn(1, 3, height, width, requires_grad=True)
        network.logits(u)[0, channel * 256 : (channel + 1) * 256, row, col].sum().backward()
        grad = u.grad[0].abs()  # type: ignore[index]
        assert float(grad[:, later].sum()) == 0, f"channel {channel} sees later pixels"
        assert float(grad[channel:, row, col].sum()) == 0, f"channel {channel} sees itself or later channels"
        assert bool((grad[:channel, row, col] > 0).all()), f"channel {channel} ignores the pixel's earlier channels"
        assert float(grad[:, row - 1, width - 1].sum()) > 0, f"channel {channel} ignores the end of the row above"
        assert float(grad[:, row, col - 1].sum()) > 0, f"channel {channel} ignores the pixel to the left"


def _float_network(model: DiagBiLSTMModel, colour: bool) -> DiagBiLSTM:
    """The float Diagonal BiLSTM whose export gives the shipped integers (checked)."""
    network = DiagBiLSTM(RGB_CHANNELS, RGB_HIDDEN, GROUPS) if colour else DiagBiLSTM()
    prefix = "rgb_" if colour else ""
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        for layer in LAYERS:
            module = getattr(network, layer)
            module.weight.copy_(arrays[f"{prefix}{layer}_weight"].double() / 2**WEIGHT_BITS)
            if layer not in NO_BIAS:
                input_bits = INPUT_BITS if layer == "first" else ACT_BITS
                module.bias.copy_(arrays[f"{prefix}{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS))
    assert all(np.array_equal(value, arrays[prefix + key].numpy()) for key, value in quantize(network).items())
    return network


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_integer_network_matches_the_float_export(colour):
    """The shipped integers come from the float Diagonal BiLSTM: the exact softmax's code length
    on a smooth image is within 1% of the float network's, quantization included."""
    model = DiagBiLSTMModel()
    network = _float_network(model, colour)
    pixels = testing.synthetic_image(*((16, 24, 3) if colour else (24, 32, 1)), seed=5)
    image = torch.from_numpy(testing.planes_of(pixels))[None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        float_nats = float(network.nll_bits(image)) * math.log(2) * image.numel()
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats


def test_version_1_is_the_gray_network_and_version_2_codes_gray_alike():
    """for_version("1") holds the gray buffers alone (version 1's digest); its gray tables are
    version 2's, and it refuses colour."""
    current = DiagBiLSTMModel()
    earlier = DiagBiLSTMModel.for_version("1")
    assert earlier.version == "1" and earlier.modes == ("L",) and current.version == "2"
    assert set(earlier.state_dict()) == {key for key in current.state_dict() if not key.startswith("rgb_")}
    pixels = testing.planes_of(testing.synthetic_image(6, 9, seed=2))
    assert torch.equal(testing.stepped_tables(earlier, pixels)[0], testing.stepped_tables(current, pixels)[0])
    with pytest.raises(ValueError, match="codes L images"):
        earlier.begin(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_an_rgb_network_of_three_gray_copies_steps_the_gray_tables():
    """The RGB network started as three copies of the gray one (``train.from_gray``: each group
    reads only its own colour and its own states) must give, channel by channel, the gray model's
    tables of that plane: the grouped layers, the gate order, the per-group steps and the cached
    planes compute the same integers as the gray path, stepped and in log_prob."""
    from ridecodec_diagbilstm.train import from_gray

    network = DiagBiLSTM(RGB_CHANNELS, RGB_HIDDEN, GROUPS)
    from_gray(network)
    model = DiagBiLSTMModel()
    with torch.no_grad():
        for key, value in quantize(network).items():
            getattr(model, f"rgb_{key}").copy_(torch.from_numpy(value.astype(np.int64)))
    model._rgb_layers = None
    height, width = 5, 8
    pixels = testing.planes_of(testing.synthetic_image(height, width, 3, seed=4))
    colour, _ = testing.stepped_tables(model, pixels)
    gray = [testing.stepped_tables(model, pixels[c : c + 1])[0] for c in range(3)]
    done = 0
    for _, rows, _ in engine.wavefront_for(model, height, width).steps():
        n = len(rows)
        for c in range(3):
            assert torch.equal(colour[3 * done + c * n : 3 * done + (c + 1) * n], gray[c][done : done + n])
        done += n
    image = torch.from_numpy(pixels)[None]
    planes = sum(float(model.log_prob(image[:, c : c + 1])) for c in range(3))
    assert float(model.log_prob(image)) == pytest.approx(planes, rel=1e-12)
