"""Central camera models of the foundation: pixels <-> rays in the camera frame, for every stage.

Training (``nerf.data.camera_table``, ``Trainer.render_camera``), evaluation and rendering all build their
rays from these models (the world ray batches are in :mod:`nerfstage.core.rays`), so a dataset camera's pixel
means the same ray everywhere.

Conventions
-----------
* All pixel math here is in **OpenCV camera axes** (x right, y down, z forward). Poses (``world_from_cam``) are
  stored with OpenGL axes as nerfstudio writes them; ``rays.py`` converts them with
  :func:`nerfstage.core.geometry.convert_camera_axes` (the one conversion function).
* Pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``; its centre is ``(col + 0.5, row + 0.5)``;
  the principal point ``(cx, cy)`` is in the same units (``W / 2, H / 2`` is the image centre), as nerfstudio.
* Every model has ``project(points [n,3]) -> (pixels [n,2], valid [n])``, ``unproject(pixels) -> (unit
  directions [n,3], valid [n])`` and ``rays(pixels, keys) -> (origins [n,3], directions [n,3], valid [n])``, all
  torch tensors in the dtype of the input. ``keys`` are flat pixel indices; random lens samples (thin lens) are a
  hash of (key, seed, sample), so a chunked render draws the same samples as a whole-image one.
* A dataset camera (:class:`~nerfstage.core.geometry.Intrinsics`) becomes a model with
  :func:`camera_from_intrinsics`: PINHOLE / OPENCV -> :class:`PerspectiveCamera`, OPENCV_FISHEYE ->
  :class:`FisheyeCamera`. Both undistort by Newton iteration; in float64 they return the points of OpenCV's
  ``undistortPoints`` / ``fisheye.undistortPoints`` to ~1e-13 (tests/core/test_undistort.py), except where
  OpenCV is wrong: fisheye rays 90 degrees or more off-axis (OpenCV's x/z mirrors them) and distorted angles
  past 90 degrees (OpenCV clamps them); the unit directions here stay right.

The panoramic models (equirectangular, cubemap) live in the render stage (``nerfstage.render.equirect``,
``nerfstage.render.cubemap``), built on :class:`CentralCamera`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .errors import ConfigError
from .geometry import Intrinsics

NEWTON_STEPS = 12
"""Newton iterations of the inverse distortion maps (quadratic convergence: ~1e-12 after a handful)."""


@dataclass(frozen=True)
class ThinLens:
    """Thin-lens depth of field for a perspective camera: rays leave a disc and meet on the focus plane."""

    aperture_radius: float
    """Lens radius in scene units (0 = pinhole)."""
    focus_distance: float
    """Distance along the optical axis (scene units) of the plane in perfect focus."""
    seed: int = 0
    """Seed of the lens samples (a hash of pixel index, seed and sample number)."""


class CentralCamera:
    """Base of cameras whose rays all start at the optical centre (origin of the camera frame)."""

    width: int
    height: int

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        raise NotImplementedError

    def rays(
        self, pixels: Float[Tensor, "n 2"], keys: Int[Tensor, " n"] | None = None, sample: int = 0
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Ray origins and unit directions (camera frame, OpenCV axes) through ``pixels``."""
        directions, valid = self.unproject(pixels)
        return torch.zeros_like(directions), directions, valid


@dataclass(frozen=True)
class PixelCamera(CentralCamera):
    """The pixel grid and the linear part of a central camera's intrinsics (shared by the lens models below)."""

    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    fx: float
    """Focal length along x, pixels (pixels per radian for a fisheye)."""
    fy: float
    """Focal length along y, pixels (pixels per radian for a fisheye)."""
    cx: float
    """Principal point x, pixels."""
    cy: float
    """Principal point y, pixels."""


