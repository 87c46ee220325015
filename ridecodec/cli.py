"""The `ridecodec` command: parse arguments, call the API, report. No codec logic lives here.

Errors the user can cause end in one line on stderr (``ridecodec: error: ...``) and the exit code
of their kind (see errors.py); with several inputs, the others are still done and a summary
follows.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import io
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from . import api, container, imageio, orientation, registry
from .container import DEFAULT_MAX_PIXELS
from .errors import InputError, OutputError, RidecodecError
from .fileio import check_writable, read_file, refuse_to_overwrite, write_atomically

#: Exit code for an interrupted run (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: Exit code for several inputs that failed in different ways (each has its own line).
EXIT_MIXED_FAILURES = 1

#: Exit code for a command line that cannot work, as click's own usage errors.
EXIT_USAGE = 2

#: How a JPEG file starts (SOI marker, then the first segment's marker).
JPEG_MAGIC = b"\xff\xd8\xff"

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


def _report(message: str, quiet: bool) -> None:
    if not quiet:
        click.echo(message, err=True)


def _error(message: str) -> None:
    click.echo(f"ridecodec: error: {message}", err=True)


class UsageError(RidecodecError):
    """The command line cannot work as given (click's own usage errors exit with the same code)."""

    exit_code = EXIT_USAGE


def _destination(source: str, output: str | None, many: bool, default) -> Path | str:
    """Where one input's output goes: -o as a file (one input) or as a folder (any number);
    standard output for `-o -`, and for standard input without -o."""
    if output == STREAM or (output is None and source == STREAM):
        return STREAM
    if output is None:
        return default(source)
    # "-o newdir/" names a folder: writing a file called "newdir" is not what was asked
    names_a_folder = output.endswith(os.sep) or bool(os.altsep and output.endswith(os.altsep))
    if names_a_folder and not os.path.isdir(output):
        raise OutputError(f"-o {output}: no such folder (create it first)")
    if os.path.isdir(output):
        if source == STREAM:
            raise OutputError(
                f"-o {output}: standard input has no name to give its output in a folder; "
                "give -o FILE, or -o - for standard output"
            )
        return Path(output) / default(Path(source).name).name
    if many:
        raise OutputError(f"-o {output}: with several inputs, -o must be an existing folder")
    return Path(output)


def _same_file_key(path) -> tuple:
    """Equal for two paths of one file: its device and inode where it exists (so symbolic and
    hard links, "..", and case-insensitive names match, as os.path.samefile does), else its
    resolved absolute path (for outputs not yet written)."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", os.path.normcase(os.path.realpath(path)))
    return ("file", status.st_dev, status.st_ino)


def _plan_destinations(sources: tuple[str, ...], output: str | None, default) -> list[Path | str]:
    """Each input's destination, or UsageError/OutputError before any work, as zstd does: a
    stream with several inputs, an -o that cannot take the outputs, and (--force or not) an
    output that would replace an input of the run or the output of another input."""
    if len(sources) > 1 and (STREAM in sources or output == STREAM):
        raise UsageError("standard input and output (-) work with a single input only")
    destinations = [_destination(source, output, len(sources) > 1, default) for source in sources]
    inputs = {_same_file_key(source): source for source in sources if source != STREAM}
    taken: dict[tuple, str] = {}  # destination's key -> the input it is the output of
    for source, destination in zip(sources, destinations):
        if destination == STREAM:
            continue
        key = _same_file_key(destination)
        if key in inputs:
            raise OutputError(
                f"{_name(source)}: its output {destination} is an input of this run "
                f"({inputs[key]}); refusing to replace it, even with --force"
            )
        if key in taken:
            raise OutputError(
                f"{taken[key]} and {_name(source)} would both be written to {destination}; "
                "rename one, or code them in separate runs"
            )
        taken[key] = _name(source)
    return destinations


def _binary(stream):
    """The byte stream under a text stream (sys.stdin, sys.stdout, or click's test stand-ins)."""
    return getattr(stream, "buffer", stream)


def _check_writable(destination: Path | str, force: bool) -> None:
    """Refuse now, before the slow part, what writing would refuse later."""
    if destination == STREAM:
        if sys.stdout.isatty():
            raise OutputError("refusing to write binary data to a terminal; redirect it or use -o FILE")
    else:
        check_writable(destination, force)


def _write(destination: Path | str, data: bytes, force: bool) -> None:
    if destination == STREAM:
        stdout = _binary(sys.stdout)
        stdout.write(data)
        stdout.flush()
    else:
        write_atomically(destination, data, force=force)


def _read(source: str) -> bytes:
    return _binary(sys.stdin).read() if source == STREAM else read_file(source)


def _name(source) -> str:
    return "<stdin>" if source == STREAM else str(source)


def _shown(destination) -> str:
    return "<stdout>" if destination == STREAM else str(destination)


def _about(source, error: RidecodecError) -> str:
    """The error's line, naming the input once."""
    name = _name(source)
    return str(error) if str(error).startswith(name) else f"{name}: {error}"


def _exit_if_any_failed(failures: list[int], total: int) -> None:
    if failures:
        if total > 1:
            _error(f"{len(failures)} of {total} files failed")
        sys.exit(failures[0] if len(set(failures)) == 1 else EXIT_MIXED_FAILURES)


@dataclass
class Coded:
    """One input's output, made by ``work`` (in a worker process with --jobs); the main process
    writes it."""

    data: bytes
    report: str  # "a.png -> a.rdc: ..."
    is_jpeg: bool = False  # the input was a JPEG file (the output is usually larger)


def _jpeg_note(source) -> str:
    return (
        f"note: {_name(source)} is a JPEG; ridecodec codes its decoded pixels losslessly, "
        "which usually takes more bytes than the JPEG"
    )


def _run_each(
    sources: tuple[str, ...], destinations: list, work, force: bool, jobs: int = 1, quiet: bool = True
) -> None:
    """Make each input's output with ``work(source, destination)`` and write it; report
    failures, carry on, exit non-zero if any. Reports come in input order.

    Outputs are written here, in the main process, never by a worker: so with --jobs Ctrl-C can
    stop the workers at once (they hold nothing half-written), nothing is written after it, and
    the count of outputs written is exact."""
    outcomes: dict[int, tuple[Coded | None, RidecodecError | None]] = {}
    to_code = []
    for index, destination in enumerate(destinations):
        try:
            _check_writable(destination, force)  # before the slow part, for every input
            to_code.append(index)
        except RidecodecError as error:
            outcomes[index] = (None, error)
    written: list[int] = []
    reported = 0  # inputs whose outcome is shown: reports wait for the inputs before them
    failures: list[int] = []
    jpeg_noted = False

    def report_in_order():
        nonlocal reported, jpeg_noted
        while reported in outcomes:
            coded, failure = outcomes[reported]
            if failure is not None:
                _error(_about(sources[reported], failure))
                failures.append(failure.exit_code)
            else:
                assert coded is not None  # an outcome is a result or an error
                if coded.is_jpeg and not jpeg_noted and not quiet:
                    click.echo(_jpeg_note(sources[reported]), err=True)  # once per run, not per file
                    jpeg_noted = True
                _report(coded.report, quiet)
            reported += 1

    try:
        with contextlib.closing(_code_each(work, sources, destinations, to_code, jobs)) as results:
            report_in_order()  # refusals found above, up to the first input being coded
            for index, (coded, failure) in results:
                if coded is not None:
                    try:
                        with _interrupt_deferred():  # an output is written and counted, or neither
                            _write(destinations[index], coded.data, force)
                            written.append(index)
                    except RidecodecError as write_error:
                        coded, failure = None, write_error
                outcomes[index] = (coded, failure)
                report_in_order()
    except KeyboardInterrupt:
        for index in written:
            coded = outcomes[index][0]
            if index >= reported and coded is not None:  # written, but its report waited for an earlier input
                _report(coded.report, quiet)
        _error(f"interrupted: {len(written)} of {len(sources)} outputs were written; no partial file was left")
        sys.exit(EXIT_INTERRUPTED)
    _exit_if_any_failed(failures, len(sources))


def _code_each(work, sources, destinations, indices: list[int], jobs: int):
    """(index, outcome) for each input in ``indices`` as its coding ends: one after the other
    here, or with ``jobs`` > 1 in that many worker processes (spawned, so CUDA works in them),
    in the order they finish. Closing it early (Ctrl-C) stops the workers at once."""
    if jobs == 1 or len(indices) <= 1:
        for index in indices:
            yield index, _outcome(work, sources[index], destinations[index])
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        min(jobs, len(indices)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_leave_interrupts_to_the_main_process,
    )
    finished = False
    try:
        with _interrupts_ignored():  # the workers start now, and inherit it: see the initializer
            futures = {pool.submit(_outcome, work, sources[index], destinations[index]): index for index in indices}
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()
        finished = True
    finally:
        if finished:
            pool.shutdown()
        else:
            _stop_workers_now(pool)


def _leave_interrupts_to_the_main_process() -> None:
    """A worker's initializer. Ctrl-C reaches every process of the terminal's job; a worker
    that took it would print a traceback, or report an interrupted file and start the next.
    (Workers are started with Ctrl-C ignored, which covers their start-up, when importing torch
    takes seconds; this covers a caller that could not set that, from another thread.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers_now(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Terminate the workers: shutdown() alone waits for the files being coded, minutes for a
    large image. They hold no output (the main process writes), so only their work is lost."""
    terminate_workers = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate_workers is not None:
        terminate_workers()
    else:
        for process in list((pool._processes or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _interrupts_ignored():
    """Ignore Ctrl-C during the block (the milliseconds it takes to start the workers)."""
    if threading.current_thread() is not threading.main_thread():  # only it can set handlers
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _interrupt_deferred():
    """Hold Ctrl-C during the block (the moment it takes to finish writing one file and count
    it) and raise it after, so that "n outputs were written" is exact."""
    if threading.current_thread() is not threading.main_thread():  # only it can set handlers
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):  # previous is SIG_IGN or SIG_DFL where not callable
            previous(signal.SIGINT, None)


def _outcome(work, source, destination) -> tuple[Coded | None, RidecodecError | None]:
    """(what work made, None) or (None, the user's error): a worker returns errors, so that one
    bad file does not stop the others."""
    try:
        return work(source, destination), None
    except RidecodecError as error:
        return None, error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ridecodec")
def main():
    """Lossless image compression with learned density models."""


def _starts_like_jpeg(source, stdin_bytes: bytes | None) -> bool:
    if source == STREAM:
        return stdin_bytes is not None and stdin_bytes.startswith(JPEG_MAGIC)
    try:
        with open(source, "rb") as file:
            return file.read(len(JPEG_MAGIC)) == JPEG_MAGIC
    except OSError:
        return False


def _compress_one(
    source, destination, *, model, weights, effort, device, threads, max_pixels, model_only, show_progress
) -> Coded:
    stdin_bytes: bytes | None = None
    image: Any = source  # a path, or the image read from stdin
    if source == STREAM:
        stdin_bytes = _read(source)
        image = imageio.open_image(io.BytesIO(stdin_bytes), "<stdin>")
    progress = Progress(f"compressing {_name(source)}", show_progress)
    try:
        data = api.compress(
            image,
            model=model,
            device=device,
            progress=progress,
            effort=effort,
            threads=threads,
            weights=weights,
            max_pixels=max_pixels,
            model_only=model_only,
        )
    finally:
        progress.close()
    header = api.read_header(data)
    oriented = f", {orientation.describe(header.orientation)}" if header.orientation else ""
    report = (
        f"{_name(source)} -> {_shown(destination)}: "
        f"{len(data)} bytes, {8 * len(data) / header.num_pixels:.3f} bits per pixel "
        f"({header.model_name}{oriented})"
    )
    return Coded(data, report, is_jpeg=_starts_like_jpeg(source, stdin_bytes))


def _plan_or_exit(sources, output, default) -> list:
    try:
        return _plan_destinations(sources, output, default)
    except RidecodecError as error:
        _error(str(error))
        sys.exit(error.exit_code)


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--output", "-o", help="Output file (one input) or existing folder (any number).")
@click.option("--model", "-m", help="Density model (see `ridecodec models`); default: the best installed.")
@weights_option
@effort_option
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse larger images: decoders refuse them by default (decompress --max-pixels raises it).",
)
@click.option(
    "--model-only",
    is_flag=True,
    help="Code with the model even where a PNG of the image is smaller (which the file keeps otherwise).",
)
@device_option
@threads_option
@jobs_option
@force_option
@quiet_option
def compress(images, output, model, weights, effort, max_pixels, model_only, device, threads, jobs, force, quiet):
    """Compress IMAGES to .rdc files (img.png -> img.rdc beside it).

    `-` reads an image from standard input; `-o -` writes to standard output (the default for
    standard input)."""
    destinations = _plan_or_exit(images, output, api.default_compressed_path)
    work = functools.partial(
        _compress_one,
        model=model,
        weights=weights,
        effort=effort,
        device=device,
        threads=threads,
        max_pixels=max_pixels,
        model_only=model_only,
        show_progress=not quiet and jobs == 1,
    )
    _run_each(images, destinations, work, force, jobs, quiet)


def _decompress_one(source, destination, *, max_pixels, weights, device, threads, show_progress) -> Coded:
    data = _read(source)
    progress = Progress(f"decompressing {_name(source)}", show_progress)
    try:
        png = api.decompress_to_png(
            data, device=device, progress=progress, max_pixels=max_pixels, threads=threads, weights=weights
        )
    finally:
        progress.close()
    return Coded(png, f"{_name(source)} -> {_shown(destination)}")


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--output", "-o", help="Output PNG (one input) or existing folder (any number).")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="Refuse files declaring more pixels than this (guards against hostile files).",
)
@weights_option
@device_option
@threads_option
@jobs_option
@force_option
@quiet_option
def decompress(files, output, max_pixels, weights, device, threads, jobs, force, quiet):
    """Decompress .rdc FILES to PNG (img.rdc -> img.png beside it), in the original mode.

    `-` reads from standard input; `-o -` writes to standard output (the default for standard
    input)."""
    destinations = _plan_or_exit(files, output, api.default_decompressed_path)
    work = functools.partial(
        _decompress_one,
        max_pixels=max_pixels,
        weights=weights,
        device=device,
        threads=threads,
        show_progress=not quiet and jobs == 1,
    )
    _run_each(files, destinations, work, force, jobs, quiet)


def _header_fields(path: str) -> dict:
    data = _read(path)
    header = api.read_header(data, max_pixels=2**64)  # info only reads; any size may be shown
    fields = asdict(header)
    fields["transform"] = header.transform.name.lower()
    fields["orientation_name"] = orientation.describe(header.orientation)
    fields["channels"] = header.channels
    fields["file_bytes"] = len(data)
    fields["bits_per_pixel"] = 8 * len(data) / header.num_pixels
    fields["bits_per_sample"] = fields["bits_per_pixel"] / header.channels
    fields["palette"] = header.palette.hex() if header.palette is not None else None
    if isinstance(header.transparency, bytes):
        fields["transparency"] = header.transparency.hex()
    used, colours = header.used_values(), header.colours()
    if used is not None:  # how many values each channel takes, not the raw bits
        fields["value_sets"] = [int(count) for count in used.sum(axis=1)]
    if colours is not None:  # how many colours, not the packed bytes
        fields["colour_set"] = len(colours)
    if header.deep is not None:  # a 16-bit image: how its bytes were coded (ridecodec.depth)
        low_values = header.used_low_values()
        fields["deep"] = {
            "coding": header.deep.coding.name.lower(),
            "low_model_version": header.deep.low_model_version,
            "low_payload_bytes": header.deep.low_payload_length,
            "low_value_sets": None if low_values is None else [int(count) for count in low_values.sum(axis=1)],
        }
    return fields


def _coder_words(fields: dict) -> str:
    """How `info` says the payload holds the image."""
    if fields["coder"] == container.CODER_STORED:
        return "stored raw (the model could not compress it)"
    if fields["coder"] == container.CODER_PNG:
        return "kept as PNG (smaller than the model's coding)"
    return "range coded" + (f", adapted online (version {fields['adaptation']})" if fields["adaptation"] else "")


def _deep_line(deep: dict | None) -> str:
    """`ridecodec info`'s line on how a 16-bit image's bytes were coded."""
    if deep is None:
        return ""
    what = {
        "low_only": "every value below 256: coded as an 8-bit image",
        "replicated": "8-bit data scaled by 257: the high bytes coded, the low bytes equal to them",
        "high_then_low": f"high bytes by the model, then low bytes by lowbyte {deep['low_model_version']} "
        f"({deep['low_payload_bytes']} bytes)",
    }[deep["coding"]]
    return f"  16-bit:   {what}\n"


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print JSON: a list with one object per file ({"file", "error"} for a file that failed).',
)
def info(files, as_json):
    """Show the header of .rdc FILES."""
    if len(files) > 1 and STREAM in files:
        _error("standard input (-) works with a single input only")
        sys.exit(EXIT_USAGE)
    results, failures = [], []
    for path in files:
        try:
            fields = _header_fields(path)
        except RidecodecError as error:
            _error(_about(path, error))
            failures.append(error.exit_code)
            results.append({"file": path, "error": str(error)})
            continue
        except KeyboardInterrupt:
            _error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        results.append({"file": path, **fields})
        if not as_json:
            click.echo(
                f"{path}\n"
                f"  image:    {fields['width']}x{fields['height']} {fields['original_mode']}"
                f" (coded as {fields['layout']}, {fields['bit_depth']} bits per sample"
                + (f", {fields['transform']}" if fields["transform"] != "none" else "")
                + ")\n"
                f"  model:    {fields['model_name']} {fields['model_version']}"
                f" (weights {fields['weights_digest'][:16]})\n"
                f"  encoded:  on {fields['encoder_device']}, format version {fields['format_version']}, "
                + _coder_words(fields)
                + f", orientation {fields['orientation']} ({fields['orientation_name']})\n"
                + (
                    f"  values:   {', '.join(map(str, fields['value_sets']))} of 256 per channel"
                    " (tables restricted to them)\n"
                    if fields["value_sets"]
                    else ""
                )
                + (f"  colours:  {fields['colour_set']} (tables restricted to them)\n" if fields["colour_set"] else "")
                + _deep_line(fields["deep"])
                + f"  size:     {fields['file_bytes']} bytes ({fields['header_length']} header),"
                f" {fields['bits_per_pixel']:.4f} bits per pixel\n"
                f"  pixel CRC32: {fields['pixel_crc32']:08x}"
            )
    if as_json:
        click.echo(json.dumps(results, indent=2))
    _exit_if_any_failed(failures, len(files))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--digests", is_flag=True, help="Also show each model's weights digest (builds every model: slower).")
