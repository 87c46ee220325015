"""The exact toolkit (ridecodec.exact) and the compiled kernels (ridecodec.exact_cpu): exact
integer results, the definitions they promise, and kernels that give the torch code's integers."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from ridecodec import exact, exact_cpu, registry
from ridecodec.models import export, mcgsm, ride
from ridecodec.models.weights import shipped
from ridecodec.testing import planes_of, stepped_tables, synthetic_image

# --- the shipped lookup tables ------------------------------------------------------------------


def test_shipped_tables_are_the_pinned_ones_and_the_generator_reproduces_them():
    shipped_tables = exact._shipped_tables()
    assert exact.tables_digest(shipped_tables) == exact.TABLES_SHA256
    rebuilt = exact.build_tables()
    assert all(np.array_equal(rebuilt[name], shipped_tables[name]) for name in shipped_tables)


@pytest.mark.parametrize(
    ("function", "reference", "in_bits", "out_bits", "tolerance"),
    [
        (exact.sigmoid, lambda x: 1 / (1 + math.exp(-x)), exact.PRE_BITS, exact.ACT_BITS, 2e-4),
        (exact.tanh, math.tanh, exact.PRE_BITS, exact.ACT_BITS, 3e-4),
        (lambda v, b: exact.exp_neg(v.abs(), b), lambda x: math.exp(-abs(x)), 16, exact.PROB_BITS, 3e-4),
        (exact.gaussian_cdf, lambda x: 0.5 * math.erfc(-x / math.sqrt(2)), 36, exact.PROB_BITS, 1e-4),
        (exact.logistic_cdf, lambda x: 1 / (1 + math.exp(-x)), 36, exact.PROB_BITS, 1e-4),
    ],
)
def test_lookups_approximate_their_functions(function, reference, in_bits, out_bits, tolerance):
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    values = function(exact.to_fixed(x, in_bits), in_bits)
    assert values.dtype == torch.int64
    expected = torch.tensor([reference(float(v)) for v in x], dtype=torch.float64)
    assert (exact.from_fixed(values, out_bits) - expected).abs().max() < tolerance


def test_isqrt_is_exact():
    rng = random.Random(0)
    values = [0, 1, 2, 3, 4, 2**52 - 1, 2**51] + [rng.randrange(2**52) for _ in range(2000)]
    values += [k * k + d for k in (rng.randrange(2**26) for _ in range(500)) for d in (-1, 0, 1) if k * k + d >= 0]
    got = exact.isqrt(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [math.isqrt(v) for v in values]


# --- exact products -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_bound", "weight_bound"), [(255, 2**30), (2**16, 2**16), (2**34, 2**22), (2**36, 2**20)]
)
def test_exact_linear_equals_integer_arithmetic(input_bound, weight_bound):
    generator = torch.Generator().manual_seed(input_bound % 1000)
    weight = torch.randint(-weight_bound, weight_bound, (37, 11), generator=generator, dtype=torch.int64)
    bias = torch.randint(-(2**40), 2**40, (11,), generator=generator, dtype=torch.int64)
    x = torch.randint(-input_bound, input_bound + 1, (23, 37), generator=generator, dtype=torch.int64)
    x[0] = input_bound  # the extremes, where a float64 product would round
    x[1] = -input_bound
    layer = exact.ExactLinear(weight, bias, input_bound)
    expected = [
        [
            sum(int(a) * int(w) for a, w in zip(row, column)) + int(b)
            for column, b in zip(weight.T.tolist(), bias.tolist())
        ]
        for row in x.tolist()
    ]
    assert layer(x).tolist() == expected
    if layer.limbs == 1 and layer.result_bound < exact.FLOAT64_EXACT:
        assert layer.float_result(x.double()).to(torch.int64).tolist() == expected
    elif input_bound > 2**30:
        assert layer.limbs > 1  # too big for one float64 product: split


def test_exact_linear_refuses_what_would_overflow():
    with pytest.raises(ValueError, match="overflow"):
        exact.ExactLinear(torch.full((4, 2), 2**40, dtype=torch.int64), None, 2**30)


# --- probability tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("cdf", ["gaussian", "logistic"])
def test_mixture_frequencies_are_positive_integers_summing_to_2_24(cdf):
    generator = torch.Generator().manual_seed(1)
    n, k = 300, 3
    weights = torch.randint(0, 2**30, (n, k), generator=generator)
    weights[0] = 0  # an all-zero row is normalized like any other
    means = torch.randint(-600 << exact.MEAN_BITS, 900 << exact.MEAN_BITS, (n, k), generator=generator)
    variances = torch.randint(7, 2**32, (n, k), generator=generator)
    table = exact.mixture_frequencies(weights, means, exact.inverse_scales(variances), cdf)
    assert table.dtype == torch.float32 and table.shape == (n, 256)
    assert torch.equal(table, table.round()) and (table >= exact.FLOOR_UNITS).all()
    assert (table.double().sum(1) == 2**24).all()


def test_mixture_frequencies_match_the_discretized_gaussian():
    means = torch.tensor([[100.3], [0.0], [254.9], [17.0]], dtype=torch.float64)
    stds = torch.tensor([[2.0], [40.0], [0.7], [0.05]], dtype=torch.float64)
    table = (
        exact.mixture_frequencies(
            torch.ones(4, 1, dtype=torch.int64),
            exact.to_fixed(means, exact.MEAN_BITS),
            exact.inverse_scales(exact.to_fixed(stds.square(), 2 * exact.MEAN_BITS)),
        ).double()
        / 2**24
    )
    edges = torch.cat([torch.tensor([-math.inf]), torch.arange(1, 256) - 0.5, torch.tensor([math.inf])]).double()
    cdf = 0.5 * torch.erfc(-(edges - means) / (stds * math.sqrt(2)))
    expected = torch.diff(cdf, dim=1) * (1 - 2**-12) + 2**-20
    # means are at 1/256 pixel: a shift of up to 1/512 moves up to 1e-3 of a narrow component's mass
    assert (table - expected).abs().max() < 1e-3
    # the cost of the approximation in bits, where the mass is
    assert float((expected * (expected / table).log2()).sum(1).max()) < 1e-3


# --- the compiled kernels compute the torch code's integers ----------------------------------------

needs_kernels = pytest.mark.skipif(not exact_cpu.AVAILABLE, reason="numba is not installed")


@pytest.fixture
def torch_only(monkeypatch):
    def run(function, *arguments):
        monkeypatch.setattr(exact_cpu, "enabled", False)
        try:
            return function(*arguments)
        finally:
            monkeypatch.setattr(exact_cpu, "enabled", True)

    return run


@needs_kernels
def test_lstm_cell_kernel_equals_torch(torch_only):
    layer = ride.ExactSpatialLSTM(7, extended=False, stacked=False)
    generator = torch.Generator().manual_seed(2)
    n = 400
    pre = torch.randint(-(2**37), 2**37, (n, 35), generator=generator)
    pre[:50] = torch.randint(-(2**33), 2**33, (50, 35), generator=generator)  # the interesting range
    pre[50] = 2**40  # saturating everything
    limit = 50 << exact.ACT_BITS
    c_left = torch.randint(-limit, limit + 1, (n, 7), generator=generator)
    c_up = torch.randint(-limit, limit + 1, (n, 7), generator=generator)
    h_torch, c_torch = torch_only(layer.cell, pre, c_left, c_up)
    h_kernel, c_kernel = layer.cell(pre, c_left, c_up)
    assert torch.equal(h_torch, h_kernel) and torch.equal(c_torch, c_kernel)
    assert c_kernel.abs().max() == limit  # the clip was reached


@needs_kernels
def test_lstm_cell_on_the_states_equals_the_cell_and_the_stepper_s_scatter(torch_only):
    """The compiled cell that reads the memories from the skyline states and writes the new
    states back: what the stepper's torch code does (index_select, the cell, index_copy_), for
    positions in adjacent columns too, which must read the old states of their left columns."""
    hidden, width = 7, 12
    layer = ride.ExactSpatialLSTM(hidden, extended=False, stacked=False)
    generator = torch.Generator().manual_seed(3)
    limit = 50 << exact.ACT_BITS
    h_states = torch.randint(-(2**16), 2**16, (width + 1, hidden), generator=generator).to(torch.float64)
    c_states = torch.randint(-limit, limit + 1, (width + 1, hidden), generator=generator).to(torch.float64)
    cols = torch.tensor([0, 1, 2, 5, 6, 11])  # 0 reads slot 0 (column -1); 1 and 2 read the old 1 and 2
    pre = torch.randint(-(2**33), 2**33, (len(cols), 5 * hidden), generator=generator).to(torch.float64)
    c_left, c_up = c_states[cols].to(torch.int64), c_states[cols + 1].to(torch.int64)
    h_expected, c_expected = torch_only(layer.cell, pre.to(torch.int64), c_left, c_up)
    h_after, c_after = h_states.clone(), c_states.clone()
    h_after[cols + 1], c_after[cols + 1] = h_expected.to(torch.float64), c_expected.to(torch.float64)
    h = exact_cpu.lstm_cell_on_states(pre, h_states, c_states, cols)
    assert torch.equal(h, h_expected.to(torch.float64))
    assert torch.equal(h_states, h_after) and torch.equal(c_states, c_after)


@needs_kernels
@pytest.mark.parametrize("scale", [1, 2**20, 2**34])
def test_mcgsm_head_kernel_equals_torch(torch_only, scale):
    model = registry.load_model("ride", "cpu")
    head = model.layouts["L"][0].head
    num_features = head.shape[0]
    generator = torch.Generator().manual_seed(scale % 97)
    projected = torch.randint(
        -scale * 2**16, scale * 2**16 + 1, (300, head.gate.shape[0] + head.gate.shape[1]), generator=generator
    )
    projected[:, num_features:] += 128 << exact.PRE_BITS  # means around mid-grey
    projected[0] = 0  # ties everywhere
    projected[1, num_features:] = 2**62 // 4  # means far out of range
    assert torch.equal(torch_only(head.frequencies, projected), head.frequencies(projected))


@needs_kernels
@pytest.mark.parametrize("name", ["mcgsm", "ride"])
def test_models_give_the_same_tables_with_and_without_kernels(torch_only, name):
    model = registry.load_model(name, "cpu")
    for channels in (1, 3, 4):
        pixels = planes_of(synthetic_image(9, 12, channels, seed=channels))
        assert torch.equal(torch_only(stepped_tables, model, pixels)[0], stepped_tables(model, pixels)[0])


# --- the shipped exact weights --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "module"), [("mcgsm", mcgsm), ("ride", ride)])
def test_shipped_exact_weights_are_the_float_weights_quantized(kind, module):
    """The exact files are what `python -m ridecodec.models.export` makes of the float files."""
    floats = shipped(module.SHIPPED_WEIGHTS)
    exacts = shipped(module.SHIPPED_EXACT_WEIGHTS)
    for layout in floats:
        quantized = module.load_exact_weights(floats[layout])[1]
        loaded = module.load_exact_weights(exacts[layout])[1]
        for (key, a), (_, b) in zip(sorted(quantized.state_dict().items()), sorted(loaded.state_dict().items())):
            assert torch.equal(a, b), f"{kind} {layout}: {key}"


@pytest.mark.parametrize(("kind", "module"), [("mcgsm", mcgsm), ("ride", ride)])
def test_export_writes_the_shipped_exact_weights(kind, module, tmp_path):
    """The exporter itself, on the shipped gray float file, writes the shipped gray exact weights."""
    destination = tmp_path / "exact.pt"
    export.main([kind, str(shipped(module.SHIPPED_WEIGHTS)["L"]), str(destination)])
    written = module.load_exact_weights(destination)[1].state_dict()
    loaded = module.load_exact_weights(shipped(module.SHIPPED_EXACT_WEIGHTS)["L"])[1].state_dict()
    assert written.keys() == loaded.keys()
    assert all(torch.equal(value, loaded[key]) for key, value in written.items()), kind


@pytest.mark.parametrize(("kind", "module"), [("mcgsm", mcgsm), ("ride", ride)])
def test_exact_models_code_within_a_hair_of_the_float_models(kind, module):
    """Quantization costs next to nothing: on a synthetic image, gray and colour, the exact model's
    code length is at most 0.1% above the float model's (benchmarks/RESULTS.md has real images; on
    tiny images the first row, all border fill, costs up to 0.2% more)."""
    model = registry.load_model(kind, "cpu")
    floats = {layout: module.load_weights(path)[1] for layout, path in shipped(module.SHIPPED_WEIGHTS).items()}
    for channels, layout in ((1, "L"), (3, "RGB")):
        pixels = planes_of(synthetic_image(48, 60, channels, seed=7))
        tables, symbols = stepped_tables(model, pixels)
        exact_bits = -float(torch.log2(tables[torch.arange(len(symbols)), symbols] / tables.sum(1)).sum())
        planes = torch.from_numpy(pixels)[None]
        with torch.no_grad():
            float_bits = 0.0
            for channel, plan in enumerate(model._plan(channels)):
                float_model = floats[layout][channel]
                if kind == "ride":
                    nats = float_model.log_likelihood(
                        plan.neighbourhood, planes[:, plan.planes], plan.channel, planes[:, channel]
                    )
                else:
                    rows = torch.arange(48).repeat_interleave(60)
                    cols = torch.arange(60).repeat(48)
                    x = plan.neighbourhood.gather(planes[0, plan.planes], rows, cols, plan.channel)
                    nats = float_model.bin_log_prob(x, planes[0, channel, rows, cols]).double().sum()
                float_bits -= float(nats) / math.log(2)
        # (better is possible: the float model's far tails lose precision that the integers keep)
        assert exact_bits < float_bits * 1.001, (kind, layout, exact_bits, float_bits)


# --- exact (masked) convolutions -------------------------------------------------------------------


def test_exact_conv2d_equals_integer_arithmetic_and_masks_are_causal():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randint(-(2**20), 2**20, (6, 3, 5, 5), generator=generator)
    bias = torch.randint(-(2**30), 2**30, (6,), generator=generator)
    mask = exact.causal_mask(6, 3, 5, 5, "A", groups=3)
    layer = exact.ExactConv2d(weight, bias, 255, mask)
    x = torch.randint(0, 256, (2, 3, 7, 8), generator=generator)
    out = layer(x)
    masked = weight * mask
    for b, o, i, j in [(0, 0, 0, 0), (1, 5, 3, 4), (0, 3, 6, 7), (1, 2, 2, 0)]:
        expected = int(bias[o])
        for c in range(3):
            for di in range(5):
                for dj in range(5):
                    y, k = i + di - 2, j + dj - 2
                    if 0 <= y < 7 and 0 <= k < 8:
                        expected += int(masked[o, c, di, dj]) * int(x[b, c, y, k])
        assert int(out[b, o, i, j]) == expected
    # mask A: output group g (channels 2g, 2g + 1) at (i, j) never reads (i, j) in groups >= g,
    # nor anything after (i, j) in raster order
    changed = x.clone()
    changed[:, :, 4, 5:] += 1  # (4, 5) onwards in row 4 ...
    changed[:, :, 5:] += 1  # ... and every later row
    changed[:, 2, 4, 4] += 1  # group 2 of (4, 4)
    before, after = layer(x), layer(changed)
    assert torch.equal(before[:, :, :4], after[:, :, :4]) and torch.equal(before[:, :, 4, :4], after[:, :, 4, :4])
    assert torch.equal(before[:, :, 4, 4], after[:, :, 4, 4])  # group 2 is no output's past at mask A ...
    assert not torch.equal(layer(changed)[:, :, 4, 5], before[:, :, 4, 5])  # ... but (4, 4) feeds (4, 5)
    mask_b = exact.causal_mask(6, 3, 5, 5, "B", groups=3)
    assert mask_b[4:, 2, 2, 2].eq(1).all() and mask[4:, 2, 2, 2].eq(0).all()


def test_exact_conv2d_refuses_weights_it_cannot_sum_exactly():
    with pytest.raises(ValueError, match="too large"):
        exact.ExactConv2d(torch.full((1, 4, 3, 3), 2**40, dtype=torch.int64), None, 2**16)


def test_a_damaged_table_file_is_one_line_and_touches_nothing(tmp_path, monkeypatch):
    """A shipped table that fails its checksum stops the exact models with one line (exit 6),
    writes no output, and leaves models that do not use the tables working."""
    from click.testing import CliRunner
    from PIL import Image

    from ridecodec.cli import main

    def clear():
        exact._shipped_tables.cache_clear()
        exact._device_tables.clear()
        exact_cpu._numpy_tables.clear()

    Image.fromarray(synthetic_image(9, 11)).save(tmp_path / "a.png")
    monkeypatch.setattr(exact, "TABLES_SHA256", "0" * 64)
    clear()
    try:
        result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-m", "ride", "-q"])
        assert result.exit_code == 6 and "exact_tables.npz is damaged" in result.output
        assert "Traceback" not in result.output and not (tmp_path / "a.rdc").exists()
        # loco's own tables need no exact tables, but adaptation 3's logistic does: one line too
        loco = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-m", "loco", "-q"])
        assert loco.exit_code == 6 and "exact_tables.npz is damaged" in loco.output
    finally:
        monkeypatch.undo()
        clear()


def test_softmax_frequencies_are_positive_and_sum_to_2_24():
    """The PixelRNN family's integer softmax (the plug-ins pixelcnn and rowlstm use it)."""
    logits = torch.from_numpy(np.random.default_rng(0).integers(-(1 << 20), 1 << 20, (50, 256)))
    logits[0] = 0  # a flat row
    logits[1, 7] = 1 << 22  # one value takes (nearly) everything
    table = exact.softmax_frequencies(logits, 12).double()
    assert (table > 0).all() and (table.sum(1) == 2**24).all()
    assert int(table[1].argmax()) == 7 and table[1, 7] == exact.MIXTURE_UNITS + exact.FLOOR_UNITS
    assert (table[0] == table[0, 0]).all()  # equal logits, equal frequencies


