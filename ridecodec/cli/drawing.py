"""`explain`, `sample` and `inpaint`: pictures drawn from a model's probabilities (the work is in
ridecodec/explain.py, sampling.py and inpainting.py)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

from .. import imageio
from ..container import DEFAULT_MAX_PIXELS
from ..errors import OutputError, RidecodecError
from ..fileio import check_writable, write_atomically
from ..inpainting import DEFAULT_CANDIDATES, DEFAULT_SWEEPS
from ..sampling import DEFAULT_MAX_PIXELS as SAMPLE_MAX_PIXELS, PRIME_BORDER
from .batch import about
from .common import (
    EXIT_INTERRUPTED,
    Progress,
    device_option,
    force_option,
    print_error,
    print_report,
    quiet_option,
    same_file_key,
    threads_option,
    weights_option,
)


def _default_cost_path(source: str) -> Path:
    """img.png -> img.cost.png, beside the input."""
    return Path(source).with_suffix(".cost.png")


@click.command(name="explain")
@click.argument("image")
@click.option(
    "--output",
    "-o",
    help="The heat map PNG to write (default: IMG.cost.png beside it; with --json, no picture unless -o is given).",
)
@click.option("--model", "-m", help="Density model (see `ridecodec models`); default: the one compress picks.")
@weights_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the numbers as JSON: totals and bits per pixel, overall and per channel.",
)
@click.option(
    "--npy",
    type=click.Path(dir_okay=False),
    help="Also save each pixel's cost in bits, a float64 array (planes, height, width), as a .npy file.",
)
@click.option(
    "--renderer",
    type=click.Choice(["auto", "pillow", "matplotlib"]),
    default="auto",
    show_default=True,
    help="Draw with matplotlib (pip install 'ridecodec[plot]') or Pillow alone; auto: matplotlib "
    "where it is installed.",
)
@click.option(
    "--vmax",
    type=click.FloatRange(min=0, min_open=True),
    metavar="BITS",
    help="The colour bar's top, in bits (default: the 99.5th percentile of the costs).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse larger images (the time they take).",
)
@device_option
@threads_option
@force_option
@quiet_option
def explain_command(
    image, output, model, weights, as_json, npy, renderer, vmax, max_pixels, device, threads, force, quiet
):
    """Draw what each pixel of IMAGE costs, in bits, under the model: a heat map per channel
    with a colour bar and the totals (img.png -> img.cost.png beside it).

    The costs are the coder's own (-log2 of the probability the model's table gives each actual
    value): they add up to the model's code length of the image."""
    import numpy as np

    from .. import explain as explaining

    picture = Path(output) if output is not None else (None if as_json else _default_cost_path(image))
    progress = Progress(f"explaining {image}", not quiet)
    try:
        for path in (picture, npy):
            if path is not None:
                if same_file_key(path) == same_file_key(image):
                    raise OutputError(f"{path} is the input; refusing to replace it, even with --force")
                check_writable(path, force)  # before the slow part
        if picture is not None and renderer == "matplotlib" and not explaining.matplotlib_available():
            raise RidecodecError(
                "matplotlib is not installed: pip install 'ridecodec[plot]', or draw with --renderer pillow"
            )
        coded = explaining.coded_image(image, max_pixels)
        if not quiet and coded.width * coded.height >= 2**20:
            click.echo(
                f"note: {image} has {coded.width}x{coded.height} pixels: explaining it takes as long as "
                "compressing it (the bar shows the time left)",
                err=True,
            )
        try:
            explanation = explaining.explain(
                coded,
                model=model,
                device=device,
                progress=progress,
                threads=threads,
                weights=weights,
                max_pixels=max_pixels,
            )
        finally:
            progress.close()
        if npy is not None:
            buffer = io.BytesIO()
            np.save(buffer, explanation.bits)
            write_atomically(npy, buffer.getvalue(), force=force)
        if picture is not None:
            drawn = explaining.render(explanation, renderer, vmax)
            write_atomically(picture, imageio.png_bytes(drawn), force=force)
    except RidecodecError as error:
        print_error(about(image, error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        progress.close()
        print_error("interrupted; nothing was written")
        sys.exit(EXIT_INTERRUPTED)
    summary = explanation.summary()
    if as_json:
        click.echo(
            json.dumps(
                {"image": image, "output": None if picture is None else str(picture), "npy": npy, **summary}, indent=2
            )
        )
    elif not quiet:
        planes = ", ".join(f"{plane['name']} {plane['bits_per_pixel']:.3f}" for plane in summary["planes"])
        click.echo(
            f"{image} -> {picture}: {summary['bits_per_pixel']:.3f} bits per pixel "
            f"({explanation.model}; per channel: {planes})"
        )


def _image_size(context, parameter, value: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("give the size as WIDTHxHEIGHT, e.g. 64x64") from None
    if width < 1 or height < 1:
        raise click.BadParameter("width and height must be at least 1")
    return width, height


def _seed_or_random(seed: int | None) -> int:
    """The seed to use: the given one, or a fresh one (reported, so the result can be redrawn)."""
    import secrets

    return secrets.randbelow(2**32) if seed is None else seed


seed_option = click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="Seed of the draws (default: a random one, "
    "reported); an exact model gives the same image for a seed on every machine.",
)


def _generate(output: str, force: bool, quiet: bool, label: str, work) -> None:
    """Run ``work(progress) -> (png bytes, report)`` and write its output atomically: refuse an
    existing output before the work, end in one line whatever happens."""
    progress = Progress(label, not quiet)
    try:
        check_writable(output, force)
        try:
            data, report = work(progress)
        finally:
            progress.close()
        write_atomically(output, data, force=force)
    except RidecodecError as error:
        print_error(str(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        progress.close()
        print_error("interrupted; nothing was written")
        sys.exit(EXIT_INTERRUPTED)
    print_report(report, quiet)


@click.command(name="sample")
@click.option("--model", "-m", help="Density model (see `ridecodec models`); default: the best installed.")
@click.option("--size", required=True, callback=_image_size, metavar="WxH", help="Width and height, e.g. 64x64.")
@click.option("--mode", type=click.Choice(["L", "RGB"]), default="L", show_default=True)
@seed_option
@weights_option
@click.option("--output", "-o", required=True, help="The PNG file to write.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=SAMPLE_MAX_PIXELS,
    show_default=True,
    help="Refuse larger sizes (drawing costs what decoding costs; the refusal says how long it would take).",
)
@click.option(
    "--prime",
    metavar="IMAGE",
    help="Start from IMAGE (e.g. the texture the weights were trained on): "
    f"its first {PRIME_BORDER} rows and columns, tiled, border the canvas and are cut away.",
)
@device_option
@threads_option
@force_option
@quiet_option
def sample_command(model, size, mode, seed, weights, output, max_pixels, prime, device, threads, force, quiet):
    """Draw a new image from a density model, pixel by pixel in its decoding order."""
    from .. import sampling

    width, height = size
    seed = _seed_or_random(seed)

    def work(progress):
        name, image = sampling.draw_image(
            model, mode, width, height, seed, weights, device, threads, max_pixels, progress, prime
        )
        return imageio.png_bytes(image), f"wrote {output}: a {width}x{height} {mode} sample of {name}, seed {seed}"

    _generate(output, force, quiet, f"sampling {width}x{height}", work)


@click.command(name="inpaint")
@click.argument("image")
@click.option("--mask", required=True, help="An image of IMAGE's size: nonzero (gray value) = missing.")
@click.option("--output", "-o", required=True, help="The PNG file to write.")
@click.option("--model", "-m", help="Density model; default: the best installed for the image.")
@weights_option
@click.option(
    "--sweeps",
    type=click.IntRange(min=0),
    default=DEFAULT_SWEEPS,
    show_default=True,
    help="Metropolis-within-Gibbs sweeps over 5x5 blocks after the initial draw.",
)
@click.option(
    "--candidates",
    type=click.IntRange(min=1),
    default=DEFAULT_CANDIDATES,
    show_default=True,
    help="Initial drafts drawn by ancestral sampling; the most probable is kept.",
)
@seed_option
@device_option
@threads_option
@force_option
@quiet_option
def inpaint_command(image, mask, output, model, weights, sweeps, candidates, seed, device, threads, force, quiet):
    """Fill in the pixels of IMAGE that MASK marks as missing with draws from a density model."""
    from .. import inpainting

    seed = _seed_or_random(seed)
    if same_file_key(output) in (same_file_key(image), same_file_key(mask)):
        print_error(f"{output} is an input; refusing to replace it, even with --force")
        sys.exit(OutputError.exit_code)

    def work(progress):
        name, data, result = inpainting.inpaint_file(
            image, mask, model, weights, device, sweeps, candidates, seed, threads, progress
        )
        rate = f", {result.accepted} of {result.proposals} block proposals accepted" if result.proposals else ""
        return data, f"wrote {output}: {image} inpainted with {name}, seed {seed}{rate}"

    _generate(output, force, quiet, f"inpainting {image}", work)
