"""``load_dataset``: format detection, Blender and COLMAP readers (tiny fixtures built here), the COLMAP ->
nerfstudio conversion, the sparse PLY, bad inputs, and the real captures in ../shared/data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import trimesh
from PIL import Image

from nerfstage.capture import load_dataset
from nerfstage.capture.convert import (
    NERFSTUDIO_APPLIED_TRANSFORM,
    dataset_from_reconstruction,
    intrinsics_from_colmap,
    write_sparse_ply,
)
from nerfstage.capture.transforms import write_transforms
from nerfstage.core.errors import DatasetError

W, H = 8, 6


def png(path: Path, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (W, H), color=(10, 20, 30, 128)[: len(mode)]).save(path)
    return path


def nerfstudio_c2w(cam_from_world: np.ndarray) -> np.ndarray:
    """Reference: what nerfstudio's colmap_to_json does to a [3, 4] cam_from_world (re-derived for the test)."""
    w2c = np.vstack([cam_from_world, [0, 0, 0, 1]])
    c2w = np.linalg.inv(w2c)
    c2w[0:3, 1:3] *= -1
    c2w = c2w[np.array([0, 2, 1, 3]), :]
    c2w[2, :] *= -1
    return c2w


# ------------------------------------------------------------------------------------------------ tiny COLMAP

C1, C2 = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.0, 5.0])
R_LOOK_X = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # rows: camera x, y, z in the world
POINTS = np.array([[0.0, 0.0, 10.0], [1.0, -2.0, 7.0], [3.0, 1.0, 4.0]])


def cam_from_world(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.hstack([rotation, (-rotation @ centre)[:, None]])  # [3, 4]


def tiny_reconstruction(names: tuple[str, ...] = ("a.png", "b.png", "c.png", "d.png")) -> pycolmap.Reconstruction:
    """Two cameras, three registered images (known poses), one unregistered image, three coloured points."""
    rec = pycolmap.Reconstruction()
    radial = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 50.0, W, H)
    radial.params = [50.0, 4.0, 3.0, 0.01]
    opencv = pycolmap.Camera.create_from_model_name(2, "OPENCV", 40.0, W, H)
    opencv.params = [40.0, 41.0, 3.5, 2.5, 0.1, -0.01, 0.001, -0.002]
    rec.add_camera_with_trivial_rig(radial)
    rec.add_camera_with_trivial_rig(opencv)
    poses = [cam_from_world(np.eye(3), C1), cam_from_world(R_LOOK_X, C2), cam_from_world(R_LOOK_X.T, C1)]
    for image_id, (name, camera_id, pose) in enumerate(zip(names, (1, 1, 2), poses, strict=False), start=1):
        rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=camera_id, image_id=image_id),
                                         pycolmap.Rigid3d(pose))
    rec.add_image_with_trivial_frame(pycolmap.Image(name=names[3], camera_id=1, image_id=4))  # not registered
    for i, xyz in enumerate(POINTS):
        rec.add_point3D(xyz, pycolmap.Track(), np.array([255, 10 * i, 7], dtype=np.uint8))
    return rec


@pytest.fixture
def colmap_folder(tmp_path: Path) -> Path:
    """tmp/scene/{sparse/0 (binary), images/a..d.png}."""
    scene = tmp_path / "scene"
    for name in "abcd":
        png(scene / "images" / f"{name}.png")
    (scene / "sparse" / "0").mkdir(parents=True)
    tiny_reconstruction().write(str(scene / "sparse" / "0"))
    return scene


def test_colmap_known_camera_gives_expected_opengl_pose(colmap_folder: Path) -> None:
    d = load_dataset(colmap_folder)
    assert d.format == "colmap" and len(d.frames) == 3  # the unregistered image is left out
    assert [f.colmap_im_id for f in d.frames] == [1, 2, 3]
    a, b = d.frames[0].world_from_cam, d.frames[1].world_from_cam
    # camera 1 at C1 looks along COLMAP +z, image-down is COLMAP +y; nerfstudio world = (x, z, -y)
    assert np.abs(a[:3, 3] - [1.0, 3.0, -2.0]).max() < 1e-12
    assert np.abs(-a[:3, 2] - [0.0, 1.0, 0.0]).max() < 1e-12  # viewing direction (-z, OpenGL)
    assert np.abs(a[:3, 1] - [0.0, 0.0, 1.0]).max() < 1e-12  # up (+y, OpenGL) = world +z
    # camera 2 at C2 looks along COLMAP +x
    assert np.abs(b[:3, 3] - [-1.0, 5.0, 0.0]).max() < 1e-12
    assert np.abs(-b[:3, 2] - [1.0, 0.0, 0.0]).max() < 1e-12
    rec = tiny_reconstruction()
    for frame in d.frames:
        expected = nerfstudio_c2w(rec.images[frame.colmap_im_id].cam_from_world().matrix())
        assert np.abs(frame.world_from_cam - expected).max() < 1e-12
    expected_applied = np.eye(4)[:3][[0, 2, 1]]
    expected_applied[2] *= -1
    assert np.array_equal(d.applied_transform, expected_applied)
    assert np.array_equal(NERFSTUDIO_APPLIED_TRANSFORM, expected_applied)


