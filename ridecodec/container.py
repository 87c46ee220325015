"""The .rdc container, format version 1 (documented in docs/FORMAT.md).

Layout (all integers little-endian)::

    magic           8 bytes   89 52 44 43 0D 0A 1A 0A  ("\\x89RDC\\r\\n\\x1a\\n")
    version         u8        1
    header_length   u32       bytes of the header body that follows
    header body     ...       see _pack_body
    header_crc32    u32       CRC32 of everything above (magic included)
    payload         ...       payload_length bytes: the range coder's uint32 words, or the
                              raw pixels for coder 0 (stored)

Parsing is strict: every length is checked against what is there before it is used, dimensions
against a pixel limit before anything is allocated, and the file must end exactly where the
payload does. Any violation raises FormatError (or VersionError) with a one-line message.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from .coloursets import ColourSet
from .depth import DeepCoding
from .errors import FormatError, VersionError
from .models.base import CHANNEL_LAYOUTS
from .modes import DEEP_MODES, GRAY16_MODES, SUPPORTED_MODES, ModeTransform
from .repeats import RepeatedLines

MAGIC = b"\x89RDC\r\n\x1a\n"
FORMAT_VERSION = 1
CODER_STORED = 0  # the pixels as they are: for images the model cannot compress
CODER_RANGE_CATEGORICAL = 1  # constriction RangeEncoder, Categorical(perfect=False), float32 tables
CODER_PNG = 2  # a PNG file of the original image: where the model loses to PNG (codec.encode)
#: How reports (info, eval) name what a payload holds.
CODER_NAMES = {CODER_RANGE_CATEGORICAL: "model", CODER_PNG: "png", CODER_STORED: "stored"}

#: Refuse to decode images with more pixels than this, 2^25 (33.5 megapixels: a 24-megapixel photo
#: fits), sized to the decoder's speed: it caps what a file can make a default decode do, about 10
#: minutes gray, 25 RGB, 36 RGBA with `ride` on one core of a 2-core x86 machine (RESULTS.md,
#: "Decompression bombs"); a bomb stops sooner (engine.PayloadBudget). Callers may pass their own.
DEFAULT_MAX_PIXELS = 2**25

_LAYOUT_CODES = {"L": 1, "RGB": 3, "RGBA": 4}
_LAYOUT_NAMES = {code: name for name, code in _LAYOUT_CODES.items()}
_MAX_HEADER_BODY = 1 << 16  # palettes are the biggest field (1 KiB); anything near this is hostile

# (original mode, coded layout) each conversion produces; None: the mode is coded as it is.
_TRANSFORM_MODES = {
    ModeTransform.NONE: None,
    ModeTransform.BILEVEL_TO_GRAY: ("1", "L"),
    ModeTransform.GRAY_ALPHA_TO_RGBA: ("LA", "RGBA"),
    ModeTransform.PALETTE_TO_RGB: ("P", "RGB"),
    ModeTransform.PALETTE_INDICES: ("P", "L"),
    ModeTransform.GRAY_AS_RGB: ("RGB", "L"),
}

# (original mode, coded layout, conversion) of every 16-bit image (see imageio).
_DEEP_MODES = {(mode, "L", ModeTransform.NONE) for mode in GRAY16_MODES} | {
    ("RGB;16", "RGB", ModeTransform.NONE),
    ("RGBA;16", "RGBA", ModeTransform.NONE),
    ("LA;16", "RGBA", ModeTransform.GRAY_ALPHA_TO_RGBA),
    ("RGB;16", "L", ModeTransform.GRAY_AS_RGB),
}

# Extension tags (type-length-value records at the end of the header body).
_EXT_PALETTE = 1
_EXT_TRANSPARENCY_INDEX = 2
_EXT_TRANSPARENCY_ALPHAS = 3
_EXT_VALUE_SETS = 4
_EXT_DEEP = 5  # how a 16-bit image was coded: see DeepRecord
_EXT_ADAPTATION = 6  # one byte: the version of the online adaptation (ridecodec.adaptive) applied
_EXT_COLOUR_SET = 7  # the image's colours, packed by ridecodec.coloursets
_EXT_REPEATED_LINES = 8  # the rows and columns that repeat the one before, packed by ridecodec.repeats
_DEEP_RECORD = "<BBQ"  # coding, low-byte model version, low-byte payload length; then its value sets
_EXT_RECORD = "<BH"  # an extension record's tag and value length, before its value
_VALUE_SET_BYTES = 32  # 256 values, one bit each


@dataclass(frozen=True)
class DeepRecord:
    """How a 16-bit image's samples were coded (``ridecodec.depth``): which coding; for
    HIGH_THEN_LOW, the version of the low-byte model, the length of the low bytes' payload (the
    end of the payload; the high bytes' come first) and the low bytes' value sets, if any."""

    coding: DeepCoding
    low_model_version: int = 0
    low_payload_length: int = 0
    low_value_sets: bytes | None = None


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the payload, and what `ridecodec info` shows."""

    width: int
    height: int
    layout: str  # coded channel layout: "L", "RGB" or "RGBA"
    original_mode: str
    transform: ModeTransform
    model_name: str
    model_version: str
    weights_digest: str  # 64 hex digits
    pixel_crc32: int
    encoder_device: str  # e.g. "cpu" or "cuda (NVIDIA H100)"; named when a CRC check fails
    orientation: int = 0  # 0..7: which flip/transpose was applied before coding (0 = none)
    bit_depth: int = 8
    coder: int = CODER_RANGE_CATEGORICAL
    payload_length: int = 0
    palette: bytes | None = None
    palette_mode: str | None = None
    transparency: int | bytes | None = None
    #: the values each coded channel takes, 32 bytes per channel (bit v % 8 of byte v // 8 is set
    #: when value v occurs); None: the tables were not restricted (see engine.restricted)
    value_sets: bytes | None = None
    #: 16-bit images coded by a model (not stored): how their bytes were split
    deep: DeepRecord | None = None
    #: the version of the online adaptation applied to the model's tables (ridecodec.adaptive),
    #: before value sets; 0: none
    adaptation: int = 0
    #: the image's colours (``coloursets.ColourSet.pack``) when the tables were restricted to them
    colour_set: bytes | None = None
    #: which rows and columns repeat the one before (``repeats.RepeatedLines.pack``) when the
    #: payload codes the image without them
    repeated_lines: bytes | None = None
    format_version: int = FORMAT_VERSION
    header_length: int = field(default=0, compare=False)  # total bytes before the payload

    @property
    def channels(self) -> int:
        return CHANNEL_LAYOUTS[self.layout]

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    def used_values(self) -> np.ndarray | None:
        """The value sets as (C, 256) bools, as the engine takes them; None when there are none."""
        return None if self.value_sets is None else unpack_value_sets(self.value_sets, self.channels)

    def colours(self) -> ColourSet | None:
        """The colour set the tables were restricted to, or None."""
        return None if self.colour_set is None else ColourSet.unpack(self.colour_set, self.channels, self.num_pixels)

    def repeats(self) -> RepeatedLines | None:
        """The repeated lines the payload leaves out, or None."""
        if self.repeated_lines is None:
            return None
        return RepeatedLines.unpack(self.repeated_lines, self.height, self.width)

    @property
    def coded_size(self) -> tuple[int, int]:
        """(height, width) of the planes the payload codes: the image's, less repeated lines."""
        lines = self.repeats()
        return (self.height, self.width) if lines is None else lines.reduced_size

    def used_low_values(self) -> np.ndarray | None:
        """The low bytes' value sets of a 16-bit image, like :meth:`used_values`."""
        packed = self.deep.low_value_sets if self.deep is not None else None
        return None if packed is None else unpack_value_sets(packed, self.channels)

    @property
    def stored_planes(self) -> int:
        """Planes a stored payload of this file holds (ridecodec 0.2.0 stored LA as four)."""
        planes = _stored_planes(self.layout, self.transform)
        return planes if self.payload_length == planes * self.num_pixels * self.bit_depth // 8 else self.channels


