"""nerf.data: scene normalisation (dataparser_transforms.json), rays, splits, batcher, bad inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nerfstage.capture.dataset import Dataset, Frame
from nerfstage.core.cameras import camera_from_intrinsics
from nerfstage.core.errors import DatasetError, DeviceError
from nerfstage.core.geometry import Intrinsics, convert_camera_axes
from nerfstage.core.rays import generate_ray_batch
from nerfstage.nerf.data import (
    RayBatcher,
    camera_table,
    load_views,
    normalize_scene,
    read_dataparser_transforms,
    resolve_device,
    split_indices,
    validate_dataset,
    write_dataparser_transforms,
)
from nerfstage.render.paths.base import look_at

PINHOLE = Intrinsics(fx=40.0, fy=42.0, cx=15.5, cy=12.0, width=32, height=24)


def make_dataset(root: Path, n: int = 6, intr: Intrinsics = PINHOLE, rgba: bool = False, fmt="nerfstudio") -> Dataset:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        path = root / f"img_{i:02d}.png"
        channels = 4 if rgba else 3
        cv2.imwrite(str(path), rng.integers(0, 256, (intr.height, intr.width, channels), dtype=np.uint8))
        angle = 2 * np.pi * i / n
        eye = np.array([3 * np.cos(angle) + 5.0, 3 * np.sin(angle) - 2.0, 1.0 + 0.2 * i])
        frames.append(Frame(path, look_at(eye, target=(5.0, -2.0, 0.5)), intr))
    return Dataset(root=root, frames=frames, format=fmt, has_alpha=rgba)


def test_dataparser_transforms_nerfstudio_format_and_semantics(tmp_path):
    dataset = make_dataset(tmp_path)
    scene, aabb = normalize_scene(dataset, "poses")  # nerfstudio's defaults
    path = tmp_path / "dataparser_transforms.json"
    write_dataparser_transforms(path, scene)
    data = json.loads(path.read_text())
    assert sorted(data) == ["scale", "transform"]
    assert np.asarray(data["transform"]).shape == (3, 4) and isinstance(data["scale"], float)
    back = read_dataparser_transforms(path)
    poses = back.apply(dataset.world_from_cams())
    centres = poses[:, :3, 3]
    assert np.abs(centres).max() == pytest.approx(1.0, abs=1e-9)  # farthest camera at 1 (nerfstudio auto-scale)
    assert np.abs(centres.mean(axis=0)).max() < 1e-9  # centred on the mean camera
    up = poses[:, :3, 1].mean(axis=0)
    assert up / np.linalg.norm(up) == pytest.approx([0.0, 0.0, 1.0], abs=1e-9)  # mean camera up -> +z
    rotation = np.asarray(data["transform"])[:, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert aabb.tolist() == [[-1.0] * 3, [1.0] * 3]


def test_blender_scene_keeps_its_frame(tmp_path):
    dataset = make_dataset(tmp_path, rgba=True, fmt="blender")
    scene, aabb = normalize_scene(dataset)
    assert scene.scale == 1.0 and np.allclose(scene.transform, np.eye(4)[:3])
    assert aabb.tolist() == [[-1.5] * 3, [1.5] * 3]


def test_rays_hit_the_projected_point(tmp_path):
    """A 3-D point projected with OpenCV lies on the ray of its pixel (OpenGL pose -> OpenCV pixel math)."""
    dataset = make_dataset(tmp_path, n=1)
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0], scene)
    pose_cv = views.world_from_cams[0].double().numpy()  # [3, 4] normalised frame, OpenCV axes
    point = pose_cv[:, 3] + pose_cv[:, :3] @ np.array([0.3, -0.2, 2.0])  # in front of the camera
    cam_from_world = np.linalg.inv(np.vstack([pose_cv, [0, 0, 0, 1]]))
    rvec, _ = cv2.Rodrigues(cam_from_world[:3, :3])
    pix, _ = cv2.projectPoints(point[None], rvec, cam_from_world[:3, 3], PINHOLE.matrix(), None)
    u, v = pix.ravel()
    flat = torch.tensor([int(v) * PINHOLE.width + int(u)])
    origins, dirs, _, _ = views.rays(flat)
    o, d = origins[0].double().numpy(), dirs[0].double().numpy()
    miss = np.linalg.norm(np.cross(point - o, d))
    pixel_size = np.linalg.norm(point - o) / PINHOLE.fx
    assert miss < pixel_size  # within one pixel (the ray goes through the pixel centre)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("model", ["OPENCV", "OPENCV_FISHEYE"])
def test_distorted_camera_table_reprojects_to_pixel_centres(model):
    intr = replace(PINHOLE, model=model, k1=0.08, k2=-0.03, p1=0.001 if model == "OPENCV" else 0.0,
                   p2=-0.0015 if model == "OPENCV" else 0.0, k3=0.01 if model == "OPENCV_FISHEYE" else 0.0)
    table = camera_table(intr).astype(np.float64)  # [H*W, 2]
    points = np.concatenate([table, np.ones((len(table), 1))], axis=1)[:, None, :]
    if model == "OPENCV":
        dist = np.array([intr.k1, intr.k2, intr.p1, intr.p2, intr.k3])
        pix, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), intr.matrix(), dist)
    else:
        dist = np.array([intr.k1, intr.k2, intr.k3, intr.k4])
        pix, _ = cv2.fisheye.projectPoints(points, np.zeros(3), np.zeros(3), intr.matrix(), dist)
    u, v = np.meshgrid(np.arange(intr.width) + 0.5, np.arange(intr.height) + 0.5)
    err = np.abs(pix.reshape(-1, 2) - np.stack([u.ravel(), v.ravel()], -1)).max()
    assert err < 1e-3
    pinhole = camera_table(PINHOLE)
    assert np.abs(table - pinhole).max() > 1e-3  # the distortion does change the rays


OPENCV = replace(PINHOLE, model="OPENCV", k1=-0.12, k2=0.03, p1=0.0015, p2=-0.001, k3=-0.004)
FISHEYE = replace(PINHOLE, fx=18.0, fy=18.5, model="OPENCV_FISHEYE", k1=0.04, k2=-0.012, k3=0.002, k4=-0.0003)


@pytest.mark.parametrize("intr", [PINHOLE, OPENCV, FISHEYE], ids=["PINHOLE", "OPENCV", "OPENCV_FISHEYE"])
def test_training_rays_are_the_foundation_rays(tmp_path, intr):
    """ViewSet rays (the training / eval path) equal ``generate_ray_batch`` of the same camera and pose."""
    dataset = make_dataset(tmp_path, n=3, intr=intr)
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0, 1, 2], scene)
    camera = camera_from_intrinsics(intr)
    for v, frame in enumerate(dataset.frames):
        rays = generate_ray_batch(camera, scene.apply(frame.world_from_cam[None])[0], dtype=torch.float64)
        origins, dirs, _ = views.view_rays(v)
        assert rays.valid.all()
        assert (origins.double() - rays.origins).abs().max() < 1e-6
        assert (dirs.double() - rays.directions).abs().max() < 1e-6


@pytest.mark.parametrize("intr", [OPENCV, FISHEYE], ids=["OPENCV", "OPENCV_FISHEYE"])
def test_camera_table_matches_opencv_undistort_points(intr):
    """The table holds the points OpenCV's undistortPoints returned before (reference only; to 1e-6)."""
    u, v = np.meshgrid(np.arange(intr.width) + 0.5, np.arange(intr.height) + 0.5)
    pixels = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]  # [H*W, 1, 2] float64
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-15)
    if intr.model == "OPENCV":
        dist = np.array([intr.k1, intr.k2, intr.p1, intr.p2, intr.k3])
        expected = cv2.undistortPoints(pixels, intr.matrix(), dist, criteria=criteria)
    else:
        dist = np.array([intr.k1, intr.k2, intr.k3, intr.k4])
        expected = cv2.fisheye.undistortPoints(pixels, intr.matrix(), dist, criteria=criteria)
    table = camera_table(intr).astype(np.float64)
    assert np.abs(table - expected.reshape(-1, 2)).max() < 1e-6
    undistorted = Intrinsics(intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height)
    assert np.abs(table - camera_table(undistorted)).max() > 5e-3  # the distortion does change the rays


