"""nerf.scene_centre + normalize_scene(centre=...): focus of attention, the auto rule, the scale rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nerfstage.capture.dataset import Dataset, Frame
from nerfstage.core.errors import ConfigError, DatasetError
from nerfstage.core.geometry import Intrinsics
from nerfstage.nerf.config import DataConfig, TrainConfig, config_from_dict
from nerfstage.nerf.data import normalize_scene
from nerfstage.nerf.scene_centre import estimate_focus, focus_of_attention, focus_scale
from nerfstage.render.paths.base import look_at

# A phone held upright: 1080x1920, ~39 x 70 deg field of view (instant-ngp's fox camera).
PHONE = Intrinsics(fx=1375.0, fy=1375.0, cx=540.0, cy=960.0, width=1080, height=1920)
TARGET = np.array([3.0, -2.0, 0.7])


def dataset_of(poses: list[np.ndarray]) -> Dataset:
    """A dataset of these cameras (images are never read by the centring code)."""
    frames = [Frame(Path(f"/nonexistent/{i:03d}.png"), pose, PHONE) for i, pose in enumerate(poses)]
    return Dataset(root=Path("/nonexistent"), frames=frames, format="nerfstudio")


def arc(n: int, degrees: float, radius: float = 4.0, target=TARGET) -> list[np.ndarray]:
    """Cameras on an arc of ``degrees`` around ``target``, heights varying, all looking at it."""
    angles = np.radians(np.linspace(-degrees / 2, degrees / 2, n)) + 0.3
    heights = 0.6 * np.sin(np.linspace(0.0, 3.0 * np.pi, n))
    eyes = target + np.stack([radius * np.cos(angles), radius * np.sin(angles), 1.0 + heights], axis=1)
    return [look_at(eye, target) for eye in eyes]


def to_scene(scene, points: np.ndarray) -> np.ndarray:
    """[N, 3] dataset points -> normalised scene frame."""
    return scene.scale * (points @ scene.transform[:, :3].T + scene.transform[:, 3])


def test_circle_recovers_the_focus_and_centres_on_it():
    dataset = dataset_of(arc(16, 337.5))
    estimate = estimate_focus(dataset)
    assert np.linalg.norm(estimate.point - TARGET) / np.linalg.norm(TARGET) < 1e-6
    assert estimate.in_front == 1.0 and estimate.in_view == 1.0 and estimate.axis_spread_deg > 30.0
    scene, aabb = normalize_scene(dataset, "auto")
    assert scene.centre == "focus"
    assert np.abs(to_scene(scene, TARGET[None])).max() < 1e-9  # the focus becomes the origin
    distances = np.linalg.norm(scene.apply(dataset.world_from_cams())[:, :3, 3], axis=1)
    assert np.median(distances) == pytest.approx(1.0 / estimate.view_tan, rel=1e-9)  # the scale rule
    assert aabb.tolist() == [[-1.0] * 3, [1.0] * 3]


def test_cameras_looking_away_do_not_count():
    """Cameras that have the point behind them are dropped from the solve (nerfstudio's active set)."""
    away = [look_at(p[:3, 3], 2 * p[:3, 3] - TARGET) for p in arc(3, 40.0, radius=5.0)]
    dataset = dataset_of(arc(12, 300.0) + away)
    point, active, _ = focus_of_attention(dataset.world_from_cams())
    assert active.tolist() == [True] * 12 + [False] * 3
    assert np.linalg.norm(point - TARGET) / np.linalg.norm(TARGET) < 1e-6
    estimate = estimate_focus(dataset)
    assert estimate.in_front == pytest.approx(12 / 15) and normalize_scene(dataset, "auto")[0].centre == "focus"


def test_forward_facing_falls_back_to_the_mean_camera():
    """Parallel optical axes (an LLFF-style grid of cameras) have no focus: auto keeps the mean camera position."""
    eyes = [np.array([x, 0.0, z]) for x in np.linspace(-1, 1, 4) for z in np.linspace(0.5, 1.5, 3)]
    dataset = dataset_of([look_at(eye, eye + np.array([0.0, 5.0, 0.0])) for eye in eyes])
    estimate = estimate_focus(dataset)
    assert estimate.axis_spread_deg < 1e-3 and "spread" in estimate.rejection()
    auto, _ = normalize_scene(dataset, "auto")
    poses, _ = normalize_scene(dataset, "poses")
    assert auto.centre == "poses" and np.allclose(auto.transform, poses.transform, atol=1e-12)
    assert auto.scale == poses.scale
    centres = auto.apply(dataset.world_from_cams())[:, :3, 3]
    assert np.abs(centres.mean(axis=0)).max() < 1e-9 and np.abs(centres).max() == pytest.approx(1.0)
    with pytest.raises(DatasetError, match="scene_centre='focus'"):
        normalize_scene(dataset, "focus")


def test_walk_going_straight_falls_back():
    """A video walking down a corridor, panning +-8 deg: the axes' closest point is no subject."""
    rng = np.random.default_rng(0)
    poses = []
    for i, yaw in enumerate(np.radians(8.0) * np.sin(np.linspace(0, 2 * np.pi, 30)) + rng.normal(0, 0.01, 30)):
        eye = np.array([0.0, 0.3 * i, 1.6])
        poses.append(look_at(eye, eye + np.array([np.sin(yaw), np.cos(yaw), 0.0])))
    estimate = estimate_focus(dataset_of(poses))
    assert estimate.rejection() is not None
    assert normalize_scene(dataset_of(poses), "auto")[0].centre == "poses"


def test_subject_of_an_arc_capture_lands_inside_the_unit_box():
    """A fox-like capture (120 deg arc, subject filling 80% of the image width): mean-camera centring leaves the
    subject's centre at the edge of the unit box; focus centring puts the whole subject inside it."""
    dataset = dataset_of(arc(40, 120.0))
    radius = 0.8 * 4.0 * PHONE.cx / PHONE.fx  # subject sphere filling 80% of the width at distance ~4
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(2000, 3))
    subject = TARGET + radius * sphere / np.linalg.norm(sphere, axis=1, keepdims=True)  # [2000, 3]
    poses, _ = normalize_scene(dataset, "poses")
    auto, _ = normalize_scene(dataset, "auto")
    assert np.abs(to_scene(poses, TARGET[None])).max() > 0.8  # old rule: subject centre near / past the box edge
    assert np.abs(to_scene(poses, subject)).max() > 1.0  # ... and part of the subject is contracted
    inside = np.abs(to_scene(auto, subject)).max()
    assert auto.centre == "focus" and inside < 0.6  # new rule: all of it inside, with room around
    assert auto.scale == pytest.approx(focus_scale(estimate_focus(dataset)))


def test_bad_centre_and_config_field():
    dataset = dataset_of(arc(8, 300.0))
    with pytest.raises(ConfigError, match="scene_centre"):
        normalize_scene(dataset, "middle")
    assert DataConfig().scene_centre == "auto" and TrainConfig().data.scene_centre == "auto"
    assert config_from_dict(DataConfig, {"scene_centre": "focus"}).scene_centre == "focus"
    with pytest.raises(ConfigError, match="scene_centre"):
        config_from_dict(DataConfig, {"scene_centre": "middle"})
