"""Optional per-image camera-pose refinement: nerfstudio's ``SO3xR3`` camera optimizer.

Each training image owns a 6-vector ``[dt (3), w (3)]`` (translation, axis-angle), zero-initialised and trained
with its own Adam group and learning rate. A ray of image i becomes ``o' = o + dt_i``, ``d' = exp(w_i) d``:
the camera is turned about its own centre by a world-axes rotation and moved by a world-frame translation, so
the refined camera-to-world is ``[exp(w) R | t + dt]`` (in either camera-axes convention, since exp(w) acts on
the world side). Rays are corrected when training batches are drawn; held-out (test) views keep their dataset
poses (they were never optimised), as nerfstudio evaluates. The adjustments are saved in the checkpoint under
``"camera_opt"`` and indexed like the run's training views (``split_indices(...)[0]`` order).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .config import PoseRefinement


def so3_exp(w: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3 3"]:
    """Rodrigues' formula: axis-angle vectors -> rotation matrices (Taylor terms near zero, smooth gradients)."""
    theta2 = (w * w).sum(-1)  # [n]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)  # sin(t) / t
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    zero = torch.zeros_like(w[:, 0])
    hat = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1)
    hat = hat.reshape(-1, 3, 3)  # [n, 3, 3] skew matrix of w
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(hat)
    return eye + a[:, None, None] * hat + b[:, None, None] * (hat @ hat)


class CameraOptimizer(nn.Module):
    """Learnable SE(3) corrections of ``num_cameras`` training images (``SO3xR3`` parameterisation)."""

    def __init__(self, num_cameras: int):
        super().__init__()
        self.pose_adjustment = nn.Parameter(torch.zeros(max(num_cameras, 1), 6))  # [N, 6] = [dt, w]

    def corrections(self, indices: Int[Tensor, "n"] | None = None) -> Float[Tensor, "n 3 4"]:
        """[dR | dt] of the images ``indices`` (all images when None)."""
        adj = self.pose_adjustment if indices is None else self.pose_adjustment[indices]
        return torch.cat([so3_exp(adj[:, 3:]), adj[:, :3, None]], dim=-1)

    def apply_to_rays(
        self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], indices: Int[Tensor, "n"]
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
        """Rays of training images ``indices`` moved by their corrections (differentiable in the corrections)."""
        unique, inverse = torch.unique(indices, return_inverse=True)
        per_image = self.corrections(unique)  # [u, 3, 4]: one exp map per image in the batch
        correction = per_image[inverse]  # [n, 3, 4]
        dirs = torch.einsum("nij,nj->ni", correction[:, :, :3], directions)
        return origins + correction[:, :, 3], dirs

    @torch.no_grad()
    def refine_poses(self, world_from_cams: np.ndarray) -> np.ndarray:
        """[N, 3|4, 4] camera-to-world of the training images (normalised frame, either axes convention) ->
        the refined poses, same shape."""
        correction = self.corrections().double().cpu().numpy()  # [N, 3, 4]
        out = np.array(world_from_cams, dtype=np.float64, copy=True)
        out[:, :3, :3] = correction[:, :, :3] @ out[:, :3, :3]
        out[:, :3, 3] = out[:, :3, 3] + correction[:, :, 3]
        return out

    def param_group(self, lr: float) -> dict:
        """The Adam group of the corrections (own learning rate, eps 1e-15, no weight decay, as nerfstudio)."""
        return {"name": "camera_opt", "params": [self.pose_adjustment], "lr": lr, "eps": 1e-15,
                "weight_decay": 0.0}


def make_camera_optimizer(mode: PoseRefinement, num_cameras: int, device: torch.device) -> CameraOptimizer | None:
    """The camera optimizer for ``mode`` ("off" -> None)."""
    if mode == "off":
        return None
    return CameraOptimizer(num_cameras).to(device)


def refine_from_checkpoint(checkpoint: dict, world_from_cams: np.ndarray) -> np.ndarray:
    """The training cameras' poses as a run refined them: ``checkpoint`` is a loaded ``step-*.ckpt`` dict,
    ``world_from_cams`` [N, 4, 4] the N training views' dataset poses in the normalised frame (training-split
    order, either axes convention). Returned unchanged when the run did not refine poses."""
    state = checkpoint.get("camera_opt")
    if state is None:
        return np.array(world_from_cams, dtype=np.float64, copy=True)
    optimizer = CameraOptimizer(len(world_from_cams))
    optimizer.load_state_dict(state)
    return optimizer.refine_poses(world_from_cams)


def pose_errors(estimated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-camera rotation error (degrees) and camera-centre distance between [N, 4, 4] pose sets."""
    rel = np.einsum("nji,njk->nik", estimated[:, :3, :3], reference[:, :3, :3])  # R_est^T R_ref
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), np.linalg.norm(estimated[:, :3, 3] - reference[:, :3, 3], axis=-1)
