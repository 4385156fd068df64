"""Write meshes for game engines and DCC tools: GLB (glTF 2.0), OBJ (+ MTL and PNG when textured) and PLY.

Axes. nerfstage's scene frames (the dataset frame and the normalised frame nerfstudio's dataparser produces) are
right-handed and **Z-up**. glTF 2.0 is right-handed **Y-up** (+Z forward), and OBJ is read as Y-up by Blender,
Maya, Unity and Unreal, so GLB and OBJ are written rotated by -90 degrees about X: (x, y, z) -> (x, z, -y); a point
above the scene (+Z) ends up at +Y, and Blender's importers rotate it back to where it was. PLY keeps the scene's
Z-up axes (as nerfstudio's exports, and as Blender's PLY importer expects). ``y_up`` overrides the default.

Units. ``scale`` multiplies coordinates on write (metres per scene unit). The mesh should first be brought into
the dataset frame (``dataset_from_normalized`` undoes a run's dataparser transform); a dataset whose poses are in
metres (the synthetic scene, ARKit/Polycam captures) then exports in metres with ``scale=1``, glTF's unit. A
COLMAP reconstruction has an arbitrary scale: pass the metres per unit if you know them.

Colours. The mesh's vertex colours (8-bit, sRGB-encoded as the field predicts them) go unchanged into PLY and OBJ;
glTF defines ``COLOR_0`` as linear, so GLB gets them converted with the sRGB transfer curve. Texture images are
sRGB in every format (glTF's base-colour texture is sRGB by definition).

Writes are atomic: every file goes to a hidden ``.name.partial.ext`` first and is renamed when all are complete,
the main file last, so an error never leaves a partial file under a final name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh
from trimesh.exchange.obj import export_obj

from ..core.errors import InputError, OutputExistsError

MESH_SUFFIXES = (".glb", ".obj", ".ply")
"""File extensions ``write_mesh`` understands."""

Y_UP_FROM_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
"""[4, 4] rotation by -90 degrees about X: (x, y, z) -> (x, z, -y)."""


def dataset_from_normalized(transform: np.ndarray, scale: float) -> np.ndarray:
    """[4, 4] map from a run's normalised frame back to its dataset frame, given ``dataparser_transforms.json``
    (``normalized = scale * (transform @ [p, 1])``, transform [3, 4])."""
    normalized_from_dataset = np.eye(4)
    normalized_from_dataset[:3] = float(scale) * np.asarray(transform, dtype=np.float64).reshape(3, 4)
    return np.linalg.inv(normalized_from_dataset)


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    x = np.clip(np.asarray(encoded, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def check_mesh_path(path: Path, overwrite: bool = False) -> str:
    """Return the lower-case suffix of ``path`` after checking it is a known mesh format and may be written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"{path}: unknown mesh extension '{path.suffix}'; expected one of {', '.join(MESH_SUFFIXES)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name ending in {suffix}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it or choose another name")
    return suffix


def write_files_atomic(files: dict[Path, bytes], overwrite: bool = False) -> None:
    """Write ``{path: bytes}`` atomically (all temps first, renamed in order: put the main file last)."""
    for path in files:
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it or choose another name")
    temps = {path: path.with_name(f".{path.stem}.partial{path.suffix}") for path in files}
    renamed: list[Path] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            temps[path].write_bytes(data)
        for path, tmp in temps.items():
            os.replace(tmp, path)
            renamed.append(path)
    except OSError as exc:
        for done in renamed:  # a set of files is only useful whole (an OBJ without its texture is not)
            done.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc}); check the folder is writable") from exc
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def _prepared(mesh: trimesh.Trimesh, scale: float, y_up: bool) -> trimesh.Trimesh:
    """A copy of ``mesh`` scaled and, when ``y_up``, rotated Z-up -> Y-up."""
    out = mesh.copy()
    transform = np.diag([scale, scale, scale, 1.0])
    if y_up:
        transform = Y_UP_FROM_Z_UP @ transform
    out.apply_transform(transform)
    return out


def _glb_bytes(mesh: trimesh.Trimesh) -> bytes:
    if mesh.visual.kind == "vertex":
        rgba = np.asarray(mesh.visual.vertex_colors, dtype=np.float64) / 255.0
        rgba[:, :3] = srgb_to_linear(rgba[:, :3])
        mesh.visual.vertex_colors = np.round(rgba * 255.0).astype(np.uint8)
    return mesh.export(file_type="glb", include_normals=True)


def _obj_files(mesh: trimesh.Trimesh, path: Path) -> dict[Path, bytes]:
    """OBJ text plus, for a textured mesh, its MTL and texture PNG, named after the OBJ so exports can share a
    folder. Vertex colours go on the ``v`` lines (x y z r g b, read by Blender, MeshLab and trimesh); such a mesh
    gets no MTL, since a material makes some readers (trimesh) ignore the vertex colours."""
    mtl_name = f"{path.stem}.mtl"
    text, resources = export_obj(
        mesh, include_normals=True, include_color=True, include_texture=True, return_texture=True, mtl_name=mtl_name
    )
    files: dict[Path, bytes] = {}
    mtl = resources.pop(mtl_name, None)
    for name, data in resources.items():  # textures: material_0.png -> <stem>_material_0.png
        if mtl is not None:
            mtl = mtl.replace(name.encode(), f"{path.stem}_{name}".encode())
        files[path.with_name(f"{path.stem}_{name}")] = data
    if mtl is not None:
        files[path.with_name(mtl_name)] = mtl
    files[path] = text.encode()
    return files


def write_mesh(
    mesh: trimesh.Trimesh, path: Path, scale: float = 1.0, y_up: bool | None = None, overwrite: bool = False
) -> list[Path]:
    """Write ``mesh`` (scene frame, Z-up) to ``path`` (.glb, .obj, .ply; see the module docstring for axes, units
    and colours) and return every file written, main file last. ``y_up=None`` takes the format's default."""
    path = Path(path)
    suffix = check_mesh_path(path, overwrite)
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"mesh scale {scale}: expected a positive number of metres per scene unit")
    if len(mesh.faces) == 0:
        raise InputError(f"{path}: the mesh has no faces; nothing to write")
    out = _prepared(mesh, float(scale), suffix != ".ply" if y_up is None else y_up)
    if suffix == ".glb":
        files = {path: _glb_bytes(out)}
    elif suffix == ".obj":
        files = _obj_files(out, path)
    else:
        files = {path: trimesh.exchange.ply.export_ply(out, encoding="binary", vertex_normal=True)}
    write_files_atomic(files, overwrite)
    return list(files)


def read_mesh(path: Path) -> trimesh.Trimesh:
    """Read a mesh written by ``write_mesh`` back as one Trimesh (file axes, no conversion; for checks)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mesh file")
    return trimesh.load(path, force="mesh", process=False)
