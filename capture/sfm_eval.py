"""Pose evaluation of SfM models: Sim(3) alignment, per-camera pose errors against a reference, trajectory size,
and the camera-to-world poses of a pycolmap model (tests and benchmarks use them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ReconstructionError

if TYPE_CHECKING:
    import pycolmap


@dataclass(frozen=True)
class Sim3:
    """A similarity transform ``x -> scale * rotation @ x + translation`` (``dst_from_src``)."""

    scale: float
    """Uniform scale."""
    rotation: np.ndarray
    """[3, 3] rotation."""
    translation: np.ndarray
    """[3] translation."""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [N, 3] -> [N, 3]."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


def align_sim3(src_centres: np.ndarray, dst_centres: np.ndarray) -> Sim3:
    """Least-squares similarity ``dst_from_src`` (Umeyama, via pycolmap.estimate_sim3d); centres [N, 3], N >= 3."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    src = np.asarray(src_centres, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst_centres, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 3:
        raise ReconstructionError(f"Sim(3) alignment needs >= 3 matching centres, got {len(src)} and {len(dst)}")
    sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None:
        raise ReconstructionError(f"Sim(3) alignment of {len(src)} camera centres failed (degenerate layout?)")
    return Sim3(float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation).reshape(3))


def pose_errors(world_from_cam_est: np.ndarray, world_from_cam_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (degrees) and camera-centre error (units of the true world) per camera, after aligning the
    estimated centres to the true ones with a similarity transform. Both inputs [N, 4, 4] camera-to-world with the
    same camera axes convention; returns ([N], [N])."""
    est = np.asarray(world_from_cam_est, dtype=np.float64)
    true = np.asarray(world_from_cam_true, dtype=np.float64)
    sim = align_sim3(est[:, :3, 3], true[:, :3, 3])
    centre_err = np.linalg.norm(sim.apply(est[:, :3, 3]) - true[:, :3, 3], axis=1)  # [N]
    rot_aligned = np.einsum("ij,njk->nik", sim.rotation, est[:, :3, :3])  # [N, 3, 3]
    relative = np.einsum("nji,njk->nik", true[:, :3, :3], rot_aligned)  # R_true^T R_est
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), centre_err


def trajectory_size(world_from_cams: np.ndarray) -> float:
    """Diagonal of the bounding box of the camera centres of [N, 4, 4] camera-to-world matrices."""
    centres = np.asarray(world_from_cams, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0)))


def reconstruction_poses(reconstruction: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """Image name -> [4, 4] camera-to-world (OpenCV camera axes, COLMAP's world) of every registered image."""
    poses = {}
    for image in reconstruction.images.values():
        if image.has_pose:
            world_from_cam = np.eye(4)
            world_from_cam[:3, :4] = image.cam_from_world().inverse().matrix()
            poses[image.name] = world_from_cam
    return poses
