"""Online adaptation (ridecodec.adaptive) and the PNG fallback: what the encoder chooses per
image, and that both decode exactly and refuse malformed files with one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import ridecodec
from ridecodec import adaptive, codec, coloursets, container, engine, imageio, lsq, registry
from ridecodec.errors import FormatError
from ridecodec.models import CausalReach, DensityModel
from ridecodec.testing import planes_of, synthetic_graphic, synthetic_image


def _tables_for(model, pixels, variant, split=engine.Split()):
    """Every table the coder receives for ``variant``, in order (the encoder's own path)."""
    coder_tables = engine._CoderTables([variant], pixels.shape, engine.wavefront_for(model, *pixels.shape[1:]))
    seen = []

    def record(rows, cols, channel, table):
        symbols = pixels[channel, rows.numpy(), cols.numpy()].astype(np.int32)
        seen.extend(coder_tables.tables(rows, cols, channel, table))
        coder_tables.record(channel, symbols)
        return symbols

    canvas = torch.zeros(pixels.shape, dtype=torch.uint8)
    engine._run(model, canvas, record, None, split, coder_tables.end_step)
    return np.concatenate(seen)


@pytest.mark.parametrize("version", [1, 2])
def test_adaptation_changes_only_the_candidates_entries_and_keeps_every_value_possible(version):
    """Versions 1 and 2 (version 3 mixes in a whole distribution first: see its own test)."""
    model = registry.load_model("loco")
    pixels = planes_of(synthetic_graphic(20, 24, 3, seed=1))
    plain = _tables_for(model, pixels, engine.Variant())
    adapted = _tables_for(model, pixels, engine.Variant(adaptation=version))
    assert adapted.dtype == np.float32 and np.isfinite(adapted).all() and (adapted > 0).all()
    # the other values keep the model's proportions: one factor per row (the median ratio of
    # the entries above the floor of 1), but for entries held at the floor; only the candidates'
    # entries differ
    changed = 0
    for adapted_row, plain_row in zip(adapted, plain):
        ratio = adapted_row / plain_row
        common = np.median(ratio[adapted_row > 1])
        differ = (np.abs(ratio / common - 1) > 1e-4) & (adapted_row > 1)
        assert differ.sum() <= len(adaptive.neighbours_for(version, 3))
        changed += differ.sum()
    assert changed > 0
    # a candidate's probability is its refined one: never below 16 of 2**24, never all the mass
    probability = adapted / adapted.sum(axis=1, dtype=np.float64, keepdims=True)
    assert probability.max() <= adaptive.MAX_CANDIDATE_MASS / adaptive.ONE + 1e-6


@pytest.mark.parametrize("rows_per_call", [1, 3])
def test_adaptation_does_not_depend_on_how_a_step_is_split(rows_per_call):
    """State changes only between wavefront steps, so any split of a step gives the same tables."""
    model = registry.load_model("loco")
    pixels = planes_of(synthetic_graphic(18, 22, 3, seed=2))
    variant = engine.Variant(adaptation=adaptive.VERSION)
    whole = _tables_for(model, pixels, variant)
    split = _tables_for(model, pixels, variant, engine.Split(rows_per_call=rows_per_call, threads=2))
    assert np.array_equal(whole, split)


def test_adaptation_learns_what_the_image_repeats():
    model = registry.load_model("ride")
    pixels = planes_of(synthetic_graphic(40, 48, seed=3))
    plain, adapted = engine.encode_variants(
        model, pixels, [engine.Variant(), engine.Variant(adaptation=adaptive.VERSION)]
    )
    assert adapted.nbytes < 0.8 * plain.nbytes
    bits = engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=adaptive.VERSION))
    assert abs(8 * adapted.nbytes - bits) < 0.01 * bits + 64  # the payload costs the adapted likelihood