def test_colmap_intrinsics_per_camera(colmap_folder: Path) -> None:
    d = load_dataset(colmap_folder / "sparse" / "0")  # images guessed at ../../images
    a, c = d.frames[0].intrinsics, d.frames[2].intrinsics
    assert (a.model, a.fx, a.fy, a.cx, a.cy, a.k1, a.k2) == ("OPENCV", 50.0, 50.0, 4.0, 3.0, 0.01, 0.0)
    assert (a.width, a.height) == (W, H)
    assert (c.model, c.fx, c.fy, c.cx, c.cy) == ("OPENCV", 40.0, 41.0, 3.5, 2.5)
    assert (c.k1, c.k2, c.p1, c.p2) == (0.1, -0.01, 0.001, -0.002)
    assert d.root == colmap_folder and d.frames[0].image_path == colmap_folder / "images" / "a.png"


def test_colmap_without_nerfstudio_world(colmap_folder: Path) -> None:
    rec = pycolmap.Reconstruction(str(colmap_folder / "sparse" / "0"))
    d = dataset_from_reconstruction(rec, colmap_folder / "images", colmap_folder, apply_nerfstudio_world=False)
    a = d.frames[0].world_from_cam
    assert d.applied_transform is None
    assert np.abs(a[:3, 3] - C1).max() < 1e-12 and np.abs(-a[:3, 2] - [0, 0, 1]).max() < 1e-12
    assert np.abs(a[:3, 1] - [0, -1, 0]).max() < 1e-12


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        ("SIMPLE_PINHOLE", [5.0, 4.0, 3.0], ("PINHOLE", 5.0, 5.0, {})),
        ("PINHOLE", [5.0, 6.0, 4.0, 3.0], ("PINHOLE", 5.0, 6.0, {})),
        ("RADIAL", [5.0, 4.0, 3.0, 0.1, 0.2], ("OPENCV", 5.0, 5.0, {"k1": 0.1, "k2": 0.2})),
        ("OPENCV_FISHEYE", [5, 6, 4, 3, 0.1, 0.2, 0.3, 0.4], ("OPENCV_FISHEYE", 5, 6, {"k3": 0.3, "k4": 0.4})),
        ("SIMPLE_RADIAL_FISHEYE", [5.0, 4.0, 3.0, 0.1], ("OPENCV_FISHEYE", 5.0, 5.0, {"k1": 0.1, "k2": 0.0})),
        ("RADIAL_FISHEYE", [5.0, 4.0, 3.0, 0.1, 0.2], ("OPENCV_FISHEYE", 5.0, 5.0, {"k2": 0.2, "k3": 0.0})),
    ],
)
def test_colmap_camera_models_map_like_nerfstudio(model: str, params: list, expected: tuple) -> None:
    camera = pycolmap.Camera.create_from_model_name(1, model, 1.0, W, H)
    camera.params = params
    intr = intrinsics_from_colmap(camera)
    name, fx, fy, extra = expected
    assert (intr.model, intr.fx, intr.fy, intr.cx, intr.cy) == (name, fx, fy, 4.0, 3.0)
    assert all(getattr(intr, k) == v for k, v in extra.items())


def test_colmap_unsupported_model_is_refused() -> None:
    camera = pycolmap.Camera.create_from_model_name(3, "FOV", 5.0, W, H)
    with pytest.raises(DatasetError, match="COLMAP camera 3: model FOV is not supported"):
        intrinsics_from_colmap(camera)


def test_colmap_text_model_and_colmap_sparse_layout(tmp_path: Path) -> None:
    for name in "abcd":
        png(tmp_path / "images" / f"{name}.png")
    model = tmp_path / "colmap" / "sparse" / "0"
    model.mkdir(parents=True)
    tiny_reconstruction().write_text(str(model))
    d = load_dataset(tmp_path)  # colmap/sparse/0 with images/ beside it
    assert len(d.frames) == 3 and np.abs(d.frames[1].world_from_cam[:3, 3] - [-1.0, 5.0, 0.0]).max() < 1e-12


