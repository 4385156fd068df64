"""``nerfstage export mesh|pointcloud|panorama|plates|splats|camera|scene``: a trained run leaves nerfstage for
engines, web viewers, DCCs and LED walls.

Registered in ``nerfstage/app/cli.py`` as a typer sub-app. Thin like the rest of the CLI: options are parsed here, the
work is done by ``nerfstage.export`` (imported inside the commands, so ``nerfstage --help`` stays cheap), library
errors become one line on stderr with exit code 2 (through ``nerfstage.cli.main``), and every command prints the
files it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import ConfigError
from ..core.lock import output_lock
from .cli_common import (
    MEMORY_GB,
    CameraPath,
    Center,
    Device,
    Ease,
    FocusDistance,
    Fov,
    FovEnd,
    Fps,
    Frames,
    MaxRaysPerChunk,
    MemoryGb,
    OrbitHeight,
    Overwrite,
    Quiet,
    Radius,
    RunArg,
    Seconds,
    Shard,
    Smoothing,
    Turns,
    Width,
    fills,
    finite,
    given,
    lowered,
    memory_bytes,
    new_app,
    non_negative,
    numbers,
    positive,
    shard_note,
    shard_spec,
)

export_app = new_app("export", "Meshes, point clouds, 360 plates, tracked-camera plates, Gaussian splats, camera "
                               "moves and USD sets from a trained run.")


def _load(run: Path, device: str):
    from nerfstage.core.shards import bind_local_device  # light, but kept out of CLI start-up
    from nerfstage.nerf.run import load_run  # heavy: torch (not at CLI start-up)

    bind_local_device()
    return load_run(run, device=device)


def _size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``--size W,H`` as (width, height) pixels."""
    values = numbers(text, 2, "--size", "1920,1080")
    if values is None:
        return None
    if any(v != int(v) or v < 1 for v in values):
        raise ConfigError(f"--size {text!r}: expected two positive whole numbers of pixels, e.g. 1920,1080")
    return int(values[0]), int(values[1])


def _files(files) -> str:
    return ", ".join(str(f) for f in files)


@export_app.command(cls=fills("nerfstage.export.from_run:MeshExportOptions", texture_size="texture_resolution"))
def mesh(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="scene.glb (glTF 2.0, Y-up) | .obj | .ply.")],
    bbox: Annotated[
        Optional[str], typer.Option(help="Crop box xmin,ymin,zmin,xmax,ymax,zmax (dataset frame; default: what "
                                         "the cameras saw).")
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(help="Density iso-level (default: automatic).", callback=finite)
    ] = None,
    resolution: Annotated[
        Optional[int], typer.Option(help="Grid samples along the crop box's longest axis.", callback=positive)
    ] = None,
    max_faces: Annotated[
        Optional[int], typer.Option("--max-faces", help="Decimate to at most this many faces.", callback=positive)
    ] = None,
    texture: Annotated[bool, typer.Option("--texture", help="UV-unwrap and bake a colour texture PNG.")] = False,
    texture_size: Annotated[
        Optional[int], typer.Option("--texture-size", help="Texture side, texels.", callback=positive)
    ] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Surface mesh of the field (marching cubes, floaters removed, vertex colours or a baked texture)."""
    from nerfstage.export.from_run import (  # heavy: torch (not at CLI start-up)
        MeshExportOptions,
        export_mesh,
    )
    from nerfstage.export.gltf import check_mesh_path  # heavy: torch (not at CLI start-up)

    box = numbers(bbox, 6, "--bbox", "-1,-1,0,1,1,2")
    check_mesh_path(output, overwrite)
    options = MeshExportOptions(**given(bbox=box, threshold=threshold, resolution=resolution, max_faces=max_faces,
                                        texture_resolution=texture_size),
                                texture=texture, overwrite=overwrite, progress=not quiet)
    with output_lock(output):
        result = export_mesh(_load(run, device), output, options)
    s = result.stats
    print(f"mesh {s['faces']:.0f} faces, {s['vertices']:.0f} vertices (threshold {s['threshold']:.3g}) in "
          f"{result.seconds:.1f} s -> {_files(result.files)}")


@export_app.command(cls=fills("nerfstage.export.from_run:PointCloudExportOptions", min_opacity="min_accumulation"))
def pointcloud(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="points.ply (binary, Z-up, dataset frame).")],
    num_points: Annotated[
        Optional[int], typer.Option("--num-points", help="Most points written.", callback=positive)
    ] = None,
    neighbors: Annotated[
        Optional[int], typer.Option(help="Outlier test: neighbours per point (0 = no removal).", callback=non_negative)
    ] = None,
    std_ratio: Annotated[
        Optional[float], typer.Option("--std-ratio", help="Outlier test: standard deviations.", callback=positive)
    ] = None,
    min_opacity: Annotated[
        Optional[float], typer.Option("--min-opacity", help="Skip pixels rendered less opaque.", callback=non_negative)
    ] = None,
    view_stride: Annotated[
        Optional[int], typer.Option("--view-stride", help="Use every n-th training view.", callback=positive)
    ] = None,
    downscale: Annotated[
        Optional[int], typer.Option(help="Render the views at 1/n of their size.", callback=positive)
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the subsampling.", callback=non_negative)] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Coloured point cloud from the rendered depth of the training views."""
    from nerfstage.export.from_run import (  # heavy: torch (not at CLI start-up)
        PointCloudExportOptions,
        export_point_cloud,
    )

    options = PointCloudExportOptions(**given(num_points=num_points, neighbors=neighbors, std_ratio=std_ratio,
                                              min_accumulation=min_opacity, view_stride=view_stride,
                                              downscale=downscale, seed=seed),
                                      overwrite=overwrite, progress=not quiet)
    with output_lock(output):
        result = export_point_cloud(_load(run, device), output, options)
    print(f"point cloud {result.stats['points']:.0f} points from {result.stats['views']:.0f} views in "
          f"{result.seconds:.1f} s -> {_files(result.files)}")


