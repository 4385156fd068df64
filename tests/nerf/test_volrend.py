"""Packed volume rendering: weights are a sub-probability per ray and match the closed form of a slab."""

import math

import torch

from nerfstage.nerf.volrend import composite, exclusive_cumsum_per_ray, render_weights


def _random_packed(seed: int = 0, n_rays: int = 50):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 40, (n_rays,), generator=g)
    rays = torch.repeat_interleave(torch.arange(n_rays), counts)
    dt = torch.rand(len(rays), generator=g) * 0.1
    t_starts = exclusive_cumsum_per_ray(dt, rays) + 0.5
    sigmas = torch.rand(len(rays), generator=g) * 30.0
    return rays, t_starts, t_starts + dt, sigmas, counts


def test_exclusive_cumsum_restarts_per_ray():
    rays = torch.tensor([0, 0, 0, 2, 2, 5])
    values = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 7.0])
    assert exclusive_cumsum_per_ray(values, rays).tolist() == [0.0, 1.0, 3.0, 0.0, 10.0, 0.0]


def test_weights_sum_to_at_most_one():
    rays, t0, t1, sigmas, counts = _random_packed()
    w = render_weights(sigmas, t0, t1, rays)
    per_ray = torch.zeros(len(counts)).index_add_(0, rays, w)
    expected = 1.0 - torch.exp(-torch.zeros(len(counts)).index_add_(0, rays, sigmas * (t1 - t0)))
    assert float(w.min()) >= 0.0
    assert float(per_ray.max()) <= 1.0 + 1e-6
    assert torch.allclose(per_ray, expected, atol=1e-5)
    assert float(per_ray[counts == 0].abs().max()) == 0.0


def test_constant_density_slab_matches_closed_form():
    sigma, near, far, n = 1.7, 2.0, 3.0, 4000
    edges = torch.linspace(near, far, n + 1, dtype=torch.float64)
    rays = torch.zeros(n, dtype=torch.long)
    rgbs = torch.full((n, 3), 0.25, dtype=torch.float64)
    sig = torch.full((n,), sigma, dtype=torch.float64)
    out = composite(sig, rgbs, edges[:-1], edges[1:], rays, 1, background=torch.ones(1, 3, dtype=torch.float64))
    thickness = far - near
    opacity = 1.0 - math.exp(-sigma * thickness)
    depth = near + 1.0 / sigma - thickness * math.exp(-sigma * thickness) / opacity  # E[t | terminates in slab]
    assert abs(float(out["accumulation"][0]) - opacity) < 1e-9
    assert abs(float(out["depth"][0]) - depth) < 1e-6
    assert abs(float(out["rgb"][0, 0]) - (0.25 * opacity + (1.0 - opacity))) < 1e-9


def test_gradients_are_finite():
    rays, t0, t1, sigmas, counts = _random_packed(seed=3)
    sigmas = (sigmas * 100.0).requires_grad_()  # very opaque rays too
    rgbs = torch.rand(len(rays), 3, requires_grad=True)
    out = composite(sigmas, rgbs, t0, t1, rays, len(counts), background=torch.zeros(len(counts), 3))
    (out["rgb"].sum() + out["depth"].sum()).backward()
    assert torch.isfinite(sigmas.grad).all() and torch.isfinite(rgbs.grad).all()
    assert float(rgbs.grad.abs().sum()) > 0.0
