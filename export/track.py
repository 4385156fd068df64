"""Tracked-camera files for LED-wall / in-camera VFX plates (``nerfstage export plates --track FILE``).

A track file lists, per frame, where a physical (tracked) camera was, how it was turned and what lens it had;
every row becomes one :class:`TrackedFrame` and, in the render stage, one background plate.

Frame of reference: the **dataset frame** of the run (the world of its ``transforms.json``): right-handed, +Z up,
in the dataset's units (metres for metric captures). A tracking system's stage origin must be mapped to that
frame first (Unreal is left-handed Z-up in centimetres: divide by 100 and negate y; its yaw then changes sign).

CSV: one header row, then one row per frame; columns in any order, names as below, nothing else but an optional
free-text ``timecode``. JSON: ``{"frames": [{...}, ...]}`` with the same names as keys; any key except ``frame``
may also sit at the top level as the default for every frame (e.g. one ``width``/``height``/lens).

==================  ======================================================================================
column              meaning
==================  ======================================================================================
frame               integer frame number (unique; plates are numbered by it)
x, y, z             camera position (optical centre), dataset frame
qw, qx, qy, qz      rotation as a unit quaternion, camera-to-world, **OpenGL camera axes** (camera looks along
                    its -Z, +Y is image up, +X image right), exactly as the 3x3 block of nerfstudio's
                    ``transform_matrix``;  or instead:
yaw_deg, pitch_deg, pan/tilt/roll head in degrees. All zero: the camera looks along +Y with +Z up. Then yaw
roll_deg            turns it about world +Z (positive = to the left, counter-clockwise seen from above), pitch
                    about its right axis (positive = up), roll about its viewing axis (positive = clockwise as
                    seen from behind the camera: its top moves right). R = Rz(yaw) Rx(pitch) Ry(roll) R_rest.
fov_y_deg           vertical field of view of the image, degrees;  or instead:
focal_mm,           focal length and sensor (film back) size in mm. With ``sensor_width_mm`` the horizontal
sensor_width_mm,    field of view is 2 atan(sensor_width / 2 focal) and the vertical one follows from the
sensor_height_mm    image aspect (Unreal CineCamera / Blender horizontal sensor fit); with only
                    ``sensor_height_mm`` the vertical one is 2 atan(sensor_height / 2 focal).
width, height       plate size in pixels (square pixels, principal point at the centre)
timecode            optional, kept as text
==================  ======================================================================================

USD (``.usd``, ``.usda``, ``.usdc``, ``.usdz``): the first ``UsdGeomCamera`` of the stage (or ``camera_prim``), one
frame per time sample (frame = time code) with its world transform, focal length and film back (apertures in
tenths of a scene unit, as UsdGeom defines them, reported in mm); the vertical fov is ``2 atan(verticalAperture /
2 focalLength)``. Positions are taken in metres (stage units x ``metersPerUnit``; a Y-up stage is turned to Z-up).
The plate size comes from a ``UsdRenderSettings`` ``resolution`` (the one pointing at the camera), else ``size``.
Nuke ``.chan``: ``frame tx ty tz rx ry rz vfov`` per line, Y-up world (turned to Z-up as the GLB meshes are turned
the other way), rotation order ZXY in degrees; the plate size is ``size``. ``nerfstage export camera`` writes both
(``export/camera_formats.py``).

Overscan (``overscan_percent`` p): each image side grows by ``round(side * p / 200)`` pixels at both ends and the
field of view grows to keep the pixel size, tan(fov'/2) = tan(fov/2) * height' / height, so the plate's centre
region is pixel-for-pixel the plate without overscan.

Examples: ``examples/track_example.csv`` (quaternions) and ``examples/track_example.json`` (yaw/pitch/roll, lens
defaults at the top level) describe the same 12-frame dolly move: 1 m to the right along +X at 1.5 m height,
2.5 m in front of the scene centre, looking along +Y tilted 5 degrees down, 35 mm lens on a 36.70 x 25.54 mm
sensor, 1920 x 1080 plates, frames 1001-1012.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ..core.geometry import Intrinsics
from ..core.errors import InputError

POSITION = ("x", "y", "z")
QUATERNION = ("qw", "qx", "qy", "qz")
EULER = ("yaw_deg", "pitch_deg", "roll_deg")
LENS = ("focal_mm", "sensor_width_mm", "sensor_height_mm")
SIZE = ("width", "height")
KNOWN = ("frame", *POSITION, *QUATERNION, *EULER, "fov_y_deg", *LENS, *SIZE, "timecode")
WORLD_FROM_CAM_REST = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Rotation of the rest pose (yaw = pitch = roll = 0): camera x -> +X, camera y (up) -> +Z, camera z -> -Y."""


