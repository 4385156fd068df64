"""Where an unbounded capture's normalised scene is centred, and how it is scaled.

The hash grid spends half of its resolution per axis on the unit box [-1, 1]^3; everything outside is contracted
(``contraction.py``). A capture that walks around a subject has that subject near the **focus of attention** --
the point closest to every camera's optical axis (instant-ngp's "centre of attention", nerfstudio's
``center_method="focus"``) -- while the mean camera position lies on the near side of it. Centring on the focus
puts the subject in the middle of the unit box.

:func:`estimate_focus` solves the least-squares point of the optical axes, counting only the cameras that see it
in front of them (re-solved until that set no longer changes, as nerfstudio does) and reports how trustworthy it
is. :func:`choose_centre` implements ``scene_centre="auto"``: the focus when the axes converge (they spread by
at least ``MIN_AXIS_SPREAD_DEG``), the point lies in front of most cameras and inside most of their images, and it
is no farther from the cameras than a few times the size of the camera path; otherwise the mean camera position
(forward-facing captures and videos going straight have no such point). :func:`focus_scale` is the scale rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture.dataset import Dataset
from ..core.geometry import closest_point_to_lines, convert_camera_axes, optical_axes
from ..core.errors import ConfigError, DatasetError

MIN_AXIS_SPREAD_DEG = 10.0
"""auto: the optical axes must spread by at least this RMS angle about the focus (parallel axes: 0)."""
MIN_IN_FRONT = 0.75
"""auto: at least this fraction of the cameras must see the focus in front of them."""
MIN_IN_VIEW = 0.5
"""auto: at least this fraction of the cameras must see the focus inside their image."""
MAX_DISTANCE_RATIO = 3.0
"""auto: median camera-to-focus distance at most this times the camera path's radius (farthest camera from the
mean camera position); a focus far beyond the cameras is an artefact of nearly parallel axes."""
CAMERA_DISTANCE_RANGE = (0.5, 3.0)
"""Bounds of the normalised camera-to-focus distance the scale rule may choose."""
CENTRES = ("auto", "poses", "focus")


@dataclass
class FocusEstimate:
    """The cameras' focus of attention and the figures ``auto`` judges it by (dataset frame)."""

    point: np.ndarray
    """[3] least-squares point closest to the optical axes of the cameras that see it in front of them."""
    axis_spread_deg: float
    """RMS angle by which those axes spread (sqrt of the smallest eigenvalue of mean(I - d d^T), as an angle)."""
    in_front: float
    """Fraction of all cameras that see ``point`` in front of them."""
    in_view: float
    """Fraction of all cameras whose image contains the projection of ``point`` (pinhole, distortion ignored)."""
    distance: float
    """Median distance from the cameras to ``point``."""
    path_radius: float
    """Distance of the farthest camera from the mean camera position."""
    view_tan: float
    """Median tangent of the cameras' half-diagonal field of view."""

    def rejection(self) -> str | None:
        """Why ``auto`` must not centre on this point (None when it may)."""
        if not np.isfinite(self.point).all() or self.axis_spread_deg < MIN_AXIS_SPREAD_DEG:
            return f"optical axes spread {self.axis_spread_deg:.1f} deg < {MIN_AXIS_SPREAD_DEG} deg"
        if self.in_front < MIN_IN_FRONT:
            return f"in front of {100 * self.in_front:.0f}% of the cameras < {100 * MIN_IN_FRONT:.0f}%"
        if self.in_view < MIN_IN_VIEW:
            return f"inside {100 * self.in_view:.0f}% of the images < {100 * MIN_IN_VIEW:.0f}%"
        if self.distance > MAX_DISTANCE_RATIO * self.path_radius:
            return f"{self.distance:.3g} from the cameras > {MAX_DISTANCE_RATIO} x path radius {self.path_radius:.3g}"
        return None


def focus_of_attention(world_from_cams: np.ndarray, max_rounds: int = 20) -> tuple[np.ndarray, np.ndarray, float]:
    """(point [3], active [N] bool, smallest eigenvalue): the least-squares point of the optical axes of the
    cameras that see it in front of them. Starts from the cameras that see the mean camera position in front
    (all of them when fewer than two do) and re-solves until that set stops changing."""
    origins, dirs = optical_axes(world_from_cams)
    active = np.einsum("ni,ni->n", origins.mean(axis=0) - origins, dirs) > 0  # [N]
    if active.sum() < 2:
        active = np.ones(len(origins), dtype=bool)
    point, eigs = closest_point_to_lines(origins[active], dirs[active])
    for _ in range(max_rounds):
        now = np.einsum("ni,ni->n", point - origins, dirs) > 0
        if now.sum() < 2 or np.array_equal(now, active):
            break
        active = now
        point, eigs = closest_point_to_lines(origins[active], dirs[active])
    return point, active, float(eigs[0])


