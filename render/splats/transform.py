"""Rigid transforms of Gaussian splats: positions, orientations, scales *and* spherical-harmonic colour.

A rotation ``R`` moves a splat's mean to ``R @ mean``, its orientation to ``R * q`` and its view-dependent colour
so that the rotated splat seen along ``R @ d`` shows the colour the original showed along ``d``. The SH part is a
block-diagonal (per band) matrix, found here numerically: the basis evaluated at rotated directions is an exact
linear function of the basis at the directions, so a least-squares fit over a few dozen directions recovers it to
float precision (no Wigner-D bookkeeping, and it uses the very basis of :mod:`nerfstage.nerf.sh`).

File formats whose convention is Y-up (glTF, SPZ) use :data:`Y_UP_FROM_Z_UP`, the rotation the mesh exports use
(``export/gltf.py``): (x, y, z) -> (x, z, -y).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ...nerf.sh import sh_encode
from .model import GaussianSplats

Y_UP_FROM_Z_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
"""[3, 3] rotation by -90 degrees about X: (x, y, z) -> (x, z, -y); the same as the mesh exports'."""


def quat_multiply(a: Float[Tensor, "n 4"], b: Float[Tensor, "n 4"]) -> Float[Tensor, "n 4"]:
    """Hamilton product ``a * b`` of quaternions stored w, x, y, z."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quat_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """[4] unit quaternion w, x, y, z (w >= 0) of a [3, 3] rotation matrix."""
    r = np.asarray(rotation, dtype=np.float64)
    w = np.sqrt(max(0.0, 1.0 + np.trace(r))) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def quat_to_matrix(quats: Float[Tensor, "n 4"]) -> Float[Tensor, "n 3 3"]:
    """Rotation matrices of (not necessarily unit) quaternions w, x, y, z."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1).reshape(-1, 3, 3)


def sh_rotation(rotation: np.ndarray, sh_degree: int) -> Float[Tensor, "k k"]:
    """[k, k] matrix ``M`` (k = (sh_degree+1)^2, block-diagonal by band) with ``sh' = M @ sh`` the coefficients of
    the colour rotated by ``rotation``: ``sum_k sh'_k Y_k(R d) = sum_k sh_k Y_k(d)`` for every unit ``d``."""
    k = (sh_degree + 1) ** 2
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=g, dtype=torch.float64), dim=-1)
    r = torch.as_tensor(rotation, dtype=torch.float64)
    basis = sh_encode(dirs, sh_degree + 1)  # [64, k] = Y(d)
    rotated = sh_encode(dirs @ r.T, sh_degree + 1)  # [64, k] = Y(R d)
    # want Y(R d) M = Y(d) for all d (column vectors of coefficients): least squares, then zero cross-band terms
    m = torch.linalg.lstsq(rotated, basis).solution  # [k, k] with Y(R d) @ m = Y(d); sh' = m @ sh
    band = torch.tensor([int(np.floor(np.sqrt(i))) for i in range(k)])
    return torch.where(band[:, None] == band[None, :], m, torch.zeros_like(m)).to(torch.float32)


def rotate_splats(splats: GaussianSplats, rotation: np.ndarray) -> GaussianSplats:
    """The splats rotated by the [3, 3] rotation matrix ``rotation`` about the origin (colour included)."""
    s = splats.detach()
    r = torch.as_tensor(np.asarray(rotation), dtype=s.means.dtype, device=s.means.device)
    q = torch.as_tensor(quat_from_matrix(rotation), dtype=s.quats.dtype, device=s.quats.device)
    m = sh_rotation(rotation, s.sh_degree).to(s.sh.device)
    sh = torch.einsum("kj,njc->nkc", m, s.sh)
    return GaussianSplats(means=s.means @ r.T, quats=quat_multiply(q.expand_as(s.quats), s.quats),
                          log_scales=s.log_scales.clone(), opacity_logits=s.opacity_logits.clone(), sh=sh)


def sh_colour(sh: Float[Tensor, "n k 3"], directions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
    """sRGB colour ``max(sum_k sh_k Y_k(d) + 0.5, 0)`` of each splat seen along its unit direction ``d``."""
    degree = round(sh.shape[1] ** 0.5) - 1
    basis = sh_encode(directions, degree + 1)  # [n, k]
    return torch.clamp(torch.einsum("nk,nkc->nc", basis, sh) + 0.5, min=0.0)
