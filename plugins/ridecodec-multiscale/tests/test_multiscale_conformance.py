"""multiscale keeps the plug-in contract (ridecodec's conformance kit: gray, RGB and RGBA) in its
two-stage order, its integer networks agree with the float networks they were exported from, the
RGB networks of both stages are causal over their channel groups, and version 1 (gray) is still
what it was."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ridecodec import api, container, engine, testing
from ridecodec_multiscale.model import FACTOR, MultiScaleModel

#: The kit's checks that decode every layout at its full test sizes many times (subprocesses under
#: each kernel set, steps of one position): in colour three and four times the gray model's calls
#: of a larger network. They run below on the kit's gray image and tiny colour ones (the same
#: checks, from the kit's public pieces).
SLOW = {"check_cross_kernel", "check_determinism"}
#: (height, width) of the colour images of the slow checks: small, still two stages and coded by
#: the model
TINY = (6, 7)


@pytest.fixture(scope="module")
def model():
    return MultiScaleModel()


@pytest.mark.parametrize(
    "check", [check for check in testing.CHECKS if check.__name__ not in SLOW], ids=lambda check: check.__name__
)
def test_multiscale_conforms(check):
    check("multiscale")


def _slow_check_images(height: int, width: int) -> dict[str, np.ndarray]:
    """The gray image of the kit's slow checks at its size, RGB and RGBA at TINY: (C, H, W)."""
    return {
        layout: testing.planes_of(testing.synthetic_image(*size, channels, seed=len(layout)))
        for layout, channels, size in (("L", 1, (height, width)), ("RGB", 3, TINY), ("RGBA", 4, TINY))
    }


@pytest.mark.slow
def test_tables_are_the_same_whatever_the_split_and_threads(model):
    """The kit's check_determinism, with tiny colour images: the same calls give the same tables,
    and so do steps split in calls of 1 and 3 positions, on 1 and 2 threads."""
    for layout, pixels in _slow_check_images(9, 17).items():
        reference, _ = testing.stepped_tables(model, pixels)
        assert torch.equal(reference, testing.stepped_tables(model, pixels)[0]), layout
        for split in (engine.Split(1), engine.Split(3), engine.Split(None, 2), engine.Split(3, 2)):
            assert torch.equal(reference, testing.stepped_tables(model, pixels, split=split)[0]), (layout, split)


@pytest.mark.slow
def test_files_decode_under_every_kernel_set():
    """The kit's check_cross_kernel, with tiny colour images: files encoded here decode to their
    pixels in fresh processes under torch's generic, AVX2 and (where the CPU has it) AVX-512
    kernels, on 1 and 2 threads, steps split in calls of 1, 3 and all positions."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for layout, pixels in _slow_check_images(13, 19).items():
            image = pixels[0] if layout == "L" else pixels.transpose(1, 2, 0)
            data = api.compress(image, model="multiscale", device="cpu", model_only=True)
            assert api.read_header(data).coder == container.CODER_RANGE_CATEGORICAL, layout
            paths.append(Path(folder) / f"{layout}.rdc")
            paths[-1].write_bytes(data)
        failures = [
            f"{kernels}: {Path(path).name}: {problem}"
            for kernels in testing.available_kernel_sets()
            for path, problems in testing.decode_under_kernels(paths, kernels).items()
            for problem in problems
        ]
    assert not failures, "multiscale is not exact across kernels: " + "; ".join(failures)


@pytest.mark.parametrize(
    ("shape", "channels"),
    [((1, 1), 1), ((1, 9), 1), ((9, 1), 1), ((2, 2), 1), ((5, 7), 1), ((8, 3), 1), ((13, 10), 1)]
    + [((1, 1), 3), ((1, 6), 3), ((5, 1), 3), ((2, 3), 3), ((5, 6), 3), ((3, 4), 4)],
)
def test_odd_and_thin_images(model, shape, channels):
    """Every size codes in the two stages, gray and colour: the tables are honest (revealing the
    whole image changes none) and log_prob is their sum."""
    if min(shape) > 1:
        pixels = testing.planes_of(testing.synthetic_image(*shape, channels, seed=sum(shape)))
    else:  # (synthetic_image needs two rows and columns)
        pixels = np.random.default_rng(1).integers(0, 256, (channels, *shape), dtype=np.uint8)
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
    drawn = sampling.sample(model, "RGB", 4, 5, seed=2)
    assert drawn.shape == (3, 4, 5) and np.array_equal(drawn, sampling.sample(model, "RGB", 4, 5, seed=2))


def test_the_rgb_integer_networks_match_the_float_export(model):
    """The shipped RGB integers come from the float networks (stage 1: pixelcnn 2's RGB network,
    copied as it is): the exact code length of a smooth RGB image is within 1% of the float
    networks'."""
    from ridecodec_multiscale.export import FIRST_LAYERS, LAYERS, module_of, pixelcnn_rgb_arrays, quantize_rgb
    from ridecodec_multiscale.model import GROUPS, RGB_CHANNELS
    from ridecodec_multiscale.network import MultiScale

    network = MultiScale(RGB_CHANNELS, groups=GROUPS)
    arrays = model.state_dict()
    with torch.no_grad():
        for layer in LAYERS:
            module = module_of(network, layer)
            input_bits = 7 if layer.removeprefix("small_") in FIRST_LAYERS else 12
            module.weight.copy_(arrays[f"rgb_{layer}_weight"].double() / 2**16)
            module.bias.copy_(arrays[f"rgb_{layer}_bias"].double() / 2 ** (input_bits + 16))
    assert all(np.array_equal(value, arrays["rgb_" + key].numpy()) for key, value in quantize_rgb(network).items())
    assert all(np.array_equal(value, arrays["rgb_" + key].numpy()) for key, value in pixelcnn_rgb_arrays().items())
    image = torch.from_numpy(testing.planes_of(testing.synthetic_image(24, 32, 3, seed=5)))[None]
    exact_nats = -float(model.log_prob(image))
    with torch.no_grad():
        small = image[:, :, ::FACTOR, ::FACTOR].contiguous()
        float_bits = float(network.small.nll_bits(small)) * small.numel()
        float_bits += float(network.conditional.nll_bits(image)) * (image.numel() - small.numel())
    float_nats = float_bits * math.log(2)
    assert abs(exact_nats - float_nats) <= 0.01 * float_nats


