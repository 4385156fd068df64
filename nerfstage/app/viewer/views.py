"""viser camera <-> ``world_from_cam`` and the render function of the progressive renderer.

viser gives a browser camera as ``wxyz`` + ``position`` with OpenCV camera axes (x right, y down, z forward) and
a vertical fov in radians; poses everywhere else in nerfstage are OpenGL camera-to-world (camera_path.json's
axes), switched with ``capture.dataset.convert_camera_axes`` (the one conversion).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from ...core.cameras import PerspectiveCamera
from ...core.geometry import convert_camera_axes
from ...render.image import ImageOptions, render_image
from .progressive import RenderCancelled, View


def world_from_cam_of(wxyz, position) -> np.ndarray:  # -> [4, 4] OpenGL axes
    """The OpenGL camera-to-world of a viser camera (``wxyz`` [4], ``position`` [3], OpenCV axes)."""
    w, x, y, z = (float(v) for v in wxyz)
    pose_cv = np.eye(4)
    pose_cv[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
    pose_cv[:3, 3] = np.asarray(position, dtype=np.float64)
    return convert_camera_axes(pose_cv)


def viser_pose_of(world_from_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz [4], position [3]) for viser (OpenCV axes) of an OpenGL camera-to-world [4, 4]."""
    pose_cv = convert_camera_axes(np.asarray(world_from_cam, dtype=np.float64))
    x, y, z, w = Rotation.from_matrix(pose_cv[:3, :3]).as_quat()
    return np.array([w, x, y, z]), pose_cv[:3, 3].copy()


def view_of_camera(camera) -> View:
    """The View of a viser ``CameraHandle`` (its pose, vertical fov and canvas aspect)."""
    aspect = float(camera.aspect) if camera.aspect and math.isfinite(camera.aspect) else 16.0 / 9.0
    return View(world_from_cam_of(camera.wxyz, camera.position), math.degrees(float(camera.fov)), aspect)


def model_render_fn(model, lock: threading.Lock | None, chunk: int, background=(1.0, 1.0, 1.0)) -> Callable:
    """A ``RenderFn`` drawing ``model`` (a NerfModel) through ``render.image.render_image`` in chunks of
    ``chunk`` rays, cancellable between chunks. With ``lock`` (a trainer's ``model_lock``) the frame is drawn
    while training runs: the lock is held for one chunk at a time (training steps run between chunks) and the
    model's train/eval mode is restored after every chunk."""
    options = ImageOptions(max_rays_per_chunk=chunk, background=tuple(background))
    guard = lock if lock is not None else threading.Lock()
    share = lock is not None

    def render(view: View, width: int, height: int, cancelled: Callable[[], bool]) -> np.ndarray:
        camera = PerspectiveCamera.from_fov(width, height, view.fov_deg)
        with guard:
            was_training = model.training

            def between_chunks(_rays: int) -> None:
                if cancelled():
                    raise RenderCancelled()
                if share:  # let a training step run, then render the next chunk in eval mode again
                    model.train(was_training)
                    guard.release()
                    time.sleep(0.002)
                    guard.acquire()
                    model.eval()

            try:
                out = render_image(model, camera, view.world_from_cam, ("rgb",), options, progress=between_chunks)
            finally:
                model.train(was_training)
        return out["rgb"]

    return render
