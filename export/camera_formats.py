"""Write and read animated cameras: USD (``usd-core``), Nuke ``.chan`` and glTF (``pygltflib``).

Every function takes or returns a :class:`~nerfstage.export.camera_track.CameraTrack` (dataset frame, +Z up, OpenGL
camera axes, vertical fov per frame). Conventions per format:

USD
    ``/World`` (default prim, ``Xform``) holds ``/World/<name>``, a ``UsdGeomCamera`` whose one ``xformOp:transform``
    (matrix4d, double precision) is time-sampled at every frame, time code = frame number. Stage metadata:
    ``upAxis = "Z"`` (the dataset frame as it is: no axis change), ``metersPerUnit``, ``timeCodesPerSecond`` =
    ``framesPerSecond`` = the path's fps, ``startTimeCode`` / ``endTimeCode`` = first / last frame. Lens and film
    back follow UsdGeom's rule: ``focalLength``, ``horizontalAperture`` and ``verticalAperture`` are in **tenths of
    a scene unit** (millimetres on a centimetre stage; with metres, 35 mm is 0.35), so ``mm = value * 100 *
    metersPerUnit``; the film back (``sensor_width_mm`` wide, its height set by the image aspect) is constant and
    ``focalLength`` carries the zoom (animated: a dolly zoom keeps its focal change). A ``UsdRenderSettings`` prim
    ``/Render/settings`` records the image ``resolution`` and points at the camera.
Nuke ``.chan``
    One line per frame: ``frame tx ty tz rx ry rz vfov`` (degrees), in Nuke's **Y-up** world, which is the
    dataset frame turned as the GLB / OBJ meshes are ((x, y, z) -> (x, z, -y), so a mesh imported in Nuke's
    ReadGeo lines up). Rotations in Nuke's default order ZXY: the camera is turned about Z first, then X, then Y
    (world axes), i.e. ``R = Ry @ Rx @ Rz``.
glTF
    Y-up like the meshes. One node carrying a perspective camera (``yfov`` of the first frame, ``aspectRatio``) with
    a linear ``translation`` + ``rotation`` animation, times ``(frame - start) / fps`` seconds. The per-frame
    ``yfov`` is animated through ``KHR_animation_pointer`` (``/cameras/0/perspective/yfov``; listed in
    ``extensionsUsed`` only, so importers without it -- Blender 3.4 -- keep the first frame's fov); the node's
    ``extras`` also carry ``fps``, ``start_frame``, image size and ``meters_per_unit``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..core.errors import InputError
from ..core.files import read_gltf
from ..render.writers import atomic_output
from .camera_track import CameraTrack

Y_UP_FROM_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
"""[4, 4] the meshes' Z-up -> Y-up turn (``export.gltf``): (x, y, z) -> (x, z, -y)."""
NEAR, FAR = 0.01, 10000.0
"""Clipping range written to USD / glTF, scene units."""


def tenths_per_mm(meters_per_unit: float) -> float:
    """USD lens units (tenths of a scene unit) per millimetre."""
    return 1.0 / (100.0 * meters_per_unit)


# --- USD ----------------------------------------------------------------------------------------------------------

