"""The Gaussian-splat model shared by distillation (export stage), rasterisation and rendering (render stage).

Conventions (those of the original 3D Gaussian Splatting code, so its PLY layout maps one to one):

* **Frame and units**: ``means`` are in the run's *dataset* frame (the frame of ``transforms.json`` poses and of
  exported meshes), not the normalised training frame; units are the dataset's (metres when the capture's scale
  is known).
* **Shape**: a Gaussian's covariance is ``R diag(exp(log_scales))^2 R^T`` with ``R`` the rotation of the unit
  quaternion ``quats / |quats|`` stored **w, x, y, z** (3DGS ``rot_0..3``); ``R`` maps the Gaussian's local axes
  into the dataset frame.
* **Opacity**: ``sigmoid(opacity_logits)`` (3DGS ``opacity`` is this logit).
* **Colour**: real spherical harmonics of degree ``sh_degree`` (0..3) in the basis of :mod:`nerfstage.nerf.sh`
  (the same sign convention as 3DGS), coefficients ``sh[:, k, c]`` for basis function ``k`` and channel ``c``;
  the colour seen along unit direction ``d`` (from the camera centre towards the mean) is
  ``max(sum_k sh[:, k] * Y_k(d) + 0.5, 0)`` -- 3DGS's ``f_dc`` is ``sh[:, 0]`` and ``f_rest`` the rest, stored
  channel-major. Colours are **sRGB-encoded display values in [0, 1]** like the training photos (not linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ...core.errors import ConfigError

MAX_SPLATS = 500_000
"""Default splat budget of placement, distillation and export (issue 16's engine-friendly ceiling)."""

MAX_SH_DEGREE = 3
"""Highest SH degree stored (16 coefficients per channel), the degree engines' 3DGS importers expect."""


@dataclass
class GaussianSplats:
    """A set of ``n`` 3D Gaussians (tensors on one device, float32; any may require grad)."""

    means: Float[Tensor, "n 3"]
    """Centres in the dataset frame."""
    quats: Float[Tensor, "n 4"]
    """Orientations as quaternions w, x, y, z (need not be unit; normalised where used)."""
    log_scales: Float[Tensor, "n 3"]
    """Natural log of the standard deviations along the Gaussian's local axes."""
    opacity_logits: Float[Tensor, " n"]
    """Logit of the peak opacity."""
    sh: Float[Tensor, "n k 3"]
    """SH colour coefficients, ``k = (sh_degree + 1) ** 2``."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ConfigError(f"splats: {name} has shape {tuple(getattr(self, name).shape)}, expected {shape}")
        k = self.sh.shape[1] if self.sh.dim() == 3 else -1
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3 or k not in (1, 4, 9, 16):
            raise ConfigError(f"splats: sh has shape {tuple(self.sh.shape)}, expected ({n}, 1|4|9|16, 3)")

    @property
    def num_splats(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return round(self.sh.shape[1] ** 0.5) - 1

    def to(self, device: torch.device | str) -> GaussianSplats:
        return GaussianSplats(*(getattr(self, f).to(device) for f in FIELDS))

    def detach(self) -> GaussianSplats:
        return GaussianSplats(*(getattr(self, f).detach() for f in FIELDS))

    def subset(self, keep: Tensor) -> GaussianSplats:
        """The splats selected by a boolean mask or index tensor."""
        return GaussianSplats(*(getattr(self, f)[keep] for f in FIELDS))


FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
"""Field order of :class:`GaussianSplats` (constructor order)."""