def test_colmap_image_name_escaping_the_images_folder_is_refused(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "evil.png")
    rec = tiny_reconstruction(names=("a.png", "../evil.png", "c.png", "d.png"))
    with pytest.raises(DatasetError, match=r"'\.\./evil\.png' points outside"):
        dataset_from_reconstruction(rec, tmp_path / "images", tmp_path)


def test_colmap_missing_images_are_skipped_with_a_warning(colmap_folder: Path) -> None:
    (colmap_folder / "images" / "b.png").unlink()
    d = load_dataset(colmap_folder)
    assert [f.image_path.name for f in d.frames] == ["a.png", "c.png"]
    assert len(d.warnings) == 1 and "skipped 1 registered images" in d.warnings[0] and "b.png" in d.warnings[0]


def test_sparse_ply_points_are_in_the_frames_world(tmp_path: Path) -> None:
    rec = tiny_reconstruction()
    count = write_sparse_ply(rec, tmp_path / "sparse_pc.ply", NERFSTUDIO_APPLIED_TRANSFORM)
    cloud = trimesh.load(tmp_path / "sparse_pc.ply")
    assert count == 3 and len(cloud.vertices) == 3
    expected = POINTS @ NERFSTUDIO_APPLIED_TRANSFORM[:, :3].T  # (x, z, -y)
    order = np.argsort(cloud.vertices[:, 0] * 100 + cloud.vertices[:, 1])
    exp_order = np.argsort(expected[:, 0] * 100 + expected[:, 1])
    assert np.abs(cloud.vertices[order] - expected[exp_order]).max() < 1e-6
    assert sorted(cloud.colors[:, 1].tolist()) == [0, 10, 20] and set(cloud.colors[:, 0].tolist()) == {255}


def test_colmap_to_transforms_json_round_trip(colmap_folder: Path) -> None:
    """What the capture pipeline does after SfM: Dataset -> PLY + transforms.json -> load_dataset."""
    rec = pycolmap.Reconstruction(str(colmap_folder / "sparse" / "0"))
    dataset = dataset_from_reconstruction(rec, colmap_folder / "images", colmap_folder)
    write_sparse_ply(rec, colmap_folder / "sparse_pc.ply", dataset.applied_transform)
    dataset.ply_path = colmap_folder / "sparse_pc.ply"
    write_transforms(dataset, colmap_folder / "transforms.json")
    loaded = load_dataset(colmap_folder)  # transforms.json wins over sparse/0
    assert loaded.format == "nerfstudio" and loaded.ply_path == colmap_folder / "sparse_pc.ply"
    assert np.array_equal(loaded.applied_transform, dataset.applied_transform)
    for a, b in zip(dataset.frames, loaded.frames, strict=True):
        assert a.intrinsics == b.intrinsics and np.abs(a.world_from_cam - b.world_from_cam).max() < 1e-12
    meta = json.loads((colmap_folder / "transforms.json").read_text())
    assert "fl_x" not in meta and meta["frames"][0]["fl_x"] == 50.0  # two cameras: per-frame intrinsics


# ----------------------------------------------------------------------------------------------------- Blender


def blender_folder(root: Path, angle: float = 0.69) -> Path:
    rng = np.random.default_rng(1)
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        frames = []
        for i in range(count):
            png(root / split / f"r_{i}.png", mode="RGBA")
            pose = np.eye(4)
            pose[:3, 3] = rng.normal(size=3)
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.01, "transform_matrix": pose.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return root


def test_blender_splits_focal_and_alpha(tmp_path: Path) -> None:
    d = load_dataset(blender_folder(tmp_path))
    assert d.format == "blender" and d.has_alpha and len(d.frames) == 4
    assert d.splits == {"train": [0, 1], "val": [2], "test": [3]}
    intr = d.frames[0].intrinsics
    assert intr.fx == pytest.approx(0.5 * W / math.tan(0.345), abs=1e-12) and intr.fy == intr.fx
    assert (intr.cx, intr.cy, intr.width, intr.height, intr.model) == (4.0, 3.0, W, H, "PINHOLE")
    assert d.frames[3].image_path == tmp_path / "test" / "r_0.png"
    files = [tmp_path / f"transforms_{s}.json" for s in ("train", "val", "test")]
    expected = np.array([f["transform_matrix"] for path in files for f in json.loads(path.read_text())["frames"]])
    assert np.abs(d.world_from_cams() - expected).max() == 0.0
    assert load_dataset(tmp_path / "transforms_val.json").splits == d.splits  # a split file -> its folder


