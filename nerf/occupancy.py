"""Multi-cascade occupancy grid for empty-space skipping (instant-ngp's density grid, as nerfacc's estimator).

Why cascades rather than proposal networks: one sampler serves both bounded scenes (one cascade = the scene box)
and unbounded captures (cascade k covers the scene box scaled by 2**k, so a few cascades reach far into the
background at ever coarser cells, while the field itself sees mip-NeRF 360 contracted positions). It needs no
second network, no extra loss and no extra optimiser state, and skipping costs a table look-up instead of
evaluating proposal MLPs on every ray -- which matters most on a 2-core CPU, where every network evaluation
counts. instant-ngp and nerfacc use the same design.

Update rule (instant-ngp): every ``update_every`` training steps, a temporary grid receives the maximum density
* render-step of jittered samples in a set of cells: all cells during warm-up, afterwards a random quarter of the
cells plus as many samples drawn from the occupied cells. The cached grid becomes ``max(decay * grid, tmp)`` and
a cell is occupied when its value exceeds ``min(threshold, mean of the grid)``. Cells of cascade k that lie inside
cascade k-1 are never looked up and never evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

DensityFn = Callable[[Float[Tensor, "n 3"]], Float[Tensor, "n"]]


class OccupancyGrid(torch.nn.Module):
    """``num_cascades`` grids of ``resolution**3`` cells around ``aabb`` ([2, 3], min/max corners)."""

    def __init__(self, aabb: Float[Tensor, "2 3"], resolution: int = 128, num_cascades: int = 1, seed: int = 0):
        super().__init__()
        self.resolution = int(resolution)
        self.num_cascades = int(num_cascades)
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        self.register_buffer("center", (aabb[0] + aabb[1]) * 0.5)  # [3]
        self.register_buffer("half_size", (aabb[1] - aabb[0]) * 0.5)  # [3]
        cells = self.num_cascades * self.resolution**3
        self.register_buffer("density", torch.zeros(cells))  # [L * R^3] EMA of density * step
        self.register_buffer("occupied", torch.ones(cells, dtype=torch.bool))  # [L * R^3]
        self.register_buffer("candidates", self._candidate_cells(), persistent=False)  # [C] looked-up cells
        self.register_buffer("occupied_aabb", self.outer_aabb().clone())  # [2, 3] box of the occupied cells
        self.coarse_factor = 1
        self.register_buffer("coarse", torch.ones(cells, dtype=torch.bool), persistent=False)  # see set_coarse
        self.seed = seed

    def set_coarse(self, factor: int) -> None:
        """Keep a coarse copy of the grid (``factor``**3 cells pooled into one, dilated by one coarse cell) that
        the ray marcher uses to skip empty space ``factor`` cells at a time; a point's coarse cell is occupied
        whenever any fine cell within one coarse cell of it is."""
        self.coarse_factor = max(1, int(factor))
        self.refresh()

    def refresh(self) -> None:
        """Recompute the occupied box and the coarse grid from ``occupied`` (call after editing it by hand)."""
        res, f = self.resolution, self.coarse_factor
        grid = self.occupied.view(self.num_cascades, 1, res, res, res).float()
        pooled = torch.nn.functional.max_pool3d(grid, f, f, ceil_mode=True)
        pooled = torch.nn.functional.max_pool3d(pooled, 3, 1, padding=1)
        self.coarse = pooled.reshape(self.num_cascades, -1) > 0  # [L, ceil(R/f)^3]
        self.occupied_aabb.copy_(self._occupied_box())

    def _occupied_box(self) -> Float[Tensor, "2 3"]:
        """Smallest box holding every occupied cell (an empty box at the centre when none is)."""
        cells = self.candidates[self.occupied[self.candidates]]
        if cells.numel() == 0:
            return torch.stack([self.center, self.center])
        res = self.resolution
        level, rest = cells // res**3, cells % res**3
        ijk = torch.stack([rest // (res * res), (rest // res) % res, rest % res], dim=-1)  # [m, 3]
        scale = torch.exp2(level.float())[:, None] * self.half_size
        lo = self.center + (ijk / res * 2.0 - 1.0) * scale
        hi = self.center + ((ijk + 1) / res * 2.0 - 1.0) * scale
        return torch.stack([lo.amin(dim=0), hi.amax(dim=0)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.refresh()

    def outer_aabb(self) -> Float[Tensor, "2 3"]:
        """The box of the coarsest cascade (nothing outside it is ever occupied)."""
        half = self.half_size * 2.0 ** (self.num_cascades - 1)
        return torch.stack([self.center - half, self.center + half])

    def _candidate_cells(self) -> Int[Tensor, "c"]:
        """Flat indices of the cells of every cascade that are not covered by the next finer cascade."""
        res = self.resolution
        coords = _cell_coords(res)  # [R^3, 3]
        centre = (coords.float() + 0.5) / res * 2.0 - 1.0  # [R^3, 3] in [-1, 1]
        inner = centre.abs().amax(dim=-1) < 0.5  # inside the finer cascade (half the size)
        flat = torch.arange(res**3)
        parts = [flat] + [level * res**3 + flat[~inner] for level in range(1, self.num_cascades)]
        return torch.cat(parts)

    def cell_index(
        self, points: Float[Tensor, "n 3"], factor: int = 1
    ) -> tuple[Int[Tensor, "n"], Bool[Tensor, "n"]]:
        """Flat cell index of each point in its finest cascade (of the grid pooled by ``factor``), and whether
        it lies inside the grid at all."""
        local = (points - self.center) / self.half_size  # [n, 3] scene box = [-1, 1]^3
        res = self.resolution
        if self.num_cascades > 1:
            extent = local.abs().amax(dim=-1)  # [n]
            level = torch.ceil(torch.log2(extent.clamp_min(1e-12))).clamp(0, self.num_cascades - 1)
            local = local / torch.exp2(level)[:, None]  # [n, 3] in [-1, 1] when inside
        inside = local.abs().amax(dim=-1) <= 1.0
        ijk = ((local + 1.0) * (0.5 * res)).long().clamp(0, res - 1)  # [n, 3]
        if factor > 1:
            ijk, res = ijk // factor, -(-res // factor)
        flat = (ijk[:, 0] * res + ijk[:, 1]) * res + ijk[:, 2]
        if self.num_cascades > 1:
            flat = flat + level.long() * res**3
        return flat, inside

    def query(self, points: Float[Tensor, "n 3"]) -> Bool[Tensor, "n"]:
        """Whether each point lies in an occupied cell."""
        flat, inside = self.cell_index(points)
        return self.occupied.index_select(0, flat) & inside

    def to_cell_units(
        self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"]
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
        """Rays in the (first cascade's) cell units: point ``a + b t`` lies in cell ``floor(a + b t)``."""
        inv_cell = self.resolution / (2.0 * self.half_size)  # [3]
        return (origins - (self.center - self.half_size)) * inv_cell, directions * inv_cell

    def lookup_cell_units(self, cells: Float[Tensor, "... 3"], coarse: bool) -> Bool[Tensor, "..."]:
        """Occupancy (fine, or coarse with ``coarse``) at positions in cell units, clamped to the first cascade
        (single-cascade grids; the ray marcher uses it for points it has clipped to the occupied box)."""
        res, factor = self.resolution, (self.coarse_factor if coarse else 1)
        grid = self.coarse.view(-1) if coarse else self.occupied
        if factor > 1:
            cells, res = cells * (1.0 / factor), -(-res // factor)
        ijk = cells.floor().clamp_(0, res - 1)
        flat = ((ijk[..., 0] * res + ijk[..., 1]) * res + ijk[..., 2]).long()
        return grid.index_select(0, flat.view(-1)).view(flat.shape)

    def query_coarse(self, points: Float[Tensor, "n 3"]) -> Bool[Tensor, "n"]:
        """Whether any occupied fine cell lies within one coarse cell of each point (see ``set_coarse``)."""
        flat, inside = self.cell_index(points, self.coarse_factor)
        return self.coarse.view(-1).index_select(0, flat) & inside

    def cell_points(self, cells: Int[Tensor, "m"], generator: torch.Generator) -> Float[Tensor, "m 3"]:
        """A uniformly jittered point inside each of the flat ``cells``."""
        res = self.resolution
        level, rest = cells // res**3, cells % res**3
        ijk = torch.stack([rest // (res * res), (rest // res) % res, rest % res], dim=-1)  # [m, 3]
        jitter = torch.rand(ijk.shape, generator=generator, device=cells.device)
        local = (ijk + jitter) / res * 2.0 - 1.0  # [m, 3] in [-1, 1]
        return self.center + local * self.half_size * torch.exp2(level.float())[:, None]

    @torch.no_grad()
    def update(
        self, step: int, density_fn: DensityFn, step_size: float, warmup_steps: int = 256,
        decay: float = 0.95, threshold: float = 0.01, chunk: int = 1 << 18,
    ) -> None:
        """One instant-ngp density-grid update using ``density_fn`` (points [n, 3] -> density [n])."""
        generator = torch.Generator(device=self.density.device).manual_seed(self.seed * 1_000_003 + step)
        cells = self._cells_to_update(step < warmup_steps, generator)  # [m]
        tmp = torch.zeros_like(self.density)
        for start in range(0, cells.numel(), chunk):
            part = cells[start : start + chunk]
            value = density_fn(self.cell_points(part, generator)).float() * step_size  # [m']
            tmp.scatter_reduce_(0, part, value, reduce="amax")
        self.density.copy_(torch.maximum(self.density * decay, tmp))
        mean = self.density[self.candidates].mean()
        self.occupied.copy_(self.density > torch.clamp(mean, max=threshold))
        self.refresh()

    def _cells_to_update(self, warmup: bool, generator: torch.Generator) -> Int[Tensor, "m"]:
        """All candidate cells in warm-up; else a random quarter plus as many drawn from occupied cells."""
        cand = self.candidates
        if warmup:
            return cand
        n = max(cand.numel() // 4, 1)
        uniform = cand[torch.randint(cand.numel(), (n,), generator=generator, device=cand.device)]
        occupied = cand[self.occupied[cand]]
        if occupied.numel() == 0:
            return uniform
        picked = occupied[torch.randint(occupied.numel(), (n,), generator=generator, device=cand.device)]
        return torch.cat([uniform, picked])

    def occupied_fraction(self) -> float:
        """Fraction of look-up-able cells currently occupied (a progress figure)."""
        return float(self.occupied[self.candidates].float().mean())


def _cell_coords(res: int) -> Int[Tensor, "m 3"]:
    """Integer (i, j, k) of every cell, in flat (i * R + j) * R + k order."""
    axis = torch.arange(res)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
