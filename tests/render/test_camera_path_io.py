"""nerfstudio camera_path.json: byte-stable round trips, a hand-written nerfstudio example, and bad files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nerfstage.core.errors import ConfigError, InputError
from nerfstage.render.paths import (
    PathSettings,
    dumps_camera_path,
    keyframe_path,
    look_at,
    orbit_path,
    parse_camera_path,
    read_camera_path,
    write_camera_path,
)
from nerfstage.render.paths.base import Keyframe

# Written by hand the way nerfstudio's viewer (render_panel.py `_write_json`) writes it: json.dump with default
# separators, one line, keys in its order, matrices flattened row-major, floats from numpy (`1.0`, not `1`).
M0 = [1.0, 0.0, 0.0, 0.0, 0.0, 0.8660254037844387, -0.49999999999999994, -1.5, 0.0, 0.49999999999999994,
      0.8660254037844387, 0.8, 0.0, 0.0, 0.0, 1.0]
M1 = [0.7071067811865476, -0.35355339059327373, 0.6123724356957945, 1.2, 0.7071067811865475, 0.3535533905932738,
      -0.6123724356957946, -1.2, 0.0, 0.8660254037844386, 0.5, 0.8, 0.0, 0.0, 0.0, 1.0]
NERFSTUDIO_EXAMPLE = (
    '{"default_fov": 75.0, "default_transition_sec": 2.0, "keyframes": ['
    '{"matrix": ' + json.dumps(M0) + ', "fov": 75.0, "aspect": 1.7777777777777777, '
    '"override_transition_enabled": false, "override_transition_sec": null}, '
    '{"matrix": ' + json.dumps(M1) + ', "fov": 50.0, "aspect": 1.7777777777777777, '
    '"override_transition_enabled": true, "override_transition_sec": 1.5}], '
    '"camera_type": "perspective", "render_height": 1080, "render_width": 1920, "fps": 30.0, "seconds": 0.1, '
    '"is_cycle": false, "smoothness_value": 0.0, "camera_path": ['
    '{"camera_to_world": ' + json.dumps(M0) + ', "fov": 75.0, "aspect": 1.7777777777777777}, '
    '{"camera_to_world": ' + json.dumps(M1) + ', "fov": 62.49999999999999, "aspect": 1.7777777777777777}, '
    '{"camera_to_world": ' + json.dumps(M1) + ', "fov": 50.0, "aspect": 1.7777777777777777}]}'
)


def test_nerfstudio_example_reads_and_rewrites_byte_for_byte(tmp_path):
    source = tmp_path / "camera_path.json"
    source.write_text(NERFSTUDIO_EXAMPLE)
    path = read_camera_path(source)
    assert len(path) == 3 and (path.width, path.height) == (1920, 1080) and path.camera_type == "perspective"
    assert path.world_from_cams[0, :3, 3].tolist() == [0.0, -1.5, 0.8]  # row-major: translation in the last column
    assert path.fov_y_deg.tolist() == [75.0, 62.49999999999999, 50.0]
    assert path.video_fps() == pytest.approx(30.0)  # ns-render: frames / seconds
    assert len(path.keyframes) == 2 and path.keyframes[1].override_transition_sec == 1.5
    out = write_camera_path(tmp_path / "again.json", path)
    assert out.read_bytes() == source.read_bytes()


def test_keeps_number_spellings_unknown_keys_and_time_fields():
    doc = json.loads(NERFSTUDIO_EXAMPLE)
    doc["fps"], doc["render_width"] = 30, 1920.0
    doc["default_time"] = 0.5  # nerfstudio writes it for dynamic scenes, after default_fov
    doc = {"default_fov": doc.pop("default_fov"), "default_time": doc.pop("default_time"), **doc}
    for frame in doc["camera_path"]:
        frame["render_time"] = 0.25
    doc["crop"] = {"crop_center": [0.0, 0.0, 0.0], "crop_scale": [1.0, 1.0, 1.0], "crop_rot": [0.0, 0.0, 0.0],
                   "crop_bg_color": {"r": 0, "g": 0, "b": 0}}
    text = json.dumps(doc)
    assert dumps_camera_path(parse_camera_path(json.loads(text))) == text


def test_built_paths_round_trip_and_use_nerfstudio_keys(tmp_path):
    orbit = orbit_path(PathSettings(640, 360, fps=24, seconds=1.0, fov_deg=55.0), radius=2.0, height=0.5)
    first = write_camera_path(tmp_path / "orbit.json", orbit)
    doc = json.loads(first.read_text())
    assert list(doc) == ["default_fov", "default_transition_sec", "keyframes", "camera_type", "render_height",
                         "render_width", "fps", "seconds", "is_cycle", "smoothness_value", "camera_path"]
    assert list(doc["camera_path"][0]) == ["camera_to_world", "fov", "aspect"]
    assert len(doc["camera_path"]) == 24 and doc["camera_path"][5]["fov"] == 55.0
    assert doc["camera_path"][5]["aspect"] == 640 / 360 and "\n" not in first.read_text()
    again = read_camera_path(first)
    assert np.array_equal(again.world_from_cams, orbit.world_from_cams)  # shortest-repr floats: exact
    second = write_camera_path(tmp_path / "orbit2.json", again)
    assert second.read_bytes() == first.read_bytes()
    keys = [Keyframe(look_at([2, 0, 0.5], [0, 0, 0]), 50.0), Keyframe(look_at([0, 2, 0.5], [0, 0, 0]), 40.0)]
    spline = keyframe_path(keys, 320, 240, fps=10, default_transition_sec=1.0)
    kdoc = json.loads(dumps_camera_path(spline))
    assert list(kdoc["keyframes"][0]) == ["matrix", "fov", "aspect", "override_transition_enabled",
                                          "override_transition_sec"]
    assert kdoc["seconds"] == 1.0 and len(kdoc["camera_path"]) == 10
    assert dumps_camera_path(parse_camera_path(kdoc)) == dumps_camera_path(spline)


def test_write_refuses_to_overwrite_and_reports_unwritable_places(tmp_path):
    orbit = orbit_path(PathSettings(64, 48, fps=5, seconds=1.0))
    target = write_camera_path(tmp_path / "p.json", orbit)
    with pytest.raises(InputError, match="already exists"):
        write_camera_path(target, orbit)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="file"):
        write_camera_path(blocker / "p.json", orbit)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "p.json"]  # no temp file left behind


def _broken(mutate) -> str:
    doc = json.loads(NERFSTUDIO_EXAMPLE)
    mutate(doc)
    return json.dumps(doc)


BAD_FILES = {
    "missing render_width": (_broken(lambda d: d.pop("render_width")), "missing field 'render_width'"),
    "missing camera_path": (_broken(lambda d: d.pop("camera_path")), "'camera_path' is missing"),
    "zero frames": (_broken(lambda d: d.update(camera_path=[])), "'camera_path' has no frames"),
    "missing matrix": (_broken(lambda d: d["camera_path"][1].pop("camera_to_world")),
                       r"camera_path\[1\]: missing field 'camera_to_world'"),
    "nan matrix": (_broken(lambda d: d["camera_path"][2]["camera_to_world"].__setitem__(5, math.nan)),
                   r"camera_path\[2\].camera_to_world: holds NaN"),
    "not 4x4": (_broken(lambda d: d["camera_path"][0].update(camera_to_world=M0[:12])), "expected a 4x4 matrix"),
    "missing fov": (_broken(lambda d: d["camera_path"][0].pop("fov")), r"camera_path\[0\]: missing field 'fov'"),
    "bad camera_type": (_broken(lambda d: d.update(camera_type="orthographic")), "camera_type='orthographic'"),
    "negative seconds": (_broken(lambda d: d.update(seconds=-1)), "'seconds' must be a positive number"),
    "nan keyframe": (_broken(lambda d: d["keyframes"][0]["matrix"].__setitem__(0, math.inf)),
                     r"keyframes\[0\].matrix: holds NaN or infinite"),
    "not json": ('{"camera_path": [', "not a readable JSON"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_camera_path_files_name_file_and_field(tmp_path, case):
    text, message = BAD_FILES[case]
    file = tmp_path / "bad_path.json"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_camera_path(file)
    assert str(file) in str(info.value) and "\n" not in str(info.value) and info.value.exit_code == 2


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_camera_path(tmp_path / "nope.json")


def test_equirectangular_frames_may_omit_fov():
    doc = json.loads(_broken(lambda d: d.update(camera_type="equirectangular")))
    for frame in doc["camera_path"]:
        frame.pop("fov")
    path = parse_camera_path(doc)
    assert path.camera_type == "equirectangular" and path.camera(0).width == 1920