def _stored_planes(layout: str, transform: ModeTransform) -> int:
    """Planes a stored payload holds: the original image's channels (LA: L and A), so that a
    stored file is never larger than the original's raw samples."""
    return 2 if transform == ModeTransform.GRAY_ALPHA_TO_RGBA else CHANNEL_LAYOUTS[layout]


def _put_string(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"header string too long: {text[:40]!r}...")
    out += struct.pack("<B", len(data)) + data


def _pack_body(header: Header) -> bytes:
    body = bytearray()
    body += struct.pack(
        "<IIBBBBBB",
        header.width,
        header.height,
        _LAYOUT_CODES[header.layout],
        header.bit_depth,
        int(header.transform),
        header.orientation,
        header.coder,
        0,  # reserved
    )
    _put_string(body, header.original_mode)
    _put_string(body, header.model_name)
    _put_string(body, header.model_version)
    body += bytes.fromhex(header.weights_digest)
    _put_string(body, header.encoder_device)
    body += struct.pack("<IQ", header.pixel_crc32, header.payload_length)
    extensions = []
    if header.palette is not None:
        assert header.palette_mode is not None  # (a palette comes with its mode)
        extensions.append((_EXT_PALETTE, header.palette_mode.encode() + b"\0" + header.palette))
    if isinstance(header.transparency, int):
        extensions.append((_EXT_TRANSPARENCY_INDEX, struct.pack("<H", header.transparency)))
    elif isinstance(header.transparency, bytes):
        extensions.append((_EXT_TRANSPARENCY_ALPHAS, header.transparency))
    if header.value_sets is not None:
        extensions.append((_EXT_VALUE_SETS, header.value_sets))
    if header.colour_set is not None:
        extensions.append((_EXT_COLOUR_SET, header.colour_set))
    if header.repeated_lines is not None:
        extensions.append((_EXT_REPEATED_LINES, header.repeated_lines))
    if header.adaptation:
        extensions.append((_EXT_ADAPTATION, struct.pack("<B", header.adaptation)))
    if header.deep is not None:
        deep = header.deep
        record = struct.pack(_DEEP_RECORD, int(deep.coding), deep.low_model_version, deep.low_payload_length)
        extensions.append((_EXT_DEEP, record + (deep.low_value_sets or b"")))
    body += struct.pack("<B", len(extensions))
    for tag, value in extensions:
        body += struct.pack(_EXT_RECORD, tag, len(value)) + value
    return bytes(body)


