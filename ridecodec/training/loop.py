"""The training loop that ``mcgsm.py`` and ``ride.py`` share, :class:`TrainingLoop`: it resumes
from a checkpoint or scores the starting weights; after every epoch it validates, keeps the best
weights so far (a stalled epoch halves the step size instead), logs the epoch and writes a
checkpoint from which ``--resume`` continues exactly; at the end it writes the best weights with
the run's summary. Every process of a torchrun training runs it alike (``distributed.py``);
process 0 alone writes. A trainer subclasses it with what is its model's own.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import torch

from .common import TrainingLog, atomic_save, machine_description, training_split
from .distributed import Distributed, report_processes

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel


class LoopOptions(Protocol):
    """The options the loop reads (both trainers' options have them)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # the summary records them all (asdict)
    data: list[str]
    color: str
    validation_fraction: float
    seed: int
    batch_size: int
    learning_rate: float
    checkpoint: str | None
    log: str | None
    resume: bool
    command: str


@dataclass
class TrainingState:
    """Where a training stands: all that a checkpoint holds besides the models, optimizer and
    generator, and all that the loop's decisions read."""

    epoch: int = 0
    best_bits: float = math.inf  # validation bits per pixel of the best weights so far
    best_epoch: int = 0  # 0: the starting weights, when they were trained ones
    best_state: dict[str, torch.Tensor] | None = None  # those weights (None: none yet)
    history: list[dict[str, Any]] = field(default_factory=list)  # the epochs' log records
    seconds: float = 0.0  # training time, of every run of a resumed training
    stale: int = 0  # epochs since validation last improved

    def progress(self) -> dict[str, int]:
        """How far training has come, as the log records it."""
        return {"epoch": self.epoch}


StateT = TypeVar("StateT", bound=TrainingState)
OptionsT = TypeVar("OptionsT", bound=LoopOptions)


@dataclass
class Checkpoint(Generic[StateT]):
    """What ``--checkpoint`` holds after every epoch. On disk, these fields as a dict of plain
    values and tensors (the state too), so that it loads with ``weights_only``; the layout of the
    checkpoints in ``training/checkpoints``."""

    models: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: StateT
    generator: torch.Tensor  # the sampling generator's state: resumed, it draws what one run would
    averaged: dict[str, Any] | None = None  # the weight average's state, if training keeps one

    def save(self, path: str) -> None:
        atomic_save({name: value for name, value in asdict(self).items() if value is not None}, path)

    @classmethod
    def load(cls, path: str | Path, state_type: type[StateT], device: torch.device | str = "cpu") -> Checkpoint[StateT]:
        saved = torch.load(path, map_location=device, weights_only=True)
        return cls(**{**saved, "state": state_type(**saved["state"])})


class TrainingLoop(ABC, Generic[OptionsT, StateT]):
    """One training run, by :meth:`run`. A trainer's ``__init__`` calls this one's, loads the data,
    and sets ``models`` (on ``dist.device``) and, to validate and keep a weight average,
    ``averaged``; its methods below say the rest of what is its model's own."""

    models: torch.nn.ModuleList
    averaged: AveragedModel | None = None
    #: whether the starting weights are trained ones, and so the best until an epoch beats them
    starts_trained: bool = False

    def __init__(self, options: OptionsT, echo, dist: Distributed, state: StateT):
        self.options, self.dist, self.state = options, dist, state
        self.log = TrainingLog(options.log, echo) if dist.is_main else TrainingLog(None, None)
        self.train_paths, self.validation_paths = training_split(
            options.data, options.validation_fraction, options.seed
        )
        self.generator = torch.Generator().manual_seed(options.seed)  # every random draw of training

    # -- what a trainer supplies ------------------------------------------------------------

    @abstractmethod
    def batch_nats(self, models: torch.nn.ModuleList, batch: torch.Tensor) -> torch.Tensor:
        """The objective: the summed negative log-likelihood, in nats, of this process's share of
        a batch of the items that ``train_epoch`` passes to :meth:`descend`."""

    @abstractmethod
    def train_epoch(self) -> tuple[float, dict[str, Any]]:
        """One epoch's steps (by :meth:`descend`): the training bits per pixel, and what the
        epoch's log record says besides :meth:`TrainingState.progress`."""

    @abstractmethod
    def validate(self, models: torch.nn.Module) -> float:
        """Bits per pixel of the held-back images (the same figure in every process)."""

    @abstractmethod
    def finished(self) -> bool:
        """Whether training stops before another epoch."""

    @abstractmethod
    def write_weights(self, summary: dict[str, Any]) -> None:
        """Write ``models`` to the weights file, with the summary as its metadata."""

    def before_epoch(self) -> None:
        """Work before an epoch that its training time leaves out."""

    def after_epoch(self) -> None:
        """Work after an epoch has been validated, before its checkpoint."""

    def final_scores(self) -> dict[str, float]:
        """Figures of the best weights, besides the validation score, for the summary and log."""
        return {}

    def summary_details(self) -> dict[str, Any]:
        """Facts of the run, besides the loop's own, for the summary."""
        return {}

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train, write the weights (process 0), return the summary (in every process)."""
        self.optimizer = torch.optim.Adam(self.models.parameters(), lr=self.options.learning_rate)
        self._resume_or_start()
        self.objective = self.dist.wrap(self.models, self.batch_nats)  # in DDP under torchrun
        while not self.finished():
            self.before_epoch()
            started = time.time()
            train_bits, details = self.train_epoch()
            self.state.epoch += 1
            validation_bits = self._keep_if_best()
            self.state.seconds += self.dist.max(time.time() - started)  # the same in every process
            record = {
                **self.state.progress(),
                **details,
                "train_bits_per_pixel": round(train_bits, 5),
                "validation_bits_per_pixel": round(validation_bits, 5),
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self.state.seconds, 1),
            }
            self.state.history.append(record)
            self.log(event="epoch", **record)
            self.after_epoch()
            if self.options.checkpoint and self.dist.is_main:
                averaged = None if self.averaged is None else self.averaged.state_dict()
                models, optimizer = self.models.state_dict(), self.optimizer.state_dict()
                checkpoint = Checkpoint(models, optimizer, self.state, self.generator.get_state(), averaged)
                checkpoint.save(self.options.checkpoint)
        return self._finish()

    def descend(self, items: torch.Tensor, per_item: float = 1.0) -> float:
        """Adam steps on the mean objective of global batches of ``batch_size`` items, in order
        (each process computes on its share), each item's nats divided by ``per_item``; returns
        the objective's nats summed over all the items."""
        total = 0.0
        for start in range(0, len(items), self.options.batch_size):
            batch, scale = self.dist.local(items[start : start + self.options.batch_size])  # this process's share
            nats = self.objective(batch.to(self.dist.device))
            loss = nats * scale / per_item  # the global batch's mean, once DDP averages the gradients
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.models)
            total += float(nats.detach()) if scale else 0.0
        (total,) = self.dist.sum(total)
        return total

    def log_data(self, started: float, **sizes: int) -> None:
        """Log the data's size and the seconds since ``started`` that it took to load."""
        images = {"train_images": len(self.train_paths), "validation_images": len(self.validation_paths)}
        self.log(event="data", **images, **sizes, seconds=round(time.time() - started, 1))

    def _resume_or_start(self) -> None:
        options = self.options
        if options.resume and options.checkpoint and Path(options.checkpoint).exists():
            saved = Checkpoint.load(options.checkpoint, type(self.state), self.dist.device)
            self.models.load_state_dict(saved.models)
            self.optimizer.load_state_dict(saved.optimizer)
            if self.averaged is not None and saved.averaged is not None:
                self.averaged.load_state_dict(saved.averaged)
            self.state = saved.state
            self.generator.set_state(saved.generator.cpu())  # map_location moved it; the generator is a CPU one
            progress = self.state.progress()
            self.log(event="resumed", **progress, best_bits=self.state.best_bits, processes=self.dist.world_size)
        if self.state.epoch == 0:
            initial = self.validate(self.models)
            self.log(event="initial", validation_bits_per_pixel=initial)
            if self.starts_trained:  # a candidate for the best, as epoch 0
                self.state.best_bits, self.state.best_state = initial, _copy(self.models)

    def _keep_if_best(self) -> float:
        """Validate the epoch's weights (the average, if kept) and keep them if they are the best
        so far, else halve the step size; returns their score."""
        state, scored = self.state, self.models if self.averaged is None else self.averaged.module
        bits = self.validate(scored)
        if math.isfinite(bits) and bits < state.best_bits - 1e-4:
            state.best_bits, state.best_epoch, state.stale = bits, state.epoch, 0
            state.best_state = _copy(scored)
        else:
            state.stale += 1
            for group in self.optimizer.param_groups:
                group["lr"] /= 2
        return bits

    def _finish(self) -> dict[str, Any]:
        state, options = self.state, self.options
        self.models.load_state_dict(state.best_state or self.models.state_dict())
        scores = {name: round(value, 5) for name, value in self.final_scores().items()}
        fingerprints = self.dist.fingerprints(self.models)
        summary = {
            "data": [str(Path(d)) for d in options.data],
            "color": options.color,
            "images": {"train": len(self.train_paths), "validation": len(self.validation_paths)},
            **self.summary_details(),
            "seed": options.seed,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "training_seconds": round(state.seconds, 1),
            "validation_bits_per_pixel": round(state.best_bits, 5),
            **scores,
            "command": options.command,
            "machine": machine_description(self.dist.device),
            "date": time.strftime("%Y-%m-%d"),
            "options": {k: v for k, v in asdict(options).items() if k not in ("data", "out", "command", "model")},
            "processes": self.dist.world_size,
        }
        reported = ("epochs", "best_epoch", "validation_bits_per_pixel", *scores, "training_seconds")
        self.log(event="done", **{name: summary[name] for name in reported})
        report_processes(self.log, fingerprints)
        if self.dist.is_main:
            self.write_weights(summary)
        self.dist.barrier()  # the weights exist when any process returns
        return summary


def _copy(models: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in models.state_dict().items()}
