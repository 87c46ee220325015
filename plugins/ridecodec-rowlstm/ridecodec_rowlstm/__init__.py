"""ridecodec plug-in: Row LSTM (van den Oord, Kalchbrenner, Kavukcuoglu 2016), gray, exact."""

from .model import RowLSTMModel

__all__ = ["RowLSTMModel"]
