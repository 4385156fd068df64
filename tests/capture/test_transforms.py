"""nerfstudio / instant-ngp ``transforms.json``: writing, the round trip, nerfstudio's key layout, and every bad
input giving a one-line DatasetError that names the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerfstage.capture.dataset import Dataset, Frame
from nerfstage.capture.transforms import detect_json_format, read_transforms, write_transforms
from nerfstage.core.errors import DatasetError
from nerfstage.core.geometry import Intrinsics

W, H = 8, 6


def make_images(folder: Path, names: list[str], mode: str = "RGB") -> list[Path]:
    """Tiny W x H images (distinct colours) at folder/name; returns their paths."""
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, (W, H), color=(40 * i, 100, 200, 255)[: len(mode)]).save(path)
        paths.append(path)
    return paths


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """[4, 4] random rigid camera-to-world."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pose = np.eye(4)
    pose[:3, :3] = q * np.sign(np.linalg.det(q))
    pose[:3, 3] = rng.normal(size=3) * 3.0
    return pose


def make_dataset(root: Path, shared: bool) -> Dataset:
    rng = np.random.default_rng(0)
    images = make_images(root, [f"images/frame_{i:05d}.png" for i in range(1, 4)])
    masks = make_images(root, [f"masks/frame_{i:05d}.png" for i in range(1, 4)], mode="L")
    cam = Intrinsics(10.123456789, 10.5, 4.25, 2.75, W, H, "OPENCV", k1=0.01, k2=-0.002, p1=1e-4, p2=-2e-4)
    fisheye = Intrinsics(9.0, 9.0, 4.0, 3.0, W, H, "OPENCV_FISHEYE", k1=0.1, k2=0.01, k3=0.001, k4=1e-4)
    frames = [
        Frame(p, random_pose(rng), cam if shared or i != 1 else fisheye, mask_path=m, colmap_im_id=i + 1)
        for i, (p, m) in enumerate(zip(images, masks, strict=True))
    ]
    applied = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]])
    splits = {"train": [0, 2], "val": [1], "test": [1]}
    return Dataset(root, frames, "colmap", splits=splits, applied_transform=applied)


@pytest.mark.parametrize("shared", [True, False])
def test_round_trip_gives_the_same_cameras(tmp_path: Path, shared: bool) -> None:
    original = make_dataset(tmp_path, shared)
    write_transforms(original, tmp_path / "transforms.json")
    loaded = read_transforms(tmp_path / "transforms.json")
    assert loaded.format == "nerfstudio"
    assert len(loaded.frames) == 3
    for a, b in zip(original.frames, loaded.frames, strict=True):
        assert b.image_path == a.image_path and b.mask_path == a.mask_path
        assert b.colmap_im_id == a.colmap_im_id
        assert b.intrinsics == a.intrinsics  # every field, exactly
        assert np.max(np.abs(b.world_from_cam - a.world_from_cam)) < 1e-9
    assert np.max(np.abs(loaded.applied_transform - original.applied_transform)) < 1e-12
    assert loaded.splits == original.splits
    assert not list(tmp_path.glob(".*partial*")), "the temp file of the atomic write was left behind"


def test_written_json_has_nerfstudio_key_layout(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path, shared=True)
    (tmp_path / "sparse_pc.ply").write_bytes(b"ply\n")
    dataset.ply_path = tmp_path / "sparse_pc.ply"
    write_transforms(dataset, tmp_path / "transforms.json")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    camera = ["w", "h", "fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4", "p1", "p2", "camera_model"]
    assert list(meta)[:13] == camera
    split_keys = {f"{s}_filenames" for s in dataset.splits}
    assert set(meta) == {*camera, "frames", "applied_transform", "ply_file_path", *split_keys}
    assert (meta["w"], meta["h"], meta["camera_model"]) == (W, H, "OPENCV")
    assert isinstance(meta["w"], int) and meta["fl_x"] == 10.123456789
    assert meta["applied_transform"] == [[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]]
    assert meta["ply_file_path"] == "sparse_pc.ply"
    frame = meta["frames"][0]
    assert set(frame) == {"file_path", "transform_matrix", "colmap_im_id", "mask_path"}
    assert frame["file_path"] == "images/frame_00001.png" and frame["mask_path"] == "masks/frame_00001.png"
    assert np.asarray(frame["transform_matrix"]).shape == (4, 4) and frame["colmap_im_id"] == 1
    assert meta["train_filenames"] == ["images/frame_00001.png", "images/frame_00003.png"]