@export_app.command(cls=fills("nerfstage.export.panorama:PanoramaOptions", memory_gb=MEMORY_GB))
def panorama(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="plate.exr (scene-linear half) | plate.png (sRGB).")],
    width: Annotated[
        Optional[int], typer.Option(help="Latlong width, pixels (also sets the default face size).", callback=positive)
    ] = None,
    height: Annotated[
        Optional[int], typer.Option(help="Latlong height, pixels (default: width / 2).", callback=positive)
    ] = None,
    layout: Annotated[Optional[str], typer.Option(help="latlong | cubemap.")] = None,
    cubemap_layout: Annotated[
        Optional[str], typer.Option("--cubemap-layout", help="six (files _posx.._negz) | cross.")
    ] = None,
    face_size: Annotated[
        Optional[int], typer.Option("--face-size", help="Cubemap face side (default: width / 4).", callback=positive)
    ] = None,
    position: Annotated[
        Optional[str], typer.Option(help="Centre x,y,z in dataset coordinates (default: the scene centre).")
    ] = None,
    camera_index: Annotated[
        Optional[int], typer.Option("--camera-index", help="Take position and orientation from this camera.",
                                    callback=non_negative)
    ] = None,
    yaw: Annotated[Optional[float], typer.Option(help="Turn left, degrees.", callback=finite)] = None,
    pitch: Annotated[Optional[float], typer.Option(help="Tilt up, degrees.", callback=finite)] = None,
    roll: Annotated[Optional[float], typer.Option(help="Roll clockwise, degrees.", callback=finite)] = None,
    tile_size: Annotated[
        Optional[int], typer.Option("--tile-size", help="Tile side, pixels (0 = no tiling).", callback=non_negative)
    ] = None,
    memory_gb: MemoryGb = None,
    full_float: Annotated[bool, typer.Option("--float", help="EXR as 32-bit float instead of half.")] = False,
    mipmap: Annotated[
        Optional[bool], typer.Option("--mipmap/--no-mipmap", help="EXR with the full mip chain (tiled, box-filtered).")
    ] = None,
    max_rays_per_chunk: MaxRaysPerChunk = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    frames: Frames = None,
    shard: Shard = None,
    quiet: Quiet = False,
) -> None:
    """360 plate for an LED wall: latlong up to 16384x8192 rendered in tiles, or cubemap faces."""
    from nerfstage.export.panorama import (  # heavy: torch (not at CLI start-up)
        PanoramaOptions,
        export_panorama,
    )

    options = PanoramaOptions(
        **given(width=width, height=height, layout=lowered(layout), cubemap_layout=lowered(cubemap_layout),
                face_size=face_size, position=numbers(position, 3, "--position", "0,0,1.5"),
                camera_index=camera_index, yaw=yaw, pitch=pitch, roll=roll, tile_size=tile_size,
                memory_budget_bytes=memory_bytes(memory_gb),
                half=False if full_float else None, mipmap=mipmap, max_rays_per_chunk=max_rays_per_chunk),
        overwrite=overwrite, progress=not quiet,
    )
    spec = shard_spec(frames, shard)
    with output_lock(output, spec.lock_part):
        result = export_panorama(_load(run, device), output, options, shard=spec)
    if spec.rank != 0:
        return
    print(f"panorama {result.width}x{result.height} in {result.tiles} tiles, {result.seconds:.1f} s -> "
          f"{_files(result.files)}")
    if shard_note(spec, output):
        print(shard_note(spec, output))


