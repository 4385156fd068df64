"""Inference marching (nerf/inference.py, nerf/march_cpu.py) against the reference marcher (nerf/sampler.py):
same image on a trained run, compiled and torch marchers agree step for step, empty space is skipped."""

from __future__ import annotations

import math

import pytest
import torch

from nerfstage.core.cameras import PerspectiveCamera
from nerfstage.core.rays import generate_ray_batch
from nerfstage.nerf import march_cpu
from nerfstage.nerf.config import ModelConfig
from nerfstage.nerf.encoding import HashGridConfig
from nerfstage.nerf.inference import InferenceOptions, march_next_torch, render_rays_fast
from nerfstage.nerf.occupancy import OccupancyGrid
from nerfstage.nerf.renderer import NerfModel
from nerfstage.nerf.run import load_run
from nerfstage.nerf.sampler import MarchOptions, StepWarp, march, ray_aabb

MARCHERS = ["torch", pytest.param("cpp", marks=pytest.mark.skipif(not march_cpu.available(),
                                                                   reason="C++ marcher does not build here"))]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_rays(n: int, seed: int, radius: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of ``radius`` aimed near the origin (unit directions)."""
    gen = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1) * radius
    targets = (torch.rand(n, 3, generator=gen) - 0.5) * 1.2
    return origins, torch.nn.functional.normalize(targets - origins, dim=-1)


def blob_grid(cascades: int = 1, seed: int = 0) -> OccupancyGrid:
    """A 32^3 grid (coarse factor 4) around [-1, 1]^3 occupied only in a random sprinkle inside a small ball."""
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=32, num_cascades=cascades, seed=seed)
    cells = grid.cell_points(torch.arange(grid.occupied.numel()), torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    grid.occupied.copy_((cells.norm(dim=-1) < 0.45) & (torch.rand(len(cells), generator=gen) < 0.5))
    grid.set_coarse(4)
    return grid


def march_all(step_fn, origins, directions, grid, warp, k: int):
    """Every occupied step of every ray: {ray: [t_start, ...]} by calling ``step_fn`` until all rays finish."""
    t_near, t_far = ray_aabb(origins, directions, grid.occupied_aabb)
    s = warp.s_of_t(t_near.clamp_min(0.0))
    s_end = warp.s_of_t(torch.maximum(t_far, warp.t_of_s(s)))
    found: dict[int, list[float]] = {i: [] for i in range(len(origins))}
    alive = torch.arange(len(origins))
    while alive.numel() > 0:
        t0, _, count, s_next = step_fn(origins[alive], directions[alive], s[alive], s_end[alive], grid, warp, k)
        for row, ray in enumerate(alive.tolist()):
            found[ray] += t0[row, : int(count[row])].tolist()
        s[alive] = s_next
        alive = alive[s_next + 0.5 < s_end[alive]]
    return found


@pytest.mark.parametrize("cascades,cone", [(1, 0.0), (2, 0.01)])
def test_compiled_marcher_finds_the_same_steps_as_the_torch_marcher_and_the_reference(cascades, cone):
    if not march_cpu.available():
        pytest.skip("C++ marcher does not build here")
    grid, warp = blob_grid(cascades), StepWarp(0.02, cone)
    origins, directions = random_rays(300, seed=cascades)
    fast = march_all(march_cpu.march_next, origins, directions, grid, warp, k=3)
    slow = march_all(lambda *a: march_next_torch(*a, lookahead=16), origins, directions, grid, warp, k=5)
    reference = march(origins, directions, grid, MarchOptions(step_size=0.02, cone_angle=cone))
    ref: dict[int, list[float]] = {i: [] for i in range(len(origins))}
    for ray, t in zip(reference.ray_indices.tolist(), reference.t_starts.tolist()):
        ref[ray].append(t)
    total = sum(len(v) for v in ref.values())
    assert total > 1000  # the blob is hit by many rays
    differing = sum(len(fast[i]) != len(ref[i]) or len(slow[i]) != len(ref[i]) for i in ref)
    assert differing == 0
    worst = max((abs(a - b) for i in ref for a, b in zip(fast[i] + slow[i], ref[i] + ref[i])), default=0.0)
    assert worst < 1e-4


@pytest.mark.parametrize("marcher", MARCHERS)
@pytest.mark.parametrize("target,min_steps,max_rays", [(1 << 17, 1, 1 << 17), (256, 4, 128)])
def test_fast_inference_matches_the_reference_on_a_random_bounded_model(marcher, target, min_steps, max_rays):
    enc = HashGridConfig(num_levels=4, log2_hashmap_size=11, base_resolution=4, max_resolution=64, backend="torch")
    config = ModelConfig(encoding=enc, appearance_dim=3, render_step_size=0.02, occupancy_resolution=32)
    model = NerfModel(config, torch.tensor([[-1.0] * 3, [1.0] * 3]), num_images=4, seed=0)
    with torch.no_grad():  # denser field so rays terminate early and the opacity threshold bites
        model.field.density_mlp[-1].bias[0] = 2.0
    model.occupancy.occupied.copy_(blob_grid().occupied)
    model.occupancy.refresh()
    origins, directions = random_rays(500, seed=3)
    background = torch.rand(500, 3, generator=torch.Generator().manual_seed(4))
    model.inference = InferenceOptions(method="reference")
    ref = model.render_rays(origins, directions, None, background)
    options = InferenceOptions(marcher=marcher, target_samples=target, min_steps=min_steps, max_rays=max_rays)
    fast = render_rays_fast(model, origins, directions, background, options)
    assert fast["num_samples"] == ref["num_samples"] > 2000
    for key in ("rgb", "accumulation", "depth"):
        assert float((fast[key] - ref[key]).abs().max()) < 1e-4, key


@pytest.mark.parametrize("marcher", MARCHERS)
def test_fast_inference_renders_the_reference_image_of_a_trained_run(tiny_run, marcher):
    run = load_run(tiny_run.run_dir, device="cpu")
    camera = PerspectiveCamera.from_intrinsics(run.intrinsics[0])
    rays = generate_ray_batch(camera, run.world_from_cams[0])
    background = torch.ones(len(rays.origins), 3)
    run.model.inference = InferenceOptions(method="reference")
    ref = run.model.render_rays(rays.origins, rays.directions, None, background)
    run.model.inference = InferenceOptions(marcher=marcher)
    fast = run.model.render_rays(rays.origins, rays.directions, None, background)
    mse = float(((fast["rgb"] - ref["rgb"]) ** 2).mean())
    psnr = -10.0 * math.log10(max(mse, 1e-20))
    assert psnr >= 40.0 and float((fast["rgb"] - ref["rgb"]).abs().max()) < 1e-3, psnr
    assert fast["num_samples"] == ref["num_samples"] > 0
    assert float((fast["accumulation"] - ref["accumulation"]).abs().max()) < 1e-3


@pytest.mark.parametrize("marcher", MARCHERS)
def test_fast_inference_skips_empty_space(marcher):
    enc = HashGridConfig(num_levels=2, log2_hashmap_size=10, base_resolution=4, max_resolution=16, backend="torch")
    config = ModelConfig(encoding=enc, appearance_dim=0, render_step_size=0.01, occupancy_resolution=32)
    model = NerfModel(config, torch.tensor([[-1.0] * 3, [1.0] * 3]), num_images=1, seed=0)
    grid = model.occupancy
    centres = grid.cell_points(torch.arange(grid.occupied.numel()), torch.Generator().manual_seed(0))
    corner = torch.tensor([0.7, 0.7, 0.7])
    balls = ((centres - corner).norm(dim=-1) < 0.1) | ((centres + corner).norm(dim=-1) < 0.1)  # opposite corners
    grid.occupied.copy_(balls)
    grid.refresh()
    origins, directions = random_rays(400, seed=5, radius=4.0)
    directions = torch.nn.functional.normalize(corner - origins, dim=-1)  # all aim at one ball
    box = grid.occupied_aabb
    assert float((box[1] - box[0]).prod()) > 0.5 * 8.0  # the box clips little: skipping is the marcher's work
    t_near, t_far = ray_aabb(origins, directions, box)
    marched = float((t_far - t_near).clamp_min(0).mean()) / model.step_size  # steps through the occupied box
    out = render_rays_fast(model, origins, directions, torch.ones(400, 3), InferenceOptions(marcher=marcher))
    evaluated = out["num_evaluated"] / 400
    assert marched > 80 and 1.0 < evaluated < 0.25 * marched, (evaluated, marched)


def test_inference_drops_to_one_thread_only_when_others_oversubscribe_the_cores():
    from nerfstage.nerf.inference import oversubscribed

    assert not oversubscribed(2, load=2.3, cores=2)  # our own two threads (plus noise) on a quiet 2-core machine
    assert not oversubscribed(2, load=3.9, cores=2)
    assert oversubscribed(2, load=4.5, cores=2)  # others keep more than both cores busy
    assert oversubscribed(1, load=17.0, cores=2)
    assert not oversubscribed(1, load=1.0, cores=16)
