"""nerfstudio ``transforms.json``: write a :class:`Dataset`, and read our/nerfstudio and instant-ngp files.

Layout written (the one nerfstudio's ``colmap_to_json`` writes and its ``nerfstudio_dataparser`` reads)::

    {"w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model",   # shared camera
     "frames": [{"file_path": "images/frame_00001.jpg", "transform_matrix": 4x4, "colmap_im_id": 1,
                 "mask_path": ..., "depth_file_path": ...,
                 <the camera keys again, only when the frames do not share one camera>}],
     "applied_transform": 3x4, "ply_file_path": "sparse_pc.ply",
     "train_filenames"/"val_filenames"/"test_filenames": [...]}                                 # when split

``transform_matrix`` is camera-to-world with OpenGL camera axes. Paths are relative to the json's folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset, Frame, Intrinsics

CAMERA_KEYS = ("w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model")


def intrinsics_to_json(intr: Intrinsics) -> dict[str, Any]:
    """nerfstudio camera keys (``w h fl_x fl_y cx cy k1 k2 k3 k4 p1 p2 camera_model``) of one camera."""
    return {
        "w": int(intr.width),
        "h": int(intr.height),
        "fl_x": float(intr.fx),
        "fl_y": float(intr.fy),
        "cx": float(intr.cx),
        "cy": float(intr.cy),
        "k1": float(intr.k1),
        "k2": float(intr.k2),
        "k3": float(intr.k3),
        "k4": float(intr.k4),
        "p1": float(intr.p1),
        "p2": float(intr.p2),
        "camera_model": intr.model,
    }


def _relative(path: Path, folder: Path, what: str) -> str:
    """``path`` as a POSIX path relative to ``folder``; refuses paths outside it."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        raise DatasetError(
            f"{what} {path} lies outside the dataset folder {folder}; write transforms.json next to the images"
        ) from None


def _frame_to_json(frame: Frame, folder: Path, shared: bool) -> dict[str, Any]:
    matrix = np.asarray(frame.world_from_cam, dtype=np.float64)  # [4, 4]
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise DatasetError(f"frame {frame.image_path}: world_from_cam must be a finite 4x4, got {matrix.shape}")
    out: dict[str, Any] = {
        "file_path": _relative(frame.image_path, folder, "image"),
        "transform_matrix": matrix.tolist(),
    }
    if frame.colmap_im_id is not None:
        out["colmap_im_id"] = int(frame.colmap_im_id)
    if frame.mask_path is not None:
        out["mask_path"] = _relative(frame.mask_path, folder, "mask")
    if frame.depth_path is not None:
        out["depth_file_path"] = _relative(frame.depth_path, folder, "depth image")
    if not shared:
        out.update(intrinsics_to_json(frame.intrinsics))
    return out


def dataset_to_json(dataset: Dataset, folder: Path) -> dict[str, Any]:
    """The nerfstudio ``transforms.json`` content of ``dataset`` with paths relative to ``folder``."""
    if not dataset.frames:
        raise DatasetError(f"dataset {dataset.root} has no frames to write")
    cameras = {f.intrinsics for f in dataset.frames}
    shared = len(cameras) == 1
    out: dict[str, Any] = intrinsics_to_json(dataset.frames[0].intrinsics) if shared else {}
    out["frames"] = [_frame_to_json(f, folder, shared) for f in dataset.frames]
    if dataset.applied_transform is not None:
        out["applied_transform"] = np.asarray(dataset.applied_transform, dtype=np.float64)[:3, :4].tolist()
    if dataset.ply_path is not None:
        out["ply_file_path"] = _relative(dataset.ply_path, folder, "point cloud")
    for name, indices in dataset.splits.items():
        out[f"{name}_filenames"] = [out["frames"][i]["file_path"] for i in indices]
    return out


def write_json_atomic(content: Any, path: Path) -> None:
    """Write ``content`` as indented JSON to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=4)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_transforms(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` as a nerfstudio ``transforms.json`` at ``path`` (atomically).

    Cameras go top-level when every frame shares one, else per frame. Image, mask, depth and PLY paths are
    written relative to ``path``'s folder and must lie inside it (else :class:`DatasetError`).
    """
    path = Path(path)
    write_json_atomic(dataset_to_json(dataset, path.parent), path)