def test_camera_table_refuses_rays_it_cannot_hold():
    """x/z cannot hold a ray at or beyond 90 degrees, nor a pixel the distortion polynomial cannot invert:
    a clear DatasetError instead of the mirrored / clamped points OpenCV returned there."""
    wide = replace(PINHOLE, fx=8.0, fy=8.0, cx=16.0, cy=12.0, model="OPENCV_FISHEYE")  # equidistant, up to 143 deg
    with pytest.raises(DatasetError, match=r"OPENCV_FISHEYE camera 32x24 .* pixels, e.g. column 0 row 0"):
        camera_table(wide)
    folded = replace(wide, fx=12.0, fy=12.0, k1=-0.2)  # theta_d(theta) peaks at 0.86 rad: the corners have no ray
    with pytest.raises(DatasetError, match="90 degrees or more .* or cannot be undistorted"):
        camera_table(folded)
    assert camera_table(replace(wide, fx=20.0, fy=20.0)).shape == (24 * 32, 2)  # corner 57 degrees: fine


def test_split_uses_test_split_else_every_8th(tmp_path):
    dataset = make_dataset(tmp_path, n=17)
    train, held, name = split_indices(dataset)
    assert held == [0, 8, 16] and len(train) == 14 and name == "every-8th"
    dataset.splits = {"train": list(range(10)), "val": [10, 11], "test": [12, 13, 14]}
    train, held, name = split_indices(dataset)
    assert (train, held, name) == (list(range(10)), [12, 13, 14], "test")


