"""16-bit images, bool masks and the stored fallback: nothing the user hands in is lost.

Each of these lost data silently in ridecodec 0.2.0 (issue 12): 16-bit colour was cut to 8 bits,
bool arrays were scrambled (and the CRC, taken after the damage, passed), and a stored LA file was
twice the size of the raw samples."""

from __future__ import annotations

import io
import warnings

import imagecodecs
import numpy as np
import pytest
import torch
from PIL import Image

import ridecodec
from ridecodec import container, depth, engine, exact, imageio
from ridecodec.errors import FormatError, InputError, UnsupportedImageError
from ridecodec.models.lowbyte import LowByteModel
from ridecodec.testing import stepped_tables, synthetic_image, synthetic_image16

MODEL = "mcgsm"  # the fastest built-in learned model: these tests are about bytes, not rate


smooth16 = synthetic_image16


def round_trip(array: np.ndarray, **options) -> tuple[np.ndarray, bytes]:
    data = ridecodec.compress(array, model=MODEL, device="cpu", **options)
    return ridecodec.decompress(data, device="cpu"), data


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_arrays_round_trip_in_every_layout(channels):
    image = smooth16(13, 17, channels, seed=channels)
    if channels == 1:
        image = image[:, :, 0] if image.ndim == 3 else image
    back, data = round_trip(image)
    assert back.dtype == np.uint16 and back.shape == image.shape
    assert np.array_equal(back, image)
    assert ridecodec.read_header(data).bit_depth == 16


@pytest.mark.parametrize(
    ("make", "coding"),
    [
        (lambda: synthetic_image(12, 15).astype(np.uint16), depth.DeepCoding.LOW_ONLY),
        (lambda: synthetic_image(12, 15).astype(np.uint16) * 257, depth.DeepCoding.REPLICATED),
        (lambda: smooth16(12, 15), depth.DeepCoding.HIGH_THEN_LOW),
        (lambda: smooth16(12, 15) >> 4 << 4, depth.DeepCoding.HIGH_THEN_LOW),  # 12-bit data, shifted
    ],
)
def test_each_16_bit_coding_round_trips(make, coding):
    image = make()
    back, data = round_trip(image)
    assert np.array_equal(back, image)
    header = ridecodec.read_header(data)
    assert header.coder == container.CODER_RANGE_CATEGORICAL and header.deep.coding == coding


def test_8_bit_data_in_16_bits_costs_what_the_8_bit_image_costs():
    image8 = synthetic_image(20, 24)
    size8 = len(ridecodec.compress(image8, model=MODEL))
    for image16 in (image8.astype(np.uint16), image8.astype(np.uint16) * 257):
        assert len(ridecodec.compress(image16, model=MODEL)) <= size8 + 16  # the 16-bit record


def test_shifted_12_bit_data_restricts_the_low_bytes_to_their_values():
    image = smooth16(16, 16) >> 4 << 4
    data = ridecodec.compress(image, model=MODEL)
    assert ridecodec.read_header(data).used_low_values()[0].sum() == 16  # multiples of 16 only
    assert len(data) < len(ridecodec.compress(smooth16(16, 16), model=MODEL))


def test_big_endian_and_non_contiguous_16_bit_arrays():
    image = smooth16(11, 9, 3)
    for variant in (image.astype(">u2"), image[:, ::-1], np.asfortranarray(image)):
        back, _ = round_trip(variant)
        assert np.array_equal(back, variant)


def test_incompressible_16_bit_noise_is_stored_no_larger_than_its_samples():
    image = np.random.default_rng(5).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    back, data = round_trip(image)
    assert np.array_equal(back, image)
    header = ridecodec.read_header(data)
    assert header.coder == container.CODER_STORED
    assert len(data) - header.header_length == image.nbytes


def _png16(array: np.ndarray) -> bytes:
    return bytes(imagecodecs.png_encode(array))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_files_round_trip_to_16_bit_png(tmp_path, channels):
    image = smooth16(9, 14, channels, seed=10 + channels)
    image = image[:, :, 0] if channels == 1 and image.ndim == 3 else image
    source = tmp_path / "deep.png"
    source.write_bytes(_png16(image))
    compressed = ridecodec.compress_file(source, model=MODEL)
    restored = ridecodec.decompress_file(compressed, tmp_path / "back.png")
    back = imagecodecs.png_decode(restored.read_bytes())
    assert back.dtype == np.uint16 and np.array_equal(back, image)
    assert np.array_equal(ridecodec.decompress(compressed), image)  # a path decompresses too


