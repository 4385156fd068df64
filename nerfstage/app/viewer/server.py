"""The running viewer: a viser server, one progressive render thread per browser, the editor GUI.

``serve_run`` shows a trained run (``nerfstage view``); ``TrainingViewer`` is a ``train(callback=...)`` hook that
shows a run while it trains (``nerfstage train --viewer``): the field is drawn between optimisation steps under
the trainer's ``model_lock`` and redrawn every ``refresh_s`` seconds, so the image improves as steps run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...nerf.run import load_run
from ...render.plan import look_at_center
from .gui import build_gui
from .keyframes import KeyframeEditor, PathOptions
from .progressive import ProgressiveRenderer, resolution_levels
from .scene import SceneInfo, add_scene, scene_of_run
from .splats import NERF_MODE, find_splats, viser_splats
from .views import model_render_fn, view_of_camera, viser_pose_of


@dataclass(frozen=True)
class ViewerOptions:
    """Where the viewer listens and how it renders."""

    host: str = "127.0.0.1"
    """Interface to bind (127.0.0.1: this machine only; 0.0.0.0: every interface)."""
    port: int = 7007
    """TCP port of the web page."""
    max_height: int = 512
    """Height in pixels of the finest progressive level (the browser's aspect sets the width)."""
    start_height: int = 64
    """Height in pixels of the first, fastest level drawn while the camera moves."""
    chunk: int = 4096
    """Rays rendered between two cancellation checks (and, while training, between two releases of the
    trainer's lock): an interactivity setting, far below the memory budget ``MAX_RAYS_PER_CHUNK``."""
    camera_path: Path | None = None
    """Default file of the "Save path" / "Load path" buttons."""
    video: Path | None = None
    """Default file of the "Render video" button."""
    splats: Path | None = None
    """Gaussian splats (.ply / .spz / .glb, dataset frame) drawn in real time; None = the run's
    ``export/scene.*`` when there is one (``viewer.splats.find_splats``)."""


class Viewer:
    """A viser server showing a scene and a field; ``run`` (a LoadedRun) enables the "Render video" button;
    ``splats`` (a splat file) adds the splats, shown in real time, with the field's render as a toggle."""

    def __init__(self, info: SceneInfo, render_fn, options: ViewerOptions, run=None, run_dir: Path | None = None,
                 splats: Path | None = None):
        import viser  # heavy: viser web server (only when a viewer starts)

        self.info, self.render_fn, self.options, self.run = info, render_fn, options, run
        self.run_dir = Path(run_dir) if run_dir is not None else (Path(run.run_dir) if run is not None else None)
        self.levels = resolution_levels(options.max_height, options.start_height)
        # damaged splats are refused before the server starts (no banner, no port taken)
        arrays = viser_splats(Path(splats), run) if splats is not None and run is not None else None
        self.server = viser.ViserServer(host=options.host, port=options.port, label="nerfstage", verbose=False)
        self.server.scene.set_up_direction("+z")
        self.live = True
        self.frames_shown = 0
        self.last_frame = (0, 0, -1)  # (width, height, level)
        self._renderers: dict[int, ProgressiveRenderer] = {}
        self._lock = threading.Lock()
        self.editor = KeyframeEditor(PathOptions(*default_size(info)))
        self._cameras = add_scene(self.server, info)
        self._initial_camera()
        self.splats = None
        self.splat_count = 0
        if arrays is not None:
            self.splat_count = len(arrays["centers"])
            self.splats = self.server.scene.add_gaussian_splats("/splats", **arrays)
            self.live = False  # the splats first; the field's render is the toggle

        self.gui = build_gui(self)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.server.get_port()}"

    def _initial_camera(self) -> None:
        cams = self.info.world_from_cams[self.info.train_indices] if self.info.train_indices else \
            self.info.world_from_cams
        if len(cams) == 0:
            return
        target = look_at_center(cams) if len(cams) > 1 else cams[0][:3, 3] - cams[0][:3, 2]  # [3]
        self.server.initial_camera.position = tuple(target + 1.6 * (cams[0][:3, 3] - target))  # behind camera 0
        self.server.initial_camera.look_at = tuple(target)
        self.server.initial_camera.up = (0.0, 0.0, 1.0)

    def _connect(self, client) -> None:
        renderer = ProgressiveRenderer(self.render_fn, lambda rgb, level, h: self._show(client, rgb, level),
                                       self.levels)
        with self._lock:
            self._renderers[client.client_id] = renderer
        client.camera.on_update(lambda _camera: self.refresh(client))
        self.refresh(client)

    def _disconnect(self, client) -> None:
        with self._lock:
            renderer = self._renderers.pop(client.client_id, None)
        if renderer is not None:
            renderer.stop(timeout=0.0)

    def refresh(self, client, start_level: int = 0, if_idle: bool = False) -> None:
        """Render ``client``'s current view again from level ``start_level``; with ``if_idle`` only when its
        previous frame is finished (a training refresh never cancels a frame in flight)."""
        renderer = self._renderers.get(client.client_id)
        if renderer is not None and self.live and not (if_idle and renderer.busy):
            renderer.request(view_of_camera(client.camera), start_level)

    def refresh_all(self, start_level: int = 0, if_idle: bool = False) -> None:
        for client in self.server.get_clients().values():
            self.refresh(client, start_level, if_idle)

    def _show(self, client, rgb: np.ndarray, level: int) -> None:
        if not self.live:
            return
        image = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
        client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
        with self._lock:
            self.frames_shown += 1
            self.last_frame = (image.shape[1], image.shape[0], level)
        self.gui.frame_shown(self.frames_shown, image.shape[1], image.shape[0], level, len(self.levels))

    def set_live(self, on: bool) -> None:
        """Turn field rendering on (re-render every view) or off (clear the rendered backgrounds)."""
        self.live = bool(on)
        if self.live:
            self.refresh_all()
            return
        for client in self.server.get_clients().values():
            client.scene.set_background_image(None)

    def set_display(self, mode: str) -> None:
        """Show the splats in real time (``SPLATS_MODE``) or the field's progressive render (``NERF_MODE``)."""
        if self.splats is None:
            return
        nerf = mode == NERF_MODE
        self.splats.visible = not nerf
        self.set_live(nerf)

    def show_cameras(self, on: bool) -> None:
        """Show or hide the training-camera frustums."""
        self._cameras.visible = bool(on)

    def set_camera(self, world_from_cam: np.ndarray, fov_deg: float) -> None:
        """Move every browser's camera (path preview)."""
        wxyz, position = viser_pose_of(world_from_cam)
        for client in self.server.get_clients().values():
            with client.atomic():
                client.camera.position = position
                client.camera.wxyz = wxyz
                client.camera.fov = float(np.radians(fov_deg))

    def wait_forever(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Block until ``should_stop()`` (a KeyboardInterrupt propagates to the caller)."""
        while not should_stop():
            time.sleep(0.2)

    def stop(self) -> None:
        with self._lock:
            renderers, self._renderers = list(self._renderers.values()), {}
        for renderer in renderers:
            renderer.stop(timeout=1.0)
        self.gui.stop()
        self.server.stop()


def default_size(info: SceneInfo) -> tuple[int, int]:
    """Render size of new paths: the first training image's (even numbers), else 960 x 540."""
    if not info.intrinsics:
        return 960, 540
    first = info.intrinsics[info.train_indices[0] if info.train_indices else 0]
    return max(2, first.width // 2 * 2), max(2, first.height // 2 * 2)


def serve_run(run_dir: Path, options: ViewerOptions, device: str = "auto", dataset: Path | None = None) -> Viewer:
    """Load RUN and start its viewer (returns at once; the server runs in background threads)."""
    loaded = load_run(Path(run_dir), device=device, dataset=dataset)
    render_fn = model_render_fn(loaded.model, None, chunk=options.chunk)  # white background, as evaluation
    splats = options.splats if options.splats is not None else find_splats(Path(run_dir))
    return Viewer(scene_of_run(loaded), render_fn, options, run=loaded, splats=splats)


class TrainingViewer:
    """``train(callback=TrainingViewer(options))``: a live view of the field while it trains."""

    def __init__(self, options: ViewerOptions, refresh_s: float = 1.0, on_start: Callable[[str], None] | None = None):
        self.options, self.refresh_s, self.on_start = options, refresh_s, on_start
        self.viewer: Viewer | None = None
        self._last_refresh = 0.0

    def __call__(self, info) -> None:
        """Per-step hook: start the viewer at the first step, update the status, redraw every ``refresh_s``."""
        if self.viewer is None:
            self._start(info.trainer)
        now = time.monotonic()
        self.viewer.gui.training_status(info.step, info.total_steps, info.psnr, info.rays_per_second)
        if now - self._last_refresh >= self.refresh_s:  # redraw the finest level with the current weights
            self._last_refresh = now
            self.viewer.refresh_all(start_level=len(self.viewer.levels) - 1, if_idle=True)

    def _start(self, trainer) -> None:
        render_fn = model_render_fn(trainer.model, trainer.model_lock, chunk=self.options.chunk)
        # run=None: "Render video" stays off while the field trains (it would hold the model for minutes)
        self.viewer = Viewer(scene_of_run(trainer.as_run()), render_fn, self.options, run=None,
                             run_dir=trainer.run_dir)
        if self.on_start is not None:
            self.on_start(self.viewer.url)

    def finish(self, metrics: dict) -> None:
        """Training ended: say so in the panel and redraw from the coarsest level with the final weights."""
        if self.viewer is None:
            return
        self.viewer.gui.training.content = (f"Training finished: {metrics.get('steps', '?')} steps, held-out PSNR "
                                            f"{float(metrics.get('psnr', float('nan'))):.2f} dB")
        self.viewer.refresh_all(start_level=0)

    def stop(self) -> None:
        """Stop the viewer's server (again: no-op)."""
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            viewer.stop()
