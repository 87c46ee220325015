"""ridecodec plug-in: the multi-scale PixelRNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016), gray and
colour, exact: a subsampled image first (an unconditional PixelCNN), then the rest (a PixelCNN biased by
the subsampled image)."""

from .model import MultiScaleModel

__all__ = ["MultiScaleModel"]
