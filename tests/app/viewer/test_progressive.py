"""Progressive rendering: resolution levels, refinement order, cancellation on camera moves, the model render
function (cancellable between chunks, same pixels as ``render_image``), and viser <-> OpenGL camera poses."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nerfstage.core.errors import ConfigError
from nerfstage.render.paths import look_at
from nerfstage.app.viewer import ProgressiveRenderer, RenderCancelled, View, frame_size, resolution_levels

VIEW = View(np.eye(4), 50.0, 4.0 / 3.0)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_levels_and_frame_sizes():
    assert resolution_levels(512) == [64, 128, 256, 512]
    assert resolution_levels(300) == [64, 128, 256, 300]
    assert resolution_levels(100, start=64, factor=4) == [64, 100]
    assert resolution_levels(32) == [32]
    assert frame_size(64, 16 / 9) == (114, 64) and frame_size(3, 0.1) == (1, 3)
    with pytest.raises(ConfigError):
        resolution_levels(0)
    with pytest.raises(ConfigError):
        frame_size(64, float("nan"))


def test_refines_level_by_level_then_idles():
    rendered, shown = [], []

    def render(view, width, height, cancelled):
        rendered.append((width, height))
        return np.full((height, width, 3), 0.5, np.float32)

    renderer = ProgressiveRenderer(render, lambda rgb, level, h: shown.append((level, rgb.shape)),
                                   [16, 32, 64], settle_s=0.01)
    try:
        renderer.request(VIEW)
        wait_until(lambda: renderer.last_level == 2)
        time.sleep(0.05)
        assert rendered == [(21, 16), (43, 32), (85, 64)]  # aspect 4:3 at every level, coarse to fine
        assert shown == [(0, (16, 21, 3)), (1, (32, 43, 3)), (2, (64, 85, 3))] and not renderer.busy
        renderer.request(VIEW)  # a camera move starts over at the coarsest level
        wait_until(lambda: renderer.frames_shown == 6)
        assert [h for _, h in rendered[3:]] == [16, 32, 64]
        renderer.request(VIEW, start_level=2)  # a training refresh redraws the finest level only
        wait_until(lambda: renderer.frames_shown == 7)
        assert rendered[6:] == [(85, 64)] and shown[-1][0] == 2
    finally:
        renderer.stop()


def test_camera_move_cancels_the_frame_in_flight():
    started, shown = threading.Event(), []
    poses = {"first": np.eye(4), "second": look_at((1.0, 0.0, 0.0), (0.0, 0.0, 0.0))}

    def render(view, width, height, cancelled):
        if height == 64 and view.world_from_cam is poses["first"]:  # the slow full-resolution frame
            started.set()
            while not cancelled():  # a chunked render polls between chunks
                time.sleep(0.001)
            raise RenderCancelled()
        return np.zeros((height, width, 3), np.float32)

    renderer = ProgressiveRenderer(render, lambda rgb, level, h: shown.append(h), [16, 64], settle_s=0.0)
    try:
        renderer.request(View(poses["first"], 50.0, 1.0))
        assert started.wait(10.0)
        renderer.request(View(poses["second"], 50.0, 1.0))
        wait_until(lambda: renderer.frames_shown == 3)
        assert shown == [16, 16, 64] and renderer.frames_cancelled == 1
    finally:
        renderer.stop()


def test_viser_pose_round_trip_and_axes():
    from nerfstage.app.viewer.views import viser_pose_of, world_from_cam_of

    pose = look_at((1.0, -2.0, 0.5), (0.0, 0.3, 0.0))
    wxyz, position = viser_pose_of(pose)
    assert np.allclose(world_from_cam_of(wxyz, position), pose, atol=1e-12)
    identity = world_from_cam_of((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0))  # viser: OpenCV axes, looking along +z
    assert np.allclose(identity[:3, :3], np.diag([1.0, -1.0, -1.0]))  # OpenGL: looks along -z_cam = +z world


def test_model_render_function_matches_render_image_and_cancels(tiny_run):
    from nerfstage.nerf.run import load_run
    from nerfstage.core.cameras import PerspectiveCamera
    from nerfstage.render.image import ImageOptions, render_image
    from nerfstage.app.viewer.views import model_render_fn

    run = load_run(tiny_run.run_dir, device="cpu")
    pose = run.world_from_cams[3]
    render = model_render_fn(run.model, threading.Lock(), chunk=256)
    rgb = render(View(pose, 40.0, 4.0 / 3.0), 32, 24, lambda: False)
    expected = render_image(run.model, PerspectiveCamera.from_fov(32, 24, 40.0), pose, ("rgb",), ImageOptions())
    assert rgb.shape == (24, 32, 3) and np.abs(rgb - expected["rgb"]).max() < 1e-5
    assert rgb.std() > 0.02  # the scene, not a flat background
    calls = []
    with pytest.raises(RenderCancelled):
        render(View(pose, 40.0, 4.0 / 3.0), 32, 24, lambda: calls.append(1) or len(calls) > 1)
    assert len(calls) == 2  # stopped after the second 256-ray chunk of three
    run.model.train()
    render(View(pose, 40.0, 1.0), 8, 8, lambda: False)
    assert run.model.training  # a training model gets its mode back