def usd_stage(track: CameraTrack):
    """An in-memory stage with ``/World/<name>`` animated (see the module docstring)."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdRender  # heavy: usd-core

    stage = Usd.Stage.CreateInMemory()
    set_stage_metadata(stage, track.meters_per_unit, track.fps, track.start_frame, track.start_frame + len(track) - 1)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    add_usd_camera(stage, f"/World/{track.name}", track)
    settings = UsdRender.Settings.Define(stage, "/Render/settings")
    settings.CreateResolutionAttr(Gf.Vec2i(int(track.width), int(track.height)))
    settings.CreateCameraRel().SetTargets([Sdf.Path(f"/World/{track.name}")])
    return stage


def set_stage_metadata(stage, meters_per_unit: float, fps: float, start: float, end: float) -> None:
    """upAxis Z, metersPerUnit, frame rate and range of a stage."""
    from pxr import UsdGeom  # heavy: usd-core

    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
    stage.SetTimeCodesPerSecond(float(fps))
    stage.SetFramesPerSecond(float(fps))
    stage.SetStartTimeCode(float(start))
    stage.SetEndTimeCode(float(end))


def add_usd_camera(stage, prim_path: str, track: CameraTrack, animated: bool = True):
    """Define the UsdGeomCamera of ``track`` at ``prim_path`` (time samples per frame, or the first frame as
    default values when ``animated`` is False); returns it."""
    from pxr import Gf, UsdGeom  # heavy: usd-core

    camera = UsdGeom.Camera.Define(stage, prim_path)
    unit = tenths_per_mm(track.meters_per_unit)
    camera.CreateProjectionAttr(UsdGeom.Tokens.perspective)
    camera.CreateHorizontalApertureAttr(float(track.sensor_width_mm * unit))
    camera.CreateVerticalApertureAttr(float(track.sensor_height_mm * unit))
    camera.CreateClippingRangeAttr(Gf.Vec2f(NEAR, FAR))
    op = camera.AddTransformOp()
    focal = camera.CreateFocalLengthAttr()
    for i, (pose, mm) in enumerate(zip(track.world_from_cams, track.focal_mm(), strict=True)):
        matrix = Gf.Matrix4d(np.asarray(pose, dtype=np.float64).T.tolist())  # Gf: row vectors (transposed)
        if not animated:
            op.Set(matrix)
            focal.Set(float(mm * unit))
            break
        time = float(track.frames[i])
        op.Set(matrix, time)
        focal.Set(float(mm * unit), time)
    return camera


def write_usd_camera(track: CameraTrack, output: Path, overwrite: bool = False) -> Path:
    """Write ``track`` as a USD layer (.usda text, .usdc / .usd crate), atomically."""
    stage = usd_stage(track)
    with atomic_output(output, overwrite) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise InputError(f"{output}: USD could not write the layer")
    return Path(output)


def _usd_times(camera) -> list[float]:
    """Every time at which the camera's transform or lens is sampled (its own and its ancestors')."""
    from pxr import UsdGeom  # heavy: usd-core

    times: set[float] = set()
    prim = camera.GetPrim()
    while prim and prim.GetPath().pathString != "/":
        xformable = UsdGeom.Xformable(prim)
        if xformable:
            times.update(xformable.GetTimeSamples())
        prim = prim.GetParent()
    for attr in (camera.GetFocalLengthAttr(), camera.GetHorizontalApertureAttr(), camera.GetVerticalApertureAttr()):
        times.update(attr.GetTimeSamples())
    return sorted(times)


def _usd_resolution(stage, camera_path) -> tuple[int, int] | None:
    """(width, height) of the RenderSettings that points at the camera (or the only one), if any."""
    from pxr import UsdRender  # heavy: usd-core

    found = [UsdRender.Settings(p) for p in stage.Traverse() if p.IsA(UsdRender.Settings)]
    mine = [s for s in found if camera_path in s.GetCameraRel().GetTargets()]
    chosen = mine[0] if mine else found[0] if len(found) == 1 else None
    if chosen is None or not chosen.GetResolutionAttr().HasAuthoredValue():
        return None
    res = chosen.GetResolutionAttr().Get()
    return int(res[0]), int(res[1])


def find_usd_camera(stage, file: Path, prim_path: str | None = None):
    """The UsdGeomCamera at ``prim_path``, or the first camera of the stage; InputError naming the file."""
    from pxr import Usd, UsdGeom  # heavy: usd-core

    if prim_path:
        prim = stage.GetPrimAtPath(prim_path)
        if not prim or not prim.IsA(UsdGeom.Camera):
            raise InputError(f"{file}: no camera prim at {prim_path}")
        return UsdGeom.Camera(prim)
    cameras = [p for p in Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Camera)]
    if not cameras:
        raise InputError(f"{file}: the USD stage holds no UsdGeomCamera")
    return UsdGeom.Camera(cameras[0])


def _tf_reason(exc: Exception) -> str:
    """The reason of a Tf.ErrorException without its C++ location (``Error in '...' at line N in file F : 'why'``)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
    return text.rsplit(" : ", 1)[-1].strip("'")


