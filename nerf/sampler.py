"""Vectorised ray marching through the occupancy grid, returning packed samples as nerfacc does.

Every ray is clipped to the box of the grid's occupied cells and to the near/far planes, then marched with a
step that is fixed (``cone_angle = 0``, bounded scenes) or grows with distance as ``max(step, t * cone_angle)``
(unbounded scenes, instant-ngp's cone stepping). Both schedules have a closed form in a warped coordinate ``s``
in which the step is always 1, so all rays advance together in chunks of ``chunk_steps`` steps (one python
iteration per chunk, never one per ray). Groups of up to 16 steps are first tested against the grid's coarse
(pooled, dilated) copy, and only groups that may touch occupied cells are tested step by step, so empty space
costs one look-up per group. Samples in unoccupied cells are dropped. With a ``sigma_fn`` (density, evaluated
without gradients, 16 samples per ray at a time and only for rays still transparent) samples with opacity below
``alpha_threshold`` are dropped too and a ray stops as soon as its transmittance falls below
``early_stop_eps`` -- the early ray termination of instant-ngp. Samples come back packed: one flat list sorted
by ray, then by distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .occupancy import OccupancyGrid
from .volrend import exclusive_cumsum_per_ray

SigmaFn = Callable[[Float[Tensor, "m 3"]], "Float[Tensor, 'm'] | tuple[Float[Tensor, 'm'], Float[Tensor, 'm e']]"]
"""Density at points; may also return per-point features, which are then kept with the samples."""


@dataclass
class RaySamples:
    """Packed samples: sample j lies on ray ``ray_indices[j]`` between ``t_starts[j]`` and ``t_ends[j]``."""

    ray_indices: Int[Tensor, "s"]
    """Ray of each sample (sorted ascending; samples of one ray are contiguous and ordered by distance)."""
    t_starts: Float[Tensor, "s"]
    """Start distance of each sample's segment along its (unit-length) ray direction."""
    t_ends: Float[Tensor, "s"]
    """End distance of each sample's segment."""
    features: Float[Tensor, "s e"] | None = None
    """Extra values the sigma_fn returned for each kept sample (e.g. geometry features), when it returned any."""

    @property
    def t_mids(self) -> Float[Tensor, "s"]:
        return 0.5 * (self.t_starts + self.t_ends)


@dataclass
class MarchOptions:
    """How rays are marched (lengths in the normalised scene frame)."""

    step_size: float
    """Base step (and the only step when cone_angle is 0)."""
    cone_angle: float = 0.0
    """Step grows as t * cone_angle once that exceeds step_size."""
    near: float = 0.0
    """Nearest allowed distance along the ray."""
    far: float = 1.0e10
    """Farthest allowed distance along the ray."""
    max_samples: int = 1024
    """Cap of kept samples per ray."""
    stratified: bool = False
    """Jitter each ray's first step uniformly (training); False starts at the entry point (evaluation)."""
    alpha_threshold: float = 0.0
    """With a sigma_fn, drop samples with opacity below this."""
    early_stop_eps: float = 1.0e-4
    """With a sigma_fn, stop a ray once its transmittance is below this."""
    chunk_steps: int = 64
    """Steps taken by all active rays per iteration."""


def ray_aabb(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], aabb: Float[Tensor, "2 3"]
) -> tuple[Float[Tensor, "n"], Float[Tensor, "n"]]:
    """Entry and exit distances of rays through a box (exit < entry when the ray misses it)."""
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    inv = 1.0 / safe  # [n, 3]
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


class StepWarp:
    """Map between distance t and the step coordinate s in which every step has length 1."""

    def __init__(self, step_size: float, cone_angle: float):
        self.step = float(step_size)
        self.cone = float(cone_angle)
        self.t_switch = self.step / self.cone if self.cone > 0 else math.inf  # cone steps begin here

    def s_of_t(self, t: Tensor) -> Tensor:
        if self.cone <= 0:
            return t / self.step
        far = torch.log(t.clamp_min(self.t_switch) / self.t_switch) / self.cone
        return torch.minimum(t, torch.full_like(t, self.t_switch)) / self.step + far

    def t_of_s(self, s: Tensor) -> Tensor:
        if self.cone <= 0:
            return s * self.step
        s_switch = self.t_switch / self.step
        far = self.t_switch * torch.exp(self.cone * (s - s_switch).clamp_min(0.0))
        return torch.where(s < s_switch, s * self.step, far)