@pytest.mark.parametrize(
    "encode",
    [
        lambda a: bytes(imagecodecs.tiff_encode(a)),
        lambda a: b"P6\n%d %d\n65535\n" % (a.shape[1], a.shape[0]) + a.astype(">u2").tobytes(),
        lambda a: bytes(imagecodecs.jpeg2k_encode(a, level=0)),
    ],
    ids=["tiff", "ppm", "jpeg2000"],
)
def test_16_bit_colour_in_other_formats_keeps_every_bit(encode):
    image = smooth16(8, 10, 3, seed=3)
    opened = imageio.open_image(io.BytesIO(encode(image)))
    assert isinstance(opened, np.ndarray) and np.array_equal(opened, image)
    back, _ = round_trip(opened)
    assert np.array_equal(back, image)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_gray_pil_images_come_back_in_their_mode(mode):
    values = smooth16(7, 9)
    if mode == "I":
        image = Image.fromarray(values.astype(np.int32), "I")
    else:
        image = Image.frombytes(mode, (9, 7), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    back = ridecodec.decompress_image(ridecodec.compress(image, model=MODEL))
    assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(image))


def test_16_bit_colour_has_no_pil_mode_and_says_so():
    data = ridecodec.compress(smooth16(5, 6, 3), model=MODEL)
    with pytest.raises(UnsupportedImageError, match="no Pillow mode"):
        ridecodec.decompress_image(data)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (lambda: bytes(imagecodecs.tiff_encode(np.ones((4, 5), np.float32))), "floating-point"),
        (lambda: bytes(imagecodecs.tiff_encode(np.ones((4, 5), np.int16))), "signed"),
        (lambda: bytes(imagecodecs.tiff_encode(np.ones((4, 5), np.uint32))), "32 bits"),
    ],
)
def test_deeper_or_signed_files_are_refused_in_one_line(payload, message):
    with pytest.raises(UnsupportedImageError, match=message):
        imageio.open_image(io.BytesIO(payload()), "x.tif")


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint32, np.float32, np.float64])
def test_other_array_dtypes_are_refused(dtype):
    with pytest.raises(UnsupportedImageError, match="dtype"):
        ridecodec.compress(np.ones((4, 5), dtype=dtype), model=MODEL)


def test_mode_i_outside_16_bits_is_refused():
    with pytest.raises(UnsupportedImageError, match=r"0..65535"):
        ridecodec.compress(Image.fromarray(np.full((3, 3), 70000, np.int32), "I"), model=MODEL)


def test_bool_masks_round_trip_exactly():
    mask = np.random.default_rng(1).random((37, 53)) > 0.5
    back, data = round_trip(mask)
    assert back.dtype == np.bool_ and np.array_equal(back, mask)
    assert ridecodec.read_header(data).original_mode == "1"


def test_stored_bilevel_and_gray_alpha_are_no_larger_than_their_samples():
    rng = np.random.default_rng(2)
    mask = rng.random((40, 48)) > 0.5
    back, data = round_trip(mask)
    assert np.array_equal(back, mask)
    assert len(data) - ridecodec.read_header(data).header_length <= mask.size // 8
    noise_la = rng.integers(0, 256, (30, 20, 2), dtype=np.uint8)
    back, data = round_trip(noise_la)
    assert np.array_equal(back, noise_la)
    assert len(data) - ridecodec.read_header(data).header_length <= noise_la.nbytes


def test_a_lossy_conversion_is_an_error_not_a_file(monkeypatch):
    real = imageio.from_coded

    def lossy(coded):  # a conversion bug: the restored image differs from the input
        image = real(coded)
        return image.point(lambda v: v ^ 1) if image.mode == "L" else image

    monkeypatch.setattr(imageio, "from_coded", lossy)
    with pytest.raises(UnsupportedImageError, match="does not survive"):
        ridecodec.compress(Image.fromarray(synthetic_image(5, 6)), model=MODEL)


