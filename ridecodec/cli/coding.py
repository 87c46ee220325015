"""`compress`, `decompress`, `info` and `models`."""

from __future__ import annotations

import functools
import io
import json
import sys
from dataclasses import asdict
from typing import Any

import click

from .. import api, codec, container, imageio, orientation, registry
from ..container import DEFAULT_MAX_PIXELS
from ..errors import RidecodecError
from .batch import Coded, about, exit_if_any_failed, input_name, output_name, plan_or_exit, read_input, run_each
from .common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    STREAM,
    Progress,
    device_option,
    effort_option,
    force_option,
    jobs_option,
    model_pixel_limit_option,
    print_error,
    print_report,
    quiet_option,
    threads_option,
    weights_option,
)

#: How a JPEG file starts (SOI marker, then the first segment's marker).
JPEG_MAGIC = b"\xff\xd8\xff"


def _starts_like_jpeg(source, stdin_bytes: bytes | None) -> bool:
    if source == STREAM:
        return stdin_bytes is not None and stdin_bytes.startswith(JPEG_MAGIC)
    try:
        with open(source, "rb") as file:
            return file.read(len(JPEG_MAGIC)) == JPEG_MAGIC
    except OSError:
        return False


def _compress_one(
    source,
    destination,
    *,
    model,
    weights,
    effort,
    device,
    threads,
    max_pixels,
    model_only,
    model_pixel_limit,
    show_progress,
    quiet,
) -> Coded:
    stdin_bytes: bytes | None = None
    image: Any = source  # a path, or the image read from stdin
    if source == STREAM:
        stdin_bytes = read_input(source)
        image = imageio.open_image(io.BytesIO(stdin_bytes), "<stdin>")
    progress = Progress(f"compressing {input_name(source)}", show_progress)
    try:
        encoded = api.encode(
            image,
            model=model,
            device=device,
            progress=progress,
            effort=effort,
            threads=threads,
            weights=weights,
            max_pixels=max_pixels,
            model_only=model_only,
            model_pixel_limit=model_pixel_limit,
            notice=lambda line: print_report(f"{input_name(source)}: {line}", quiet),
        )
    finally:
        progress.close()
    header = encoded.header
    oriented = f", {orientation.describe(header.orientation)}" if header.orientation else ""
    report = (
        f"{input_name(source)} -> {output_name(destination)}: "
        f"{len(encoded.data)} bytes, {encoded.bits_per_pixel:.3f} bits per pixel "
        f"({header.model_name}{oriented})"
    )
    return Coded(encoded.data, report, is_jpeg=_starts_like_jpeg(source, stdin_bytes))


@click.command()
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
@model_pixel_limit_option
@device_option
@threads_option
@jobs_option
@force_option
@quiet_option
def compress(
    images,
    output,
    model,
    weights,
    effort,
    max_pixels,
    model_only,
    model_pixel_limit,
    device,
    threads,
    jobs,
    force,
    quiet,
):
    """Compress IMAGES to .rdc files (img.png -> img.rdc beside it).

    `-` reads an image from standard input; `-o -` writes to standard output (the default for
    standard input)."""
    destinations = plan_or_exit(images, output, api.default_compressed_path)
    work = functools.partial(
        _compress_one,
        model=model,
        weights=weights,
        effort=effort,
        device=device,
        threads=threads,
        max_pixels=max_pixels,
        model_only=model_only,
        model_pixel_limit=model_pixel_limit,
        show_progress=not quiet and jobs == 1,
        quiet=quiet,
    )
    run_each(images, destinations, work, force, jobs, quiet)


def _decompress_one(
    source, destination, *, max_pixels, weights, model_pixel_limit, device, threads, show_progress, quiet
) -> Coded:
    data = read_input(source)
    progress = Progress(f"decompressing {input_name(source)}", show_progress)
    try:
        decoded = codec.decode(
            data,
            device,
            progress,
            max_pixels,
            threads,
            weights=weights,
            model_pixel_limit=model_pixel_limit,
            notice=lambda line: print_report(f"{input_name(source)}: {line}", quiet),
        )
        png = imageio.coded_png_bytes(decoded)
    finally:
        progress.close()
    return Coded(png, f"{input_name(source)} -> {output_name(destination)}")


@click.command()
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
@model_pixel_limit_option
@device_option
@threads_option
@jobs_option
@force_option
@quiet_option
def decompress(files, output, max_pixels, weights, model_pixel_limit, device, threads, jobs, force, quiet):
    """Decompress .rdc FILES to PNG (img.rdc -> img.png beside it), in the original mode.

    `-` reads from standard input; `-o -` writes to standard output (the default for standard
    input)."""
    destinations = plan_or_exit(files, output, api.default_decompressed_path)
    work = functools.partial(
        _decompress_one,
        max_pixels=max_pixels,
        weights=weights,
        model_pixel_limit=model_pixel_limit,
        device=device,
        threads=threads,
        show_progress=not quiet and jobs == 1,
        quiet=quiet,
    )
    run_each(files, destinations, work, force, jobs, quiet)


def _slowness(entry: dict) -> str:
    """A slow model's declared speed and limit, for the listing (empty for the others)."""
    parts = []
    speed = entry["seconds_per_pixel"]
    if isinstance(speed, dict):
        each = ", ".join(f"{1e6 * seconds:.0f} us ({layout})" for layout, seconds in speed.items())
        parts.append(f"about {each} per pixel on one CPU thread")
    elif speed is not None:
        parts.append(f"about {1e6 * speed:.0f} us per pixel on one CPU thread")
    if entry["pixel_limit"] is not None:
        parts.append(f"images up to {entry['pixel_limit']} pixels unless --model-pixel-limit raises it")
    return f"\n  slow: {'; '.join(parts)}" if parts else ""


def _header_fields(path: str) -> dict:
    data = read_input(path)
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
    lines = header.repeats()
    if lines is not None:  # how many rows and columns repeat, not the packed bits
        fields["repeated_lines"] = {"rows": int(lines.rows.sum()), "columns": int(lines.cols.sum())}
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


@click.command()
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
        print_error("standard input (-) works with a single input only")
        sys.exit(EXIT_USAGE)
    results, failures = [], []
    for path in files:
        try:
            fields = _header_fields(path)
        except RidecodecError as error:
            print_error(about(path, error))
            failures.append(error.exit_code)
            results.append({"file": path, "error": str(error)})
            continue
        except KeyboardInterrupt:
            print_error("interrupted")
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
                + (
                    f"  repeats:  {fields['repeated_lines']['rows']} rows and {fields['repeated_lines']['columns']}"
                    " columns repeat the one before (coded once)\n"
                    if fields["repeated_lines"]
                    else ""
                )
                + _deep_line(fields["deep"])
                + f"  size:     {fields['file_bytes']} bytes ({fields['header_length']} header),"
                f" {fields['bits_per_pixel']:.4f} bits per pixel\n"
                f"  pixel CRC32: {fields['pixel_crc32']:08x}"
            )
    if as_json:
        click.echo(json.dumps(results, indent=2))
    exit_if_any_failed(failures, len(files))


@click.command()
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
            + _slowness(entry)
            + (f"\n  weights: {entry['weights_digest']}" if entry["weights_digest"] else "")
        )
