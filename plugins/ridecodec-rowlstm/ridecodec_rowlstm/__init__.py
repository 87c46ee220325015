"""ridecodec plug-in: Row LSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016), gray and RGB, exact."""

from .model import RowLSTMModel

__all__ = ["RowLSTMModel"]