@dataclass(frozen=True)
class PerspectiveCamera(PixelCamera):
    """Pinhole camera with OpenCV radial-tangential distortion (k1 k2 p1 p2 k3) and optional thin lens."""

    k1: float = 0.0
    """Radial distortion k1."""
    k2: float = 0.0
    """Radial distortion k2."""
    p1: float = 0.0
    """Tangential distortion p1."""
    p2: float = 0.0
    """Tangential distortion p2."""
    k3: float = 0.0
    """Radial distortion k3."""
    lens: ThinLens | None = None
    """Thin-lens depth of field; None renders a pinhole (everything sharp)."""

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float, lens: ThinLens | None = None) -> PerspectiveCamera:
        """Centred pinhole with vertical field of view ``fov_y_deg`` (nerfstudio: f = H / 2 / tan(fov / 2))."""
        focal = focal_from_fov(fov_y_deg, height)
        return cls(int(width), int(height), focal, focal, width / 2.0, height / 2.0, lens=lens)

    @classmethod
    def from_intrinsics(cls, intrinsics: Intrinsics, lens: ThinLens | None = None) -> PerspectiveCamera:
        """The camera of a dataset frame (PINHOLE or OPENCV model)."""
        if intrinsics.model == "OPENCV_FISHEYE":
            raise ConfigError("OPENCV_FISHEYE intrinsics: use FisheyeCamera.from_intrinsics")
        i = intrinsics
        return cls(i.width, i.height, i.fx, i.fy, i.cx, i.cy, i.k1, i.k2, i.p1, i.p2, i.k3, lens=lens)

    @property
    def has_distortion(self) -> bool:
        return any(v != 0.0 for v in (self.k1, self.k2, self.p1, self.p2, self.k3))

    def distort(self, xy: Float[Tensor, "n 2"]) -> Float[Tensor, "n 2"]:
        """Normalised undistorted -> distorted image coordinates (OpenCV model)."""
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
        xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
        yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
        return torch.stack([xd, yd], dim=-1)

    def undistort(self, xy_distorted: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Inverse of ``distort`` by vectorised Newton iteration; valid where it converged (float64: < 1e-5 px,
        float32: < 1e-2 px)."""
        xy = xy_distorted.clone()
        if len(xy) == 0:
            return xy, torch.ones(0, dtype=torch.bool, device=xy.device)
        stop_px = 1e-9 if xy.dtype == torch.float64 else 1e-3
        for _ in range(NEWTON_STEPS):
            x, y = xy[:, 0], xy[:, 1]
            r2 = x * x + y * y
            radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3))
            d_radial = 2.0 * (self.k1 + r2 * (2.0 * self.k2 + 3.0 * self.k3 * r2))  # d radial / d(x or y), / x or y
            j_xx = radial + x * x * d_radial + 2.0 * self.p1 * y + 6.0 * self.p2 * x
            j_xy = x * y * d_radial + 2.0 * self.p1 * x + 2.0 * self.p2 * y
            j_yy = radial + y * y * d_radial + 6.0 * self.p1 * y + 2.0 * self.p2 * x
            residual = self.distort(xy) - xy_distorted  # [n, 2]
            det = j_xx * j_yy - j_xy * j_xy
            det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
            step_x = (j_yy * residual[:, 0] - j_xy * residual[:, 1]) / det
            step_y = (j_xx * residual[:, 1] - j_xy * residual[:, 0]) / det
            xy = xy - torch.stack([step_x, step_y], dim=-1)
            if float(residual.abs().max()) * max(self.fx, self.fy) < stop_px:  # converged everywhere: stop early
                break
        error_px = (self.distort(xy) - xy_distorted).abs().amax(dim=-1) * max(self.fx, self.fy)
        tolerance = 1e-5 if xy.dtype == torch.float64 else 1e-2
        return xy, torch.isfinite(error_px) & (error_px < tolerance)

    def project(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Camera-frame points -> pixels; valid in front of the camera."""
        z = points[:, 2]
        valid = z > 1e-12
        xy = points[:, :2] / torch.where(valid, z, torch.ones_like(z))[:, None]
        xy = self.distort(xy) if self.has_distortion else xy
        pixels = torch.stack([xy[:, 0] * self.fx + self.cx, xy[:, 1] * self.fy + self.cy], dim=-1)
        return pixels, valid

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Pixels -> unit directions from the optical centre (pinhole rays, lens ignored)."""
        xy_d = torch.stack([(pixels[:, 0] - self.cx) / self.fx, (pixels[:, 1] - self.cy) / self.fy], dim=-1)
        if self.has_distortion:
            xy, valid = self.undistort(xy_d)
        else:  # pinhole: no iteration, every pixel valid
            xy, valid = xy_d, torch.ones(len(pixels), dtype=torch.bool, device=pixels.device)
        directions = torch.cat([xy, torch.ones_like(xy[:, :1])], dim=-1)
        return torch.nn.functional.normalize(directions, dim=-1), valid

    def rays(
        self, pixels: Float[Tensor, "n 2"], keys: Int[Tensor, " n"] | None = None, sample: int = 0
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Pinhole rays, or thin-lens rays: from a seeded point on the lens disc through the focus-plane point."""
        directions, valid = self.unproject(pixels)
        if self.lens is None or self.lens.aperture_radius <= 0.0:
            return torch.zeros_like(directions), directions, valid
        if keys is None:
            keys = torch.arange(len(pixels), dtype=torch.int64, device=pixels.device)
        focus = directions * (self.lens.focus_distance / directions[:, 2:3])  # [n, 3], on the plane z = focus
        disc = lens_disc_samples(keys, self.lens.seed, sample, dtype=pixels.dtype) * self.lens.aperture_radius
        origins = torch.cat([disc, torch.zeros_like(disc[:, :1])], dim=-1)  # [n, 3] on the lens plane z = 0
        return origins, torch.nn.functional.normalize(focus - origins, dim=-1), valid


@dataclass(frozen=True)
class FisheyeCamera(PixelCamera):
    """Equidistant fisheye (r = f * theta) with OpenCV fisheye distortion k1..k4 (theta_d polynomial)."""

    k1: float = 0.0
    """Fisheye distortion k1."""
    k2: float = 0.0
    """Fisheye distortion k2."""
    k3: float = 0.0
    """Fisheye distortion k3."""
    k4: float = 0.0
    """Fisheye distortion k4."""
    max_angle_deg: float = 180.0
    """Largest angle from the optical axis that is imaged (180 = the full sphere); pixels beyond are invalid."""

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> FisheyeCamera:
        """nerfstudio's viewer fisheye: focal from the vertical fov as for a perspective camera, equidistant."""
        focal = focal_from_fov(fov_y_deg, height)
        return cls(int(width), int(height), focal, focal, width / 2.0, height / 2.0)

    @classmethod
    def from_intrinsics(cls, intrinsics: Intrinsics) -> FisheyeCamera:
        """The camera of an OPENCV_FISHEYE dataset frame."""
        i = intrinsics
        return cls(i.width, i.height, i.fx, i.fy, i.cx, i.cy, i.k1, i.k2, i.k3, i.k4)

    def _theta_d(self, theta: Tensor) -> Tensor:
        t2 = theta * theta
        return theta * (1.0 + t2 * (self.k1 + t2 * (self.k2 + t2 * (self.k3 + t2 * self.k4))))

    def _slope(self, theta: Tensor) -> Tensor:  # d theta_d / d theta
        t2 = theta * theta
        return 1.0 + t2 * (3 * self.k1 + t2 * (5 * self.k2 + t2 * (7 * self.k3 + t2 * 9 * self.k4)))

    def project(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Camera-frame points -> pixels; valid within ``max_angle_deg`` of the axis."""
        rho = points[:, :2].norm(dim=-1)
        theta = torch.atan2(rho, points[:, 2])  # angle from the optical axis, [0, pi]
        scale = torch.where(rho > 1e-15, self._theta_d(theta) / rho.clamp_min(1e-15), torch.ones_like(rho))
        pixels = torch.stack([points[:, 0] * scale * self.fx + self.cx, points[:, 1] * scale * self.fy + self.cy], -1)
        valid = (theta <= math.radians(self.max_angle_deg) + 1e-9) & (points.norm(dim=-1) > 0)
        return pixels, valid & (self._slope(theta) > 0)

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Pixels -> unit directions (theta from the distorted radius by Newton iteration)."""
        m = torch.stack([(pixels[:, 0] - self.cx) / self.fx, (pixels[:, 1] - self.cy) / self.fy], dim=-1)
        theta_d = m.norm(dim=-1)
        theta = theta_d.clone()
        stop_px = 1e-9 if theta.dtype == torch.float64 else 1e-3
        for _ in range(NEWTON_STEPS):
            residual = self._theta_d(theta) - theta_d  # [n]
            if not len(theta) or float(residual.abs().max()) * max(self.fx, self.fy) < stop_px:
                break  # converged everywhere: stop early
            slope = self._slope(theta)
            theta = theta - residual / torch.where(slope.abs() < 1e-12, 1e-12, slope)
        ratio = torch.where(theta_d > 1e-15, torch.sin(theta) / theta_d.clamp_min(1e-15), torch.ones_like(theta))
        directions = torch.cat([m * ratio[:, None], torch.cos(theta)[:, None]], dim=-1)
        error_px = (self._theta_d(theta) - theta_d).abs() * max(self.fx, self.fy)
        tolerance = 1e-5 if theta.dtype == torch.float64 else 1e-2
        valid = (error_px < tolerance) & (theta >= 0) & (theta <= math.radians(self.max_angle_deg) + 1e-9)
        valid &= self._slope(theta) > 0  # the monotone branch of the polynomial (the smallest root)
        return torch.nn.functional.normalize(directions, dim=-1), valid


@dataclass(frozen=True)
class OrthographicCamera:
    """Parallel projection: every ray points along the optical axis from its own point on the image plane."""

    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""
    view_width: float
    """Width of the imaged area, scene units (the pixel size is ``view_width / width``, square pixels)."""
    cx: float | None = None
    """Principal point x, pixels (None: the image centre)."""
    cy: float | None = None
    """Principal point y, pixels (None: the image centre)."""

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    @property
    def pixel_size(self) -> float:
        return self.view_width / self.width

    def _centre(self) -> tuple[float, float]:
        return (self.width / 2.0 if self.cx is None else self.cx, self.height / 2.0 if self.cy is None else self.cy)

    def project(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Camera-frame points -> pixels (depth ignored; every point is valid)."""
        cx, cy = self._centre()
        pixels = torch.stack([points[:, 0] / self.pixel_size + cx, points[:, 1] / self.pixel_size + cy], dim=-1)
        return pixels, torch.ones_like(pixels[:, 0], dtype=torch.bool)

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Pixels -> the common direction (+z); see ``rays`` for the per-pixel origins."""
        directions = torch.zeros(len(pixels), 3, dtype=pixels.dtype, device=pixels.device)
        directions[:, 2] = 1.0
        return directions, torch.ones(len(pixels), dtype=torch.bool, device=pixels.device)

    def rays(
        self, pixels: Float[Tensor, "n 2"], keys: Int[Tensor, " n"] | None = None, sample: int = 0
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Origins on the plane z = 0 under each pixel, all directions +z."""
        cx, cy = self._centre()
        directions, valid = self.unproject(pixels)
        xy = torch.stack([(pixels[:, 0] - cx) * self.pixel_size, (pixels[:, 1] - cy) * self.pixel_size], dim=-1)
        return torch.cat([xy, torch.zeros_like(xy[:, :1])], dim=-1), directions, valid


def focal_from_fov(fov_y_deg: float, height: int) -> float:
    """Focal length in pixels of a vertical field of view (three.js / nerfstudio viewer convention)."""
    fov = float(fov_y_deg)
    if not 0.0 < fov < 180.0:
        raise ConfigError(f"fov={fov_y_deg} degrees: a perspective field of view must be in (0, 180)")
    return height / 2.0 / math.tan(math.radians(fov) / 2.0)


def fov_from_focal(focal: float, height: int) -> float:
    """Vertical field of view in degrees of a focal length in pixels."""
    return math.degrees(2.0 * math.atan(height / 2.0 / float(focal)))


def hash_uniform(keys: Int[Tensor, " n"], seed: int, stream: int, dtype=torch.float32) -> Float[Tensor, " n"]:
    """Deterministic uniform [0, 1) numbers from integer keys (a 32-bit integer hash; no global RNG state)."""
    mask = 0xFFFFFFFF
    x = (keys.to(torch.int64) * 0x9E37 + seed * 0x632BE5 + stream * 0x85EBCA7) & mask
    for _ in range(3):  # multipliers < 2^31 keep every product inside int64
        x = (((x >> 16) ^ x) * 0x45D9F3B) & mask
    x = (x >> 16) ^ x
    return (x.to(torch.float64) / 2.0**32).to(dtype)


def lens_disc_samples(keys: Int[Tensor, " n"], seed: int, sample: int, dtype=torch.float32) -> Float[Tensor, "n 2"]:
    """Uniform points on the unit disc, one per key (concentric-free polar mapping r = sqrt(u))."""
    u = hash_uniform(keys, seed, 2 * sample, torch.float64)
    v = hash_uniform(keys, seed, 2 * sample + 1, torch.float64)
    radius, angle = torch.sqrt(u), 2.0 * math.pi * v
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1).to(dtype)


def camera_from_intrinsics(intrinsics: Intrinsics, lens: ThinLens | None = None) -> PerspectiveCamera | FisheyeCamera:
    """The camera model of a dataset camera: OPENCV_FISHEYE -> FisheyeCamera, PINHOLE / OPENCV ->
    PerspectiveCamera (with ``lens``; a fisheye takes no thin lens)."""
    if intrinsics.model == "OPENCV_FISHEYE":
        if lens is not None:
            raise ConfigError("lens: a thin lens needs a PINHOLE or OPENCV camera, got OPENCV_FISHEYE intrinsics")
        return FisheyeCamera.from_intrinsics(intrinsics)
    return PerspectiveCamera.from_intrinsics(intrinsics, lens)