def _dithered(height: int, width: int, seed: int) -> np.ndarray:
    """A gray picture dithered with a period of two: a pixel tends to equal the one two to its
    left and the one two up, rarely its direct neighbours."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 2), dtype=np.uint8)
    rows, cols = np.indices((height, width))
    picture = levels[rows // 8, cols // 8, (rows + cols) % 2]
    noise = rng.random((height, width)) < 0.1  # now and then a value of neither
    return np.where(noise, rng.integers(0, 256, (height, width)), picture).astype(np.uint8)


def test_version_2_offers_the_pixels_two_away_in_gray_and_codes_a_dither_smaller():
    """Version 2's gray candidates add WW and NN (colour keeps version 1's four), and a picture
    dithered at period two costs less with them; version 1 still computes its own numbers."""
    assert adaptive.neighbours_for(1, 1) == adaptive.NEIGHBOURS == adaptive.neighbours_for(2, 3)
    assert adaptive.neighbours_for(2, 1) == adaptive.NEIGHBOURS + ((0, -2), (-2, 0))
    model = registry.load_model("loco")
    pixels = planes_of(_dithered(48, 64, seed=30))
    first, second = (
        engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=version)) for version in (1, 2)
    )
    assert second < 0.95 * first
    with pytest.raises(ValueError, match="adaptation version 9"):
        adaptive.Adaptation(1, 8, 8, version=9)


def _stripes(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Diagonal sinusoidal stripes of period about five pixels, the channels offset from each
    other, plus a little noise: what a least-squares predictor learns and a photo model does not."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((height, width))
    wave = 60 + 25 * np.sin(2 * np.pi * (cols * 0.21 + rows * 0.13))
    planes = [wave + 9 * k + rng.normal(0, 1.5, (height, width)) for k in range(channels)]
    return np.clip(np.round(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8).squeeze()


@pytest.mark.parametrize("channels", [1, 3])
def test_version_3_mixes_in_a_least_squares_prediction_and_codes_stripes_smaller(channels):
    """Version 3 mixes an online least-squares predictor's distribution into the model's tables
    (before version 2's candidates): every value stays possible, and stripes a photo model
    cannot predict cost far less than with version 2."""
    model = registry.load_model("ride")
    pixels = planes_of(_stripes(40, 48, channels, seed=32))
    tables = _tables_for(model, pixels, engine.Variant(adaptation=3))
    assert tables.dtype == np.float32 and (tables >= 1).all() and (tables < 2**24).all()
    second, third = (
        engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=version)) for version in (2, 3)
    )
    assert third < 0.9 * second


def _two_textures(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Stripes whose direction and period change from the left half to the right half: one
    linear predictor for the whole image fits neither well, a local one fits each."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((height, width))
    left = 60 + 25 * np.sin(2 * np.pi * (cols * 0.21 + rows * 0.13))
    right = 90 + 30 * np.sin(2 * np.pi * (cols * 0.07 - rows * 0.29))
    wave = np.where(cols < width // 2, left, right)
    planes = [wave + 9 * k + rng.normal(0, 0.6, (height, width)) for k in range(channels)]
    return np.clip(np.round(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8).squeeze()


@pytest.mark.parametrize("channels", [1, 3])
def test_version_4_fits_each_pixel_locally_and_codes_changing_textures_smaller(channels):
    model = registry.load_model("ride")
    pixels = planes_of(_two_textures(40, 64, channels, seed=34))
    third, fourth = (
        engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=version)) for version in (3, 4)
    )
    assert fourth < 0.95 * third, (fourth, third)


@pytest.mark.parametrize("channels", [1, 3])
def test_version_5_mixes_its_experts_geometrically_and_codes_smaller(channels):
    """A model and two least-squares predictors that each know part of the image: their product
    puts one sharper peak where the linear mix keeps two."""
    model = registry.load_model("ride")
    pixels = planes_of(_two_textures(40, 64, channels, seed=36))
    fourth, fifth = (
        engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=version)) for version in (4, 5)
    )
    assert fifth < 0.99 * fourth, (fifth, fourth)


def test_the_geometric_mixs_tables_are_logarithms_and_powers_of_two():
    """Computed in integers only, they are these numbers on every machine (pinned), and they are
    what they say: log2 at 2**-16 of 1 + i / 1024, and 2**24 * 2**(-f / 4096), to the unit."""
    logs, powers = lsq.log2_tables()
    assert logs[0] == 0 and logs[512] == 38336 and logs[-1] == 65490
    assert powers[0] == 1 << 24 and powers[2048] == 11863283 and powers[-1] == 8390028
    assert int(logs.sum()) == 37367338 and int(powers.sum()) == 49574818576
    assert np.abs(logs - np.round(65536 * np.log2(1 + np.arange(1024) / 1024))).max() <= 1
    assert np.abs(powers - np.round(2**24 * 2 ** (-np.arange(4096) / 4096))).max() <= 1
    values = np.array([1, 2, 3, 1000, 4095, 4096, 65535, 1 << 23, (1 << 24) - 1, 1 << 24])
    negative = lsq.negative_log2(values, logs) / 65536
    assert np.abs(negative + np.log2(values / 2**24)).max() < 0.0015  # the mantissa's 10 bits
    shape = lsq.logistic_shape()  # -log2 of the logistic density at z = i / 32, up to 12
    assert len(shape) == 385 and shape[0] == 2 << 16 and shape[32] == 153690 and shape[-1] == 1134576
    assert int(shape.sum()) == 223425172
    z = np.arange(385) / 32
    assert np.abs(shape / 65536 - (z * np.log2(np.e) + 2 * np.log2(1 + np.exp(-z)))).max() < 0.005


@pytest.mark.parametrize("version", [4, 6])
def test_the_local_fits_sums_are_their_windows_products(version, monkeypatch):
    """The incrementally kept sums each pixel's local fit solves equal the products of the pixels
    in its window, summed afresh: the window rows above from WINDOW columns left to one right,
    and the WINDOW pixels to the left, of the pixels the predictor learns from (version 6: for
    both fits, LOCAL_WINDOW's and WIDE_WINDOW's)."""
    windows = (adaptive.LOCAL_WINDOW,) + ((adaptive.WIDE_WINDOW,) if version >= 6 else ())
    pixels = planes_of(synthetic_image(21, 23, 3, seed=35))
    seen = []
    weights = lsq.LocalSums.weights

    def recording(self, rows, cols, compiled):
        out = weights(self, rows, cols, compiled)
        seen.append((self.window, self.size, rows.copy(), cols.copy(), self.horizontal[rows] + self.same_row[rows]))
        return out

    monkeypatch.setattr(lsq.LocalSums, "weights", recording)
    stages = []

    def making(*args, **kwargs):
        stages.append(lsq.LeastSquaresMix(*args, **kwargs))
        return stages[-1]

    monkeypatch.setattr(adaptive, "LeastSquaresMix", making)
    engine.variant_code_length_bits(registry.load_model("loco"), pixels, engine.Variant(adaptation=version))
    (mixer,) = stages
    assert {window for window, *_ in seen} == set(windows)
    _, height, width = pixels.shape
    every_row, every_col = (a.ravel() for a in np.indices((height, width)))
    for channel, size in enumerate(mixer.sizes):
        features, west = mixer._features(every_row, every_col, channel)
        features, targets = features.reshape(height, width, size), (pixels[channel] - west.reshape(height, width))
        learns = mixer._inside(every_row, every_col).reshape(height, width)
        upper = np.triu_indices(size)
        for window, got_size, rows, cols, sums in seen:
            if got_size != size:
                continue
            for row, col, got in zip(rows, cols, sums):
                in_window = np.zeros((height, width), dtype=bool)
                in_window[max(row - window, 0) : row, max(col - window, 0) : col + 2] = True
                in_window[row, max(col - window, 0) : col] = True
                f, y = features[in_window & learns], targets[in_window & learns].astype(np.int64)
                expected = np.concatenate([(f.T @ f)[upper], f.T @ y])
                assert got.tolist() == expected.tolist(), (window, channel, row, col)


def test_the_least_squares_solution_is_the_normal_equations_one():
    rng = np.random.default_rng(33)
    features = rng.normal(size=(200, 6))
    matrix = features.T @ features + np.eye(6)
    vector = features.T @ rng.normal(size=200)
    assert np.allclose(lsq._solve(matrix, vector), np.linalg.solve(matrix, vector))


@pytest.mark.parametrize("version", adaptive.VERSIONS)
def test_files_of_every_adaptation_version_decode(version, monkeypatch):
    """The encoder writes the current version; a file of an earlier one (the golden corpus holds
    real ones) still decodes to its pixels."""
    image = _dithered(24, 32, seed=31)
    monkeypatch.setattr(adaptive, "VERSION", version)
    data = ridecodec.compress(image, model="loco", model_only=True)
    monkeypatch.undo()
    assert container.parse(data)[0].adaptation == version
    assert np.array_equal(ridecodec.decompress(data), image)


@pytest.mark.parametrize("channels", [1, 3])
def test_graphics_are_coded_adapted_and_decode_exactly(channels):
    image = synthetic_graphic(32, 40, channels, seed=4)
    data = ridecodec.compress(image, model="ride", model_only=True)
    header = ridecodec.read_header(data)
    assert header.coder == container.CODER_RANGE_CATEGORICAL and header.adaptation == adaptive.VERSION
    assert np.array_equal(ridecodec.decompress(data), image)


def test_photographs_keep_the_models_tables_when_adaptation_does_not_pay():
    image = synthetic_image(40, 48, seed=5)
    data = ridecodec.compress(image, model="ride", model_only=True)
    model = registry.load_model("ride")
    plain = engine.encode_pixels(model, planes_of(image))
    header = ridecodec.read_header(data)
    # never more than the plain coding: the encoder keeps the smaller
    assert header.payload_length <= plain.nbytes
    assert np.array_equal(ridecodec.decompress(data), image)


def test_an_unknown_adaptation_version_is_refused_with_one_line():
    data = ridecodec.compress(synthetic_graphic(24, 32, seed=6), model="loco", model_only=True)
    header, payload = container.parse(data)
    assert header.adaptation == adaptive.VERSION
    newer = container.pack(dataclasses.replace(header, adaptation=adaptive.VERSION + 1), bytes(payload))
    with pytest.raises(FormatError, match=rf"adaptation version {adaptive.VERSION + 1}.*newer ridecodec") as raised:
        ridecodec.decompress(newer)
    assert "\n" not in str(raised.value)


def test_a_model_that_codes_in_an_order_of_its_own_adapts_with_the_version_that_suits_it():
    """Version 4's local fit keeps its sums row by row, left to right: the multi-scale model (a
    subsampled image first) is adapted with version 3, and a file that claims version 4 for it
    is refused, in one line."""
    assert adaptive.VERSION_FOR_OWN_ORDERS < adaptive.VERSION
    assert engine.adaptation_version_for(registry.load_model("loco"), 24, 32) == adaptive.VERSION
    assert engine.adaptation_version_for(registry.load_model("multiscale"), 24, 32) == 3
    image = synthetic_graphic(24, 32, seed=9)
    data = ridecodec.compress(image, model="multiscale", model_only=True)
    header, payload = container.parse(data)
    assert header.adaptation == 3 and np.array_equal(ridecodec.decompress(data), image)
    forged = container.pack(dataclasses.replace(header, adaptation=4), bytes(payload))
    with pytest.raises(FormatError, match="version 4, which needs a wavefront coding order") as raised:
        ridecodec.decompress(forged)
    assert "\n" not in str(raised.value)


def test_a_model_of_right_reach_0_is_not_adapted():
    """Its wavefront codes the pixel up-right of another in the same step, and the stage reads it:
    adapted tables would depend on how a step is split, so the encoder does not adapt."""

    class LeftOnly(DensityModel):
        name, version, modes = "left-only", "0", ("L",)
        reach, exact_across_devices = CausalReach(0, 1, 0), True

        def begin(self, canvas):
            def step(rows, cols, channel):
                left = torch.where(cols > 0, canvas[0, rows, (cols - 1).clamp(min=0)].long(), 128)
                return torch.exp(-0.05 * (torch.arange(256)[None, :] - left[:, None]).abs().float())

            return step

        def log_prob(self, images):
            raise NotImplementedError

    model = LeftOnly()
    assert engine.adaptation_version_for(model, 13, 19) == 0
    assert engine.adaptation_version_for(registry.load_model("loco"), 13, 19) == adaptive.VERSION  # right 1
    assert all(variant.adaptation == 0 for variant in codec.candidate_variants(synthetic_graphic(13, 19)[None], 0))


def test_an_adaptation_record_on_a_file_without_a_model_is_refused():
    image = np.random.default_rng(7).integers(0, 256, (16, 16), dtype=np.uint8)
    header, payload = container.parse(ridecodec.compress(image, model="loco"))
    assert header.coder == container.CODER_STORED
    with pytest.raises(FormatError, match="adaptation record is out of place"):
        container.parse(container.pack(dataclasses.replace(header, adaptation=1), bytes(payload)))


def _repeated_noise() -> np.ndarray:
    """Noise repeated: deflate finds the repeats, a model of neighbourhoods cannot."""
    tile = np.random.default_rng(8).integers(0, 256, (8, 48), dtype=np.uint8)
    return np.tile(tile, (8, 1))


@pytest.mark.parametrize("model", ["ride", "loco"])
def test_a_file_is_never_larger_than_png(model):
    image = _repeated_noise()
    data = ridecodec.compress(image, model=model)
    header = ridecodec.read_header(data)
    png = imageio.png_payload(imageio.to_coded(image))
    assert header.coder == container.CODER_PNG and header.payload_length == len(png)
    assert (header.orientation, header.adaptation, header.value_sets) == (0, 0, None)
    assert np.array_equal(ridecodec.decompress(data), image)
    # the model alone would have written more
    modelled = ridecodec.read_header(ridecodec.compress(image, model=model, model_only=True))
    assert modelled.coder != container.CODER_PNG and modelled.payload_length > len(png)


@pytest.mark.parametrize(
    "image",
    [
        np.tile(np.random.default_rng(9).integers(0, 256, (4, 40, 3), dtype=np.uint8), (6, 1, 1)),
        np.tile(np.random.default_rng(10).integers(0, 256, (4, 40, 4), dtype=np.uint8), (6, 1, 1)),
        (np.tile(np.random.default_rng(11).integers(0, 65536, (4, 40), dtype=np.uint16), (6, 1))),
    ],
)
def test_png_payloads_round_trip_every_layout(image):
    data = ridecodec.compress(image, model="loco")
    assert ridecodec.read_header(data).coder == container.CODER_PNG
    back = ridecodec.decompress(data)
    assert back.dtype == image.dtype and np.array_equal(back, image)


def test_a_corrupt_png_payload_is_refused_with_one_line():
    data = bytearray(ridecodec.compress(_repeated_noise(), model="loco"))
    header = ridecodec.read_header(bytes(data))
    for damage in (slice(header.header_length + 40, header.header_length + 60), slice(len(data) - 30, len(data) - 10)):
        broken = bytearray(data)
        broken[damage] = bytes(len(broken[damage]))
        with pytest.raises(ridecodec.RidecodecError) as raised:
            ridecodec.decompress(bytes(broken))
        assert "\n" not in str(raised.value)


def test_a_png_payload_of_another_image_is_refused():
    data = ridecodec.compress(_repeated_noise(), model="loco")
    header, _ = container.parse(data)
    other = imageio.png_payload(imageio.to_coded(np.zeros((5, 7), dtype=np.uint8)))
    with pytest.raises(FormatError, match="does not hold the image its header declares"):
        ridecodec.decompress(container.pack(header, other))


def test_eval_reports_how_each_image_was_coded():
    from ridecodec.evaluation import evaluate_image

    result = evaluate_image("repeated", _repeated_noise(), "loco", classical=False)
    assert result.coder == "png" and not result.adapted
    graphic = evaluate_image("graphic", synthetic_graphic(32, 40, seed=12), "loco", classical=False)
    assert graphic.coder == "model" and graphic.adapted
    # the likelihood is the adapted model's (the plain model's would be far off); what is left is
    # the coder's few bytes of flush on a payload of some 200 bytes
    assert abs(graphic.overhead_percent) < 3.0


# --- colour sets -------------------------------------------------------------------------------


def _few_colours(height: int = 40, width: int = 48, seed: int = 13) -> np.ndarray:
    """A colour graphic of 12 colours whose channels take most values: value sets cannot help it."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    blocks = rng.integers(0, len(palette), (height // 4, width // 4))
    return palette[np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)]


