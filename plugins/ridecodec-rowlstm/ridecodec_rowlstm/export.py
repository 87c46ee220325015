"""Float checkpoint (``train.py``) -> the shipped integer weights (``rowlstm-gray.npz``).

    python -m ridecodec_rowlstm.export /tmp/rowlstm-train/checkpoint.pt [--out PATH]

Weights are masked, then rounded to integers at 2**-WEIGHT_BITS; biases at the scale of their
layer's products (2**-(input bits + WEIGHT_BITS)). Stored as int32 (every value fits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ridecodec.training.pixelrnn import export_main, quantize_layers

from .model import ACT_BITS, CHANNELS, HIDDEN, INPUT_BITS, LAYERS, WEIGHT_BITS, WEIGHTS_FILE
from .network import RowLSTM


def quantize(network: RowLSTM) -> dict[str, np.ndarray]:
    return quantize_layers(network, LAYERS, INPUT_BITS, ACT_BITS, WEIGHT_BITS)


def main(argv=None):
    weights = Path(__file__).resolve().parent / WEIGHTS_FILE
    export_main(RowLSTM, quantize, (CHANNELS, HIDDEN), weights, __doc__, argv)


if __name__ == "__main__":
    main()
