"""A Pillow plug-in: ``Image.open`` reads .rdc files and ``im.save`` writes them.

    >>> import ridecodec.pillow  # registers the format with Pillow
    >>> from PIL import Image
    >>> im = Image.open("photo.rdc")                  # decoded in full on load (im.load(), im.convert(), ...)
    >>> im.save("copy.rdc", model="loco", effort=2)   # save parameters: model, effort, device, threads, weights

Pillow finds its format plug-ins through a fixed list of its own modules (``PIL.Image.init``);
it has no registration mechanism for outside packages (no entry points), so this module must
be imported once, before ``Image.open`` is asked to read an .rdc file. Importing it registers
the format "RDC": an opener (recognised by the file's magic bytes, whatever its name), the
extension ``.rdc`` (so ``im.save("x.rdc")`` picks it), a saver and a decoder.

Opening reads the header only (mode, size, and ``im.info["ridecodec_model"]`` and friends);
loading decodes the whole file with :func:`ridecodec.api.decompress_image`, on the device
``DEVICE`` ("auto": a GPU where there is one; the built-in models decode to the same pixels on
every device). The image comes back in its original mode: L, RGB, RGBA, LA, P (palette and
transparency included), 1, and 16-bit gray as I;16 (or I;16B, I, as it was). 16-bit colour
images have no Pillow mode: opening one is refused in one line (``ridecodec.decompress`` gives
them as uint16 arrays). A file that is not an .rdc file is left to Pillow's other plug-ins; an
.rdc file with a bad header, or whose payload fails to decode, raises ``OSError`` with the
reason (as Pillow does for its own formats' broken files).

Saving codes the image with :func:`ridecodec.api.compress`; a mode ridecodec does not code
(CMYK, F, ...) raises ``OSError``.
"""

from __future__ import annotations

from PIL import Image, ImageFile, ImagePalette

from . import api, container
from .errors import RidecodecError

#: Pillow's name of the format.
FORMAT = "RDC"
EXTENSION = ".rdc"
MIME = "image/x-ridecodec"
#: The name of the decoder (the tile's codec) registered with Pillow.
DECODER = "ridecodec"
#: Where the model runs when Pillow loads an .rdc file.
DEVICE = "auto"
#: Save parameters passed on to ``ridecodec.api.compress``.
SAVE_PARAMETERS = ("model", "effort", "device", "threads", "weights")


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class RdcImageFile(ImageFile.ImageFile):
    """An .rdc file opened by Pillow: the header read on open, the pixels decoded on load."""

    format = FORMAT
    format_description = "ridecodec lossless image (learned density models)"

    def _open(self) -> None:
        assert self.fp is not None  # (Pillow opens the file before calling _open)
        if not _accept(self.fp.read(len(container.MAGIC))):
            raise SyntaxError("not a ridecodec file")  # Pillow then tries its other plug-ins
        self.fp.seek(0)
        data = self.fp.read()
        try:
            header = api.read_header(data)
        except RidecodecError as error:
            raise OSError(f"cannot open ridecodec file: {error}") from None
        mode = header.original_mode
        if header.bit_depth == 16 and mode.endswith(";16") and not mode.startswith("I;"):
            raise OSError(
                f"a 16-bit {mode[:-3]} ridecodec image has no Pillow mode; decompress it with "
                "ridecodec.decompress (a uint16 array) or to a PNG file (ridecodec decompress)"
            )
        self._mode = mode
        self._size = (header.width, header.height)
        if mode == "P":
            self.palette = ImagePalette.raw(header.palette_mode or "RGB", header.palette or b"")
            if header.transparency is not None:
                self.info["transparency"] = header.transparency
        self.info["ridecodec_model"] = header.model_name
        self.info["ridecodec_model_version"] = header.model_version
        self.info["ridecodec_weights_digest"] = header.weights_digest
        self.tile = [ImageFile._Tile(DECODER, (0, 0) + self.size, 0, (mode,))]


class RdcDecoder(ImageFile.PyDecoder):
    """Decodes a whole .rdc file (read from the file object) into the image."""

    _pulls_fd = True

    def decode(self, buffer) -> tuple[int, int]:
        assert self.fd is not None
        self.fd.seek(0)
        data = self.fd.read()
        try:
            image = api.decompress_image(data, device=DEVICE)
        except RidecodecError as error:
            raise OSError(f"cannot decode ridecodec file: {error}") from None
        if image.mode != self.mode or image.size != (self.state.xsize, self.state.ysize):
            raise OSError(f"cannot decode ridecodec file: it decoded to {image.mode} {image.size}")
        self.set_as_raw(image.tobytes(), self.mode)
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    """``im.save(..., format="RDC", model=..., effort=...)``: compress with ridecodec."""
    options = {key: im.encoderinfo[key] for key in SAVE_PARAMETERS if im.encoderinfo.get(key) is not None}
    im.load()
    try:
        data = api.compress(im, **options)
    except RidecodecError as error:
        raise OSError(f"cannot write {im.mode} image as RDC: {error}") from error
    fp.write(data)


def register() -> None:
    """Register the format with Pillow (done on import; again is harmless)."""
    Image.register_open(FORMAT, RdcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(DECODER, RdcDecoder)


def unregister() -> None:
    """Remove the format from Pillow's registries (Pillow has no API for this; for tests)."""
    Image.OPEN.pop(FORMAT, None)
    if FORMAT in Image.ID:
        Image.ID.remove(FORMAT)
    Image.SAVE.pop(FORMAT, None)
    Image.MIME.pop(FORMAT, None)
    for extension, name in list(Image.EXTENSION.items()):
        if name == FORMAT:
            del Image.EXTENSION[extension]
    Image.DECODERS.pop(DECODER, None)


register()
