"""Dolly zoom (the "Vertigo" shot): the camera travels along its optical axis while the field of view changes so
that the subject at the focus distance keeps its size on screen: ``tan(fov / 2) * distance`` stays constant.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import ConfigError
from .base import CameraPath, Keyframe, PathSettings
from .easing import frame_parameters


def dolly_zoom_path(
    settings: PathSettings,
    world_from_cam: np.ndarray,  # [4, 4] start pose, OpenGL camera axes, normalised frame
    focus_distance: float,
    fov_start_deg: float,
    fov_end_deg: float,
) -> CameraPath:
    """Frames from ``fov_start_deg`` to ``fov_end_deg`` (eased), the camera sliding along its viewing axis.

    The subject is the point ``focus_distance`` in front of the start pose; it stays at the same pixel size.
    A wider end fov moves the camera closer (the background stretches away), a narrower one pulls it back.
    """
    start = np.asarray(world_from_cam, dtype=np.float64).reshape(4, 4)
    fovs_ok = all(0.0 < f < 180.0 for f in (fov_start_deg, fov_end_deg))
    if not (fovs_ok and focus_distance > 0 and np.isfinite(start).all()):
        raise ConfigError(
            f"dolly zoom fov {fov_start_deg} -> {fov_end_deg} degrees, focus_distance={focus_distance}: "
            "expected fovs in (0, 180), a positive distance and a finite pose"
        )
    forward = -start[:3, 2] / np.linalg.norm(start[:3, 2])
    subject = start[:3, 3] + focus_distance * forward
    frame_size = np.tan(np.radians(fov_start_deg) / 2.0) * focus_distance  # half-height at the subject, constant
    s = frame_parameters(settings.num_frames(), settings.easing)
    fovs = fov_start_deg + (fov_end_deg - fov_start_deg) * s
    poses = np.repeat(start[None], len(fovs), axis=0)
    distances = frame_size / np.tan(np.radians(fovs) / 2.0)
    poses[:, :3, 3] = subject - distances[:, None] * forward
    aspect = settings.width / settings.height
    keyframes = [Keyframe(poses[0], float(fovs[0]), aspect), Keyframe(poses[-1], float(fovs[-1]), aspect)]
    return CameraPath(
        poses, fovs, settings.width, settings.height, settings.fps, settings.camera_type, seconds=settings.seconds,
        keyframes=keyframes, default_fov_deg=fov_start_deg, default_transition_sec=settings.seconds,
    )


def subject_distance(path: CameraPath, subject) -> np.ndarray:  # [F]
    """Distance along each frame's viewing axis to ``subject`` [3] (for checks and focus pulls)."""
    forward = -path.world_from_cams[:, :3, 2]
    return np.einsum("fi,fi->f", np.asarray(subject, dtype=np.float64) - path.world_from_cams[:, :3, 3], forward)
