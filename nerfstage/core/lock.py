"""One writer per output: an exclusive ``fcntl.flock`` on a lock file beside the run or output folder (or file).

``output_lock(path)`` holds ``PARENT/.NAME.nerfstage-lock`` for the length of a ``with`` block and writes its
process id into it; a second process asking for the same output gets ``LockedError`` naming the holder's PID, at
once (no waiting). The lock file sits beside the output, not in it, so an empty output folder stays empty and an
output that is replaced whole (``--overwrite``) keeps its lock. It is removed when released; the kernel drops the
lock of a killed process, so a stale file never blocks anyone.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, LockedError
from .files import ensure_folder


def lock_path(output: Path, part: str | None = None) -> Path:
    """The lock file of ``output`` (``PARENT/.NAME.nerfstage-lock``), or of one ``part`` of it (a render shard:
    ``PARENT/.NAME.PART.nerfstage-lock``)."""
    output = Path(output).absolute()
    return output.parent / (f".{output.name}.nerfstage-lock" if part is None else
                            f".{output.name}.{part}.nerfstage-lock")


def _holder(fd: int) -> str:
    """The PID written in a held lock file (or "unknown" before the holder wrote it)."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"


def _acquire(path: Path, output: Path) -> int:
    """An fd holding the exclusive lock on ``path`` (the file still linked under its name), PID written."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"{output}: cannot create its lock file {path.name} ({err.strerror or err})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            pid = _holder(fd) if err.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if pid is None:
                raise InputError(f"{output}: cannot lock it ({err.strerror or err})") from err
            raise LockedError(f"{output}: in use by another nerfstage process (PID {pid}); wait for it to finish "
                              "or stop it first") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder unlinked while we waited for it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            return fd
        os.close(fd)


@contextmanager
def output_lock(output: Path, part: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``output`` (a run folder, an output folder or file), or of one ``part`` of it,
    inside the block; yields the lock file. LockedError naming the holder's PID when another process holds it."""
    output = Path(output)
    path = lock_path(output, part)
    made = _missing_folders(path.parent)
    ensure_folder(path.parent)
    try:
        fd = _acquire(path, output)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)
    finally:
        _remove_if_empty(made)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders the lock created that nothing was written into (a command that failed leaves none)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
