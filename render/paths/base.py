"""The camera-path data structure every path builder returns and camera_path.json stores, plus pose helpers.

Poses are camera-to-world [4, 4] with **OpenGL camera axes** (x right, y up, z backward) in the run's
normalised scene frame, exactly as nerfstudio's ``camera_path.json`` stores ``camera_to_world``; the scene's up
axis there is +z (nerfstudio's dataparser orients scenes z-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ...core.errors import ConfigError
from .easing import Easing

CameraType = Literal["perspective", "fisheye", "equirectangular"]
CAMERA_TYPES: tuple[str, ...] = ("perspective", "fisheye", "equirectangular")


@dataclass
class Keyframe:
    """One keyframe of a spline path, with nerfstudio viewer's per-keyframe fields."""

    world_from_cam: np.ndarray
    """[4, 4] camera-to-world, OpenGL camera axes, normalised scene frame."""
    fov_deg: float
    """Vertical field of view at this keyframe, degrees (the path's default fov unless overridden)."""
    aspect: float = 16.0 / 9.0
    """Width / height the keyframe was set with (informational, as in nerfstudio)."""
    override_transition_enabled: bool = False
    """Use ``override_transition_sec`` for the transition that ends at this keyframe."""
    override_transition_sec: float | None = None
    """Seconds of the transition into this keyframe when overridden."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other keys of the keyframe in camera_path.json (``render_time``, ...), kept for a byte-stable rewrite."""


@dataclass(frozen=True)
class PathSettings:
    """Frame size, timing and lens shared by every path builder."""

    width: int = 1920
    """Output width, pixels."""
    height: int = 1080
    """Output height, pixels."""
    fps: float = 30.0
    """Frames per second."""
    seconds: float = 4.0
    """Duration; the path has round(fps * seconds) frames."""
    fov_deg: float = 50.0
    """Vertical field of view, degrees (ignored by equirectangular)."""
    camera_type: CameraType = "perspective"
    """Camera model written to camera_path.json."""
    easing: Easing = "linear"
    """Speed ramp applied to the path parameter (see ``easing.py``)."""

    def num_frames(self) -> int:
        frames = int(round(self.fps * self.seconds))
        if frames < 1 or self.width < 1 or self.height < 1:
            raise ConfigError(
                f"fps={self.fps}, seconds={self.seconds}, size={self.width}x{self.height}: need at least one frame "
                "of at least one pixel"
            )
        if self.camera_type not in CAMERA_TYPES:
            raise ConfigError(f"camera_type={self.camera_type!r}: expected one of {', '.join(CAMERA_TYPES)}")
        return frames


@dataclass
class CameraPath:
    """A rendered-camera trajectory: one pose and fov per output frame, plus how it was made."""

    world_from_cams: np.ndarray
    """[F, 4, 4] camera-to-world per frame, OpenGL camera axes, normalised scene frame."""
    fov_y_deg: np.ndarray
    """[F] vertical field of view per frame, degrees."""
    width: int
    """Output width, pixels (camera_path.json ``render_width``)."""
    height: int
    """Output height, pixels (``render_height``)."""
    fps: float
    """Frames per second (``fps``)."""
    camera_type: CameraType = "perspective"
    """Camera model of every frame (``camera_type``)."""
    seconds: float | None = None
    """Duration (``seconds``); None means frames / fps."""
    keyframes: list[Keyframe] = field(default_factory=list)
    """Keyframes the path was interpolated from (empty for analytic paths)."""
    default_fov_deg: float | None = None
    """Viewer default fov (``default_fov``); None means the first frame's fov."""
    default_transition_sec: float = 2.0
    """Seconds per keyframe transition unless overridden (``default_transition_sec``)."""
    is_cycle: bool = False
    """Whether the spline closes back to its first keyframe (``is_cycle``)."""
    smoothness: float = 0.0
    """Spline tension, nerfstudio's ``smoothness_value`` (0 = Catmull-Rom)."""
    aspects: np.ndarray | None = None
    """[F] per-frame ``aspect`` as written in the file; None means width / height."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level keys of camera_path.json (``crop``, ``default_time``, ...), kept for a byte-stable rewrite."""
    frame_extra: list[dict[str, Any]] | None = None
    """Other keys of each ``camera_path`` entry (``render_time``, ...), kept for a byte-stable rewrite."""
    source: dict[str, Any] | None = None
    """The JSON document this path was read from (lets a rewrite keep number spellings such as ``30`` vs
    ``30.0``); None for built paths."""

    def __post_init__(self):
        self.world_from_cams = np.asarray(self.world_from_cams, dtype=np.float64).reshape(-1, 4, 4)
        self.fov_y_deg = np.broadcast_to(np.asarray(self.fov_y_deg, dtype=np.float64), (len(self),)).copy()
        if self.camera_type not in CAMERA_TYPES:
            raise ConfigError(f"camera_type={self.camera_type!r}: expected one of {', '.join(CAMERA_TYPES)}")
        if len(self) == 0 or int(self.width) < 1 or int(self.height) < 1 or not float(self.fps) > 0:
            raise ConfigError(
                f"camera path with {len(self)} frames, size {self.width}x{self.height}, fps={self.fps}: "
                "expected at least one frame, a positive size and a positive frame rate"
            )

    def __len__(self) -> int:
        return len(self.world_from_cams)

    @property
    def duration(self) -> float:
        return float(self.seconds) if self.seconds is not None else len(self) / float(self.fps)

    def video_fps(self) -> float:
        """Frame rate of the rendered video as nerfstudio's ``ns-render`` uses it: frames / seconds."""
        return len(self) / self.duration if self.seconds else float(self.fps)

    def camera(self, index: int):
        """The camera model of frame ``index`` (as nerfstudio's ``ns-render camera-path`` builds it)."""
        from ..equirect import camera_for_path  # heavy: torch (paths stay numpy-only until a camera is built)

        return camera_for_path(self.camera_type, self.width, self.height, float(self.fov_y_deg[index]))


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:  # -> [4, 4]
    """Camera-to-world (OpenGL axes) of a camera at ``eye`` looking at ``target`` with ``up`` roughly up."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-12:
        raise ConfigError(f"look_at: eye {eye.tolist()} and target coincide; move the camera or the target")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along up: pick any perpendicular
        right = np.cross(forward, np.roll(up, 1))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, -forward, eye
    return pose


def perpendicular_basis(up) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (a, b, up) with a, b spanning the plane perpendicular to ``up`` (right-handed)."""
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(helper, up)
    a /= np.linalg.norm(a)
    return a, np.cross(up, a), up