@export_app.command(cls=fills("nerfstage.export.plates:PlateOptions", overscan="overscan_percent",
                             plate_format="format", memory_gb=MEMORY_GB))
def plates(
    run: RunArg,
    track: Annotated[Path, typer.Option("--track", help="Tracked camera file (.csv, .json, .usd[a|c|z] camera, "
                                                        "Nuke .chan; see docs).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for plate_NNNNN.exr|png.")],
    overscan: Annotated[
        Optional[float], typer.Option(help="Overscan, percent of the plate size.", callback=non_negative)
    ] = None,
    plate_format: Annotated[
        Optional[str], typer.Option("--format", help="exr (scene-linear half) | png (sRGB).")
    ] = None,
    full_float: Annotated[bool, typer.Option("--float", help="EXR as 32-bit float instead of half.")] = False,
    memory_gb: MemoryGb = None,
    size: Annotated[
        Optional[str], typer.Option(help="Plate size W,H for tracks without one (.chan, USD without RenderSettings).")
    ] = None,
    camera_prim: Annotated[
        Optional[str], typer.Option("--camera-prim", help="USD track: camera prim path (default: the first).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Re-render plates already there.")] = False,
    device: Device = "auto",
    frames: Frames = None,
    shard: Shard = None,
    quiet: Quiet = False,
) -> None:
    """One background plate per tracked frame (pose, fov, sensor from the track file); resumes by default."""
    from nerfstage.export.plates import PlateOptions, export_plates  # heavy: torch (not at CLI start-up)
    from nerfstage.export.track import read_track  # heavy: torch (not at CLI start-up)

    options = PlateOptions(**given(overscan_percent=overscan, format=lowered(plate_format),
                                   half=False if full_float else None, memory_budget_bytes=memory_bytes(memory_gb),
                                   size=_size(size), camera_prim=camera_prim),
                           overwrite=overwrite, progress=not quiet)
    # a malformed track file fails before the run is loaded
    read_track(track, options.overscan_percent, options.size, options.camera_prim)
    spec = shard_spec(frames, shard)
    with output_lock(output, spec.lock_part):
        result = export_plates(_load(run, device), track, output, options, shard=spec)
    if spec.rank != 0:
        return
    print(f"{len(result.files)} plates ({result.rendered} rendered, {result.skipped} kept) in {result.seconds:.1f} s "
          f"-> {result.directory}")
    if shard_note(spec, output):
        print(shard_note(spec, output))


@export_app.command(cls=fills("nerfstage.export.camera:CameraExportOptions", "nerfstage.render.plan:ShotOptions",
                             orbit_height="height_above"))
def camera(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="shot.usda | .usdc | .chan (Nuke) | .glb | "
                                                                ".json (nerfstudio camera_path).")],
    path: CameraPath = None,
    width: Width = None,
    height: Annotated[Optional[int], typer.Option(help="Frame height, pixels.", callback=positive)] = None,
    fps: Fps = None,
    seconds: Seconds = None,
    fov: Fov = None,
    center: Center = None,
    radius: Radius = None,
    orbit_height: OrbitHeight = None,
    turns: Turns = None,
    focus_distance: FocusDistance = None,
    fov_end: FovEnd = None,
    ease: Ease = None,
    smoothing: Smoothing = None,
    meters_per_unit: Annotated[
        Optional[float], typer.Option("--meters-per-unit", help="Metres per dataset unit (USD metersPerUnit).",
        callback=positive)
    ] = None,
    start_frame: Annotated[Optional[int], typer.Option("--start-frame", help="Number of the first frame.",
        callback=finite)] = None,
    sensor_width_mm: Annotated[
        Optional[float], typer.Option("--sensor-width-mm", help="Film back width, mm (USD apertures).",
        callback=positive)
    ] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
) -> None:
    """A render path as an animated camera for Blender, Unreal, Nuke, Houdini (dataset frame, see docs)."""
    from nerfstage.export.camera import CameraExportOptions, check_camera_output, export_camera  # heavy: torch
    from nerfstage.render.plan import ShotOptions  # heavy: torch (not at CLI start-up)

    shot = ShotOptions(**given(
        path=path, width=width, height=height, fps=fps, seconds=seconds, fov=fov,
        center=numbers(center, 3, "--center", "0,0,0.2"), radius=radius, height_above=orbit_height, turns=turns,
        ease=ease, smoothing=smoothing, focus_distance=focus_distance, fov_end=fov_end,
    ))
    options = CameraExportOptions(**given(meters_per_unit=meters_per_unit, start_frame=start_frame,
                                          sensor_width_mm=sensor_width_mm), overwrite=overwrite)
    check_camera_output(output, overwrite)  # a bad name fails before the run is loaded
    with output_lock(output):
        file, track = export_camera(_load(run, device), output, shot, options)
    print(f"camera {len(track)} frames {track.width}x{track.height} @ {track.fps:g} fps, vfov "
          f"{track.fov_y_deg.min():.2f}-{track.fov_y_deg.max():.2f} deg -> {file}")