def march(
    origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], grid: OccupancyGrid,
    options: MarchOptions, sigma_fn: SigmaFn | None = None, generator: torch.Generator | None = None,
) -> RaySamples:
    """March unit-direction rays through ``grid``; see the module docstring."""
    warp = StepWarp(options.step_size, options.cone_angle)
    t_near, t_far = ray_aabb(origins, directions, grid.occupied_aabb)
    t_near = t_near.clamp_min(options.near)
    t_far = t_far.clamp_max(options.far)
    s_start = warp.s_of_t(t_near)  # [n]
    if options.stratified:
        s_start = s_start + torch.rand(s_start.shape, generator=generator, device=s_start.device)
    stop = -math.log(max(options.early_stop_eps, 1e-30)) if sigma_fn is not None else math.inf
    optical = torch.zeros_like(t_far)  # [n] optical depth marched so far (with a sigma_fn)
    parts: list[tuple[Tensor, ...]] = []
    for rays, s in _occupied_steps(origins, directions, grid, warp, s_start, t_far, options.chunk_steps, optical, stop):
        t0, t1 = warp.t_of_s(s), warp.t_of_s(s + 1.0)
        part: tuple[Tensor, ...] = (rays, t0, t1)
        if sigma_fn is not None:
            keep, features = _early_stop(origins, directions, rays, t0, t1, sigma_fn, options, optical, stop)
            part = (rays, t0, t1) if features is None else (rays, t0, t1, features)
            keep = keep.nonzero().squeeze(1)
            part = tuple(x.index_select(0, keep) for x in part)
        if part[0].numel() > 0:
            parts.append(part)
    return _pack(parts, options.max_samples, origins)


def _pack(parts: list[tuple[Tensor, ...]], max_samples: int, like: Tensor) -> RaySamples:
    """Merge chunks (each sorted by ray; chunks in distance order) into one list sorted by ray then distance,
    without sorting: every sample's slot is its ray's start + the ray's samples in earlier chunks + its rank."""
    if not parts:
        empty = like.new_zeros(0)
        return RaySamples(empty.long(), empty, empty)
    merged = list(parts[0])
    if len(parts) > 1:
        n_rays = int(max(int(p[0].max()) for p in parts)) + 1
        counts = [torch.bincount(p[0], minlength=n_rays) for p in parts]
        total = torch.stack(counts).sum(dim=0)  # [n_rays]
        running = torch.cumsum(total, 0) - total  # next free slot of each ray
        size = int(total.sum())
        merged = [x.new_empty((size,) + x.shape[1:]) for x in parts[0]]
        for part, count in zip(parts, counts):
            slot = running.index_select(0, part[0]) + rank_in_ray(part[0])
            for out, x in zip(merged, part):
                out[slot] = x
            running += count
    keep = (rank_in_ray(merged[0]) < max_samples).nonzero().squeeze(1)
    merged = [x.index_select(0, keep) for x in merged]
    return RaySamples(*merged)


def rank_in_ray(rays: Int[Tensor, "m"]) -> Int[Tensor, "m"]:
    """Position of each sample among its ray's samples (samples sorted by ray)."""
    index = torch.arange(rays.numel(), device=rays.device)
    is_first = torch.ones_like(rays, dtype=torch.bool)
    is_first[1:] = rays[1:] != rays[:-1]
    return index - torch.cummax(torch.where(is_first, index, 0), dim=0)[0]


