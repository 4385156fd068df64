"""Density field -> coloured triangle mesh: grid sampling, marching cubes, floater removal, decimation, colours.

Pipeline of :func:`extract_mesh`: sample ``density_fn`` on a grid in the crop box (``density_grid``), run
scikit-image's marching cubes at the iso-level ``threshold`` (the grid is padded with one layer of zero density,
so a surface cut by the crop box is capped there and the mesh stays closed), keep the connected components with at
least ``min_component_fraction`` of the largest one's faces, decimate to ``max_faces`` with fast-simplification's
quadric decimation (through trimesh) and drop the crumbs it leaves (the same component rule again: on the office_360
run, decimating 338 k faces to 200 k left 322 components of under 10 faces), then colour every vertex from
``color_fn``.

Automatic threshold (``threshold=None``): volume rendering reports a surface where a ray's transmittance falls to
one half, i.e. where the density integrated along the ray reaches ``ln 2``. :func:`auto_threshold` casts one ray
along every grid row, column and pillar, from both ends (six directions, entering at the box faces), integrates the
piecewise-linear density marching cubes also sees, finds where each ray reaches ``ln 2`` and reads the density
there; the threshold is the median of those densities. So the iso-surface sits where rendering puts the surface,
for sharp and soft surfaces alike, in any units (densities must be in 1 / the grid frame's length unit, as
``NerfModel.density`` returns them). For a surface sharper than a cell (a density step from 0 to ``S``) this gives
``sqrt(2 ln2 S / h)`` (``h`` the cell size), the level at which the linearly interpolated step absorbs half the
light. Rays already opaque within their first cell (the box cuts through matter) are left out. For a field that is
not a volume density (an indicator, an SDF-like score) pass ``threshold`` explicitly.

Vertex colours average ``color_fn`` over viewing directions: the direction looking straight at the surface
(``-normal``) and the 14 fixed directions of a cube's faces and corners, each weighted by ``max(0, -d . normal)``
(the cosine of the view to the surface normal), so only views from in front of the surface count and grazing
views count little. ``color_fn`` returns RGB in [0, 1] as the field predicts it (sRGB-encoded for a field trained
on ordinary images); the mesh stores it as 8-bit vertex colours unchanged (``gltf`` converts for glTF).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes
from torch import Tensor

from ..core.errors import ConfigError
from .density_grid import DensityFn, DensityGrid, GridOptions, sample_density_grid

ColorFn = Callable[[Tensor, Tensor], Tensor]
"""``color_fn(points [n, 3], directions [n, 3] unit, ray direction from the viewer) -> [n, 3]`` RGB in [0, 1]."""


@dataclass(frozen=True)
class MeshOptions:
    """How to turn a density grid into a mesh."""

    threshold: float | None = None
    """Density iso-level of the surface; None = automatic (median density at rendered depth, see the module)."""
    min_component_fraction: float = 0.02
    """Connected components with fewer faces than this fraction of the largest one's are dropped (floaters: a
    NeRF's are usually well under 1 %; a separate real object is rarely under 2 % of the main surface)."""
    max_faces: int | None = None
    """Decimate to at most this many faces (quadric decimation); None keeps the marching-cubes mesh."""
    close_at_box: bool = True
    """Cap surfaces cut by the crop box so the mesh stays closed (pads the grid with zero density)."""
    color_chunk: int = 1 << 15
    """Vertices coloured per call batch (each costs 15 colour queries)."""
    device: str = "cpu"
    """Torch device for the colour queries."""


@dataclass
class MeshResult:
    """A mesh extracted from a density field, with the numbers that describe how."""

    mesh: trimesh.Trimesh
    """Triangle mesh in the grid's frame, with vertex normals and (when coloured) RGBA vertex colours."""
    threshold: float
    """The density iso-level used."""
    resolution: tuple[int, int, int]
    """Grid samples per axis."""
    components_removed: int = 0
    """Connected components dropped as floaters."""
    stats: dict[str, float] = field(default_factory=dict)
    """Face counts before/after each step (``faces_marching_cubes``, ``faces_after_floaters``, ``faces``)."""