@dataclass(frozen=True)
class TrackedFrame:
    """One frame of a tracked physical camera."""

    frame: int
    """Frame number from the file."""
    world_from_cam: np.ndarray
    """[4, 4] camera-to-world in the dataset frame, OpenGL camera axes."""
    fov_y_deg: float
    """Vertical field of view, degrees (after overscan)."""
    width: int
    """Image width, pixels (after overscan)."""
    height: int
    """Image height, pixels (after overscan)."""
    focal_mm: float | None = None
    """Lens focal length from the file, when given."""
    sensor_width_mm: float | None = None
    """Sensor width from the file, when given."""
    sensor_height_mm: float | None = None
    """Sensor height from the file, when given."""
    overscan_percent: float = 0.0
    """Overscan applied to fov and size."""
    timecode: str | None = None
    """Timecode from the file, when given."""

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (same along x and y)."""
        return 0.5 * self.height / math.tan(math.radians(self.fov_y_deg) / 2.0)

    @property
    def fov_x_deg(self) -> float:
        """Horizontal field of view, degrees."""
        return math.degrees(2.0 * math.atan(0.5 * self.width / self.focal_px))

    def intrinsics(self) -> Intrinsics:
        """Pinhole intrinsics of the plate (principal point at the centre)."""
        f = self.focal_px
        return Intrinsics(fx=f, fy=f, cx=self.width / 2.0, cy=self.height / 2.0, width=self.width, height=self.height)


def apply_overscan(frame: TrackedFrame, percent: float) -> TrackedFrame:
    """``frame`` with each side grown by ``percent`` / 2 on both ends and the fov grown to keep the pixel size."""
    if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
        raise InputError(f"overscan {percent}%: expected a percentage in [0, 100]")
    width = frame.width + 2 * round(frame.width * percent / 200.0)
    height = frame.height + 2 * round(frame.height * percent / 200.0)
    half = math.atan(math.tan(math.radians(frame.fov_y_deg) / 2.0) * height / frame.height)
    return replace(frame, width=width, height=height, fov_y_deg=math.degrees(2.0 * half), overscan_percent=percent)


def to_normalized(frames: list[TrackedFrame], transform: np.ndarray, scale: float) -> list[TrackedFrame]:
    """``frames`` with poses moved from the dataset frame into a run's normalised frame, given its
    ``dataparser_transforms.json`` (``normalized = scale * (transform @ [p, 1])``, transform [3, 4] rigid):
    rotations are turned by ``transform``'s rotation, positions mapped as points (fov and size unchanged)."""
    t = np.asarray(transform, dtype=np.float64).reshape(3, 4)
    out = []
    for frame in frames:
        pose = np.eye(4)
        pose[:3, :3] = t[:, :3] @ frame.world_from_cam[:3, :3]
        pose[:3, 3] = float(scale) * (t[:, :3] @ frame.world_from_cam[:3, 3] + t[:, 3])
        out.append(replace(frame, world_from_cam=pose))
    return out


def euler_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """[3, 3] camera-to-world rotation (OpenGL camera axes) of a pan/tilt/roll head (see the module docstring)."""
    head = Rotation.from_euler("ZXY", [yaw_deg, pitch_deg, roll_deg], degrees=True)  # intrinsic: Rz Rx Ry
    return head.as_matrix() @ WORLD_FROM_CAM_REST


