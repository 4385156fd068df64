"""Atomic file writes shared by every stage: nothing half-written ever sits under a final name.

A write goes to a hidden temp file in the same folder (``.NAME.tmp-XXXX``), is flushed and fsynced, and is then
renamed onto the final name (``os.replace``, atomic on one file system). On any error the temp file is removed and
the final name keeps what it held before (or stays absent). Operating-system errors become ``InputError`` naming
the path and the cause, so the CLI prints one line.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


def os_error(path: Path, err: OSError, doing: str = "cannot write") -> InputError:
    """``err`` as one InputError line naming ``path`` and the cause (``ENOSPC`` -> "No space left on device")."""
    cause = err.strerror or str(err) or type(err).__name__
    return InputError(f"{path}: {doing} ({cause})")


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents); InputError naming it when a file is in the way or it cannot be made."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file; cannot create a folder there (choose another output)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(folder, err, "cannot create the folder") from err
    return folder


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (same suffix, so writers pick the format by it); renamed onto ``path``
    on normal exit, removed on any error. OSErrors become InputError naming ``path``."""
    path = Path(path)
    ensure_folder(path.parent)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix if suffix is None else suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        raise os_error(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, content: bytes | str) -> Path:
    """Write ``content`` (text as UTF-8) to ``path`` atomically, fsynced; returns ``path``."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def read_gltf(path: Path):
    """The ``pygltflib.GLTF2`` of the .glb / .gltf file ``path``; InputError naming it when it is not glTF 2.0 (no
    pygltflib warning on the terminal: the error says it)."""
    import pygltflib  # heavy: pygltflib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "does not support version ..." of a file that is not glTF at all
            gltf = pygltflib.GLTF2().load(str(path))
    except Exception as exc:  # pygltflib raises bare exceptions of many kinds on bad files
        raise InputError(f"{path}: not a readable glTF file ({exc})") from None
    if gltf is None:
        raise InputError(f"{path}: not a readable glTF file")
    return gltf
