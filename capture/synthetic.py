"""Built-in synthetic capture: a textured room with five textured solids, filmed along a hand-held-looking
walk-around, with exact poses, intrinsics, depth and surface samples (ground truth for tests and the demo).

Conventions
-----------
* World frame: metres, **+z up**, floor at z = 0, the room spans :func:`scene_bounds` (8 x 8 x 3 m) and the
  objects stand around the origin. ``world_from_cam`` uses **OpenGL camera axes** (x right, y up, z backward),
  as nerfstudio's ``transform_matrix``.
* The scene (geometry and textures) is fixed; ``SyntheticOptions.seed`` only changes the camera path's jitter.
* The camera path is a continuous function of the path parameter s in [0, 1]; ``num_frames`` samples it evenly,
  so captures with different frame counts but the same seed lie on the same path.
* Rendering is analytic ray casting (numpy): Lambertian key + fill light plus ambient, no shadows, no
  reflections, so the colour of a surface point is the same from every view; small images are supersampled
  (box filter, ``SyntheticOptions.supersample``). H.264 video keeps luma well (about 34 dB at 160x120, 38 dB
  at 640x480) but halves chroma resolution (yuv420p); the PNG dataset is lossless.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..core.errors import ConfigError, DatasetError, OutputExistsError
from ..core.geometry import Intrinsics, convert_camera_axes
from ._synthetic_scene import apply
from ._synthetic_world import Scene, default_scene
from .dataset import Dataset, Frame
from .transforms import write_transforms
from .video import write_video

VIDEO_NAME = "synthetic.mp4"
GROUND_TRUTH_NAME = "ground_truth.json"
TRANSFORMS_NAME = "transforms.json"
_FORMAT = "nerfstage-synthetic"


@dataclass
class SyntheticOptions:
    """What to film and how; the scene itself is fixed."""

    num_frames: int = 100
    """Frames along the walk-around (the whole path is always covered)."""
    width: int = 640
    """Image width, pixels (even for video)."""
    height: int = 480
    """Image height, pixels (even for video)."""
    fov_x_deg: float = 62.0
    """Horizontal field of view, degrees (pinhole, principal point at the image centre)."""
    fps: float = 30.0
    """Video frame rate."""
    seed: int = 0
    """Seed of the hand-held jitter of the camera path."""
    arc_deg: float = 300.0
    """How far the camera walks around the objects, degrees."""
    radius_m: float = 2.75
    """Mean distance of the camera from the vertical axis through the scene centre, metres."""
    height_m: float = 1.5
    """Mean camera height above the floor, metres."""
    supersample: int = 0
    """Anti-aliasing: average k x k rays per pixel (1: one ray through each pixel centre). 0 = auto: the
    smallest k that casts at least 640 rays across the width (1 at 640x480, 4 at 160x120), so that small
    images are clean box-filtered views of the same scene rather than aliased ones."""


@dataclass
class SyntheticCapture:
    """Where a synthetic capture was written, and its true cameras."""

    root: Path
    """The output folder."""
    video_path: Path | None
    """``root/synthetic.mp4`` when a video was written."""
    transforms_path: Path | None
    """``root/transforms.json`` when a posed dataset was written."""
    ground_truth_path: Path
    """``root/ground_truth.json``."""
    world_from_cams: np.ndarray
    """[N, 4, 4] true camera-to-world of every frame, OpenGL camera axes, world +z up, metres."""
    intrinsics: Intrinsics
    """The one pinhole camera of every frame."""
    options: SyntheticOptions | None = None
    """The options it was made with."""


@functools.lru_cache(maxsize=1)
def _scene() -> Scene:
    return default_scene()


def scene_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned min and max corners of the room, [3] each (world metres, +z up)."""
    room = _scene().room
    centre, half = np.asarray(room.center), np.asarray(room.half)
    return centre - half, centre + half


def scene_description() -> dict:
    """Plain-JSON description of the true geometry (room, objects, their bounding box, look-at target)."""
    return _scene().describe()