class _Row:
    """One frame's fields with the place they came from, for error messages."""

    def __init__(self, path: Path, where: str, fields: dict[str, Any], kind: str = "column"):
        self.path, self.where, self.fields, self.kind = path, where, fields, kind

    def fail(self, column: str, problem: str) -> InputError:
        return InputError(f"{self.path}: {self.where} {self.kind} '{column}': {problem}")

    def has(self, names: tuple[str, ...]) -> bool:
        return any(self.fields.get(n) not in (None, "") for n in names)

    def number(self, column: str) -> float:
        if column not in self.fields:
            raise self.fail(column, f"missing {self.kind}")
        raw = self.fields[column]
        if raw is None or raw == "":
            raise self.fail(column, "missing value")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise self.fail(column, f"{raw!r} is not a number") from None
        if not math.isfinite(value):
            raise self.fail(column, f"{raw!r} is not a finite number")
        return value

    def positive(self, column: str) -> float:
        value = self.number(column)
        if value <= 0:
            raise self.fail(column, f"{value:g} must be positive")
        return value

    def integer(self, column: str, minimum: int) -> int:
        value = self.number(column)
        if value != int(value) or value < minimum:
            raise self.fail(column, f"{value:g} is not an integer >= {minimum}")
        return int(value)


def _one_of(row: _Row, first: tuple[str, ...], second: tuple[str, ...], what: str) -> bool:
    """True when ``first`` is used, False for ``second``; exactly one of the two groups must be present."""
    if row.has(first) and row.has(second):
        raise row.fail(first[0], f"give the {what} either as {', '.join(first)} or as {', '.join(second)}, not both")
    if not row.has(first) and not row.has(second):
        raise row.fail(first[0], f"missing {what}: expected {', '.join(first)} or {', '.join(second)}")
    return row.has(first)


def _rotation(row: _Row) -> np.ndarray:
    if not _one_of(row, QUATERNION, EULER, "rotation"):
        return euler_rotation(*(row.number(c) for c in EULER))
    q = np.array([row.number(c) for c in QUATERNION])
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-3:
        raise row.fail("qw", f"quaternion (w, x, y, z) = {q.tolist()} has norm {norm:.6g}; expected a unit quaternion")
    return Rotation.from_quat(np.roll(q / norm, -1)).as_matrix()  # scipy wants (x, y, z, w)


def _fov_y(row: _Row, width: int, height: int) -> tuple[float, dict[str, float | None]]:
    if _one_of(row, ("fov_y_deg",), ("focal_mm",), "lens"):
        fov = row.number("fov_y_deg")
        if not 0.0 < fov < 180.0:
            raise row.fail("fov_y_deg", f"{fov:g} is not a field of view in (0, 180) degrees")
        return fov, {}
    focal = row.positive("focal_mm")
    lens = {c: (row.positive(c) if row.has((c,)) else None) for c in LENS[1:]}
    if lens["sensor_width_mm"] is not None:
        tan_half_y = lens["sensor_width_mm"] / (2.0 * focal) * height / width
    elif lens["sensor_height_mm"] is not None:
        tan_half_y = lens["sensor_height_mm"] / (2.0 * focal)
    else:
        raise row.fail("sensor_width_mm", "focal_mm needs sensor_width_mm or sensor_height_mm")
    return math.degrees(2.0 * math.atan(tan_half_y)), {"focal_mm": focal, **lens}


def _frame(row: _Row) -> TrackedFrame:
    unknown = sorted(k for k in row.fields if k not in KNOWN)
    if unknown:
        raise row.fail(unknown[0], f"unknown {row.kind}; expected only {', '.join(KNOWN)}")
    number = row.integer("frame", 0)
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = _rotation(row)
    world_from_cam[:3, 3] = [row.number(c) for c in POSITION]
    width, height = row.integer("width", 1), row.integer("height", 1)
    fov, lens = _fov_y(row, width, height)
    timecode = row.fields.get("timecode")
    return TrackedFrame(number, world_from_cam, fov, width, height, **lens,
                        timecode=None if timecode in (None, "") else str(timecode))


def _csv_rows(path: Path, text: str) -> list[_Row]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise InputError(f"{path}: empty track file; expected a header row {', '.join(KNOWN[:8])}, ...")
    names = [n.strip() for n in reader.fieldnames]
    rows = []
    for line, raw in enumerate(reader, start=2):
        if None in raw:
            raise InputError(f"{path}: line {line}: more values than the {len(names)} header columns")
        values = dict(zip(names, (v.strip() if v is not None else "" for v in raw.values()), strict=True))
        rows.append(_Row(path, f"line {line}", values))
    return rows


