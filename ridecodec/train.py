"""``python -m ridecodec.train MODEL ...`` is ``ridecodec train MODEL ...``: the entry that
torchrun starts in every process of a distributed training (see training/distributed.py)::

    torchrun --nproc-per-node 2 -m ridecodec.train mcgsm --data DIR --out w.pt
    python -m torch.distributed.run --nproc-per-node 2 -m ridecodec.train ride --data DIR --out w.pt
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.argv = ["ridecodec", "train", *sys.argv[1:]]  # as the console script sees it (the logged command)
    main(args=sys.argv[1:], prog_name="ridecodec")
