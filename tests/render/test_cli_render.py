"""``nerfstage render`` end to end on the session's tiny run: decodable videos of exactly N frames, camera_path.json
saved byte-stably and rendered like the built-in path, 360 metadata, raw depth EXR, and bad input -> exit 2 with
no file left under the final name."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from nerfstage.app.cli import main
from nerfstage.render.paths import dumps_camera_path, read_camera_path
from nerfstage.render.spherical import read_spherical_metadata
from nerfstage.render.writers import read_exr


def cli(*args: str) -> int:
    """Run the CLI in-process; the exit code."""
    try:
        main([*map(str, args), "--quiet"] if args and args[0] == "render" else list(map(str, args)))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def video_frames(path) -> tuple[int, tuple[int, int]]:
    """(decoded frame count, (height, width)) read with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    return count, size


def test_orbit_video_has_exactly_n_decodable_frames(tiny_run, tmp_path):
    out = tmp_path / "orbit.mp4"
    assert cli("render", tiny_run.run_dir, "-o", out, "--fps", 6, "--seconds", 1, "--width", 40, "--height", 30,
               "--device", "cpu") == 0
    assert video_frames(out) == (6, (30, 40))
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(6.0)
    assert not list(tmp_path.glob(".*"))  # no temp file, no frame cache left behind


def test_dolly_zoom_and_spiral_videos_have_their_frames(tiny_run, tmp_path):
    for name in ("dolly-zoom", "spiral"):
        out = tmp_path / f"{name}.mp4"
        assert cli("render", tiny_run.run_dir, "-o", out, "--path", name, "--fps", 3, "--seconds", 1,
                   "--width", 32, "--height", 24, "--ease", "ease-in-out") == 0
        assert video_frames(out) == (3, (24, 32))


def test_saved_path_is_byte_stable_and_renders_the_same_frames(tiny_run, tmp_path):
    saved = tmp_path / "orbit.json"
    common = ["--fps", 3, "--seconds", 1, "--width", 32, "--height", 24]
    assert cli("render", tiny_run.run_dir, "-o", tmp_path / "builtin", "--save-path", saved, *common) == 0
    text = saved.read_text()
    assert dumps_camera_path(read_camera_path(saved)) == text
    doc = json.loads(text)
    assert len(doc["camera_path"]) == 3 and doc["render_width"] == 32 and doc["camera_type"] == "perspective"
    assert cli("render", tiny_run.run_dir, "-o", tmp_path / "from_file", "--path", saved) == 0
    for i in (1, 2, 3):
        a = cv2.imread(str(tmp_path / "builtin" / f"frame_0000{i}.png")).astype(int)
        b = cv2.imread(str(tmp_path / "from_file" / f"frame_0000{i}.png")).astype(int)
        assert np.abs(a - b).max() <= 1  # same rays up to float rounding of the stored matrices


def test_equirect_video_carries_spherical_metadata(tiny_run, tmp_path):
    out = tmp_path / "pano.mp4"
    assert cli("render", tiny_run.run_dir, "-o", out, "--camera", "equirectangular", "--height", 16, "--fps", 2,
               "--seconds", 1) == 0
    assert video_frames(out) == (2, (16, 32))
    assert read_spherical_metadata(out) is not None


def test_depth_exr_is_raw_float_in_dataset_units(tiny_run, tmp_path):
    out = tmp_path / "depth"
    assert cli("render", tiny_run.run_dir, "-o", out, "--output", "depth", "--format", "exr", "--fps", 1,
               "--seconds", 1, "--width", 32, "--height", 24) == 0
    channels, _ = read_exr(out / "frame_00001.exr")
    depth = channels["Z"]
    assert depth.shape == (24, 32) and depth.dtype == np.float32
    assert 1.0 < float(np.median(depth)) < 8.0  # metres: the synthetic room is 8 m across