def _check_options(options: SyntheticOptions) -> None:
    if options.num_frames < 1:
        raise ConfigError(f"SyntheticOptions.num_frames={options.num_frames}: expected at least 1")
    if options.width < 2 or options.height < 2:
        raise ConfigError(f"SyntheticOptions size {options.width}x{options.height}: expected at least 2x2 pixels")
    if not 1.0 <= options.fov_x_deg <= 170.0:
        raise ConfigError(f"SyntheticOptions.fov_x_deg={options.fov_x_deg}: expected 1 to 170 degrees")
    if options.supersample < 0:
        raise ConfigError(f"SyntheticOptions.supersample={options.supersample}: expected 0 (auto) or more")
    if options.fps <= 0:
        raise ConfigError(f"SyntheticOptions.fps={options.fps}: expected a positive frame rate")
    if not 1.6 <= options.radius_m <= 3.5 or not 0.2 <= options.height_m <= 2.8:
        raise ConfigError(
            f"SyntheticOptions radius_m={options.radius_m}, height_m={options.height_m}: the camera must stay in "
            "the room and off the objects (radius 1.6..3.5 m, height 0.2..2.8 m)"
        )


def synthetic_intrinsics(options: SyntheticOptions) -> Intrinsics:
    """The pinhole camera of ``options``: square pixels, principal point at the image centre."""
    focal = 0.5 * options.width / math.tan(math.radians(options.fov_x_deg) / 2.0)
    return Intrinsics(focal, focal, options.width / 2.0, options.height / 2.0, options.width, options.height)


def _smooth_noise(rng: np.random.Generator, s: np.ndarray, channels: int) -> np.ndarray:
    """[N, channels] smooth seeded noise in about [-1, 1]: three sinusoids of 0.5..4 cycles over the path."""
    freq = rng.uniform(0.5, 4.0, size=(3, channels))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(3, channels))
    amp = rng.uniform(0.5, 1.0, size=(3, channels))
    wave = (amp[None] * np.sin(2.0 * np.pi * freq[None] * s[:, None, None] + phase[None])).sum(axis=1)
    return wave / amp.sum(axis=0)


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """eye, target: [N, 3] -> [N, 3, 3] world_from_cam rotations, OpenGL axes, world +z up, no roll."""
    back = eye - target
    back /= np.linalg.norm(back, axis=1, keepdims=True)
    right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    return np.stack([right, np.cross(back, right), back], axis=2)


def _euler_xyz(angles: np.ndarray) -> np.ndarray:
    """angles: [N, 3] radians (about camera x, y, z) -> [N, 3, 3] rotations Rx @ Ry @ Rz."""
    return Rotation.from_euler("XYZ", angles).as_matrix()


def synthetic_cameras(options: SyntheticOptions) -> tuple[np.ndarray, Intrinsics]:
    """[N, 4, 4] true world_from_cam (OpenGL camera axes, metres, world **+z up**) and the intrinsics.

    The camera walks ``arc_deg`` around the scene centre at about ``radius_m`` and ``height_m``, looking at it,
    with seeded smooth jitter: +-0.12 m radius, +-0.08 m height, +-0.1 m look-at target, +-1.5 deg pitch/yaw,
    +-3 deg roll, and +-20 % walking speed.
    """
    _check_options(options)
    rng = np.random.default_rng(options.seed)
    n = options.num_frames
    s = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    progress = s + 0.2 * (np.sin(4.0 * np.pi * s + phase) - np.sin(phase)) / (4.0 * np.pi)  # monotonic warp
    angle = np.radians(-90.0 + options.arc_deg * progress)
    wobble = _smooth_noise(rng, s, 8)  # radius, height, target x y z, pitch, yaw, roll
    radius = options.radius_m + 0.12 * wobble[:, 0]
    eye = np.stack([radius * np.cos(angle), radius * np.sin(angle), options.height_m + 0.08 * wobble[:, 1]], 1)
    target = np.asarray(_scene().target) + 0.1 * wobble[:, 2:5]
    rotation = _look_at(eye, target) @ _euler_xyz(np.radians(wobble[:, 5:8] * np.array([1.5, 1.5, 3.0])))
    world_from_cam = np.tile(np.eye(4), (n, 1, 1))
    world_from_cam[:, :3, :3], world_from_cam[:, :3, 3] = rotation, eye
    return world_from_cam, synthetic_intrinsics(options)