def _in_view(dataset: Dataset, point: np.ndarray) -> np.ndarray:
    """[N] bool: ``point`` projects inside frame i's image (pinhole model, in front of the camera)."""
    cv = convert_camera_axes(dataset.world_from_cams())  # [N, 4, 4] OpenCV axes for pixel math
    local = np.einsum("nji,nj->ni", cv[:, :3, :3], point[None] - cv[:, :3, 3])  # [N, 3] camera coordinates
    seen = []
    for frame, (x, y, z) in zip(dataset.frames, local):
        k = frame.intrinsics
        u, v = (k.fx * x / z + k.cx, k.fy * y / z + k.cy) if z > 0 else (-1.0, -1.0)
        seen.append(z > 0 and 0.0 <= u <= k.width and 0.0 <= v <= k.height)
    return np.array(seen, dtype=bool)


def _view_tan(dataset: Dataset) -> float:
    """Median tangent of the half-diagonal field of view (from the principal point to the farthest corner)."""
    tans = [
        np.hypot(max(k.cx, k.width - k.cx) / k.fx, max(k.cy, k.height - k.cy) / k.fy)
        for k in (f.intrinsics for f in dataset.frames)
    ]
    return float(np.median(tans))


def estimate_focus(dataset: Dataset) -> FocusEstimate:
    """The focus of attention of ``dataset``'s cameras and the figures that say whether to trust it."""
    poses = dataset.world_from_cams()  # [N, 4, 4]
    point, _, eig = focus_of_attention(poses)
    origins, dirs = optical_axes(poses)
    depth = np.einsum("ni,ni->n", point - origins, dirs)  # [N]
    return FocusEstimate(
        point=point,
        axis_spread_deg=float(np.degrees(np.arcsin(np.sqrt(np.clip(eig, 0.0, 1.0))))),
        in_front=float((depth > 0).mean()),
        in_view=float(_in_view(dataset, point).mean()),
        distance=float(np.median(np.linalg.norm(point - origins, axis=1))),
        path_radius=float(np.linalg.norm(origins - origins.mean(axis=0), axis=1).max()),
        view_tan=_view_tan(dataset),
    )


def choose_centre(dataset: Dataset, centre: str) -> tuple[str, FocusEstimate | None]:
    """("poses" or "focus", the focus estimate or None) for the requested ``centre`` (auto / poses / focus)."""
    if centre not in CENTRES:
        raise ConfigError(f"scene_centre = {centre!r}; expected one of {', '.join(CENTRES)}")
    if centre == "poses" or len(dataset.frames) < 2:
        return "poses", None
    estimate = estimate_focus(dataset)
    reason = estimate.rejection()
    if centre == "focus" and (estimate.in_front == 0.0 or estimate.axis_spread_deg < 0.5):
        raise DatasetError(
            f"{dataset.root}: scene_centre='focus' but the cameras' optical axes do not meet in front of them "
            f"({reason}); use scene_centre 'auto' or 'poses'"
        )
    return ("focus" if centre == "focus" or reason is None else "poses"), estimate


def focus_scale(estimate: FocusEstimate) -> float:
    """Scale that puts the cameras at normalised distance ``clip(1 / view_tan, 0.5, 3)`` from the focus.

    At that distance a camera's frustum at the focus depth is about as wide as the unit box (its half-diagonal
    is 1): whatever a camera sees around the subject it looks at lands inside the box, where the hash grid has
    its full resolution, and the cameras themselves sit at or just beyond the box surface, in the contracted
    region, as instant-ngp places its cameras at a fixed distance around the centre of attention (a phone's
    ~80 deg diagonal view puts them at 1.2). The clip keeps very wide (fisheye) or very narrow lenses sane.
    """
    lo, hi = CAMERA_DISTANCE_RANGE
    target = float(np.clip(1.0 / max(estimate.view_tan, 1e-6), lo, hi))
    return target / max(estimate.distance, 1e-12)


__all__ = ["FocusEstimate", "choose_centre", "estimate_focus", "focus_of_attention", "focus_scale"]
