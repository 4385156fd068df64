"""nerfstudio ``transforms.json``: write a :class:`Dataset`, and read our/nerfstudio and instant-ngp files.

Layout written (the one nerfstudio's ``colmap_to_json`` writes and its ``nerfstudio_dataparser`` reads)::

    {"w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model",   # shared camera
     "frames": [{"file_path": "images/frame_00001.jpg", "transform_matrix": 4x4, "colmap_im_id": 1,
                 "mask_path": ..., "depth_file_path": ...,
                 <the camera keys again, only when the frames do not share one camera>}],
     "applied_transform": 3x4, "ply_file_path": "sparse_pc.ply",
     "train_filenames"/"val_filenames"/"test_filenames": [...]}                                 # when split

``transform_matrix`` is camera-to-world with OpenGL camera axes. Paths are relative to the json's folder.

Reading (:func:`read_transforms`) accepts the same file, nerfstudio's variants and instant-ngp's layout:

* format rule: a file is **nerfstudio** when it has ``camera_model`` (top level or in its first frame) or
  ``applied_transform``; otherwise it is **instant-ngp** (the original NeRF layout: ``camera_angle_x``,
  ``aabb_scale``, ``sharpness``, intrinsics without ``camera_model``), see :func:`detect_json_format`;
* per-frame camera keys override the top-level ones; ``fl_x``/``fl_y`` fall back to ``camera_angle_x``/``_y``
  (and ``fl_y`` to ``fl_x``), ``w``/``h`` to the frame image's size, ``cx``/``cy`` to the image centre;
  ``camera_model`` absent -> OPENCV_FISHEYE when instant-ngp's ``is_fisheye`` is true, else OPENCV when any of
  ``k1 k2 k3 p1 p2`` is given, else PINHOLE;
* every path must stay inside the json's folder (no absolute paths elsewhere, no ``..`` escape);
* a frame whose image is missing is an error for nerfstudio files and is skipped with a warning for
  instant-ngp files (instant-ngp's own fox sample lists 67 frames for 50 images).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import DatasetError
from ..core.geometry import Intrinsics
from .dataset import Dataset, Frame

CAMERA_KEYS = ("w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model")
"""Camera keys nerfstudio reads, top-level or per frame, in the order they are written."""
_CAMERA_INPUT_KEYS = (*CAMERA_KEYS, "camera_angle_x", "camera_angle_y", "is_fisheye")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_MODEL_ALIASES = {
    "PINHOLE": "PINHOLE",
    "SIMPLE_PINHOLE": "PINHOLE",
    "OPENCV": "OPENCV",
    "SIMPLE_RADIAL": "OPENCV",
    "RADIAL": "OPENCV",
    "OPENCV_FISHEYE": "OPENCV_FISHEYE",
}
JsonFormat = Literal["nerfstudio", "instant-ngp"]


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
    models = {c.model for c in cameras}
    if not shared and len(models) == 1:  # nerfstudio reads camera_model only at the top level
        out["camera_model"] = models.pop()
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


# ----------------------------------------------------------------------------------------------- reading helpers


def load_json(path: Path) -> Any:
    """Parse a JSON file; :class:`DatasetError` naming the file (and line) when it is unreadable or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def resolve_inside(root: Path, value: Any, source: Path, what: str) -> Path:
    """Absolute path of ``value`` (relative to ``root`` or absolute), refused when it escapes ``root``."""
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{source}: {what} must be a non-empty path string, got {value!r}")
    root_abs = os.path.abspath(root)
    full = os.path.normpath(os.path.join(root_abs, value))
    if os.path.commonpath([root_abs, full]) != root_abs:
        raise DatasetError(
            f"{source}: {what} {value!r} points outside the dataset folder {root_abs}; "
            "paths must be relative and stay inside it (no '..', no absolute paths elsewhere)"
        )
    return Path(full)


def parse_matrix(value: Any, source: Path, index: int) -> np.ndarray:
    """[4, 4] float64 ``transform_matrix`` of frame ``index``; refuses other shapes and non-finite values."""
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape != (4, 4):
        raise DatasetError(f"{source}: frame {index}: transform_matrix must be 4x4 numbers, got {value!r:.80}")
    if not np.all(np.isfinite(matrix)):
        raise DatasetError(f"{source}: frame {index}: transform_matrix has non-finite values (NaN/inf)")
    check_rigid(matrix, f"{source}: frame {index}: transform_matrix")
    return matrix


POSE_ROTATION_TOLERANCE = 1e-3
"""Largest |R R^T - I| entry (and |det R - 1|, bottom-row error) accepted in a dataset's camera-to-world matrix:
loose enough for poses stored as float32 or with 6 decimals, tight enough to refuse a scaled or sheared matrix."""


