"""Files in, files out: where each input's output goes, coding them one by one or in worker
processes, writing each atomically in the main process, and reporting in input order."""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import OutputError, RidecodecError
from ..fileio import check_writable, read_file, write_atomically
from .common import EXIT_INTERRUPTED, EXIT_MIXED_FAILURES, STREAM, UsageError, print_error, print_report, same_file_key


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


def _plan_destinations(sources: tuple[str, ...], output: str | None, default) -> list[Path | str]:
    """Each input's destination, or UsageError/OutputError before any work, as zstd does: a
    stream with several inputs, an -o that cannot take the outputs, and (--force or not) an
    output that would replace an input of the run or the output of another input."""
    if len(sources) > 1 and (STREAM in sources or output == STREAM):
        raise UsageError("standard input and output (-) work with a single input only")
    destinations = [_destination(source, output, len(sources) > 1, default) for source in sources]
    inputs = {same_file_key(source): source for source in sources if source != STREAM}
    taken: dict[tuple, str] = {}  # destination's key -> the input it is the output of
    for source, destination in zip(sources, destinations):
        if destination == STREAM:
            continue
        key = same_file_key(destination)
        if key in inputs:
            raise OutputError(
                f"{input_name(source)}: its output {destination} is an input of this run "
                f"({inputs[key]}); refusing to replace it, even with --force"
            )
        if key in taken:
            raise OutputError(
                f"{taken[key]} and {input_name(source)} would both be written to {destination}; "
                "rename one, or code them in separate runs"
            )
        taken[key] = input_name(source)
    return destinations


def _binary(stream):
    """The byte stream under a text stream (sys.stdin, sys.stdout, or click's test stand-ins)."""
    return getattr(stream, "buffer", stream)


def check_destination_writable(destination: Path | str, force: bool) -> None:
    """Refuse now, before the slow part, what writing would refuse later."""
    if destination == STREAM:
        if sys.stdout.isatty():
            raise OutputError("refusing to write binary data to a terminal; redirect it or use -o FILE")
    else:
        check_writable(destination, force)


def write_output(destination: Path | str, data: bytes, force: bool) -> None:
    if destination == STREAM:
        stdout = _binary(sys.stdout)
        stdout.write(data)
        stdout.flush()
    else:
        write_atomically(destination, data, force=force)


def read_input(source: str) -> bytes:
    return _binary(sys.stdin).read() if source == STREAM else read_file(source)


def input_name(source) -> str:
    return "<stdin>" if source == STREAM else str(source)


def output_name(destination) -> str:
    return "<stdout>" if destination == STREAM else str(destination)


def about(source, error: RidecodecError) -> str:
    """The error's line, naming the input once."""
    name = input_name(source)
    return str(error) if str(error).startswith(name) else f"{name}: {error}"


def exit_if_any_failed(failures: list[int], total: int) -> None:
    if failures:
        if total > 1:
            print_error(f"{len(failures)} of {total} files failed")
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
        f"note: {input_name(source)} is a JPEG; ridecodec codes its decoded pixels losslessly, "
        "which usually takes more bytes than the JPEG"
    )


def run_each(
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
            check_destination_writable(destination, force)  # before the slow part, for every input
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
                print_error(about(sources[reported], failure))
                failures.append(failure.exit_code)
            else:
                assert coded is not None  # an outcome is a result or an error
                if coded.is_jpeg and not jpeg_noted and not quiet:
                    click.echo(_jpeg_note(sources[reported]), err=True)  # once per run, not per file
                    jpeg_noted = True
                print_report(coded.report, quiet)
            reported += 1

    try:
        with contextlib.closing(_code_each(work, sources, destinations, to_code, jobs)) as results:
            report_in_order()  # refusals found above, up to the first input being coded
            for index, (coded, failure) in results:
                if coded is not None:
                    try:
                        with _interrupt_deferred():  # an output is written and counted, or neither
                            write_output(destinations[index], coded.data, force)
                            written.append(index)
                    except RidecodecError as write_error:
                        coded, failure = None, write_error
                outcomes[index] = (coded, failure)
                report_in_order()
    except KeyboardInterrupt:
        for index in written:
            coded = outcomes[index][0]
            if index >= reported and coded is not None:  # written, but its report waited for an earlier input
                print_report(coded.report, quiet)
        print_error(f"interrupted: {len(written)} of {len(sources)} outputs were written; no partial file was left")
        sys.exit(EXIT_INTERRUPTED)
    exit_if_any_failed(failures, len(sources))


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


def plan_or_exit(sources, output, default) -> list:
    try:
        return _plan_destinations(sources, output, default)
    except RidecodecError as error:
        print_error(str(error))
        sys.exit(error.exit_code)