def test_batcher_is_seeded_resumable_and_composites_rgba(tmp_path):
    dataset = make_dataset(tmp_path, n=3, rgba=True, fmt="blender")
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0, 1, 2], scene)
    assert views.pixels.shape == (3 * 24 * 32, 4)
    a, b = RayBatcher(views, seed=3), RayBatcher(views, seed=3)
    first = a.next(64)
    assert torch.equal(first["rgb"], b.next(64)["rgb"])
    state = a.state_dict()
    expected = a.next(64)
    a.load_state_dict(state)
    again = a.next(64)
    assert torch.equal(expected["origins"], again["origins"]) and torch.equal(expected["rgb"], again["rgb"])
    # rgb = colour * alpha + random background * (1 - alpha), per ray
    flat = torch.randint(0, len(views.pixels), (64,), generator=torch.Generator().manual_seed(0))
    raw = views.pixels[flat].float() / 255
    bg = torch.rand(64, 3)
    from nerfstage.nerf.data import composite

    assert torch.allclose(composite(raw, bg), raw[:, :3] * raw[:, 3:] + bg * (1 - raw[:, 3:]))
    assert first["background"].shape == (64, 3) and first["background"].std() > 0.1


def test_downscale_scales_intrinsics(tmp_path):
    dataset = make_dataset(tmp_path, n=2)
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0, 1], scene, max_side=16)
    assert views.view_shape(0) == (12, 16)
    assert len(views.table) == 12 * 16
    # the centre pixel's direction is unchanged by the downscale (same camera, coarser pixels)
    full = camera_table(PINHOLE).reshape(24, 32, 2)
    small = views.table.numpy().reshape(12, 16, 2)
    assert np.allclose(small[6, 8], full[12:14, 16:18].reshape(-1, 2).mean(0), atol=1e-6)


# ----------------------------------------------------------------------------------------------- bad inputs
def test_empty_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no frames"):
        validate_dataset(Dataset(root=tmp_path, frames=[], format="nerfstudio"))


