"""Colour sets: the colours an image takes, so that a colour channel's table can be restricted to
the values that occur *together with the channels already coded*.

Value sets (``schedule.restricted``) restrict each channel to the values it takes anywhere. A
graphic with a few thousand colours takes nearly every value in each channel, so they do not
help it; but given a pixel's red, its green is one of the few greens that occur with that red,
and given red and green, its blue is often fixed. Recording the image's colours (sorted, as
differences, deflated: a few bytes per colour) and restricting green to the greens seen with the
pixel's red, blue to the blues seen with its red and green (alpha to what occurs with all
three), keeps the learned model's prediction among the colours that are possible and throws away
the mass it spends on the rest: measured on Waterloo's frymire and serrano (few-colour graphics),
about a third of the file.

Why not code palette indices instead: a learned model predicts colours from neighbouring colours
(a slightly darker red next to a red); indices lose that geometry, and a restriction to the
image's colours keeps both. A colour is its channels packed into one integer, first channel
highest, so that the colours sharing a prefix of channels are a contiguous run of the sorted keys.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .errors import FormatError

#: Colour sets are recorded in the header, which holds at most 64 KiB: this leaves room for the rest.
MAX_PACKED_BYTES = 48 * 1024
#: At most this many colours (their lookup tables take 256 bytes per colour and channel).
MAX_COLOURS = 1 << 15


def colour_keys(pixels: np.ndarray) -> np.ndarray:
    """The sorted distinct colours of ``pixels`` (uint8, (C, H, W)) as int64 keys."""
    keys = np.zeros(pixels.shape[1:], dtype=np.int64)
    for plane in pixels:
        keys = (keys << 8) | plane
    return np.unique(keys)


class ColourSet:
    """The colours of an image of ``channels`` channels (sorted keys), and for each channel the
    values allowed given the channels before it."""

    def __init__(self, keys: np.ndarray, channels: int):
        self.keys, self.channels = np.asarray(keys, dtype=np.int64), channels
        self._packed: bytes | None = None  # pack() is asked for once per variant and orientation
        self._prefixes, self._allowed = [], []
        for channel in range(channels):
            shift = 8 * (channels - channel)
            prefixes, where = np.unique(self.keys >> shift, return_inverse=True)  # channels < channel
            allowed = np.zeros((len(prefixes), 256), dtype=bool)
            allowed[where, (self.keys >> (shift - 8)) & 255] = True
            self._prefixes.append(prefixes)
            self._allowed.append(allowed)

    @classmethod
    def of(cls, pixels: np.ndarray) -> ColourSet:
        return cls(colour_keys(pixels), len(pixels))

    def __len__(self) -> int:
        return len(self.keys)

    def allowed(self, channel: int, before: np.ndarray) -> np.ndarray:
        """(N, 256) bool: the values of ``channel`` that occur with each row of ``before`` (N,
        channel) uint8, the pixels' channels already coded (always one of the set's prefixes
        for a valid file; anything else gets the values of the nearest prefix, the same on both
        sides, and a wrong image fails the CRC)."""
        prefix = np.zeros(len(before), dtype=np.int64)
        for column in range(channel):
            prefix = (prefix << 8) | before[:, column]
        row = np.clip(np.searchsorted(self._prefixes[channel], prefix), 0, len(self._prefixes[channel]) - 1)
        return self._allowed[channel][row]

    def pack(self) -> bytes:
        """Count, then the differences of the sorted keys (uint32), deflated."""
        if self._packed is None:
            differences = np.diff(self.keys, prepend=0).astype("<u4")
            self._packed = struct.pack("<I", len(self.keys)) + zlib.compress(differences.tobytes(), 9)
        return self._packed

    @classmethod
    def unpack(cls, data: bytes, channels: int, max_colours: int) -> ColourSet:
        """The colour set of :meth:`pack`'s bytes, or a FormatError if they are malformed (or
        claim more than ``max_colours``, the image's pixels, which also bounds the inflation)."""
        if len(data) < 4:
            raise FormatError("the header holds a malformed colour set")
        (count,) = struct.unpack_from("<I", data)
        if not 0 < count <= min(max_colours, MAX_COLOURS):
            raise FormatError("the header holds a malformed colour set")
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(data[4:], 4 * count + 1)
        except zlib.error:
            raise FormatError("the header holds a malformed colour set") from None
        if len(raw) != 4 * count or not inflater.eof or inflater.unconsumed_tail:
            raise FormatError("the header holds a malformed colour set")
        keys = np.cumsum(np.frombuffer(raw, dtype="<u4").astype(np.int64))
        if (np.diff(keys) <= 0).any() or keys[-1] >= 1 << (8 * channels) or (count > 1 and keys[0] < 0):
            raise FormatError("the header holds a malformed colour set")
        return cls(keys, channels)


def worth_trying(pixels: np.ndarray) -> ColourSet | None:
    """The image's colour set, where recording it could pay: colour images with at most one
    colour per 8 pixels (and at most MAX_COLOURS) whose set fits the header; else None."""
    channels = len(pixels)
    if channels < 2:
        return None  # one channel: value sets are the same thing
    keys = colour_keys(pixels)
    if len(keys) * 8 > pixels[0].size or len(keys) > MAX_COLOURS:
        return None
    colours = ColourSet(keys, channels)
    return colours if len(colours.pack()) <= MAX_PACKED_BYTES else None
