"""`train mcgsm` and `train ride`: the options of a training run; the loops are in ridecodec/training/."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from ..errors import InputError, RidecodecError
from ..fileio import check_writable, refuse_to_overwrite
from .common import EXIT_INTERRUPTED, device_option, force_option, print_error


@click.group()
def train():
    """Train a built-in model's weights on a folder of images."""


def _training_options(neighbourhood: tuple[int, int, int], table_components: int):
    """The options every `train` command shares; the defaults of the neighbourhood (up, left,
    right) and of the table size are the model's own."""
    up, left, right = neighbourhood
    options = [
        click.option(
            "--data",
            "-d",
            "data",
            multiple=True,
            required=True,
            help="Folder of training images, or an image file: a texture, trained on as regions of it, "
            "some held back (repeatable).",
        ),
        click.option("--out", "-o", required=True, help="Weights file to write (.pt)."),
        click.option(
            "--color",
            type=click.Choice(["gray", "rgb"]),
            default="gray",
            show_default=True,
            help="Train the grayscale model or the RGB (channel after channel) model.",
        ),
        click.option(
            "--validation-fraction",
            type=click.FloatRange(0, 0.9),
            default=0.1,
            show_default=True,
            help="Share of the images held back for validation (whole images: early stopping, reported score).",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of the split, the samples and the initialization.",
        ),
        click.option(
            "--up",
            type=click.IntRange(min=1),
            default=up,
            show_default=True,
            help="Neighbourhood rows above the pixel.",
        ),
        click.option(
            "--left",
            type=click.IntRange(min=1),
            default=left,
            show_default=True,
            help="Neighbourhood columns left of the pixel.",
        ),
        click.option(
            "--right",
            type=click.IntRange(min=0),
            default=right,
            show_default=True,
            help="Neighbourhood columns right of the pixel (rows above); decoding takes (right + 1) steps per row.",
        ),
        click.option("--components", type=click.IntRange(min=1), default=32, show_default=True),
        click.option("--scales", type=click.IntRange(min=1), default=4, show_default=True),
        click.option("--features", type=click.IntRange(min=1), default=32, show_default=True),
        click.option(
            "--table-components",
            type=click.IntRange(min=1),
            default=table_components,
            show_default=True,
            help="Mixture components kept per pixel when coding (speed against a little rate).",
        ),
        click.option("--init", "init_weights", help="Start from these weights (fine-tuning) instead of from scratch."),
        click.option("--checkpoint", help="Checkpoint file, written after every epoch."),
        click.option("--resume", is_flag=True, help="Continue from --checkpoint if it exists."),
        click.option(
            "--log",
            "--log-file",
            "log_path",
            help="Append a JSON line per epoch to this file (--log-file under torchrun, whose own options take --log).",
        ),
        force_option,
    ]

    def decorate(command):
        for option in reversed(options):  # so that --help lists them in this order
            command = option(command)
        return command

    return decorate


