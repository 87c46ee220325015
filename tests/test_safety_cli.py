"""The command line never loses a user's data: --force cannot make a run replace its own input or
one of its own outputs, unwritable outputs are refused before any work, Ctrl-C with --jobs stops
at once and says what was written, and nothing is left out of a report or done silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import ridecodec
from ridecodec import api
from ridecodec.cli import main

from conftest import natural_like

#: The exit codes the README documents for these failures.
EXIT_USAGE = 2
EXIT_CANNOT_WRITE_OUTPUT = 11
EXIT_INTERRUPTED = 130


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ridecodec: error: "), result.output
    return lines[0]


@pytest.fixture
def gray_png(tmp_path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(natural_like(12, 10)).save(path)
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any image is coded: refusals must come before the work."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("the work started before the refusal")

    for coding in ("compress", "decompress_image", "decompress_to_png"):
        monkeypatch.setattr(api, coding, must_not_run, raising=False)  # whichever the CLI calls


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# --- item 3: --force never makes a run destroy its own input or work --------------------------------


def test_force_never_replaces_an_input_with_its_own_output(tmp_path, gray_png, no_work):
    rdc = tmp_path / "b.rdc"
    rdc.write_bytes(b"\x89RDC not really, but precious")
    os.link(gray_png, tmp_path / "hard-link.png")
    (tmp_path / "sub").mkdir()
    before = folder_contents(tmp_path)
    cases = [
        ["compress", gray_png, "-o", gray_png, "-f"],
        ["compress", gray_png, "-o", tmp_path / "sub" / ".." / "a.png", "-f"],  # another spelling
        ["compress", gray_png, "-o", tmp_path / "hard-link.png", "-f"],  # the same file by inode
        ["compress", rdc, "-f"],  # b.rdc's default output is b.rdc itself
        ["decompress", rdc, "-o", rdc, "-f"],
        ["decompress", gray_png, "-f"],  # a.png's default output is a.png itself
    ]
    for args in cases:
        result = run(*args, "-q")
        assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT, (args, result.output)
        assert "is an input of this run" in one_error_line(result), args
    assert folder_contents(tmp_path) == before


def test_two_inputs_never_share_an_output(tmp_path, gray_png, no_work):
    jpeg = tmp_path / "a.jpg"
    Image.fromarray(natural_like(12, 10)).save(jpeg)
    for folder in ("d1", "d2", "out"):
        (tmp_path / folder).mkdir()
    for folder in ("d1", "d2"):
        Image.fromarray(natural_like(8, 8)).save(tmp_path / folder / "x.png")
        (tmp_path / folder / "x.rdc").write_bytes(b"an .rdc file")
    before = folder_contents(tmp_path)
    cases = [
        ["compress", gray_png, jpeg, "--force"],  # both would be a.rdc
        ["compress", tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png", "-o", tmp_path / "out", "-f"],
        ["decompress", tmp_path / "d1" / "x.rdc", tmp_path / "d2" / "x.rdc", "-o", tmp_path / "out", "-f"],
        ["compress", gray_png, gray_png, "-f"],  # the same input twice
    ]
    for args in cases:
        result = run(*args, "-q")
        assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT, (args, result.output)
        assert "would both be written to" in one_error_line(result), args
    assert folder_contents(tmp_path) == before


# --- item 5: unwritable outputs are found before the work, with a documented exit code ---------------


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, gray_png, no_work):
    regular_file = tmp_path / "notes.txt"
    regular_file.write_text("a file, not a folder")
    rdc = tmp_path / "x.rdc"
    rdc.write_bytes(b"\x89RDC")
    cases = [
        (["compress", gray_png, "-o", tmp_path / "missing" / "a.rdc"], "does not exist"),
        (["compress", gray_png, "-o", regular_file / "a.rdc"], "not a folder"),
        (["compress", gray_png, "-o", str(tmp_path / "newdir") + os.sep], "no such folder"),
        (["decompress", rdc, "-o", str(tmp_path / "newdir") + os.sep], "no such folder"),
        (["compress", gray_png, "-o", regular_file / "deeper" / "a.rdc"], "not a folder"),
    ]
    before = folder_contents(tmp_path)
    for args, reason in cases:
        result = run(*args, "-q")
        assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT, (args, result.output)
        assert reason in one_error_line(result), (args, result.output)
    assert folder_contents(tmp_path) == before
    assert not (tmp_path / "newdir").exists()


def test_a_folder_that_cannot_be_written_is_found_before_the_work(tmp_path, gray_png, no_work, monkeypatch):
    """As root, chmod cannot make a folder read-only; the probe's refusal is simulated instead."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ridecodec.fileio.tempfile, "mkstemp", refuse)
    result = run("compress", gray_png, "-o", tmp_path / "a.rdc", "-q")
    assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    assert "Permission denied" in one_error_line(result)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path, gray_png, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = run("compress", gray_png, "-o", locked, "-q")
    finally:
        locked.chmod(0o755)
    assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    one_error_line(result)


def test_a_failed_write_is_a_documented_error(tmp_path, gray_png, monkeypatch):
    """A disk that fills up while writing: exit 11 (it was 1, which the README does not list),
    and no partial or temporary file."""

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ridecodec.fileio.os, "fsync", disk_full)
    result = run("compress", gray_png, "-m", "loco", "-q")
    assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    assert "No space left on device" in one_error_line(result)
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_standard_input_has_no_name_to_put_in_a_folder(tmp_path, gray_png, no_work):
    folder = tmp_path / "out"
    folder.mkdir()
    result = run("compress", "-", "-o", folder, "-q", input=gray_png.read_bytes())
    assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    assert "standard input" in one_error_line(result)
    assert os.listdir(folder) == []


