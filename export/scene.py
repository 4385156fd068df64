"""``nerfstage export scene RUN -o set/``: one folder a DCC opens -- the set, the moves and the light.

``set/scene.usda`` (Z-up, ``metersPerUnit``, frame rate of the first saved path) composes separate files:

* ``/World/mesh``: references ``mesh.usdc`` (a ``UsdGeomMesh`` with vertex ``displayColor``, linear), converted
  from the run's exported mesh (``--mesh``, else ``export/mesh.glb`` beside the run as the chain writes it, else
  extracted now with ``export_mesh``). GLB / OBJ are Y-up on disk and turned back to Z-up; a texture is not
  carried over (vertex colours only).
* ``/World/splats`` (only when a Gaussian-splat PLY exists: ``--splats``, else ``export/scene.ply``): an ``Xform``
  with the asset attribute ``nerfstage:splatsFile = @./splats.ply@`` (the original 3DGS PLY layout, copied
  into the folder). usd-core has no splat schema, so DCCs load it with their own 3DGS importer; the attribute
  keeps it a tracked dependency of the set.
* ``/World/cameras/<name>``: every camera path saved for the run (``RUN/camera_paths/*.json``, where the viewer's
  "Save path" writes) as an animated camera, each referencing its own ``cameras/<name>.usda`` (the file
  ``nerfstage export camera`` writes). Non-perspective paths are skipped (listed in the result).
* ``/World/training_cameras``: references ``training_cameras.usda``, one static camera per training view (the
  run's refined poses, each view's own fov), made **invisible** in the scene.
* ``/World/dome``: a ``UsdLuxDomeLight`` whose ``texture:file`` is ``plate_latlong.exr`` (``--plate``, else
  ``export/plate_latlong.exr``, else rendered now at ``plate_width``): scene-linear Rec.709 EXR. The classic
  DomeLight's pole is its local +Y and its centre column looks along local +Z (OpenEXR latlong); the light's
  transform turns that onto the plate's own frame (``export panorama``'s default: level in the run's normalised
  frame, centre column along its +Y), so the dome shows the scene where it is.

``set/README.txt`` states axes, units and colour spaces. Everything is in the run's dataset frame (as the other
exports); see ``docs/interchange.md``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, InputError, OutputExistsError
from ..render.paths import read_camera_path
from ..render.writers import atomic_output
from .camera import CameraExportOptions, poses_to_dataset, track_from_path
from .camera_formats import Y_UP_FROM_Z_UP, add_usd_camera, set_stage_metadata, write_usd_camera
from .camera_track import CameraTrack

DOME_FROM_PLATE = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
"""[3, 3] columns: where the DomeLight's local +X, +Y (pole), +Z (centre column) go in the panorama's frame
(+Z up, centre column along +Y; left of the centre column is -X seen from inside)."""


@dataclass(frozen=True)
class SceneExportOptions:
    """What goes into the set folder and how the missing pieces are made."""

    mesh: Path | None = None
    """Mesh file (.glb, .obj, .ply in the dataset frame, as ``export mesh`` writes); None = the run's
    ``export/mesh.glb`` if there is one, else extracted now."""
    splats: Path | None = None
    """Gaussian-splat PLY; None = the run's ``export/scene.ply`` if there is one (else no splats)."""
    plate: Path | None = None
    """Latlong EXR plate for the dome light; None = the run's ``export/plate_latlong.exr``, else rendered now."""
    mesh_resolution: int = 256
    """Grid samples along the crop box's longest axis when the mesh is extracted now."""
    plate_width: int = 1024
    """Latlong width, pixels, when the plate is rendered now (modest: it lights, it is not a backdrop)."""
    meters_per_unit: float = 1.0
    """Metres per dataset unit (USD ``metersPerUnit``; 1 for metric captures)."""
    overwrite: bool = False
    """Replace an existing set folder's files."""
    progress: bool = True
    """Show progress bars while extracting or rendering."""


@dataclass
class SceneResult:
    """What ``export_scene`` wrote."""

    scene: Path
    """``set/scene.usda``."""
    files: list[Path] = field(default_factory=list)
    """Every file written into the set folder."""
    cameras: list[str] = field(default_factory=list)
    """Prim paths of the animated cameras."""
    skipped_paths: list[str] = field(default_factory=list)
    """Saved camera paths left out (not perspective, unreadable), with the reason."""
    training_cameras: int = 0
    """Training views in the hidden group."""
    made: list[str] = field(default_factory=list)
    """Pieces produced now rather than found (``mesh``, ``plate``)."""


def _found(given: Path | None, run_dir: Path, name: str) -> Path | None:
    """``given``, else ``run_dir/export/name`` or the chain's ``run_dir/../export/name`` when present."""
    if given is not None:
        if not Path(given).is_file():
            raise InputError(f"{given}: no such file")
        return Path(given)
    for folder in (run_dir / "export", run_dir.parent / "export"):
        if (folder / name).is_file():
            return folder / name
    return None


