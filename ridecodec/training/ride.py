"""Training RIDE: ``ridecodec train ride``.

The paper's curriculum: the model is trained on random patches that grow from stage to stage
(``patch_sizes``, e.g. 8, 12, 16, 22), each patch coded as a whole image (zero states and the
border fill outside it). The objective is the discrete likelihood under the condensed mixture
(what a file would cost) of the patch's interior pixels, those whose neighbourhood lies inside
it (``ride.interior`` says why not all of them). Patches are flipped left-right at random
(augmentation). Optimization is mini-batch Adam, whose weights may be smoothed by an exponential
moving average (``average_decay``: validation then scores and keeps the average); a stage ends
after ``epochs`` epochs or ``patience`` epochs without a validation gain (each of which halves
the step size); the next stage starts from the best weights so far with the initial step size.

Before each stage, L-BFGS fits the MCGSM head alone to the spatial LSTM states of fresh patches
of the stage's size (``lbfgs_steps``). Adam is slow on the head's priors and scales: in a small
run (1 layer of 16 units, 8 x 4 mixture, 59 BSDS training images, 7 validation images, 4 stages
of 3 epochs) training ended at 4.34 validation bits per pixel without tuning; tuning between
stages ended at 4.03 (its first tuning alone took validation from 5.20 to 4.33), and tuning
before every stage, the first included, at 4.05 (5.61 to 4.90 at the first).

Validation is on held-back whole images (the same split as the MCGSM's), after every epoch; the
best epoch is kept (trained starting weights count as epoch 0). Every epoch writes a checkpoint
from which ``--resume`` continues exactly; ``time_budget_minutes`` ends training early.

``from_mcgsm`` starts from trained MCGSM weights (``start_from_mcgsm``): measured on BSDS500,
from scratch a RIDE of 64 units had not caught up with the shipped MCGSM after 35 minutes on one
core, while one started from it gained 1% on the held-back images in 45.

Under torchrun the processes share every batch, the L-BFGS tuning and the validation
(``distributed.py``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

import torch

from ..errors import InputError
from ..models.discretize import mixture_bin_log_mass
from ..models.mcgsm import ChannelMCGSM, load_weights as load_mcgsm_weights
from ..models.neighbourhood import CausalNeighbourhood
from ..models.ride import ChannelRIDE, RIDEConfig, build_channel_models, interior, load_weights, save_weights
from .common import fit_whitening, starting_weights
from .data import load_planes, sample_pairs
from .distributed import Distributed, session
from .loop import TrainingLoop, TrainingState

LOG2 = math.log(2.0)


@dataclass
class RIDETrainingOptions:
    data: list[str]
    out: str
    color: str = "gray"
    model: RIDEConfig = field(default_factory=RIDEConfig)
    validation_fraction: float = 0.1
    seed: int = 0
    patch_sizes: tuple[int, ...] = (8, 12, 16, 22)  # the curriculum, one stage per size
    patches_per_image: int = 32  # patches drawn from each training image per epoch
    batch_size: int = 32  # patches per optimizer step
    learning_rate: float = 1e-3
    epochs: int = 10  # at most this many epochs per stage
    patience: int = 3  # a stage ends after this many epochs without a validation gain
    lbfgs_steps: int = 20  # L-BFGS iterations on the MCGSM head before each stage (0: none)
    #: validate and keep an exponential moving average of the weights, updated after every step
    #: with this decay, instead of the last step's weights (0: no averaging)
    average_decay: float = 0.0
    #: stop once this much training time (all runs of a resumed training) has passed, at the end
    #: of an epoch, and write the best weights so far; None: no limit
    time_budget_minutes: float | None = None
    whitening_samples_per_image: int = 4000  # pixels per image for fitting the whitening
    device: str = "cpu"
    init: str | None = None  # start from these weights (fine-tuning) instead of from scratch
    #: start from these MCGSM weights: their neighbourhood, mixture sizes, whitening and head,
    #: the head also reading h with zero weights, so training starts at that MCGSM's score
    from_mcgsm: str | None = None
    checkpoint: str | None = None
    log: str | None = None
    resume: bool = False
    command: str = ""


def sample_patches(images: list[torch.Tensor], size: int, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """``per_image`` random size x size patches of each image at least that large, half of
    them flipped left-right, in random order: (N, C, size, size) uint8."""
    chosen: list[torch.Tensor] = []
    for planes in images:
        _, height, width = planes.shape
        if height < size or width < size:
            continue
        tops = torch.randint(0, height - size + 1, (per_image,), generator=generator).tolist()
        lefts = torch.randint(0, width - size + 1, (per_image,), generator=generator).tolist()
        flips = (torch.rand(per_image, generator=generator) < 0.5).tolist()
        for top, left, flip in zip(tops, lefts, flips):
            patch = planes[:, top : top + size, left : left + size]
            chosen.append(patch.flip(2) if flip else patch)
    if not chosen:
        raise InputError(f"no training image is at least {size} x {size} pixels")
    patches = torch.stack(chosen)
    return patches[torch.randperm(len(patches), generator=generator)]


def _log_likelihood(models, neighbourhood, images: torch.Tensor, interior_only: bool = False) -> torch.Tensor:
    """Natural-log likelihood (B,) of a batch of images (B, C, H, W), all channels, from the
    bins' masses, differentiable; of the interior pixels only for patches (the training
    objective, see ``ride.interior``), of all pixels for whole images."""
    return sum(
        model.log_likelihood(neighbourhood, images, c, images[:, c], interior_only) for c, model in enumerate(models)
    )


def interior_samples(neighbourhood, patches: torch.Tensor) -> int:
    """Pixels times channels that the training objective scores in ``patches`` (B, C, S, S)."""
    rows, cols = interior(neighbourhood, 0, patches.shape[2], patches.shape[3])
    return patches[:, :, rows, cols].numel()


def validation_bits_per_pixel(
    models, neighbourhood, images: list[torch.Tensor], device, batch_size: int = 4, dist: Distributed | None = None
) -> float:
    """Bits per pixel and channel of whole images, batching images of equal shape. With
    ``dist``, each process scores its share of the images and the sums are added up."""
    if dist is not None:
        images = dist.part(images)
    by_shape: dict[tuple, list[torch.Tensor]] = {}
    for planes in images:
        by_shape.setdefault(tuple(planes.shape), []).append(planes)
    total = 0.0
    pixels: float = 0  # (an int here; dist.sum gives floats)
    with torch.no_grad():
        for group in by_shape.values():
            for start in range(0, len(group), batch_size):
                batch = torch.stack(group[start : start + batch_size]).to(device)
                total -= float(_log_likelihood(models, neighbourhood, batch).sum())
                pixels += batch.numel()
    if dist is not None:
        total, pixels = dist.sum(total, pixels)
    return total / LOG2 / pixels


def tune_head(
    models, neighbourhood, patches: torch.Tensor, steps: int, dist: Distributed | None = None
) -> tuple[float, float]:
    """L-BFGS on the MCGSM heads alone, with the spatial LSTM states of ``patches`` held
    fixed. Returns the patches' bits per pixel and channel before and after. With ``dist``,
    each process computes on its share of the patches and the losses and gradients are added
    up, so every process takes the same L-BFGS steps."""
    dist = dist or Distributed()
    patches, weight = dist.local(patches)
    weight = 1.0 if weight else 0.0  # 0: an empty share, computed on one patch that does not count
    before = after = 0.0
    for c, model in enumerate(models):
        with torch.no_grad():
            folded = model.folded()
            bands = list(model.bands(neighbourhood, patches, c, folded))  # in raster order
            h = torch.cat([band.h for band in bands], dim=1)
            direct = torch.cat([band.direct for band in bands], dim=1)
        # the interior pixels only, as in training
        rows, cols = interior(neighbourhood, 0, patches.shape[2], patches.shape[3])
        h = h.view(*patches.shape[::2], patches.shape[3], -1)[:, rows, cols].flatten(0, 2)
        direct = direct.view(*patches.shape[::2], patches.shape[3], -1)[:, rows, cols].flatten(0, 2)
        y = patches[:, c, rows, cols].reshape(-1).long()

        # The closures below run within this iteration (the loss and the L-BFGS steps), never
        # after it: B023's late-binding hazard does not arise here.
        def local_loss():  # in nats for this process's patches' pixels
            head = model.folded()  # the head's part of it depends on the MCGSM parameters  # noqa: B023
            mixture_weights, means, inverse_stds = model.mixture(h, direct, head)  # noqa: B023
            return -mixture_bin_log_mass(y, mixture_weights, means, inverse_stds, model.config.floor).sum() * weight  # noqa: B023

        def loss():  # in nats for all the patches' pixels
            return torch.tensor(dist.sum(float(local_loss()))[0]) if dist.active else local_loss()

        # The loss is a sum, not a mean: L-BFGS's first step is -gradient, capped at unit L1
        # norm, and the mean's gradient near the initial head is tiny (1e-2), so its line
        # search spent the whole evaluation budget creeping (measured: 5.788 -> 5.787 bits per
        # pixel in 20 iterations from a fresh head on 8 x 8 patches; 5.13 with the sum).
        optimizer = torch.optim.LBFGS(model.mcgsm.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()  # noqa: B023
            value = local_loss()
            value.backward()
            if not dist.active:
                return value
            dist.sum_gradients(model.mcgsm.parameters())  # noqa: B023
            return torch.tensor(dist.sum(float(value.detach()))[0], dtype=value.dtype)

        with torch.no_grad():
            start = float(loss())
        saved = {k: v.clone() for k, v in model.mcgsm.state_dict().items()}
        optimizer.step(closure)
        with torch.no_grad():
            end = float(loss())
        if not end <= start:  # a failed line search must not leave it worse
            model.mcgsm.load_state_dict(saved)
            end = start
        (count,) = dist.sum(len(y) * weight)
        before += start / LOG2 / count / len(models)
        after += end / LOG2 / count / len(models)
    dist.sync(models)  # a guard: every process took the same steps
    return before, after


def start_from_mcgsm(path: str, asked: RIDEConfig, num_channels: int, generator: torch.Generator):
    """(config, models) of a RIDE that codes exactly as the MCGSM weights at ``path`` do: their
    neighbourhood, mixture sizes, table size and floor, whitening and head, with the head reading
    (h, x_w) and its weights on h zero; random spatial LSTMs of the ``asked`` size. Training then
    starts from the MCGSM's score, and the LSTMs come in as the head learns to read h."""
    try:
        mcgsm_config, mcgsm_models, _ = load_mcgsm_weights(path)
    except Exception as error:  # missing, not MCGSM weights, or not loadable without code
        raise InputError(f"--from-mcgsm {path}: {error}") from error
    if len(mcgsm_models) != num_channels:
        raise InputError(f"--from-mcgsm {path} codes {len(mcgsm_models)} channels, the training images {num_channels}")
    sizes = ("up", "left", "right", "num_components", "num_scales", "num_features", "table_components", "floor")
    config = replace(asked, head_reads_neighbourhood=True, **{name: getattr(mcgsm_config, name) for name in sizes})
    models = build_channel_models(config, num_channels)
    hidden = config.num_hiddens
    for model, source in zip(cast("list[ChannelRIDE]", models), cast("list[ChannelMCGSM]", mcgsm_models)):
        model.initialize(generator)
        model.whitening.load_state_dict(source.whitening.state_dict())
        head, trained = model.mcgsm, source.mcgsm
        with torch.no_grad():
            for name in ("priors", "scales", "weights"):
                getattr(head, name).copy_(getattr(trained, name))
            head.features.zero_()[hidden:] = trained.features
            head.predictors.zero_()[:, hidden:] = trained.predictors
    return config, models


