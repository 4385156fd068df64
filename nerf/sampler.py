"""Vectorised ray marching through the occupancy grid, returning packed samples as nerfacc does.

Every ray is clipped to the grid's outer box and the near/far planes, then marched with a step that is fixed
(``cone_angle = 0``, bounded scenes) or grows with distance as ``max(step, t * cone_angle)`` (unbounded scenes,
instant-ngp's cone stepping). Both schedules have a closed form in a warped coordinate ``s`` in which the step is
always 1, so all rays advance together in chunks of ``chunk_steps`` steps (one python iteration per chunk, never
one per ray). Samples in unoccupied cells are dropped. With a ``sigma_fn`` (density only, evaluated without
gradients) samples with opacity below ``alpha_threshold`` are dropped too and a ray stops as soon as its
transmittance falls below ``early_stop_eps`` -- the early ray termination of instant-ngp.
Samples come back packed: one flat list sorted by ray, then by distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .occupancy import OccupancyGrid

SigmaFn = Callable[[Float[Tensor, "m 3"]], Float[Tensor, "m"]]


@dataclass
class RaySamples:
    """Packed samples: sample j lies on ray ``ray_indices[j]`` between ``t_starts[j]`` and ``t_ends[j]``."""

    ray_indices: Int[Tensor, "s"]
    """Ray of each sample (sorted ascending; samples of one ray are contiguous and ordered by distance)."""
    t_starts: Float[Tensor, "s"]
    """Start distance of each sample's segment along its (unit-length) ray direction."""
    t_ends: Float[Tensor, "s"]
    """End distance of each sample's segment."""

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
    t_near, t_far = ray_aabb(origins, directions, grid.outer_aabb())
    t_near = t_near.clamp_min(options.near)
    t_far = t_far.clamp_max(options.far)
    s_start = warp.s_of_t(t_near)  # [n]
    if options.stratified:
        s_start = s_start + torch.rand(s_start.shape, generator=generator, device=s_start.device)
    state = _MarchState.start(t_far > t_near, options.early_stop_eps)
    chunks: list[tuple[Tensor, Tensor]] = []
    offsets = torch.arange(options.chunk_steps, device=origins.device, dtype=origins.dtype)  # [K]
    first = 0
    while state.active.numel() > 0:
        act = state.active
        s = s_start[act, None] + (first + offsets)  # [a, K]
        t0, t1 = warp.t_of_s(s), warp.t_of_s(s + 1.0)
        mid = 0.5 * (t0 + t1)
        in_range = mid < t_far[act, None]  # [a, K]
        points = origins[act, None] + directions[act, None] * mid[..., None]  # [a, K, 3]
        keep = in_range & grid.query(points.reshape(-1, 3)).view_as(in_range)
        keep = state.filter(keep, points, t1 - t0, sigma_fn, options)
        rows, cols = keep.nonzero(as_tuple=True)
        chunks.append((act[rows], torch.stack([t0[rows, cols], t1[rows, cols]], dim=-1)))
        state.retire(in_range[:, -1], options.max_samples)
        first += options.chunk_steps
    return _pack(chunks, origins)


@dataclass
class _MarchState:
    """Per-ray bookkeeping of the active rays while marching."""

    active: Int[Tensor, "a"]  # indices of rays still marching (ascending)
    count: Int[Tensor, "a"]  # samples kept so far
    optical_depth: Float[Tensor, "a"]  # sum of sigma * dt over kept samples (with a sigma_fn)
    stop_depth: float  # -log(early_stop_eps): a ray is opaque past this optical depth

    @staticmethod
    def start(hit: Tensor, early_stop_eps: float) -> _MarchState:
        active = hit.nonzero(as_tuple=True)[0]
        zeros = torch.zeros(active.numel(), device=hit.device)
        return _MarchState(active, zeros.long(), zeros, -math.log(max(early_stop_eps, 1e-30)))

    def filter(
        self, keep: Tensor, points: Tensor, dt: Tensor, sigma_fn: SigmaFn | None, options: MarchOptions
    ) -> Tensor:
        """Apply the per-ray sample cap and, with a sigma_fn, opacity skipping and early termination."""
        if sigma_fn is not None and bool(keep.any()):
            sigma = torch.zeros_like(dt)  # [a, K]
            with torch.no_grad():
                sigma[keep] = sigma_fn(points[keep]).to(dt.dtype)
            tau = sigma * dt
            excl = self.optical_depth[:, None] + torch.cumsum(tau, dim=-1) - tau  # before each sample
            alpha = 1.0 - torch.exp(-tau)
            keep = keep & (torch.exp(-excl) >= options.early_stop_eps) & (alpha >= options.alpha_threshold)
            self.optical_depth = self.optical_depth + (tau * keep).sum(dim=-1)
        keep = keep & (self.count[:, None] + torch.cumsum(keep.long(), dim=-1) <= options.max_samples)
        self.count = self.count + keep.sum(dim=-1)
        return keep

    def retire(self, still_inside: Tensor, max_samples: int) -> None:
        """Drop rays that left the box, hit the sample cap or became opaque (transmittance below eps)."""
        alive = still_inside & (self.count < max_samples) & (self.optical_depth < self.stop_depth)
        self.active, self.count, self.optical_depth = self.active[alive], self.count[alive], self.optical_depth[alive]


def _pack(chunks: list[tuple[Tensor, Tensor]], like: Tensor) -> RaySamples:
    """Concatenate per-chunk samples and sort them by ray (stable: chunks are already ordered by distance)."""
    if not chunks:
        empty = like.new_zeros(0)
        return RaySamples(empty.long(), empty, empty)
    rays = torch.cat([c[0] for c in chunks])
    ts = torch.cat([c[1] for c in chunks])  # [s, 2]
    rays, order = torch.sort(rays, stable=True)
    ts = ts[order]
    return RaySamples(rays, ts[:, 0].contiguous(), ts[:, 1].contiguous())
