"""Camera geometry every stage shares (numpy only, no torch): the ``Intrinsics`` of a dataset camera, the one
OpenGL <-> OpenCV camera-axis conversion, and optical-axis helpers.

Conventions
-----------
* ``world_from_cam`` is a camera-to-world 4x4 matrix with **OpenGL camera axes** (x right, y up, z backward),
  exactly as nerfstudio / instant-ngp / Blender files store it.
* Pixel math (projection, ray generation) uses **OpenCV camera axes** (x right, y down, z forward).
  :func:`convert_camera_axes` is the only place that converts between the two; it is its own inverse.
* The torch camera models built from ``Intrinsics`` (pixels <-> rays) are in :mod:`nerfstage.core.cameras`,
  world ray batches in :mod:`nerfstage.core.rays`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

CameraModel = Literal["PINHOLE", "OPENCV", "OPENCV_FISHEYE"]


def convert_camera_axes(world_from_cam: np.ndarray) -> np.ndarray:
    """Switch camera-to-world matrices between OpenGL and OpenCV camera axes (self-inverse).

    world_from_cam: [..., 4, 4] (or [..., 3, 4]); returns the same shape, with the camera's y and z axes negated.
    """
    out = np.array(world_from_cam, dtype=np.float64, copy=True)
    out[..., :3, 1:3] *= -1.0
    return out


def optical_axes(world_from_cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, 4, 4] camera-to-world (OpenGL axes) -> camera centres [N, 3] and unit viewing directions [N, 3]."""
    forward = -world_from_cams[:, :3, 2]  # OpenGL cameras look down -z
    return world_from_cams[:, :3, 3], forward / np.linalg.norm(forward, axis=1, keepdims=True)


def closest_point_to_lines(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares point [3] closest to the lines ``origins`` [N, 3] + t ``dirs`` [N, 3] (unit), and the
    eigenvalues [3] (ascending) of mean(I - d d^T): the smallest is 0 when the lines are parallel, the point is
    then not unique and the minimum-norm least-squares solution is returned."""
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [N, 3, 3] projectors orthogonal to each line
    normal = proj.sum(axis=0)  # [3, 3]
    rhs = (proj @ origins[:, :, None]).sum(axis=0)[:, 0]  # [3]
    point = np.linalg.lstsq(normal, rhs, rcond=1e-10)[0]
    return point, np.linalg.eigvalsh(normal / len(dirs))


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics plus distortion of one camera (pixels; principal point in pixel units, origin top-left
    corner of the top-left pixel, as nerfstudio and COLMAP use)."""

    fx: float
    """Focal length along x, pixels."""
    fy: float
    """Focal length along y, pixels."""
    cx: float
    """Principal point x, pixels."""
    cy: float
    """Principal point y, pixels."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    model: CameraModel = "PINHOLE"
    """Distortion model: PINHOLE (none), OPENCV (k1 k2 p1 p2 k3), OPENCV_FISHEYE (k1 k2 k3 k4)."""
    k1: float = 0.0
    """Radial distortion k1."""
    k2: float = 0.0
    """Radial distortion k2."""
    k3: float = 0.0
    """Radial distortion k3."""
    k4: float = 0.0
    """Radial distortion k4 (fisheye only)."""
    p1: float = 0.0
    """Tangential distortion p1 (OPENCV only)."""
    p2: float = 0.0
    """Tangential distortion p2 (OPENCV only)."""

    def matrix(self) -> np.ndarray:
        """The 3x3 calibration matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> Intrinsics:
        """Intrinsics of the same camera for images resized by ``factor`` (distortion is scale-free)."""
        return replace(
            self,
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=self.cx * factor,
            cy=self.cy * factor,
            width=int(round(self.width * factor)),
            height=int(round(self.height * factor)),
        )