def check_rigid(matrix: np.ndarray, where: str) -> None:
    """DatasetError (``where`` leads the message) unless ``matrix`` [4, 4] is a rotation + translation with the
    bottom row 0 0 0 1, within ``POSE_ROTATION_TOLERANCE``."""
    rotation = matrix[:3, :3]
    error = float(np.abs(rotation @ rotation.T - np.eye(3)).max())
    det = float(np.linalg.det(rotation))
    bottom = float(np.abs(matrix[3] - np.array([0.0, 0.0, 0.0, 1.0])).max())
    if error > POSE_ROTATION_TOLERANCE or abs(det - 1.0) > POSE_ROTATION_TOLERANCE or bottom > POSE_ROTATION_TOLERANCE:
        raise DatasetError(f"{where} is not a rotation + translation (|R R^T - I| = {error:.3g}, det R = {det:.3g}, "
                           f"bottom row {matrix[3].tolist()}); expected an orthonormal camera-to-world matrix")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, reading only its header."""
    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: cannot read the image size ({exc})") from None


def require(entry: dict, key: str, source: Path, where: str) -> Any:
    """``entry[key]``, or :class:`DatasetError` naming the file, place and missing key."""
    if key not in entry:
        raise DatasetError(f"{source}: {where}: missing key {key!r}")
    return entry[key]


def _number(keys: dict, key: str, source: Path, where: str) -> float:
    value = keys[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise DatasetError(f"{source}: {where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _focal(keys: dict, axis: str, size: int, source: Path, where: str) -> float | None:
    """fl_x / fl_y, else from camera_angle_x / _y (0.5 * size / tan(0.5 * angle)); None when neither is given."""
    if f"fl_{axis}" in keys:
        return _number(keys, f"fl_{axis}", source, where)
    if f"camera_angle_{axis}" in keys:
        angle = _number(keys, f"camera_angle_{axis}", source, where)
        if not 0.0 < angle < np.pi:
            raise DatasetError(f"{source}: {where}: camera_angle_{axis} must be in (0, pi) radians, got {angle}")
        return 0.5 * size / float(np.tan(0.5 * angle))
    return None


def _camera_model(keys: dict, source: Path, where: str) -> str:
    if "camera_model" not in keys:
        if keys.get("is_fisheye") is True:  # instant-ngp's colmap2nerf.py flag for OPENCV_FISHEYE
            return "OPENCV_FISHEYE"
        return "OPENCV" if any(k in keys for k in ("k1", "k2", "k3", "p1", "p2")) else "PINHOLE"
    name = keys["camera_model"]
    if name not in _MODEL_ALIASES:
        raise DatasetError(
            f"{source}: {where}: camera_model {name!r} is not supported; expected one of {sorted(_MODEL_ALIASES)}"
        )
    return _MODEL_ALIASES[name]


def intrinsics_from_keys(keys: dict, source: Path, where: str, image: Path | None) -> Intrinsics:
    """One camera from nerfstudio / instant-ngp keys (fallbacks in the module docstring)."""
    if "w" in keys and "h" in keys:
        width, height = int(_number(keys, "w", source, where)), int(_number(keys, "h", source, where))
    elif image is not None:
        width, height = image_size(image)
    else:
        raise DatasetError(f"{source}: {where}: missing key 'w' (and 'h') and no image to read the size from")
    if width <= 0 or height <= 0:
        raise DatasetError(f"{source}: {where}: image size must be positive, got w={width} h={height}")
    fx = _focal(keys, "x", width, source, where)
    if fx is None:
        raise DatasetError(f"{source}: {where}: missing key 'fl_x' (or 'camera_angle_x')")
    fy = _focal(keys, "y", height, source, where)
    fy = fx if fy is None else fy
    if not (fx > 0 and fy > 0):
        raise DatasetError(f"{source}: {where}: focal length must be positive, got fl_x={fx} fl_y={fy}")
    cx = _number(keys, "cx", source, where) if "cx" in keys else width / 2.0
    cy = _number(keys, "cy", source, where) if "cy" in keys else height / 2.0
    dist = {k: _number(keys, k, source, where) for k in _DISTORTION_KEYS if k in keys}
    model = _camera_model(keys, source, where)
    return Intrinsics(fx, fy, cx, cy, width, height, model, **dist)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------- reading


def detect_json_format(meta: dict) -> JsonFormat:
    """"nerfstudio" when ``camera_model`` (top level or first frame) or ``applied_transform`` is present,
    else "instant-ngp" (whose files never carry ``camera_model``)."""
    frames = meta.get("frames")
    first = frames[0] if isinstance(frames, list) and frames and isinstance(frames[0], dict) else {}
    if "camera_model" in meta or "applied_transform" in meta or "camera_model" in first:
        return "nerfstudio"
    return "instant-ngp"


def frame_list(meta: Any, source: Path) -> list:
    """The ``frames`` list of a transforms file (DatasetError when the file is not an object with one)."""
    if not isinstance(meta, dict):
        raise DatasetError(f"{source}: expected a JSON object with a 'frames' list, got {type(meta).__name__}")
    frames = require(meta, "frames", source, "top level")
    if not isinstance(frames, list):
        raise DatasetError(f"{source}: 'frames' must be a list, got {type(frames).__name__}")
    return frames


def _optional_path(entry: dict, key: str, root: Path, source: Path, where: str) -> Path | None:
    if key not in entry:
        return None
    path = resolve_inside(root, entry[key], source, f"{where} {key}")
    if not path.is_file():
        raise DatasetError(f"{source}: {where}: {key} {entry[key]!r} does not exist")
    return path


def parse_frame(entry: Any, index: int, top: dict, root: Path, source: Path, image: Path) -> Frame:
    """One frame entry (its image path already resolved) with top-level camera keys ``top`` as defaults."""
    where = f"frame {index}"
    matrix = parse_matrix(require(entry, "transform_matrix", source, where), source, index)
    keys = {**top, **{k: entry[k] for k in _CAMERA_INPUT_KEYS if k in entry}}
    colmap_id = entry.get("colmap_im_id")
    return Frame(
        image_path=image,
        world_from_cam=matrix,
        intrinsics=intrinsics_from_keys(keys, source, where, image),
        mask_path=_optional_path(entry, "mask_path", root, source, where),
        depth_path=_optional_path(entry, "depth_file_path", root, source, where),
        colmap_im_id=int(colmap_id) if isinstance(colmap_id, int | float) else None,
    )


def _frame_image(entry: Any, index: int, root: Path, source: Path) -> Path:
    if not isinstance(entry, dict):
        raise DatasetError(f"{source}: frame {index} must be an object, got {type(entry).__name__}")
    return resolve_inside(root, require(entry, "file_path", source, f"frame {index}"), source, "file_path")


def _parse_frames(meta: dict, source: Path, skip_missing: bool) -> tuple[list[Frame], list[str]]:
    """Frames in file order and the file_paths skipped because their image is missing."""
    root = source.parent
    top = {k: meta[k] for k in _CAMERA_INPUT_KEYS if k in meta}
    frames: list[Frame] = []
    missing: list[str] = []
    for index, entry in enumerate(frame_list(meta, source)):
        image = _frame_image(entry, index, root, source)
        if not image.is_file():
            if not skip_missing:
                raise DatasetError(f"{source}: frame {index}: image {entry['file_path']!r} does not exist")
            missing.append(str(entry["file_path"]))
            continue
        frames.append(parse_frame(entry, index, top, root, source, image))
    return frames, missing


def _splits(meta: dict, frames: list[Frame], source: Path) -> dict[str, list[int]]:
    """nerfstudio ``{split}_filenames`` lists -> frame indices per split."""
    index_of = {f.image_path: i for i, f in enumerate(frames)}
    splits: dict[str, list[int]] = {}
    for name in ("train", "val", "test"):
        key = f"{name}_filenames"
        if key not in meta:
            continue
        paths = [resolve_inside(source.parent, p, source, key) for p in meta[key]]
        unknown = [str(p) for p in paths if p not in index_of]
        if unknown:
            raise DatasetError(f"{source}: {key} lists {unknown[0]} which is not a loaded frame")
        splits[name] = [index_of[p] for p in paths]
    return splits


def _applied_transform(meta: dict, source: Path) -> np.ndarray | None:
    if "applied_transform" not in meta:
        return None
    try:
        value = np.asarray(meta["applied_transform"], dtype=np.float64)
    except (TypeError, ValueError):
        value = np.zeros(0)
    if value.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(value)):
        raise DatasetError(f"{source}: applied_transform must be a finite 3x4 matrix, got shape {value.shape}")
    return value[:3]


def read_transforms(path: Path, format: JsonFormat | None = None) -> Dataset:
    """Read a nerfstudio or instant-ngp ``transforms.json`` (``format`` None: :func:`detect_json_format`)."""
    path = Path(path)
    meta = load_json(path)
    frame_list(meta, path)
    fmt = format or detect_json_format(meta)
    frames, missing = _parse_frames(meta, path, skip_missing=fmt == "instant-ngp")
    dataset = Dataset(root=Path(os.path.abspath(path.parent)), frames=frames, format=fmt)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        dataset.warnings.append(
            f"{path}: skipped {len(missing)} of {len(missing) + len(frames)} frames whose image is missing ({shown})"
        )
    if not frames:
        raise DatasetError(f"{path}: no usable frames (listed {len(missing)}, all images missing or none listed)")
    dataset.splits = _splits(meta, frames, path)
    dataset.applied_transform = _applied_transform(meta, path)
    if "ply_file_path" in meta:
        ply = resolve_inside(path.parent, meta["ply_file_path"], path, "ply_file_path")
        if ply.is_file():
            dataset.ply_path = ply
        else:
            dataset.warnings.append(f"{path}: ply_file_path {meta['ply_file_path']!r} does not exist; ignored")
    if isinstance(meta.get("aabb_scale"), int | float):
        dataset.aabb_scale = float(meta["aabb_scale"])
    return dataset