def open_usd(file: Path):
    from pxr import Usd  # heavy: usd-core

    try:
        stage = Usd.Stage.Open(str(file))
    except Exception as exc:  # pxr raises Tf.ErrorException, not a nerfstage error
        raise InputError(f"{file}: not a readable USD file ({_tf_reason(exc)})") from None
    if stage is None:
        raise InputError(f"{file}: not a readable USD file")
    return stage


def _usd_frame(camera, code, mpu: float, z_up: bool, file: Path) -> tuple[np.ndarray, float, tuple]:
    """(world_from_cam [4, 4] dataset frame in metres, vertical fov degrees, (focal, aperture w, h) mm) of a
    UsdGeomCamera at one time code."""
    pose = np.array(camera.ComputeLocalToWorldTransform(code), dtype=np.float64).T  # Gf row vectors
    pose[:3, :3] /= np.linalg.norm(pose[:3, :3], axis=0, keepdims=True)  # drop any scale
    pose[:3, 3] *= mpu  # stage units -> metres (the dataset frame of a metric capture)
    pose = pose if z_up else np.linalg.inv(Y_UP_FROM_Z_UP) @ pose
    gf = camera.GetCamera(code)
    focal, h_ap, v_ap = float(gf.focalLength), float(gf.horizontalAperture), float(gf.verticalAperture)
    if not (focal > 0 and v_ap > 0 and h_ap > 0):
        raise InputError(f"{file}: camera {camera.GetPath()} has focalLength={focal}, apertures "
                         f"{h_ap} x {v_ap} at time {code.GetValue()}; expected positive values")
    fov = math.degrees(2.0 * math.atan(0.5 * v_ap / focal))
    return pose, fov, tuple(value * 100.0 * mpu for value in (focal, h_ap, v_ap))  # tenths of a unit -> mm


def read_usd_camera(file: Path, prim_path: str | None = None) -> tuple[CameraTrack, dict]:
    """The animated camera of a USD file (``prim_path`` or its first camera) in the dataset frame (Z-up, the
    stage's units as metres x metersPerUnit; Y-up stages are turned). Returns the track and per-frame lens
    ``{"focal_mm": [F], "sensor_width_mm": [F], "sensor_height_mm": [F], "resolution": (w, h) | None,
    "frames": [F] frame numbers (time codes)}``."""
    from pxr import Usd, UsdGeom  # heavy: usd-core

    file = Path(file)
    stage = open_usd(file)
    camera = find_usd_camera(stage, file, prim_path)
    times = _usd_times(camera)  # [] for a static camera: one frame at the default time
    codes = [Usd.TimeCode(t) for t in times] or [Usd.TimeCode.Default()]
    frames = [int(round(t)) for t in times] or [1]
    mpu = float(UsdGeom.GetStageMetersPerUnit(stage))
    z_up = UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    poses, fovs, lens = [], [], {"focal_mm": [], "sensor_width_mm": [], "sensor_height_mm": []}
    for code in codes:
        pose, fov, mm = _usd_frame(camera, code, mpu, z_up, file)
        poses.append(pose)
        fovs.append(fov)
        for key, value in zip(lens, mm, strict=True):
            lens[key].append(value)
    resolution = _usd_resolution(stage, camera.GetPath())
    fps = float(stage.GetTimeCodesPerSecond()) or 24.0
    width, height = resolution or (0, 0)
    track = CameraTrack(np.stack(poses), np.array(fovs), width, height, fps, frames[0], 1.0,
                        float(lens["sensor_width_mm"][0]), camera.GetPrim().GetName())
    return track, {**{k: np.array(v) for k, v in lens.items()}, "resolution": resolution, "frames": frames}


# --- Nuke .chan ---------------------------------------------------------------------------------------------------

def chan_rows(track: CameraTrack) -> np.ndarray:  # -> [F, 8]
    """``frame tx ty tz rx ry rz vfov`` per frame (Y-up, ZXY degrees; see the module docstring)."""
    poses = Y_UP_FROM_Z_UP[None] @ track.world_from_cams
    rz, rx, ry = Rotation.from_matrix(poses[:, :3, :3]).as_euler("zxy", degrees=True).T  # extrinsic: Ry Rx Rz
    return np.column_stack([track.frames, poses[:, :3, 3], rx, ry, rz, track.fov_y_deg])