def _run_training(run, out: str, force: bool, checkpoint: str | None, log_path: str | None) -> dict:
    """Run a training job: refuse now what would only fail at its end, after minutes or hours
    (an existing or unwritable output), and end in one line whatever happens."""
    try:
        refuse_to_overwrite(out, force)
        for path in (out, checkpoint, log_path):
            if path and not Path(path).absolute().parent.is_dir():
                raise InputError(f"{path}: its folder does not exist")
        check_writable(out, force)
        for path in (checkpoint, log_path):  # written again and again: may exist already
            if path:
                check_writable(path, force=True)
        return run()
    except RidecodecError as error:
        print_error(str(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print_error("interrupted; no weights were written (the last epoch's checkpoint, if any, is kept: --resume)")
        sys.exit(EXIT_INTERRUPTED)


@train.command(name="mcgsm")
@_training_options(neighbourhood=(4, 4, 2), table_components=2)
@click.option("--samples-per-image", type=click.IntRange(min=1), default=8000, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=60, show_default=True, help="At most this many epochs.")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Stop after this many epochs without a validation gain.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8192, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
def train_mcgsm_command(
    data,
    out,
    color,
    validation_fraction,
    seed,
    samples_per_image,
    epochs,
    patience,
    batch_size,
    learning_rate,
    up,
    left,
    right,
    components,
    scales,
    features,
    table_components,
    init_weights,
    checkpoint,
    resume,
    log_path,
    force,
):
    """Train MCGSM weights (whitening and mixture) by maximum likelihood of the 8-bit pixels."""
    from ..models.mcgsm import MCGSMConfig
    from ..training.distributed import main_process
    from ..training.mcgsm import TrainingOptions, train_mcgsm

    config = MCGSMConfig(
        up=up,
        left=left,
        right=right,
        num_components=components,
        num_scales=scales,
        num_features=features,
        table_components=min(table_components, components * scales),
    )
    options = TrainingOptions(
        data=list(data),
        out=out,
        color=color,
        model=config,
        validation_fraction=validation_fraction,
        seed=seed,
        samples_per_image=samples_per_image,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_epochs=epochs,
        patience=patience,
        init=init_weights,
        checkpoint=checkpoint,
        log=log_path,
        resume=resume,
        command="ridecodec train mcgsm " + " ".join(sys.argv[3:]),
    )
    summary = _run_training(
        lambda: train_mcgsm(options, echo=lambda line: click.echo(line, err=True)), out, force, checkpoint, log_path
    )
    if main_process():  # under torchrun, process 0 reports
        click.echo(f"wrote {out}: validation {summary['validation_bits_per_pixel_tables']:.4f} bits per pixel")


def _patch_sizes(context, parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in value.split(","))
    except ValueError:
        raise click.BadParameter("give sizes separated by commas, e.g. 8,12,16,22") from None
    if not sizes or min(sizes) < 2:
        raise click.BadParameter("patch sizes must be at least 2")
    return sizes


@train.command(name="ride")
@_training_options(neighbourhood=(4, 4, 2), table_components=2)
@click.option(
    "--patch-sizes",
    default="8,12,16,22",
    show_default=True,
    callback=_patch_sizes,
    help="The curriculum: one training stage per patch size, in this order.",
)
@click.option(
    "--patches-per-image",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Random patches drawn from each training image per epoch.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="At most this many epochs per stage."
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="End a stage after this many epochs without a validation gain.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Patches per step.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--lbfgs-steps",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="L-BFGS iterations on the MCGSM head before each stage (0: none).",
)
@click.option(
    "--average-decay",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=0.0,
    show_default=True,
    help="Validate and keep an exponential moving average of the weights with this decay per step "
    "(e.g. 0.998) instead of the last step's weights; 0: no averaging.",
)
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True, help="Spatial LSTM layers.")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Hidden units per layer.")
@click.option("--extended", is_flag=True, help="Gates also read the neighbouring memory cells.")
@click.option(
    "--from-mcgsm",
    metavar="FILE",
    help="Start as these MCGSM weights code (their neighbourhood, mixture, whitening and head; "
    "the head also reads the LSTM state, from zero weights), instead of from scratch.",
)
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0),
    metavar="MINUTES",
    help="Stop after the first epoch that ends past this much training time (resumed runs "
    "included) and write the best weights so far.",
)
@device_option
def train_ride_command(
    data,
    out,
    color,
    validation_fraction,
    seed,
    patch_sizes,
    patches_per_image,
    epochs,
    patience,
    batch_size,
    learning_rate,
    lbfgs_steps,
    average_decay,
    layers,
    hidden,
    extended,
    from_mcgsm,
    time_budget,
    up,
    left,
    right,
    components,
    scales,
    features,
    table_components,
    init_weights,
    checkpoint,
    resume,
    log_path,
    device,
    force,
):
    """Train RIDE weights (whitening, spatial LSTMs, MCGSM) on growing patches, by maximum
    likelihood of the 8-bit pixels."""
    from ..models.ride import RIDEConfig
    from ..training.distributed import main_process
    from ..training.ride import RIDETrainingOptions, train_ride

    config = RIDEConfig(
        up=up,
        left=left,
        right=right,
        num_layers=layers,
        num_hiddens=hidden,
        extended=extended,
        num_components=components,
        num_scales=scales,
        num_features=features,
        table_components=min(table_components, components * scales),
    )

    def run():
        options = RIDETrainingOptions(
            data=list(data),
            out=out,
            color=color,
            model=config,
            validation_fraction=validation_fraction,
            seed=seed,
            patch_sizes=patch_sizes,
            patches_per_image=patches_per_image,
            batch_size=batch_size,
            learning_rate=learning_rate,
            epochs=epochs,
            patience=patience,
            lbfgs_steps=lbfgs_steps,
            average_decay=average_decay,
            time_budget_minutes=time_budget,
            from_mcgsm=from_mcgsm,
            device=str(api.resolve_device(device)),
            init=init_weights,
            checkpoint=checkpoint,
            log=log_path,
            resume=resume,
            command="ridecodec train ride " + " ".join(sys.argv[3:]),
        )
        return train_ride(options, echo=lambda line: click.echo(line, err=True))

    summary = _run_training(run, out, force, checkpoint, log_path)
    if main_process():  # under torchrun, process 0 reports
        click.echo(f"wrote {out}: validation {summary['validation_bits_per_pixel']:.4f} bits per pixel")