def test_a_colour_set_allows_only_the_values_seen_with_the_coded_channels():
    pixels = np.array([[[1, 1, 2]], [[5, 6, 5]], [[9, 9, 7]]], dtype=np.uint8)  # colours (1,5,9) (1,6,9) (2,5,7)
    colours = coloursets.ColourSet.of(pixels)
    assert len(colours) == 3
    assert colours.allowed(0, np.zeros((1, 0), dtype=np.uint8))[0].nonzero()[0].tolist() == [1, 2]
    assert colours.allowed(1, np.array([[1], [2]], dtype=np.uint8)).nonzero()[1].tolist() == [5, 6, 5]
    assert colours.allowed(2, np.array([[1, 6]], dtype=np.uint8))[0].nonzero()[0].tolist() == [9]
    again = coloursets.ColourSet.unpack(colours.pack(), 3, 3)
    assert np.array_equal(again.keys, colours.keys)


@pytest.mark.parametrize("damage", ["count", "inflate", "order", "range"])
def test_malformed_colour_sets_are_refused(damage):
    packed = bytearray(coloursets.ColourSet(np.array([3, 70000, 80000]), 3).pack())
    if damage == "count":
        packed[0] = 200  # more colours than the image's pixels
    elif damage == "inflate":
        packed[-3] ^= 0xFF
    elif damage == "order":
        packed = bytearray(coloursets.ColourSet(np.array([3, 70000, 80000]), 3).pack())
        packed = packed[:4] + bytearray(__import__("zlib").compress(np.array([5, 0, 1], "<u4").tobytes()))
    else:
        packed = bytearray(coloursets.ColourSet(np.array([3, 1 << 24]), 4).pack())  # 4 channels' key, 3 channels
    with pytest.raises(FormatError, match="colour set"):
        coloursets.ColourSet.unpack(bytes(packed), 3, 100)


