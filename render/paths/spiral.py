"""Spiral: a helix around a point whose radius and height change linearly (eased) along the path."""

from __future__ import annotations

import numpy as np

from ...core.errors import ConfigError
from .base import CameraPath, PathSettings, look_at, perpendicular_basis
from .easing import frame_parameters
from .orbit import _analytic_path


def spiral_path(
    settings: PathSettings,
    center=(0.0, 0.0, 0.0),
    radius_start: float = 1.0,
    radius_end: float = 0.5,
    height_start: float = 0.0,
    height_end: float = 0.5,
    turns: float = 2.0,
    up=(0.0, 0.0, 1.0),
    target=None,
    start_deg: float = 0.0,
) -> CameraPath:
    """Helix around ``center``: at path parameter s in [0, 1] the camera is at angle ``start + 2 pi turns s``,
    radius ``lerp(radius_start, radius_end, s)`` and height ``lerp(height_start, height_end, s)`` along ``up``,
    looking at ``target`` (default: ``center``). First and last frames are the ends of the spiral."""
    values = [radius_start, radius_end, height_start, height_end, turns]
    if not np.isfinite(values).all() or min(radius_start, radius_end) <= 0:
        raise ConfigError(f"spiral radii {radius_start}, {radius_end}: expected finite positive values")
    s = frame_parameters(settings.num_frames(), settings.easing, closed=False)
    angles = np.radians(start_deg) + 2.0 * np.pi * turns * s
    radii = radius_start + (radius_end - radius_start) * s
    heights = height_start + (height_end - height_start) * s
    center = np.asarray(center, dtype=np.float64)
    target = center if target is None else np.asarray(target, dtype=np.float64)
    a, b, up_unit = perpendicular_basis(up)
    poses = [
        look_at(center + r * (np.cos(t) * a + np.sin(t) * b) + h * up_unit, target, up_unit)
        for t, r, h in zip(angles, radii, heights, strict=True)
    ]
    return _analytic_path(settings, poses)