def _mesh_z_up(file: Path):
    """The mesh of ``file`` in the dataset frame (GLB / OBJ are Y-up on disk; PLY is Z-up)."""
    import trimesh  # heavy: trimesh

    try:
        mesh = trimesh.load(file, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds on a damaged file
        raise InputError(f"{file}: not a readable mesh ({exc})") from None
    if Path(file).suffix.lower() in (".glb", ".gltf", ".obj"):
        mesh.apply_transform(np.linalg.inv(Y_UP_FROM_Z_UP))
    return mesh


def _linear_colors(mesh, file: Path) -> np.ndarray | None:  # -> [V, 3] linear Rec.709, or None
    """Vertex colours as USD ``displayColor`` wants them (linear): glTF's COLOR_0 is stored linear already
    (``export.gltf`` converts on write); OBJ / PLY hold the field's 8-bit sRGB-encoded values."""
    from .gltf import srgb_to_linear  # heavy: trimesh (module import)

    if mesh.visual.kind != "vertex":
        return None
    rgb = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
    return rgb if Path(file).suffix.lower() in (".glb", ".gltf") else srgb_to_linear(rgb)


def write_mesh_layer(mesh_file: Path, output: Path, meters_per_unit: float, overwrite: bool) -> Path:
    """``mesh_file`` as a USD layer with one ``UsdGeomMesh`` ``/mesh`` (default prim), dataset frame."""
    from pxr import Usd, UsdGeom, Vt  # heavy: usd-core

    mesh = _mesh_z_up(mesh_file)
    if len(mesh.faces) == 0:
        raise InputError(f"{mesh_file}: the mesh has no faces")
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
    prim = UsdGeom.Mesh.Define(stage, "/mesh")
    stage.SetDefaultPrim(prim.GetPrim())
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    prim.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(vertices.astype(np.float32)))
    prim.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, dtype=np.int32)))
    prim.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.asarray(mesh.faces, dtype=np.int32).reshape(-1)))
    prim.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([vertices.min(0), vertices.max(0)]).astype(np.float32)))
    prim.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    colors = _linear_colors(mesh, mesh_file)
    if colors is not None:
        primvar = prim.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
        primvar.Set(Vt.Vec3fArray.FromNumpy(colors.astype(np.float32)))
    prim.GetPrim().SetCustomDataByKey("nerfstage:source", Path(mesh_file).name)
    return _export_layer(stage, output, overwrite)


def _export_layer(stage, output: Path, overwrite: bool) -> Path:
    with atomic_output(output, overwrite) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise InputError(f"{output}: USD could not write the layer")
    return Path(output)


def training_track(run, meters_per_unit: float) -> tuple[CameraTrack, list[int]]:
    """The run's training views as a CameraTrack in the dataset frame (one frame per view) and their indices."""
    indices = list(run.train_indices) or list(range(len(run.world_from_cams)))
    poses = poses_to_dataset(run.world_from_cams[indices], run.scene.transform, run.scene.scale)
    intr = [run.intrinsics[i] for i in indices]
    fovs = np.degrees(2.0 * np.arctan(0.5 * np.array([k.height / k.fy for k in intr])))
    return CameraTrack(poses, fovs, int(intr[0].width), int(intr[0].height), 1.0, 0, meters_per_unit,
                       name="view"), indices


def write_training_layer(run, output: Path, meters_per_unit: float, overwrite: bool) -> tuple[Path, int]:
    """One static camera per training view under ``/training_cameras`` (default prim); returns (file, count)."""
    from pxr import Usd, UsdGeom  # heavy: usd-core

    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
    group = UsdGeom.Xform.Define(stage, "/training_cameras")
    stage.SetDefaultPrim(group.GetPrim())
    track, indices = training_track(run, meters_per_unit)
    for k, index in enumerate(indices):
        view = CameraTrack(track.world_from_cams[k:k + 1], track.fov_y_deg[k:k + 1], track.width, track.height,
                           1.0, 0, meters_per_unit)
        camera = add_usd_camera(stage, f"/training_cameras/view_{index:05d}", view, animated=False)
        camera.GetPrim().SetCustomDataByKey("nerfstage:image", str(run.image_paths[index].name)
                                            if run.image_paths else "")
    return _export_layer(stage, output, overwrite), len(indices)


