"""Writing outputs without ever losing a user's data.

Outputs are written to a temporary file beside the destination and moved into place only once
complete, so an interrupted run (Ctrl-C, a crash, a full disk) leaves no partial file. Without
``force`` an existing file is never replaced, even one that appears while we write: the final
step is a hard link, which fails if the name exists, instead of a rename, which would replace it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError, OutputError, OutputExistsError


def refuse_to_overwrite(path: str | os.PathLike, force: bool) -> None:
    """Raise OutputExistsError if ``path`` exists and ``force`` is off: callers check before
    slow work, and write_atomically checks again when it writes."""
    if not force and Path(path).exists():
        raise _exists(path)


def check_writable(path: str | os.PathLike, force: bool) -> None:
    """Raise now what writing ``path`` would raise after the slow work: OutputExistsError for an
    existing file without ``force``, OutputError for a folder that is missing, is a file, or
    refuses a new file (read-only, full, another owner's). The folder is probed by creating and
    removing a temporary file, since permission bits do not tell (root, ACLs, read-only mounts)."""
    path = Path(path)
    refuse_to_overwrite(path, force)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file")
    _probe_folder(path, _folder_of(path))


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _probe_folder(path: Path, folder: Path) -> None:
    if not folder.exists():
        above = next((parent for parent in folder.parents if parent.exists()), None)
        if above is not None and not above.is_dir():  # a path under a regular file
            raise OutputError(f"{path}: cannot write there, {above} is not a folder")
        raise OutputError(f"{path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write there, {folder} is not a folder")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as error:
        raise OutputError(f"{path}: cannot write in {folder} ({error.strerror})") from None
    os.close(descriptor)
    os.unlink(probe)


def _exists(path) -> OutputExistsError:
    # "a.png: a.rdc exists; ..." once the command names the input it was working on
    return OutputExistsError(f"{path} exists; use --force to overwrite it")


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an input file, or InputError with a one-line reason."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None


def write_atomically(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` completely or not at all; OutputExistsError (exit 8) or
    OutputError (exit 11) with a one-line reason."""
    path = Path(path)
    refuse_to_overwrite(path, force)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, not a file")
    directory = _folder_of(path)
    if not directory.is_dir():
        _probe_folder(path, directory)  # raises, saying why
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as error:
        raise OutputError(f"{path}: cannot write in {directory} ({error.strerror})") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        if force:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise _exists(path) from None
            except OSError:  # file systems without hard links: a rename after a last check
                if path.exists():
                    raise _exists(path) from None
                os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror})") from None
    finally:  # also on KeyboardInterrupt: never leave the temporary file behind
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