@functools.lru_cache(maxsize=4)
def _pixel_grid(intrinsics: Intrinsics, dtype: type) -> np.ndarray:
    """[3, H*W] OpenCV-axes ray directions with unit z through every pixel centre, row by row."""
    u = (np.arange(intrinsics.width, dtype=np.float64) + 0.5 - intrinsics.cx) / intrinsics.fx
    v = (np.arange(intrinsics.height, dtype=np.float64) + 0.5 - intrinsics.cy) / intrinsics.fy
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)]).astype(dtype)


def _camera_rays(
    world_from_cam: np.ndarray, intrinsics: Intrinsics, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre [3] and world ray directions [3, H*W] (unit z-depth) through every pixel centre."""
    if any(getattr(intrinsics, k) for k in ("k1", "k2", "k3", "k4", "p1", "p2")):
        raise ConfigError(f"synthetic rendering needs an undistorted pinhole camera, got {intrinsics}")
    cv_from = convert_camera_axes(np.asarray(world_from_cam, np.float64))  # OpenCV axes: z forward, y down
    if cv_from.shape not in ((4, 4), (3, 4)):
        raise ConfigError(f"world_from_cam must be one [4, 4] (or [3, 4]) matrix, got shape {cv_from.shape}")
    return cv_from[:3, 3], apply(cv_from[:3, :3], _pixel_grid(intrinsics, dtype))


def render_frame(world_from_cam: np.ndarray, intrinsics: Intrinsics, supersample: int = 1) -> np.ndarray:
    """[H, W, 3] uint8 RGB view of the scene from one camera (world_from_cam [4, 4], OpenGL axes), averaging
    ``supersample`` x ``supersample`` rays per pixel."""
    fine = intrinsics.scaled(supersample) if supersample > 1 else intrinsics
    origin, dirs = _camera_rays(world_from_cam, fine)
    scene = _scene()
    rgb = scene.shade(origin, dirs, *scene.cast(origin, dirs))  # [3, h*w]
    rgb = np.ascontiguousarray(rgb.T).reshape(fine.height, fine.width, 3)
    if supersample > 1:  # box filter: each output pixel is the mean of its k x k sub-pixels
        rgb = cv2.resize(rgb, (intrinsics.width, intrinsics.height), interpolation=cv2.INTER_AREA)
    return (rgb * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def true_depth(world_from_cam: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """[H, W] float32 z-depth (metres along the optical axis) of the true scene at every pixel centre
    (inf where a ray leaves the room, which only happens for cameras outside it). Ray math runs in float64
    here, so depth is exact to about 1e-7 even at grazing incidence; colour renders use float32."""
    origin, dirs = _camera_rays(world_from_cam, intrinsics, np.float64)
    t, _ = _scene().cast(origin, dirs)
    return t.reshape(intrinsics.height, intrinsics.width).astype(np.float32)


def rays_per_pixel_side(options: SyntheticOptions) -> int:
    """The supersampling factor k that ``options`` asks for (resolving 0 = auto)."""
    return options.supersample or max(1, math.ceil(640 / options.width))


def render_synthetic_frames(options: SyntheticOptions | None = None) -> Iterator[np.ndarray]:
    """The frames of the capture, each [H, W, 3] uint8 RGB, rendered lazily one by one (options are checked
    at once, before the first frame is asked for)."""
    options = options or SyntheticOptions()
    world_from_cams, intrinsics = synthetic_cameras(options)
    return (render_frame(w, intrinsics, rays_per_pixel_side(options)) for w in world_from_cams)


def sample_surface(num_points: int, seed: int = 0, objects_only: bool = False) -> np.ndarray:
    """[P, 3] world points, uniform by area on the true visible surfaces: the objects and (unless
    ``objects_only``) the room's inside; faces resting on the floor or on another solid are left out."""
    if num_points < 1:
        raise ConfigError(f"sample_surface num_points={num_points}: expected at least 1")
    return _scene().sample_surface(num_points, np.random.default_rng(seed), objects_only)


def _check_free(paths: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for path in paths:
        if path.exists():
            raise OutputExistsError(f"{path} already exists: pass overwrite=True (or choose another folder)")


def _frame_name(index: int) -> str:
    return f"images/frame_{index + 1:05d}.png"


def write_synthetic_video(
    out_dir: Path, options: SyntheticOptions | None = None, overwrite: bool = False
) -> SyntheticCapture:
    """Render the capture into ``out_dir/synthetic.mp4`` (H.264) and write ``out_dir/ground_truth.json`` with
    the intrinsics and the true ``world_from_cam`` of every video frame, the scene and the options."""
    options = options or SyntheticOptions()
    if options.width % 2 or options.height % 2:
        raise ConfigError(f"video size {options.width}x{options.height}: H.264 (yuv420p) needs even width and height")
    out_dir = Path(out_dir)
    video, truth = out_dir / VIDEO_NAME, out_dir / GROUND_TRUTH_NAME
    world_from_cams, intrinsics = synthetic_cameras(options)
    _check_free([video, truth], overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_video(video, render_synthetic_frames(options), fps=options.fps)
    capture = SyntheticCapture(out_dir, video, None, truth, world_from_cams, intrinsics, options)
    _write_ground_truth(capture, images=None)
    return capture


def write_synthetic_dataset(
    out_dir: Path, options: SyntheticOptions | None = None, overwrite: bool = False
) -> SyntheticCapture:
    """Render the capture into ``out_dir/images/frame_00001.png ...`` and write ``out_dir/transforms.json``
    (nerfstudio format, the TRUE poses: a posed dataset needing no SfM) and ``out_dir/ground_truth.json``."""
    options = options or SyntheticOptions()
    out_dir = Path(out_dir)
    transforms, truth = out_dir / TRANSFORMS_NAME, out_dir / GROUND_TRUTH_NAME
    world_from_cams, intrinsics = synthetic_cameras(options)
    names = [_frame_name(i) for i in range(options.num_frames)]
    _check_free([transforms, truth, *(out_dir / n for n in names)], overwrite)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, render_synthetic_frames(options)):
        if not cv2.imwrite(str(out_dir / name), frame[..., ::-1]):
            raise OSError(f"could not write {out_dir / name}")
    frames = [Frame(out_dir / n, w, intrinsics) for n, w in zip(names, world_from_cams)]
    write_transforms(Dataset(root=out_dir, frames=frames, format="nerfstudio"), transforms)
    capture = SyntheticCapture(out_dir, None, transforms, truth, world_from_cams, intrinsics, options)
    _write_ground_truth(capture, images=names)
    return capture


def _write_ground_truth(capture: SyntheticCapture, images: list[str] | None) -> None:
    """``ground_truth.json``: everything true about the capture, paths relative to its folder."""
    root = capture.root
    options = capture.options or SyntheticOptions()
    content = {
        "format": _FORMAT,
        "version": 1,
        "camera_axes": "OpenGL (x right, y up, z backward); world +z up; metres",
        "video": capture.video_path.name if capture.video_path else None,
        "transforms": capture.transforms_path.name if capture.transforms_path else None,
        "intrinsics": asdict(capture.intrinsics),
        "options": asdict(options),
        "scene": scene_description(),
        "frames": [
            {"index": i, "time_s": i / options.fps, "image": images[i] if images else None,
             "world_from_cam": w.tolist()}
            for i, w in enumerate(capture.world_from_cams)
        ],
    }
    tmp = root / f".{GROUND_TRUTH_NAME}.partial"
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, capture.ground_truth_path)


def load_ground_truth(path: Path) -> SyntheticCapture:
    """Read a ``ground_truth.json`` written by :func:`write_synthetic_video` or :func:`write_synthetic_dataset`
    (``path`` may also be its folder)."""
    path = Path(path)
    path = path / GROUND_TRUTH_NAME if path.is_dir() else path
    try:
        content = json.loads(path.read_text())
        if content.get("format") != _FORMAT:
            raise ValueError(f"format is {content.get('format')!r}, expected {_FORMAT!r}")
        intrinsics = Intrinsics(**content["intrinsics"])
        known = {f.name for f in fields(SyntheticOptions)}
        options = SyntheticOptions(**{k: v for k, v in content["options"].items() if k in known})
        world_from_cams = np.array([f["world_from_cam"] for f in content["frames"]], np.float64)
        if world_from_cams.ndim != 3 or world_from_cams.shape[1:] != (4, 4):
            raise ValueError(f"frames hold matrices of shape {world_from_cams.shape[1:]}, expected (4, 4)")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetError(f"{path}: not a readable synthetic ground_truth.json ({err})") from err
    root = path.parent
    video = root / content["video"] if content.get("video") else None
    transforms = root / content["transforms"] if content.get("transforms") else None
    return SyntheticCapture(root, video, transforms, path, world_from_cams, intrinsics, options)