def value_sets_bytes(channels: int) -> int:
    """What value sets for ``channels`` channels add to a header: the record and its tag, length."""
    return struct.calcsize(_EXT_RECORD) + channels * _VALUE_SET_BYTES


def colour_set_bytes(packed: bytes) -> int:
    """What recording a packed colour set adds to a header."""
    return struct.calcsize(_EXT_RECORD) + len(packed)


def repeated_lines_bytes(lines: RepeatedLines) -> int:
    """What recording repeated lines adds to a header."""
    return struct.calcsize(_EXT_RECORD) + len(lines.pack())


#: What recording online adaptation adds to a header.
ADAPTATION_RECORD_BYTES = struct.calcsize(_EXT_RECORD) + 1


def deep_record_bytes(channels: int, value_sets: bool) -> int:
    """What a 16-bit image's record adds to a header (with or without the low bytes' value sets)."""
    return struct.calcsize(_EXT_RECORD) + struct.calcsize(_DEEP_RECORD) + value_sets * channels * _VALUE_SET_BYTES


def pack_value_sets(used: np.ndarray) -> bytes:
    """The header's form of (C, 256) bools from ``engine.used_values``."""
    return np.packbits(used, axis=1, bitorder="little").tobytes()


def unpack_value_sets(packed: bytes, channels: int) -> np.ndarray:
    """(C, 256) bools from :func:`pack_value_sets`'s bytes."""
    raw = np.frombuffer(packed, dtype=np.uint8).reshape(channels, _VALUE_SET_BYTES)
    return np.unpackbits(raw, axis=1, bitorder="little").astype(bool)


def pack(header: Header, payload: bytes) -> bytes:
    """The complete .rdc file for ``header`` (its payload_length is filled in) and ``payload``."""
    body = _pack_body(replace(header, payload_length=len(payload)))
    front = MAGIC + struct.pack("<BI", FORMAT_VERSION, len(body)) + body
    return front + struct.pack("<I", zlib.crc32(front)) + payload


class _Reader:
    """Bounds-checked reading of the header body."""

    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise FormatError("the header is truncated or malformed")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self) -> str:
        (length,) = self.unpack("<B")
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("the header holds a malformed text field") from None


