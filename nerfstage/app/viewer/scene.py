"""What the viewer draws besides the field: training cameras (frustums with thumbnails), sparse points, scene box.

Everything is in the run's normalised scene frame (+z up), where camera paths live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...capture.dataset import Dataset
from ...capture.loader import as_dataset
from ...core.errors import InputError
from ...nerf.run import LoadedRun
from .views import viser_pose_of

MAX_FRUSTUMS = 300
"""Cameras drawn at most (evenly subsampled beyond that)."""
THUMBNAIL_HEIGHT = 64
"""Height in pixels of the images shown on the frustums."""
MAX_POINTS = 200_000
"""Sparse points drawn at most (evenly subsampled beyond that)."""


@dataclass
class SceneInfo:
    """The static content of the viewer's 3D scene."""

    world_from_cams: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    """[N, 4, 4] dataset cameras, OpenGL axes, normalised frame."""
    intrinsics: list = field(default_factory=list)
    """Intrinsics of each camera."""
    image_paths: list[Path] = field(default_factory=list)
    """Image of each camera."""
    train_indices: list[int] = field(default_factory=list)
    """Training cameras (the others were held out)."""
    aabb: np.ndarray | None = None
    """[2, 3] scene box (min, max corners) of the field."""
    points: np.ndarray | None = None
    """[P, 3] sparse points, normalised frame (None when the dataset has none)."""
    colors: np.ndarray | None = None
    """[P, 3] uint8 colours of ``points``."""


def read_points(dataset: Dataset | Path | None, scene) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The sparse point cloud (``ply_file_path``) of ``dataset`` (a Dataset or its path) mapped into the
    normalised frame, or (None, None) when there is none or the dataset cannot be read."""
    try:
        ply = as_dataset(dataset).ply_path if dataset is not None else None
    except InputError:
        return None, None
    if ply is None or not Path(ply).is_file():
        return None, None
    import trimesh  # heavy: trimesh takes ~1 s to import (only when meshes or point clouds are read or written)

    cloud = trimesh.load(ply)
    points = np.asarray(cloud.vertices, dtype=np.float64)  # [P, 3] dataset frame
    colors = getattr(getattr(cloud, "visual", None), "vertex_colors", None)
    colors = np.asarray(colors)[:, :3].astype(np.uint8) if colors is not None and len(colors) == len(points) \
        else np.full((len(points), 3), 200, np.uint8)
    mapped = scene.scale * (points @ scene.transform[:, :3].T + scene.transform[:, 3])  # [P, 3]
    keep = slice(None, None, max(1, math.ceil(len(mapped) / MAX_POINTS)))
    return mapped[keep], colors[keep]


def scene_of_run(loaded: LoadedRun) -> SceneInfo:
    """SceneInfo of a LoadedRun -- loaded from a folder, or a running trainer's ``as_run()`` -- (cameras as
    loaded, training views refined; the model's box; the dataset's points)."""
    points, colors = read_points(loaded.dataset if loaded.dataset is not None else loaded.dataset_path, loaded.scene)
    return SceneInfo(loaded.world_from_cams, loaded.intrinsics, loaded.image_paths, loaded.train_indices,
                     model_aabb(loaded.model), points, colors)


def model_aabb(model) -> np.ndarray | None:
    """[2, 3] the field's scene box, when the model has one."""
    aabb = getattr(getattr(model, "field", None), "aabb", None)
    return None if aabb is None else aabb.detach().cpu().numpy().reshape(2, 3).astype(np.float64)


def thumbnail(path: Path, height: int = THUMBNAIL_HEIGHT) -> np.ndarray | None:
    """RGB uint8 [h, w, 3] image of ``path`` downscaled to ``height`` rows, transparent pixels over white (as
    the field is trained); None when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    height = min(height, image.shape[0])
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    if small.dtype != np.uint8:
        small = (small / 257.0).astype(np.uint8)  # 16-bit images
    if small.shape[2] == 4:
        alpha = small[:, :, 3:].astype(np.float32) / 255.0  # [h, w, 1]
        small = np.round(small[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def camera_scale(info: SceneInfo) -> float:
    """Frustum size: 6 % of the median camera distance to the cameras' centroid (0.05 without cameras)."""
    if len(info.world_from_cams) < 2:
        return 0.05
    centres = info.world_from_cams[:, :3, 3]
    spread = float(np.median(np.linalg.norm(centres - centres.mean(0), axis=-1)))
    return 0.06 * spread if spread > 0 else 0.05


def add_scene(server, info: SceneInfo):
    """Draw ``info`` into a viser server's scene (shared by every client): the training cameras (held-out views
    are not drawn), the sparse points and the scene box. Returns the frame holding the cameras (hide it to hide
    them all)."""
    scale = camera_scale(info)
    shown = list(info.train_indices) or list(range(len(info.world_from_cams)))
    cameras = server.scene.add_frame("/cameras", show_axes=False)
    for i in shown[:: max(1, math.ceil(len(shown) / MAX_FRUSTUMS))]:
        intr = info.intrinsics[i]
        wxyz, position = viser_pose_of(info.world_from_cams[i])
        image = thumbnail(info.image_paths[i]) if i < len(info.image_paths) else None
        server.scene.add_camera_frustum(
            f"/cameras/{i:05d}", fov=2.0 * math.atan(intr.height / (2.0 * intr.fy)), aspect=intr.width / intr.height,
            scale=scale, thickness=1.5, thickness_units="screen", image=image, wxyz=wxyz, position=position,
            color=(40, 90, 220))
    if info.points is not None and len(info.points):
        server.scene.add_point_cloud("/sparse_points", info.points.astype(np.float32), info.colors,
                                     point_size=0.02 * scale)
    if info.aabb is not None:
        low, high = info.aabb
        server.scene.add_box("/scene_box", color=(120, 120, 120), dimensions=tuple(high - low), wireframe=True,
                             position=tuple((low + high) / 2.0))
    return cameras
