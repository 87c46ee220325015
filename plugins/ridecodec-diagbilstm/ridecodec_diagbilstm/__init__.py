"""ridecodec plug-in: Diagonal BiLSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016), gray and RGB, exact."""

from .model import DiagBiLSTMModel

__all__ = ["DiagBiLSTMModel"]
