"""Training on several processes with torch's own engine (DistributedDataParallel).

Started by ``torchrun`` (or ``python -m torch.distributed.run``), which sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous (MASTER_ADDR, MASTER_PORT) in each process's environment::

    torchrun --nproc-per-node 2 -m ridecodec.train mcgsm --data DIR --out w.pt

Without those variables (or with WORLD_SIZE 1) training runs in one process exactly as before.

How the work is shared, so that a run behaves as one process would and its checkpoints carry
nothing that depends on the number of processes:

- Every process reads the same images and draws the same samples, patches and orders from the
  same seeded generator, so the generator's state is the same everywhere (and in a checkpoint).
- Each global batch of ``--batch-size`` items is split between the processes (item i goes to
  process i mod N): a disjoint shard of every epoch's permutation. A process's loss is its share
  of the global batch's mean, times N; DDP averages the gradients, so every step follows the
  gradient of the whole batch's mean, as one process would (up to the order of float sums).
- Validation splits the held-back data too and adds up the sums (all-reduce), so every process
  sees the same figure and takes the same early-stopping and step-size decisions.
- Only process 0 writes the log, the checkpoints and the weights. A checkpoint holds the model,
  optimizer, generator and history, the same in every process, so it resumes with any number
  of processes.

CPU processes talk through gloo, GPU processes (one GPU each, by LOCAL_RANK) through nccl.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as torch_dist


def launched_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) if "RANK" in os.environ else 1


def main_process() -> bool:
    """Whether this is process 0 (or the only one): the one that writes and reports."""
    return int(os.environ.get("RANK", "0")) == 0


class Distributed:
    """This process's place in the run, and the few collective steps training needs. With one
    process every method is the identity (no process group)."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | None = None):
        self.rank, self.world_size = rank, world_size
        self.device = device if device is not None else torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- the work of one step ----------------------------------------------------------------

    def wrap(self, models: torch.nn.Module, objective: Callable) -> torch.nn.Module:
        """A module whose forward is ``objective(models, *inputs)``, in DDP when distributed: its
        backward averages the gradients over the processes. DDP also copies process 0's
        parameters and buffers to the others when it is built."""
        module = _Objective(models, objective)
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device] if self.device.type == "cuda" else None
        # The buffers (the whitening) never change while training: synced once, when DDP is
        # built, not before every step (the option's name changed in torch 2.13).
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        no_sync: dict[str, Any] = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        return DistributedDataParallel(module, device_ids=device_ids, **no_sync)

    def local(self, batch: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This process's share of a global batch (items rank, rank + N, ...) and the loss scale
        that makes DDP's average of the shares' gradients the gradient of the batch's mean:
        N / len(batch). A process whose share is empty (a last batch shorter than N) computes
        on one item with scale 0, so that it still takes part in the gradient's all-reduce."""
        share = batch[self.rank :: self.world_size]
        if len(share) == 0:
            return batch[:1], 0.0
        return share, self.world_size / len(batch)

    def part(self, items):
        """This process's share of data that is only evaluated (validation): items rank, rank +
        N, ... of a sequence, or a contiguous block of rows of a tensor."""
        if isinstance(items, torch.Tensor):
            start, stop = (len(items) * r // self.world_size for r in (self.rank, self.rank + 1))
            return items[start:stop]
        return items[self.rank :: self.world_size]

    # -- collectives ----------------------------------------------------------------------------

    def sum(self, *values: float) -> list[float]:
        """The sums over all processes of these numbers (in float64), the same in every process."""
        if not self.active:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def max(self, value: float) -> float:
        """The largest of this number over the processes (e.g. elapsed time, so that a time budget
        ends every process at the same epoch)."""
        if not self.active:
            return float(value)
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return float(tensor.item())

    def sum_gradients(self, parameters) -> None:
        """Add up the gradients of ``parameters`` over the processes (a missing one counts as 0)."""
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            torch_dist.all_reduce(parameter.grad)

    def sync(self, module: torch.nn.Module) -> None:
        """Copy process 0's parameters and buffers to the others (after a step every process takes
        on its own, as a guard against drift)."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                torch_dist.broadcast(tensor.data, src=0)

    def fingerprints(self, module: torch.nn.Module) -> list[str]:
        """Each process's SHA-256 of ``module``'s state (in rank order): equal when the processes
        hold identical weights, as they must."""
        digest = hashlib.sha256()
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        mine = digest.hexdigest()
        if not self.active:
            return [mine]
        gathered: list = [None] * self.world_size
        torch_dist.all_gather_object(gathered, mine)
        return gathered

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")


def report_processes(log: Callable, fingerprints: list[str]) -> None:
    """Log, after a run of several processes, whether they ended with identical weights (each
    one's SHA-256 of the weights, from :meth:`Distributed.fingerprints`)."""
    if len(fingerprints) > 1:
        log(
            event="processes",
            processes=len(fingerprints),
            identical_weights=len(set(fingerprints)) == 1,
            weights_sha256=fingerprints,
        )


class _Objective(torch.nn.Module):
    def __init__(self, models: torch.nn.Module, objective: Callable):
        super().__init__()
        self.models, self.objective = models, objective

    def forward(self, *inputs):
        return self.objective(self.models, *inputs)


@contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[Distributed]:
    """This process's :class:`Distributed`: under torchrun with several processes, a process group
    (gloo on CPU, nccl on GPU, where each process takes the GPU of its LOCAL_RANK), set up on
    entry and torn down on exit; else a single process. A process group that the caller set up
    already is used, and left in place."""
    device = torch.device(device)
    world_size = launched_world_size()
    if torch_dist.is_available() and torch_dist.is_initialized():
        world_size = torch_dist.get_world_size()
    if world_size <= 1:
        yield Distributed(0, 1, device)
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    created = not torch_dist.is_initialized()
    if created:
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Distributed(torch_dist.get_rank(), torch_dist.get_world_size(), device)
        if created:
            # Every process reaches the teardown before any tears down: a process group
            # destroyed while a peer is still talking to it can abort the other process.
            torch_dist.barrier()
    finally:
        if created:
            torch_dist.destroy_process_group()