def test_several_inputs_with_streams_is_a_usage_error(tmp_path, gray_png, no_work):
    result = run("compress", gray_png, "-", "-q", input=b"")
    assert result.exit_code == EXIT_USAGE
    one_error_line(result)


def test_several_inputs_need_an_existing_folder(tmp_path, gray_png, no_work):
    result = run("compress", gray_png, gray_png, "-o", tmp_path / "single.rdc", "-q")
    assert result.exit_code == EXIT_CANNOT_WRITE_OUTPUT
    assert "must be an existing folder" in one_error_line(result)


# --- item 6: Ctrl-C with --jobs stops at once, writes nothing new, says what was written -------------


#: ``python -m ridecodec.cli``, with Ctrl-C handled as when a terminal starts it, even where this
#: test runs in a background job of a script: such a job starts with Ctrl-C ignored (POSIX), and
#: a Python started from it keeps ignoring it
_CLI_AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('ridecodec.cli', run_name='__main__', alter_sys=True)"
)


@pytest.mark.slow
def test_ctrl_c_with_jobs_stops_at_once_and_says_what_was_written(tmp_path):
    """A small image first, then slow ones: once the small one's output exists, Ctrl-C (SIGINT to
    the whole process group, as a terminal sends it) must stop the workers mid-image. The slow
    images take seconds each, so no output can honestly be finished after the interrupt."""
    Image.fromarray(natural_like(8, 8)).save(tmp_path / "0-small.png")
    slow = [f"{index}-slow.png" for index in range(1, 6)]
    for index, name in enumerate(slow):
        Image.fromarray(natural_like(160, 160, seed=index)).save(tmp_path / name)
    repository = Path(ridecodec.__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repository), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-c",
        _CLI_AS_FROM_A_TERMINAL,
        "compress",
        "0-small.png",
        *slow,
        "--jobs",
        "2",
        "--model",
        "ride",
        "--effort",
        "8",
        "--quiet",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal job
    )
    try:
        deadline = time.monotonic() + 180  # generous: only a hang fails it
        while not (tmp_path / "0-small.rdc").exists():
            assert process.poll() is None, f"ended before the interrupt: {process.stderr.read()}"
            assert time.monotonic() < deadline, "the first output never appeared"
            time.sleep(0.05)
        outputs_at_interrupt = sorted(path.name for path in tmp_path.glob("*.rdc"))
        os.killpg(process.pid, signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == EXIT_INTERRUPTED, errors
    assert errors.strip().splitlines()[-1] == (
        f"ridecodec: error: interrupted: {len(outputs_at_interrupt)} of 6 outputs were written; "
        "no partial file was left"
    ), errors
    assert "Traceback" not in errors
    time.sleep(1)  # a worker still running would write (or leave a .part) about now
    assert sorted(path.name for path in tmp_path.glob("*.rdc")) == outputs_at_interrupt
    assert [name for name in os.listdir(tmp_path) if name.endswith(".part")] == []


# --- smaller items ----------------------------------------------------------------------------------


def test_info_json_includes_the_files_that_failed(tmp_path, gray_png):
    assert run("compress", gray_png, "-m", "loco", "-q").exit_code == 0
    broken = tmp_path / "broken.rdc"
    broken.write_bytes(b"not a ridecodec file")
    result = CliRunner().invoke(main, ["info", "--json", str(tmp_path / "a.rdc"), str(broken)])
    assert result.exit_code == 5  # malformed .rdc
    good, bad = json.loads(result.stdout)
    assert good["file"] == str(tmp_path / "a.rdc") and good["width"] == 10
    assert bad["file"] == str(broken) and "wrong magic bytes" in bad["error"]


def test_a_jpeg_input_is_noted_once_per_run(tmp_path):
    for name in ("a.jpg", "b.jpeg"):
        Image.fromarray(natural_like(12, 10)).save(tmp_path / name, quality=90)
    Image.fromarray(natural_like(12, 10)).save(tmp_path / "c.png")
    inputs = [tmp_path / name for name in ("c.png", "a.jpg", "b.jpeg")]
    result = CliRunner().invoke(main, ["compress", *map(str, inputs), "-m", "loco"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        (
            f"note: {inputs[1]} is a JPEG; ridecodec codes its decoded pixels losslessly, "
            "which usually takes more bytes than the JPEG"
        )
    ]
    quiet = CliRunner().invoke(main, ["compress", *map(str, inputs), "-m", "loco", "-q", "-f"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_eval_says_which_files_it_skipped_and_why(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(natural_like(16, 20)).save(folder / "a.png")
    Image.fromarray(natural_like(16, 20, seed=3)).convert("P").save(folder / "b.gif")  # evaluated
    frames = [Image.fromarray(natural_like(8, 8, seed=seed)).convert("P") for seed in (1, 2)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.fromarray((np.arange(16 * 20, dtype=np.uint16) * 200).reshape(16, 20)).save(folder / "deep.png")
    (folder / "notes.txt").write_text("not an image")
    result = run("eval", folder, "--model", "loco", "--no-classical", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [image["name"] for image in report["images"]] == ["a.png", "b.gif"]
    skipped = {entry["name"]: entry["reason"] for entry in report["skipped"]}
    assert set(skipped) == {"animated.gif", "deep.png", "notes.txt"}
    assert "frames" in skipped["animated.gif"]
    assert "16-bit" in skipped["deep.png"]
    assert "not an image" in skipped["notes.txt"]
    markdown = run("eval", folder, "--model", "loco", "--no-classical", "-q")
    assert "skipped deep.png: " in markdown.output and "| deep.png |" not in markdown.output