def _saved_paths(run_dir: Path) -> list[Path]:
    folder = run_dir / "camera_paths"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def write_camera_layers(run, folder: Path, options: SceneExportOptions) -> tuple[list[tuple[str, Path]], list[str]]:
    """Every saved camera path of the run as ``folder/cameras/<name>.usda``; returns ((name, file) ...) and the
    skipped paths with reasons."""
    written, skipped = [], []
    for file in _saved_paths(Path(run.run_dir)):
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in file.stem) or "path"
        name = name if name[0].isalpha() else f"path_{name}"
        try:
            path = read_camera_path(file)
            track = track_from_path(path, run.scene.transform, run.scene.scale,
                                    CameraExportOptions(meters_per_unit=options.meters_per_unit))
        except InputError as err:
            skipped.append(f"{file.name}: {str(err).splitlines()[0]}")
            continue
        written.append((name, write_usd_camera(track, folder / "cameras" / f"{name}.usda", options.overwrite)))
    return written, skipped


def _copy(source: Path, target: Path, overwrite: bool) -> Path:
    if source.resolve() == target.resolve():
        return target
    with atomic_output(target, overwrite) as tmp:
        shutil.copyfile(source, tmp)
    return target


def _plate(run, folder: Path, options: SceneExportOptions, made: list[str]) -> Path:
    from .panorama import PanoramaOptions, export_panorama  # heavy: torch / OpenImageIO

    target = folder / "plate_latlong.exr"
    found = _found(options.plate, Path(run.run_dir), "plate_latlong.exr")
    if found is not None:
        return _copy(found, target, options.overwrite)
    made.append("plate")
    export_panorama(run, target, PanoramaOptions(width=int(options.plate_width), overwrite=options.overwrite,
                                                 progress=options.progress))
    return target


def _mesh(run, folder: Path, options: SceneExportOptions, made: list[str]) -> Path:
    from .from_run import MeshExportOptions, export_mesh  # heavy: torch

    found = _found(options.mesh, Path(run.run_dir), "mesh.glb")
    if found is None:
        made.append("mesh")
        found = folder / "mesh.glb"
        export_mesh(run, found, MeshExportOptions(resolution=int(options.mesh_resolution),
                                                  overwrite=options.overwrite, progress=options.progress))
    return write_mesh_layer(found, folder / "mesh.usdc", options.meters_per_unit, options.overwrite)


def dome_rotation(run) -> np.ndarray:  # -> [4, 4]
    """The dome light's local-to-world transform: OpenEXR latlong axes -> the plate's frame -> dataset frame."""
    rotation = np.asarray(run.scene.transform, dtype=np.float64)[:, :3].T  # normalised -> dataset
    out = np.eye(4)
    out[:3, :3] = rotation @ DOME_FROM_PLATE
    return out


def compose_scene(run, file: Path, parts: dict, options: SceneExportOptions, fps: float, frames: int):
    """Write the stage at ``file`` (a temp name inside the set folder, so the relative references resolve while it
    is built) referencing ``parts``."""
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdLux  # heavy: usd-core

    stage = Usd.Stage.CreateNew(str(file))
    set_stage_metadata(stage, options.meters_per_unit, fps, 1, max(frames, 1))
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    stage.DefinePrim("/World/mesh").GetReferences().AddReference("./mesh.usdc")
    if "splats" in parts:
        splats = UsdGeom.Xform.Define(stage, "/World/splats")
        splats.GetPrim().CreateAttribute("nerfstage:splatsFile", Sdf.ValueTypeNames.Asset).Set(
            Sdf.AssetPath("./splats.ply"))
    UsdGeom.Scope.Define(stage, "/World/cameras")
    for name, _file in parts["cameras"]:
        prim = stage.DefinePrim(f"/World/cameras/{name}")
        prim.GetReferences().AddReference(f"./cameras/{name}.usda", Sdf.Path("/World/camera"))
    training = stage.DefinePrim("/World/training_cameras")
    training.GetReferences().AddReference("./training_cameras.usda")
    UsdGeom.Imageable(training).MakeInvisible()
    dome = UsdLux.DomeLight.Define(stage, "/World/dome")
    dome.CreateTextureFileAttr(Sdf.AssetPath("./plate_latlong.exr"))
    dome.CreateTextureFormatAttr(UsdLux.Tokens.latlong)
    dome.AddTransformOp().Set(Gf.Matrix4d(dome_rotation(run).T.tolist()))
    stage.GetRootLayer().Save()


