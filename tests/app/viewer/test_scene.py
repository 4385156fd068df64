"""What the viewer draws: training-camera frustums with thumbnails, the dataset's sparse points mapped into the
normalised frame, and the scene box."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np

from nerfstage.app.viewer.scene import SceneInfo, add_scene, read_points, scene_of_run, thumbnail


class FakeScene:
    """Records the viser scene calls ``add_scene`` makes."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def named(self, name):
        return [(args, kwargs) for n, args, kwargs in self.calls if n == name]


class FakeServer:
    def __init__(self):
        self.scene = FakeScene()


def test_training_cameras_box_and_thumbnails(tiny_run):
    from nerfstage.nerf.run import load_run
    from nerfstage.app.viewer.views import world_from_cam_of

    run = load_run(tiny_run.run_dir, device="cpu")
    info = scene_of_run(run)
    assert info.points is None and info.aabb.shape == (2, 3) and (info.aabb[1] > info.aabb[0]).all()
    server = FakeServer()
    add_scene(server, info)
    frustums = server.scene.named("add_camera_frustum")
    assert len(frustums) == len(run.train_indices) == 21  # 24 frames, every 8th held out
    for (name,), kwargs in frustums:
        index = int(name.rsplit("/", 1)[1])
        assert index in run.train_indices
        assert np.allclose(world_from_cam_of(kwargs["wxyz"], kwargs["position"]), run.world_from_cams[index])
        assert kwargs["image"].shape == (48, 64, 3) and kwargs["image"].std() > 5  # the training image
        assert math.isclose(kwargs["aspect"], 64 / 48)
    (box_args, box), = server.scene.named("add_box")
    assert np.allclose(box["dimensions"], info.aabb[1] - info.aabb[0]) and box["wireframe"]


def test_sparse_points_are_mapped_into_the_normalised_frame(tiny_run, tmp_path):
    import trimesh

    from nerfstage.nerf.run import load_run

    scene_dir = tmp_path / "scene"
    shutil.copytree(tiny_run.dataset_dir, scene_dir)
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))  # [P, 3] dataset frame
    colors = rng.integers(0, 255, size=(50, 3), dtype=np.uint8)
    trimesh.PointCloud(points, colors=colors).export(scene_dir / "sparse_pc.ply")
    meta = json.loads((scene_dir / "transforms.json").read_text())
    (scene_dir / "transforms.json").write_text(json.dumps(meta | {"ply_file_path": "sparse_pc.ply"}))
    scene = load_run(tiny_run.run_dir, device="cpu", cameras=False).scene
    mapped, mapped_colors = read_points(scene_dir, scene)
    expected = scene.scale * (points @ scene.transform[:, :3].T + scene.transform[:, 3])
    assert np.allclose(mapped, expected, atol=1e-6) and np.array_equal(mapped_colors, colors)
    assert read_points(tiny_run.dataset_dir, scene) == (None, None)  # no ply_file_path
    server = FakeServer()
    add_scene(server, SceneInfo(points=mapped, colors=mapped_colors))
    (args, _), = server.scene.named("add_point_cloud")
    assert args[1].shape == (50, 3)


def test_thumbnail_composites_transparency_over_white(tmp_path):
    import cv2

    rgba = np.zeros((200, 100, 4), np.uint8)
    rgba[:100, :, :3], rgba[:100, :, 3] = (0, 0, 255), 255  # opaque red (BGR) top half, transparent bottom
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    small = thumbnail(tmp_path / "a.png", height=64)
    assert small.shape == (64, 32, 3)
    assert small[5, 5].tolist() == [255, 0, 0] and small[60, 5].tolist() == [255, 255, 255]
    assert thumbnail(tmp_path / "missing.png") is None
