"""Meshes and point clouds of a trained run, in the run's dataset frame (``nerfstage export mesh|pointcloud``).

Both work in the run's normalised frame (where the field lives) and bring the result back into the **dataset
frame** (the world of ``transforms.json``; metres for metric captures such as the synthetic scene) with
``gltf.dataset_from_normalized`` before writing, so exports line up with the dataset's cameras.

Crop box (``bbox``): (xmin, ymin, zmin, xmax, ymax, zmax) in dataset coordinates. It is mapped into the normalised
frame and the axis-aligned box around its eight mapped corners is sampled (exact when the dataparser's rotation is
axis-aligned, as for Blender scenes; slightly larger otherwise). Default: the part of the run's scene box that at
least half of the training cameras look at, for cameras that circle a focus only up to 1.5 times their distance
to it (``density_grid.crop_box_from_cameras``), or the whole scene box when the run's dataset is not available.
For unbounded (contracted) runs the scene box is the contraction's inner cube, so the crop never reaches into
the contracted background.

Defaults aim at a mesh an engine takes: at most ``max_faces`` (200 k) faces, floaters (components under
``min_component_fraction`` of the largest) removed.

Point cloud: the training views (every ``view_stride``-th, at ``1 / downscale`` of their size) are rendered with
depth, lifted to points, cleaned and subsampled by ``pointcloud.point_cloud_from_views``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core.cameras import camera_from_intrinsics
from ..core.errors import ConfigError
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..nerf.run import LoadedRun
from ..render.image import ImageOptions, render_image
from .density_grid import GridOptions, check_box, crop_box_from_cameras
from .gltf import check_mesh_path, dataset_from_normalized, write_mesh
from .mesh import MeshOptions, extract_mesh, field_callables
from .pointcloud import DepthView, PointCloudOptions, point_cloud_from_views, write_point_cloud
from .texture import TextureOptions, bake_texture


@dataclass(frozen=True)
class MeshExportOptions:
    """``nerfstage export mesh`` settings."""

    bbox: tuple[float, float, float, float, float, float] | None = None
    """Crop box xmin, ymin, zmin, xmax, ymax, zmax in dataset coordinates; None = what the cameras saw."""
    threshold: float | None = None
    """Density iso-level; None = automatic (``mesh.auto_threshold``)."""
    resolution: int = 256
    """Grid samples along the crop box's longest axis."""
    max_faces: int | None = 200_000
    """Decimate to at most this many faces (the default keeps a mesh a game engine takes as it is, as the
    chain's default preset does); None keeps every face."""
    texture: bool = False
    """UV-unwrap (xatlas) and bake a colour texture instead of vertex colours."""
    texture_resolution: int = 2048
    """Texture side in texels (with ``texture``)."""
    min_component_fraction: float = 0.02
    """Drop connected components with fewer faces than this fraction of the largest one's (floaters)."""
    memory_budget_bytes: int = 4 << 30
    """Largest density grid allowed (8 bytes per sample)."""
    overwrite: bool = False
    """Replace existing files."""
    progress: bool = True
    """Show progress bars."""


