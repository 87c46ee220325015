"""pixelcnn keeps the plug-in contract (ridecodec's conformance kit), and its integer network
agrees with the float network it was exported from."""

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


def test_integer_network_matches_the_float_export():
    """The shipped integers come from the float PixelCNN: the exact softmax's code length on a
    smooth image is within 1% of the float network's, quantization included."""
    from ridecodec_pixelcnn.export import quantize
    from ridecodec_pixelcnn.network import PixelCNN

    model = PixelCNNModel()
    network = PixelCNN()
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        modules = {"first": network.first, "head": network.head, "out": network.out}
        modules.update({f"residual{b}": conv for b, conv in enumerate(network.residual)})
        for layer, module in modules.items():
            input_bits = 7 if layer == "first" else 12
            module.weight.copy_(arrays[f"{layer}_weight"].double() / 2**16)
            module.bias.copy_(arrays[f"{layer}_bias"].double() / 2 ** (input_bits + 16))
    assert all(np.array_equal(value, arrays[key].numpy()) for key, value in quantize(network).items())
    image = torch.from_numpy(testing.synthetic_image(24, 32, seed=5))[None, None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        float_nats = float(network.nll_bits(image)) * math.log(2) * image.numel()
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats
