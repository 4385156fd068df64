"""Real spherical-harmonics encoding of view directions (tiny-cuda-nn's basis and sign convention, degree 1..4)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.errors import ConfigError


def sh_dim(degree: int) -> int:
    """Number of SH coefficients of ``degree`` (bands 0..degree-1)."""
    return degree * degree


def sh_encode(directions: Float[Tensor, "n 3"], degree: int) -> Float[Tensor, "n d"]:
    """Evaluate the real SH basis at unit ``directions`` ([n, 3]); returns [n, degree**2]."""
    if not 1 <= degree <= 4:
        raise ConfigError(f"sh_degree {degree} is not supported; expected 1, 2, 3 or 4")
    x, y, z = directions.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * (xx - yy),
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)
