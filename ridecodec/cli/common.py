"""What every command shares: exit codes, options, the progress bar, one-line errors."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from .. import orientation
from ..errors import RidecodecError

#: Exit code for an interrupted run (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Exit code for several inputs that failed in different ways (each has its own line).
EXIT_MIXED_FAILURES = 1

#: Exit code for a command line that cannot work, as click's own usage errors.
EXIT_USAGE = 2

#: As an input, standard input; as -o, standard output.
STREAM = "-"

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the model runs; auto picks the GPU when there is one.",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-file report.")
force_option = click.option("--force", "-f", is_flag=True, help="Overwrite existing output files.")
effort_option = click.option(
    "--effort",
    type=click.IntRange(1, orientation.NUM_ORIENTATIONS),
    metavar="N",
    default=1,
    show_default=True,
    help="Try N flips/transposes of each image and keep the smallest file: N encodes; "
    "decoding costs the same whatever N.",
)

weights_option = click.option(
    "--weights",
    "-w",
    type=click.Path(dir_okay=False),
    help="A weights file for the model (e.g. from `ridecodec train`) instead of its shipped weights; "
    "the file records their digest, and decompressing needs the same file.",
)
model_pixel_limit_option = click.option(
    "--model-pixel-limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Code images of up to N pixels with a model that is slow for large images (one coded in "
    "raster order declares its own limit, and images above it are refused with an estimate of the time).",
)
threads_option = click.option(
    "--threads",
    "-t",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads for each file's model (exact models only; every built-in model is exact). "
    "The output is the same whatever the number.",
)

jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Code this many files at once, each in its own process (one core each; on a GPU they "
    "share it). Every file is coded exactly as alone.",
)


class Progress:
    """A progress bar on stderr that appears only once work has lasted more than a moment."""

    DELAY_SECONDS = 0.5

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.started = time.monotonic()
        self.bar: Any = None  # click's progress bar, once shown
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.started < self.DELAY_SECONDS:
                return
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def print_report(message: str, quiet: bool) -> None:
    if not quiet:
        click.echo(message, err=True)


def print_error(message: str) -> None:
    click.echo(f"ridecodec: error: {message}", err=True)


class UsageError(RidecodecError):
    """The command line cannot work as given (click's own usage errors exit with the same code)."""

    exit_code = EXIT_USAGE


def same_file_key(path) -> tuple:
    """Equal for two paths of one file: its device and inode where it exists (so symbolic and
    hard links, "..", and case-insensitive names match, as os.path.samefile does), else its
    resolved absolute path (for outputs not yet written)."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", os.path.normcase(os.path.realpath(path)))
    return ("file", status.st_dev, status.st_ino)
