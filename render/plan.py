"""What a render job shoots: the camera path (built in, or read from JSON) and the camera model of each frame.

Defaults come from the run's training cameras (normalised scene frame, +z up): the orbit centre is the point
closest, in the least-squares sense, to every training camera's optical axis (where the cameras look), the
radius is the cameras' mean horizontal distance from it and the height their mean height above it, so a default
orbit flies where the capture walked. Sizes default to the training images (rounded down to even numbers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.cameras import FisheyeCamera, OrthographicCamera, PerspectiveCamera, ThinLens, fov_from_focal
from ..core.errors import ConfigError, InputError
from ..core.geometry import closest_point_to_lines, optical_axes
from .cubemap import CubemapCamera
from .equirect import EquirectangularCamera
from .paths import (
    CameraPath, PathSettings, dolly_zoom_path, interpolate_path, keyframe_path, look_at, orbit_path,
    parse_camera_path, read_keyframes, spiral_path,
)

CameraKind = Literal["perspective", "fisheye", "equirectangular", "cubemap", "orthographic"]
CAMERA_KINDS: tuple[str, ...] = ("perspective", "fisheye", "equirectangular", "cubemap", "orthographic")
BUILTIN_PATHS: tuple[str, ...] = ("orbit", "spiral", "interpolate", "dolly-zoom")


@dataclass(frozen=True)
class ShotOptions:
    """The path and camera of a render (None = derived from the run's training cameras)."""

    path: str = "orbit"
    """orbit | spiral | interpolate | dolly-zoom, or a JSON file (nerfstudio camera_path.json or keyframes)."""
    camera: CameraKind | None = None
    """Camera model; None = perspective, or the camera_type of a camera_path.json."""
    width: int | None = None
    """Frame width, pixels (equirectangular: 2 x height; cubemap: set by the face size)."""
    height: int | None = None
    """Frame height, pixels (cubemap: the face size is height / 3 for the cross layout, height otherwise)."""
    fps: float | None = None
    """Frames per second (default 30, or the file's)."""
    seconds: float | None = None
    """Duration (default 4 s, or the file's)."""
    fov: float | None = None
    """Vertical field of view, degrees (default: the training cameras')."""
    center: tuple[float, float, float] | None = None
    """Orbit / spiral centre, normalised frame (default: where the training cameras look)."""
    radius: float | None = None
    """Orbit radius (spiral start radius), normalised units (default: the cameras' mean distance)."""
    height_above: float | None = None
    """Orbit height above the centre along +z (default: the cameras' mean height)."""
    turns: float = 1.0
    """Orbit / spiral revolutions."""
    start_deg: float | None = None
    """Orbit: angle of the first frame around the centre (+z up, counter-clockwise from +x); dolly zoom: the
    direction of the start pose from the centre. None: the orbit starts on the -y side, the dolly zoom on +x."""
    ease: str = "linear"
    """Speed ramp: linear | ease-in | ease-out | ease-in-out."""
    smoothing: float = 0.0
    """interpolate: Gaussian smoothing of the training cameras, in keyframes (0 = through every camera)."""
    max_keyframes: int | None = None
    """interpolate: use this many evenly spaced training cameras (None = all)."""
    focus_distance: float | None = None
    """Dolly-zoom subject distance and thin-lens focus distance, normalised units (default: to the centre)."""
    fov_end: float | None = None
    """Dolly zoom: final fov, degrees (default: twice the start fov, capped at 120)."""
    aperture: float = 0.0
    """Thin-lens aperture radius, normalised units (0 = pinhole)."""
    cubemap_layout: Literal["cross", "strip", "six"] = "cross"
    """Cubemap layout."""
    ortho_width: float | None = None
    """Orthographic view width, normalised units (default: what the fov covers at the focus distance)."""

    def __post_init__(self) -> None:
        """A number given is valid or refused (ConfigError naming the field): None, not 0, means "default"."""
        for name in _POSITIVE_SHOT_FIELDS:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r}: expected a positive number", field=name)
        for name in ("aperture", "smoothing"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name}={value!r}: expected 0 or more", field=name)


