"""Camera moves leave nerfstage: a render path as an animated camera for Blender, Unreal, Nuke and Houdini.

``export_camera(run, "shot.usda", ShotOptions(path="dolly-zoom"))`` builds the path exactly as ``nerfstage render``
does (``render.plan.build_path`` on the run's training cameras, same size / fps / fov options) and writes it as

* ``.usda`` / ``.usdc`` / ``.usd``: a ``UsdGeomCamera`` (see ``camera_formats.write_usd_camera``);
* ``.chan``: Nuke's channel file (``frame tx ty tz rx ry rz vfov``);
* ``.glb`` / ``.gltf``: a glTF camera node with a TRS animation (yfov through ``KHR_animation_pointer``);
* ``.json``: nerfstudio's ``camera_path.json`` (the normalised frame, as ``render --save-path``: re-renderable).

Frame and units. Every format but ``.json`` carries the camera in the run's **dataset frame** (the world of its
``transforms.json``, where ``export mesh``/``plates``/``panorama`` put their results): the path's poses are
mapped back from the normalised frame with ``dataparser_transforms.json`` (the inverse of what ``render`` applies
to the training cameras), so a CG element placed at a mesh vertex lines up with the NeRF render of the same frame.
Lengths are dataset units; ``meters_per_unit`` (1 = metric captures: the synthetic scene, ARKit/Polycam; a COLMAP
reconstruction's scale is arbitrary unless you measured it) is written as USD ``metersPerUnit``.
Camera axes everywhere: OpenGL (looks along -Z, +Y up, +X right), which is also USD's, glTF's and Nuke's camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, InputError, OutputExistsError
from ..render.paths import CameraPath, write_camera_path
from ..render.plan import ShotOptions, build_path
from . import camera_formats as formats
from .camera_track import CameraTrack
from .gltf import dataset_from_normalized

CAMERA_SUFFIXES = (".usda", ".usdc", ".usd", ".chan", ".glb", ".gltf", ".json")
"""Extensions ``export_camera`` writes."""


@dataclass(frozen=True)
class CameraExportOptions:
    """How a camera move is written (the move itself is ``render.plan.ShotOptions``)."""

    meters_per_unit: float = 1.0
    """Metres per dataset unit, written as USD ``metersPerUnit`` (1 for metric captures)."""
    start_frame: int = 1
    """Frame number of the path's first frame (USD time code, .chan frame column)."""
    sensor_width_mm: float = 36.0
    """Film back width written to USD / used for focal lengths in mm (height follows the frame aspect)."""
    name: str = "camera"
    """Name of the camera prim / node."""
    overwrite: bool = False
    """Replace an existing output file."""


def poses_to_dataset(world_from_cams: np.ndarray, transform: np.ndarray, scale: float) -> np.ndarray:
    """[F, 4, 4] camera-to-world in the normalised frame -> the dataset frame (rotation stays orthonormal: the
    scale moves positions only, axes unchanged)."""
    inverse = dataset_from_normalized(transform, scale)
    rotation = np.asarray(transform, dtype=np.float64).reshape(3, 4)[:, :3].T  # exact inverse of the rigid part
    out = np.array(world_from_cams, dtype=np.float64, copy=True)
    out[:, :3, :3] = rotation[None] @ out[:, :3, :3]
    out[:, :3, 3] = out[:, :3, 3] @ inverse[:3, :3].T + inverse[:3, 3]
    return out


def track_from_path(path: CameraPath, transform: np.ndarray, scale: float,
                    options: CameraExportOptions | None = None) -> CameraTrack:
    """The CameraTrack of a (normalised-frame) CameraPath of a run with dataparser ``transform`` / ``scale``."""
    options = options or CameraExportOptions()
    if path.camera_type != "perspective":
        raise ConfigError(f"camera_type={path.camera_type!r}: only perspective paths export as DCC cameras "
                          "(fisheye / equirectangular have no USD, glTF or Nuke camera)")
    check_options(options)
    return CameraTrack(poses_to_dataset(path.world_from_cams, transform, scale),
                       np.asarray(path.fov_y_deg, dtype=np.float64).copy(), int(path.width), int(path.height),
                       float(path.video_fps()), int(options.start_frame), float(options.meters_per_unit),
                       float(options.sensor_width_mm), options.name)


def check_options(options: CameraExportOptions) -> None:
    """ConfigError naming the field of an unusable option."""
    for name in ("meters_per_unit", "sensor_width_mm"):
        value = float(getattr(options, name))
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name}={value}: expected a positive number", field=name)
    if not options.name.isidentifier():
        raise ConfigError(f"name={options.name!r}: expected a plain identifier (letters, digits, _)", field="name")


def check_camera_output(output: Path, overwrite: bool = False) -> str:
    """The lower-case suffix of ``output`` after checking it is a known camera format and may be written."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in CAMERA_SUFFIXES:
        raise InputError(f"{output}: unknown camera file extension '{output.suffix}'; expected one of "
                         f"{', '.join(CAMERA_SUFFIXES)}")
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give a file name ending in {suffix}")
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: already exists; pass --overwrite to replace it or choose another name")
    return suffix


def run_path(run, shot: ShotOptions) -> CameraPath:
    """The CameraPath ``nerfstage render`` shoots for ``shot`` on the LoadedRun ``run`` (same call as
    ``render.pipeline.render_path``: built-in paths from the training cameras, or a JSON file)."""
    cams = run.world_from_cams[run.train_indices] if run.has_cameras else run.world_from_cams
    return build_path(shot, cams, [run.intrinsics[i] for i in run.train_indices])


def write_track(track: CameraTrack, output: Path, overwrite: bool = False) -> Path:
    """Write ``track`` to ``output`` (.usda/.usdc/.usd, .chan, .glb/.gltf; not .json: see ``export_camera``)."""
    suffix = check_camera_output(output, overwrite)
    if suffix in (".usda", ".usdc", ".usd"):
        return formats.write_usd_camera(track, Path(output), overwrite)
    if suffix == ".chan":
        return formats.write_chan(track, Path(output), overwrite)
    if suffix in (".glb", ".gltf"):
        return formats.write_gltf_camera(track, Path(output), overwrite)
    raise InputError(f"{output}: .json camera paths are written from the path itself (export_camera)")


def export_camera(run, output: Path, shot: ShotOptions | None = None,
                  options: CameraExportOptions | None = None) -> tuple[Path, CameraTrack]:
    """Build ``shot``'s path on the LoadedRun ``run`` (as ``nerfstage render``) and write it to ``output``;
    returns the file and the CameraTrack (dataset frame) it holds."""
    shot, options = shot or ShotOptions(), options or CameraExportOptions()
    check_options(options)
    suffix = check_camera_output(output, options.overwrite)  # refused before any work
    path = run_path(run, shot)
    if not np.isfinite(path.world_from_cams).all():
        raise InputError(f"{output}: the built path has non-finite poses; check the path options")
    track = track_from_path(path, run.scene.transform, run.scene.scale, options)
    if suffix == ".json":
        return write_camera_path(Path(output), path, options.overwrite), track
    return write_track(track, Path(output), options.overwrite), track