@pytest.mark.parametrize("model", ["ride", "loco"])
def test_few_colour_images_are_coded_with_their_colour_set(model):
    image = _few_colours()
    data = ridecodec.compress(image, model=model, model_only=True)
    header = ridecodec.read_header(data)
    assert header.colour_set is not None and len(header.colours()) == 12 and header.value_sets is None
    assert np.array_equal(ridecodec.decompress(data), image)
    planes = planes_of(image)
    without = engine.encode_pixels(registry.load_model(model), planes, adaptation=header.adaptation)
    assert header.payload_length < 0.7 * without.nbytes


def test_a_colour_set_in_a_gray_file_is_refused():
    data = ridecodec.compress(synthetic_image(16, 20), model="loco", model_only=True)
    header, payload = container.parse(data)
    forged = dataclasses.replace(header, colour_set=coloursets.ColourSet(np.array([1, 2]), 1).pack())
    with pytest.raises(FormatError, match="colour set is out of place"):
        container.parse(container.pack(forged, bytes(payload)))


@pytest.mark.parametrize("peak", [2**24 - 255 * 16, 2**22, 2**16])
def test_adapted_tables_of_extreme_models_code_and_decode_every_value(peak):
    """A model sure of one value, a map that has learned the neighbour is always right: the
    adapted table must still give every value a probability the coder can code (a table of too
    wide a range makes constriction's encoder panic)."""
    import constriction

    stage = adaptive.Adaptation(1, 64, 64)
    table = np.full((1, 256), (2**24 - peak) // 255, dtype=np.float32)  # an exact model's: sums to 2**24
    table[:, 7] = peak
    last = []
    for row in range(64):  # a flat image of 7s, pixel by pixel in raster order (a wavefront's)
        for col in range(64):
            at_row, at_col = np.array([row]), np.array([col])
            refined = stage.refine(at_row, at_col, 0, table)
            if row == 63 and 2 <= col < 62:  # the map has learned the candidate 7 is always the value
                last.append(refined)
            stage.observe(at_row, at_col, 0, np.full(1, 7, dtype=np.int32))
            stage.end_step()
    adapted = np.concatenate(last)
    # what the coder's quantizer needs: about 2**24 in all and no entry below 1 (every value at
    # least 2**-25); tables of far wider range made constriction's encoder panic on a real image
    assert adapted.min() >= 1 and (adapted.sum(axis=1, dtype=np.float64) <= 2**24 + 256).all()
    symbols = np.arange(60, dtype=np.int32) * 4 % 256  # mostly values the map calls nearly impossible
    model = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, model, adapted)
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    assert np.array_equal(decoder.decode(model, adapted), symbols)
    assert adapted[0, 7] / adapted[0].sum() > 0.98  # and the candidate did get nearly everything


