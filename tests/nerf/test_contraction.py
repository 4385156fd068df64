"""mip-NeRF 360 contraction: the properties multinerf's coord tests check, for both norms."""

import pytest
import torch

from nerfstage.nerf.contraction import contract, contract_to_unit_cube, contraction_norm


def _points(n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, 3, generator=g)
    radii = torch.exp(torch.empty(n).uniform_(-6.0, 12.0, generator=g))  # 0.0025 .. 1.6e5
    return directions / directions.norm(dim=-1, keepdim=True) * radii[:, None]


@pytest.mark.parametrize("ord", ["inf", "l2"])
def test_identity_inside_unit_ball(ord):
    x = _points()
    inside = contraction_norm(x, ord) <= 1.0
    assert int(inside.sum()) > 500
    assert torch.equal(contract(x[inside], ord), x[inside])


@pytest.mark.parametrize("ord", ["inf", "l2"])
def test_output_inside_radius_two(ord):
    x = torch.cat([_points(), torch.tensor([[1e30, -3e29, 2.0], [0.0, 0.0, -1e38]])])
    y = contract(x, ord)
    norm = contraction_norm(y, ord)
    assert torch.isfinite(y).all()
    assert float(norm.max()) <= 2.0
    outside = contraction_norm(x, ord) > 1.0
    assert float(norm[outside].min()) > 1.0  # outside stays outside the unit ball
    cube = contract_to_unit_cube(x, ord)
    assert float(cube.min()) >= 0.0 and float(cube.max()) <= 1.0


@pytest.mark.parametrize("ord", ["inf", "l2"])
def test_finite_gradients_at_origin_and_boundary(ord):
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0 + 1e-7, 0.0, 0.0], [3.0, -2.0, 0.5]], requires_grad=True)
    contract(x, ord).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(x.grad[0], torch.ones(3))  # identity Jacobian inside


@pytest.mark.parametrize("ord", ["inf", "l2"])
def test_monotone_and_continuous_along_rays(ord):
    g = torch.Generator().manual_seed(1)
    d = torch.randn(64, 3, generator=g)
    radii = torch.linspace(0.0, 50.0, 2001)
    x = d[:, None, :] * radii[None, :, None]  # [64, 2001, 3]
    norm = contraction_norm(contract(x.reshape(-1, 3), ord), ord).reshape(64, -1)
    steps = norm[:, 1:] - norm[:, :-1]
    assert float(steps.min()) >= 0.0  # radially non-decreasing
    assert float(steps.max()) < 0.1  # no jump at the unit sphere