@pytest.mark.parametrize("where", [(4, 5), (5, 4), (5, 5)], ids=["row", "column", "diagonal"])
def test_the_float_rgb_stages_are_causal_over_their_channel_groups(where):
    """Stage 1: channel g's logits at a small pixel read earlier small pixels and the pixel's
    channels before g, nothing else. Stage 2, at a pixel of each parity class (between two
    stage-1 pixels in a row, in a column, diagonally): earlier pixels, the pixel's channels before
    g, and every channel of stage-1 pixels anywhere in reach, below and right included; never a
    later stage-2 pixel nor the pixel's channels from g on. The gradients of a random network say
    so."""
    from ridecodec_multiscale.network import MultiScale, stage1_indicator

    torch.manual_seed(0)
    network = MultiScale(24, 2, 1, groups=3)
    height, width = 10, 11
    row, col = where
    later = torch.zeros(height, width, dtype=torch.bool)
    later.view(-1)[row * width + col + 1 :] = True
    known = stage1_indicator(height, width).bool()
    for channel in range(3):
        for stage, logits in ((1, network.small.logits), (2, network.conditional.logits)):
            u = torch.randn(1, 3, height, width, requires_grad=True)
            logits(u)[0, channel, :, row, col].sum().backward()
            grad = u.grad[0].abs()  # type: ignore[index]
            said = f"stage {stage} channel {channel} at {where}"
            unseen = later if stage == 1 else later & ~known
            assert float(grad[:, unseen].sum()) == 0, f"{said} sees later pixels"
            assert float(grad[channel:, row, col].sum()) == 0, f"{said} sees itself or later channels"
            assert bool((grad[:channel, row, col] > 0).all()), f"{said} ignores the pixel's earlier channels"
            assert float(grad[:, :row].sum()) > 0, f"{said} ignores the rows above"
            if stage == 2:  # the stage-1 pixel below and right of it, all three channels
                assert bool((grad[:, 6, 6] > 0).all()), f"{said} ignores stage-1 pixels below"


