"""Progressive rendering of one browser's camera in a background thread.

Each request (a camera move) starts over at the lowest resolution level (e.g. 64 px high, fast on a CPU), and
while the camera stays still the thread refines level by level up to full resolution, showing every finished
level. A new request cancels the frame in flight: the render function polls ``cancelled()`` between ray chunks
and raises :class:`RenderCancelled`. The UI thread only ever sets the latest view and returns at once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...core.errors import ConfigError


class RenderCancelled(Exception):
    """Raised inside a render function when its request was superseded (caught by the render thread)."""


@dataclass(frozen=True)
class View:
    """What to render: a camera pose, lens and image shape."""

    world_from_cam: np.ndarray
    """[4, 4] camera-to-world, OpenGL camera axes, normalised scene frame."""
    fov_deg: float
    """Vertical field of view, degrees."""
    aspect: float
    """Width / height of the browser's canvas."""


RenderFn = Callable[[View, int, int, Callable[[], bool]], np.ndarray]
"""render(view, width, height, cancelled) -> rgb [H, W, 3] float in [0, 1] (or raise RenderCancelled)."""
ShowFn = Callable[[np.ndarray, int, int], None]
"""show(rgb [H, W, 3], level index, frame height) -> None (e.g. set the client's background image)."""


def resolution_levels(max_height: int, start: int = 64, factor: float = 2.0) -> list[int]:
    """Frame heights from ``start`` up to ``max_height`` (always the last level), growing by ``factor``."""
    if max_height < 1 or start < 1 or factor <= 1.0:
        raise ConfigError(f"max_height={max_height}, start={start}, factor={factor}: expected positive sizes and "
                          "a factor > 1")
    levels, height = [], float(min(start, max_height))
    while height < max_height:
        levels.append(int(round(height)))
        height *= factor
    return levels + [int(max_height)]


def frame_size(height: int, aspect: float) -> tuple[int, int]:
    """(width, height) of a frame ``height`` pixels high with width / height = ``aspect``."""
    if not (aspect > 0 and math.isfinite(aspect)):
        raise ConfigError(f"aspect {aspect}: expected a positive width / height ratio")
    return max(1, int(round(height * aspect))), int(height)


class ProgressiveRenderer:
    """One render thread: ``request(view)`` from any thread; ``show`` gets every finished level."""

    def __init__(self, render: RenderFn, show: ShowFn, levels: list[int], settle_s: float = 0.1):
        self.render, self.show, self.levels, self.settle_s = render, show, list(levels), settle_s
        self._cond = threading.Condition()
        self._generation = 0
        self._view: View | None = None
        self._start_level = 0
        self._stopped = False
        self.frames_shown = 0
        """Frames handed to ``show`` so far."""
        self.frames_cancelled = 0
        """Frames abandoned because a newer request arrived."""
        self.last_level: int | None = None
        """Index of the last level shown (``len(levels) - 1`` = full resolution)."""
        self._thread = threading.Thread(target=self._loop, name="nerfstage-viewer-render", daemon=True)
        self._thread.start()

    def request(self, view: View, start_level: int = 0) -> None:
        """Render ``view`` from level ``start_level`` (0 = the coarsest) on; cancels the frame in flight."""
        with self._cond:
            self._generation += 1
            self._view = view
            self._start_level = min(max(int(start_level), 0), len(self.levels) - 1)
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._generation += 1
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def busy(self) -> bool:
        """Whether a request is still being refined (not at full resolution yet)."""
        with self._cond:
            return self._view is not None

    def _next(self, seen: int) -> tuple[int, View | None, int]:
        with self._cond:
            while not self._stopped and (self._generation == seen or self._view is None):
                self._cond.wait()
            return self._generation, None if self._stopped else self._view, self._start_level

    def _stale(self, generation: int) -> bool:
        return self._stopped or self._generation != generation

    def _settled(self, generation: int) -> bool:
        """Wait ``settle_s`` for the camera to stay still; False when a newer request came meanwhile."""
        deadline = time.monotonic() + self.settle_s
        with self._cond:
            while not self._stale(generation) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return not self._stale(generation)

    def _loop(self) -> None:
        generation = 0
        while True:
            generation, view, start = self._next(generation)
            if view is None:
                return
            self._refine(generation, view, start)

    def _refine(self, generation: int, view: View, start: int) -> None:
        for level in range(start, len(self.levels)):
            if level > start and not self._settled(generation):
                return
            height = self.levels[level]
            width, height = frame_size(height, view.aspect)
            try:
                image = self.render(view, width, height, lambda g=generation: self._stale(g))
            except RenderCancelled:
                self.frames_cancelled += 1
                return
            if self._stale(generation):
                self.frames_cancelled += 1
                return
            self.show(image, level, height)
            self.frames_shown, self.last_level = self.frames_shown + 1, level
        with self._cond:
            if self._generation == generation:
                self._view = None
