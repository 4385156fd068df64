"""NerfModel: hand-set constant density renders the closed-form opacity; a tiny model overfits; gradients flow."""

import math

import pytest
import torch

from nerfstage.nerf.config import ModelConfig
from nerfstage.nerf.encoding import HashGridConfig
from nerfstage.nerf.renderer import NerfModel

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def tiny_model(num_images: int = 2, **kw) -> NerfModel:
    enc = HashGridConfig(num_levels=4, log2_hashmap_size=11, base_resolution=4, max_resolution=64, backend="torch")
    defaults = dict(encoding=enc, appearance_dim=4, render_step_size=0.05, occupancy_resolution=16)
    defaults.update(kw)
    return NerfModel(ModelConfig(**defaults), AABB, num_images=num_images, seed=0)


def camera_rays(n_side: int = 16, z: float = -3.0, spread: float = 0.25):
    u = torch.linspace(-spread, spread, n_side)
    x, y = torch.meshgrid(u, u, indexing="xy")
    dirs = torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(n_side * n_side)], dim=-1)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    return torch.tensor([0.0, 0.0, z]).expand(len(dirs), 3).clone(), dirs


def set_constant_field(model: NerfModel, sigma: float, colour: float) -> None:
    last_density, last_colour = model.field.density_mlp[-1], model.field.color_mlp[-1]
    with torch.no_grad():
        for layer in (last_density, last_colour):
            layer.weight.zero_()
            layer.bias.zero_()
        last_density.bias[0] = math.log(sigma)
        last_colour.bias.fill_(math.log(colour / (1.0 - colour)))


def test_constant_density_renders_closed_form_opacity():
    model = tiny_model(render_step_size=0.004)
    set_constant_field(model, sigma=0.5, colour=0.2)
    origins = torch.tensor([[0.0, 0.0, -3.0], [0.3, -0.2, 5.0], [0.0, 3.0, 0.0], [2.0, 2.0, -3.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, -2.0, 0.0], [0.0, 0.0, 1.0]])  # last one misses
    with torch.no_grad():
        out = model.render_rays(origins, dirs, None, torch.zeros(4, 3), training=False)
    expected = 1.0 - math.exp(-0.5 * 2.0)
    acc = out["accumulation"]
    assert torch.allclose(acc[:3], torch.full((3,), expected), atol=3e-3) and float(acc[3]) == 0.0
    assert torch.allclose(out["rgb"][:3], 0.2 * acc[:3, None].expand(3, 3), atol=1e-5)
    depth = 1.0 / 0.5 - 2.0 * math.exp(-1.0) / expected  # from the entry point, closed form of a slab
    assert abs(float(out["depth"][0]) - (2.0 + depth)) < 0.01 and abs(float(out["depth"][2]) - (2.0 + depth)) < 0.01
    assert 0 < out["num_samples"] <= 3 * (2.0 / 0.004 + 2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids thread hand-off overhead (large on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_model_overfits_a_set_of_rays():
    model = tiny_model(num_images=1)
    origins, dirs = camera_rays(8)
    target = 0.5 + 0.4 * torch.stack([torch.sin(8 * dirs[:, 0]), torch.cos(8 * dirs[:, 1]), dirs[:, 0] * 2], -1)
    groups = model.param_groups()
    optim = torch.optim.Adam([{**g, "lr": 3e-2} for g in groups], betas=(0.9, 0.99))
    image = torch.zeros(len(origins), dtype=torch.long)
    losses = []
    for step in range(30):
        model.update_occupancy(step)
        out = model.render_rays(origins, dirs, image, torch.ones(len(origins), 3), training=True)
        loss = torch.nn.functional.mse_loss(out["rgb"], target)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 10.0, (losses[0], losses[-1])


def test_gradients_reach_every_parameter_group():
    model = tiny_model()
    origins, dirs = camera_rays(8)
    out = model.render_rays(origins, dirs, torch.arange(len(origins)) % 2, torch.rand(len(origins), 3), True)
    (out["rgb"].sum() + out["depth"].sum() * 1e-3).backward()
    names = [g["name"] for g in model.param_groups()]
    assert names == ["encoding", "mlp", "appearance"]
    for group in model.param_groups():
        grads = [p.grad for p in group["params"]]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), group["name"]
        assert sum(float(g.abs().sum()) for g in grads) > 0.0, group["name"]
    everything = {id(p) for g in model.param_groups() for p in g["params"]}
    assert everything == {id(p) for p in model.parameters()}


def test_render_image_chunks_match_and_occupancy_cadence():
    model = tiny_model()
    origins, dirs = camera_rays(12)
    from nerfstage.nerf.chunked import render_rays_chunked

    model.inference.method = "reference"  # the fast path raises every chunk to its own max_rays
    full = render_rays_chunked(model, origins, dirs, max_rays_per_chunk=1 << 20)
    calls = []
    chunked = render_rays_chunked(model, origins, dirs, max_rays_per_chunk=50, progress=calls.append)
    assert full["rgb"].shape == (144, 3) and full["depth"].shape == (144,)
    assert calls == [50, 50, 44]
    assert torch.allclose(full["rgb"], chunked["rgb"], atol=1e-6)
    assert int(full["num_samples"]) == int(chunked["num_samples"]) > 0
    before = model.occupancy.density.clone()
    model.update_occupancy(5)  # not a multiple of 16: nothing happens
    assert torch.equal(model.occupancy.density, before)
    model.update_occupancy(16)
    assert not torch.equal(model.occupancy.density, before)


def test_evaluation_reuses_the_density_pass_exactly():
    from nerfstage.nerf.volrend import composite

    model = tiny_model(render_step_size=0.02)
    with torch.no_grad():
        model.field.density_mlp[-1].bias[0] = 2.0  # dense enough that rays terminate early
        origins, dirs = camera_rays(10)
        out = model.render_rays(origins, dirs, None, torch.ones(len(origins), 3), training=False)
        samples = model.sample(origins, dirs, training=False)
        assert samples.features is None
        rays = samples.ray_indices
        sigma, rgb = model.field(origins[rays] + dirs[rays] * samples.t_mids[:, None], dirs[rays], None)
        ref = composite(sigma, rgb, samples.t_starts, samples.t_ends, rays, len(origins), torch.ones(len(origins), 3))
    per_ray = torch.bincount(rays, minlength=len(origins))
    assert out["num_samples"] == rays.numel() and int(per_ray.max()) < 2.0 / 0.02  # terminated early
    assert torch.allclose(out["rgb"], ref["rgb"], atol=1e-6) and torch.allclose(out["depth"], ref["depth"], atol=1e-5)
