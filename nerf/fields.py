"""The radiance field: hash-grid features -> density MLP -> (density, geometry features); SH-encoded view direction
+ geometry features (+ per-image appearance embedding) -> colour MLP -> rgb. Instant-NGP's architecture.

Positions are given in the normalised scene frame. Bounded scenes map the scene box to the hash grid's [0, 1]^3;
unbounded scenes map the scene box to [-1, 1]^3, contract (mip-NeRF 360, see ``contraction.py``) into
[-2, 2]^3 and map that to [0, 1]^3. Density uses a truncated exponential. Appearance embeddings
(``nn.Embedding(num_images, appearance_dim)``) absorb per-image exposure / white balance of real captures; a query
without image indices (evaluation, novel views) uses the **mean embedding** of all training images, so held-out
and rendered views get the average appearance rather than one arbitrary image's.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .config import ModelConfig
from .contraction import contract_to_unit_cube
from .encoding import make_encoding
from .sh import sh_dim, sh_encode


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)) (instant-ngp's truncated exponential for density)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """Density activation: exp forward, gradient clamped at exp(15)."""
    return _TruncExp.apply(x)


def _mlp(dims: list[int], generator: torch.Generator) -> nn.Sequential:
    """Linear+ReLU layers through ``dims`` (no activation after the last), seeded Kaiming-uniform weights."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(d_in, d_out)
        bound = (6.0 / d_in) ** 0.5 if i < len(dims) - 2 else (1.0 / d_in) ** 0.5
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.zero_()
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class NerfField(nn.Module):
    """Density + view-dependent colour at positions of the normalised scene frame."""

    def __init__(self, config: ModelConfig, scene_aabb: Float[Tensor, "2 3"], num_images: int, seed: int = 0):
        super().__init__()
        self.config = config
        self.register_buffer("aabb", torch.as_tensor(scene_aabb, dtype=torch.float32).clone())  # [2, 3]
        self.encoding = make_encoding(config.encoding, seed=seed)
        gen = torch.Generator().manual_seed(seed + 1)
        self.density_mlp = _mlp([self.encoding.output_dim, config.hidden_dim, 1 + config.geo_feat_dim], gen)
        color_in = sh_dim(config.sh_degree) + config.geo_feat_dim + config.appearance_dim
        hidden = config.hidden_dim_color
        self.color_mlp = _mlp([color_in, hidden, hidden, 3], gen)
        self.register_buffer("level_weights", torch.ones(config.encoding.num_levels), persistent=False)
        self.levels_masked = False
        """True while coarse-to-fine training scales the hash-grid levels by ``level_weights`` [L]."""
        self.appearance = None
        if config.appearance_dim > 0:
            self.appearance = nn.Embedding(max(num_images, 1), config.appearance_dim)
            with torch.no_grad():
                self.appearance.weight.normal_(0.0, 0.01, generator=gen)

    def normalise(self, points: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """Positions -> the hash grid's [0, 1]^3 (scene box, or contracted space when unbounded)."""
        lo, hi = self.aabb[0], self.aabb[1]
        if self.config.bounded:
            return ((points - lo) / (hi - lo)).clamp(0.0, 1.0)
        return contract_to_unit_cube((points - lo) / (hi - lo) * 2.0 - 1.0, self.config.contraction_norm)

    def geometry(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n"], Float[Tensor, "n g"]]:
        """Density [n] and geometry features [n, geo_feat_dim]; zero density outside the box (bounded scenes)."""
        features = self.encoding(self.normalise(points))  # [n, L * F], level-major
        if self.levels_masked:
            features = features * self.level_weights.repeat_interleave(self.config.encoding.features_per_level)
        h = self.density_mlp(features)  # [n, 1 + g]
        density = trunc_exp(h[:, 0])
        if self.config.bounded:
            lo, hi = self.aabb[0], self.aabb[1]
            inside = ((points >= lo) & (points <= hi)).all(dim=-1)
            density = density * inside
        return density, h[:, 1:]

    def set_level_weights(self, weights: Float[Tensor, "l"] | None) -> None:
        """Scale the hash-grid levels by ``weights`` (coarse-to-fine training); None = every level fully on."""
        self.levels_masked = weights is not None
        self.level_weights.copy_(torch.ones_like(self.level_weights) if weights is None else weights)

    def density(self, points: Float[Tensor, "n 3"]) -> Float[Tensor, "n"]:
        """Density only (occupancy updates, early termination, mesh export)."""
        return self.geometry(points)[0]

    def forward(
        self, points: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], image_indices: Int[Tensor, "n"] | None
    ) -> tuple[Float[Tensor, "n"], Float[Tensor, "n 3"]]:
        """Density [n] and rgb in [0, 1] [n, 3] at ``points`` seen along unit ``directions``."""
        density, geo = self.geometry(points)
        return density, self.color(geo, directions, image_indices)

    def color(
        self, geo: Float[Tensor, "n g"], directions: Float[Tensor, "n 3"], image_indices: Int[Tensor, "n"] | None
    ) -> Float[Tensor, "n 3"]:
        """rgb in [0, 1] from geometry features and unit view directions."""
        parts = [sh_encode(directions, self.config.sh_degree), geo]
        if self.appearance is not None:
            parts.append(self.appearance_codes(image_indices, len(geo)))
        return torch.sigmoid(self.color_mlp(torch.cat(parts, dim=-1)))

    def appearance_codes(self, image_indices: Int[Tensor, "n"] | None, n: int) -> Float[Tensor, "n a"]:
        """Embeddings of ``image_indices``, or the mean embedding for every sample when None."""
        assert self.appearance is not None
        if image_indices is None:
            return self.appearance.weight.mean(dim=0).expand(n, -1)
        return self.appearance(image_indices)
