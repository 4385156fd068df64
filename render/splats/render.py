"""Frames of any render camera from Gaussian splats (``nerfstage render RUN --splats scene.ply``).

The splats live in the run's **dataset** frame (:mod:`.model`); render paths and run cameras live in the
normalised scene frame, so each pose is mapped back with :func:`dataset_from_scene` (the inverse of
``SceneTransform.apply``; the scale does not change what a camera sees, and depths come out in dataset units, as
the NeRF render's ``depth``).

* A pinhole :class:`~nerfstage.core.cameras.PerspectiveCamera` without distortion is rasterised directly.
* Every other central camera (equirectangular, fisheye, cubemap, distorted perspective) is rendered as the six
  90-degree faces of a cube around the camera (``render.cubemap``'s faces and ``CubemapCamera.project``), then
  each output pixel's ray (the camera's own ``unproject``) samples its face bilinearly (clamped at the face
  edge, so faces never bleed into each other). Orthographic cameras and normal maps are not available from
  splats (ConfigError).

A thin lens is ignored (splats render pinhole).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ...core.cameras import OrthographicCamera, PerspectiveCamera
from ...core.errors import ConfigError
from ...core.geometry import convert_camera_axes
from ...core.rays import pixel_centers
from ..cubemap import CubemapCamera, face_rotations
from ..equirect import EquirectangularCamera
from .model import GaussianSplats
from .raster import RasterOptions, SplatView, render_splats

MAX_FACE = 4096
"""Largest cube face rendered for a panoramic frame, pixels."""


def dataset_from_scene(world_from_cam: np.ndarray, scene) -> np.ndarray:
    """[4, 4] camera-to-world in the normalised frame of ``scene`` (a SceneTransform) -> the dataset frame."""
    linear, offset = np.asarray(scene.transform)[:, :3], np.asarray(scene.transform)[:, 3]
    inverse = np.linalg.inv(linear)
    out = np.array(world_from_cam, dtype=np.float64, copy=True)[:4]
    out[:3, :3] = inverse @ out[:3, :3]
    out[:3, 3] = inverse @ (out[:3, 3] / scene.scale - offset)
    return out


def is_direct(camera) -> bool:
    """True for the cameras the rasteriser draws directly (undistorted pinhole)."""
    return isinstance(camera, PerspectiveCamera) and not camera.has_distortion


def face_size(camera) -> int:
    """Cube-face side for ``camera``: the faces' pixels per radian at their centre (side / 2) are at least the
    camera's (equirect W / 2 pi; focal length of a fisheye or perspective camera)."""
    if isinstance(camera, CubemapCamera):
        side = float(camera.face_size)
    elif isinstance(camera, EquirectangularCamera):
        side = camera.width / math.pi
    elif hasattr(camera, "fx"):
        side = 2.0 * max(camera.fx, camera.fy)
    else:
        side = max(camera.width, camera.height) / 2.0
    return int(min(MAX_FACE, max(16, math.ceil(side))))


def _pinhole(splats: GaussianSplats, view: SplatView, background, options) -> dict[str, Tensor]:
    out = render_splats(splats, view, background, options, depth=True)
    alpha = out.alpha.detach()
    depth = torch.where(alpha > 1e-6, out.depth.detach() / alpha.clamp_min(1e-6), torch.zeros_like(alpha))
    return {"rgb": out.image.detach(), "alpha": alpha, "depth": depth}


def cube_faces(splats: GaussianSplats, world_from_cam: np.ndarray, size: int, background,
               options) -> Tensor:
    """[6, size, size, 5] rgb, alpha and ray depth of the six faces (FACE_NAMES order) around the camera."""
    world_from_rig_cv = convert_camera_axes(world_from_cam)
    centre = np.arange(size) + 0.5 - size / 2.0
    u, v = np.meshgrid(centre / (size / 2.0), centre / (size / 2.0))
    ray_factor = torch.as_tensor(np.sqrt(u * u + v * v + 1.0), dtype=torch.float32)  # z-depth -> ray depth
    faces = []
    for rig_from_face in face_rotations():
        world_from_face_cv = world_from_rig_cv.copy()
        world_from_face_cv[:3, :3] = world_from_rig_cv[:3, :3] @ rig_from_face
        view = SplatView(convert_camera_axes(world_from_face_cv), size / 2.0, size / 2.0, size / 2.0, size / 2.0,
                         size, size)
        out = _pinhole(splats, view, background, options)
        depth = out["depth"].cpu() * ray_factor
        faces.append(torch.cat([out["rgb"].cpu(), out["alpha"].cpu()[..., None], depth[..., None]], dim=-1))
    return torch.stack(faces)


def sample_faces(faces: Tensor, camera) -> tuple[Tensor, Tensor]:
    """Resample cube ``faces`` [6, S, S, C] into ``camera``'s pixels -> ([H, W, C], valid [H, W])."""
    size = faces.shape[1]
    cube = CubemapCamera(size, "strip")
    directions, valid = camera.unproject(pixel_centers(camera, None, torch.float64))
    face = cube.face_of(directions)
    pixels, seen = cube.project(directions)
    local = pixels - torch.stack([face.to(pixels.dtype) * size, torch.zeros_like(pixels[:, 0])], dim=-1)
    grid = (local / (size / 2.0) - 1.0).float()  # [n, 2] in [-1, 1], align_corners=False convention
    out = torch.zeros(len(directions), faces.shape[-1])
    for k in range(6):
        sel = torch.nonzero(face == k)[:, 0]
        if len(sel):
            image = faces[k].permute(2, 0, 1)[None]  # [1, C, S, S]
            sampled = torch.nn.functional.grid_sample(image, grid[sel][None, None], mode="bilinear",
                                                      padding_mode="border", align_corners=False)
            out[sel] = sampled[0, :, 0].T
    ok = valid & seen
    return out.reshape(camera.height, camera.width, -1), ok.reshape(camera.height, camera.width)


def render_splat_image(splats: GaussianSplats, camera, world_from_cam: np.ndarray, scene=None,
                       outputs=("rgb", "alpha", "depth"), background=(1.0, 1.0, 1.0),
                       options: RasterOptions | None = None) -> dict[str, np.ndarray]:
    """``camera`` at ``world_from_cam`` ([4, 4], OpenGL axes, normalised frame of ``scene``; the dataset frame
    when ``scene`` is None) -> float32 numpy "rgb" [H, W, 3] over ``background``, "alpha" [H, W], "depth" [H, W]
    (dataset units; z-depth for a pinhole, ray depth otherwise, 0 where nothing is seen), as ``render_image``."""
    if "normal" in outputs:
        raise ConfigError("--output normal: splat renders have no normals; use rgb, depth or alpha")
    if isinstance(camera, OrthographicCamera):
        raise ConfigError("camera orthographic: splats render central cameras only (perspective, fisheye, "
                          "equirectangular, cubemap)")
    pose = dataset_from_scene(world_from_cam, scene) if scene is not None else np.asarray(world_from_cam, float)
    with torch.no_grad():
        if is_direct(camera):
            out = _pinhole(splats, SplatView.of(camera, pose), background, options)
            result = {k: v.cpu().numpy().astype(np.float32) for k, v in out.items()}
        else:
            faces = cube_faces(splats, pose, face_size(camera), background, options)
            image, valid = sample_faces(faces, camera)
            image[~valid] = torch.tensor([*background, 0.0, 0.0], dtype=image.dtype)
            result = {"rgb": image[..., :3].numpy(), "alpha": image[..., 3].numpy(), "depth": image[..., 4].numpy()}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in result.items() if k in outputs}