def _occupied_steps(
    origins: Tensor, directions: Tensor, grid: OccupancyGrid, warp: StepWarp, s_start: Tensor, t_far: Tensor,
    chunk_steps: int, optical: Tensor, stop: float,
) -> Iterator[tuple[Int[Tensor, "m"], Float[Tensor, "m"]]]:
    """Yield, chunk by chunk, (ray, step start s) of the steps whose midpoint lies in an occupied cell (sorted
    by ray then s within a chunk). Rays whose ``optical`` depth reached ``stop`` are dropped between chunks.

    Steps are tested ``F`` at a time against the grid's coarse copy first (F steps never span more than one
    coarse cell), and only the groups that pass are tested step by step.
    """
    group = _group_size(grid, warp)
    groups_per_chunk = max(1, chunk_steps // group)
    fine = torch.arange(group, device=origins.device, dtype=origins.dtype)  # [F]
    offsets = torch.arange(groups_per_chunk, device=origins.device, dtype=origins.dtype) * group  # [G]
    s_end = warp.s_of_t(torch.maximum(t_far, warp.t_of_s(s_start)))  # [n]
    active = (s_end > s_start).nonzero(as_tuple=True)[0]
    lookup = _Lookup(grid, origins, directions, warp)
    first = 0.0
    while active.numel() > 0:
        s_group = s_start.index_select(0, active)[:, None] + (first + offsets)  # [a, G]
        hit = lookup.coarse(active, s_group, group) & (s_group < s_end.index_select(0, active)[:, None])
        flat = hit.view(-1).nonzero().squeeze(1)  # [m] into [a, G]
        ray = active.index_select(0, flat // groups_per_chunk)
        s = s_group.view(-1).index_select(0, flat)[:, None] + fine  # [m, F]
        keep = lookup.fine(ray, s) & (s + 0.5 < s_end.index_select(0, ray)[:, None])
        kept = keep.view(-1).nonzero().squeeze(1)  # [k] into [m, F]
        if kept.numel() > 0:
            yield ray.index_select(0, kept // group), s.view(-1).index_select(0, kept)
        first += groups_per_chunk * group
        alive = (s_start.index_select(0, active) + first < s_end.index_select(0, active))
        active = active[alive & (optical.index_select(0, active) < stop)]


class _Lookup:
    """Occupancy of steps (ray, s): cell arithmetic along precomputed rays in cell units for one cascade, the
    general point look-up for several."""

    def __init__(self, grid: OccupancyGrid, origins: Tensor, directions: Tensor, warp: StepWarp):
        self.grid, self.origins, self.directions, self.warp = grid, origins, directions, warp
        self.single = grid.num_cascades == 1
        if self.single:
            self.a, self.b = grid.to_cell_units(origins, directions)  # [n, 3] each

    def _cells(self, rays: Tensor, t: Tensor) -> Tensor:
        return self.a.index_select(0, rays)[:, None] + self.b.index_select(0, rays)[:, None] * t[..., None]

    def coarse(self, rays: Tensor, s: Tensor, group: int) -> Tensor:
        """Whether the groups of ``group`` steps starting at ``s`` ([a, G]) may touch an occupied cell."""
        if self.single:
            return self.grid.lookup_cell_units(self._cells(rays, self.warp.t_of_s(s)), coarse=True)
        o, d = self.origins.index_select(0, rays)[:, None], self.directions.index_select(0, rays)[:, None]
        return _coarse_hit(o, d, self.grid, self.warp, s, group)

    def fine(self, rays: Tensor, s: Tensor) -> Tensor:
        """Whether the midpoints of steps ``s`` ([m, F]) on ``rays`` ([m]) lie in occupied cells."""
        t_mid = self.warp.t_of_s(s + 0.5)
        if self.single:
            return self.grid.lookup_cell_units(self._cells(rays, t_mid), coarse=False)
        o, d = self.origins.index_select(0, rays)[:, None], self.directions.index_select(0, rays)[:, None]
        return self.grid.query(_points(o, d, t_mid).view(-1, 3)).view_as(s)


def _coarse_hit(origins: Tensor, directions: Tensor, grid: OccupancyGrid, warp: StepWarp, s: Tensor, group: int):
    """Whether the group of steps starting at ``s`` ([a, G]) may touch an occupied cell. With several cascades
    the group's end is probed too, in case it crosses into the next cascade."""
    hit = grid.query_coarse(_points(origins, directions, warp.t_of_s(s)).reshape(-1, 3)).view_as(s)
    if grid.num_cascades > 1:
        end = _points(origins, directions, warp.t_of_s(s + group))
        hit |= grid.query_coarse(end.reshape(-1, 3)).view_as(s)
    return hit


def _points(origins: Tensor, directions: Tensor, t: Tensor) -> Tensor:
    return origins + directions * t[..., None]


def _group_size(grid: OccupancyGrid, warp: StepWarp) -> int:
    """Steps per coarse test: as many as fit in one coarse cell at the finest cascade (1..16)."""
    if grid.coarse_factor <= 1:
        return 1
    half = float(grid.half_size.min())
    cell = 2.0 * half / grid.resolution * grid.coarse_factor
    longest = warp.step
    if warp.cone > 0:  # cameras inside the scene box: in cascade k, t <= 2^(k+1) sqrt(3) half, cells scale by 2^k
        longest = max(longest, warp.cone * 2.0 * math.sqrt(3.0) * half)
    return int(max(1, min(16, cell // longest)))


def _early_stop(
    origins: Tensor, directions: Tensor, rays: Tensor, t0: Tensor, t1: Tensor, sigma_fn: SigmaFn,
    options: MarchOptions, optical: Tensor, stop: float, window: int = 16,
) -> tuple[Tensor, Tensor | None]:
    """Mask of the samples (sorted by ray) a ray keeps: density evaluated ``window`` samples per ray at a time,
    only for rays still transparent; drops samples behind optical depth ``stop`` (transmittance
    ``early_stop_eps``) or with opacity below ``alpha_threshold``. Adds the samples' optical depth to ``optical``.
    Returns the mask and the features sigma_fn returned (rows of samples it never evaluated are zero)."""
    windows = rank_in_ray(rays) // window
    keep = torch.zeros_like(rays, dtype=torch.bool)
    features: Tensor | None = None
    for w in range(int(windows.max()) + 1):  # a chunk holds few windows per ray: one mask pass each
        idx = (windows == w).nonzero().squeeze(1)  # ray-sorted
        idx = idx[optical.index_select(0, rays.index_select(0, idx)) < stop]
        if idx.numel() == 0:
            break
        r = rays.index_select(0, idx)
        a, b = t0.index_select(0, idx), t1.index_select(0, idx)
        points = _points(origins.index_select(0, r), directions.index_select(0, r), 0.5 * (a + b))
        sigma = sigma_fn(points)
        if isinstance(sigma, tuple):
            sigma, extra = sigma
            if features is None:
                features = extra.new_zeros((len(rays),) + extra.shape[1:])
            features[idx] = extra
        tau = sigma.to(t0.dtype) * (b - a)
        excl = optical.index_select(0, r) + exclusive_cumsum_per_ray(tau, r)
        alpha = 1.0 - torch.exp(-tau)
        keep[idx] = (excl < stop) & (alpha >= options.alpha_threshold)
        optical.index_add_(0, r, tau)
    return keep, features
