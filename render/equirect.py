"""Equirectangular (latlong, full 360 x 180 degrees) camera, resampling between central cameras, and the camera
of a camera_path.json frame (``camera_for_path``: perspective, fisheye or equirectangular).

Orientation is nerfstudio's (``Cameras`` with ``CameraType.EQUIRECTANGULAR``, fx = W / 2, fy = H): the image
centre looks along the camera's forward axis, longitude grows to the right (column 0 and column W meet behind the
camera), the top row looks up (+y of the OpenGL camera frame), the bottom row down. Rows are uniform in polar
angle: ``polar = pi * v / H`` from straight up; columns uniform in longitude: ``lon = pi * (2 u / W - 1)``
(u, v continuous pixel coordinates). In OpenCV camera axes the direction is
``(sin(lon) sin(polar), -cos(polar), cos(lon) sin(polar))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core.cameras import CentralCamera, FisheyeCamera, PerspectiveCamera
from ..core.errors import ConfigError
from ..core.rays import pixel_centers


@dataclass(frozen=True)
class EquirectangularCamera(CentralCamera):
    """Full-sphere latlong camera (usually width = 2 * height)."""

    width: int
    """Image width, pixels (360 degrees of longitude)."""
    height: int
    """Image height, pixels (180 degrees of latitude)."""

    def unproject(self, pixels: Float[Tensor, "n 2"]) -> tuple[Float[Tensor, "n 3"], Bool[Tensor, " n"]]:
        """Pixels -> unit directions (OpenCV camera axes); every pixel is valid."""
        lon = math.pi * (2.0 * pixels[:, 0] / self.width - 1.0)
        polar = math.pi * pixels[:, 1] / self.height
        sin_polar = torch.sin(polar)
        directions = torch.stack([torch.sin(lon) * sin_polar, -torch.cos(polar), torch.cos(lon) * sin_polar], -1)
        return directions, torch.ones(len(pixels), dtype=torch.bool, device=pixels.device)

    def project(self, points: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 2"], Bool[Tensor, " n"]]:
        """Camera-frame points -> pixels, u in (0, W], v in [0, H]; valid unless the point is the centre."""
        norm = points.norm(dim=-1)
        unit = points / norm.clamp_min(1e-30)[:, None]
        lon = torch.atan2(unit[:, 0], unit[:, 2])  # (-pi, pi]
        polar = torch.acos((-unit[:, 1]).clamp(-1.0, 1.0))  # [0, pi]
        pixels = torch.stack([(lon / math.pi + 1.0) * self.width / 2.0, polar / math.pi * self.height], dim=-1)
        return pixels, norm > 0


def reproject_image(
    image: np.ndarray,  # [H_s, W_s, C] or [H_s, W_s], any float/uint8 dtype
    source,
    target,
    interpolation: int | None = None,
    fill: float = 0.0,
) -> np.ndarray:  # [H_t, W_t, C] (or [H_t, W_t])
    """Resample an image of a central ``source`` camera into a ``target`` camera at the same centre and
    orientation (equirect -> cubemap faces, cubemap -> equirect, fisheye -> perspective, ...), with cv2.remap.

    Target pixels whose ray the source does not see get ``fill``. Equirectangular sources wrap across the seam.
    """
    import cv2  # heavy: OpenCV loads only when an image is resampled

    if interpolation is None:
        interpolation = cv2.INTER_LINEAR
    directions, valid_t = target.unproject(pixel_centers(target, None, torch.float64))
    pixels, valid_s = source.project(directions)
    pixels = pixels.numpy() - 0.5  # cv2.remap samples at integer pixel centres
    ok = (valid_t & valid_s).numpy()
    map_x = np.where(ok, pixels[:, 0], -1e6).reshape(target.height, target.width).astype(np.float32)
    map_y = np.where(ok, pixels[:, 1], -1e6).reshape(target.height, target.width).astype(np.float32)
    if isinstance(source, EquirectangularCamera):  # wrap columns across the seam, clamp rows at the poles
        pad = ((1, 1), (0, 0)) + ((0, 0),) * (image.ndim - 2)
        image = np.pad(np.pad(image, pad, mode="edge"), (pad[1], pad[0]) + pad[2:], mode="wrap")
        map_x = (np.mod(map_x, source.width) + 1.0).astype(np.float32)
        map_y = np.clip(map_y + 1.0, 0.0, source.height + 1.0).astype(np.float32)
    out = cv2.remap(
        np.ascontiguousarray(image), map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )
    out = out.reshape((target.height, target.width) + image.shape[2:])
    out[~ok.reshape(target.height, target.width)] = fill
    return out


def camera_for_path(camera_type: str, width: int, height: int, fov_y_deg: float):
    """The camera nerfstudio's ``ns-render camera-path`` builds for one frame of a camera_path.json."""
    if camera_type == "perspective":
        return PerspectiveCamera.from_fov(width, height, fov_y_deg)
    if camera_type == "fisheye":
        return FisheyeCamera.from_fov(width, height, fov_y_deg)
    if camera_type == "equirectangular":
        return EquirectangularCamera(int(width), int(height))
    raise ConfigError(f"camera_type={camera_type!r}: expected perspective, fisheye or equirectangular")
