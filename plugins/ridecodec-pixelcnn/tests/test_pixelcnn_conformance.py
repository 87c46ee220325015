"""pixelcnn keeps the plug-in contract (ridecodec's conformance kit, gray, RGB and RGBA), its
integer networks agree with the float networks they were exported from, the RGB network is
causal over its channel groups, and version 1 (gray) is still what it was."""

import math

import numpy as np
import pytest
import torch

from ridecodec import testing
from ridecodec_pixelcnn.model import PixelCNNModel

#: the checks that take more than about 10 seconds here (subprocesses; steps of one position)
SLOW = {"check_cross_kernel", "check_determinism"}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(check, id=check.__name__, marks=[pytest.mark.slow] if check.__name__ in SLOW else [])
        for check in testing.CHECKS
    ],
)
def test_pixelcnn_conforms(check):
    check("pixelcnn")


def _float_network(model: PixelCNNModel, colour: bool):
    """The float PixelCNN whose export gives the shipped integers (checked)."""
    from ridecodec_pixelcnn.export import quantize
    from ridecodec_pixelcnn.model import ACT_BITS, CHANNELS, GROUPS, INPUT_BITS, RGB_CHANNELS, WEIGHT_BITS
    from ridecodec_pixelcnn.network import PixelCNN

    network = PixelCNN(RGB_CHANNELS, groups=GROUPS) if colour else PixelCNN(CHANNELS)
    prefix = "rgb_" if colour else ""
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        modules = {"first": network.first, "head": network.head, "out": network.out}
        modules.update({f"residual{b}": conv for b, conv in enumerate(network.residual)})
        for layer, module in modules.items():
            input_bits = INPUT_BITS if layer == "first" else ACT_BITS
            module.weight.copy_(arrays[f"{prefix}{layer}_weight"].double() / 2**WEIGHT_BITS)
            module.bias.copy_(arrays[f"{prefix}{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS))
    assert all(np.array_equal(value, arrays[prefix + key].numpy()) for key, value in quantize(network).items())
    return network


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_integer_network_matches_the_float_export(colour):
    """The shipped integers come from the float PixelCNN: the exact softmax's code length on a
    smooth image is within 1% of the float network's, quantization included."""
    model = PixelCNNModel()
    network = _float_network(model, colour)
    pixels = testing.synthetic_image(24, 32, 3 if colour else 1, seed=5)
    image = torch.from_numpy(testing.planes_of(pixels))[None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        float_nats = float(network.nll_bits(image)) * math.log(2) * image.numel()
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats


def test_the_float_rgb_network_is_causal_over_its_channel_groups():
    """Channel g's logits at a pixel depend on earlier pixels (raster order) and on the pixel's
    channels before g, on nothing else: the gradients of a random RGB network say so."""
    from ridecodec_pixelcnn.network import PixelCNN

    torch.manual_seed(0)
    network = PixelCNN(12, 2, groups=3)
    height, width, row, col = 9, 10, 4, 5
    later = torch.zeros(height, width, dtype=torch.bool)
    later.view(-1)[row * width + col + 1 :] = True
    for channel in range(3):
        u = torch.randn(1, 3, height, width, requires_grad=True)
        network.logits(u)[0, channel, :, row, col].sum().backward()
        grad = u.grad[0].abs()  # type: ignore[index]
        assert float(grad[:, later].sum()) == 0, f"channel {channel} sees later pixels"
        assert float(grad[channel:, row, col].sum()) == 0, f"channel {channel} sees itself or later channels"
        assert bool((grad[:channel, row, col] > 0).all()), f"channel {channel} ignores the pixel's earlier channels"
        assert float(grad[:, :row].sum()) > 0, f"channel {channel} ignores the rows above"


def test_version_1_is_the_gray_network_and_version_2_codes_gray_alike():
    """for_version("1") holds the gray buffers alone (version 1's digest); its gray tables are
    version 2's, and it refuses colour."""
    current = PixelCNNModel()
    earlier = PixelCNNModel.for_version("1")
    assert earlier.version == "1" and earlier.modes == ("L",) and current.version == "2"
    assert set(earlier.state_dict()) == {key for key in current.state_dict() if not key.startswith("rgb_")}
    pixels = testing.planes_of(testing.synthetic_image(10, 13, seed=2))
    assert torch.equal(testing.stepped_tables(earlier, pixels)[0], testing.stepped_tables(current, pixels)[0])
    with pytest.raises(ValueError, match="codes L images"):
        earlier.begin(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_an_rgb_network_of_three_gray_copies_steps_the_gray_tables():
    """The RGB network started as three copies of the gray one (``train.from_gray``: each group
    reads only its own colour) must give, channel by channel, the gray model's tables of that
    plane: the grouped layers, the per-group steps and the cached planes compute the same integers
    as the gray path, stepped and in log_prob."""
    from ridecodec import engine
    from ridecodec_pixelcnn.export import quantize
    from ridecodec_pixelcnn.model import GROUPS, RGB_CHANNELS
    from ridecodec_pixelcnn.network import PixelCNN
    from ridecodec_pixelcnn.train import from_gray

    network = PixelCNN(RGB_CHANNELS, groups=GROUPS)
    from_gray(network)
    model = PixelCNNModel()
    with torch.no_grad():
        for key, value in quantize(network).items():
            getattr(model, f"rgb_{key}").copy_(torch.from_numpy(value.astype(np.int64)))
    model._rgb_layers = None
    pixels = testing.planes_of(testing.synthetic_image(10, 13, 3, seed=4))
    colour, _ = testing.stepped_tables(model, pixels)
    gray = [testing.stepped_tables(model, pixels[c : c + 1])[0] for c in range(3)]
    done = 0
    for _, rows, _ in engine.wavefront_for(model, 10, 13).steps():
        n = len(rows)
        for c in range(3):
            assert torch.equal(colour[3 * done + c * n : 3 * done + (c + 1) * n], gray[c][done : done + n])
        done += n
    image = torch.from_numpy(pixels)[None]
    planes = sum(float(model.log_prob(image[:, c : c + 1])) for c in range(3))
    assert float(model.log_prob(image)) == pytest.approx(planes, rel=1e-12)
