"""ridecodec plug-in: PixelCNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016), gray, exact."""

from .model import PixelCNNModel

__all__ = ["PixelCNNModel"]