def write_chan(track: CameraTrack, output: Path, overwrite: bool = False) -> Path:
    """Write ``track`` as a Nuke .chan file, atomically."""
    lines = []
    for row in chan_rows(track):
        lines.append(" ".join([str(int(row[0]))] + [repr(float(v)) for v in row[1:]]))
    with atomic_output(output, overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(output)


def read_chan(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Nuke .chan camera file -> (frames [F] int, world_from_cams [F, 4, 4] dataset frame, vfov [F] degrees).
    Lines ``frame tx ty tz rx ry rz vfov`` (Y-up, ZXY degrees); InputError naming the file and line."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read the .chan file ({exc})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise InputError(f"{file}: line {number}: not numbers: {line.strip()[:60]!r}") from None
        if len(values) != 8 or not all(math.isfinite(v) for v in values):
            raise InputError(f"{file}: line {number}: expected 8 finite numbers (frame tx ty tz rx ry rz vfov), "
                             f"got {len(values)}; a camera .chan needs the vertical fov column")
        if not 0.0 < values[7] < 180.0:
            raise InputError(f"{file}: line {number}: vfov {values[7]:g} is not in (0, 180) degrees")
        rows.append(values)
    if not rows:
        raise InputError(f"{file}: the .chan file has no frames")
    data = np.array(rows)
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :3] = Rotation.from_euler("zxy", data[:, [6, 4, 5]], degrees=True).as_matrix()
    poses[:, :3, 3] = data[:, 1:4]
    return data[:, 0].round().astype(int), np.linalg.inv(Y_UP_FROM_Z_UP)[None] @ poses, data[:, 7]


# --- glTF ---------------------------------------------------------------------------------------------------------

def _accessor(gltf, blob: bytearray, data: np.ndarray, kind: str, with_bounds: bool = False) -> int:
    """Append float32 ``data`` to ``blob`` with its bufferView and accessor; returns the accessor index."""
    import pygltflib  # heavy: pygltflib

    array = np.ascontiguousarray(data, dtype=np.float32)
    while len(blob) % 4:
        blob.append(0)
    gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=array.nbytes))
    blob.extend(array.tobytes())
    count = len(array)
    accessor = pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=pygltflib.FLOAT, count=count,
                                  type=kind)
    if with_bounds:
        flat = array.reshape(count, -1)
        accessor.min, accessor.max = flat.min(0).tolist(), flat.max(0).tolist()
    gltf.accessors.append(accessor)
    return len(gltf.accessors) - 1


def gltf_document(track: CameraTrack):
    """The pygltflib document of ``track`` and its binary blob (see the module docstring)."""
    import pygltflib  # heavy: pygltflib

    poses = Y_UP_FROM_Z_UP[None] @ track.world_from_cams
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat()  # [F, 4] x, y, z, w (glTF's order)
    quats *= np.where(quats[:, 3:] < 0, -1.0, 1.0)  # one hemisphere, so linear interpolation takes the short way
    yfov = np.radians(track.fov_y_deg)
    perspective = pygltflib.Perspective(yfov=float(yfov[0]), aspectRatio=track.width / track.height, znear=NEAR,
                                        zfar=FAR)
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="nerfstage export camera", version="2.0"),
                           scene=0, scenes=[pygltflib.Scene(nodes=[0])],
                           cameras=[pygltflib.Camera(type="perspective", perspective=perspective, name=track.name)])
    gltf.nodes.append(pygltflib.Node(name=track.name, camera=0, translation=poses[0, :3, 3].tolist(),
                                     rotation=quats[0].tolist(),
                                     extras={"fps": track.fps, "start_frame": track.start_frame,
                                             "width": track.width, "height": track.height,
                                             "meters_per_unit": track.meters_per_unit,
                                             "sensor_width_mm": track.sensor_width_mm}))
    blob = bytearray()
    times = _accessor(gltf, blob, np.arange(len(track)) / track.fps, pygltflib.SCALAR, with_bounds=True)
    outputs = {"translation": _accessor(gltf, blob, poses[:, :3, 3], pygltflib.VEC3),
               "rotation": _accessor(gltf, blob, quats, pygltflib.VEC4),
               "yfov": _accessor(gltf, blob, yfov, pygltflib.SCALAR)}
    samplers = [pygltflib.AnimationSampler(input=times, output=index, interpolation="LINEAR")
                for index in outputs.values()]
    channels = [pygltflib.AnimationChannel(sampler=0, target=pygltflib.AnimationChannelTarget(node=0,
                                                                                              path="translation")),
                pygltflib.AnimationChannel(sampler=1, target=pygltflib.AnimationChannelTarget(node=0, path="rotation")),
                pygltflib.AnimationChannel(sampler=2, target=pygltflib.AnimationChannelTarget(
                    path="pointer", extensions={"KHR_animation_pointer": {"pointer": "/cameras/0/perspective/yfov"}}))]
    gltf.animations.append(pygltflib.Animation(name=track.name, samplers=samplers, channels=channels))
    gltf.extensionsUsed = ["KHR_animation_pointer"]
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    return gltf, bytes(blob)


