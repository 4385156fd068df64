"""World-space ray batches of any camera model, by pixel index, so that a frame renders in chunks of any size:
the one pixel -> world ray path of training, evaluation and rendering (camera models in ``cameras.py``).

``world_from_cam`` is a camera-to-world [4, 4] with **OpenGL camera axes** (nerfstudio's ``camera_to_world``);
it is turned into OpenCV axes with ``convert_camera_axes`` (the project's one conversion) before the camera
model's OpenCV-axes rays are rotated into the world.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .errors import ConfigError
from .geometry import convert_camera_axes


class RayBatch(NamedTuple):
    """Rays of a chunk of pixels, in the world (normalised scene) frame."""

    origins: Float[Tensor, "n 3"]
    """Ray origins."""
    directions: Float[Tensor, "n 3"]
    """Unit ray directions."""
    valid: Bool[Tensor, " n"]
    """False where the camera sees nothing (unused cubemap cells, fisheye beyond its angle, ...)."""
    pixel_indices: Int[Tensor, " n"]
    """Flat row-major pixel index (row * width + col) of each ray."""


def pixel_centers(
    camera, pixel_indices: Int[Tensor, " n"] | None = None, dtype=torch.float32, device=None
) -> Tensor:
    """Continuous coordinates (col + 0.5, row + 0.5) of flat pixel indices (all pixels when None) -> [n, 2]."""
    if pixel_indices is None:
        pixel_indices = torch.arange(camera.width * camera.height, dtype=torch.int64, device=device)
    pixel_indices = torch.as_tensor(pixel_indices, dtype=torch.int64, device=device)
    cols = torch.remainder(pixel_indices, camera.width)
    rows = torch.div(pixel_indices, camera.width, rounding_mode="floor")
    return torch.stack([cols, rows], dim=-1).to(dtype) + 0.5


def generate_ray_batch(
    camera,
    world_from_cam: np.ndarray | Tensor,  # [4, 4] (or [3, 4]) OpenGL camera axes
    pixel_indices: Int[Tensor, " n"] | None = None,
    sample: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> RayBatch:
    """World rays through the centres of ``pixel_indices`` (all pixels, row-major, when None).

    ``sample`` selects another set of thin-lens samples of the same pixels (average several for smooth bokeh).
    Computed in ``dtype`` (float32: pixels to ~2e-4 px at 1080p, ~1e-3 px at 16K; float64 for exact geometry)
    on ``device`` (default: where ``pixel_indices`` live, else CPU); directions are unit length.
    """
    if device is None:
        device = pixel_indices.device if isinstance(pixel_indices, Tensor) else torch.device("cpu")
    if pixel_indices is None:
        pixel_indices = torch.arange(camera.width * camera.height, dtype=torch.int64, device=device)
    pixel_indices = torch.as_tensor(pixel_indices, dtype=torch.int64, device=device)
    if len(pixel_indices) and (pixel_indices.min() < 0 or pixel_indices.max() >= camera.width * camera.height):
        raise ConfigError(f"pixel indices must lie in [0, {camera.width * camera.height}) for this camera")
    origins_cam, directions_cam, valid = camera.rays(pixel_centers(camera, pixel_indices, dtype), pixel_indices, sample)
    world_from_cv = torch.as_tensor(_checked_pose(world_from_cam), dtype=dtype, device=device)
    rotation, translation = world_from_cv[:3, :3], world_from_cv[:3, 3]
    origins = origins_cam @ rotation.T + translation
    directions = torch.nn.functional.normalize(directions_cam @ rotation.T, dim=-1)
    return RayBatch(origins, directions, valid, pixel_indices)


def generate_rays(
    camera,
    world_from_cam: np.ndarray | Tensor,
    pixel_indices: Int[Tensor, " n"] | None = None,
    sample: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
    """(origins [n, 3], unit directions [n, 3]) in the world frame; see ``generate_ray_batch``."""
    batch = generate_ray_batch(camera, world_from_cam, pixel_indices, sample, dtype, device)
    return batch.origins, batch.directions


def axial_factors(camera, pixel_indices: Int[Tensor, " n"] | None = None) -> Float[Tensor, " n"]:
    """Per-pixel factor turning the renderer's depth (distance along the unit ray) into z-depth (distance along
    the optical axis), the usual ``Z`` of perspective EXR renders: the camera-frame z of the pinhole ray.

    1 for orthographic cameras; for panoramas (equirect, cubemap) z-depth is not defined: keep ray distances.
    """
    _, directions, _ = camera.rays(pixel_centers(camera, pixel_indices, torch.float64))
    return directions[:, 2].to(torch.float32)


def pixel_chunks(camera, max_rays_per_chunk: int) -> Iterator[Int[Tensor, " n"]]:
    """Flat pixel indices of a frame in consecutive chunks of at most ``max_rays_per_chunk``."""
    if int(max_rays_per_chunk) < 1:
        raise ConfigError(f"max_rays_per_chunk={max_rays_per_chunk}: expected a positive number of rays")
    total = camera.width * camera.height
    for start in range(0, total, int(max_rays_per_chunk)):
        yield torch.arange(start, min(start + int(max_rays_per_chunk), total), dtype=torch.int64)


def _checked_pose(world_from_cam) -> np.ndarray:  # -> [4, 4] OpenCV axes
    pose = np.asarray(world_from_cam.detach().cpu() if isinstance(world_from_cam, Tensor) else world_from_cam,
                      dtype=np.float64)
    if pose.shape not in ((4, 4), (3, 4)) or not np.isfinite(pose).all():
        raise ConfigError(f"world_from_cam must be a finite 4x4 or 3x4 matrix, got shape {pose.shape}")
    full = np.eye(4)
    full[: pose.shape[0]] = pose
    return convert_camera_axes(full)
