"""`eval`: bits per pixel on image sets, next to the classical codecs."""

from __future__ import annotations

import sys

import click

from .. import registry
from ..errors import InputError, RidecodecError
from .common import (
    device_option,
    effort_option,
    force_option,
    model_pixel_limit_option,
    print_error,
    quiet_option,
    weights_option,
)


@click.command(name="eval")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", help="Density model; default: the best installed.")
@click.option(
    "--color",
    type=click.Choice(["gray", "color", "as-is"]),
    default="gray",
    show_default=True,
    help="Convert images to grayscale (Pillow's convert('L')), RGB, or keep their mode.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--verify", is_flag=True, help="Also decode each file and check it is identical.")
@click.option("--no-classical", is_flag=True, help="Skip the classical codecs (PNG, JPEG XL, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a markdown table.")
@click.option(
    "--plot",
    metavar="FILE.png",
    help="Also draw bits per pixel per image and codec in this PNG (with matplotlib where it is "
    "installed: pip install 'ridecodec[plot]'; else with Pillow).",
)
@effort_option
@weights_option
@model_pixel_limit_option
@device_option
@force_option
@quiet_option
def eval_command(
    paths,
    model,
    color,
    limit,
    verify,
    no_classical,
    as_json,
    plot,
    effort,
    weights,
    model_pixel_limit,
    device,
    force,
    quiet,
):
    """Measure bits per pixel on image files or folders: model likelihood, actual .rdc size, and
    the classical lossless codecs."""
    from .. import evalplot, evaluation

    try:
        if plot is not None:
            evalplot.check_destination(plot, paths, force)  # before the slow part
        report = evaluation.evaluate(
            list(paths),
            model=model or registry.default_model(),
            device=device,
            color=color,
            classical=not no_classical,
            verify=verify,
            limit=limit,
            progress=None if quiet else (lambda name: click.echo(f"evaluating {name}", err=True)),
            effort=effort,
            weights=weights,
            model_pixel_limit=model_pixel_limit,
        )
    except RidecodecError as error:
        print_error(str(error))
        sys.exit(error.exit_code)
    click.echo(report.to_json() if as_json else report.to_markdown())
    if not report.images:
        print_error(f"no image could be measured ({len(report.skipped)} files skipped, reasons above)")
        sys.exit(InputError.exit_code)
    if plot is not None:
        try:
            evalplot.write(report, plot, force)
        except RidecodecError as error:
            print_error(str(error))
            sys.exit(error.exit_code)
        if not quiet:
            click.echo(f"wrote {plot}", err=True)
