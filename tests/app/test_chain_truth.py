"""Novel-path ground truth of the demo (``nerfstage.app.chain_truth``): the ground-truth frames of a path are the
synthetic renderer's frames at the same poses, the similarity carries run poses onto true ones, and the figures
are the PSNR / SSIM of the frames."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from nerfstage.app.chain_truth import Similarity, compare_frames, path_intrinsics, true_from_run, truth_frames
from nerfstage.capture.synthetic import SyntheticOptions, render_frame, synthetic_cameras
from nerfstage.core.cameras import PerspectiveCamera
from nerfstage.render.paths.base import CameraPath

IDENTITY = Similarity(1.0, np.eye(3), np.zeros(3))


def _path(poses: np.ndarray, fovs: list[float], width: int = 64, height: int = 48) -> CameraPath:
    return CameraPath(poses, np.asarray(fovs, np.float64), width, height, 8.0)


def test_truth_frames_equal_the_synthetic_renderer_at_the_same_poses():
    poses, _ = synthetic_cameras(SyntheticOptions(num_frames=3))
    path = _path(poses, [40.0, 55.0, 70.0])
    frames = truth_frames(path, IDENTITY)
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        camera = PerspectiveCamera.from_fov(64, 48, path.fov_y_deg[i])
        intrinsics = path_intrinsics(path, i)
        assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (camera.fx, camera.fy, camera.cx,
                                                                                camera.cy)
        expected = render_frame(poses[i], intrinsics, 10)  # 64 px wide: 10 x 10 rays per pixel, as the footage
        assert frame.shape == (48, 64, 3) and np.array_equal(frame, expected)
    assert not np.array_equal(frames[0], frames[1])


def test_truth_frames_follow_the_similarity_from_the_run_frame():
    true_poses, _ = synthetic_cameras(SyntheticOptions(num_frames=12))
    rotation = Rotation.from_euler("xyz", [20.0, -35.0, 110.0], degrees=True).as_matrix()
    scale, translation = 0.37, np.array([0.4, -1.2, 2.0])
    run_poses = true_poses.copy()  # the same cameras in a "normalised" frame: x_run = (R^T (x - t)) / s
    run_poses[:, :3, :3] = rotation.T @ true_poses[:, :3, :3]
    run_poses[:, :3, 3] = (true_poses[:, :3, 3] - translation) @ rotation / scale
    sim = true_from_run(run_poses, true_poses)
    assert math.isclose(sim.scale, scale, rel_tol=1e-9)
    np.testing.assert_allclose(sim.poses(run_poses), true_poses, atol=1e-9)
    run_frames = truth_frames(_path(run_poses[:2], [50.0, 50.0]), sim)
    true_frames = truth_frames(_path(true_poses[:2], [50.0, 50.0]), IDENTITY)
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(run_frames, true_frames))


def test_compare_frames_gives_psnr_and_ssim_of_the_frames():
    rng = np.random.default_rng(0)
    truth = [rng.integers(20, 230, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    rendered = [truth[0] + np.uint8(10), truth[1] + np.uint8(5)]
    figures = compare_frames(rendered, truth)
    psnr_10, psnr_5 = -20 * math.log10(10 / 255), -20 * math.log10(5 / 255)
    assert math.isclose(figures["psnr"], (psnr_10 + psnr_5) / 2, abs_tol=1e-3)
    assert math.isclose(figures["min_psnr"], psnr_10, abs_tol=1e-3)
    assert figures["frames"] == 2 and 0.9 < figures["ssim"] < 1.0
    assert compare_frames(truth, truth)["ssim"] == 1.0


def test_chain_paths_stay_inside_the_arc_the_training_cameras_walked():
    """The synthetic walk covers 300 degrees at 2.75 m: the demo's orbit flies that arc (never the 60 degree gap
    nobody filmed from) at the cameras' radius and height, and its dolly zoom starts mid-arc and moves in to no
    less than 60 % of the start distance, still looking at where the cameras looked."""
    from types import SimpleNamespace

    from nerfstage.app.chain import chain_options
    from nerfstage.app.chain_stages import chain_path
    from nerfstage.render.plan import look_at_center, training_arc

    poses, intrinsics = synthetic_cameras(SyntheticOptions(num_frames=60))
    centre = look_at_center(poses)
    start, span = training_arc(poses, centre)
    assert 290.0 < span < 305.0
    run = SimpleNamespace(world_from_cams=poses, train_indices=list(range(60)), intrinsics=[intrinsics] * 60)
    options = chain_options("preview", video_width=64, video_height=48, video_seconds=2.0, video_fps=8.0)
    orbit = chain_path(run, "orbit", options)
    offsets = orbit.world_from_cams[:, :3, 3] - centre
    angles = (np.degrees(np.arctan2(offsets[:, 1], offsets[:, 0])) - start) % 360.0
    assert len(orbit) == 16 and angles.max() <= span + 1e-6
    cam_offsets = poses[:, :3, 3] - centre
    radius = np.linalg.norm(cam_offsets[:, :2], axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(offsets[:, :2], axis=1), radius)
    dolly = chain_path(run, "dolly_zoom", options)
    first = dolly.world_from_cams[0, :3, 3] - centre
    assert abs((np.degrees(np.arctan2(first[1], first[0])) - start) % 360.0 - span / 2) < 1e-6
    distances = np.linalg.norm(dolly.world_from_cams[:, :3, 3] - centre, axis=1)
    assert distances[-1] < 0.75 * distances[0] and distances.min() > 0.6 * distances[0]
    np.testing.assert_allclose(dolly.fov_y_deg[-1], 1.5 * dolly.fov_y_deg[0], rtol=1e-6)