def test_exif_orientation_is_applied(tmp_path):
    pixels = synthetic_image(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif)
    shown = np.asarray(ridecodec.decompress(ridecodec.compress(path, model=MODEL)))
    assert shown.shape == (10, 6) and np.array_equal(shown, np.rot90(pixels, -1))


def test_pillow_decompression_bomb_warning_is_not_shown(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(synthetic_image(40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: Pillow would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imageio.open_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: Pillow refuses
    with pytest.raises(InputError, match=r"big.png"):
        imageio.open_image(path)


def test_decompress_takes_a_path_and_refuses_other_things_in_one_line(tmp_path):
    image = synthetic_image(5, 7)
    path = tmp_path / "x.rdc"
    path.write_bytes(ridecodec.compress(image, model=MODEL))
    assert np.array_equal(ridecodec.decompress(str(path)), image)
    with pytest.raises(InputError, match=r"cannot decompress an? int"):
        ridecodec.decompress(123)


def test_a_malformed_16_bit_record_is_a_format_error():
    data = bytearray(ridecodec.compress(smooth16(6, 7), model=MODEL))
    header = ridecodec.read_header(bytes(data))
    body = container._pack_body(
        container.Header(**{**header.__dict__, "deep": container.DeepRecord(depth.DeepCoding.LOW_ONLY, 1, 4)})
    )
    front = container.MAGIC + container.struct.pack("<BI", 1, len(body)) + body
    forged = front + container.struct.pack("<I", container.zlib.crc32(front)) + bytes(data[header.header_length :])
    with pytest.raises(FormatError, match="16-bit"):
        ridecodec.decompress(forged)


# --- the low-byte model ----------------------------------------------------------------------


def _low_model(image16: np.ndarray, layout: str) -> tuple[LowByteModel, np.ndarray]:
    planes = image16.reshape(image16.shape[:2] + (-1,)).transpose(2, 0, 1)
    high, low = (planes >> 8).astype(np.uint8), np.ascontiguousarray((planes & 255).astype(np.uint8))
    return LowByteModel(torch.from_numpy(np.ascontiguousarray(high)), layout), low


@pytest.mark.parametrize(("layout", "channels"), [("L", 1), ("RGB", 3), ("RGBA", 4)])
def test_low_byte_model_is_causal_exact_and_its_log_prob_is_the_code_length(layout, channels):
    model, low = _low_model(smooth16(9, 13, channels, seed=channels), layout)
    tables, symbols = stepped_tables(model, low)
    assert (tables > 0).all() and (tables.sum(1) == 2**24).all()
    peeking, _ = stepped_tables(model, low, reveal_everything=True)
    assert torch.equal(tables, peeking)
    for split in (engine.Split(1), engine.Split(3, 2)):
        assert torch.equal(stepped_tables(model, low, split=split)[0], tables)
    stepped = float(torch.log(tables[torch.arange(len(symbols)), symbols] / 2**24).sum())
    assert float(model.log_prob(torch.from_numpy(low)[None])) == pytest.approx(stepped, rel=1e-9)


def test_truncated_frequencies_resolve_wide_distributions():
    """A logistic much wider than the window is nearly flat over it, but not the uniform
    fallback, and the table's grid (2**-12 in z) does not leave some bins empty."""
    centre = torch.tensor([-3000 << exact.MEAN_BITS])
    scale = exact.inverse_scales(torch.tensor([(4000 << exact.MEAN_BITS) ** 2]))
    table = exact.truncated_frequencies(centre, scale)[0]
    assert table.sum() == 2**24 and table.min() > 2**24 / 256 * 0.9
    # falling away from the centre (within the CDF table's 2**-24 rounding), not the uniform fallback
    assert table[:16].mean() - table[-16:].mean() > 1000


def test_images_over_the_decoders_default_limit_are_refused_unless_raised():
    image = synthetic_image(30, 30)
    with pytest.raises(UnsupportedImageError, match="raise the limit"):
        ridecodec.compress(image, model=MODEL, max_pixels=899)
    data = ridecodec.compress(image, model=MODEL, max_pixels=900)
    assert np.array_equal(ridecodec.decompress(data, max_pixels=900), image)
