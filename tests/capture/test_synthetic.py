"""The built-in synthetic capture: determinism, texture, camera path, exact geometry and the files it writes."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from nerfstage.capture.synthetic import (
    SyntheticOptions,
    load_ground_truth,
    rays_per_pixel_side,
    render_frame,
    render_synthetic_frames,
    sample_surface,
    scene_bounds,
    scene_description,
    synthetic_cameras,
    true_depth,
    write_synthetic_dataset,
    write_synthetic_video,
)
from nerfstage.core.errors import ConfigError, DatasetError, OutputExistsError
from nerfstage.core.geometry import Intrinsics, convert_camera_axes

SMALL = SyntheticOptions(num_frames=4, width=160, height=120)


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle of a^T b for stacks of rotations [N, 3, 3]."""
    cos = (np.einsum("nij,nij->n", a, b) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_same_seed_same_frames_other_seed_other_path():
    first = np.stack(list(render_synthetic_frames(SMALL)))
    again = np.stack(list(render_synthetic_frames(SMALL)))
    other = np.stack(list(render_synthetic_frames(replace(SMALL, seed=1))))
    assert first.shape == (4, 120, 160, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert np.abs(first.astype(float) - other).mean() > 5.0
    poses, _ = synthetic_cameras(SMALL)
    other_poses, _ = synthetic_cameras(replace(SMALL, seed=1))
    assert np.abs(poses - other_poses).max() > 0.02


def test_frames_are_richly_textured_and_never_black():
    options = SyntheticOptions(num_frames=9, width=640, height=480)
    world_from_cams, intrinsics = synthetic_cameras(options)
    frame = render_frame(world_from_cams[3], intrinsics)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    assert frame.shape == (480, 640, 3)
    assert gray.std() > 20.0
    assert cv2.Laplacian(gray, cv2.CV_64F).var() > 100.0
    assert len(cv2.SIFT_create().detect(gray, None)) > 1000
    assert np.mean(gray < 8) < 0.01  # ambient light: (almost) nothing is black


def test_supersampling_removes_aliasing():
    world_from_cams, intrinsics = synthetic_cameras(SyntheticOptions(num_frames=5, width=160, height=120))
    reference = render_frame(world_from_cams[1], intrinsics, supersample=4).astype(float)

    def psnr(k: int) -> float:
        error = render_frame(world_from_cams[1], intrinsics, supersample=k).astype(float) - reference
        return 10.0 * math.log10(255.0**2 / np.mean(error**2))

    assert psnr(2) > psnr(1) + 4.0
    assert rays_per_pixel_side(SMALL) == 4 and rays_per_pixel_side(SyntheticOptions()) == 1  # auto


def test_intrinsics_follow_the_field_of_view():
    _, intrinsics = synthetic_cameras(SyntheticOptions(num_frames=2))
    assert (intrinsics.width, intrinsics.height, intrinsics.model) == (640, 480, "PINHOLE")
    assert math.degrees(2.0 * math.atan(intrinsics.width / 2.0 / intrinsics.fx)) == pytest.approx(62.0, abs=1e-9)
    assert intrinsics.fx == intrinsics.fy and (intrinsics.cx, intrinsics.cy) == (320.0, 240.0)


def test_camera_path_walks_around_the_objects_in_small_steps():
    world_from_cams, _ = synthetic_cameras(SyntheticOptions(num_frames=100))
    centres, rotations = world_from_cams[:, :3, 3], world_from_cams[:, :3, :3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    turns = _rotation_angle_deg(rotations[:-1], rotations[1:])
    assert steps.max() < 0.25 and steps.min() > 0.05
    assert turns.max() < 6.0
    azimuth = np.unwrap(np.arctan2(centres[:, 1], centres[:, 0]))
    assert abs(azimuth[-1] - azimuth[0]) > math.radians(270.0)
    radius = np.hypot(centres[:, 0], centres[:, 1])
    assert 2.4 < radius.min() and radius.max() < 3.1 and 1.3 < centres[:, 2].min() and centres[:, 2].max() < 1.7
    to_target = np.array(scene_description()["look_at_target"]) - centres
    to_target /= np.linalg.norm(to_target, axis=1, keepdims=True)
    forward = -rotations[:, :, 2]  # OpenGL: the camera looks down its -z axis
    assert np.degrees(np.arccos(np.sum(forward * to_target, axis=1))).max() < 8.0
    assert rotations[:, 2, 1].min() > 0.9  # camera y (up) stays close to world +z


def test_true_depth_is_z_depth_of_the_room():
    intrinsics = Intrinsics(50.0, 50.0, 40.0, 30.0, 80, 60)
    down = np.eye(4)
    down[:3, 3] = [2.5, 2.5, 1.25]  # OpenGL identity rotation: looking along world -z, at the floor
    assert np.abs(true_depth(down, intrinsics) - 1.25).max() < 1e-5
    up = down @ np.diag([1.0, -1.0, -1.0, 1.0])  # turned over: looking at the ceiling (z = 3)
    assert np.abs(true_depth(up, intrinsics) - 1.75).max() < 1e-5
    low, high = scene_bounds()
    assert np.allclose(low, [-4.0, -4.0, 0.0]) and np.allclose(high, [4.0, 4.0, 3.0])


def test_sampled_surface_points_lie_on_the_rendered_surfaces():
    points = np.concatenate([sample_surface(1500, seed=3), sample_surface(600, seed=4, objects_only=True)])
    world_from_cams, intrinsics = synthetic_cameras(SyntheticOptions(num_frames=8))
    cam_from_world = np.linalg.inv(convert_camera_axes(world_from_cams[2]))  # OpenCV axes
    cam = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    u = intrinsics.fx * cam[:, 0] / cam[:, 2] + intrinsics.cx
    v = intrinsics.fy * cam[:, 1] / cam[:, 2] + intrinsics.cy
    seen = (cam[:, 2] > 0.1) & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
    rendered = []
    for ui, vi in zip(u[seen], v[seen]):  # a 1x1 camera whose only pixel centre looks exactly at the point
        single = replace(intrinsics, cx=0.5 - (ui - intrinsics.cx), cy=0.5 - (vi - intrinsics.cy), width=1, height=1)
        rendered.append(true_depth(world_from_cams[2], single)[0, 0])
    relative = (np.array(rendered) - cam[seen, 2]) / cam[seen, 2]
    assert seen.sum() > 200
    assert relative.max() < 1e-6  # no true surface point lies in front of the rendered surface
    on_surface = np.abs(relative) < 1e-6
    assert on_surface.mean() > 0.35  # and many are the visible surface itself (the rest is hidden behind objects)
    assert np.median(np.abs(relative[on_surface])) < 1e-7


def test_sample_surface_is_area_weighted_and_objects_only_stays_on_objects():
    points = sample_surface(20000, seed=0)
    assert points.shape == (20000, 3)
    # visible floor = 64 m^2 minus the crate, column and pedestal footprints, out of 231.5 m^2 of surface
    assert np.mean(np.abs(points[:, 2]) < 1e-9) == pytest.approx(63.22 / 231.5, abs=0.015)
    objects = sample_surface(3000, seed=1, objects_only=True)
    low, high = (np.array(c) for c in scene_description()["objects_aabb"])
    assert np.all((objects >= low - 1e-9) & (objects <= high + 1e-9))
    assert objects[:, 2].min() > 1e-9  # faces resting on the floor are not sampled
    assert np.array_equal(sample_surface(50, seed=4), sample_surface(50, seed=4))


def test_video_decodes_and_ground_truth_round_trips(tmp_path):
    options = replace(SMALL, num_frames=6)
    capture = write_synthetic_video(tmp_path, options)
    reader = cv2.VideoCapture(str(capture.video_path))
    frames = []
    while (ok_frame := reader.read())[0]:
        frames.append(ok_frame[1][..., ::-1])
    reader.release()
    assert len(frames) == 6 and frames[0].shape == (120, 160, 3)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(float) for f in frames]
    truth = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(float) for f in render_synthetic_frames(options)]
    mse = np.mean((np.stack(gray) - np.stack(truth)) ** 2)
    assert 10.0 * math.log10(255.0**2 / mse) > 30.0  # luma PSNR of H.264 at crf 18 (chroma is 4:2:0)
    loaded = load_ground_truth(capture.ground_truth_path)
    assert np.array_equal(loaded.world_from_cams, capture.world_from_cams) and loaded.world_from_cams.shape == (6, 4, 4)
    assert loaded.intrinsics == capture.intrinsics and loaded.options == options
    assert loaded.video_path == capture.video_path and loaded.transforms_path is None
    with pytest.raises(OutputExistsError):
        write_synthetic_video(tmp_path, options)
    write_synthetic_video(tmp_path, options, overwrite=True)


def test_dataset_transforms_hold_the_true_poses(tmp_path):
    capture = write_synthetic_dataset(tmp_path / "data", SMALL)
    meta = json.loads(capture.transforms_path.read_text())
    assert [f["file_path"] for f in meta["frames"]] == [f"images/frame_{i:05d}.png" for i in range(1, 5)]
    matrices = np.array([f["transform_matrix"] for f in meta["frames"]])
    assert np.abs(matrices - capture.world_from_cams).max() < 1e-6
    assert (meta["w"], meta["h"]) == (160, 120) and meta["fl_x"] == pytest.approx(capture.intrinsics.fx, abs=1e-9)
    image = cv2.imread(str(tmp_path / "data" / "images" / "frame_00003.png"))[..., ::-1]
    assert np.array_equal(image, list(render_synthetic_frames(SMALL))[2])  # PNG is lossless
    loaded = load_ground_truth(tmp_path / "data")
    assert loaded.transforms_path == capture.transforms_path and np.array_equal(loaded.world_from_cams, matrices)


def test_bad_options_and_bad_ground_truth_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="num_frames"):
        synthetic_cameras(SyntheticOptions(num_frames=0))
    with pytest.raises(ConfigError, match="fov_x_deg"):
        synthetic_cameras(SyntheticOptions(fov_x_deg=0.0))
    with pytest.raises(ConfigError, match="num_frames"):
        render_synthetic_frames(SyntheticOptions(num_frames=-1))  # checked before the first frame
    with pytest.raises(ConfigError, match="even"):
        write_synthetic_video(tmp_path / "odd", replace(SMALL, width=161))
    assert not (tmp_path / "odd").exists()
    bad = tmp_path / "ground_truth.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DatasetError, match="ground_truth.json"):
        load_ground_truth(bad)