def test_blender_bad_inputs(tmp_path: Path) -> None:
    blender_folder(tmp_path)
    (tmp_path / "val" / "r_0.png").unlink()
    missing = r"transforms_val\.json: frame 0: image '\./val/r_0\.png' does not exist"
    with pytest.raises(DatasetError, match=missing):
        load_dataset(tmp_path)
    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(DatasetError, match=r"transforms_train\.json: top level: missing key 'camera_angle_x'"):
        load_dataset(tmp_path)


# ------------------------------------------------------------------------------------------ detection / errors


def test_nerfstudio_json_file_and_folder(tmp_path: Path) -> None:
    png(tmp_path / "images" / "0.png")
    meta = {"camera_model": "PINHOLE", "fl_x": 3.0, "fl_y": 3.0, "cx": 4.0, "cy": 3.0, "w": W, "h": H,
            "frames": [{"file_path": "images/0.png", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "other.json").write_text(json.dumps(meta))
    assert load_dataset(tmp_path / "other.json").format == "nerfstudio"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert load_dataset(tmp_path).frames[0].intrinsics.fx == 3.0


def test_nothing_recognisable(tmp_path: Path) -> None:
    png(tmp_path / "images" / "0.png")
    expected = r"no dataset recognised; looked for transforms\.json.*sparse/0"
    with pytest.raises(DatasetError, match=expected) as info:
        load_dataset(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path / "images" / "0.png")


def test_colmap_without_images_folder(tmp_path: Path) -> None:
    (tmp_path / "sparse" / "0").mkdir(parents=True)
    tiny_reconstruction().write(str(tmp_path / "sparse" / "0"))
    with pytest.raises(DatasetError, match=r"images folder does not exist"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------------------------- real captures


def test_real_fox_instant_ngp(shared_data) -> None:
    root = shared_data("fox")
    d = load_dataset(root)
    assert d.format == "instant-ngp" and len(d.frames) == 50 and d.aabb_scale == 4.0
    intr = d.frames[0].intrinsics
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (1375.52, 1374.49, 554.558, 965.268)
    assert (intr.width, intr.height) == (1080, 1920)
    assert (intr.model, intr.k1, intr.k2) == ("OPENCV", 0.0578421, -0.0805099)
    assert len(d.warnings) == 1 and "skipped 17 of 67 frames" in d.warnings[0]
    listed = json.loads((root / "transforms.json").read_text())["frames"]
    by_name = {f["file_path"]: np.array(f["transform_matrix"]) for f in listed}
    assert all(np.array_equal(f.world_from_cam, by_name[f"images/{f.image_path.name}"]) for f in d.frames)


def test_real_lego_blender(shared_data) -> None:
    d = load_dataset(shared_data("lego_400"))
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 100, "val": 100, "test": 200}
    intr = d.frames[0].intrinsics
    assert intr.width == 400 and intr.fx == pytest.approx(555.555, abs=1e-3) and d.has_alpha


def test_real_beer_colmap_matches_llff_poses(shared_data) -> None:
    """The author's poses_bounds.npy (LLFF, made from the same model) must agree with our conversion."""
    root = shared_data("beer_video")
    d = load_dataset(root / "sparse" / "0", images=root / "images")
    assert len(d.frames) == 71 and d.frames[0].intrinsics.model == "OPENCV"
    raw = dataset_from_reconstruction(pycolmap.Reconstruction(str(root / "sparse" / "0")), root / "images", root,
                                      apply_nerfstudio_world=False)
    llff = np.load(root / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)  # columns: down, right, back, centre, hwf
    order = np.argsort([f.image_path.name for f in raw.frames])
    ours = raw.world_from_cams()[order][:, :3, :4]  # columns: right, up, back, centre
    theirs = np.stack([llff[:, :, 1], -llff[:, :, 0], llff[:, :, 2], llff[:, :, 3]], axis=-1)
    assert np.abs(ours - theirs).max() < 1e-9
    applied = np.vstack([NERFSTUDIO_APPLIED_TRANSFORM, [0, 0, 0, 1]])
    assert np.abs(d.world_from_cams() - applied @ raw.world_from_cams()).max() < 1e-12
