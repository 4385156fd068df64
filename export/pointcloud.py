"""Coloured point clouds from rendered depth maps: back-projection, outlier removal, a point budget, PLY.

Input: views, each an RGB image, a depth map, an optional accumulation (opacity) map, a camera-to-world matrix
with OpenGL axes and the camera's ``Intrinsics`` (``nerfstage.core.geometry``). Depth is the distance along the
unit ray (``kind="ray"``, what ``NerfModel.render_image`` returns) or along the optical axis (``kind="z"``).
Pixel rays go through pixel centres in OpenCV axes (``convert_camera_axes`` is the one axis conversion); OPENCV
and OPENCV_FISHEYE distortion is undone with OpenCV.

Steps of :func:`point_cloud_from_views`:
1. keep pixels with finite positive depth and accumulation >= ``min_accumulation`` (background and half-
   transparent pixels carry no reliable depth);
2. when more than ``2 * num_points`` points remain, draw ``2 * num_points`` of them at random (seeded) so the
   neighbour search below stays bounded;
3. statistical outlier removal (as PCL/Open3D): the mean distance of each point to its ``neighbors`` nearest
   neighbours (scipy cKDTree); points whose mean exceeds the mean over all points by more than ``std_ratio``
   standard deviations are dropped;
4. at most ``num_points`` remain (seeded subsample).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from ..core.cameras import camera_from_intrinsics
from ..core.errors import ConfigError, InputError
from ..core.geometry import Intrinsics, convert_camera_axes
from ..core.rays import pixel_centers
from .gltf import check_mesh_path, write_files_atomic


@dataclass
class DepthView:
    """One rendered (or measured) view to lift into points."""

    rgb: np.ndarray
    """[H, W, 3] colours: uint8, or float in [0, 1]."""
    depth: np.ndarray
    """[H, W] depth (see ``PointCloudOptions.depth_kind``); non-finite or <= 0 = no depth."""
    world_from_cam: np.ndarray
    """[4, 4] camera-to-world, OpenGL camera axes."""
    intrinsics: Intrinsics
    """The camera that saw this view (its width/height must match the maps)."""
    accumulation: np.ndarray | None = None
    """[H, W] opacity in [0, 1] from volume rendering; None = every pixel opaque."""


@dataclass(frozen=True)
class PointCloudOptions:
    """How to turn views into a point cloud."""

    num_points: int = 1_000_000
    """Most points kept."""
    depth_kind: Literal["ray", "z"] = "ray"
    """Depth along the unit ray ("ray", the renderer's convention) or along the optical axis ("z")."""
    min_accumulation: float = 0.5
    """Pixels with a lower accumulated opacity are skipped."""
    neighbors: int = 16
    """Neighbours per point in the statistical outlier test (0 = no outlier removal)."""
    std_ratio: float = 2.0
    """Points whose mean neighbour distance is this many standard deviations above the mean are outliers."""
    seed: int = 0
    """Seed of the random subsampling."""


def pixel_rays(intrinsics: Intrinsics) -> np.ndarray:
    """[H*W, 3] float64 camera-space (OpenCV axes) directions with unit z through every pixel centre, row by row:
    the rays of the foundation's camera model (``core.cameras``), as training and rendering use."""
    camera = camera_from_intrinsics(intrinsics)
    directions, _ = camera.unproject(pixel_centers(camera, None, torch.float64))  # [H*W, 3] unit
    return (directions / directions[:, 2:]).numpy()


def _rgb_float(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    return rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else np.clip(rgb.astype(np.float32), 0.0, 1.0)


def back_project(view: DepthView, options: PointCloudOptions) -> tuple[np.ndarray, np.ndarray]:
    """World points [n, 3] and float colours [n, 3] of the view's usable pixels (step 1)."""
    cam = view.intrinsics
    shape = (cam.height, cam.width)
    depth = np.asarray(view.depth, dtype=np.float64)
    if depth.shape != shape or np.asarray(view.rgb).shape[:2] != shape:
        raise ConfigError(f"depth {depth.shape} / rgb {np.asarray(view.rgb).shape} do not match the camera {shape}")
    keep = np.isfinite(depth) & (depth > 0)
    if view.accumulation is not None:
        keep &= np.asarray(view.accumulation).reshape(shape) >= options.min_accumulation
    rays = pixel_rays(cam)[keep.ravel()]  # [n, 3] unit z
    scale = depth[keep] if options.depth_kind == "z" else depth[keep] / np.linalg.norm(rays, axis=1)
    cv_world_from_cam = convert_camera_axes(np.asarray(view.world_from_cam, dtype=np.float64))
    points = (rays * scale[:, None]) @ cv_world_from_cam[:3, :3].T + cv_world_from_cam[:3, 3]
    return points, _rgb_float(view.rgb)[keep]


def statistical_outliers(points: np.ndarray, neighbors: int, std_ratio: float) -> np.ndarray:
    """[n] bool, True for points whose mean distance to their ``neighbors`` nearest neighbours is more than
    ``std_ratio`` standard deviations above the mean of that distance over all points."""
    if neighbors <= 0 or len(points) <= neighbors:
        return np.zeros(len(points), dtype=bool)
    distances, _ = cKDTree(points).query(points, k=neighbors + 1)  # [n, k+1]; column 0 is the point itself
    mean = distances[:, 1:].mean(axis=1)
    return mean > mean.mean() + std_ratio * mean.std()


def point_cloud_from_views(
    views: list[DepthView], options: PointCloudOptions | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Points [n, 3] (world frame of the poses) and float RGB [n, 3] of ``views``, cleaned and within budget."""
    options = options or PointCloudOptions()
    if options.num_points < 1:
        raise ConfigError(f"num_points {options.num_points}: expected at least 1")
    parts = [back_project(view, options) for view in views]
    points = np.concatenate([p for p, _ in parts]) if parts else np.zeros((0, 3))
    colors = np.concatenate([c for _, c in parts]) if parts else np.zeros((0, 3), np.float32)
    if len(points) == 0:
        raise ConfigError(
            f"no pixel of {len(views)} views has depth and accumulation >= {options.min_accumulation}; "
            "lower min_accumulation or check the views"
        )
    rng = np.random.default_rng(options.seed)
    if len(points) > 2 * options.num_points:
        pick = np.sort(rng.choice(len(points), 2 * options.num_points, replace=False))
        points, colors = points[pick], colors[pick]
    inliers = ~statistical_outliers(points, options.neighbors, options.std_ratio)
    points, colors = points[inliers], colors[inliers]
    if len(points) > options.num_points:
        pick = np.sort(rng.choice(len(points), options.num_points, replace=False))
        points, colors = points[pick], colors[pick]
    return points, colors


def write_point_cloud(
    points: np.ndarray, colors: np.ndarray, path: Path, scale: float = 1.0, overwrite: bool = False
) -> Path:
    """Write points [n, 3] with float RGB [n, 3] in [0, 1] as a binary PLY (scene axes, Z-up, coordinates times
    ``scale``), atomically."""
    path = Path(path)
    if check_mesh_path(path, overwrite) != ".ply":
        raise InputError(f"{path}: point clouds are written as .ply; got '{path.suffix}'")
    if len(points) == 0:
        raise InputError(f"{path}: the point cloud is empty; nothing to write")
    rgba = np.concatenate([np.round(np.clip(colors, 0, 1) * 255.0), np.full((len(points), 1), 255.0)], axis=1)
    cloud = trimesh.PointCloud(np.asarray(points, dtype=np.float64) * scale, colors=rgba.astype(np.uint8))
    write_files_atomic({path: cloud.export(file_type="ply")}, overwrite)
    return path
