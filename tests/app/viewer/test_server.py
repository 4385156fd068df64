"""The viewer without a browser: it binds to 127.0.0.1, serves its page, and its Save / Load / Render video
buttons write a camera_path.json and a video with the render stage's own code (``nerfstage render``'s output
for the same file is identical)."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def video_frames(file) -> np.ndarray:
    import imageio.v3 as iio

    return np.stack(list(iio.imiter(file)))


def test_buttons_save_load_and_render_like_nerfstage_render(tiny_run, tmp_path):
    from nerfstage.render.paths import read_camera_path
    from nerfstage.render.pipeline import RenderOptions, render_path
    from nerfstage.render.plan import ShotOptions
    from nerfstage.app.viewer.server import ViewerOptions, serve_run

    viewer = serve_run(tiny_run.run_dir, ViewerOptions(port=free_port(), max_height=64), device="cpu")
    try:
        assert viewer.server.get_host() == "127.0.0.1"
        assert b"<html" in urllib.request.urlopen(viewer.url, timeout=10).read().lower()
        editor, gui = viewer.editor, viewer.gui
        editor.set_options(width=16, height=12, fps=4.0, default_transition_sec=1.0)
        editor.add(viewer.run.world_from_cams[0], 50.0)
        editor.add(viewer.run.world_from_cams[8], 40.0)
        saved = gui.save_path(tmp_path / "paths" / "camera_path.json")
        editor.delete(0)
        gui.load_path(tmp_path / "paths" / "camera_path.json")
        assert len(editor) == 2 and list(gui.selected.options) == ["1", "2"]
        assert gui.path_info.content.startswith("2 keyframes, 4 frames")
        assert (gui.width.value, gui.height.value, gui.fps.value) == (16, 12, 4.0)
        thread = gui.start_render(tmp_path / "viewer.mp4")
        thread.join(timeout=300)
        assert not thread.is_alive() and gui.progress.value == 100.0
        assert gui.render_status.content.startswith("Wrote 4 frames 16x12")
    finally:
        viewer.stop()
    assert np.array_equal(read_camera_path(tmp_path / "paths" / "camera_path.json").world_from_cams,
                          saved.world_from_cams)
    from nerfstage.nerf.run import load_run

    direct = render_path(load_run(tiny_run.run_dir, device="cpu"), tmp_path / "direct.mp4",
                         ShotOptions(path=str(tmp_path / "paths" / "camera_path.json")), RenderOptions(progress=False))
    ours, theirs = video_frames(tmp_path / "viewer.mp4"), video_frames(direct.output)
    assert ours.shape == theirs.shape == (4, 12, 16, 3) and np.array_equal(ours, theirs)
    assert ours.std() > 3.0  # frames of the scene, not blank


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("192.168.1.20", False), ("myhost", False)])
def test_open_hosts_warn(host, loopback, capsys):
    from nerfstage.app.cli_view import is_loopback, warn_if_open

    assert is_loopback(host) == loopback
    warn_if_open(host)
    assert ("warning: the viewer listens on" in capsys.readouterr().err) == (not loopback)