def parse(data: bytes | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, memoryview]:
    """Parse and validate a .rdc file; returns its header and a view of its payload."""
    data = memoryview(data)
    if len(data) == 0:
        raise FormatError("the file is empty")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        if MAGIC.startswith(bytes(data)):
            raise FormatError("the file is truncated (incomplete header)")
        if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n":
            raise FormatError("this is a PNG file, not a ridecodec file; compress it first")
        raise FormatError("not a ridecodec file (wrong magic bytes)")
    fixed = len(MAGIC) + 5
    if len(data) < fixed:
        raise FormatError("the file is truncated (incomplete header)")
    version, body_length = struct.unpack("<BI", data[len(MAGIC) : fixed])
    if version > FORMAT_VERSION:
        raise VersionError(
            f"the file uses format version {version}, newer than this ridecodec reads "
            f"({FORMAT_VERSION}); upgrade ridecodec"
        )
    if version == 0:
        raise FormatError("the file declares format version 0, which does not exist")
    if body_length > _MAX_HEADER_BODY:
        raise FormatError(f"the header claims {body_length} bytes, which is implausible")
    header_end = fixed + body_length + 4
    if len(data) < header_end:
        raise FormatError("the file is truncated (incomplete header)")
    (stored_crc,) = struct.unpack("<I", data[header_end - 4 : header_end])
    if zlib.crc32(data[: header_end - 4]) != stored_crc:
        raise FormatError("the header checksum does not match: the file is corrupt")

    reader = _Reader(bytes(data[fixed : header_end - 4]))
    width, height, layout_code, bit_depth, transform, orientation, coder, _ = reader.unpack("<IIBBBBBB")
    if layout_code not in _LAYOUT_NAMES:
        raise FormatError(f"the header names an unknown channel layout ({layout_code})")
    if bit_depth not in (8, 16):
        raise FormatError(f"the header names bit depth {bit_depth}; this ridecodec decodes 8 and 16 bits")
    try:
        transform = ModeTransform(transform)
    except ValueError:
        raise FormatError(f"the header names an unknown mode conversion ({transform})") from None
    if orientation > 7:
        raise FormatError(f"the header names an unknown orientation ({orientation})")
    if coder not in (CODER_STORED, CODER_RANGE_CATEGORICAL, CODER_PNG):
        raise FormatError(f"the header names an unknown entropy coder ({coder})")
    if width == 0 or height == 0:
        raise FormatError(f"the header declares an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise FormatError(
            f"the image would have {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}; raise the limit (--max-pixels) if you trust this file"
        )
    original_mode = reader.string()
    if original_mode not in SUPPORTED_MODES:
        raise FormatError(f"the header names an unknown image mode ({original_mode!r})")
    model_name = reader.string()
    model_version = reader.string()
    weights_digest = reader.take(32).hex()
    encoder_device = reader.string()
    pixel_crc32, payload_length = reader.unpack("<IQ")
    palette = palette_mode = transparency = value_sets = deep = None
    adaptation, colour_set, repeated_lines = 0, None, None
    (extension_count,) = reader.unpack("<B")
    for _ in range(extension_count):
        tag, length = reader.unpack(_EXT_RECORD)
        value = reader.take(length)
        if tag == _EXT_PALETTE:
            mode_bytes, _, palette = value.partition(b"\0")
            palette_mode = mode_bytes.decode("ascii", "replace")
            if palette_mode not in ("RGB", "RGBA") or len(palette) % len(palette_mode):
                raise FormatError("the header holds a malformed palette")
        elif tag == _EXT_TRANSPARENCY_INDEX and length == 2:
            (transparency,) = struct.unpack("<H", value)
        elif tag == _EXT_TRANSPARENCY_ALPHAS:
            transparency = value
        elif tag == _EXT_VALUE_SETS:
            value_sets = value
        elif tag == _EXT_COLOUR_SET:
            colour_set = value
        elif tag == _EXT_REPEATED_LINES:
            repeated_lines = value
        elif tag == _EXT_ADAPTATION and length == 1:
            (adaptation,) = struct.unpack("<B", value)
            if adaptation == 0:
                raise FormatError("the header's adaptation record names no adaptation")
        elif tag == _EXT_DEEP and length >= struct.calcsize(_DEEP_RECORD):
            coding, low_version, low_length = struct.unpack_from(_DEEP_RECORD, value)
            try:
                coding = DeepCoding(coding)
            except ValueError:
                raise FormatError(f"the header names an unknown 16-bit coding ({coding})") from None
            low_sets = value[struct.calcsize(_DEEP_RECORD) :] or None
            deep = DeepRecord(coding, low_version, low_length, low_sets)
        else:
            raise FormatError(
                f"the header holds an unknown extension ({tag}): the file is corrupt, or from a newer "
                "ridecodec; upgrade ridecodec"
            )
    if reader.offset != len(reader.data):
        raise FormatError("the header has unexpected extra bytes")
    layout = _LAYOUT_NAMES[layout_code]
    if bit_depth == 8:
        expected = _TRANSFORM_MODES[transform]
        consistent = original_mode not in GRAY16_MODES + DEEP_MODES and (
            (original_mode, layout) == (expected or (layout, layout))
        )
    else:
        consistent = (original_mode, layout, transform) in _DEEP_MODES
    if not consistent:
        raise FormatError(
            f"the header's modes are inconsistent ({bit_depth}-bit {original_mode} coded as {layout} "
            f"by {transform.name})"
        )
    channels = CHANNEL_LAYOUTS[layout]
    if (deep is not None) != (bit_depth == 16 and coder == CODER_RANGE_CATEGORICAL):
        raise FormatError("the header's 16-bit record is missing or out of place")
    if deep is not None and (
        (deep.coding != DeepCoding.HIGH_THEN_LOW and (deep.low_payload_length or deep.low_value_sets))
        or deep.low_payload_length % 4
        or (
            deep.low_value_sets is not None
            and (
                len(deep.low_value_sets) != channels * _VALUE_SET_BYTES
                or not unpack_value_sets(deep.low_value_sets, channels).any(axis=1).all()
            )
        )
    ):
        raise FormatError("the header holds a malformed 16-bit record")
    if value_sets is not None and (
        coder != CODER_RANGE_CATEGORICAL
        or len(value_sets) != CHANNEL_LAYOUTS[layout] * _VALUE_SET_BYTES
        or not unpack_value_sets(value_sets, CHANNEL_LAYOUTS[layout]).any(axis=1).all()
    ):
        raise FormatError("the header holds malformed value sets")
    if adaptation and coder != CODER_RANGE_CATEGORICAL:
        raise FormatError("the header's adaptation record is out of place")
    if colour_set is not None:
        if coder != CODER_RANGE_CATEGORICAL or bit_depth != 8 or channels < 2 or value_sets is not None:
            raise FormatError("the header's colour set is out of place")
        ColourSet.unpack(colour_set, channels, width * height)  # refuses a malformed one now
    if repeated_lines is not None:
        if coder not in (CODER_RANGE_CATEGORICAL, CODER_PNG) or bit_depth != 8:
            raise FormatError("the header's repeated-lines record is out of place")
        try:
            RepeatedLines.unpack(repeated_lines, height, width)
        except ValueError as error:
            raise FormatError(f"the header holds a malformed repeated-lines record ({error})") from None
    if transform == ModeTransform.PALETTE_TO_RGB and (palette is None or palette_mode != "RGB"):
        raise FormatError("the header is missing the palette it needs")
    payload_length_found = len(data) - header_end
    if payload_length_found < payload_length:
        raise FormatError(f"the file is truncated: payload has {payload_length_found} of {payload_length} bytes")
    if payload_length_found > payload_length:
        raise FormatError(f"the file has {payload_length_found - payload_length} bytes of trailing garbage")
    if coder == CODER_RANGE_CATEGORICAL and payload_length % 4:
        raise FormatError("the payload length is not a whole number of 32-bit words")
    if deep is not None and deep.low_payload_length > payload_length:
        raise FormatError("the 16-bit record's low-byte payload is longer than the payload")
    stored_lengths = {_stored_planes(layout, transform) * width * height * bit_depth // 8}
    if transform == ModeTransform.BILEVEL_TO_GRAY:
        stored_lengths = {(width * height + 7) // 8}
    if transform in (ModeTransform.GRAY_ALPHA_TO_RGBA, ModeTransform.BILEVEL_TO_GRAY) and bit_depth == 8:
        stored_lengths.add(channels * width * height)  # ridecodec 0.2.0 stored the coded planes
    if coder == CODER_STORED and payload_length not in stored_lengths:
        raise FormatError("the stored payload's length does not match the image's size")

    header = Header(
        width=width,
        height=height,
        layout=layout,
        original_mode=original_mode,
        transform=transform,
        model_name=model_name,
        model_version=model_version,
        weights_digest=weights_digest,
        pixel_crc32=pixel_crc32,
        encoder_device=encoder_device,
        orientation=orientation,
        bit_depth=bit_depth,
        coder=coder,
        payload_length=payload_length,
        palette=palette,
        palette_mode=palette_mode,
        transparency=transparency,
        value_sets=value_sets,
        deep=deep,
        adaptation=adaptation,
        colour_set=colour_set,
        repeated_lines=repeated_lines,
        format_version=version,
        header_length=header_end,
    )
    return header, data[header_end:]
