"""Keyframe paths: Kochanek-Bartels (tension 0 = Catmull-Rom) splines through keyframe poses and fovs.

The evaluation follows nerfstudio's viewer (``render_panel.py``) so that our ``camera_path.json`` frames match
what its viewer would export for the same keyframes: ``splines.KochanekBartels`` on positions and fov
(``tcb=(tension, 0, 0)``, ``natural`` ends or ``closed`` for a cycle), ``splines.quaternion.KochanekBartels`` on
the camera rotations (OpenCV camera axes, as viser's ``wxyz``), and a monotone PCHIP map from seconds to spline
parameter built from the per-transition durations. The path has ``int(fps * duration)`` frames at times
``duration * i / frames`` (the last keyframe itself is not a frame, as in nerfstudio); a speed ramp warps i / frames.

Checked against a camera_path.json exported by nerfstudio's viewer (5 keyframes, cycle, 150 frames): the same
keyframes give the same frames to 4e-16. Note the viewer's quirk: it splines with tension 0.5
(``NERFSTUDIO_VIEWER_TENSION``) until its "Spline tension" slider is moved, yet writes ``smoothness_value`` 0.0;
re-splining a viewer file's keyframes therefore needs ``tension=NERFSTUDIO_VIEWER_TENSION`` to reproduce its frames
(rendering a camera_path.json uses its frames directly and is not affected).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import splines
import splines.quaternion
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation

from ...core.geometry import convert_camera_axes
from ...core.errors import ConfigError, InputError
from .base import CameraPath, CameraType, Keyframe, look_at
from .easing import Easing, ease

NERFSTUDIO_VIEWER_TENSION = 0.5
"""Tension nerfstudio's viewer uses while its slider is untouched (it then writes ``smoothness_value`` 0.0)."""


def transition_times(keyframes: list[Keyframe], default_transition_sec: float, is_cycle: bool) -> np.ndarray:
    """Cumulative seconds at each keyframe (plus the closing one of a cycle): [K] or [K + 1]."""
    def seconds(k: Keyframe) -> float:
        if k.override_transition_enabled and k.override_transition_sec is not None:
            return float(k.override_transition_sec)
        return float(default_transition_sec)

    steps = [seconds(k) for k in keyframes[1:]] + ([seconds(keyframes[0])] if is_cycle else [])
    if min(steps) <= 0:
        raise ConfigError(f"keyframe transition times {steps}: every transition must last > 0 seconds")
    return np.concatenate([[0.0], np.cumsum(steps)])


def spline_parameter(times: np.ndarray, cumulative: np.ndarray, is_cycle: bool) -> np.ndarray:
    """Seconds -> spline parameter (1 per keyframe), monotone PCHIP as nerfstudio's ``spline_t_from_t_sec``."""
    indices = np.arange(len(cumulative), dtype=np.float64)
    if is_cycle:
        x = np.concatenate([[-(cumulative[-1] - cumulative[-2])], cumulative, cumulative[-1:] + cumulative[1:2]])
        y = np.concatenate([[-1.0], indices, [indices[-1] + 1.0]])
    else:
        x, y = cumulative, indices
    return np.clip(PchipInterpolator(x, y)(times), 0.0, indices[-1])


class KeyframeSpline:
    """Pose and fov splines through keyframes, evaluated at a spline parameter (keyframe k at k)."""

    def __init__(self, keyframes: list[Keyframe], tension: float = 0.0, is_cycle: bool = False):
        if len(keyframes) < 2:
            raise ConfigError(f"a keyframe path needs at least 2 keyframes, got {len(keyframes)}")
        ends = "closed" if is_cycle else "natural"
        tcb = (float(tension), 0.0, 0.0)
        poses_cv = convert_camera_axes(np.stack([k.world_from_cam for k in keyframes]))  # [K, 4, 4]
        quats = Rotation.from_matrix(poses_cv[:, :3, :3]).as_quat()  # [K, 4] xyzw
        self.rotations = splines.quaternion.KochanekBartels(
            [splines.quaternion.UnitQuaternion.from_unit_xyzw(q) for q in quats], tcb=tcb, endconditions=ends
        )
        self.positions = splines.KochanekBartels(list(poses_cv[:, :3, 3]), tcb=tcb, endconditions=ends)
        self.fovs = splines.KochanekBartels([np.radians(k.fov_deg) for k in keyframes], tcb=tcb, endconditions=ends)

    def evaluate(self, spline_t: float) -> tuple[np.ndarray, float]:
        """(world_from_cam [4, 4] OpenGL axes, fov degrees) at spline parameter ``spline_t``."""
        quat = self.rotations.evaluate(float(spline_t))
        pose_cv = np.eye(4)
        pose_cv[:3, :3] = Rotation.from_quat([*quat.vector, quat.scalar]).as_matrix()
        pose_cv[:3, 3] = self.positions.evaluate(float(spline_t))
        return convert_camera_axes(pose_cv), float(np.rad2deg(self.fovs.evaluate(float(spline_t))))


