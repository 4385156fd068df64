"""Camera paths: orbit/spiral geometry, dolly-zoom size constancy, keyframe splines, interpolation, speed ramps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from nerfstage.core.errors import ConfigError, InputError
from nerfstage.core.geometry import convert_camera_axes
from nerfstage.render import PerspectiveCamera
from nerfstage.render.paths import (
    Keyframe,
    KeyframeSpline,
    PathSettings,
    dolly_zoom_path,
    ease,
    interpolate_path,
    keyframe_path,
    look_at,
    orbit_path,
    read_keyframes,
    spiral_path,
    subject_distance,
)


def _forward(poses: np.ndarray) -> np.ndarray:  # [F, 3] viewing directions of OpenGL camera-to-world poses
    return -poses[:, :3, 2]


def _aims_at(poses: np.ndarray, target) -> np.ndarray:  # [F] angle (rad) between viewing axis and target
    to_target = np.asarray(target) - poses[:, :3, 3]
    to_target /= np.linalg.norm(to_target, axis=-1, keepdims=True)
    return np.arccos(np.clip(np.einsum("fi,fi->f", _forward(poses), to_target), -1, 1))


def test_orbit_geometry():
    settings = PathSettings(width=64, height=48, fps=24, seconds=2.0)
    center, up = np.array([0.3, -0.2, 0.1]), np.array([0.0, 0.0, 1.0])
    path = orbit_path(settings, center=center, radius=1.5, height=0.4, turns=1)
    poses = path.world_from_cams
    assert len(path) == 48 and path.width == 64 and path.height == 48
    offsets = poses[:, :3, 3] - center
    assert np.allclose(np.linalg.norm(offsets[:, :2], axis=-1), 1.5, atol=1e-12)
    assert np.allclose(offsets[:, 2], 0.4, atol=1e-12)
    assert _aims_at(poses, center).max() < 1e-7  # arccos resolution
    assert np.allclose(np.einsum("fij,fik->fjk", poses[:, :3, :3], poses[:, :3, :3]), np.eye(3), atol=1e-12)
    assert np.abs(poses[:, :3, 0] @ up).max() < 1e-12  # level horizon: the right axis is horizontal
    angles = np.unwrap(np.arctan2(offsets[:, 1], offsets[:, 0]))
    assert np.allclose(np.diff(angles), 2 * math.pi / 48, atol=1e-12)  # seamless loop, constant speed
    other = orbit_path(settings, center=center, radius=1.5, target=(0, 0, 0.5))
    assert _aims_at(other.world_from_cams, (0, 0, 0.5)).max() < 1e-7


def test_spiral_radius_and_height_move_between_their_ends():
    path = spiral_path(PathSettings(32, 32, fps=10, seconds=3.0), radius_start=2.0, radius_end=1.0,
                       height_start=0.0, height_end=1.0, turns=2)
    positions = path.world_from_cams[:, :3, 3]
    radii = np.linalg.norm(positions[:, :2], axis=-1)
    assert radii[0] == pytest.approx(2.0) and radii[-1] == pytest.approx(1.0)
    assert positions[0, 2] == pytest.approx(0.0) and positions[-1, 2] == pytest.approx(1.0)
    assert np.all(np.diff(radii) < 0) and np.all(np.diff(positions[:, 2]) > 0)
    assert _aims_at(path.world_from_cams, (0, 0, 0)).max() < 1e-7


def test_dolly_zoom_keeps_subject_size_within_one_percent():
    start = look_at([0.0, -3.0, 0.5], [0.0, 0.0, 0.5])
    settings = PathSettings(width=96, height=64, fps=12, seconds=2.0, easing="ease-in-out")
    path = dolly_zoom_path(settings, start, focus_distance=3.0, fov_start_deg=30.0, fov_end_deg=80.0)
    subject = np.array([0.0, 0.0, 0.5])
    edge = subject + np.array([0.4, 0.0, 0.3])  # a point on the subject plane, off-centre
    sizes = []
    for i in range(len(path)):
        camera = path.camera(i)
        assert isinstance(camera, PerspectiveCamera)
        cam_from_world = np.linalg.inv(convert_camera_axes(path.world_from_cams[i]))  # OpenCV camera axes
        points = (cam_from_world[:3, :3] @ np.stack([subject, edge]).T).T + cam_from_world[:3, 3]
        pixels, valid = camera.project(torch.as_tensor(points))
        assert bool(valid.all())
        sizes.append(float((pixels[1] - pixels[0]).norm()))
    sizes = np.array(sizes)
    assert np.abs(sizes / sizes[0] - 1).max() < 0.01
    distances = subject_distance(path, subject)
    assert distances[0] == pytest.approx(3.0) and distances[-1] < 1.0  # the camera really moved in
    assert path.fov_y_deg[0] == pytest.approx(30.0) and path.fov_y_deg[-1] == pytest.approx(80.0)
    lateral = np.cross(path.world_from_cams[:, :3, 3] - subject, _forward(path.world_from_cams))
    assert np.abs(lateral).max() < 1e-12  # it travelled along its optical axis
    assert np.allclose(path.world_from_cams[:, :3, :3], start[:3, :3])


def _keyframes() -> list[Keyframe]:
    positions = [[2, 0, 0.3], [1, 1.5, 0.6], [-1, 1.2, 0.2], [-1.8, -0.5, 0.8], [0.2, -1.6, 0.4]]
    return [Keyframe(look_at(p, [0, 0, 0.3]), 40.0 + 5 * i) for i, p in enumerate(positions)]


def test_keyframe_spline_passes_through_keyframes_and_is_c1():
    keyframes = _keyframes()
    path = keyframe_path(keyframes, 64, 48, fps=20, default_transition_sec=1.0)
    assert len(path) == 80  # int(fps * 4 transitions * 1 s), nerfstudio's count
    for k in range(4):  # frame 20 k is keyframe k (the last keyframe is the path's end, not a frame)
        assert np.abs(path.world_from_cams[20 * k] - keyframes[k].world_from_cam).max() < 1e-9
        assert path.fov_y_deg[20 * k] == pytest.approx(keyframes[k].fov_deg)
    spline, h = KeyframeSpline(keyframes), 1e-5
    for k in (1, 2, 3):  # one-sided derivatives agree across each inner keyframe
        before, at, after = (spline.evaluate(k + d)[0] for d in (-h, 0.0, h))
        v_in, v_out = (at[:3, 3] - before[:3, 3]) / h, (after[:3, 3] - at[:3, 3]) / h
        assert np.linalg.norm(v_in - v_out) < 1e-3 * np.linalg.norm(v_in)
        w_in = Rotation.from_matrix(before[:3, :3].T @ at[:3, :3]).as_rotvec() / h
        w_out = Rotation.from_matrix(at[:3, :3].T @ after[:3, :3]).as_rotvec() / h
        assert np.linalg.norm(w_in - w_out) < 1e-3 * max(np.linalg.norm(w_in), 1e-3)
    steps = np.linalg.norm(np.diff(path.world_from_cams[:, :3, 3], axis=0), axis=-1)
    assert steps.max() < 3 * np.median(steps)  # no jumps


def test_keyframe_transition_overrides_and_cycle():
    keyframes = _keyframes()
    keyframes[2].override_transition_enabled, keyframes[2].override_transition_sec = True, 3.0
    path = keyframe_path(keyframes, 32, 32, fps=10, default_transition_sec=1.0)
    assert path.seconds == pytest.approx(6.0) and len(path) == 60
    assert np.abs(path.world_from_cams[40] - keyframes[2].world_from_cam).max() < 1e-9  # at 1 + 3 s
    cycle = keyframe_path(_keyframes(), 32, 32, fps=10, default_transition_sec=1.0, is_cycle=True)
    assert len(cycle) == 50
    gap = np.linalg.norm(cycle.world_from_cams[-1, :3, 3] - cycle.world_from_cams[0, :3, 3])
    assert gap < 3 * np.linalg.norm(cycle.world_from_cams[1, :3, 3] - cycle.world_from_cams[0, :3, 3])


def test_interpolate_through_training_cameras():
    angles = np.linspace(0, math.pi, 7)
    poses = np.stack([look_at([2 * math.cos(a), 2 * math.sin(a), 0.5], [0, 0, 0]) for a in angles])
    settings = PathSettings(48, 32, fps=25, seconds=1.0)  # 25 frames: frame 4 j is pose j
    path = interpolate_path(settings, poses)
    assert len(path) == 25
    for j in range(7):
        assert np.abs(path.world_from_cams[4 * j] - poses[j]).max() < 1e-9
    rng = np.random.default_rng(0)
    noisy = poses.copy()
    noisy[:, :3, 3] += rng.normal(scale=0.05, size=(7, 3))
    def wiggle(p) -> float:
        return float(np.abs(np.diff(p.world_from_cams[:, :3, 3], n=2, axis=0)).sum())
    smooth = interpolate_path(settings, noisy, smoothing=1.0)
    assert wiggle(smooth) < 0.7 * wiggle(interpolate_path(settings, noisy))
    shuffled = poses[[0, 4, 2, 6, 1, 5, 3]]
    chained = interpolate_path(settings, shuffled, order="nearest")
    assert np.abs(chained.world_from_cams - path.world_from_cams).max() < 1e-9  # back in capture order
    few = interpolate_path(settings, poses, max_keyframes=3)
    assert len(few.keyframes) == 3 and np.abs(few.world_from_cams[-1] - poses[-1]).max() < 1e-9


def test_speed_ramps_start_and_end_slowly():
    t = np.linspace(0, 1, 101)
    for kind in ("linear", "ease-in", "ease-out", "ease-in-out"):
        warped = ease(t, kind)
        assert warped[0] == 0 and warped[-1] == pytest.approx(1.0) and np.all(np.diff(warped) > 0)
    slow_start = np.diff(ease(t, "ease-in-out"))
    assert slow_start[0] < 0.03 * slow_start[50] and slow_start[-1] < 0.03 * slow_start[50]
    assert np.diff(ease(t, "ease-in"))[0] < 0.05 * 0.01 and np.diff(ease(t, "ease-in"))[-1] > 0.9 * 0.01
    assert np.diff(ease(t, "ease-out"))[-1] < 0.05 * 0.01
    path = orbit_path(PathSettings(32, 32, fps=50, seconds=1.0, easing="ease-in-out"), radius=1.0, turns=0.5)
    positions = path.world_from_cams[:, :3, 3]
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=-1)
    assert steps[0] < 0.05 * steps[24] and steps[-1] < 0.05 * steps[24]
    with pytest.raises(ConfigError, match="easing"):
        ease(t, "bounce")


def test_read_keyframes_json(tmp_path):
    items = [{"position": [2, 0, 0.5], "look_at": [0, 0, 0], "fov": 45},
             {"matrix": look_at([0, 2, 0.5], [0, 0, 0]).tolist(), "transition_sec": 3.0},
             {"camera_to_world": look_at([-2, 0, 0.5], [0, 0, 0]).reshape(16).tolist(), "fov": 60}]
    file = tmp_path / "keys.json"
    file.write_text(json.dumps(items))
    keyframes = read_keyframes(file, default_fov_deg=50.0)
    assert [k.fov_deg for k in keyframes] == [45.0, 50.0, 60.0]
    assert keyframes[1].override_transition_enabled and keyframes[1].override_transition_sec == 3.0
    assert np.allclose(keyframes[0].world_from_cam, look_at([2, 0, 0.5], [0, 0, 0]))
    path = keyframe_path(keyframes, 32, 32, fps=10, default_transition_sec=1.0)
    assert len(path) == 40
    file.write_text(json.dumps([items[0]]))
    with pytest.raises(InputError, match="at least 2 keyframes"):
        read_keyframes(file)


def test_bad_path_settings():
    with pytest.raises(ConfigError, match="radius"):
        orbit_path(PathSettings(32, 32), radius=0.0)
    with pytest.raises(ConfigError, match="at least one frame"):
        orbit_path(PathSettings(32, 32, fps=10, seconds=0.0))
    with pytest.raises(ConfigError, match="fov"):
        dolly_zoom_path(PathSettings(32, 32), np.eye(4), 2.0, 30.0, 190.0)
    with pytest.raises(ConfigError, match="2 keyframes"):
        keyframe_path(_keyframes()[:1])
