"""Writing files so that a crash, a kill or a full disk never leaves a half-written one.

Everything pixelwise writes that a user keeps (checkpoints, exported weights) goes through
:func:`atomic_write`: the bytes go to a temporary file in the same folder, are flushed to the
disk, and only then replace the target with one atomic ``os.replace``. A failure at any point
leaves the previous file as it was, and the error says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pixelwise.errors import WriteError

TEMP_SUFFIX = ".tmp"
UMASK = os.umask(0)  # read once (it can only be read by setting it) and put back at once
os.umask(UMASK)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], what: str = "file") -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path``.

    An ``OSError`` (a full disk, a read-only folder, a quota), also one that a writer re-raised as
    another error, becomes a :class:`WriteError`
    naming ``what``, the file and whether an earlier version is intact; the temporary file is
    removed. A process killed mid-write leaves only a hidden ``.NAME.*.tmp`` file, which
    :func:`remove_stale_temporaries` clears.
    """
    path = Path(path)
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(handle)
        os.chmod(temp_name, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with open(temp_name, "wb") as file:  # a named file: some writers (tifffile) want its name
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
        temp_name = None
        _sync_folder(path.parent)
    except Exception as error:
        kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
        if (converted := write_error(error, what, path, f"; {kept}")) is None:
            raise
        raise converted from error
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
    return path


def write_error(error: Exception, what: str, path: str | Path, note: str = "") -> WriteError | None:
    """The :class:`WriteError` for ``error`` met while writing ``path`` when an ``OSError`` is behind
    it (:func:`os_error`); None for any other error, which is raised as it is."""
    cause = os_error(error)
    if cause is None:
        return None
    return WriteError(f"could not write {what} {path}: {cause.strerror or cause}{note}")


def os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error``: itself, or one it was raised while handling (``torch.save``
    meets a full disk with a RuntimeError from its zip writer, raised over the OSError)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


@contextlib.contextmanager
def writing(path: str | Path, what: str = "file") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`WriteError` naming ``what`` and
    ``path``: for files that are appended to or rewritten whole (logs, summaries, figures)."""
    try:
        yield
    except WriteError:
        raise
    except Exception as error:
        if (converted := write_error(error, what, path)) is None:
            raise
        raise converted from error


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder``; returns them."""
    stale = sorted(Path(folder).glob(f".*{TEMP_SUFFIX}")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file (else a power cut may lose the rename)."""
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