def test_softmax_log_prob_is_the_coders_tables_in_any_chunks():
    generator = torch.Generator().manual_seed(0)
    features = torch.randint(-(1 << 14), 1 << 14, (50, 256), generator=generator)
    symbols = torch.randint(0, 256, (50,), generator=generator)
    table = exact.softmax_frequencies(features, 12).double()
    expected = torch.log(table[torch.arange(50), symbols] / table.sum(1)).sum()
    for chunk in (1, 7, 50, 1000):
        got = exact.softmax_log_prob(lambda rows: rows, features, symbols, 12, chunk)
        assert torch.allclose(got, expected, rtol=0, atol=1e-9)


def test_fixed_point_layer_rounds_weights_and_biases_to_their_scales():
    weight = torch.tensor([[0.5, -0.25], [1.0, 0.0]])
    arrays = exact.fixed_point_layer("layer", weight, torch.tensor([0.5, -1.0]), input_bits=3, weight_bits=4)
    assert arrays["layer_weight"].tolist() == [[8, -4], [16, 0]] and arrays["layer_weight"].dtype == np.int32
    assert arrays["layer_bias"].tolist() == [64, -128]
    assert set(exact.fixed_point_layer("x", weight, None, 3, 4)) == {"x_weight"}
    with pytest.raises(ValueError, match="x_weight does not fit int32"):
        exact.fixed_point_layer("x", weight * 2.0**20, None, 3, 12)
