"""Point clouds from depth maps: exact back-projection of a plane seen by tilted cameras (ray and z depth,
distortion), outlier removal, the point budget, colours and PLY output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import trimesh

from nerfstage.core.errors import ConfigError, InputError
from nerfstage.core.geometry import Intrinsics, convert_camera_axes
from nerfstage.export.pointcloud import (
    DepthView,
    PointCloudOptions,
    back_project,
    pixel_rays,
    point_cloud_from_views,
    write_point_cloud,
)

CAM = Intrinsics(fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world with OpenGL axes (z backward, y up), world +Z up."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(back, right), back], axis=1)
    pose[:3, 3] = eye
    return pose


def checker(points: np.ndarray) -> np.ndarray:
    """[n, 3] colour of the floor's 0.5 m checkerboard at world points."""
    cell = (np.floor(points[:, 0] / 0.5) + np.floor(points[:, 1] / 0.5)) % 2
    return np.stack([cell, 1 - cell, np.full_like(cell, 0.5)], axis=1)


def floor_view(eye, kind: str = "ray", cam: Intrinsics = CAM) -> DepthView:
    """A camera looking at the floor z = 0: exact depth and the checker colour of every pixel."""
    pose = look_at(np.asarray(eye, float), np.array([0.3, -0.2, 0.0]))
    cv = convert_camera_axes(pose)
    rays = pixel_rays(cam) @ cv[:3, :3].T  # [p, 3] world directions with unit camera z
    t = -cv[2, 3] / rays[:, 2]  # where each ray meets z = 0 (in units of camera z)
    depth = t if kind == "z" else t * np.linalg.norm(rays, axis=1)
    rgb = checker(cv[:3, 3] + rays * t[:, None]).reshape(cam.height, cam.width, 3)
    return DepthView(rgb.astype(np.float32), depth.reshape(cam.height, cam.width), pose, cam)


@pytest.mark.parametrize("kind", ["ray", "z"])
def test_floor_points_lie_on_the_floor_with_their_colours(kind):
    views = [floor_view([2.0, -2.0, 1.5], kind), floor_view([-1.0, -2.5, 2.0], kind)]
    points, colors = point_cloud_from_views(views, PointCloudOptions(depth_kind=kind, neighbors=0))
    assert len(points) == 2 * 64 * 48
    assert np.abs(points[:, 2]).max() < 1e-9
    np.testing.assert_allclose(colors, checker(points), atol=1e-6)


def test_camera_axis_convention_centre_pixel_is_in_front():
    pose = look_at(np.array([0.0, -3.0, 1.0]), np.array([0.0, 0.0, 1.0]))  # looks along +Y
    view = DepthView(np.zeros((2, 2, 3)), np.full((2, 2), 2.0), pose, Intrinsics(1.0, 1.0, 1.0, 1.0, 2, 2))
    points, _ = back_project(view, PointCloudOptions(depth_kind="z"))
    np.testing.assert_allclose(points[:, 1], -1.0)  # 2 m in front of the camera along its -Z (OpenGL)


def test_distorted_pixels_are_undistorted():
    cam = Intrinsics(60.0, 60.0, 32.0, 24.0, 64, 48, model="OPENCV", k1=-0.2, k2=0.05, p1=0.001)
    rays = pixel_rays(cam)
    dist = np.array([cam.k1, cam.k2, cam.p1, cam.p2, cam.k3])
    pixels, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), cam.matrix(), dist)
    u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    np.testing.assert_allclose(pixels[:, 0], np.stack([u.ravel(), v.ravel()], 1), atol=1e-3)


def test_outliers_and_transparent_pixels_are_removed():
    view = floor_view([2.0, -2.0, 1.5])
    rng = np.random.default_rng(0)
    bad = rng.choice(view.depth.size, 60, replace=False)
    view.depth.reshape(-1)[bad] *= rng.uniform(0.2, 0.8, 60)  # stray points floating above the floor
    view.accumulation = np.ones(view.depth.shape)
    view.accumulation[:4] = 0.1  # top rows half transparent: their depth is not trusted
    view.depth[:4] = 0.5
    points, _ = point_cloud_from_views([view], PointCloudOptions())
    off = np.abs(points[:, 2]) > 1e-6
    assert off.sum() <= 3, f"{off.sum()} of 60 outliers survived"
    assert len(points) >= 0.93 * (view.depth.size - 4 * 64 - 60)  # nearly every floor point kept


def test_point_budget_is_met_and_seeded():
    views = [floor_view([2.0, -2.0, 1.5])]
    options = PointCloudOptions(num_points=500, seed=3)
    a, ca = point_cloud_from_views(views, options)
    b, _ = point_cloud_from_views(views, options)
    assert len(a) == 500 and np.array_equal(a, b) and ca.shape == (500, 3)
    with pytest.raises(ConfigError, match="min_accumulation"):
        empty = floor_view([2.0, -2.0, 1.5])
        empty.accumulation = np.zeros(empty.depth.shape)
        point_cloud_from_views([empty])


def test_ply_round_trip(tmp_path):
    points, colors = point_cloud_from_views([floor_view([2.0, -2.0, 1.5])], PointCloudOptions(num_points=300))
    path = write_point_cloud(points, colors, tmp_path / "points.ply")
    back = trimesh.load(path)
    np.testing.assert_allclose(back.vertices, points, atol=1e-6)
    np.testing.assert_array_equal(back.colors[:, :3], np.round(colors * 255).astype(np.uint8))
    with pytest.raises(InputError, match=r"\.ply"):
        write_point_cloud(points, colors, tmp_path / "points.glb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.ply"]


def test_synthetic_views_land_on_the_true_surfaces(synthetic_sdf):
    """True depth of the built-in synthetic scene, back-projected, lies on its known surfaces (room and objects)."""
    import torch

    from nerfstage.capture.synthetic import SyntheticOptions, render_frame, synthetic_cameras, true_depth

    poses, cam = synthetic_cameras(SyntheticOptions(num_frames=3, width=64, height=48))
    views = [DepthView(render_frame(p, cam), true_depth(p, cam), p, cam) for p in poses]
    points, colors = point_cloud_from_views(views, PointCloudOptions(depth_kind="z", num_points=5000))
    distance = np.abs(synthetic_sdf(torch.as_tensor(points), True).numpy())
    assert len(points) == 5000 and distance.max() < 1e-4, f"max distance {distance.max():.2e} m"
    assert colors.std(axis=0).min() > 0.05  # textured, not constant