def test_version_1_is_the_gray_network_and_version_2_codes_gray_alike():
    """for_version("1") holds the gray buffers alone (version 1's digest); its gray tables are
    version 2's, and it refuses colour."""
    current = MultiScaleModel()
    earlier = MultiScaleModel.for_version("1")
    assert earlier.version == "1" and earlier.modes == ("L",) and current.version == "2"
    assert set(earlier.state_dict()) == {key for key in current.state_dict() if not key.startswith("rgb_")}
    pixels = testing.planes_of(testing.synthetic_image(9, 12, seed=2))
    assert torch.equal(testing.stepped_tables(earlier, pixels)[0], testing.stepped_tables(current, pixels)[0])
    with pytest.raises(ValueError, match="codes L images"):
        earlier.begin(torch.zeros(3, 4, 4, dtype=torch.uint8))


def _three_gray_copies(gray: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RGB integer arrays of both stages as three copies of the gray ones, group g reading only
    channel g (and the stage-1 indicator): cross-group weights zero."""
    from ridecodec_multiscale.model import BIASED, GROUPS

    arrays = {}
    for key, value in gray.items():
        layer, part = key.rsplit("_", 1)
        out = value.shape[0]
        if part == "bias":
            if layer == "bias":  # chunk j of every group together
                arrays[key] = value.view(len(BIASED), 1, -1).expand(-1, GROUPS, -1).reshape(-1)
            else:
                arrays[key] = value.repeat(GROUPS)
            continue
        inputs = value.shape[1]
        if layer == "cond_first":  # inputs [u_R k, u_G k, u_B k, k]; gray [u k, k]
            copy = torch.zeros(GROUPS * out, GROUPS + 1, *value.shape[2:], dtype=value.dtype)
            for g in range(GROUPS):
                copy[g * out : (g + 1) * out, g] = value[:, 0]
                copy[g * out : (g + 1) * out, GROUPS] = value[:, 1]
        elif layer == "bias":
            size = out // len(BIASED)
            copy = torch.zeros(GROUPS * out, GROUPS * inputs, *value.shape[2:], dtype=value.dtype)
            for j in range(len(BIASED)):
                for g in range(GROUPS):
                    rows = slice(j * GROUPS * size + g * size, j * GROUPS * size + (g + 1) * size)
                    copy[rows, g * inputs : (g + 1) * inputs] = value[j * size : (j + 1) * size]
        else:
            copy = torch.block_diag(*[value.flatten(1)] * GROUPS).view(GROUPS * out, GROUPS * inputs, *value.shape[2:])
        arrays[key] = copy
    return arrays


def test_rgb_networks_of_three_gray_copies_step_the_gray_tables():
    """RGB networks of both stages made of three copies of the gray ones (each group reading its
    own colour only) must give, channel by channel, the gray model's tables of that plane: the
    grouped layers, the per-group steps, the stage-1 positions stage 2 computes in its wavefront
    and the cached planes compute the same integers as the gray path, stepped and in log_prob.
    Training's ``from_gray`` makes those copies of stage 2."""
    from ridecodec_multiscale.export import quantize
    from ridecodec_multiscale.model import COND_LAYERS, MASKED_LAYERS, RGB_CHANNELS
    from ridecodec_multiscale.network import MultiScale
    from ridecodec_multiscale.train import from_gray

    model = MultiScaleModel()
    gray = {key: value for key, value in model.state_dict().items() if not key.startswith("rgb_")}
    copies = _three_gray_copies(gray)
    network = MultiScale(RGB_CHANNELS, groups=3)
    from_gray(network.conditional)
    stage2 = quantize(network)
    for layer in MASKED_LAYERS + COND_LAYERS:
        for part in ("weight", "bias"):
            assert np.array_equal(stage2[f"{layer}_{part}"], copies[f"{layer}_{part}"].numpy()), (layer, part)
    with torch.no_grad():
        for key, value in copies.items():
            getattr(model, f"rgb_{key}").copy_(value)
    model._rgb_layers = None
    height, width = 8, 11
    pixels = testing.planes_of(testing.synthetic_image(height, width, 3, seed=4))
    colour, _ = testing.stepped_tables(model, pixels)
    planes = [testing.stepped_tables(model, pixels[c : c + 1])[0] for c in range(3)]
    done = 0
    for _, rows, _ in engine.wavefront_for(model, height, width).steps():
        n = len(rows)
        for c in range(3):
            assert torch.equal(colour[3 * done + c * n : 3 * done + (c + 1) * n], planes[c][done : done + n])
        done += n
    image = torch.from_numpy(pixels)[None]
    per_plane = sum(float(model.log_prob(image[:, c : c + 1])) for c in range(3))
    assert float(model.log_prob(image)) == pytest.approx(per_plane, rel=1e-12)
