"""Orbit: the camera circles a point at a fixed radius and height, looking at a target."""

from __future__ import annotations

import numpy as np

from ...core.errors import ConfigError
from .base import CameraPath, PathSettings, look_at, perpendicular_basis
from .easing import frame_parameters


def orbit_path(
    settings: PathSettings,
    center=(0.0, 0.0, 0.0),
    radius: float = 1.0,
    height: float = 0.0,
    turns: float = 1.0,
    up=(0.0, 0.0, 1.0),
    target=None,
    start_deg: float = 0.0,
) -> CameraPath:
    """Circle of ``radius`` around ``center`` (normalised scene frame), ``height`` above it along ``up``.

    The camera looks at ``target`` (default: ``center``). ``turns`` full revolutions, counter-clockwise seen from
    above, starting at angle ``start_deg`` in the plane perpendicular to ``up``. A whole number of turns loops
    seamlessly (the last frame stops one step short of the first); the speed ramp of ``settings`` applies.
    """
    if not radius > 0 or not np.isfinite([radius, height, turns]).all():
        raise ConfigError(f"orbit radius={radius}, height={height}, turns={turns}: expected finite values, radius > 0")
    frames = settings.num_frames()
    closed = float(turns).is_integer() and turns != 0
    angles = np.radians(start_deg) + 2.0 * np.pi * turns * frame_parameters(frames, settings.easing, closed)
    center = np.asarray(center, dtype=np.float64)
    target = center if target is None else np.asarray(target, dtype=np.float64)
    a, b, up_unit = perpendicular_basis(up)
    poses = [
        look_at(center + radius * (np.cos(t) * a + np.sin(t) * b) + height * up_unit, target, up_unit) for t in angles
    ]
    return _analytic_path(settings, poses)


def _analytic_path(settings: PathSettings, poses: list[np.ndarray], fovs=None) -> CameraPath:
    """A CameraPath of analytic poses (no keyframes), sized and timed by ``settings``."""
    fovs = settings.fov_deg if fovs is None else fovs
    return CameraPath(
        np.stack(poses), fovs, settings.width, settings.height, settings.fps, settings.camera_type,
        seconds=settings.seconds, default_fov_deg=settings.fov_deg,
    )
