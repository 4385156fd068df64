"""Render one camera at one pose through a trained model, in chunks of at most ``max_rays_per_chunk`` rays.

Memory: the model only ever sees ``max_rays_per_chunk`` rays at once, so any resolution renders in a fixed
budget of model memory; the per-frame output buffers are ``H * W * 8`` floats. Pixels the camera does not see
(unused cubemap cells, fisheye beyond its angle) are never sent to the model: they get the background colour,
alpha 0, depth 0 and normal 0.

Outputs (numpy float32):

* ``rgb`` [H, W, 3]: the model's colour over ``background`` -- display-referred sRGB-encoded values, see
  ``pipeline.py`` for the colour convention.
* ``alpha`` [H, W]: accumulated opacity.
* ``depth`` [H, W]: expected termination distance times ``depth_scale`` -- along the optical axis (z-depth)
  for perspective and orthographic cameras, along the ray for fisheye and panoramas (``depth_mode="auto"``).
* ``normal`` [H, W, 3]: unit world-frame surface normals from the depth map (cross product of the
  neighbouring surface points, central differences, facing the camera); 0 where no neighbour is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..core.cameras import OrthographicCamera, PerspectiveCamera
from ..core.errors import ConfigError
from ..core.rays import axial_factors, generate_ray_batch
from ..nerf.chunked import model_device, render_rays_chunked
from ..nerf.config import MAX_RAYS_PER_CHUNK

OUTPUTS: tuple[str, ...] = ("rgb", "depth", "alpha", "normal")
DEFAULT_MEMORY_BUDGET = 4 << 30
"""Default RAM budget of the buffers a command allocates by image size (frames, panoramas, plates): 4 GiB."""


def check_memory_budget(what: str, need: int, budget: int, hint: str) -> int:
    """``need`` bytes, or ConfigError (field ``memory_budget_bytes``) saying ``what`` needs more than ``budget``
    and how to fit (``hint``): the one check every command that allocates by size runs before any work."""
    if need > budget:
        raise ConfigError(f"{what} needs about {need / 2**30:.2f} GiB, over the {budget / 2**30:.2f} GiB memory "
                          f"budget; {hint}", field="memory_budget_bytes")
    return need
DepthMode = Literal["auto", "z", "ray"]


@dataclass(frozen=True)
class ImageOptions:
    """How a frame is rendered (independent of the camera and the path)."""

    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Pixels whose rays are generated and rendered at once (the memory budget; see
    ``nerf.config.MAX_RAYS_PER_CHUNK``)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the scene and in unseen pixels, sRGB-encoded in [0, 1] (white as the Blender protocol)."""
    lens_samples: int = 1
    """Thin-lens samples averaged per pixel for depth of field (1 = one sample; pinholes need only 1)."""
    depth_mode: DepthMode = "auto"
    """``z``: along the optical axis; ``ray``: along the ray; ``auto``: z for perspective/orthographic cameras."""
    depth_scale: float = 1.0
    """Depth multiplier (``1 / dataparser scale`` gives depth in dataset units, e.g. metres)."""

    def __post_init__(self):
        for name in ("max_rays_per_chunk", "lens_samples"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: expected a positive number", field=name)
        if self.depth_mode not in ("auto", "z", "ray"):
            raise ConfigError(f"depth_mode={self.depth_mode!r}: expected auto, z or ray", field="depth_mode")


def uses_z_depth(camera, mode: DepthMode) -> bool:
    """Whether depth is measured along the optical axis for this camera."""
    if mode == "auto":
        return isinstance(camera, (PerspectiveCamera, OrthographicCamera))
    return mode == "z"


def _render_chunk(model, camera, pose, indices: Tensor, options: ImageOptions) -> dict[str, Tensor]:
    """rgb [n, 3] (background where invalid), alpha [n], ray depth [n] and valid [n] of one chunk of pixels,
    averaged over the lens samples; rays are generated on the model's device."""
    device = model_device(model)
    bg = torch.tensor(options.background, dtype=torch.float32, device=device)
    rgb = torch.zeros(len(indices), 3, device=device)
    alpha, depth = torch.zeros(len(indices), device=device), torch.zeros(len(indices), device=device)
    for sample in range(options.lens_samples):
        rays = generate_ray_batch(camera, pose, indices.to(device), sample=sample, device=device)
        keep = rays.valid.nonzero().squeeze(-1)
        rgb[~rays.valid] += bg
        if len(keep):
            out = render_rays_chunked(model, rays.origins[keep], rays.directions[keep], bg, options.max_rays_per_chunk)
            rgb[keep] += out["rgb"]
            alpha[keep] += out["accumulation"]
            depth[keep] += out["depth"]
    scale = 1.0 / options.lens_samples
    return {"rgb": rgb * scale, "alpha": alpha * scale, "depth": depth * scale, "valid": rays.valid}


@torch.no_grad()
def render_pixels(model, camera, world_from_cam: np.ndarray, pixel_indices: Tensor | None = None,
                  options: ImageOptions | None = None, progress=None) -> dict[str, np.ndarray]:
    """Render the flat pixel indices ``pixel_indices`` ([P] int64, row-major; all pixels when None) of ``camera``
    at ``world_from_cam`` ([4, 4], OpenGL axes, normalised frame), ``max_rays_per_chunk`` pixels at a time:
    "rgb" [P, 3] (over ``background``; background where the camera sees nothing), "alpha" [P], "depth" [P] (along
    the ray) and "valid" [P] as numpy arrays. ``progress(n)`` after every chunk with the pixels finished."""
    options = options or ImageOptions()
    model.eval()
    if pixel_indices is None:
        pixel_indices = torch.arange(camera.width * camera.height, dtype=torch.int64)
    total = len(pixel_indices)
    out = {"rgb": np.empty((total, 3), np.float32), "alpha": np.empty(total, np.float32),
           "depth": np.empty(total, np.float32), "valid": np.empty(total, bool)}
    for start in range(0, total, options.max_rays_per_chunk):
        indices = pixel_indices[start:start + options.max_rays_per_chunk]
        part = _render_chunk(model, camera, world_from_cam, indices, options)
        for key, value in part.items():
            out[key][start:start + len(indices)] = value.cpu().numpy()
        if progress is not None:
            progress(len(indices))
    return out


def render_image(model, camera, world_from_cam: np.ndarray, outputs=OUTPUTS, options: ImageOptions | None = None,
                 progress=None) -> dict[str, np.ndarray]:
    """Render ``camera`` at ``world_from_cam`` ([4, 4], OpenGL axes, normalised frame) -> the ``outputs`` asked
    for (subset of ``rgb depth alpha normal``) as float32 numpy arrays (see the module docstring).

    ``progress(n)`` is called with the number of rays finished after each chunk (for progress bars)."""
    options = options or ImageOptions()
    unknown = sorted(set(outputs) - set(OUTPUTS))
    if unknown:
        raise ConfigError(f"outputs {unknown}: expected some of {', '.join(OUTPUTS)}")
    h, w = camera.height, camera.width
    pixels = render_pixels(model, camera, world_from_cam, None, options, progress)
    depth, valid = pixels["depth"], pixels["valid"]
    result = {"rgb": pixels["rgb"].reshape(h, w, 3), "alpha": pixels["alpha"].reshape(h, w)}
    if "normal" in outputs:
        result["normal"] = depth_normals(camera, world_from_cam, depth.reshape(h, w), valid.reshape(h, w))
    if "depth" in outputs:
        if uses_z_depth(camera, options.depth_mode):
            depth = depth * axial_factors(camera).numpy()
        depth[~valid] = 0.0
        result["depth"] = (depth * np.float32(options.depth_scale)).reshape(h, w)
    return {k: v for k, v in result.items() if k in outputs}


def surface_points(camera, world_from_cam: np.ndarray, ray_depth: Float[np.ndarray, "h w"]) -> np.ndarray:
    """[H, W, 3] world points where each pixel's central ray terminates (``ray_depth`` along the unit ray)."""
    rays = generate_ray_batch(camera, world_from_cam, dtype=torch.float64)
    points = rays.origins + rays.directions * torch.from_numpy(ray_depth.astype(np.float64)).reshape(-1, 1)
    return points.reshape(camera.height, camera.width, 3).numpy()


def depth_normals(camera, world_from_cam: np.ndarray, ray_depth: Float[np.ndarray, "h w"],
                  valid: np.ndarray) -> Float[np.ndarray, "h w 3"]:
    """Unit world normals from the depth map: cross product of the central differences of the surface points,
    oriented towards the camera; 0 where the differences are degenerate or touch an invalid pixel."""
    points = surface_points(camera, world_from_cam, ray_depth)  # [H, W, 3]
    good = valid & (ray_depth > 0)
    padded = np.pad(points, ((1, 1), (1, 1), (0, 0)), mode="edge")
    ok = np.pad(good, 1, mode="edge")
    du = padded[1:-1, 2:] - padded[1:-1, :-2]  # [H, W, 3] along image x
    dv = padded[2:, 1:-1] - padded[:-2, 1:-1]  # along image y
    normal = np.cross(dv, du)
    rays = generate_ray_batch(camera, world_from_cam, dtype=torch.float64).directions.reshape(points.shape).numpy()
    normal *= -np.sign(np.einsum("hwc,hwc->hw", normal, rays))[..., None]  # face the camera
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    neighbours = ok[1:-1, 2:] & ok[1:-1, :-2] & ok[2:, 1:-1] & ok[:-2, 1:-1] & good
    normal = np.where((length > 1e-12) & neighbours[..., None], normal / np.maximum(length, 1e-12), 0.0)
    return normal.astype(np.float32)