def write_gltf_camera(track: CameraTrack, output: Path, overwrite: bool = False) -> Path:
    """Write ``track`` as .glb (binary) or .gltf (JSON, buffer embedded as a data URI), atomically."""
    gltf, blob = gltf_document(track)
    gltf.set_binary_blob(blob)
    with atomic_output(output, overwrite) as tmp:
        if Path(output).suffix.lower() == ".glb":
            gltf.save_binary(str(tmp))
        else:
            gltf.convert_buffers(__import__("pygltflib").BufferFormat.DATAURI)
            gltf.save_json(str(tmp))
    return Path(output)


def _read_accessor(gltf, index: int) -> np.ndarray:
    """Float data of accessor ``index`` (float32, tightly packed, as ``_accessor`` writes)."""
    import pygltflib  # heavy: pygltflib

    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    width = {pygltflib.SCALAR: 1, pygltflib.VEC3: 3, pygltflib.VEC4: 4}[accessor.type]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    data = np.frombuffer(blob, dtype=np.float32, count=accessor.count * width, offset=start)
    return data.reshape(accessor.count, width).astype(np.float64).squeeze(-1) if width == 1 else \
        data.reshape(accessor.count, width).astype(np.float64)


def read_gltf_camera(file: Path) -> CameraTrack:
    """The camera track of a glTF file written by ``write_gltf_camera`` (first camera node, its TRS animation and
    KHR_animation_pointer yfov), back in the dataset frame (Z-up)."""
    import pygltflib  # heavy: pygltflib

    gltf = read_gltf(file)
    if gltf.buffers and gltf.buffers[0].uri and gltf.buffers[0].uri.startswith("data:"):
        gltf.convert_buffers(pygltflib.BufferFormat.BINARYBLOB)
    node_index = next((i for i, n in enumerate(gltf.nodes) if n.camera is not None), None)
    if node_index is None or not gltf.animations:
        raise InputError(f"{file}: no animated camera node in the glTF file")
    node, animation = gltf.nodes[node_index], gltf.animations[0]
    data: dict[str, np.ndarray] = {}
    for channel in animation.channels:
        sampler = animation.samplers[channel.sampler]
        key = channel.target.path if channel.target.node == node_index else "yfov"
        data[key], data["times"] = _read_accessor(gltf, sampler.output), _read_accessor(gltf, sampler.input)
    poses = np.tile(np.eye(4), (len(data["times"]), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(data["rotation"]).as_matrix()
    poses[:, :3, 3] = data["translation"]
    extras = node.extras or {}
    camera = gltf.cameras[node.camera].perspective
    yfov = data.get("yfov", np.full(len(poses), camera.yfov))
    fps = float(extras.get("fps", 1.0 / max(float(np.diff(data["times"]).mean()), 1e-9) if len(poses) > 1 else 24))
    width = int(extras.get("width", round(camera.aspectRatio * 1000)))
    return CameraTrack(np.linalg.inv(Y_UP_FROM_Z_UP)[None] @ poses, np.degrees(yfov), width,
                       int(extras.get("height", 1000)), fps, int(extras.get("start_frame", 1)),
                       float(extras.get("meters_per_unit", 1.0)), float(extras.get("sensor_width_mm", 36.0)),
                       node.name or "camera")