_POSITIVE_SHOT_FIELDS = ("width", "height", "fps", "seconds", "fov", "radius", "focus_distance", "fov_end",
                         "ortho_width", "max_keyframes")


@dataclass
class Rig:
    """Where the training cameras are and what they look at (normalised frame)."""

    center: np.ndarray
    """[3] least-squares look-at point of the cameras."""
    radius: float
    """Mean horizontal distance of the cameras from ``center``."""
    height: float
    """Mean height of the cameras above ``center`` (+z)."""
    fov_deg: float
    """Median vertical field of view of the training cameras."""
    size: tuple[int, int]
    """(width, height) of the first training image."""


def look_at_center(world_from_cams: np.ndarray) -> np.ndarray:  # [N, 4, 4] -> [3]
    """Point nearest to all optical axes (OpenGL: the camera looks along -z), least squares."""
    origins, forwards = optical_axes(world_from_cams)
    point, eigs = closest_point_to_lines(origins, forwards)
    if eigs[0] * 1e8 < eigs[-1]:  # condition number > 1e8, parallel axes: the mean position plus one step ahead
        return origins.mean(0) + forwards.mean(0)
    return point


def rig_of(world_from_cams: np.ndarray, intrinsics: list) -> Rig:
    """The Rig of training cameras (needs at least one camera)."""
    if len(world_from_cams) == 0:
        raise InputError("the run's dataset is not available, so paths cannot be derived from its cameras; "
                         "pass --center/--radius/--fov or a camera_path.json")
    center = look_at_center(world_from_cams)
    offsets = world_from_cams[:, :3, 3] - center
    fovs = [fov_from_focal(i.fy, i.height) for i in intrinsics]
    size = (intrinsics[0].width, intrinsics[0].height)
    return Rig(center, float(np.linalg.norm(offsets[:, :2], axis=-1).mean()), float(offsets[:, 2].mean()),
               float(np.median(fovs)), size)


def training_arc(world_from_cams: np.ndarray, center: np.ndarray) -> tuple[float, float]:
    """(start, span) in degrees of the arc the cameras ([N, 4, 4]) cover around ``center`` seen from above (+z up,
    counter-clockwise from +x): the circle less its widest gap without cameras. A path inside it shows only what
    the capture saw from nearby (``nerfstage demo`` orbits it)."""
    offsets = np.asarray(world_from_cams)[:, :2, 3] - np.asarray(center)[:2]  # [N, 2]
    angles = np.sort(np.degrees(np.arctan2(offsets[:, 1], offsets[:, 0])) % 360.0)
    if len(angles) < 2:
        return float(angles[0]) if len(angles) else 0.0, 0.0
    gaps = np.diff(np.append(angles, angles[0] + 360.0))  # [N] gap after each camera
    widest = int(np.argmax(gaps))
    return float(angles[(widest + 1) % len(angles)]), float(360.0 - gaps[widest])