def keyframe_path(
    keyframes: list[Keyframe],
    width: int = 1920,
    height: int = 1080,
    fps: float = 30.0,
    default_transition_sec: float = 2.0,
    is_cycle: bool = False,
    tension: float = 0.0,
    camera_type: CameraType = "perspective",
    easing: Easing = "linear",
    default_fov_deg: float | None = None,
) -> CameraPath:
    """Frames along the keyframe spline, timed by the keyframes' transitions (see the module docstring)."""
    spline = KeyframeSpline(keyframes, tension, is_cycle)
    cumulative = transition_times(keyframes, default_transition_sec, is_cycle)
    duration = float(cumulative[-1])
    frames = int(fps * duration)
    if frames < 1:
        raise ConfigError(f"keyframe path of {duration} s at fps={fps} has no frames; lengthen the transitions")
    times = duration * ease(np.arange(frames) / frames, easing)
    poses, fovs = zip(*(spline.evaluate(t) for t in spline_parameter(times, cumulative, is_cycle)), strict=True)
    return CameraPath(
        np.stack(poses), np.array(fovs), int(width), int(height), fps, camera_type, seconds=duration,
        keyframes=list(keyframes), default_fov_deg=keyframes[0].fov_deg if default_fov_deg is None else default_fov_deg,
        default_transition_sec=default_transition_sec, is_cycle=is_cycle, smoothness=tension,
    )


def read_keyframes(path: Path, default_fov_deg: float = 50.0, aspect: float = 16.0 / 9.0) -> list[Keyframe]:
    """Keyframes from a JSON file: a list of ``{"matrix" | "camera_to_world": 16 numbers row-major or a 4x4
    nested list (OpenGL camera-to-world, normalised frame) | "position" + "look_at" [+ "up"], "fov": degrees
    (optional), "transition_sec": seconds into this keyframe (optional)}``, or a camera_path.json's
    ``{"keyframes": [...]}``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON keyframe file ({exc})") from exc
    items = doc.get("keyframes") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or len(items) < 2:
        raise InputError(f"{path}: expected a JSON list of at least 2 keyframes (or an object with 'keyframes')")
    return [_keyframe(item, path, i, default_fov_deg, aspect) for i, item in enumerate(items)]


def _keyframe(item, path: Path, index: int, default_fov: float, aspect: float) -> Keyframe:
    where = f"{path}: keyframes[{index}]"
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object with 'matrix' or 'position'/'look_at'")
    if "position" in item:
        if "look_at" not in item:
            raise InputError(f"{where}: 'position' needs a 'look_at' point")
        pose = look_at(item["position"], item["look_at"], item.get("up", (0.0, 0.0, 1.0)))
    else:
        raw = item.get("matrix", item.get("camera_to_world"))
        pose = np.asarray(raw if raw is not None else [], dtype=np.float64)
        if pose.size != 16:
            raise InputError(f"{where}: 'matrix' must hold 16 numbers (4x4 camera-to-world), got {pose.size}")
        pose = pose.reshape(4, 4)
    fov = float(item.get("fov", default_fov))
    if not np.isfinite(pose).all() or not 0 < fov < 180:
        raise InputError(f"{where}: pose must be finite and fov in (0, 180) degrees, got fov={fov}")
    transition = item.get("transition_sec", item.get("override_transition_sec"))
    return Keyframe(pose, fov, float(item.get("aspect", aspect)), transition is not None,
                    None if transition is None else float(transition))
