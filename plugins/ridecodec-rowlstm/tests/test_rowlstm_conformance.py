"""rowlstm keeps the plug-in contract (ridecodec's conformance kit, gray, RGB and RGBA), its
integer networks agree with the float networks they were exported from, the RGB network is
causal over its channel groups, and versions 1 (gray) and 2 are still what they were."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ridecodec import api, container, engine, testing
from ridecodec_rowlstm.export import quantize
from ridecodec_rowlstm.model import (
    ACT_BITS,
    GROUPS,
    INPUT_BITS,
    LAYERS,
    RGB_CHANNELS,
    RGB_HIDDEN,
    WEIGHT_BITS,
    RowLSTMModel,
)
from ridecodec_rowlstm.network import RowLSTM

#: The kit's checks that decode every layout at its full test sizes many times (subprocesses under
#: each kernel set, steps of one position): in colour three and four times the gray model's calls.
#: They run below on the kit's gray image and a tiny RGBA one (the RGB network's three channel
#: calls, then alpha by the gray network): the same checks, from the kit's public pieces.
SLOW = {"check_cross_kernel", "check_determinism"}
#: (height, width) of the RGBA image of the slow checks: small (the cross-kernel one still coded
#: with the model, not stored)
TINY = (7, 8)
TINIER = (5, 6)


@pytest.mark.parametrize(
    "check", [check for check in testing.CHECKS if check.__name__ not in SLOW], ids=lambda check: check.__name__
)
def test_rowlstm_conforms(check):
    check("rowlstm")


def _slow_check_images(height: int, width: int, tiny: tuple[int, int]) -> dict[str, np.ndarray]:
    """The gray image of the kit's slow checks at its size, and RGBA at ``tiny``: (C, H, W)."""
    return {
        "L": testing.planes_of(testing.synthetic_image(height, width, 1, seed=1)),
        "RGBA": testing.planes_of(testing.synthetic_image(*tiny, 4, seed=4)),
    }


@pytest.mark.slow
def test_tables_are_the_same_whatever_the_split_and_threads():
    """The kit's check_determinism, with a tiny RGBA image: the same calls give the same tables,
    and so do steps split in calls of 1 and 3 positions, on 1 and 2 threads."""
    model = RowLSTMModel()
    for layout, pixels in _slow_check_images(9, 17, TINIER).items():
        reference, _ = testing.stepped_tables(model, pixels)
        assert torch.equal(reference, testing.stepped_tables(model, pixels)[0]), layout
        for split in (engine.Split(1), engine.Split(3), engine.Split(None, 2), engine.Split(3, 2)):
            assert torch.equal(reference, testing.stepped_tables(model, pixels, split=split)[0]), (layout, split)


