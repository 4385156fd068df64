"""The viewer's side panel: splats / NeRF switch (when there are splats), live-render switch and status, the keyframe editor, path preview, save / load, and
the "Render video" button (``render.pipeline.render_path`` in a thread, progress from its frame cache).

Callbacks from the browser carry ``event.client``; values set here by the program call back with no client and
are ignored, so syncing the widgets never edits the path.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ...core.errors import NerfstageError
from ...render.pipeline import RenderOptions, frame_cache, render_path
from .scene_path import draw_path
from .splats import NERF_MODE, SPLATS_MODE
from .views import view_of_camera

NO_KEYFRAME = "-"


class Gui:
    """Widgets bound to a ``server.Viewer``."""

    def __init__(self, viewer):
        self.viewer, self.editor, gui = viewer, viewer.editor, viewer.server.gui
        self._stopped = threading.Event()
        self._render_thread: threading.Thread | None = None
        with gui.add_folder("View"):
            self.display = None
            if viewer.splats is not None:
                self.display = gui.add_dropdown("Show", (SPLATS_MODE, NERF_MODE), initial_value=SPLATS_MODE,
                                                hint="Splats drawn by the browser in real time, or the field's "
                                                     "progressive render (the final look)")
                gui.add_markdown(f"Splats: {viewer.splat_count} Gaussians")
            self.live = gui.add_checkbox("Live render", initial_value=viewer.live)
            self.cameras = gui.add_checkbox("Show training cameras", initial_value=True)
            self.status = gui.add_markdown("Waiting for the browser's camera...")
            self.training = gui.add_markdown("", visible=False)
        self._keyframe_widgets(gui)
        self._path_widgets(gui)
        self._file_widgets(gui)
        self._render_widgets(gui)
        self._bind()
        self._sync()

    def _keyframe_widgets(self, gui) -> None:
        with gui.add_folder("Keyframes"):
            self.add = gui.add_button("Add keyframe", hint="Add a keyframe at the current view")
            self.selected = gui.add_dropdown("Keyframe", (NO_KEYFRAME,), initial_value=NO_KEYFRAME)
            self.move = gui.add_button("Move keyframe to view")
            self.delete = gui.add_button("Delete keyframe", color="red")
            self.fov = gui.add_number("Keyframe fov (deg)", 50.0, min=1.0, max=170.0, step=0.5)
            self.duration = gui.add_number("Transition into it (s, 0 = default)", 0.0, min=0.0, step=0.1)

    def _path_widgets(self, gui) -> None:
        opt = self.editor.options
        with gui.add_folder("Path"):
            self.transition = gui.add_number("Default transition (s)", opt.default_transition_sec, min=0.05, step=0.1)
            self.smoothness = gui.add_slider("Smoothness (tension)", 0.0, 1.0, 0.05, opt.tension)
            self.loop = gui.add_checkbox("Loop", opt.is_cycle)
            self.fps = gui.add_number("FPS", opt.fps, min=1.0, max=240.0, step=1.0)
            self.width = gui.add_number("Width (px)", opt.width, min=2, max=16384, step=2)
            self.height = gui.add_number("Height (px)", opt.height, min=2, max=16384, step=2)
            self.preview_on = gui.add_checkbox("Preview path", False)
            self.preview = gui.add_slider("Preview frame", 0, 1, 1, 0)
            self.play = gui.add_checkbox("Play", False)
            self.path_info = gui.add_markdown("No path yet: add at least 2 keyframes.")

    def _file_widgets(self, gui) -> None:
        run_dir = self.viewer.run_dir or Path.cwd()
        default = self.viewer.options.camera_path or run_dir / "camera_paths" / "camera_path.json"
        with gui.add_folder("Camera path file"):
            self.path_file = gui.add_text("Path file", str(default))
            self.save = gui.add_button("Save path")
            self.load = gui.add_button("Load path")

    def _render_widgets(self, gui) -> None:
        run_dir = self.viewer.run_dir or Path.cwd()
        default = self.viewer.options.video or run_dir / "renders" / "camera_path.mp4"
        with gui.add_folder("Render"):
            self.video = gui.add_text("Video file", str(default))
            self.render = gui.add_button("Render video", disabled=self.viewer.run is None,
                                         hint="nerfstage render with this path (needs a trained run)")
            self.progress = gui.add_progress_bar(0.0, visible=False)
            self.render_status = gui.add_markdown("")

    def _bind(self) -> None:
        user = _from_user
        self.live.on_update(user(lambda e: self.viewer.set_live(self.live.value)))
        if self.display is not None:
            self.display.on_update(user(lambda e: self._on_display()))
        self.cameras.on_update(user(lambda e: self.viewer.show_cameras(self.cameras.value)))
        self.add.on_click(user(self._on_add))
        self.move.on_click(user(self._on_move))
        self.delete.on_click(user(self._on_delete))
        self.selected.on_update(user(lambda e: self._sync()))
        self.fov.on_update(user(lambda e: self._edit(lambda i: self.editor.set_fov(i, float(self.fov.value)))))
        self.duration.on_update(user(lambda e: self._edit(
            lambda i: self.editor.set_duration(i, float(self.duration.value)))))
        for widget in (self.transition, self.smoothness, self.loop, self.fps, self.width, self.height):
            widget.on_update(user(lambda e: self._guarded(self._on_options)))
        self.preview.on_update(user(lambda e: self._show_preview()))
        self.preview_on.on_update(user(lambda e: self._show_preview()))
        self.play.on_update(user(lambda e: self._start_play()))
        self.save.on_click(user(lambda e: self._guarded(self._on_save)))
        self.load.on_click(user(lambda e: self._guarded(self._on_load)))
        self.render.on_click(user(lambda e: self._guarded(self._on_render)))

    def _on_display(self) -> None:
        self.viewer.set_display(self.display.value)
        self.live.value = self.viewer.live  # set by the program: its callback ignores it

    # -- status ---------------------------------------------------------------------------------------------
    def frame_shown(self, count: int, width: int, height: int, level: int, levels: int) -> None:
        self.status.content = f"Rendered frames: {count} (last {width}x{height} px, level {level + 1}/{levels})"

    def training_status(self, step: int, total: int, psnr: float, rays_per_second: float) -> None:
        self.training.visible = True
        self.training.content = f"Training step {step}/{total}: batch PSNR {psnr:.2f} dB, {rays_per_second:.0f} rays/s"

    def _notify(self, title: str, body: str, error: bool = False) -> None:
        for client in self.viewer.server.get_clients().values():
            client.add_notification(title, body, auto_close_seconds=6.0, color="red" if error else None)

    def _guarded(self, action) -> None:
        """Run a GUI action; nerfstage errors become a notification (the viewer keeps running)."""
        try:
            action()
        except NerfstageError as err:
            self._notify("Camera path", str(err).splitlines()[0], error=True)

    # -- keyframes ------------------------------------------------------------------------------------------
    def _index(self) -> int | None:
        value = self.selected.value
        return None if value == NO_KEYFRAME else int(value) - 1

    def _on_add(self, event) -> None:
        view = _client_view(event.client)
        index = self._index()
        where = self.editor.add(view.world_from_cam, view.fov_deg, view.aspect,
                                None if index is None else index + 1)
        self._sync(select=where)

    def _on_move(self, event) -> None:
        index = self._index()
        if index is not None:
            view = _client_view(event.client)
            self.editor.move(index, view.world_from_cam, view.fov_deg)
            self._sync(select=index)

    def _on_delete(self, event) -> None:
        index = self._index()
        if index is not None:
            self.editor.delete(index)
            self._sync(select=min(index, len(self.editor) - 1) if len(self.editor) else None)

    def _edit(self, change) -> None:
        index = self._index()
        if index is not None:
            self._guarded(lambda: change(index))
            self._sync(select=index)

    def _on_options(self) -> None:
        self.editor.set_options(default_transition_sec=float(self.transition.value),
                                tension=float(self.smoothness.value), is_cycle=bool(self.loop.value),
                                fps=float(self.fps.value), width=int(self.width.value),
                                height=int(self.height.value))
        self._sync(select=self._index())

    def _sync(self, select: int | None = None) -> None:
        """Widgets, keyframe frustums and the path line from the editor's state."""
        labels = [str(i + 1) for i in range(len(self.editor))] or [NO_KEYFRAME]
        self.selected.options = labels
        self.selected.value = labels[select] if select is not None and len(self.editor) else (
            self.selected.value if self.selected.value in labels else labels[-1])
        index = self._index()
        if index is not None:
            key = self.editor.keyframes[index]
            self.fov.value = round(key.fov_deg, 3)
            self.duration.value = key.override_transition_sec if key.override_transition_enabled else 0.0

        path = draw_path(self.viewer.server, self.editor, self.viewer.info)
        self.path_info.content = ("No path yet: add at least 2 keyframes." if path is None else
                                  f"{len(self.editor)} keyframes, {len(path)} frames, {path.duration:.2f} s")
        self.preview.max = max(1, len(path) - 1) if path is not None else 1

    def _sync_options(self) -> None:
        opt = self.editor.options
        self.transition.value, self.smoothness.value, self.loop.value = opt.default_transition_sec, \
            opt.tension, opt.is_cycle
        self.fps.value, self.width.value, self.height.value = opt.fps, opt.width, opt.height

    # -- preview --------------------------------------------------------------------------------------------
    def _show_preview(self) -> None:
        if not self.preview_on.value or len(self.editor) < 2:
            return
        try:
            pose, fov = self.editor.preview(int(self.preview.value))
        except NerfstageError as err:
            self._notify("Preview", str(err).splitlines()[0], error=True)
            return
        self.viewer.set_camera(pose, fov)

    def _start_play(self) -> None:
        if self.play.value:
            self.preview_on.value = True
            threading.Thread(target=self._play, name="nerfstage-viewer-play", daemon=True).start()

    def _play(self) -> None:
        fps = max(1.0, float(self.editor.options.fps))
        while self.play.value and not self._stopped.is_set() and len(self.editor) >= 2:
            frame = int(self.preview.value) + 1
            self.preview.value = 0 if frame > self.preview.max else frame
            self._show_preview()
            time.sleep(1.0 / fps)

    # -- files and render -----------------------------------------------------------------------------------
    def _on_save(self) -> None:
        self.save_path(Path(self.path_file.value).expanduser())

    def _on_load(self) -> None:
        self.load_path(Path(self.path_file.value).expanduser())

    def save_path(self, file: Path):
        """The "Save path" button: write the editor's path as camera_path.json; returns the CameraPath."""
        path = self.editor.save(file)
        self._notify("Camera path", f"saved {len(self.editor)} keyframes, {len(path)} frames -> {file}")
        return path

    def load_path(self, file: Path) -> None:
        """The "Load path" button: replace the keyframes and path options with a camera_path.json's."""
        self.editor.load(file)
        self._sync_options()
        self._sync(select=0)
        self._notify("Camera path", f"loaded {len(self.editor)} keyframes from {file}")

    def _on_render(self) -> None:
        self.start_render(Path(self.video.value).expanduser())

    def start_render(self, output: Path) -> threading.Thread | None:
        """The "Render video" button: ``render_path`` of the editor's path into ``output`` in a thread (None when
        a render is already running)."""
        if self._render_thread is not None and self._render_thread.is_alive():
            self._notify("Render", "a render is already running", error=True)
            return None
        path = self.editor.camera_path()
        self._render_thread = threading.Thread(target=self._render_job, args=(path, output), daemon=True,
                                               name="nerfstage-viewer-video")
        self._render_thread.start()
        return self._render_thread

    def _render_job(self, path, output: Path) -> None:
        self.render.disabled, self.progress.visible, self.progress.value = True, True, 0.0
        self.render_status.content = f"Rendering {len(path)} frames -> {output}"
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(frame_cache(output), len(path), done), daemon=True)
        watcher.start()
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            result = render_path(self.viewer.run, output, None, RenderOptions(overwrite=True, progress=False),
                                 path=path)
            self.progress.value = 100.0
            self.render_status.content = (f"Wrote {result.frames} frames {result.width}x{result.height} in "
                                          f"{result.seconds:.1f} s -> {result.output}")
        except (NerfstageError, OSError) as err:
            self.render_status.content = f"Render failed: {str(err).splitlines()[0]}"
        finally:
            done.set()
            self.render.disabled = False

    def _watch(self, cache: Path, total: int, done: threading.Event) -> None:
        """Progress of a video render: finished frames in its frame cache."""
        while not done.wait(0.5) and not self._stopped.is_set():
            finished = len(list(cache.glob("*.png"))) if cache.is_dir() else 0
            self.progress.value = min(99.0, 100.0 * finished / max(total, 1))

    def stop(self) -> None:
        self._stopped.set()


def _from_user(callback):
    """Wrap a GUI callback so that it only runs for events a browser sent (not for values the program set)."""

    def wrapped(event) -> None:
        if event.client is not None:
            callback(event)

    return wrapped


def _client_view(client):
    return view_of_camera(client.camera)


def build_gui(viewer) -> Gui:
    return Gui(viewer)
