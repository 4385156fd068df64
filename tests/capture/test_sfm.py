"""SfM helpers: Sim(3) alignment and pose errors (exact numbers on constructed poses), option checks, and SfM on
a few real frames (numbers: registered count, rotation error against the author's COLMAP model)."""

from __future__ import annotations

import numpy as np
import pytest

from nerfstage.capture.sfm import (
    SfmOptions,
    align_sim3,
    pose_errors,
    reconstruction_poses,
    run_sfm,
    trajectory_size,
)
from nerfstage.errors import ConfigError, ReconstructionError


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _random_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))  # [N, 4, 4]
    for i in range(n):
        poses[i, :3, :3] = _rotation(rng.normal(size=3), rng.uniform(0, 180))
        poses[i, :3, 3] = rng.normal(size=3) * 2.0
    return poses


def _apply_sim3(poses: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = poses.copy()
    out[:, :3, :3] = rotation @ poses[:, :3, :3]
    out[:, :3, 3] = scale * poses[:, :3, 3] @ rotation.T + translation
    return out


def test_align_sim3_recovers_known_transform():
    src = np.random.default_rng(0).normal(size=(20, 3))
    rotation = _rotation([1.0, 2.0, 0.5], 70.0)
    dst = 3.5 * src @ rotation.T + np.array([1.0, -2.0, 0.3])
    sim = align_sim3(src, dst)
    assert sim.scale == pytest.approx(3.5, rel=1e-9)
    np.testing.assert_allclose(sim.rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-9)


def test_pose_errors_zero_for_similar_trajectory_and_exact_for_a_rotated_camera():
    true = _random_poses(12, seed=1)
    estimate = _apply_sim3(true, 0.25, _rotation([0.0, 1.0, 1.0], 40.0), np.array([5.0, 0.0, -1.0]))
    rot_err, centre_err = pose_errors(estimate, true)
    assert rot_err.shape == (12,) and centre_err.shape == (12,)
    assert rot_err.max() < 1e-5 and centre_err.max() < 1e-9

    estimate[3, :3, :3] = estimate[3, :3, :3] @ _rotation([1.0, 0.0, 0.0], 2.0)  # 2 degrees off in camera 3
    rot_err, _ = pose_errors(estimate, true)
    assert rot_err[3] == pytest.approx(2.0, abs=1e-6)
    assert np.delete(rot_err, 3).max() < 1e-5


def test_trajectory_size_and_alignment_input_checks():
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, 3] = [3.0, 4.0, 0.0]
    assert trajectory_size(poses) == pytest.approx(5.0)
    with pytest.raises(ReconstructionError, match="3 matching centres"):
        align_sim3(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "options, match",
    [
        (SfmOptions(camera_model="FISHEYE_X"), "camera model"),  # type: ignore[arg-type]
        (SfmOptions(matcher="vocab"), "matcher"),  # type: ignore[arg-type]
        (SfmOptions(mapper="hierarchical"), "mapper"),  # type: ignore[arg-type]
        (SfmOptions(max_num_features=10), "max_num_features"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        run_sfm(tmp_path, tmp_path / "work", options, progress=False)


def test_too_few_images_raise(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ReconstructionError, match="0 image"):
        run_sfm(tmp_path / "images", tmp_path / "work", SfmOptions(), progress=False)


@pytest.mark.parametrize("mapper", ["incremental", "global"])
def test_sfm_on_real_frames_matches_the_authors_model(tmp_path, shared_data, mapper):
    """Frames 0014-0034 of the beer walk-around, downscaled to 360x640: all 21 register, and poses agree with
    the author's COLMAP model (full resolution). That model flips by ~170 deg between 0013/0014, 0034/0035 and
    0052/0053, so only one consistent stretch of it is a usable reference."""
    import cv2
    import pycolmap

    beer = shared_data("beer_video")
    names = [f"{i:04d}.jpg" for i in range(14, 35)]
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        image = cv2.imread(str(beer / "images" / name))
        cv2.imwrite(str(images / name), cv2.resize(image, (360, 640), interpolation=cv2.INTER_AREA))
    # one thread: pycolmap mapping is then reproducible (multi-threaded runs differ slightly, and under heavy
    # load a run has drifted to ~2.8 deg on these 21 small frames)
    result = run_sfm(images, tmp_path / "colmap", SfmOptions(mapper=mapper, num_threads=1), progress=False)
    assert result.num_images == 21
    assert result.reconstruction.num_reg_images() == 21
    assert (result.sparse_dir / "images.bin").is_file()
    assert set(result.seconds) == {"extract", "match", "map", "refine"}
    estimate = reconstruction_poses(result.reconstruction)
    reference = reconstruction_poses(pycolmap.Reconstruction(beer / "sparse" / "0"))
    truth = np.stack([reference[n] for n in names])
    rot_err, centre_err = pose_errors(np.stack([estimate[n] for n in names]), truth)
    assert rot_err.mean() < 1.5, rot_err  # measured 0.73 (global: 0.55) deg; OPENCV model: 8.3 deg
    assert centre_err.mean() < 0.02 * trajectory_size(truth), centre_err  # measured 0.44 %
