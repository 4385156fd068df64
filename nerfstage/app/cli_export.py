"""``nerfstage export mesh|pointcloud|panorama|plates``: a trained run leaves nerfstage for engines and LED walls.

Registered in ``nerfstage/app/cli.py`` as a typer sub-app. Thin like the rest of the CLI: options are parsed here, the
work is done by ``nerfstage.export`` (imported inside the commands, so ``nerfstage --help`` stays cheap), library
errors become one line on stderr with exit code 2 (through ``nerfstage.cli.main``), and every command prints the
files it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.lock import output_lock
from .cli_common import (
    MEMORY_GB,
    Device,
    MaxRaysPerChunk,
    MemoryGb,
    Overwrite,
    Quiet,
    RunArg,
    fills,
    finite,
    given,
    lowered,
    memory_bytes,
    new_app,
    non_negative,
    numbers,
    positive,
)

export_app = new_app("export", "Meshes, point clouds, 360 plates and tracked-camera plates from a trained run.")


def _load(run: Path, device: str):
    from nerfstage.nerf.run import load_run  # heavy: torch (not at CLI start-up)

    return load_run(run, device=device)


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
    with output_lock(output):
        result = export_panorama(_load(run, device), output, options)
    print(f"panorama {result.width}x{result.height} in {result.tiles} tiles, {result.seconds:.1f} s -> "
          f"{_files(result.files)}")


@export_app.command(cls=fills("nerfstage.export.plates:PlateOptions", overscan="overscan_percent",
                             plate_format="format", memory_gb=MEMORY_GB))
def plates(
    run: RunArg,
    track: Annotated[Path, typer.Option("--track", help="Tracked camera file (.csv or .json, see docs).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for plate_NNNNN.exr|png.")],
    overscan: Annotated[
        Optional[float], typer.Option(help="Overscan, percent of the plate size.", callback=non_negative)
    ] = None,
    plate_format: Annotated[
        Optional[str], typer.Option("--format", help="exr (scene-linear half) | png (sRGB).")
    ] = None,
    full_float: Annotated[bool, typer.Option("--float", help="EXR as 32-bit float instead of half.")] = False,
    memory_gb: MemoryGb = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Re-render plates already there.")] = False,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """One background plate per tracked frame (pose, fov, sensor from the track file); resumes by default."""
    from nerfstage.export.plates import PlateOptions, export_plates  # heavy: torch (not at CLI start-up)
    from nerfstage.export.track import read_track  # heavy: torch (not at CLI start-up)

    options = PlateOptions(**given(overscan_percent=overscan, format=lowered(plate_format),
                                   half=False if full_float else None, memory_budget_bytes=memory_bytes(memory_gb)),
                           overwrite=overwrite, progress=not quiet)
    read_track(track, options.overscan_percent)  # a malformed track file fails before the run is loaded
    with output_lock(output):
        result = export_plates(_load(run, device), track, output, options)
    print(f"{len(result.files)} plates ({result.rendered} rendered, {result.skipped} kept) in {result.seconds:.1f} s "
          f"-> {result.directory}")
