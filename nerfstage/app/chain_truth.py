"""Novel-path ground truth of ``nerfstage demo``: the synthetic capture renders the exact scene from any pose, so the
demo's orbit and dolly-zoom videos are rendered a second time by the synthetic renderer from exactly the cameras the
render stage used (same path, intrinsics and frame count) and compared frame by frame (PSNR, SSIM).

The render stage's cameras live in the run's normalised frame (SfM frame, dataparser transform, refined training
poses); one similarity, fitted from the run's training-camera centres to their true centres, carries them into the
true world. The comparison reads the decoded MP4 (what a viewer sees) against the exact 8-bit ground-truth frames; the
ground-truth videos are written beside the renders (``renders/ground_truth/``) for people to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..capture.sfm import align_sim3
from ..capture.synthetic import SyntheticCapture, SyntheticOptions, rays_per_pixel_side, render_frame
from ..capture.video import write_video
from ..core.cameras import focal_from_fov
from ..core.errors import ReconstructionError
from ..core.geometry import Intrinsics
from ..nerf.metrics import psnr, ssim
from ..render.paths.base import CameraPath
from .chain_checks import video_frames

TRUTH_DIR = "ground_truth"


@dataclass
class Similarity:
    """``true_from_normalised``: x -> scale * rotation @ x + translation."""

    scale: float
    """Uniform scale."""
    rotation: np.ndarray
    """[3, 3] rotation."""
    translation: np.ndarray
    """[3] translation."""

    def poses(self, world_from_cams: np.ndarray) -> np.ndarray:
        """[N, 4, 4] normalised-frame camera-to-world -> [N, 4, 4] true-world camera-to-world (axes unchanged)."""
        out = np.array(world_from_cams, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation[None] @ out[:, :3, :3]
        out[:, :3, 3] = self.scale * out[:, :3, 3] @ self.rotation.T + self.translation
        return out


def true_from_run(run_poses: np.ndarray, true_poses: np.ndarray) -> Similarity:
    """The similarity that maps the run's camera centres ([N, 4, 4], normalised frame) onto the true ones
    ([N, 4, 4], same cameras in the same order); ReconstructionError for fewer than 3 cameras."""
    sim = align_sim3(np.asarray(run_poses)[:, :3, 3], np.asarray(true_poses)[:, :3, 3])
    return Similarity(sim.scale, np.asarray(sim.rotation, np.float64), np.asarray(sim.translation, np.float64))


def run_true_poses(image_paths: list[Path], source_frame_indices: list[int], truth: SyntheticCapture) -> np.ndarray:
    """[N, 4, 4] true pose of each run camera: ``frame_0000k.*`` is video frame ``source_frame_indices[k - 1]``."""
    rows = [source_frame_indices[int(Path(p).stem.split("_")[-1]) - 1] for p in image_paths]
    return truth.world_from_cams[rows]


def path_intrinsics(path: CameraPath, index: int) -> Intrinsics:
    """The centred pinhole of frame ``index`` of a perspective path (as ``PerspectiveCamera.from_fov``)."""
    focal = focal_from_fov(float(path.fov_y_deg[index]), int(path.height))
    return Intrinsics(focal, focal, path.width / 2.0, path.height / 2.0, int(path.width), int(path.height))


def truth_frames(path: CameraPath, true_from_norm: Similarity) -> list[np.ndarray]:
    """Every frame of ``path`` (perspective, normalised frame) rendered by the synthetic renderer: [H, W, 3] uint8,
    supersampled as the synthetic footage of that width is."""
    if path.camera_type != "perspective":
        raise ReconstructionError(f"ground truth needs a perspective path, got {path.camera_type!r}")
    poses = true_from_norm.poses(path.world_from_cams)  # [F, 4, 4]
    k = rays_per_pixel_side(SyntheticOptions(width=int(path.width), height=int(path.height)))
    return [render_frame(pose, path_intrinsics(path, i), k) for i, pose in enumerate(poses)]


def compare_frames(rendered: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, Any]:
    """Mean PSNR (dB) and SSIM over frame pairs (uint8 [H, W, 3] each), and the worst frame's PSNR."""
    if len(rendered) != len(truth) or not truth:
        raise ReconstructionError(f"{len(rendered)} rendered frames vs {len(truth)} ground-truth frames: "
                                  "expected the same, at least one")
    scores = [(psnr(r / 255.0, t / 255.0), ssim(r / 255.0, t / 255.0)) for r, t in zip(rendered, truth)]
    values = np.array(scores, np.float64)  # [F, 2]
    return {"psnr": round(float(values[:, 0].mean()), 3), "ssim": round(float(values[:, 1].mean()), 4),
            "min_psnr": round(float(values[:, 0].min()), 3), "frames": len(truth)}


def novel_path_figures(video: Path, path: CameraPath, true_from_norm: Similarity, truth_video: Path,
                       fps: float) -> dict[str, Any]:
    """Render ``path``'s ground truth, write it to ``truth_video`` (H.264) and compare the decoded ``video`` with
    the exact ground-truth frames; returns ``compare_frames``' figures."""
    truth = truth_frames(path, true_from_norm)
    truth_video.parent.mkdir(parents=True, exist_ok=True)
    write_video(truth_video, iter(truth), fps=fps)
    rendered = video_frames(video)
    if rendered is None:
        raise ReconstructionError(f"{video} does not decode: cannot compare it with the ground truth")
    return compare_frames(rendered, truth)
