"""``python -m ridecodec.train MODEL ...`` is ``ridecodec train MODEL ...``: the entry that
torchrun starts in every process of a distributed training (see training/distributed.py)::

    torchrun --nproc-per-node 2 -m ridecodec.train mcgsm --data DIR --out w.pt
    python -m torch.distributed.run --nproc-per-node 2 -m ridecodec.train ride --data DIR --out w.pt
"""

import os
import sys

from .cli import main
from .training.distributed import launched_world_size

if __name__ == "__main__":
    sys.argv = ["ridecodec", "train", *sys.argv[1:]]  # as the console script sees it (the logged command)
    if launched_world_size() <= 1:
        main(args=sys.argv[1:], prog_name="ridecodec")  # click exits with the command's status
    try:
        main(args=sys.argv[1:], prog_name="ridecodec")
        code = 0
    except SystemExit as exit:
        if isinstance(exit.code, str):
            print(exit.code, file=sys.stderr)
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    # Under torchrun, leave without the interpreter's finalization: by now the weights, the
    # checkpoint and the log are written and closed, and the process group is destroyed, but
    # gloo's threads can still abort the interpreter's teardown now and then ("terminate called
    # without an active exception", SIGABRT), which turned a finished training into a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
