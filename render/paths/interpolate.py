"""Interpolate: a smooth path through given camera poses (e.g. the training cameras, in capture order)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ...core.errors import ConfigError
from .base import CameraPath, Keyframe, PathSettings
from .easing import frame_parameters
from .keyframes import KeyframeSpline


def interpolate_path(
    settings: PathSettings,
    world_from_cams: np.ndarray,  # [N, 4, 4] OpenGL camera axes, normalised frame, in path order
    fovs_deg: np.ndarray | None = None,  # [N] (default: settings.fov_deg)
    max_keyframes: int | None = None,
    smoothing: float = 0.0,
    tension: float = 0.0,
    order: Literal["given", "nearest"] = "given",
) -> CameraPath:
    """Spline through the poses (Catmull-Rom for ``tension`` 0), first to last pose over ``settings.seconds``.

    ``max_keyframes`` keeps that many evenly spaced poses (None: all). ``smoothing`` is the Gaussian sigma, in
    keyframes, applied to positions and viewing axes before splining (0: the path passes through every kept
    pose exactly; frame ``j * (F - 1) / (K - 1)`` is keyframe j when that is a whole number). ``order="nearest"``
    first chains the poses greedily by camera position from the first one (for captures in random order, e.g.
    Blender test views).
    """
    poses = np.asarray(world_from_cams, dtype=np.float64).reshape(-1, 4, 4)
    fovs = np.full(len(poses), settings.fov_deg) if fovs_deg is None else np.asarray(fovs_deg, dtype=np.float64)
    if len(poses) < 2 or len(fovs) != len(poses) or not np.isfinite(poses).all():
        raise ConfigError(f"interpolate needs >= 2 finite poses with one fov each, got {len(poses)} poses")
    if order == "nearest":
        chain = nearest_neighbour_order(poses[:, :3, 3])
        poses, fovs = poses[chain], fovs[chain]
    elif order != "given":
        raise ConfigError(f"order={order!r}: expected 'given' or 'nearest'")
    if max_keyframes is not None and len(poses) > max_keyframes:
        keep = np.unique(np.round(np.linspace(0, len(poses) - 1, max(int(max_keyframes), 2))).astype(int))
        poses, fovs = poses[keep], fovs[keep]
    if smoothing > 0:
        poses = smooth_poses(poses, smoothing)
    aspect = settings.width / settings.height
    keyframes = [Keyframe(pose, float(fov), aspect) for pose, fov in zip(poses, fovs, strict=True)]
    spline = KeyframeSpline(keyframes, tension)
    spline_t = frame_parameters(settings.num_frames(), settings.easing) * (len(keyframes) - 1)
    out_poses, out_fovs = zip(*(spline.evaluate(t) for t in spline_t), strict=True)
    return CameraPath(
        np.stack(out_poses), np.array(out_fovs), settings.width, settings.height, settings.fps,
        settings.camera_type, seconds=settings.seconds, keyframes=keyframes, default_fov_deg=settings.fov_deg,
        default_transition_sec=settings.seconds / (len(keyframes) - 1), smoothness=tension,
    )


def smooth_poses(poses: np.ndarray, sigma: float) -> np.ndarray:  # [N, 4, 4] -> [N, 4, 4]
    """Gaussian-smooth positions and the viewing (-z) and up (+y) axes along the sequence, re-orthonormalised."""
    out = poses.copy()
    out[:, :3, 3] = gaussian_filter1d(poses[:, :3, 3], sigma, axis=0, mode="nearest")
    back = gaussian_filter1d(poses[:, :3, 2], sigma, axis=0, mode="nearest")
    up = gaussian_filter1d(poses[:, :3, 1], sigma, axis=0, mode="nearest")
    back /= np.linalg.norm(back, axis=-1, keepdims=True)
    right = np.cross(up, back)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2] = right, np.cross(back, right), back
    return out


def nearest_neighbour_order(positions: np.ndarray) -> np.ndarray:  # [N, 3] -> [N] indices
    """Greedy chain: start at the first position, always step to the closest one not yet visited."""
    left = list(range(1, len(positions)))
    chain = [0]
    while left:
        distances = np.linalg.norm(positions[left] - positions[chain[-1]], axis=-1)
        chain.append(left.pop(int(np.argmin(distances))))
    return np.array(chain)
