"""Train the float RowLSTM on grayscale random crops of BSDS500 train + test.

    python -m ridecodec_rowlstm.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/rowlstm-train [--minutes 25] [--channels 32] [--hidden 32] [--crop 32] [--batch 16]
        [--resume CHECKPOINT --lr 5e-4]

The loop is shared with the other recurrent plug-ins (``ridecodec.training.pixelrnn``): it runs
for a fixed wall-clock time (the learning rate follows a cosine over it), logs to
OUT/train.log and writes OUT/checkpoint.pt (float weights and config) every few hundred
iterations and at the end. Then ``python -m ridecodec_rowlstm.export OUT/checkpoint.pt`` makes the
shipped integer weights. Never train on the val sets (they are the benchmark).
"""

from __future__ import annotations

from ridecodec.training.pixelrnn import train_main

from .network import RowLSTM


def main(argv=None):
    train_main(RowLSTM, "rowlstm", __doc__, argv)


if __name__ == "__main__":
    main()
