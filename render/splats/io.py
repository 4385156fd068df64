"""Read and write Gaussian splats by file extension: ``.ply`` (original 3DGS layout, :mod:`.ply`), ``.spz``
(Niantic's compressed format, :mod:`.spz`), ``.glb`` / ``.gltf`` (glTF 2.0 with ``KHR_gaussian_splatting``,
:mod:`.gltf`).

Axes and units, as for meshes (``export/gltf.py``): PLY keeps the dataset frame's right-handed Z-up axes (as
3DGS tools, nerfstudio and Blender's PLY add-ons read them); glTF and SPZ are Y-up formats, so they get the
splats rotated by -90 degrees about X, (x, y, z) -> (x, z, -y), with the SH colour rotated along. Units are the
dataset's. Colour: sRGB-encoded display values (glTF ``colorSpace: srgb_rec709_display``).

Writes are atomic (a hidden ``.name.partial.ext`` renamed when complete) and refuse to replace a file unless
``overwrite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...core.errors import InputError
from ..writers import atomic_output, prepare_output
from .gltf import glb_bytes, gltf_files, read_gltf_splats
from .model import GaussianSplats
from .ply import read_ply, write_ply
from .spz import read_spz, spz_bytes

SPLAT_SUFFIXES = (".ply", ".spz", ".glb", ".gltf")
"""File extensions ``write_splats`` / ``read_splats`` understand."""


def splat_format(path: Path) -> str:
    """The lower-case extension of ``path`` after checking it is a splat format."""
    suffix = Path(path).suffix.lower()
    if suffix not in SPLAT_SUFFIXES:
        raise InputError(f"{path}: unknown splat file extension '{Path(path).suffix}'; expected one of "
                         f"{', '.join(SPLAT_SUFFIXES)}")
    return suffix


def write_splats(path: Path, splats: GaussianSplats, overwrite: bool = False) -> list[Path]:
    """Write ``splats`` (dataset frame) to ``path`` in the format its extension names; returns the files written
    (a ``.gltf`` also writes its ``.bin``), main file last."""
    path = Path(path)
    suffix = splat_format(path)
    if splats.num_splats == 0:
        raise InputError(f"{path}: there are no splats to write")
    if suffix == ".gltf":
        return _write_all(gltf_files(splats, path), overwrite)
    if suffix == ".ply":
        with atomic_output(path, overwrite) as tmp:
            write_ply(tmp, splats)
        return [path]
    data = spz_bytes(splats) if suffix == ".spz" else glb_bytes(splats)
    return _write_all({path: data}, overwrite)


def _write_all(files: dict[Path, bytes], overwrite: bool) -> list[Path]:
    """Write every ``{path: bytes}`` to its temp name, then rename them all (main file last)."""
    temps = {path: prepare_output(path, overwrite) for path in files}
    try:
        for path, data in files.items():
            temps[path].write_bytes(data)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc}); check the folder is writable") from exc
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return list(files)


def read_splats(path: Path) -> GaussianSplats:
    """Read splats from a ``.ply`` / ``.spz`` / ``.glb`` / ``.gltf`` file into the dataset frame."""
    path = Path(path)
    suffix = splat_format(path)
    if not path.is_file():
        raise InputError(f"{path}: no such splat file")
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".spz":
        return read_spz(path)
    return read_gltf_splats(path)
