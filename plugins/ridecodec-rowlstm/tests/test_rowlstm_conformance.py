"""rowlstm keeps the plug-in contract (ridecodec's conformance kit), and its integer network
agrees with the float network it was exported from."""

import math

import numpy as np
import pytest
import torch

from ridecodec import testing
from ridecodec_rowlstm.export import quantize
from ridecodec_rowlstm.model import ACT_BITS, INPUT_BITS, LAYERS, WEIGHT_BITS, RowLSTMModel
from ridecodec_rowlstm.network import RowLSTM

#: the checks that take more than about 10 seconds here (subprocesses; steps of one position)
SLOW = {"check_cross_kernel", "check_determinism"}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(check, id=check.__name__, marks=[pytest.mark.slow] if check.__name__ in SLOW else [])
        for check in testing.CHECKS
    ],
)
def test_rowlstm_conforms(check):
    check("rowlstm")


def test_steps_match_the_whole_image_on_a_wide_image():
    """The recurrence over many rows: the stepped tables (cached planes, the row above's states)
    equal log_prob's whole-image computation on an image wider than tall and one taller than wide."""
    model = RowLSTMModel()
    for height, width in ((5, 23), (21, 4)):
        pixels = testing.synthetic_image(height, width, seed=height)[None]
        tables, symbols = testing.stepped_tables(model, pixels)
        stepped = float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())
        assert math.isclose(float(model.log_prob(torch.from_numpy(pixels)[None])), stepped, rel_tol=1e-9)


def test_integer_network_matches_the_float_export():
    """The shipped integers come from the float Row LSTM: the exact softmax's code length on a
    smooth image is within 1% of the float network's, quantization included."""

    model = RowLSTMModel()
    network = RowLSTM()
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