def test_cubemap_six_files_and_npy_depth(tiny_run, tmp_path):
    out = tmp_path / "cube"
    assert cli("render", tiny_run.run_dir, "-o", out, "--camera", "cubemap", "--cubemap-layout", "six",
               "--height", 8, "--fps", 1, "--seconds", 1) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"frame_00001_{s}.png" for s in ("px", "nx", "py", "ny", "pz", "nz"))
    assert cv2.imread(str(out / "frame_00001_px.png")).shape == (8, 8, 3)
    assert cli("render", tiny_run.run_dir, "-o", tmp_path / "npy", "--output", "depth", "--format", "npy",
               "--fps", 1, "--seconds", 1, "--width", 16, "--height", 12) == 0
    assert np.load(tmp_path / "npy" / "frame_00001.npy").shape == (12, 16)


def _camera_path(**changes) -> dict:
    frame = {"camera_to_world": np.eye(4).ravel().tolist(), "fov": 50.0, "aspect": 4 / 3}
    doc = {"camera_type": "perspective", "render_width": 32, "render_height": 24, "fps": 2, "seconds": 1,
           "camera_path": [frame, frame]}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc, message",
    [
        (_camera_path(render_width=None), "render_width"),
        ({k: v for k, v in _camera_path().items() if k != "camera_path"}, "camera_path"),
        (_camera_path(camera_path=[{"camera_to_world": [float("nan")] * 16, "fov": 50.0}]), "NaN"),
        (_camera_path(camera_path=[]), "no frames"),
    ],
    ids=["missing-width", "missing-camera_path", "nan-matrix", "zero-frames"],
)
def test_bad_camera_path_exits_2_without_output(tiny_run, tmp_path, capsys, doc, message):
    bad = tmp_path / "camera_path.json"
    bad.write_text(json.dumps({k: v for k, v in doc.items() if v is not None}))
    out = tmp_path / "out.mp4"
    assert cli("render", tiny_run.run_dir, "-o", out, "--path", bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(bad) in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_unwritable_output_and_missing_checkpoint_exit_2(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli("render", tiny_run.run_dir, "-o", blocker / "out.mp4", "--fps", 1, "--seconds", 1) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(blocker) in err and "is a file" in err
    broken = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, broken)
    shutil.rmtree(broken / "checkpoints")
    out = tmp_path / "out.mp4"
    assert cli("render", broken, "-o", out) == 2
    assert "no checkpoints" in capsys.readouterr().err and not out.exists()
    assert cli("render", tiny_run.run_dir, "-o", tmp_path / "x.mov") == 2  # only .mp4 videos
    assert cli("render", tiny_run.run_dir) == 2  # nothing to do


def test_existing_output_needs_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    assert cli("render", tiny_run.run_dir, "-o", out, "--fps", 1, "--seconds", 1) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"


def test_keyframes_json_and_other_cameras_render(tiny_run, tmp_path):
    keyframes = tmp_path / "keys.json"
    keyframes.write_text(json.dumps([
        {"position": [0.5, 0.0, 0.1], "look_at": [0, 0, 0], "fov": 40},
        {"position": [0.0, 0.5, 0.1], "look_at": [0, 0, 0], "fov": 60},
        {"position": [-0.5, 0.0, 0.1], "look_at": [0, 0, 0]},
    ]))
    out = tmp_path / "keys.mp4"
    assert cli("render", tiny_run.run_dir, "-o", out, "--path", keyframes, "--fps", 2, "--seconds", 2,
               "--width", 16, "--height", 12) == 0
    assert video_frames(out) == (4, (12, 16))  # int(fps * duration) frames, as nerfstudio's spline export
    for camera in ("orthographic", "fisheye"):
        folder = tmp_path / camera
        assert cli("render", tiny_run.run_dir, "-o", folder, "--camera", camera, "--fps", 1, "--seconds", 1,
                   "--width", 16, "--height", 12) == 0
        assert cv2.imread(str(folder / "frame_00001.png")).shape == (12, 16, 3)
