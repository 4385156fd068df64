"""The viewer's camera-path editor, without any GUI: keyframes in, a ``CameraPath`` out.

Everything goes through ``nerfstage.render.paths``: ``keyframe_path`` splines the keyframes (the same function a
keyframe file given to ``nerfstage render --path`` uses), ``write_camera_path`` / ``read_camera_path`` write and
read nerfstudio's ``camera_path.json``, so a saved path renders with ``nerfstage render --path FILE`` exactly as
the viewer previews it (the preview shows ``camera_path().world_from_cams[i]``, the frames ``render_path`` renders).

A path loaded from a file and not edited since is handed back as read (byte-stable re-save, frames as the file
has them); any edit re-splines the keyframes with the editor's options (the file's extra keys are kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from ...render.paths import CameraPath, CameraType, Keyframe, keyframe_path, read_camera_path, write_camera_path


@dataclass(frozen=True)
class PathOptions:
    """Path-wide settings of the editor (nerfstudio's render panel fields)."""

    width: int = 960
    """Render width, pixels (``render_width``)."""
    height: int = 540
    """Render height, pixels (``render_height``)."""
    fps: float = 30.0
    """Frames per second."""
    default_transition_sec: float = 2.0
    """Seconds per transition unless a keyframe overrides it."""
    is_cycle: bool = False
    """Loop: the path returns to its first keyframe."""
    tension: float = 0.0
    """Spline tension, nerfstudio's ``smoothness_value`` (0 = Catmull-Rom, 1 = straight segments)."""
    camera_type: CameraType = "perspective"
    """Camera model written to the file."""


@dataclass
class KeyframeEditor:
    """Ordered keyframes plus path options; add / move / delete / edit, build, save, load."""

    options: PathOptions = field(default_factory=PathOptions)
    """Path-wide settings."""
    keyframes: list[Keyframe] = field(default_factory=list)
    """Keyframes in path order (poses: OpenGL camera-to-world, normalised scene frame)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level keys of a loaded file the editor does not edit (``crop``, ...), written back unchanged."""
    loaded: CameraPath | None = None
    """The path as read from a file, while it has not been edited (None after any edit)."""

    def __len__(self) -> int:
        return len(self.keyframes)

    def _edited(self) -> None:
        self.loaded = None

    def _check(self, index: int) -> int:
        if not 0 <= index < len(self.keyframes):
            raise ConfigError(f"keyframe {index}: no such keyframe (the path has {len(self.keyframes)})")
        return index

    def add(self, world_from_cam: np.ndarray, fov_deg: float, aspect: float | None = None,
            index: int | None = None) -> int:
        """Insert a keyframe (at the end, or before ``index``); returns its index."""
        pose = np.asarray(world_from_cam, dtype=np.float64).reshape(4, 4).copy()  # [4, 4]
        if not np.isfinite(pose).all() or not 0.0 < fov_deg < 180.0:
            raise ConfigError(f"keyframe pose must be finite and fov in (0, 180) degrees, got fov={fov_deg}")
        ratio = aspect if aspect is not None else self.options.width / self.options.height
        where = len(self.keyframes) if index is None else min(max(index, 0), len(self.keyframes))
        self.keyframes.insert(where, Keyframe(pose, float(fov_deg), float(ratio)))
        self._edited()
        return where

    def move(self, index: int, world_from_cam: np.ndarray, fov_deg: float | None = None) -> None:
        """Replace keyframe ``index``'s pose (and fov) with a new view, keeping its timing."""
        old = self.keyframes[self._check(index)]
        pose = np.asarray(world_from_cam, dtype=np.float64).reshape(4, 4).copy()
        self.keyframes[index] = replace(old, world_from_cam=pose,
                                        fov_deg=old.fov_deg if fov_deg is None else float(fov_deg))
        self._edited()

    def delete(self, index: int) -> None:
        del self.keyframes[self._check(index)]
        self._edited()

    def set_fov(self, index: int, fov_deg: float) -> None:
        if not 0.0 < fov_deg < 180.0:
            raise ConfigError(f"keyframe fov {fov_deg}: expected degrees in (0, 180)")
        self.keyframes[self._check(index)].fov_deg = float(fov_deg)
        self._edited()

    def set_duration(self, index: int, seconds: float | None) -> None:
        """Seconds of the transition into keyframe ``index``; None (or <= 0) = the default transition."""
        key = self.keyframes[self._check(index)]
        use = seconds is not None and seconds > 0
        key.override_transition_enabled, key.override_transition_sec = use, float(seconds) if use else None
        self._edited()

    def set_options(self, **changes) -> None:
        """Change path-wide options (fields of PathOptions)."""
        self.options = replace(self.options, **changes)
        self._edited()

    def camera_path(self) -> CameraPath:
        """The path the viewer previews and renders (ConfigError with fewer than 2 keyframes)."""
        if self.loaded is not None:
            return self.loaded
        opt = self.options
        path = keyframe_path(self.keyframes, opt.width, opt.height, opt.fps, opt.default_transition_sec,
                             opt.is_cycle, opt.tension, opt.camera_type)
        path.extra = dict(self.extra)
        return path

    def preview(self, frame: int) -> tuple[np.ndarray, float]:
        """(world_from_cam [4, 4], fov degrees) of frame ``frame`` (clamped) of ``camera_path()``."""
        path = self.camera_path()
        i = min(max(int(frame), 0), len(path) - 1)
        return path.world_from_cams[i].copy(), float(path.fov_y_deg[i])

    def save(self, file: Path, overwrite: bool = True) -> CameraPath:
        """Write ``camera_path()`` as a nerfstudio camera_path.json (the render stage's writer)."""
        path = self.camera_path()
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        write_camera_path(Path(file), path, overwrite)
        return path

    def load(self, file: Path) -> CameraPath:
        """Replace the keyframes and options with a camera_path.json's (the render stage's reader)."""
        path = read_camera_path(Path(file))
        if len(path.keyframes) < 2:
            raise ConfigError(f"{file}: has {len(path.keyframes)} editable keyframes; the editor needs at least 2")
        self.options = PathOptions(int(path.width), int(path.height), float(path.fps),
                                   float(path.default_transition_sec), bool(path.is_cycle), float(path.smoothness),
                                   path.camera_type)
        self.keyframes = [replace(k, world_from_cam=k.world_from_cam.copy()) for k in path.keyframes]
        self.extra = dict(path.extra)
        self.loaded = path
        return path