@export_app.command(cls=fills("nerfstage.export.scene:SceneExportOptions"))
def scene(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Set folder (scene.usda, its layers, README.txt).")],
    mesh: Annotated[Optional[Path], typer.Option(help="Mesh file (default: the run's export/mesh.glb, else "
                                                      "extracted now).")] = None,
    splats: Annotated[Optional[Path], typer.Option(help="Gaussian-splat PLY (default: the run's export/scene.ply "
                                                        "when present).")] = None,
    plate: Annotated[Optional[Path], typer.Option(help="Latlong EXR for the dome light (default: the run's "
                                                       "export/plate_latlong.exr, else rendered now).")] = None,
    mesh_resolution: Annotated[
        Optional[int], typer.Option("--mesh-resolution", help="Grid samples when the mesh is extracted now.",
        callback=positive)
    ] = None,
    plate_width: Annotated[
        Optional[int], typer.Option("--plate-width", help="Latlong width when the plate is rendered now.",
        callback=positive)
    ] = None,
    meters_per_unit: Annotated[
        Optional[float], typer.Option("--meters-per-unit", help="Metres per dataset unit (USD metersPerUnit).",
        callback=positive)
    ] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """One folder a DCC opens: scene.usda with the mesh, splats, saved camera paths, training cameras, dome light."""
    from nerfstage.export.scene import SceneExportOptions, export_scene  # heavy: torch (not at CLI start-up)

    options = SceneExportOptions(**given(mesh=mesh, splats=splats, plate=plate, mesh_resolution=mesh_resolution,
                                         plate_width=plate_width, meters_per_unit=meters_per_unit),
                                 overwrite=overwrite, progress=not quiet)
    with output_lock(output):
        result = export_scene(_load(run, device), output, options)
    made = f" (made now: {', '.join(result.made)})" if result.made else ""
    print(f"set with {len(result.cameras)} camera path(s), {result.training_cameras} training cameras{made} -> "
          f"{result.scene}")
    for skipped in result.skipped_paths:
        print(f"  skipped {skipped}")


@export_app.command(cls=fills("nerfstage.export.splats_export:SplatExportOptions", time_budget="time_budget_s"))
def splats(
    run: RunArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="scene.ply (3DGS layout, Z-up) | .spz | .glb | "
                                                                ".gltf (KHR_gaussian_splatting, Y-up).")],
    max_splats: Annotated[Optional[int], typer.Option("--max-splats", help="Most splats written.",
                                                      callback=positive)] = None,
    steps: Annotated[
        Optional[int], typer.Option(help="Distillation steps against the field (0 = the initial splats only).",
                                    callback=non_negative)
    ] = None,
    time_budget: Annotated[Optional[float], typer.Option(
        "--time-budget", help="Stop the distillation after this many seconds.", callback=positive)
    ] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """3D Gaussian splats distilled from the field, for game engines and web viewers (docs/splats.md)."""
    from nerfstage.export.splats_export import (  # heavy: torch (not at CLI start-up)
        SplatExportOptions,
        check_splat_output,
        export_splats,
    )

    options = SplatExportOptions(**given(max_splats=max_splats, steps=steps, time_budget_s=time_budget),
                                 overwrite=overwrite,
                                 progress=not quiet)
    check_splat_output(output, overwrite)  # bad extension / existing file: refused before the run is loaded
    with output_lock(output):
        result = export_splats(_load(run, device), output, options)
    s = result.stats
    print(f"splats {s['splats']:.0f} ({s['initial_splats']:.0f} placed from the field) in {result.seconds:.1f} s -> "
          f"{_files(result.files)} ({s['bytes'] / 1e6:.2f} MB)")
