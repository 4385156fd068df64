"""Gaussian splats initialised from a trained field (the first step of ``nerfstage export splats``; the
distillation, ``export/splats_distill.py``, then optimises them against renders of the field).

Steps of :func:`splats_from_run` (all in the run's normalised frame, then mapped to the dataset frame):

1. **Where**: render depth and accumulated weight of the training views (every ``view_stride``-th, at
   ``1 / downscale`` of their size, or smaller so that all views together have at most ``max_pixels`` pixels) and
   of ``extra_views`` novel views between each pair of consecutive ones (positions interpolated, orientations
   slerped), with the project's chunked renderer; back-project the pixels whose weight is at least
   ``min_weight`` (``pointcloud.back_project``).
2. **Merge** the points on a voxel grid: the voxel is ``voxel_factor`` times the median spacing of the points
   (nearest-neighbour distance), grown until at most ``max_splats`` voxels are occupied; one splat at the mean of
   each voxel's points.
3. **Shape**: the surface normal is the negative, normalised density gradient (autograd through the field); a
   splat is a disc ``tangent_scale`` times the mean distance to its 3 nearest splats across and ``thin_ratio``
   times that along the normal (rotation maps the local z axis to the normal). Where the gradient vanishes, the
   splat is round.
4. **Opacity**: the field's alpha of a slab one voxel thick across the surface at the splat,
   ``1 - exp(-integral of density along the normal over [-voxel/2, voxel/2])`` (5-point rule), clamped to
   [0.02, 0.99].
5. **Colour**: degree-3 SH fitted per splat by weighted least squares to the field's own view-dependent colour
   (its colour head with the mean appearance) along ``sh_directions`` directions spread over the sphere (a
   Fibonacci lattice). Views of the front (directions against the normal) weigh 1, views from behind
   ``back_weight``; a ``sh_ridge`` penalty on the higher bands keeps unseen directions tame.

The result is in the **dataset frame** (``gltf.dataset_from_normalized`` undoes the dataparser transform: one
rotation, translation and uniform scale; positions, orientations, log scales and SH colour are all mapped).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation, Slerp

from ..core.cameras import camera_from_intrinsics
from ..core.errors import ConfigError
from ..core.geometry import Intrinsics
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..nerf.run import LoadedRun
from ..nerf.sh import sh_encode
from ..render.image import ImageOptions, render_image
from ..render.splats.model import MAX_SPLATS, GaussianSplats
from ..render.splats.transform import rotate_splats
from .gltf import dataset_from_normalized
from .pointcloud import DepthView, PointCloudOptions, back_project

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` after each unit of work of a stage (views, points)."""

SH_DEGREE = 3