def _even(value: int) -> int:
    return max(2, int(value) // 2 * 2)


def path_settings(options: ShotOptions, rig: Rig | None) -> PathSettings:
    """Frame size, timing and lens of a built-in path."""
    default_size = (_even(rig.size[0]), _even(rig.size[1])) if rig is not None else (960, 540)
    height = options.height or default_size[1]
    width = options.width or (2 * height if options.camera == "equirectangular" else default_size[0])
    fov = options.fov or (rig.fov_deg if rig is not None else 50.0)
    ptype = options.camera if options.camera in ("fisheye", "equirectangular") else "perspective"
    return PathSettings(int(width), int(height), float(options.fps or 30.0), float(options.seconds or 4.0),
                        float(fov), ptype, options.ease)  # type: ignore[arg-type]


def build_path(options: ShotOptions, world_from_cams: np.ndarray, intrinsics: list) -> CameraPath:
    """The CameraPath of ``options`` given the training cameras ([N, 4, 4] normalised frame, may be empty)."""
    name = options.path
    rig = rig_of(world_from_cams, intrinsics) if len(world_from_cams) else None
    if name not in BUILTIN_PATHS:
        return read_path_file(Path(name), options, rig)
    if rig is None and (options.center is None or options.radius is None or name in ("interpolate", "dolly-zoom")):
        rig_of(world_from_cams, intrinsics)  # raises the clear error
    settings = path_settings(options, rig)
    center = np.asarray(options.center if options.center is not None else rig.center, dtype=np.float64)
    radius = options.radius if options.radius is not None else rig.radius
    height = options.height_above if options.height_above is not None else (rig.height if rig else 0.0)
    start_deg = float(options.start_deg or 0.0)
    if name == "orbit":  # orbit_path's angle 0 lies on -y for +z up: +90 degrees turns it to +x
        orbit_start = 0.0 if options.start_deg is None else start_deg + 90.0
        return orbit_path(settings, center, radius, height, options.turns, start_deg=orbit_start)
    if name == "spiral":
        return spiral_path(settings, center, radius, 0.5 * radius, height, 0.0, options.turns or 2.0)
    if name == "interpolate":
        poses = world_from_cams
        return interpolate_path(settings, poses, np.full(len(poses), settings.fov_deg), options.max_keyframes,
                                options.smoothing)
    side = np.radians(start_deg)
    start = look_at(center + np.array([radius * np.cos(side), radius * np.sin(side), height]), center)
    focus = options.focus_distance or float(np.linalg.norm(start[:3, 3] - center))
    fov_end = options.fov_end or min(2.0 * settings.fov_deg, 120.0)
    return dolly_zoom_path(settings, start, focus, settings.fov_deg, fov_end)


def read_path_file(file: Path, options: ShotOptions, rig: Rig | None = None) -> CameraPath:
    """A nerfstudio camera_path.json (rendered as given; --fps/--seconds/size override it only when given)
    or a keyframes JSON (list of keyframes) splined at the options' size and fps."""
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{file}: --path is neither a built-in path ({', '.join(BUILTIN_PATHS)}) "
                         "nor an existing JSON file") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{file}: not a readable JSON camera path ({exc})") from exc
    if isinstance(doc, dict) and "camera_path" in doc or isinstance(doc, dict) and "render_width" in doc:
        return parse_camera_path(doc, str(file))
    settings = path_settings(options, rig)
    keyframes = read_keyframes(file, settings.fov_deg, settings.width / settings.height)
    seconds = options.seconds or 2.0 * (len(keyframes) - 1)
    return keyframe_path(keyframes, settings.width, settings.height, settings.fps,
                         seconds / max(len(keyframes) - 1, 1), camera_type=settings.camera_type,
                         easing=settings.easing)  # type: ignore[arg-type]


def frame_camera(path: CameraPath, index: int, options: ShotOptions, focus: float):
    """The camera model of frame ``index``: the path's own (nerfstudio's) unless ``options.camera`` overrides
    it; ``focus`` is the thin-lens / orthographic reference distance (normalised units)."""
    kind = options.camera or path.camera_type
    fov = float(path.fov_y_deg[index])
    w, h = int(path.width), int(path.height)
    if kind == "perspective":
        lens = ThinLens(options.aperture, options.focus_distance or focus) if options.aperture > 0 else None
        return PerspectiveCamera.from_fov(w, h, fov, lens)
    if kind == "fisheye":
        return FisheyeCamera.from_fov(w, h, fov)
    if kind == "equirectangular":
        return EquirectangularCamera(w, h)
    if kind == "cubemap":
        return CubemapCamera(h // 3 if options.cubemap_layout == "cross" else h, options.cubemap_layout)
    if kind == "orthographic":
        view = options.ortho_width or 2.0 * focus * math.tan(math.radians(fov) / 2.0) * w / h
        return OrthographicCamera(w, h, float(view))
    raise ConfigError(f"--camera {kind!r}: expected one of {', '.join(CAMERA_KINDS)}")


def reference_distance(path: CameraPath, world_from_cams: np.ndarray) -> float:
    """Typical distance from the path's cameras to what the training cameras look at (1 without cameras)."""
    if len(world_from_cams) == 0:
        return 1.0
    center = look_at_center(world_from_cams)
    return float(np.median(np.linalg.norm(path.world_from_cams[:, :3, 3] - center, axis=-1))) or 1.0