@pytest.mark.slow
def test_files_decode_under_every_kernel_set():
    """The kit's check_cross_kernel, with a tiny RGBA image: files encoded here decode to their
    pixels in fresh processes under torch's generic, AVX2 and (where the CPU has it) AVX-512
    kernels, on 1 and 2 threads, steps split in calls of 1, 3 and all positions."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for layout, pixels in _slow_check_images(13, 19, TINY).items():
            image = pixels[0] if layout == "L" else pixels.transpose(1, 2, 0)
            data = api.compress(image, model="rowlstm", device="cpu", model_only=True)
            assert api.read_header(data).coder == container.CODER_RANGE_CATEGORICAL, layout
            paths.append(Path(folder) / f"{layout}.rdc")
            paths[-1].write_bytes(data)
        failures = [
            f"{kernels}: {Path(path).name}: {problem}"
            for kernels in testing.available_kernel_sets()
            for path, problems in testing.decode_under_kernels(paths, kernels).items()
            for problem in problems
        ]
    assert not failures, "rowlstm is not exact across kernels: " + "; ".join(failures)


def _stepped_log_prob(model: RowLSTMModel, pixels: np.ndarray) -> float:
    tables, symbols = testing.stepped_tables(model, pixels)
    return float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())


def test_steps_match_the_whole_image_on_a_wide_image():
    """The recurrence over many rows: the stepped tables (cached planes, the row above's states)
    equal log_prob's whole-image computation on an image wider than tall and one taller than
    wide, gray, and in colour on a wide one."""
    model = RowLSTMModel()
    for height, width, channels in ((5, 23, 1), (21, 4, 1), (4, 17, 3)):
        pixels = testing.planes_of(testing.synthetic_image(height, width, channels, seed=height))
        stepped = _stepped_log_prob(model, pixels)
        assert math.isclose(float(model.log_prob(torch.from_numpy(pixels)[None])), stepped, rel_tol=1e-9)


def _float_network(model: RowLSTMModel, colour: bool) -> RowLSTM:
    """The float Row LSTM whose export gives the shipped integers (checked)."""
    network = RowLSTM(RGB_CHANNELS, RGB_HIDDEN, GROUPS) if colour else RowLSTM(model.gray_channels, model.gray_hidden)
    prefix = "rgb_" if colour else ""
    arrays = model.state_dict()
    with torch.no_grad():  # float weights from the shipped integers: the same network, rounded
        for layer in LAYERS:
            module = getattr(network, layer)
            module.weight.copy_(arrays[f"{prefix}{layer}_weight"].double() / 2**WEIGHT_BITS)
            if module.bias is not None:
                input_bits = INPUT_BITS if layer == "first" else ACT_BITS
                module.bias.copy_(arrays[f"{prefix}{layer}_bias"].double() / 2 ** (input_bits + WEIGHT_BITS))
    assert all(np.array_equal(value, arrays[prefix + key].numpy()) for key, value in quantize(network).items())
    return network


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_integer_network_matches_the_float_export(colour):
    """The shipped integers come from the float Row LSTM: the exact softmax's code length on a
    smooth image is within 1% of the float network's, quantization included."""
    model = RowLSTMModel()
    network = _float_network(model, colour)
    pixels = testing.synthetic_image(24, 32, 3 if colour else 1, seed=5)
    image = torch.from_numpy(testing.planes_of(pixels))[None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        float_nats = float(network.nll_bits(image)) * math.log(2) * image.numel()
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats


def test_the_float_rgb_network_is_causal_over_its_channel_groups():
    """Channel g's logits at a pixel depend on earlier pixels (raster order) and on the pixel's
    channels before g, on nothing else: the gradients of a random RGB network say so (R's logits
    not on the pixel's R, G, B; G's not on its G, B; B's not on its B)."""
    torch.manual_seed(0)
    network = RowLSTM(12, 6, groups=3)
    with torch.no_grad():  # random gates: the cross-group weights must be masked, not merely small
        for parameter in network.parameters():
            parameter.normal_(0, 0.5)
    height, width, row, col = 9, 10, 4, 5
    later = torch.zeros(height, width, dtype=torch.bool)
    later.view(-1)[row * width + col + 1 :] = True
    for channel in range(3):
        u = torch.randn(1, 3, height, width, requires_grad=True)
        logits = network.logits(u).view(1, 3, 256, height, width)
        logits[0, channel, :, row, col].sum().backward()
        grad = u.grad[0].abs()  # type: ignore[index]
        assert float(grad[:, later].sum()) == 0, f"channel {channel} sees later pixels"
        assert float(grad[channel:, row, col].sum()) == 0, f"channel {channel} sees itself or later channels"
        assert bool((grad[:channel, row, col] > 0).all()), f"channel {channel} ignores the pixel's earlier channels"
        assert float(grad[:, :row].sum()) > 0, f"channel {channel} ignores the rows above"
        assert float(grad[:, row - 3, col + 4].sum()) > 0, f"channel {channel} ignores the recurrence's cone"


def test_versions_1_and_2_keep_their_networks_and_version_3_changes_only_gray():
    """for_version("1") holds version 1's gray buffers alone (its digest) and refuses colour;
    version 2 codes gray with the same network (the same tables); version 3 has a gray network
    of its own, 64 features, and version 2's RGB network (the same RGB tables)."""
    first, second, third = RowLSTMModel.for_version("1"), RowLSTMModel.for_version("2"), RowLSTMModel()
    assert (first.version, second.version, third.version) == ("1", "2", "3")
    assert first.modes == ("L",) and second.modes == third.modes == ("L", "RGB", "RGBA")
    assert set(first.state_dict()) == {key for key in second.state_dict() if not key.startswith("rgb_")}
    assert (first.gray_channels, third.gray_channels, third.gray_hidden) == (32, 64, 64)
    assert len({first.weights_digest(), second.weights_digest(), third.weights_digest()}) == 3
    gray = testing.planes_of(testing.synthetic_image(10, 13, seed=2))
    first_tables = testing.stepped_tables(first, gray)[0]
    assert torch.equal(first_tables, testing.stepped_tables(second, gray)[0])
    assert not torch.equal(first_tables, testing.stepped_tables(third, gray)[0])
    rgb = testing.planes_of(testing.synthetic_image(5, 6, 3, seed=3))
    assert torch.equal(testing.stepped_tables(second, rgb)[0], testing.stepped_tables(third, rgb)[0])
    with pytest.raises(ValueError, match="codes L images"):
        first.begin(torch.zeros(3, 4, 4, dtype=torch.uint8))


def _with_rgb_network(network: RowLSTM, version: str = RowLSTMModel.version) -> RowLSTMModel:
    """The exact model of ``version`` with ``network``'s integers as its RGB weights."""
    model = RowLSTMModel.for_version(version) if version != RowLSTMModel.version else RowLSTMModel()
    with torch.no_grad():
        for key, value in quantize(network).items():
            getattr(model, f"rgb_{key}").copy_(torch.from_numpy(value.astype(np.int64)))
    model._rgb_layers = None
    return model


def test_an_rgb_network_of_three_gray_copies_steps_the_gray_tables():
    """The RGB network started as three copies of the gray one (``train.from_gray``: each group
    reads only its own colour) must give, channel by channel, the gray model's tables of that
    plane: the grouped layers, the group-major gates, the per-group steps and the cached planes
    compute the same integers as the gray path, stepped and in log_prob."""
    from ridecodec_rowlstm.train import from_gray

    network = RowLSTM(RGB_CHANNELS, RGB_HIDDEN, GROUPS)
    from_gray(network)  # version 1's gray network, which version 2 codes gray with
    model = _with_rgb_network(network, version="2")
    pixels = testing.planes_of(testing.synthetic_image(6, 9, 3, seed=4))
    colour, _ = testing.stepped_tables(model, pixels)
    gray = [testing.stepped_tables(model, pixels[c : c + 1])[0] for c in range(3)]
    done = 0
    for _, rows, _ in engine.wavefront_for(model, 6, 9).steps():
        n = len(rows)
        for c in range(3):
            assert torch.equal(colour[3 * done + c * n : 3 * done + (c + 1) * n], gray[c][done : done + n])
        done += n
    image = torch.from_numpy(pixels)[None]
    planes = sum(float(model.log_prob(image[:, c : c + 1])) for c in range(3))
    assert float(model.log_prob(image)) == pytest.approx(planes, rel=1e-12)


def test_a_random_rgb_network_steps_causally_and_as_log_prob_says():
    """Random RGB weights (every cross-group weight the masks allow is nonzero): the stepped
    tables equal log_prob's and do not change when the canvas holds the whole image from the
    start (a step reading a pixel's own or later channel, or a later pixel, would change them)."""
    torch.manual_seed(1)
    network = RowLSTM(RGB_CHANNELS, RGB_HIDDEN, GROUPS)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(3.0)
    model = _with_rgb_network(network)
    pixels = testing.planes_of(testing.synthetic_image(6, 7, 3, seed=6))
    tables, symbols = testing.stepped_tables(model, pixels)
    revealed, _ = testing.stepped_tables(model, pixels, reveal_everything=True)
    assert torch.equal(tables, revealed)
    stepped = float(torch.log(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())
    assert math.isclose(float(model.log_prob(torch.from_numpy(pixels)[None])), stepped, rel_tol=1e-9)
