"""Readers of the other dataset formats (instant-ngp, Blender, COLMAP) into one :class:`Dataset`, the COLMAP
reconstruction -> Dataset conversion used after SfM, and the sparse point cloud PLY.

COLMAP stores ``cam_from_world`` (world -> camera, OpenCV camera axes). Converting it the way nerfstudio's
``colmap_to_json`` does: ``world_from_cam = convert_camera_axes(inverse(cam_from_world))`` and, unless the
original world is kept, the world axes are permuted by :data:`NERFSTUDIO_APPLIED_TRANSFORM` (x, z, -y), which
is recorded as ``applied_transform``; the sparse points get the same permutation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import DatasetError
from ..core.geometry import Intrinsics, convert_camera_axes
from .dataset import Dataset, Frame
from .transforms import (
    frame_list,
    image_size,
    load_json,
    parse_frame,
    read_transforms,
    require,
    resolve_inside,
)

if TYPE_CHECKING:
    import pycolmap

NERFSTUDIO_APPLIED_TRANSFORM = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]])
"""[3, 4] nerfstudio's ``applied_transform`` for COLMAP worlds: ``eye(4)[:3][[0, 2, 1]]`` with row 2 negated."""

BLENDER_SPLITS = ("train", "val", "test")

# COLMAP model name -> (our model, parameter names in COLMAP's order); "f" sets fx and fy.
_COLMAP_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": ("PINHOLE", ("f", "cx", "cy")),
    "PINHOLE": ("PINHOLE", ("fx", "fy", "cx", "cy")),
    "SIMPLE_RADIAL": ("OPENCV", ("f", "cx", "cy", "k1")),
    "RADIAL": ("OPENCV", ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": ("OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    "OPENCV_FISHEYE": ("OPENCV_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    "SIMPLE_RADIAL_FISHEYE": ("OPENCV_FISHEYE", ("f", "cx", "cy", "k1")),
    "RADIAL_FISHEYE": ("OPENCV_FISHEYE", ("f", "cx", "cy", "k1", "k2")),
}


# ------------------------------------------------------------------------------------------------ instant-ngp


def read_instant_ngp(path: Path) -> Dataset:
    """instant-ngp ``transforms.json``: frames whose image is missing are skipped (a warning in the Dataset)."""
    return read_transforms(Path(path), format="instant-ngp")


# ---------------------------------------------------------------------------------------------------- Blender


def _blender_image(entry: object, index: int, root: Path, source: Path) -> Path:
    if not isinstance(entry, dict):
        raise DatasetError(f"{source}: frame {index} must be an object, got {type(entry).__name__}")
    value = require(entry, "file_path", source, f"frame {index}")
    if isinstance(value, str) and not os.path.splitext(value)[1]:
        value += ".png"
    image = resolve_inside(root, value, source, "file_path")
    if not image.is_file():
        raise DatasetError(f"{source}: frame {index}: image {value!r} does not exist")
    return image


def _read_blender_split(source: Path, root: Path) -> list[Frame]:
    meta = load_json(source)
    entries = frame_list(meta, source)
    angle = require(meta, "camera_angle_x", source, "top level")
    frames: list[Frame] = []
    top: dict = {"camera_angle_x": angle, "camera_model": "PINHOLE"}
    for index, entry in enumerate(entries):
        image = _blender_image(entry, index, root, source)
        if "w" not in top:  # every Blender image has the first one's size
            top["w"], top["h"] = image_size(image)
        frames.append(parse_frame(entry, index, top, root, source, image))
    return frames


def read_blender(folder: Path) -> Dataset:
    """Blender (NeRF-synthetic) ``transforms_{train,val,test}.json`` in ``folder``; RGBA images, splits filled.

    Paths without an extension get ``.png``; the focal length comes from ``camera_angle_x`` and the width of
    the first image. ``transforms_train.json`` is required, val/test are read when present.
    """
    folder = Path(os.path.abspath(folder))
    if not (folder / "transforms_train.json").is_file():
        raise DatasetError(f"{folder}: no transforms_train.json (a Blender dataset needs it)")
    dataset = Dataset(root=folder, frames=[], format="blender", has_alpha=True)
    for split in BLENDER_SPLITS:
        source = folder / f"transforms_{split}.json"
        if not source.is_file():
            continue
        frames = _read_blender_split(source, folder)
        start = len(dataset.frames)
        dataset.frames.extend(frames)
        dataset.splits[split] = list(range(start, start + len(frames)))
    if not dataset.frames:
        raise DatasetError(f"{folder}: the Blender transforms files list no frames")
    return dataset


# ----------------------------------------------------------------------------------------------------- COLMAP


def intrinsics_from_colmap(camera: pycolmap.Camera) -> Intrinsics:
    """Our :class:`Intrinsics` of a pycolmap camera (model mapping as nerfstudio's ``parse_colmap_camera_params``,
    except that SIMPLE_PINHOLE/PINHOLE stay PINHOLE)."""
    name = camera.model.name
    if name not in _COLMAP_MODELS:
        raise DatasetError(
            f"COLMAP camera {camera.camera_id}: model {name} is not supported; "
            f"expected one of {sorted(_COLMAP_MODELS)} (re-run SfM with one of them)"
        )
    model, names = _COLMAP_MODELS[name]
    values = dict(zip(names, (float(v) for v in camera.params), strict=True))
    if "f" in values:
        values["fx"] = values["fy"] = values.pop("f")
    intrinsics = Intrinsics(width=int(camera.width), height=int(camera.height), model=model, **values)
    if not (intrinsics.fx > 0 and intrinsics.fy > 0):
        raise DatasetError(f"COLMAP camera {camera.camera_id}: focal length must be positive, got {camera.params}")
    return intrinsics


def world_from_cam_colmap(cam_from_world_3x4: np.ndarray, apply_nerfstudio_world: bool = True) -> np.ndarray:
    """[4, 4] OpenGL camera-to-world of a COLMAP [3, 4] cam_from_world (OpenCV world-to-camera)."""
    cam_from_world = np.eye(4)
    cam_from_world[:3, :4] = cam_from_world_3x4
    world_from_cam = convert_camera_axes(np.linalg.inv(cam_from_world))
    if apply_nerfstudio_world:
        world_from_cam = _homogeneous(NERFSTUDIO_APPLIED_TRANSFORM) @ world_from_cam
    return world_from_cam


def _homogeneous(matrix_3x4: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :4] = matrix_3x4
    return out


def dataset_from_reconstruction(
    rec: pycolmap.Reconstruction, image_dir: Path, root: Path, apply_nerfstudio_world: bool = True
) -> Dataset:
    """Registered images of ``rec`` as a Dataset (frames in image-id order, per-camera intrinsics).

    Image names resolve against ``image_dir``, which must lie inside ``root``. Images missing on disk are
    skipped with a warning. With ``apply_nerfstudio_world`` the world is permuted exactly like nerfstudio's
    ``colmap_to_json`` and the permutation is stored as ``applied_transform``.
    """
    root = Path(os.path.abspath(root))
    image_dir = resolve_inside(root, os.path.abspath(image_dir), root, "image folder")
    cameras = {cid: intrinsics_from_colmap(cam) for cid, cam in rec.cameras.items()}
    frames, missing = [], []
    for image_id in sorted(rec.reg_image_ids()):
        image = rec.images[image_id]
        path = resolve_inside(image_dir, image.name, image_dir, f"COLMAP image {image_id} name")
        if not path.is_file():
            missing.append(image.name)
            continue
        matrix = world_from_cam_colmap(image.cam_from_world().matrix(), apply_nerfstudio_world)
        frames.append(Frame(path, matrix, cameras[image.camera_id], colmap_im_id=int(image_id)))
    dataset = Dataset(root=root, frames=frames, format="colmap")
    if apply_nerfstudio_world:
        dataset.applied_transform = NERFSTUDIO_APPLIED_TRANSFORM.copy()
    if missing:
        dataset.warnings.append(
            f"{image_dir}: skipped {len(missing)} registered images missing on disk ({', '.join(missing[:5])})"
        )
    if not frames:
        raise DatasetError(f"{image_dir}: none of the {len(missing)} registered COLMAP images exist there")
    return dataset


def is_colmap_model(folder: Path) -> bool:
    """True when ``folder`` holds cameras/images/points3D as .bin or .txt."""
    folder = Path(folder)
    return any(all((folder / f"{n}.{ext}").is_file() for n in ("cameras", "images")) for ext in ("bin", "txt"))


def _guess_image_dir(model_dir: Path) -> Path:
    """``<model>/../../images`` (``sparse/0`` layout), else ``<model>/../../../images`` (``colmap/sparse/0``)."""
    for up in (2, 3):
        candidate = model_dir.parents[up - 1] / "images" if len(model_dir.parents) >= up else None
        if candidate is not None and candidate.is_dir():
            return candidate
    raise DatasetError(f"{model_dir}: no images folder found at ../../images or ../../../images; pass images=DIR")


def read_colmap(model_dir: Path, images: Path | None = None, apply_nerfstudio_world: bool = True) -> Dataset:
    """A COLMAP model folder (``sparse/0``) plus its images folder (default: guessed, see _guess_image_dir).

    The dataset root is the images folder's parent. Poses follow :func:`dataset_from_reconstruction`.
    """
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    model_dir = Path(os.path.abspath(model_dir))
    if not is_colmap_model(model_dir):
        raise DatasetError(f"{model_dir}: not a COLMAP model (expected cameras and images .bin or .txt files)")
    image_dir = Path(os.path.abspath(images)) if images is not None else _guess_image_dir(model_dir)
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: images folder does not exist; pass the folder holding the model's images")
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises plain RuntimeError/ValueError on corrupt files
        raise DatasetError(f"{model_dir}: cannot read the COLMAP model ({exc})") from None
    dataset = dataset_from_reconstruction(rec, image_dir, image_dir.parent, apply_nerfstudio_world)
    return dataset


# ---------------------------------------------------------------------------------------------- point cloud


def sparse_points(
    rec: pycolmap.Reconstruction, applied_transform: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """([N, 3] float64 xyz in the dataset world, [N, 3] uint8 rgb) of the reconstruction's 3D points."""
    points = rec.points3D
    xyz = np.array([p.xyz for p in points.values()], dtype=np.float64).reshape(-1, 3)  # [N, 3]
    rgb = np.array([p.color for p in points.values()], dtype=np.uint8).reshape(-1, 3)  # [N, 3]
    if applied_transform is not None:
        transform = np.asarray(applied_transform, dtype=np.float64)[:3]  # [3, 4]
        xyz = xyz @ transform[:, :3].T + transform[:, 3]
    return xyz, rgb


def write_sparse_ply(rec: pycolmap.Reconstruction, path: Path, applied_transform: np.ndarray | None) -> int:
    """Write the sparse points as a binary little-endian PLY (float x y z, uchar red green blue), atomically.

    Points are moved by ``applied_transform`` ([3, 4], or None) into the frames' world. Returns the point count.
    """
    xyz, rgb = sparse_points(rec, applied_transform)
    vertex = np.empty(len(xyz), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vertex["xyz"], vertex["rgb"] = xyz, rgb
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(vertex.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(xyz)