def test_nan_pose(tmp_path):
    dataset = make_dataset(tmp_path, n=3)
    dataset.frames[1].world_from_cam = dataset.frames[1].world_from_cam.copy()
    dataset.frames[1].world_from_cam[0, 3] = np.nan
    with pytest.raises(DatasetError, match="img_01.png.*finite"):
        validate_dataset(dataset)
    dataset.frames[1].world_from_cam[0, 3] = np.inf
    with pytest.raises(DatasetError, match="finite"):
        validate_dataset(dataset)


def test_zero_focal(tmp_path):
    dataset = make_dataset(tmp_path, n=2, intr=replace(PINHOLE, fx=0.0))
    with pytest.raises(DatasetError, match="focal length"):
        validate_dataset(dataset)


def test_mixed_sizes_without_per_frame_intrinsics(tmp_path):
    dataset = make_dataset(tmp_path, n=3)
    cv2.imwrite(str(dataset.frames[2].image_path), np.zeros((30, 40, 3), np.uint8))
    scene, _ = normalize_scene(dataset)
    with pytest.raises(DatasetError, match="img_02.png: image is 40x30 but its camera says 32x24"):
        load_views(dataset, [0, 1, 2], scene)


def test_mixed_sizes_with_per_frame_intrinsics_work(tmp_path):
    dataset = make_dataset(tmp_path, n=3)
    big = replace(PINHOLE, width=40, height=30, cx=20.0, cy=15.0)
    cv2.imwrite(str(dataset.frames[2].image_path), np.zeros((30, 40, 3), np.uint8))
    dataset.frames[2].intrinsics = big
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0, 1, 2], scene)
    assert [views.view_shape(v) for v in range(3)] == [(24, 32), (24, 32), (30, 40)]
    origins, dirs, colours = views.view_rays(2)
    assert origins.shape == (1200, 3) and torch.isfinite(dirs).all()


def test_all_images_missing(tmp_path):
    frames = [{"file_path": f"images/{i}.png", "transform_matrix": np.eye(4).tolist()} for i in range(3)]
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"fl_x": 10.0, "fl_y": 10.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16, "camera_model": "PINHOLE",
         "frames": frames}))
    from nerfstage.capture.loader import as_dataset

    with pytest.raises(DatasetError):
        validate_dataset(as_dataset(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_requested_but_absent():
    with pytest.raises(DeviceError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_opengl_opencv_conversion_is_the_one_used(tmp_path):
    dataset = make_dataset(tmp_path, n=1)
    scene, _ = normalize_scene(dataset)
    views = load_views(dataset, [0], scene)
    expected = convert_camera_axes(scene.apply(dataset.world_from_cams()))[0, :3]
    assert np.allclose(views.world_from_cams[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("damage", ["nan", "scale", "shear", "mirror"])
def test_a_damaged_dataparser_transforms_is_refused(tmp_path, damage):
    """A run's dataparser_transforms.json is validated like a dataset: finite, positive scale, a proper rotation
    (a NaN there let `train --resume` finish at 4.8 dB with exit 0)."""
    from nerfstage.core.errors import DatasetError
    from nerfstage.nerf.data import read_dataparser_transforms

    transform, scale = np.eye(4)[:3].tolist(), 0.5
    if damage == "nan":
        transform[0][3] = float("nan")
    elif damage == "scale":
        scale = 0.0
    elif damage == "shear":
        transform[0][1] = 0.2
    else:
        transform[2][2] = -1.0
    path = tmp_path / "dataparser_transforms.json"
    path.write_text(json.dumps({"transform": transform, "scale": scale}))
    with pytest.raises(DatasetError, match="dataparser_transforms.json: .*damaged"):
        read_dataparser_transforms(path)
    path.write_text(json.dumps({"transform": np.eye(4)[:3].tolist(), "scale": 0.5}))
    assert read_dataparser_transforms(path).scale == 0.5
