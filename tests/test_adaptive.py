"""Online adaptation (ridecodec.adaptive) and the PNG fallback: what the encoder chooses per
image, and that both decode exactly and refuse malformed files with one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import ridecodec
from ridecodec import adaptive, api, container, engine, imageio, registry
from ridecodec.errors import FormatError
from ridecodec.testing import planes_of, synthetic_graphic, synthetic_image


def _tables_for(model, pixels, variant, split=engine.Split()):
    """Every table the coder receives for ``variant``, in order (the encoder's own path)."""
    stage = engine._adaptation_for(variant.adaptation, pixels.shape)
    seen = []

    def record(rows, cols, channel, table):
        symbols = pixels[channel, rows.numpy(), cols.numpy()].astype(np.int32)
        adapted = None if stage is None else stage.refine(rows.numpy(), cols.numpy(), channel, table)
        seen.append(engine._coder_table(table, adapted, variant, channel))
        if stage is not None:
            stage.observe(rows.numpy(), cols.numpy(), channel, symbols)
        return symbols

    canvas = torch.zeros(pixels.shape, dtype=torch.uint8)
    engine._run(model, canvas, record, None, split, None if stage is None else stage.end_step)
    return np.concatenate(seen)


def test_adapted_tables_are_integer_frequencies_with_no_value_impossible():
    model = registry.load_model("loco")
    pixels = planes_of(synthetic_graphic(20, 24, 3, seed=1))
    tables = _tables_for(model, pixels, engine.Variant(adaptation=adaptive.VERSION))
    assert tables.dtype == np.float32 and (tables == np.floor(tables)).all()
    assert tables.min() >= adaptive.MIN_FREQUENCY and tables.max() <= adaptive.ONE
    assert (tables.sum(axis=1, dtype=np.float64) <= adaptive.ONE + 256).all()


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
    plain, adapted = engine.encode_variants(model, pixels, [engine.Variant(), engine.Variant(adaptation=adaptive.VERSION)])
    assert adapted.nbytes < 0.8 * plain.nbytes
    bits = engine.variant_code_length_bits(model, pixels, engine.Variant(adaptation=adaptive.VERSION))
    assert abs(8 * adapted.nbytes - bits) < 0.01 * bits + 64  # the payload costs the adapted likelihood


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
    with pytest.raises(FormatError, match="adaptation version 2.*newer ridecodec") as raised:
        ridecodec.decompress(newer)
    assert "\n" not in str(raised.value)


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


@pytest.mark.parametrize("image", [
    np.tile(np.random.default_rng(9).integers(0, 256, (4, 40, 3), dtype=np.uint8), (6, 1, 1)),
    np.tile(np.random.default_rng(10).integers(0, 256, (4, 40, 4), dtype=np.uint8), (6, 1, 1)),
    (np.tile(np.random.default_rng(11).integers(0, 65536, (4, 40), dtype=np.uint16), (6, 1))),
])
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
    assert abs(graphic.overhead_percent) < 1.0  # the likelihood is the adapted model's