def _crossing_densities(values: np.ndarray, h: float, chunk: int = 1 << 21) -> np.ndarray:
    """Densities where rays along the last axis of ``values`` [a, b, n] (entering at index 0) reach an integrated
    density of ln 2 under linear interpolation; rays that never do, or do in their first cell, give nothing.
    Works on about ``chunk`` samples at a time (float64 working arrays of 16 MiB each)."""
    found = []
    slab = max(1, chunk // (values.shape[1] * values.shape[2]))
    for start in range(0, values.shape[0], slab):
        sigma = values[start : start + slab].astype(np.float64).reshape(-1, values.shape[-1])  # [r, n]
        cells = 0.5 * h * (sigma[:, 1:] + sigma[:, :-1])  # [r, n-1] integral over each cell (trapezoid)
        before = np.cumsum(cells, axis=1) - cells  # [r, n-1] integral up to each cell's start
        hit = before + cells >= np.log(2.0)
        k = np.argmax(hit, axis=1)  # first cell where the integral reaches ln 2
        rows = np.flatnonzero(hit[np.arange(len(k)), k] & (k > 0))
        a, b = sigma[rows, k[rows]], sigma[rows, k[rows] + 1]
        rest = (np.log(2.0) - before[rows, k[rows]]) / h  # solve a t + (b - a) t^2 / 2 = rest for t in [0, 1]
        t = 2.0 * rest / (a + np.sqrt(np.maximum(a * a + 2.0 * (b - a) * rest, 0.0))).clip(min=1e-300)
        found.append(a + np.clip(t, 0.0, 1.0) * (b - a))
    return np.concatenate(found)


def auto_threshold(grid: DensityGrid) -> float:
    """Automatic density iso-level: the median density at which axis-aligned rays entering at the six box faces
    reach transmittance 1/2 (see the module docstring). Raises ConfigError when no ray gets that opaque."""
    found = []
    for axis in range(3):
        moved = np.moveaxis(grid.values, axis, -1)  # [a, b, n] view
        for ray_values in (moved, moved[..., ::-1]):
            found.append(_crossing_densities(ray_values, float(grid.spacing[axis])))
    crossings = np.concatenate(found)
    if len(crossings) == 0:
        raise ConfigError(
            f"nothing in the crop box {grid.box_min.tolist()} .. {grid.box_max.tolist()} is opaque (max density "
            f"{float(grid.values.max()):.4g}); move the box or pass an explicit threshold"
        )
    return float(np.median(crossings))


def marching_cubes_mesh(grid: DensityGrid, threshold: float, close_at_box: bool = True) -> trimesh.Trimesh:
    """The iso-surface ``density == threshold`` of ``grid`` as a mesh (outward normals, merged vertices)."""
    values = grid.values
    lo_v, hi_v = float(values.min()), float(values.max())
    if not np.isfinite(threshold) or not lo_v < threshold < hi_v or (close_at_box and threshold <= 0):
        raise ConfigError(
            f"density threshold {threshold:.4g} does not cross the sampled densities [{lo_v:.4g}, {hi_v:.4g}]: "
            "no surface in the crop box; pass a threshold inside that range or move the box"
        )
    origin = grid.box_min
    if close_at_box:
        values = np.pad(values, 1, mode="constant", constant_values=0.0)
        origin = grid.box_min - grid.spacing
    verts, faces, _, _ = marching_cubes(
        values, level=threshold, spacing=tuple(grid.spacing), gradient_direction="ascent", allow_degenerate=False
    )
    verts = np.clip(verts + origin, grid.box_min, grid.box_max)  # [v, 3] caps land on the box faces
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if len(mesh.faces) == 0:
        raise ConfigError(f"marching cubes at threshold {threshold:.4g} produced no faces; lower the threshold")
    return mesh


def remove_floaters(mesh: trimesh.Trimesh, min_fraction: float) -> tuple[trimesh.Trimesh, int]:
    """Keep the connected components with at least ``min_fraction`` of the largest one's faces; returns the mesh
    and how many components were dropped."""
    if not 0.0 <= min_fraction <= 1.0:
        raise ConfigError(f"min_component_fraction {min_fraction}: expected a fraction in [0, 1]")
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh, 0
    sizes = np.array([len(p.faces) for p in parts])
    kept = [p for p, n in zip(parts, sizes, strict=True) if n >= min_fraction * sizes.max()]
    return trimesh.util.concatenate(kept), len(parts) - len(kept)


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric-error decimation (fast-simplification through trimesh) to at most ``max_faces`` faces."""
    if max_faces < 4:
        raise ConfigError(f"max_faces {max_faces}: expected at least 4")
    if len(mesh.faces) <= max_faces:
        return mesh
    target = max_faces
    for _ in range(4):  # the simplifier may stop a little above its target: aim lower until it fits
        try:
            out = mesh.simplify_quadric_decimation(face_count=target)
        except ImportError as exc:
            raise ConfigError(f"max_faces needs fast-simplification ({exc}); pip install fast-simplification") from exc
        if len(out.faces) <= max_faces:
            return out
        target = max(4, int(target * max_faces / len(out.faces)) - 1)
    raise ConfigError(f"decimation could not reach {max_faces} faces (got {len(out.faces)}); raise max_faces")


def view_directions() -> np.ndarray:
    """[14, 3] unit directions: the 6 faces and 8 corners of a cube."""
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T / np.sqrt(3.0)
    return np.concatenate([axes, corners])


def vertex_colors(
    points: np.ndarray, normals: np.ndarray, color_fn: ColorFn, chunk: int = 1 << 15, device: str = "cpu"
) -> np.ndarray:
    """[n, 3] float RGB of surface points ([n, 3], unit outward normals [n, 3]): ``color_fn`` averaged over the
    views in front of the surface, cosine-weighted (see the module docstring)."""
    fixed = torch.as_tensor(view_directions(), dtype=torch.float32, device=device)  # [14, 3]
    out = np.empty((len(points), 3), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            p = torch.tensor(np.asarray(points[start : start + chunk]), dtype=torch.float32, device=device)  # [m, 3]
            n = torch.tensor(np.asarray(normals[start : start + chunk]), dtype=torch.float32, device=device)  # [m, 3]
            n = torch.nn.functional.normalize(n, dim=-1)
            n[n.norm(dim=-1) < 0.5] = fixed[2]  # degenerate normal: colour as if seen from above
            dirs = torch.cat([-n[:, None], fixed[None].expand(len(p), -1, -1)], dim=1)  # [m, 15, 3]
            weights = (-(dirs * n[:, None]).sum(-1)).clamp_min(0.0)  # [m, 15]
            rgb = color_fn(p[:, None].expand_as(dirs).reshape(-1, 3), dirs.reshape(-1, 3)).reshape(len(p), -1, 3)
            mean = (rgb.float() * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-8)
            out[start : start + len(p)] = mean.clamp(0.0, 1.0).cpu().numpy()
    return out


def set_vertex_colors(mesh: trimesh.Trimesh, rgb: np.ndarray) -> None:
    """Store float RGB [v, 3] in [0, 1] as the mesh's opaque 8-bit RGBA vertex colours."""
    rgba = np.concatenate([np.round(np.clip(rgb, 0.0, 1.0) * 255.0), np.full((len(rgb), 1), 255.0)], axis=1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba.astype(np.uint8))


def mesh_from_grid(grid: DensityGrid, options: MeshOptions | None = None) -> MeshResult:
    """Marching cubes, floater removal and optional decimation of a sampled grid (no colours yet)."""
    options = options or MeshOptions()
    threshold = auto_threshold(grid) if options.threshold is None else float(options.threshold)
    mesh = marching_cubes_mesh(grid, threshold, options.close_at_box)
    stats = {"faces_marching_cubes": float(len(mesh.faces))}
    mesh, removed = remove_floaters(mesh, options.min_component_fraction)
    stats["faces_after_floaters"] = float(len(mesh.faces))
    if options.max_faces is not None and len(mesh.faces) > options.max_faces:
        mesh = decimate(mesh, options.max_faces)
        mesh, crumbs = remove_floaters(mesh, options.min_component_fraction)  # decimation leaves crumbs
        removed += crumbs
    stats["faces"] = float(len(mesh.faces))
    return MeshResult(mesh, threshold, grid.resolution, removed, stats)


def extract_mesh(
    density_fn: DensityFn, box_min: np.ndarray, box_max: np.ndarray, color_fn: ColorFn | None = None,
    grid_options: GridOptions | None = None, options: MeshOptions | None = None,
) -> MeshResult:
    """Sample ``density_fn`` in the crop box, extract, clean and (optionally) decimate the surface, and colour its
    vertices from ``color_fn`` when given. The mesh is in the box's frame."""
    options = options or MeshOptions()
    grid = sample_density_grid(density_fn, box_min, box_max, grid_options)
    result = mesh_from_grid(grid, options)
    if color_fn is not None:
        mesh = result.mesh
        rgb = vertex_colors(mesh.vertices, mesh.vertex_normals, color_fn, options.color_chunk, options.device)
        set_vertex_colors(mesh, rgb)
    return result


def field_callables(model) -> tuple[DensityFn, ColorFn]:
    """``density_fn`` and ``color_fn`` of a trained ``NerfModel`` (normalised frame; colour with the mean
    appearance, i.e. no per-image embedding)."""
    return model.density, lambda points, directions: model.field(points, directions, None)[1]
