"""Occupancy grid (instant-ngp update rule, cascades) and the ray marcher that skips empty space."""

import math

import torch

from nerfstage.nerf.occupancy import OccupancyGrid
from nerfstage.nerf.sampler import MarchOptions, StepWarp, march

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
BOX = (torch.tensor([0.0, -0.25, 0.25]), torch.tensor([0.25, 0.0, 0.5]))  # exactly 2x2x2 cells at R = 16


def box_density(points: torch.Tensor) -> torch.Tensor:
    inside = ((points >= BOX[0]) & (points < BOX[1])).all(dim=-1)
    return inside.float() * 100.0


def box_grid(resolution: int = 16, cascades: int = 1) -> OccupancyGrid:
    grid = OccupancyGrid(AABB, resolution=resolution, num_cascades=cascades, seed=0)
    grid.update(0, box_density, step_size=0.01)
    return grid


def test_update_marks_exactly_the_cells_of_the_box():
    grid = box_grid()
    occupied = grid.occupied.view(16, 16, 16).nonzero()
    assert occupied.shape[0] == 8
    assert occupied.min(dim=0).values.tolist() == [8, 6, 10]
    assert occupied.max(dim=0).values.tolist() == [9, 7, 11]
    # density grid holds density * step of the box, zero elsewhere
    assert math.isclose(float(grid.density.max()), 1.0) and int((grid.density > 0).sum()) == 8


def test_ema_decay_after_warmup_and_query():
    grid = box_grid()
    grid.update(1000, lambda p: torch.zeros(len(p)), step_size=0.01, warmup_steps=256, decay=0.95)
    assert math.isclose(float(grid.density.max()), 0.95, rel_tol=1e-6)  # every cell decays, even unsampled ones
    assert int(grid.occupied.sum()) == 8  # still above min(threshold, mean)
    centre = (BOX[0] + BOX[1]) / 2
    points = torch.stack([centre, centre + 0.3, torch.tensor([5.0, 0.0, 0.0])])
    assert grid.query(points).tolist() == [True, False, False]


def test_cascades_cover_twice_the_box_and_skip_inner_cells():
    grid = OccupancyGrid(AABB, resolution=8, num_cascades=3)
    assert torch.allclose(grid.outer_aabb(), AABB * 4)
    assert grid.candidates.numel() == 8**3 + 2 * (8**3 - 4**3)
    flat, inside = grid.cell_index(torch.tensor([[0.5, 0.0, 0.0], [1.5, 0.0, 0.0], [3.9, 3.9, -3.9], [4.1, 0, 0]]))
    assert (flat // 8**3).tolist()[:3] == [0, 1, 2] and inside.tolist() == [True, True, True, False]


def _rays(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = BOX[0] + (BOX[1] - BOX[0]) * torch.rand(n, 3, generator=g) * 1.4 - 0.05  # some miss the box
    origins = torch.randn(n, 3, generator=g)
    origins = origins / origins.norm(dim=-1, keepdim=True) * 3.0
    d = target - origins
    return origins, d / d.norm(dim=-1, keepdim=True)


def test_march_samples_only_occupied_space_in_order():
    grid = box_grid()
    origins, dirs = _rays()
    s = march(origins, dirs, grid, MarchOptions(step_size=0.01, stratified=True), generator=torch.Generator())
    points = origins[s.ray_indices] + dirs[s.ray_indices] * s.t_mids[:, None]
    assert s.ray_indices.numel() > 1000
    assert bool(grid.query(points).all())  # nothing in empty space
    assert float((points - BOX[0]).min()) >= -1e-5 and float((BOX[1] - points).min()) >= -1e-5
    same = s.ray_indices[1:] == s.ray_indices[:-1]
    assert bool((s.ray_indices[1:] >= s.ray_indices[:-1]).all())
    assert bool((s.t_starts[1:][same] >= s.t_ends[:-1][same] - 1e-5).all())  # ordered, non-overlapping
    lengths = torch.zeros(len(origins)).index_add_(0, s.ray_indices, s.t_ends - s.t_starts)
    assert 0 < float(lengths.max()) <= 0.25 * math.sqrt(3) + 0.02


def test_early_termination_and_sample_cap():
    grid = box_grid()
    origins, dirs = _rays()
    base = march(origins, dirs, grid, MarchOptions(step_size=0.005))
    opaque = march(origins, dirs, grid, MarchOptions(step_size=0.005), sigma_fn=box_density)
    # density 100: transmittance < 1e-4 after ~0.092 of path, i.e. ~19 steps
    per_ray = torch.bincount(opaque.ray_indices, minlength=len(origins))
    assert 0 < int(per_ray.max()) <= 20 and opaque.t_starts.numel() < base.t_starts.numel() / 2
    capped = march(origins, dirs, grid, MarchOptions(step_size=0.005, max_samples=7, chunk_steps=4))
    assert int(torch.bincount(capped.ray_indices).max()) == 7


def test_cone_steps_grow_with_distance():
    warp = StepWarp(0.01, 1.0 / 256)
    t = torch.tensor([0.5, 2.56, 10.0, 100.0])
    assert torch.allclose(warp.t_of_s(warp.s_of_t(t)), t, rtol=1e-5)
    steps = warp.t_of_s(warp.s_of_t(t) + 1.0) - t
    assert torch.allclose(steps, torch.tensor([0.01, 0.01, 10.0 / 256, 100.0 / 256]), rtol=1e-2)


def test_coarse_skipping_finds_the_same_samples_as_plain_marching():
    origins, dirs = _rays(seed=4)
    for cascades, cone in ((1, 0.0), (3, 1.0 / 256)):
        grid = OccupancyGrid(AABB, resolution=32, num_cascades=cascades, seed=0)
        grid.update(0, box_density, step_size=0.01)
        options = MarchOptions(step_size=0.004, cone_angle=cone)
        plain = march(origins, dirs, grid, options)
        grid.set_coarse(4)
        assert int(grid.coarse.sum()) < grid.coarse.numel() / 4  # the coarse copy is mostly empty
        coarse = march(origins, dirs, grid, options)
        assert plain.ray_indices.numel() > 1000
        assert torch.equal(plain.ray_indices, coarse.ray_indices)
        assert torch.allclose(plain.t_starts, coarse.t_starts) and torch.allclose(plain.t_ends, coarse.t_ends)


def test_occupied_box_and_state_dict_round_trip():
    grid = box_grid()
    assert torch.allclose(grid.occupied_aabb, torch.stack(BOX))
    fresh = OccupancyGrid(AABB, resolution=16, num_cascades=1, seed=0)
    fresh.set_coarse(2)
    assert torch.allclose(fresh.occupied_aabb, AABB)  # nothing known yet: everything may be occupied
    fresh.load_state_dict(grid.state_dict())
    assert torch.equal(fresh.occupied, grid.occupied) and torch.allclose(fresh.occupied_aabb, torch.stack(BOX))
    assert int(fresh.coarse.sum()) == 27  # the pooled box cell, dilated by one coarse cell
