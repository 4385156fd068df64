"""Tracked-camera files: the examples parse to the same move, conventions (quaternion, yaw/pitch/roll, lens),
overscan, and malformed files name the file, row and column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nerfstage.core.errors import InputError
from nerfstage.export.track import apply_overscan, euler_rotation, read_track, to_normalized

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEADER = "frame,x,y,z,qw,qx,qy,qz,fov_y_deg,width,height"


def write(tmp_path: Path, text: str, name: str = "track.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_examples_give_one_frame_per_row_and_agree():
    csv_frames = read_track(EXAMPLES / "track_example.csv")
    json_frames = read_track(EXAMPLES / "track_example.json")
    rows = len((EXAMPLES / "track_example.csv").read_text().strip().splitlines()) - 1
    assert len(csv_frames) == len(json_frames) == rows == 12
    assert [f.frame for f in csv_frames] == list(range(1001, 1013))
    for a, b in zip(csv_frames, json_frames, strict=True):
        np.testing.assert_allclose(a.world_from_cam, b.world_from_cam, atol=1e-6)
        assert a.fov_y_deg == pytest.approx(b.fov_y_deg, abs=1e-9) and (a.width, a.height) == (1920, 1080)
    first, last = csv_frames[0], csv_frames[-1]
    np.testing.assert_allclose(last.world_from_cam[:3, 3] - first.world_from_cam[:3, 3], [1.0, 0.0, 0.0], atol=1e-6)
    view = -first.world_from_cam[:3, 2]  # OpenGL: the camera looks along its -Z
    np.testing.assert_allclose(view, [0.0, math.cos(math.radians(5)), -math.sin(math.radians(5))], atol=1e-6)
    # 35 mm on a 36.70 mm wide sensor: horizontal fov 2 atan(36.7 / 70) = 55.35 degrees
    assert first.fov_x_deg == pytest.approx(math.degrees(2 * math.atan(36.7 / 70.0)), abs=1e-9)
    assert first.timecode == "01:00:00:00"


def test_overscan_grows_size_and_fov_keeping_pixel_size():
    frame = read_track(EXAMPLES / "track_example.csv")[0]
    over = read_track(EXAMPLES / "track_example.csv", overscan_percent=10.0)[0]
    assert (over.width, over.height) == (1920 + 2 * 96, 1080 + 2 * 54)
    ratio = math.tan(math.radians(over.fov_y_deg) / 2) / math.tan(math.radians(frame.fov_y_deg) / 2)
    assert ratio == pytest.approx(1188 / 1080, rel=1e-12)
    assert over.focal_px == pytest.approx(frame.focal_px, rel=1e-12) and over.overscan_percent == 10.0
    k = over.intrinsics()
    assert (k.fx, k.cx, k.cy, k.width) == (pytest.approx(frame.focal_px), 1056.0, 594.0, 2112)
    with pytest.raises(InputError, match="overscan"):
        apply_overscan(frame, -5.0)


def test_yaw_pitch_roll_conventions():
    def view(r):
        return -r[:, 2]

    np.testing.assert_allclose(view(euler_rotation(0, 0, 0)), [0, 1, 0], atol=1e-12)  # rest: looks along +Y
    np.testing.assert_allclose(view(euler_rotation(90, 0, 0)), [-1, 0, 0], atol=1e-12)  # yaw left
    np.testing.assert_allclose(view(euler_rotation(0, 30, 0)), [0, math.cos(math.pi / 6), 0.5], atol=1e-12)
    up = euler_rotation(0, 0, 10)[:, 1]
    assert up[0] > 0.17 and up[2] > 0.98  # positive roll: the camera's top moves right (+X)
    r = euler_rotation(37, -12, 5)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def test_quaternion_is_camera_to_world_with_scalar_first(tmp_path):
    s = math.sqrt(0.5)  # 90 degrees about +X: the camera's -Z (view) turns to +Y, its +Y (up) to +Z
    frames = read_track(write(tmp_path, f"{HEADER}\n7,1,2,3,{s},{s},0,0,40,64,48\n"))
    np.testing.assert_allclose(-frames[0].world_from_cam[:3, 2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(frames[0].world_from_cam[:3, 3], [1, 2, 3])
    assert frames[0].fov_y_deg == 40.0 and frames[0].frame == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frame,x,y,z,qx,qy,qz,fov_y_deg,width,height\n1,0,0,0,0,0,0,40,64,48\n", r"line 2 column 'qw': missing"),
        (f"{HEADER}\n1,0,0,0,1,0,0,0,40,64,48\n2,0,nan,0,1,0,0,0,40,64,48\n", r"line 3 column 'y': 'nan' is not"),
        (f"{HEADER}\n1,0,0,0,0.5,0,0,0,40,64,48\n", r"column 'qw': quaternion .* norm 0\.5"),
        (f"{HEADER}\n1,0,0,abc,1,0,0,0,40,64,48\n", r"line 2 column 'z': 'abc' is not a number"),
        (f"{HEADER}\n1,0,0,0,1,0,0,0,190,64,48\n", r"column 'fov_y_deg': 190"),
        (f"{HEADER}\n1,0,0,0,1,0,0,0,40,64.5,48\n", r"column 'width': 64.5 is not an integer"),
        (f"{HEADER}\n1,0,0,0,1,0,0,0,40,64,48\n1,0,0,0,1,0,0,0,40,64,48\n", r"line 3 column 'frame': frame 1 repeats"),
        (f"{HEADER},focal_mm\n1,0,0,0,1,0,0,0,40,64,48,35\n", r"lens either as fov_y_deg or as focal_mm"),
        (f"{HEADER},fov\n1,0,0,0,1,0,0,0,40,64,48,3\n", r"column 'fov': unknown column"),
        ("frame,x,y,z,qw,qx,qy,qz,focal_mm,width,height\n1,0,0,0,1,0,0,0,35,64,48\n", r"needs sensor_width_mm"),
        ("", r"empty track file"),
        (f"{HEADER}\n", r"no frames"),
    ],
)
def test_malformed_csv_names_file_row_and_column(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as error:
        read_track(path)
    assert str(path) in str(error.value)


def test_malformed_json_and_extension(tmp_path):
    with pytest.raises(InputError, match=r"frames\[1\] field 'yaw_deg': missing field"):
        read_track(write(tmp_path, '{"width": 64, "height": 48, "fov_y_deg": 40, "frames": ['
                         '{"frame": 1, "x": 0, "y": 0, "z": 0, "yaw_deg": 0, "pitch_deg": 0, "roll_deg": 0},'
                         '{"frame": 2, "x": 0, "y": 0, "z": 0, "pitch_deg": 0, "roll_deg": 0}]}', "t.json"))
    with pytest.raises(InputError, match="not valid JSON"):
        read_track(write(tmp_path, '{"frames": [', "t.json"))
    with pytest.raises(InputError, match='"frames" list'):
        read_track(write(tmp_path, "[]", "t.json"))
    with pytest.raises(InputError, match=r"unknown track file extension '\.txt'"):
        read_track(write(tmp_path, HEADER, "t.txt"))


def test_poses_move_into_the_normalised_frame():
    frames = read_track(EXAMPLES / "track_example.csv")
    transform = np.concatenate([euler_rotation(30, 10, 0), [[0.1], [-0.2], [0.3]]], axis=1)  # [3, 4] rigid
    moved = to_normalized(frames, transform, 0.25)
    for before, after in zip(frames, moved, strict=True):
        centre = 0.25 * (transform[:, :3] @ before.world_from_cam[:3, 3] + transform[:, 3])
        np.testing.assert_allclose(after.world_from_cam[:3, 3], centre, atol=1e-12)
        view = transform[:, :3] @ -before.world_from_cam[:3, 2]  # directions turn with the frame
        np.testing.assert_allclose(-after.world_from_cam[:3, 2], view, atol=1e-12)
        assert after.fov_y_deg == before.fov_y_deg