@dataclass(frozen=True)
class SplatInitOptions:
    """How splats are placed, shaped and coloured from a trained field."""

    max_splats: int = MAX_SPLATS
    """Most splats made (the voxel grows until the merged points fit)."""
    view_stride: int = 1
    """Use every n-th training view."""
    extra_views: int = 1
    """Novel views rendered between each pair of consecutive (used) training views."""
    downscale: int = 4
    """Render the views at 1 / downscale of their size (a quarter: 200 x 200 of an 800 x 800 view still gives
    tens of points per final splat over ~200 views)."""
    max_pixels: int = 2_000_000
    """Most pixels rendered over all views (training and extra): the downscale grows (integer steps) until they
    fit. 4 x the default splat budget: lego_400 (199 views of 100 x 100) stays at downscale 4; the fox capture's
    85 views of 1080 x 1920 render at 1/10 instead of 1/4 (1.8 M pixels instead of 11 M, the init's main cost)."""
    min_weight: float = 0.5
    """Pixels whose accumulated weight (opacity) is lower give no point."""
    voxel_factor: float = 1.0
    """Merge voxel = this times the median nearest-neighbour spacing of the back-projected points."""
    tangent_scale: float = 0.5
    """Splat standard deviation across the surface = this times the mean distance to the 3 nearest splats."""
    thin_ratio: float = 0.2
    """Standard deviation along the normal / across the surface."""
    sh_directions: int = 64
    """Directions the field's colour is queried along, per splat, for the SH fit."""
    back_weight: float = 0.05
    """Least-squares weight of the colour seen from behind the surface (from the front: 1)."""
    sh_ridge: float = 1e-3
    """Ridge penalty on the SH coefficients above degree 0."""
    chunk: int = 8192
    """Splats whose field queries run at once (each costs ``sh_directions`` colour queries)."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays sent to the renderer at once."""
    seed: int = 0
    """Seed of the subsampling used to measure the point spacing."""

    def __post_init__(self):
        for name in ("max_splats", "view_stride", "downscale", "max_pixels", "sh_directions", "chunk",
                     "max_rays_per_chunk"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: expected a positive number", field=name)
        if int(self.extra_views) < 0:
            raise ConfigError(f"extra_views={self.extra_views}: expected 0 or more", field="extra_views")
        for name in ("voxel_factor", "tangent_scale", "thin_ratio"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name}={getattr(self, name)}: expected a positive number", field=name)


def init_views(run: LoadedRun, options: SplatInitOptions) -> list[tuple[np.ndarray, Intrinsics]]:
    """(world_from_cam [4, 4] OpenGL axes, normalised frame; intrinsics at render size) of the training views used
    and of ``extra_views`` interpolated poses between consecutive ones."""
    if not run.has_cameras:
        raise ConfigError(f"{run.run_dir}: the run's dataset ({run.dataset_path}) is not available; splats are "
                          "placed from renders of its training views")
    train = (run.train_indices or list(range(len(run.world_from_cams))))[:: int(options.view_stride)]
    poses = [np.asarray(run.world_from_cams[i], dtype=np.float64) for i in train]
    downscale = init_downscale([run.intrinsics[i] for i in train], options)
    cams = [run.intrinsics[i].scaled(1.0 / downscale) for i in train]
    views = list(zip(poses, cams, strict=True))
    k = int(options.extra_views)
    for a, b, cam in zip(poses[:-1], poses[1:], cams[:-1], strict=True):
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))
        for j in range(1, k + 1):
            t = j / (k + 1)
            pose = np.eye(4)
            pose[:3, :3] = slerp([t]).as_matrix()[0]
            pose[:3, 3] = (1 - t) * a[:3, 3] + t * b[:3, 3]
            views.append((pose, cam))
    return views


def init_downscale(intrinsics: list[Intrinsics], options: SplatInitOptions) -> int:
    """The smallest integer downscale >= ``options.downscale`` at which the training views ``intrinsics`` and the
    ``extra_views`` between consecutive ones have at most ``options.max_pixels`` pixels together."""
    copies = [1 + int(options.extra_views) * (j < len(intrinsics) - 1) for j in range(len(intrinsics))]

    def pixels(downscale: int) -> int:
        scaled = [i.scaled(1.0 / downscale) for i in intrinsics]
        return sum(n * s.width * s.height for n, s in zip(copies, scaled, strict=True))

    downscale = int(options.downscale)
    while pixels(downscale) > int(options.max_pixels) and pixels(downscale) > len(intrinsics):
        downscale += 1
    return downscale


def surface_points(run: LoadedRun, options: SplatInitOptions, progress: Progress | None = None) -> np.ndarray:
    """[n, 3] points (normalised frame) where the rendered weight of the init views is at least ``min_weight``."""
    image_options = ImageOptions(int(options.max_rays_per_chunk), depth_mode="ray")
    lift = PointCloudOptions(min_accumulation=float(options.min_weight), depth_kind="ray")
    views = init_views(run, options)
    parts = []
    for done, (pose, cam) in enumerate(views, start=1):
        images = render_image(run.model, camera_from_intrinsics(cam), pose, ("rgb", "depth", "alpha"), image_options)
        points, _ = back_project(DepthView(images["rgb"], images["depth"], pose, cam, images["alpha"]), lift)
        parts.append(points)
        if progress is not None:
            progress("views", done, len(views))
    points = np.concatenate(parts) if parts else np.zeros((0, 3))
    if len(points) == 0:
        raise ConfigError(f"no pixel of {len(views)} views has a rendered weight >= {options.min_weight}; lower "
                          "min_weight or check the run", field="min_weight")
    return points


def point_spacing(points: np.ndarray, seed: int = 0, sample: int = 20_000) -> float:
    """Median distance of (up to ``sample``) points to their nearest other point."""
    rng = np.random.default_rng(seed)
    pick = points if len(points) <= sample else points[rng.choice(len(points), sample, replace=False)]
    if len(pick) < 2:
        return 1e-3
    distances, _ = cKDTree(pick).query(pick, k=2)
    spacing = float(np.median(distances[:, 1]))
    # a subsample is sparser than the whole: scale back by the cube root... of a surface: square root of the ratio
    return max(spacing * math.sqrt(len(pick) / len(points)), 1e-9)