def models(as_json, digests):
    """List every installed density model (read from its class: none is built unless --digests)."""
    listing = []
    for name in registry.available_models():
        try:
            listing.append(asdict(registry.describe_model(name, digest=digests)))
        except RidecodecError as error:
            listing.append({"name": name, "error": str(error)})
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    if not listing:
        click.echo("no models installed (e.g. `pip install plugins/ridecodec-loco`)")
    default = registry.default_model() if listing else None
    for entry in listing:
        if "error" in entry:
            click.echo(f"{entry['name']}: unusable: {entry['error']}")
            continue
        marker = " (default)" if entry["name"] == default else ""
        click.echo(
            f"{entry['name']}{marker}  version {entry['version']}"
            + (f" (also reads {', '.join(entry['reads_versions'])})" if entry["reads_versions"] else "")
            + f"  from {entry['package']} {entry['package_version']}\n"
            f"  modes: {', '.join(entry['modes'])}; reach: {entry['reach']};"
            f" exact across devices: {'yes' if entry['exact_across_devices'] else 'no'};"
            f" can sample: {'yes' if entry['can_sample'] else 'no'}"
            + (f"\n  weights: {entry['weights_digest']}" if entry["weights_digest"] else "")
        )


@main.command(name="eval")
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
@device_option
@force_option
@quiet_option
def eval_command(
    paths, model, color, limit, verify, no_classical, as_json, plot, effort, weights, device, force, quiet
):
    """Measure bits per pixel on image files or folders: model likelihood, actual .rdc size, and
    the classical lossless codecs."""
    from . import evalplot, evaluation

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
        )
    except RidecodecError as error:
        _error(str(error))
        sys.exit(error.exit_code)
    click.echo(report.to_json() if as_json else report.to_markdown())
    if not report.images:
        _error(f"no image could be measured ({len(report.skipped)} files skipped, reasons above)")
        sys.exit(InputError.exit_code)
    if plot is not None:
        try:
            evalplot.write(report, plot, force)
        except RidecodecError as error:
            _error(str(error))
            sys.exit(error.exit_code)
        if not quiet:
            click.echo(f"wrote {plot}", err=True)


