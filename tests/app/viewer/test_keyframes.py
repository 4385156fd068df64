"""The viewer's keyframe editor: add / move / delete, per-keyframe fov and duration, save / load through the
render stage's camera_path.json code (byte-stable), and the previewed path is the one ``render_path`` renders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nerfstage.core.errors import ConfigError
from nerfstage.render.paths import keyframe_path, look_at, read_camera_path
from nerfstage.app.viewer import KeyframeEditor, PathOptions

A = look_at((2.0, 0.0, 0.5), (0.0, 0.0, 0.0))
B = look_at((0.0, 2.0, 0.7), (0.0, 0.0, 0.0))
C = look_at((-2.0, 0.0, 0.5), (0.0, 0.0, 0.1))


def editor_abc(**options) -> KeyframeEditor:
    editor = KeyframeEditor(PathOptions(width=32, height=18, fps=10.0, **options))
    for pose, fov in ((A, 50.0), (B, 40.0), (C, 60.0)):
        editor.add(pose, fov)
    return editor


def test_add_move_delete_keep_order_and_poses():
    editor = editor_abc()
    assert len(editor) == 3 and [k.fov_deg for k in editor.keyframes] == [50.0, 40.0, 60.0]
    assert editor.add(C, 30.0, index=1) == 1  # insert after the first keyframe
    assert [k.fov_deg for k in editor.keyframes] == [50.0, 30.0, 40.0, 60.0]
    editor.move(1, A, 45.0)
    assert np.array_equal(editor.keyframes[1].world_from_cam, A) and editor.keyframes[1].fov_deg == 45.0
    editor.delete(0)
    assert [k.fov_deg for k in editor.keyframes] == [45.0, 40.0, 60.0]
    with pytest.raises(ConfigError, match="keyframe 7"):
        editor.delete(7)
    with pytest.raises(ConfigError, match="fov"):
        editor.add(A, 190.0)


def test_path_matches_keyframe_spline_and_per_keyframe_fields():
    editor = editor_abc()
    path = editor.camera_path()
    assert len(path) == int(10.0 * 4.0) and path.duration == pytest.approx(4.0)  # 2 transitions x 2 s
    reference = keyframe_path(editor.keyframes, 32, 18, 10.0, 2.0)
    assert np.allclose(path.world_from_cams, reference.world_from_cams, atol=0.0)
    assert np.allclose(path.world_from_cams[0], A) and path.fov_y_deg[0] == pytest.approx(50.0)
    editor.set_duration(2, 0.5)
    editor.set_fov(1, 20.0)
    path = editor.camera_path()
    assert path.duration == pytest.approx(2.5) and len(path) == 25
    assert path.fov_y_deg[20] == pytest.approx(20.0)  # frame 20 = t 2.0 s = keyframe 1
    editor.set_duration(2, 0.0)  # back to the default transition
    assert editor.camera_path().duration == pytest.approx(4.0)
    editor.set_options(is_cycle=True, tension=0.5)
    looped = editor.camera_path()
    assert looped.duration == pytest.approx(6.0) and looped.is_cycle and looped.smoothness == 0.5
    with pytest.raises(ConfigError, match="at least 2"):
        KeyframeEditor(keyframes=editor.keyframes[:1]).camera_path()


def test_save_load_round_trips_byte_for_byte(tmp_path):
    editor = editor_abc(tension=0.25)
    editor.set_duration(1, 1.5)
    first = tmp_path / "a" / "camera_path.json"
    saved = editor.save(first)
    doc = json.loads(first.read_text())
    assert len(doc["keyframes"]) == 3 and len(doc["camera_path"]) == len(saved) == 35
    assert doc["smoothness_value"] == 0.25 and doc["keyframes"][1]["override_transition_sec"] == 1.5
    again = KeyframeEditor()
    again.load(first)
    assert again.options == editor.options
    again.save(tmp_path / "b.json")
    assert (tmp_path / "b.json").read_bytes() == first.read_bytes()
    # an edit re-splines the loaded keyframes exactly as the original editor did
    again.set_fov(0, 50.0)
    assert np.array_equal(again.camera_path().world_from_cams, saved.world_from_cams)
    assert np.allclose(read_camera_path(first).world_from_cams, saved.world_from_cams, atol=1e-15)


def test_loading_needs_keyframes(tmp_path):
    editor = editor_abc()
    path = editor.camera_path()
    path.keyframes = []
    from nerfstage.render.paths import write_camera_path

    write_camera_path(tmp_path / "no_keys.json", path)
    with pytest.raises(ConfigError, match="no_keys.json"):
        KeyframeEditor().load(tmp_path / "no_keys.json")


def test_preview_is_what_render_path_renders(tiny_run, tmp_path):
    """Save a path in the editor, render it with ``nerfstage render``'s code; every frame equals a render of the
    preview pose the viewer shows for that frame."""
    import imageio.v3 as iio

    from nerfstage.nerf.run import load_run
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image
    from nerfstage.render.pipeline import RenderOptions, render_path
    from nerfstage.render.plan import ShotOptions

    run = load_run(tiny_run.run_dir, device="cpu")
    editor = KeyframeEditor(PathOptions(width=16, height=12, fps=2.0, default_transition_sec=1.0))
    for index, fov in ((0, 45.0), (6, 55.0), (12, 50.0)):
        editor.add(run.world_from_cams[index], fov)
    file = tmp_path / "camera_path.json"
    editor.save(file)
    result = render_path(run, tmp_path / "frames", ShotOptions(path=str(file)), RenderOptions(progress=False))
    assert result.frames == 4 and (result.width, result.height) == (16, 12)
    for i, frame_file in enumerate(sorted((tmp_path / "frames").glob("*.png"))):
        pose, fov = editor.preview(i)
        assert np.allclose(pose, read_camera_path(file).world_from_cams[i], atol=1e-12)
        rgb = render_image(run.model, PerspectiveCamera.from_fov(16, 12, fov), pose, ("rgb",), ImageOptions())["rgb"]
        expected = np.round(np.clip(rgb, 0, 1) * 255).astype(np.int16)
        assert np.abs(iio.imread(frame_file)[..., :3].astype(np.int16) - expected).max() <= 1