README = """nerfstage set: {run}

Open scene.usda (USD; Blender File > Import > USD, Unreal USD Stage, Houdini Solaris / LOPs, Nuke 14+ ReadGeo).

Axes: right-handed, +Z up (USD upAxis = "Z"), the run's dataset frame (the world of its transforms.json), the
same frame as `nerfstage export mesh / pointcloud / plates`. Cameras: OpenGL/USD convention, looking along -Z
with +Y up; focalLength and apertures in tenths of a scene unit (UsdGeom), film back {sensor:g} mm wide.
Units: {units}.
Frame rate: {fps:g} fps (timeCodesPerSecond); frame 1 = first frame of each path.

Files:
  scene.usda              the set (references everything below)
  mesh.usdc               /World/mesh: surface mesh, vertex displayColor (linear)
{splats}  cameras/*.usda          /World/cameras/*: every camera path saved for the run, animated
  training_cameras.usda   /World/training_cameras: the training views (invisible)
  plate_latlong.exr       /World/dome: DomeLight texture, latlong
Colour: plate_latlong.exr is scene-linear Rec.709 (D65), half float, as `nerfstage export panorama` writes
(the field's sRGB-encoded output with the sRGB curve undone); mesh displayColor is linear Rec.709.
"""


def write_readme(folder: Path, run, options: SceneExportOptions, fps: float, splats: bool) -> Path:
    units = ("metres (metersPerUnit = 1; metric capture assumed, pass --meters-per-unit otherwise)"
             if options.meters_per_unit == 1.0 else f"{options.meters_per_unit:g} m per unit (metersPerUnit)")
    text = README.format(run=Path(run.run_dir).name, sensor=CameraExportOptions().sensor_width_mm, units=units,
                         fps=fps, splats="  splats.ply              /World/splats: Gaussian splats (3DGS PLY, "
                                         "asset attribute nerfstage:splatsFile)\n" if splats else "")
    with atomic_output(folder / "README.txt", options.overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return folder / "README.txt"


def export_scene(run, folder: Path, options: SceneExportOptions | None = None) -> SceneResult:
    """Write the set folder of the LoadedRun ``run`` (see the module docstring)."""
    options = options or SceneExportOptions()
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; give a folder for the set")
    if (folder / "scene.usda").exists() and not options.overwrite:
        raise OutputExistsError(f"{folder / 'scene.usda'}: already exists; pass --overwrite to replace the set")
    if not run.has_cameras:
        raise ConfigError(f"{run.run_dir}: the run's dataset ({run.dataset_path}) is not available; the set's "
                          "training cameras come from it")
    _check_given(options)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _write_set(run, folder, options)
    except BaseException:  # a failed new set leaves no folder behind (a folder the user had is not removed)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _check_given(options: SceneExportOptions) -> None:
    """Read the mesh, splats and plate the user gave before anything is written (InputError naming the file)."""
    if options.mesh is not None:
        _mesh_z_up(_found(options.mesh, Path("."), "mesh.glb"))
    if options.splats is not None:
        from ..render.splats.io import read_splats  # heavy: torch

        read_splats(_found(options.splats, Path("."), "scene.ply"))
    if options.plate is not None:
        _check_plate(_found(options.plate, Path("."), "plate_latlong.exr"))


def _check_plate(file: Path) -> None:
    """InputError unless ``file`` is an EXR image OpenImageIO can open."""
    import OpenImageIO as oiio  # heavy: OpenImageIO

    image = oiio.ImageInput.open(str(file)) if file.suffix.lower() == ".exr" else None
    if image is None:
        raise InputError(f"{file}: not a readable latlong EXR (the dome light's plate must be an .exr image)")
    image.close()


def _write_set(run, folder: Path, options: SceneExportOptions) -> SceneResult:
    made: list[str] = []
    files = [_mesh(run, folder, options, made)]
    files += [folder / "mesh.glb"] if "mesh" in made else []
    splats = _found(options.splats, Path(run.run_dir), "scene.ply")
    if splats is not None:
        files.append(_copy(splats, folder / "splats.ply", options.overwrite))
    cameras, skipped = write_camera_layers(run, folder, options)
    files += [file for _, file in cameras]
    training, count = write_training_layer(run, folder / "training_cameras.usda", options.meters_per_unit,
                                           options.overwrite)
    files += [training, _plate(run, folder, options, made)]
    fps, frames = _timing(cameras)
    parts = {"cameras": cameras, **({"splats": True} if splats is not None else {})}
    files.append(write_readme(folder, run, options, fps, splats is not None))
    with atomic_output(folder / "scene.usda", options.overwrite) as tmp:  # last: the set is complete
        compose_scene(run, tmp, parts, options, fps, frames)
    files.append(folder / "scene.usda")
    return SceneResult(folder / "scene.usda", files, [f"/World/cameras/{n}" for n, _ in cameras], skipped, count,
                       made)


def _timing(cameras: list[tuple[str, Path]]) -> tuple[float, int]:
    """(fps, frames) of the first saved path (24 fps, 1 frame without paths)."""
    from pxr import Sdf  # heavy: usd-core

    if not cameras:
        return 24.0, 1
    layer = Sdf.Layer.FindOrOpen(str(cameras[0][1]))
    return float(layer.timeCodesPerSecond), int(layer.endTimeCode - layer.startTimeCode + 1)