@main.group()
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
        _error(str(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        _error("interrupted; no weights were written (the last epoch's checkpoint, if any, is kept: --resume)")
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
    from .models.mcgsm import MCGSMConfig
    from .training.distributed import main_process
    from .training.mcgsm import TrainingOptions, train_mcgsm

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
    from .models.ride import RIDEConfig
    from .training.distributed import main_process
    from .training.ride import RIDETrainingOptions, train_ride

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


def _default_cost_path(source: str) -> Path:
    """img.png -> img.cost.png, beside the input."""
    return Path(source).with_suffix(".cost.png")


@main.command(name="explain")
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

    from . import explain as explaining

    picture = Path(output) if output is not None else (None if as_json else _default_cost_path(image))
    progress = Progress(f"explaining {image}", not quiet)
    try:
        for path in (picture, npy):
            if path is not None:
                if _same_file_key(path) == _same_file_key(image):
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
        _error(_about(image, error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        progress.close()
        _error("interrupted; nothing was written")
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


# --- sample and inpaint: drawing from a model (the work is in ridecodec/sampling.py and inpainting.py)

from .inpainting import DEFAULT_CANDIDATES, DEFAULT_SWEEPS  # noqa: E402 (this section's own imports)
from .sampling import DEFAULT_MAX_PIXELS as SAMPLE_MAX_PIXELS, PRIME_BORDER  # noqa: E402


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
        _error(str(error))
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        progress.close()
        _error("interrupted; nothing was written")
        sys.exit(EXIT_INTERRUPTED)
    _report(report, quiet)


@main.command(name="sample")
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
    from . import sampling

    width, height = size
    seed = _seed_or_random(seed)

    def work(progress):
        name, image = sampling.draw_image(
            model, mode, width, height, seed, weights, device, threads, max_pixels, progress, prime
        )
        return imageio.png_bytes(image), f"wrote {output}: a {width}x{height} {mode} sample of {name}, seed {seed}"

    _generate(output, force, quiet, f"sampling {width}x{height}", work)


@main.command(name="inpaint")
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
    from . import inpainting

    seed = _seed_or_random(seed)
    if _same_file_key(output) in (_same_file_key(image), _same_file_key(mask)):
        _error(f"{output} is an input; refusing to replace it, even with --force")
        sys.exit(OutputError.exit_code)

    def work(progress):
        name, data, result = inpainting.inpaint_file(
            image, mask, model, weights, device, sweeps, candidates, seed, threads, progress
        )
        rate = f", {result.accepted} of {result.proposals} block proposals accepted" if result.proposals else ""
        return data, f"wrote {output}: {image} inpainted with {name}, seed {seed}{rate}"

    _generate(output, force, quiet, f"inpainting {image}", work)


if __name__ == "__main__":
    main()
