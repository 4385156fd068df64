"""mip-NeRF 360 scene contraction for unbounded captures.

``contract(x) = x`` inside the unit ball and ``(2 - 1/|x|) x/|x|`` outside, so all of space maps into the ball of
radius 2. We use the **L-infinity norm** by default (as nerfacto and instant-ngp-style grids do): the unit "ball"
is then the cube [-1, 1]^3 holding the scene box, and the contracted space is the cube [-2, 2]^3, which fills the
hash grid's cube exactly; the L2 ball wastes the grid's corners (about half its volume). ``ord="l2"`` gives
mip-NeRF 360's original Euclidean version. The norm is computed safely: the outside branch sees the norm clamped
to >= 1, so gradients stay finite everywhere, including at the origin.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.errors import ConfigError

ContractionNorm = Literal["inf", "l2"]


def contraction_norm(x: Float[Tensor, "n 3"], ord: ContractionNorm = "inf") -> Float[Tensor, "n"]:
    """The norm the contraction uses (L-infinity or L2) of each row of ``x``."""
    if ord == "inf":
        return x.abs().amax(dim=-1)
    if ord == "l2":  # scaled by the largest component: no overflow for far points, finite gradient at 0
        biggest = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)  # [n, 1]
        return biggest[..., 0] * (x / biggest).square().sum(dim=-1).clamp_min(1e-20).sqrt()
    raise ConfigError(f"contraction norm {ord!r} is not supported; expected 'inf' or 'l2'")


def contract(x: Float[Tensor, "n 3"], ord: ContractionNorm = "inf") -> Float[Tensor, "n 3"]:
    """Contract points of R^3 into the ball of radius 2 (in the chosen norm); identity inside the unit ball."""
    norm = contraction_norm(x, ord)  # [n]
    outside = norm > 1.0
    safe = torch.where(outside, norm, torch.ones_like(norm))  # >= 1 everywhere: finite 1/norm and gradients
    scale = torch.where(outside, (2.0 - 1.0 / safe) / safe, torch.ones_like(norm))
    return x * scale[..., None]


def contract_to_unit_cube(x: Float[Tensor, "n 3"], ord: ContractionNorm = "inf") -> Float[Tensor, "n 3"]:
    """Contract, then map the cube [-2, 2]^3 to [0, 1]^3 (the hash grid's input domain)."""
    return contract(x, ord) * 0.25 + 0.5