@pytest.mark.parametrize("version", adaptive.VERSIONS)
@pytest.mark.parametrize(
    ("model_name", "make"),
    [
        ("loco", lambda: synthetic_graphic(26, 30, 3, seed=20)),
        ("ride", lambda: synthetic_graphic(22, 26, seed=21)),
        ("ride", lambda: synthetic_image(20, 24, 3, seed=22)),
        ("loco", lambda: _dithered(24, 28, seed=23)),
    ],
)
def test_the_compiled_kernels_compute_the_numpy_references_numbers(model_name, make, version, monkeypatch):
    """numba kernels do the per-position work; the numpy code is their reference (and the path
    without numba): same tables, same state, bit for bit, in every version."""
    model = registry.load_model(model_name)
    pixels = planes_of(make())
    variant = engine.Variant(adaptation=version)
    compiled = _tables_for(model, pixels, variant)
    monkeypatch.setattr(adaptive.Adaptation, "compiled", False)
    monkeypatch.setattr(lsq.LeastSquaresMix, "compiled", False)
    reference = _tables_for(model, pixels, variant)
    assert compiled.view(np.uint32).tolist() == reference.view(np.uint32).tolist()


def test_the_compiled_stage_gives_the_references_bits_on_fractional_tables_and_long_steps(monkeypatch):
    """What the kernels do besides what the models above exercise: tables whose entries are not
    whole numbers (a float model's: summed one entry after the other) and steps of more pixels
    than the local fits solve at once (32)."""
    height, width = 36, 72
    pixels = planes_of(synthetic_image(height, width, 3, seed=24))
    rng = np.random.default_rng(24)
    tables = (rng.random((3, height, width, 256)) * 1000 + 0.25).astype(np.float32)
    steps = [
        (rows.numpy(), cols.numpy())
        for _, rows, cols in engine.wavefront_for(registry.load_model("loco"), height, width).steps()
    ]
    assert max(len(rows) for rows, _ in steps) > 32

    def coded_tables():
        stage = adaptive.Adaptation(3, height, width, version=adaptive.VERSION)
        seen = []
        for rows, cols in steps:
            for channel in range(3):
                seen.append(stage.refine(rows, cols, channel, tables[channel, rows, cols]))
                stage.observe(rows, cols, channel, pixels[channel, rows, cols])
            stage.end_step()
        return np.concatenate(seen)

    compiled = coded_tables()
    monkeypatch.setattr(adaptive.Adaptation, "compiled", False)
    monkeypatch.setattr(lsq.LeastSquaresMix, "compiled", False)
    assert compiled.view(np.uint32).tolist() == coded_tables().view(np.uint32).tolist()
