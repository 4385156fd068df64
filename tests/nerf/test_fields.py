"""The radiance field: SH basis, truncated exp, bounded/unbounded positions, appearance embeddings."""

import math

import torch

from nerfstage.nerf.config import ModelConfig
from nerfstage.nerf.encoding import HashGridConfig
from nerfstage.nerf.fields import NerfField, trunc_exp
from nerfstage.nerf.sh import sh_encode

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def tiny_config(**kw) -> ModelConfig:
    enc = HashGridConfig(num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32, backend="torch")
    return ModelConfig(encoding=enc, **kw)


def test_sh_basis_is_orthonormal_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    y = sh_encode(d, 4)  # [n, 16]
    gram = y.T @ y * (4.0 * math.pi / len(d))
    assert y.shape == (len(d), 16)
    assert float((gram - torch.eye(16, dtype=torch.float64)).abs().max()) < 0.03


def test_trunc_exp_forward_and_clamped_gradient():
    x = torch.tensor([0.0, 2.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    y.sum().backward()
    assert torch.allclose(y, torch.exp(x.detach()))
    assert torch.allclose(x.grad, torch.exp(torch.tensor([0.0, 2.0, 15.0])))


def test_bounded_field_outputs_and_zero_density_outside():
    field = NerfField(tiny_config(appearance_dim=0), AABB, num_images=1)
    g = torch.Generator().manual_seed(1)
    points = torch.rand(500, 3, generator=g) * 4.0 - 2.0
    dirs = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    with torch.no_grad():
        sigma, rgb = field(points, dirs, None)
        assert torch.equal(field.density(points), sigma)
    outside = (points.abs() > 1.0).any(dim=-1)
    assert sigma.shape == (500,) and rgb.shape == (500, 3)
    assert int(outside.sum()) > 100 and float(sigma[outside].abs().max()) == 0.0
    assert float(sigma[~outside].min()) > 0.0
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0


def test_unbounded_field_maps_all_space_into_the_grid():
    field = NerfField(tiny_config(bounded=False, appearance_dim=0), AABB, num_images=1)
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1e6, -1e6, 3.0], [-2.0, 0.0, 0.0]])
    x = field.normalise(points)
    assert torch.allclose(x[0], torch.full((3,), 0.5)) and torch.allclose(x[1], torch.full((3,), 0.75))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.isclose(x[3, 0], torch.tensor(0.5 - 0.375))  # |x|=2 -> contracted radius 1.5
    assert float(field.density(points).detach().min()) > 0.0  # density everywhere, not only in the box


def test_appearance_embedding_per_image_and_mean_for_eval():
    field = NerfField(tiny_config(appearance_dim=8), AABB, num_images=5)
    with torch.no_grad():
        field.appearance.weight.copy_(torch.randn(5, 8, generator=torch.Generator().manual_seed(2)))
    points = torch.zeros(3, 3)
    dirs = torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3)
    with torch.no_grad():
        _, rgb_a = field(points, dirs, torch.tensor([0, 1, 2]))
        _, rgb_mean = field(points, dirs, None)
    assert float((rgb_a[0] - rgb_a[1]).abs().max()) > 1e-4  # images differ
    assert torch.allclose(field.appearance_codes(None, 2), field.appearance.weight.mean(0).expand(2, 8))
    assert torch.allclose(rgb_mean[0], rgb_mean[2])


def test_level_weights_scale_the_hash_grid_levels_and_stop_their_gradients():
    """Coarse-to-fine: weights [1, 1, 0, 0] give the density of an encoding whose two finest levels read zero,
    no gradient reaches those levels' tables, and ``None`` restores the unmasked field exactly."""
    field = NerfField(tiny_config(appearance_dim=0), AABB, num_images=1)
    gen = torch.Generator().manual_seed(3)
    points = torch.rand(64, 3, generator=gen) * 2.0 - 1.0
    with torch.no_grad():
        for table in field.encoding.parameters():  # trained-like tables (initial ones are ~1e-4)
            table.uniform_(-1.0, 1.0, generator=gen)
        full = field.density(points)
        features = field.encoding(field.normalise(points))  # [n, 4 * 2], level-major
        features[:, 4:] = 0.0
        expected = trunc_exp(field.density_mlp(features)[:, 0])
    field.set_level_weights(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    masked = field.density(points)
    assert torch.allclose(masked.detach(), expected, atol=1e-6) and float((masked.detach() - full).abs().max()) > 1e-4
    masked.sum().backward()
    grads = [p.grad for name, p in field.encoding.named_parameters()]
    assert len(grads) == 4 and float(grads[0].abs().sum()) > 0.0
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads[2:])
    field.set_level_weights(None)
    with torch.no_grad():
        assert torch.equal(field.density(points), full)
    assert "level_weights" not in field.state_dict()  # checkpoints keep their keys


def test_metrics_name_the_appearance_held_out_views_get():
    """metrics.json ``eval_appearance``: "mean" (nerfacto's average embedding) with embeddings, "none" without."""
    from nerfstage.nerf.evaluate import eval_appearance

    class Model(torch.nn.Module):
        def __init__(self, appearance_dim: int):
            super().__init__()
            self.field = NerfField(tiny_config(appearance_dim=appearance_dim), AABB, num_images=5)

    assert eval_appearance(Model(8)) == "mean" and eval_appearance(Model(0)) == "none"