def _weight_average(models, decay: float):
    """The running average of the weights that validation sees, or None without averaging.

    Why: with batches of 32 small patches, Adam's last step is noisy; validation went up and down
    by several thousandths of a bit per pixel from epoch to epoch. An exponential moving average
    smooths that noise out of the kept weights: continuing the shipped gray weights of version 1
    at 22 x 22, on the same patches, one epoch gave 3.8230 bits per pixel with the average
    (decay 0.998) against 3.8317 with the last step's weights. Version 2 was trained with it.
    """
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    averaged = AveragedModel(models, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    averaged.update_parameters(models)  # the starting weights are the average's first term
    return averaged


def _restart_average(averaged, models) -> None:
    """Start the average afresh from ``models`` (after L-BFGS or a new stage changed them)."""
    if averaged is not None:
        averaged.module.load_state_dict(models.state_dict())


@dataclass
class CurriculumState(TrainingState):
    """Where a RIDE training stands, its place in the curriculum included."""

    stage: int = 0  # the patch size's index in ``patch_sizes``
    stage_epoch: int = 0  # epochs of this stage so far
    tuned_stage: int = -1  # the last stage whose head L-BFGS tuned

    def progress(self) -> dict[str, int]:
        return {"epoch": self.epoch, "stage": self.stage}


def train_ride(options: RIDETrainingOptions, echo=None) -> dict:
    """Train, write the weights to ``options.out``, return the training summary (in every
    process under torchrun; process 0 writes)."""
    with session(options.device) as dist:
        return _RIDETraining(options, echo, dist).run()


class _RIDETraining(TrainingLoop[RIDETrainingOptions, CurriculumState]):
    def __init__(self, options: RIDETrainingOptions, echo, dist: Distributed):
        super().__init__(options, echo, dist, CurriculumState())
        config = options.model
        neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
        started = time.time()
        self.train_images = [load_planes(path, options.color) for path in self.train_paths]
        self.validation_images = [load_planes(path, options.color) for path in self.validation_paths]
        num_channels = self.train_images[0].shape[0]
        fits = max(min(planes.shape[1:]) for planes in self.train_images)
        largest = max(options.patch_sizes)
        if largest > fits:
            raise InputError(f"patch size {largest} is larger than every training image (at most {fits})")
        self.log_data(started)

        self.starts_trained = bool(options.init or options.from_mcgsm)
        if options.init:
            config, models, _ = starting_weights(options.init, load_weights, neighbourhood, num_channels, options.model)
        elif options.from_mcgsm:  # the neighbourhood is the MCGSM's
            config, models = start_from_mcgsm(options.from_mcgsm, config, num_channels, self.generator)
            neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
        if min(options.patch_sizes) <= max(config.up, config.left + config.right):
            raise InputError(
                f"patch size {min(options.patch_sizes)} leaves no pixel whose neighbourhood lies inside the "
                f"patch (up {config.up}, left {config.left}, right {config.right}); use larger patches"
            )
        if not self.starts_trained:
            models = build_channel_models(config, num_channels)
            per_image = options.whitening_samples_per_image
            x, y = sample_pairs(self.train_paths, options.color, neighbourhood, per_image, options.seed)
            fit_whitening(models, x, y)
            for model in cast("list[ChannelRIDE]", models):
                model.initialize(self.generator)
        self.config, self.neighbourhood = config, neighbourhood
        self.models = models.to(dist.device)  # under torchrun on GPUs, this process's GPU
        self.averaged = _weight_average(self.models, options.average_decay)

    def batch_nats(self, models: torch.nn.ModuleList, batch: torch.Tensor) -> torch.Tensor:
        return -_log_likelihood(models, self.neighbourhood, batch, True).sum()

    def finished(self) -> bool:
        state, sizes, budget = self.state, self.options.patch_sizes, self.options.time_budget_minutes
        if state.stage >= len(sizes):
            return True
        if budget is not None and state.seconds >= 60 * budget:
            minutes = round(state.seconds / 60, 1)
            self.log(event="time_budget_spent", minutes=minutes, stage=state.stage, patch_size=sizes[state.stage])
            return True
        return False

    def before_epoch(self) -> None:
        state, options = self.state, self.options
        if not options.lbfgs_steps or state.stage <= state.tuned_stage or state.stage_epoch > 0:
            return  # the head is tuned before a stage's first epoch only
        per_image = max(1, options.batch_size * 8 // len(self.train_images))  # about 8 batches' worth
        patches = sample_patches(self.train_images, options.patch_sizes[state.stage], per_image, self.generator)
        before, after = tune_head(
            self.models, self.neighbourhood, patches.to(self.dist.device), options.lbfgs_steps, self.dist
        )
        state.tuned_stage = state.stage
        _restart_average(self.averaged, self.models)
        self.log(
            event="head_tuned",
            stage=state.stage,
            patch_bits_before=round(before, 5),
            patch_bits_after=round(after, 5),
            validation_bits_per_pixel=round(self.validate(self.models), 5),
        )

    def train_epoch(self) -> tuple[float, dict[str, Any]]:
        size = self.options.patch_sizes[self.state.stage]
        patches = sample_patches(self.train_images, size, self.options.patches_per_image, self.generator)
        nats = self.descend(patches, per_item=interior_samples(self.neighbourhood, patches[:1]))
        self.state.stage_epoch += 1
        return nats / interior_samples(self.neighbourhood, patches) / LOG2, {"patch_size": size}

    def validate(self, models: torch.nn.Module) -> float:
        images = self.validation_images
        return validation_bits_per_pixel(models, self.neighbourhood, images, self.dist.device, dist=self.dist)

    def after_epoch(self) -> None:
        state = self.state
        if state.stage_epoch >= self.options.epochs or state.stale >= self.options.patience:
            # next stage: from the best weights so far, with a fresh step size
            state.stage, state.stage_epoch, state.stale = state.stage + 1, 0, 0
            if state.best_state is not None:
                self.models.load_state_dict(state.best_state)
            _restart_average(self.averaged, self.models)
            for group in self.optimizer.param_groups:
                group["lr"] = self.options.learning_rate

    def write_weights(self, summary: dict[str, Any]) -> None:
        save_weights(self.options.out, self.config, self.models, summary)


if __name__ == "__main__":  # quick runs without the CLI: python -m ridecodec.training.ride OUT DIR...
    train_ride(RIDETrainingOptions(data=sys.argv[2:], out=sys.argv[1]), echo=print)