@dataclass(frozen=True)
class PointCloudExportOptions:
    """``nerfstage export pointcloud`` settings."""

    num_points: int = 1_000_000
    """Most points written."""
    neighbors: int = 16
    """Neighbours per point of the statistical outlier test (0 = no outlier removal)."""
    std_ratio: float = 2.0
    """Outlier when the mean neighbour distance is this many standard deviations above the mean."""
    min_accumulation: float = 0.5
    """Pixels whose rendered opacity is lower are skipped."""
    view_stride: int = 1
    """Use every n-th training view."""
    downscale: int = 2
    """Render the views at 1 / downscale of their size."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays sent to the model at once."""
    seed: int = 0
    """Seed of the random subsampling."""
    overwrite: bool = False
    """Replace an existing file."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class ExportResult:
    """Files written and the figures that describe them."""

    files: list[Path]
    """Files written, main file last."""
    seconds: float
    """Wall-clock seconds."""
    stats: dict[str, float] = field(default_factory=dict)
    """faces / vertices / threshold (mesh) or points / views (point cloud)."""


def normalized_box(run: LoadedRun, bbox) -> tuple[np.ndarray, np.ndarray]:
    """[3] min / max corners in the normalised frame of a dataset-frame ``bbox`` (see the module docstring)."""
    aabb = run.model.field.aabb.detach().cpu().numpy().astype(np.float64)  # [2, 3]
    if bbox is None:
        if not run.has_cameras:
            return check_box(aabb[0], aabb[1])
        train = run.train_indices or list(range(len(run.world_from_cams)))
        return crop_box_from_cameras(run.world_from_cams[train], [run.intrinsics[i] for i in train], aabb[0], aabb[1])
    values = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if values.shape != (6,):
        raise ConfigError(f"crop box {list(bbox)}: expected six numbers xmin,ymin,zmin,xmax,ymax,zmax")
    lo, hi = check_box(values[:3], values[3:])
    corners = np.stack(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij"), -1).reshape(-1, 3)  # [8, 3]
    transform = np.asarray(run.scene.transform, dtype=np.float64)
    mapped = float(run.scene.scale) * (corners @ transform[:, :3].T + transform[:, 3])
    return check_box(mapped.min(axis=0), mapped.max(axis=0))


def export_mesh(run: LoadedRun, output: Path, options: MeshExportOptions | None = None) -> ExportResult:
    """Extract the LoadedRun's surface in the crop box and write it (.glb Y-up, .obj, .ply) in the dataset frame."""
    options = options or MeshExportOptions()
    check_mesh_path(output, options.overwrite)  # bad extension / existing file: refused before any work
    start = time.perf_counter()
    lo, hi = normalized_box(run, options.bbox)
    density_fn, color_fn = field_callables(run.model)
    device = str(run.device)
    grid = GridOptions(max_resolution=int(options.resolution), memory_budget=int(options.memory_budget_bytes),
                       device=device, progress=options.progress)
    mesh_options = MeshOptions(threshold=options.threshold, min_component_fraction=options.min_component_fraction,
                               max_faces=options.max_faces, device=device)
    result = extract_mesh(density_fn, lo, hi, None if options.texture else color_fn, grid, mesh_options)
    mesh = result.mesh
    if options.texture:
        mesh = bake_texture(mesh, color_fn, TextureOptions(int(options.texture_resolution), device=device))
    mesh.apply_transform(dataset_from_normalized(run.scene.transform, run.scene.scale))
    files = write_mesh(mesh, output, overwrite=options.overwrite)
    stats = {"faces": float(len(mesh.faces)), "vertices": float(len(mesh.vertices)),
             "threshold": float(result.threshold), "components_removed": float(result.components_removed)}
    return ExportResult(files, time.perf_counter() - start, stats)


def _depth_views(run: LoadedRun, options: PointCloudExportOptions) -> list:
    """Rendered rgb / ray depth / opacity of the chosen training views (normalised frame)."""
    train = (run.train_indices or list(range(len(run.world_from_cams))))[:: int(options.view_stride)]
    image_options = ImageOptions(int(options.max_rays_per_chunk), depth_mode="ray")
    views = []
    for index in tqdm(train, desc="views", unit="view", disable=not options.progress, dynamic_ncols=True):
        intrinsics = run.intrinsics[index].scaled(1.0 / int(options.downscale))
        images = render_image(run.model, camera_from_intrinsics(intrinsics), run.world_from_cams[index],
                              ("rgb", "depth", "alpha"), image_options)
        views.append(DepthView(images["rgb"], images["depth"], run.world_from_cams[index], intrinsics, images["alpha"]))
    return views


def export_point_cloud(run: LoadedRun, output: Path, options: PointCloudExportOptions | None = None) -> ExportResult:
    """Coloured points from the rendered depth of the run's training views, written as PLY in the dataset frame."""
    options = options or PointCloudExportOptions()
    if Path(output).suffix.lower() != ".ply":
        raise ConfigError(f"{output}: point clouds are written as .ply; got '{Path(output).suffix}'")
    check_mesh_path(output, options.overwrite)
    if int(options.view_stride) < 1 or int(options.downscale) < 1:
        raise ConfigError(f"view_stride={options.view_stride}, downscale={options.downscale}: expected >= 1")
    if not run.has_cameras:
        raise ConfigError(f"{run.run_dir}: the run's dataset ({run.dataset_path}) is not available; the point "
                          "cloud is rendered from its training views")
    start = time.perf_counter()
    views = _depth_views(run, options)
    cloud = PointCloudOptions(int(options.num_points), "ray", options.min_accumulation, int(options.neighbors),
                              options.std_ratio, options.seed)
    points, colors = point_cloud_from_views(views, cloud)
    to_dataset = dataset_from_normalized(run.scene.transform, run.scene.scale)
    points = points @ to_dataset[:3, :3].T + to_dataset[:3, 3]
    path = write_point_cloud(points, colors, output, overwrite=options.overwrite)
    return ExportResult([path], time.perf_counter() - start, {"points": float(len(points)), "views": float(len(views))})
