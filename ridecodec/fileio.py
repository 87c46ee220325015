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

from .errors import InputError, OutputExistsError, RidecodecError


def refuse_to_overwrite(path: str | os.PathLike, force: bool) -> None:
    """Raise OutputExistsError if ``path`` exists and ``force`` is off: callers check before
    slow work, and write_atomically checks again when it writes."""
    if not force and Path(path).exists():
        raise _exists(path)


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
    path = Path(path)
    refuse_to_overwrite(path, force)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise RidecodecError(f"{path}: the folder {directory} does not exist")
    if path.is_dir():
        raise RidecodecError(f"{path}: is a directory")
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as error:
        raise RidecodecError(f"{path}: cannot write ({error.strerror})") from error
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
        raise RidecodecError(f"{path}: cannot write ({error.strerror})") from error
    finally:  # also on KeyboardInterrupt: never leave the temporary file behind
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
