"""The one typed structure every dataset format is read into.

``Frame.world_from_cam`` is a camera-to-world 4x4 matrix with **OpenGL camera axes** (x right, y up, z backward),
exactly as nerfstudio / instant-ngp / Blender files store it; the camera types (``Intrinsics``) and the one
OpenGL <-> OpenCV axis conversion (``convert_camera_axes``) are in the foundation, :mod:`nerfstage.core.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.geometry import Intrinsics

DatasetFormat = Literal["nerfstudio", "instant-ngp", "blender", "colmap"]


@dataclass
class Frame:
    """One posed image."""

    image_path: Path
    """Absolute path of the image (checked to lie inside the dataset folder)."""
    world_from_cam: np.ndarray
    """[4, 4] camera-to-world, OpenGL camera axes, in the dataset's own world frame."""
    intrinsics: Intrinsics
    """This frame's camera."""
    mask_path: Path | None = None
    """Optional mask image (nonzero = keep), as nerfstudio's ``mask_path``."""
    depth_path: Path | None = None
    """Optional depth image, as nerfstudio's ``depth_file_path``."""
    colmap_im_id: int | None = None
    """COLMAP image id this frame came from (nerfstudio's ``colmap_im_id``), when known."""


@dataclass
class Dataset:
    """Cameras and images of a capture, in one structure whatever file format they came from."""

    root: Path
    """The dataset folder; every image path lies inside it."""
    frames: list[Frame]
    """Posed frames, in file order (Blender: train, then val, then test)."""
    format: DatasetFormat
    """Which file format was read."""
    splits: dict[str, list[int]] = field(default_factory=dict)
    """Indices into ``frames`` per split name, when the format defines splits (Blender); else empty."""
    applied_transform: np.ndarray | None = None
    """[3, 4] nerfstudio ``applied_transform`` (COLMAP world -> this file's world), when present."""
    ply_path: Path | None = None
    """Sparse point cloud (nerfstudio ``ply_file_path``), when present."""
    aabb_scale: float | None = None
    """instant-ngp ``aabb_scale`` (scene extent hint), when present."""
    has_alpha: bool = False
    """True when images carry an alpha channel to composite over a background (Blender RGBA)."""
    warnings: list[str] = field(default_factory=list)
    """Non-fatal problems met while reading (e.g. frames skipped because their image is missing)."""

    def world_from_cams(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world matrices, OpenGL camera axes."""
        return np.stack([f.world_from_cam for f in self.frames]).astype(np.float64)

    def image_paths(self) -> list[Path]:
        """Image paths in frame order."""
        return [f.image_path for f in self.frames]