def test_per_frame_cameras_are_written_per_frame(tmp_path: Path) -> None:
    write_transforms(make_dataset(tmp_path, shared=False), tmp_path / "transforms.json")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert "fl_x" not in meta and "k1" not in meta and "camera_model" not in meta  # two models: no shared one
    assert [f["camera_model"] for f in meta["frames"]] == ["OPENCV", "OPENCV_FISHEYE", "OPENCV"]
    assert meta["frames"][1]["k4"] == 1e-4 and meta["frames"][0]["p2"] == -2e-4


def test_write_refuses_images_outside_the_json_folder(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "a", shared=True)
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        write_transforms(dataset, tmp_path / "a" / "sub" / "transforms.json")
    assert not (tmp_path / "a" / "sub" / "transforms.json").exists()


def test_write_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    (tmp_path / "transforms.json").write_text("old")
    write_transforms(make_dataset(tmp_path, shared=True), tmp_path / "transforms.json")
    assert len(json.loads((tmp_path / "transforms.json").read_text())["frames"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "masks", "transforms.json"]


def write_json(path: Path, meta: object) -> Path:
    path.write_text(json.dumps(meta) if not isinstance(meta, str) else meta)
    return path


def ns_meta(**top: object) -> dict:
    frames = [
        {"file_path": f"images/{i}.png", "transform_matrix": np.eye(4).tolist()} for i in range(2)
    ]
    meta = {"camera_model": "OPENCV", "fl_x": 7.0, "fl_y": 7.5, "cx": 4.0, "cy": 3.0, "w": W, "h": H}
    meta.update(frames=frames, **top)
    return meta


def test_per_frame_intrinsics_override_top_level(tmp_path: Path) -> None:
    make_images(tmp_path, ["images/0.png", "images/1.png"])
    meta = ns_meta(k1=0.1)
    meta["frames"][1].update({"fl_x": 9.0, "cx": 4.5, "k1": 0.2})
    d = read_transforms(write_json(tmp_path / "transforms.json", meta))
    a, b = d.frames[0].intrinsics, d.frames[1].intrinsics
    assert (a.fx, a.fy, a.cx, a.k1) == (7.0, 7.5, 4.0, 0.1)
    assert (b.fx, b.fy, b.cx, b.k1) == (9.0, 7.5, 4.5, 0.2)
    assert d.frames[0].image_path == tmp_path / "images" / "0.png"


def test_instant_ngp_camera_angle_size_from_image_and_missing_skipped(tmp_path: Path) -> None:
    make_images(tmp_path, ["images/0.jpg", "images/2.jpg"])
    eye = np.eye(4).tolist()
    frames = [{"file_path": f"images/{i}.jpg", "sharpness": 3.0, "transform_matrix": eye} for i in range(3)]
    meta = {"camera_angle_x": 1.2, "camera_angle_y": 1.0, "aabb_scale": 4, "k1": 0.05, "p1": 0.001}
    meta["frames"] = frames
    path = write_json(tmp_path / "transforms.json", meta)
    assert detect_json_format(meta) == "instant-ngp"
    d = read_transforms(path)
    assert d.format == "instant-ngp" and len(d.frames) == 2 and d.aabb_scale == 4.0
    intr = d.frames[0].intrinsics
    assert (intr.width, intr.height, intr.cx, intr.cy) == (W, H, 4.0, 3.0)
    assert intr.fx == pytest.approx(0.5 * W / math.tan(0.6), abs=1e-12)
    assert intr.fy == pytest.approx(0.5 * H / math.tan(0.5), abs=1e-12)
    assert (intr.model, intr.k1, intr.p1) == ("OPENCV", 0.05, 0.001)
    assert len(d.warnings) == 1 and "skipped 1 of 3" in d.warnings[0] and "images/1.jpg" in d.warnings[0]


def test_instant_ngp_fisheye_flag(tmp_path: Path) -> None:
    make_images(tmp_path, ["images/0.jpg"])
    frames = [{"file_path": "images/0.jpg", "transform_matrix": np.eye(4).tolist()}]
    meta = {"fl_x": 5.0, "w": W, "h": H, "k1": 0.1, "k2": 0.0, "k3": 0.0, "k4": 0.02, "is_fisheye": True}
    intr = read_transforms(write_json(tmp_path / "transforms.json", {**meta, "frames": frames})).frames[0].intrinsics
    assert (intr.model, intr.fy, intr.k1, intr.k4) == ("OPENCV_FISHEYE", 5.0, 0.1, 0.02)


def test_format_detection_rule() -> None:
    assert detect_json_format({"camera_model": "OPENCV", "frames": []}) == "nerfstudio"
    assert detect_json_format({"frames": [{"camera_model": "PINHOLE"}]}) == "nerfstudio"
    assert detect_json_format({"applied_transform": [], "frames": []}) == "nerfstudio"
    assert detect_json_format({"fl_x": 1.0, "aabb_scale": 2, "frames": []}) == "instant-ngp"


def _bad(
    meta_update: dict | None = None,
    frame_update: dict | None = None,
    drop: str | None = None,
    frame_drop: str = "",
) -> dict:
    meta = ns_meta(**(meta_update or {}))
    meta["frames"][1].update(frame_update or {})
    meta["frames"][1].pop(frame_drop, None)
    if drop:
        meta.pop(drop)
    return meta


BAD_INPUTS = {
    "malformed": ('{"frames": [\n  {"file_path": }\n]}', r"malformed JSON at line 2"),
    "not an object": ("[1, 2]", r"expected a JSON object"),
    "no frames key": (_bad(drop="frames"), r"missing key 'frames'"),
    "no fl_x": (_bad(drop="fl_x"), r"missing key 'fl_x'"),
    "no transform_matrix": (_bad(frame_drop="transform_matrix"), r"frame 1: missing key 'transform_matrix'"),
    "null matrix": (_bad(frame_update={"transform_matrix": None}), r"frame 1: transform_matrix must be 4x4"),
    "3x4 matrix": (_bad(frame_update={"transform_matrix": np.eye(4)[:3].tolist()}), r"frame 1: .* must be 4x4"),
    "NaN matrix": (_bad(frame_update={"transform_matrix": [[float("nan")] * 4] * 4}), r"frame 1: .*non-finite"),
    "zero focal": (_bad({"fl_x": 0.0}), r"focal length must be positive"),
    "negative focal": (_bad(frame_update={"fl_y": -3.0}), r"frame 1: focal length must be positive"),
    "string focal": (_bad({"fl_x": "7"}), r"fl_x must be a finite number"),
    "dot-dot escape": (_bad(frame_update={"file_path": "../x.png"}), r"'\.\./x\.png' points outside the dataset"),
    "absolute escape": (_bad(frame_update={"file_path": "/etc/passwd"}), r"'/etc/passwd' points outside"),
    "sneaky escape": (_bad(frame_update={"file_path": "images/../../x.png"}), r"points outside"),
    "mask escape": (_bad(frame_update={"mask_path": "../../m.png"}), r"mask_path '\.\./\.\./m\.png' points out"),
    "missing image": (_bad(frame_update={"file_path": "images/no.png"}), r"frame 1: image 'images/no.png' does not"),
    "bad model": (_bad({"camera_model": "EQUIRECTANGULAR"}), r"camera_model 'EQUIRECTANGULAR' is not supported"),
    "null file_path": (_bad(frame_update={"file_path": None}), r"file_path must be a non-empty path string"),
    "no file_path": (_bad(frame_drop="file_path"), r"frame 1: missing key 'file_path'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_dataset_error_naming_the_file(tmp_path: Path, case: str) -> None:
    make_images(tmp_path, ["images/0.png", "images/1.png"])
    content, pattern = BAD_INPUTS[case]
    path = write_json(tmp_path / "transforms.json", content)
    with pytest.raises(DatasetError, match=pattern) as info:
        read_transforms(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_zero_frames_left_after_skipping_is_an_error(tmp_path: Path) -> None:
    meta = {"fl_x": 5.0, "w": W, "h": H, "frames": [{"file_path": "a.jpg", "transform_matrix": np.eye(4).tolist()}]}
    with pytest.raises(DatasetError, match=r"transforms\.json: no usable frames"):
        read_transforms(write_json(tmp_path / "transforms.json", meta))


def test_absolute_path_inside_the_folder_is_accepted(tmp_path: Path) -> None:
    make_images(tmp_path, ["images/0.png", "images/1.png"])
    meta = ns_meta()
    meta["frames"][0]["file_path"] = str(tmp_path / "images" / "0.png")
    d = read_transforms(write_json(tmp_path / "transforms.json", meta))
    assert d.frames[0].image_path == tmp_path / "images" / "0.png"