def voxel_keys(points: np.ndarray, lo: np.ndarray, voxel: float) -> np.ndarray:
    """[n] int64 key of each point's voxel (row-major cell index; [n, 3] cells when they do not fit 62 bits)."""
    cells = np.floor((points - lo) / voxel).astype(np.int64)  # [n, 3]
    dims = cells.max(axis=0) + 1
    if float(np.prod(dims.astype(np.float64))) < 2.0 ** 62:
        return (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    return cells


def merge_on_voxels(points: np.ndarray, voxel: float, max_splats: int) -> tuple[np.ndarray, float]:
    """Mean point of each occupied voxel [m, 3] and the voxel size used, grown until m <= max_splats (by the square
    root of the excess, as for points on surfaces, and at least 10 % a step)."""
    lo = points.min(axis=0)
    while True:
        keys = voxel_keys(points, lo, voxel)
        _, inverse, counts = np.unique(keys, axis=0 if keys.ndim == 2 else None, return_inverse=True,
                                       return_counts=True)
        if len(counts) <= max_splats:
            break
        voxel *= max(1.1, math.sqrt(len(counts) / max_splats))
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, inverse, points)
    return sums / counts[:, None], voxel


def surface_normals(model, points: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals [n, 3] (negative density gradient) and whether the gradient was usable [n] bool."""
    normals = torch.zeros_like(points)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            density = model.field.density(p)
            (grad,) = torch.autograd.grad(density.sum(), p)
        normals[start:start + chunk] = -grad.detach()
    normals = normals.cpu()
    length = normals.norm(dim=-1)
    ok = length > 1e-6 * length.max().clamp_min(1e-12)
    return torch.where(ok[:, None], normals / length.clamp_min(1e-12)[:, None], torch.tensor([0.0, 0.0, 1.0])), ok


def rotations_to(normals: torch.Tensor) -> torch.Tensor:
    """[n, 4] quaternions w, x, y, z rotating the local z axis onto each unit normal [n, 3]."""
    helper = torch.where(normals[:, 2:].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    x = torch.nn.functional.normalize(torch.cross(helper, normals, dim=-1), dim=-1)
    y = torch.cross(normals, x, dim=-1)
    matrices = torch.stack([x, y, normals], dim=-1).double().numpy()  # columns: local axes in the world
    xyzw = Rotation.from_matrix(matrices).as_quat()
    return torch.from_numpy(np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)).float()


def slab_alpha(model, points: torch.Tensor, normals: torch.Tensor, thickness: float, chunk: int) -> torch.Tensor:
    """[n] alpha of a slab ``thickness`` thick across the surface: 1 - exp(-integral of density along the normal)."""
    offsets = torch.linspace(-0.5, 0.5, 5, device=points.device) * thickness  # [5]
    alpha = torch.empty(len(points))
    with torch.no_grad():
        for start in range(0, len(points), chunk):
            p, n = points[start:start + chunk], normals[start:start + chunk]
            samples = (p[:, None, :] + offsets[None, :, None] * n[:, None, :]).reshape(-1, 3)
            density = model.field.density(samples).reshape(len(p), 5)
            alpha[start:start + chunk] = (1.0 - torch.exp(-density.mean(dim=1) * thickness)).cpu()
    return alpha


def fibonacci_directions(n: int) -> torch.Tensor:
    """[n, 3] unit directions spread evenly over the sphere (Fibonacci lattice)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = torch.sqrt(1.0 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1).float()


def fit_sh(colours: torch.Tensor, directions: torch.Tensor, weights: torch.Tensor, degree: int = SH_DEGREE,
           ridge: float = 1e-3) -> torch.Tensor:
    """Per-point SH [n, k, 3] minimising ``sum_d w[n, d] |Y(d) . sh[n] + 0.5 - colours[n, d]|^2 + ridge |sh_{>0}|^2``
    for ``colours`` [n, m, 3] seen along ``directions`` [m, 3] with ``weights`` [n, m]."""
    basis = sh_encode(directions.double(), degree + 1)  # [m, k]
    w = weights.double()
    a = torch.einsum("nm,mk,mj->nkj", w, basis, basis)  # [n, k, k]
    penalty = torch.full((basis.shape[1],), float(ridge), dtype=torch.float64)
    penalty[0] = 1e-9
    a = a + torch.diag(penalty)
    b = torch.einsum("nm,mk,nmc->nkc", w, basis, colours.double() - 0.5)  # [n, k, 3]
    return torch.linalg.solve(a, b).float()


def field_colours(model, points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """[n, m, 3] the field's colour (mean appearance) at ``points`` [n, 3] seen along ``directions`` [m, 3]."""
    with torch.no_grad():
        _, geo = model.field.geometry(points)  # [n, g]
        n, m = len(points), len(directions)
        geo = geo[:, None, :].expand(n, m, geo.shape[1]).reshape(n * m, -1)
        rgb = model.field.color(geo, directions.to(geo.device).repeat(n, 1), None)
    return rgb.reshape(n, m, 3).cpu()


def fit_colours(model, points: torch.Tensor, normals: torch.Tensor, options: SplatInitOptions,
                progress: Progress | None = None) -> torch.Tensor:
    """SH [n, 16, 3] of every splat fitted to the field's view-dependent colour (see the module docstring)."""
    directions = fibonacci_directions(int(options.sh_directions))
    chunk = max(1, int(options.chunk) // 4)
    out = torch.empty(len(points), (SH_DEGREE + 1) ** 2, 3)
    device = next(model.parameters()).device
    for start in range(0, len(points), chunk):
        p, n = points[start:start + chunk], normals[start:start + chunk]
        colours = field_colours(model, p.to(device), directions)
        front = (n @ directions.T) < 0  # [c, m]: the viewer looks against the normal
        weights = torch.where(front, 1.0, float(options.back_weight))
        out[start:start + chunk] = fit_sh(colours, directions, weights, SH_DEGREE, float(options.sh_ridge))
        if progress is not None:
            progress("colours", min(start + chunk, len(points)), len(points))
    return out


def to_dataset_frame(splats: GaussianSplats, run: LoadedRun) -> GaussianSplats:
    """Map splats from the run's normalised frame into its dataset frame (rotation, translation, uniform scale)."""
    to_dataset = dataset_from_normalized(run.scene.transform, run.scene.scale)
    linear = to_dataset[:3, :3]
    u, singular, vt = np.linalg.svd(linear)
    rotation = u @ vt
    if np.linalg.det(rotation) < 0 or singular.max() - singular.min() > 1e-6 * singular.max():
        raise ConfigError(f"{run.run_dir}: the dataparser transform is not a rotation and uniform scale")
    scale = float(singular.mean())
    rotated = rotate_splats(splats, rotation)
    means = splats.means.double() @ torch.from_numpy(linear).T + torch.from_numpy(to_dataset[:3, 3])
    return GaussianSplats(means=means.float(), quats=rotated.quats, log_scales=rotated.log_scales + math.log(scale),
                          opacity_logits=rotated.opacity_logits, sh=rotated.sh)


def splats_from_run(run: LoadedRun, options: SplatInitOptions | None = None, progress: Progress | None = None,
                    stats: dict | None = None) -> GaussianSplats:
    """Initial splats (dataset frame, SH degree 3) of a trained run; see the module docstring. ``stats``, when
    given, receives ``points`` (back-projected), ``voxel`` (merge voxel, dataset units) and ``splats``."""
    options = options or SplatInitOptions()
    run.model.eval()
    points = surface_points(run, options, progress)
    voxel = float(options.voxel_factor) * point_spacing(points, int(options.seed))
    centres, voxel = merge_on_voxels(points, voxel, int(options.max_splats))
    means = torch.from_numpy(centres).float()
    k = min(4, len(centres))
    distances, _ = cKDTree(centres).query(centres, k=k)
    spacing = torch.from_numpy(distances[:, 1:].mean(axis=1) if k > 1 else np.full(len(centres), voxel)).float()
    spacing = spacing.clamp(min=0.25 * voxel, max=4.0 * voxel)
    chunk = int(options.chunk)
    on_device = means.to(run.device)
    normals, oriented = surface_normals(run.model, on_device, chunk)
    across = torch.log(float(options.tangent_scale) * spacing)
    along = across + torch.where(oriented, math.log(float(options.thin_ratio)), 0.0)
    alpha = slab_alpha(run.model, on_device, normals.to(run.device), voxel, chunk).clamp(0.02, 0.99)
    sh = fit_colours(run.model, means, normals, options, progress)
    splats = GaussianSplats(means=means, quats=rotations_to(normals),
                            log_scales=torch.stack([across, across, along], dim=-1),
                            opacity_logits=torch.log(alpha / (1.0 - alpha)), sh=sh)
    if stats is not None:
        stats.update(points=len(points), voxel=voxel / float(run.scene.scale), splats=splats.num_splats)
    return to_dataset_frame(splats, run)