def _json_rows(path: Path, text: str) -> list[_Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); see the track schema") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise InputError(f'{path}: expected a JSON object with a "frames" list')
    defaults = {k: v for k, v in data.items() if k != "frames"}
    rows = []
    for i, item in enumerate(data["frames"]):
        if not isinstance(item, dict):
            raise InputError(f"{path}: frames[{i}] is not an object of named fields")
        rows.append(_Row(path, f"frames[{i}]", {**defaults, **item}, kind="field"))
    return rows


TRACK_SUFFIXES = (".csv", ".json", ".usd", ".usda", ".usdc", ".usdz", ".chan")
"""Track file extensions ``read_track`` reads."""


def _size(path: Path, size: tuple[int, int] | None, found: tuple[int, int] | None) -> tuple[int, int]:
    chosen = found or size
    if chosen is None:
        raise InputError(f"{path}: the file gives no image size; pass the plate size (--size W,H)")
    if int(chosen[0]) < 1 or int(chosen[1]) < 1:
        raise InputError(f"{path}: plate size {chosen[0]}x{chosen[1]}: expected positive pixels")
    return int(chosen[0]), int(chosen[1])


def _usd_frames(path: Path, size: tuple[int, int] | None, camera_prim: str | None) -> list[TrackedFrame]:
    from .camera_formats import read_usd_camera  # heavy: usd-core (only for USD tracks)

    track, lens = read_usd_camera(path, camera_prim)
    width, height = _size(path, size, lens["resolution"])
    return [TrackedFrame(int(frame), track.world_from_cams[i], float(track.fov_y_deg[i]), width, height,
                         float(lens["focal_mm"][i]), float(lens["sensor_width_mm"][i]),
                         float(lens["sensor_height_mm"][i]))
            for i, frame in enumerate(lens["frames"])]


def _chan_frames(path: Path, size: tuple[int, int] | None) -> list[TrackedFrame]:
    from .camera_formats import read_chan  # heavy: scipy only, kept beside the USD reader

    frames, poses, fovs = read_chan(path)
    width, height = _size(path, size, None)
    return [TrackedFrame(int(f), poses[i], float(fovs[i]), width, height) for i, f in enumerate(frames)]


def read_track(path: Path, overscan_percent: float = 0.0, size: tuple[int, int] | None = None,
               camera_prim: str | None = None) -> list[TrackedFrame]:
    """Read a tracked-camera file (CSV / JSON schema in the module docstring, or a USD camera, or a Nuke .chan),
    one TrackedFrame per row / frame, with ``overscan_percent`` applied. ``size`` (width, height) is the plate
    size of formats that carry none; ``camera_prim`` picks a USD camera. Raises InputError naming the file, row
    and column of any problem."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TRACK_SUFFIXES:
        raise InputError(f"{path}: unknown track file extension '{path.suffix}'; expected one of "
                         f"{', '.join(TRACK_SUFFIXES)}")
    if not path.is_file():
        raise InputError(f"{path}: no such track file")
    if suffix == ".chan" or suffix.startswith(".usd"):
        frames = _chan_frames(path, size) if suffix == ".chan" else _usd_frames(path, size, camera_prim)
        _check_unique(path, frames)
        return [apply_overscan(f, overscan_percent) for f in frames]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the track file ({exc})") from None
    rows = _csv_rows(path, text) if suffix == ".csv" else _json_rows(path, text)
    if not rows:
        raise InputError(f"{path}: the track file has no frames")
    frames = [_frame(row) for row in rows]
    return _unique_rows(rows, frames, overscan_percent)


def _check_unique(path: Path, frames: list[TrackedFrame]) -> None:
    numbers = [f.frame for f in frames]
    if len(set(numbers)) != len(numbers):
        repeated = next(n for n in numbers if numbers.count(n) > 1)
        raise InputError(f"{path}: frame {repeated} appears more than once")


def _unique_rows(rows: list[_Row], frames: list[TrackedFrame], overscan_percent: float) -> list[TrackedFrame]:
    seen: dict[int, str] = {}
    for row, frame in zip(rows, frames, strict=True):
        if frame.frame in seen:
            raise row.fail("frame", f"frame {frame.frame} repeats {seen[frame.frame]}")
        seen[frame.frame] = row.where
    return [apply_overscan(f, overscan_percent) for f in frames]
