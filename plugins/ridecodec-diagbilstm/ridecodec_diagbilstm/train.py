"""Train the float DiagBiLSTM on grayscale random crops of BSDS500 train + test.

    python -m ridecodec_diagbilstm.train ../shared/data/bsds500/train ../shared/data/bsds500/test \
        --out /tmp/diagbilstm-train [--minutes 25] [--channels 32] [--hidden 32] [--crop 32] [--batch 16]
        [--resume CHECKPOINT --lr 5e-4]

The loop is shared with the other recurrent plug-ins (``ridecodec.training.pixelrnn``): it runs
for a fixed wall-clock time (the learning rate follows a cosine over it), logs to
OUT/train.log and writes OUT/checkpoint.pt (float weights and config) every few hundred
iterations and at the end. Then ``python -m ridecodec_diagbilstm.export OUT/checkpoint.pt`` makes the
shipped integer weights. Never train on the val sets (they are the benchmark).
"""

from __future__ import annotations

from ridecodec.training.pixelrnn import train_main

from .network import DiagBiLSTM


def main(argv=None):
    train_main(DiagBiLSTM, "diagbilstm", __doc__, argv)


if __name__ == "__main__":
    main()
