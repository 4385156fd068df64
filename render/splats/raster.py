"""Differentiable tile rasteriser of 3D Gaussian splats (EWA splatting, 3DGS's rules), on the CPU or with gsplat.

One render is two steps:

1. :func:`project_splats` (the Gaussians inside 1.3x the frustum only): each Gaussian's mean goes into the
   view's OpenCV camera frame (``world_from_cam`` is stored with OpenGL axes like every pose here;
   :func:`nerfstage.core.geometry.convert_camera_axes` converts it), its covariance ``R S S R^T`` through the
   local affine approximation of the pinhole projection (EWA: ``J W Sigma W^T J^T`` plus 0.3 px^2 low-pass, the
   tangent clamped to 1.3x the field of view as 3DGS does) into a 2-D conic; its colour is the SH of the direction
   from the camera centre to the mean; its 3-sigma radius gives the 16x16 tiles it touches. Two
   implementations: the C++/OpenMP kernel (``project_cpu.cpp``, forward and backward) and the torch reference
   (autograd).
2. Compositing: the Gaussians of each tile, nearest first, are blended front to back per pixel centre
   ``(col + 0.5, row + 0.5)`` with ``alpha = min(0.99, opacity * exp(power))``, skipped below 1/255, stopping
   before the transmittance falls under 1e-4, then the background. Two implementations with the same maths:
   the C++/OpenMP kernel (``raster_cpu.cpp``: forward and backward, built on first use and cached like the hash
   grid) and the pure-torch reference :func:`composite_torch` (autograd; dense per tile row, for tests and as
   the fallback). ``backend="cpp"`` runs both C++ kernels; gradients reach means, quats, log_scales,
   opacity_logits (the sigmoid, in torch) and sh.

With ``backend="gsplat"`` (or ``auto`` on CUDA when ``import gsplat`` works) gsplat's ``rasterization`` does both
steps; it is never required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ...core.errors import ConfigError
from ...core.geometry import convert_camera_axes
from ...nerf.sh import sh_encode
from .backends import CPP, GSPLAT, PROJECT
from .model import GaussianSplats

TILE = 16
"""Tile side, pixels (the C++ kernel's ``kTile``)."""
MIN_ALPHA = 1.0 / 255.0
MAX_ALPHA = 0.99
MIN_TRANSMITTANCE = 1e-4
Backend = Literal["auto", "cpp", "torch", "gsplat"]



@dataclass(frozen=True)
class RasterOptions:
    """How splats are rasterised."""

    backend: Backend = "auto"
    """auto (gsplat for CUDA tensors when it imports, else the C++ kernel, else torch) | cpp | torch | gsplat."""
    near: float = 0.01
    """Gaussians whose centre is closer than this (camera z, the splats' units) are not drawn."""
    blur_px2: float = 0.3
    """Low-pass dilation added to every 2-D covariance, pixels^2 (3DGS's 0.3)."""


@dataclass(frozen=True)
class SplatView:
    """A pinhole view of the splats (no distortion; other cameras go through cube faces, see ``render.py``)."""

    world_from_cam: np.ndarray
    """[4, 4] camera-to-world, OpenGL axes, in the splats' frame."""
    fx: float
    """Focal length x, pixels."""
    fy: float
    """Focal length y, pixels."""
    cx: float
    """Principal point x, pixels (pixel centres at col + 0.5)."""
    cy: float
    """Principal point y, pixels."""
    width: int
    """Image width, pixels."""
    height: int
    """Image height, pixels."""

    @classmethod
    def of(cls, camera, world_from_cam: np.ndarray) -> SplatView:
        """The view of a ``PerspectiveCamera`` (its distortion ignored) at ``world_from_cam`` [4, 4]."""
        return cls(np.asarray(world_from_cam, np.float64), float(camera.fx), float(camera.fy), float(camera.cx),
                   float(camera.cy), int(camera.width), int(camera.height))

    @property
    def tiles(self) -> tuple[int, int]:
        return (self.width + TILE - 1) // TILE, (self.height + TILE - 1) // TILE


@dataclass
class Projection:
    """The splats in the view's frustum (m rows, those not drawn with ``radii == 0``)."""

    ids: Int[Tensor, " m"]
    """Index of each row in the splats (the Gaussians whose centre is in front and inside 1.3x the frustum)."""
    means2d: Float[Tensor, "n 2"]
    """Pixel position of each mean (differentiable; the densifier reads its gradient)."""
    conics: Float[Tensor, "n 3"]
    """a, b, c of the inverse 2-D covariance."""
    colors: Float[Tensor, "n 3"]
    """SH colour towards the camera, max(. + 0.5, 0)."""
    opacities: Float[Tensor, " n"]
    """sigmoid(opacity_logits)."""
    depths: Float[Tensor, " n"]
    """Camera z of each mean."""
    radii: Int[Tensor, " n"]
    """3-sigma radius, pixels; 0 = not drawn."""
    rects: Int[Tensor, "n 4"]
    """Tiles touched: x0, y0, x1, y1 (half-open), int32."""
    order: Int[Tensor, " m"]
    """Indices of the drawn Gaussians, nearest first."""


@dataclass
class SplatRender:
    """One rendered view."""

    image: Float[Tensor, "h w 3"]
    """Colour over the background (sRGB-encoded like the splats' SH)."""
    alpha: Float[Tensor, "h w"]
    """Coverage, 1 - final transmittance."""
    depth: Float[Tensor, "h w"] | None
    """Alpha-weighted camera z (divide by alpha for the surface depth); None unless asked for."""
    projection: Projection | None
    """The projection used (None for gsplat, which keeps its own)."""
    means2d: Tensor | None = None
    """The differentiable 2-D means of the rows ``ids`` ([m, 2], ``projection.means2d``, or gsplat's)."""
    radii: Tensor | None = None
    """Radii, pixels, of every splat [n] (0 = not drawn)."""
    ids: Tensor | None = None
    """[m] the splats whose 2-D means are in ``means2d``."""


def quat_to_rotmat(quats: Float[Tensor, "n 4"]) -> Float[Tensor, "n 3 3"]:
    """Rotation matrices of quaternions w, x, y, z (normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def cam_from_world_cv(view: SplatView, like: Tensor) -> tuple[Float[Tensor, "3 3"], Float[Tensor, " 3"]]:
    """Rotation and translation of world -> camera (OpenCV axes) in ``like``'s dtype and device."""
    world_from_cv = convert_camera_axes(np.asarray(view.world_from_cam, np.float64)[:4])
    rotation = world_from_cv[:3, :3].T
    translation = -rotation @ world_from_cv[:3, 3]
    return (torch.as_tensor(rotation, dtype=like.dtype, device=like.device),
            torch.as_tensor(translation, dtype=like.dtype, device=like.device))


def sh_colors(splats: GaussianSplats, centre: Float[Tensor, " 3"]) -> Float[Tensor, "n 3"]:
    """Colour of each Gaussian seen from ``centre``: max(sum_k sh_k Y_k(d) + 0.5, 0), d = unit(mean - centre)."""
    directions = torch.nn.functional.normalize(splats.means - centre, dim=-1)
    basis = sh_encode(directions, splats.sh_degree + 1)  # [n, k]
    return torch.clamp_min(torch.bmm(basis[:, None, :], splats.sh)[:, 0] + 0.5, 0.0)


def frustum_ids(means: Tensor, view: SplatView, rotation: Tensor, translation: Tensor, near: float) -> Tensor:
    """[m] indices of the means in front of ``near`` and inside 1.3x the view's frustum (3DGS's culling)."""
    with torch.no_grad():
        cam = means @ rotation.T + translation
        z = cam[:, 2]
        lim = 1.3
        x, y = cam[:, 0] / z.clamp_min(near), cam[:, 1] / z.clamp_min(near)
        inside = (z > near) & (x >= -lim * (view.cx + 0.5 * view.width) / view.fx)
        inside &= x <= lim * (1.5 * view.width - view.cx) / view.fx
        inside &= (y >= -lim * (view.cy + 0.5 * view.height) / view.fy) & (y <= lim * (1.5 * view.height - view.cy) / view.fy)
        return torch.nonzero(inside)[:, 0]


def tangent_limits(view: SplatView) -> tuple[float, float, float, float]:
    """Clamp range of x/z and y/z in the EWA Jacobian: 1.3x the image's extent (3DGS)."""
    lim = 1.3
    return (-lim * view.cx / view.fx, lim * (view.width - view.cx) / view.fx,
            -lim * view.cy / view.fy, lim * (view.height - view.cy) / view.fy)


def _covariance_2d(splats: GaussianSplats, view: SplatView, rotation: Tensor, cam: Tensor, z: Tensor,
                   blur: float) -> Float[Tensor, "n 2 2"]:
    """EWA: J W Sigma W^T J^T + blur I, with the view tangent clamped (``tangent_limits``)."""
    lo_x, hi_x, lo_y, hi_y = tangent_limits(view)
    rx = (cam[:, 0] / z).clamp(lo_x, hi_x)
    ry = (cam[:, 1] / z).clamp(lo_y, hi_y)
    zeros = torch.zeros_like(z)
    jac = torch.stack([view.fx / z, zeros, -view.fx * rx / z, zeros, view.fy / z, -view.fy * ry / z],
                      dim=-1).reshape(-1, 2, 3)
    m = quat_to_rotmat(splats.quats) * torch.exp(splats.log_scales)[:, None, :]  # [n, 3, 3] = R S
    t = jac @ rotation[None] @ m  # [n, 2, 3]
    return t @ t.transpose(1, 2) + blur * torch.eye(2, dtype=z.dtype, device=z.device)


def _project_torch(splats: GaussianSplats, view: SplatView, rotation: Tensor, translation: Tensor, centre: Tensor,
                   options: RasterOptions) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The reference projection: means2d, conics, colors, depths, (a, b, c, det) of the covariance."""
    cam = splats.means @ rotation.T + translation  # [m, 3] OpenCV camera frame
    depth = cam[:, 2]
    z = depth.clamp_min(options.near)
    cov = _covariance_2d(splats, view, rotation, cam, z, options.blur_px2)
    a, b, c = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
    det = a * c - b * b
    safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / safe, -b / safe, a / safe], dim=-1)
    means2d = torch.stack([view.fx * cam[:, 0] / z + view.cx, view.fy * cam[:, 1] / z + view.cy], dim=-1)
    return means2d, conics, sh_colors(splats, centre), depth, torch.stack([a, b, c, det], dim=-1).detach()


def _project_cpp(splats: GaussianSplats, view: SplatView, rotation: Tensor, translation: Tensor, centre: Tensor,
                 options: RasterOptions) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .project_cpp import project_cpp  # the C++ projection, loaded on first use

    k = [view.fx, view.fy, view.cx, view.cy, *tangent_limits(view), options.blur_px2]
    return project_cpp(splats.means, splats.quats, splats.log_scales, splats.sh, rotation, translation, centre, k)


def _tile_rects(means2d: Tensor, radii: Tensor, view: SplatView) -> Int[Tensor, "n 4"]:
    """Tiles whose pixel centres lie within ``radii`` of each mean (half-open x0, y0, x1, y1), int32."""
    m = means2d.detach().double()
    r = radii.double()
    tiles_x, tiles_y = view.tiles
    x0 = torch.floor((m[:, 0] - r - 0.5) / TILE).clamp(0, tiles_x)
    x1 = (torch.floor((m[:, 0] + r - 0.5) / TILE) + 1).clamp(0, tiles_x)
    y0 = torch.floor((m[:, 1] - r - 0.5) / TILE).clamp(0, tiles_y)
    y1 = (torch.floor((m[:, 1] + r - 0.5) / TILE) + 1).clamp(0, tiles_y)
    return torch.stack([x0, y0, x1, y1], dim=-1).to(torch.int32)


def project_splats(splats: GaussianSplats, view: SplatView, options: RasterOptions | None = None,
                   native: bool = False) -> Projection:
    """Project the Gaussians in ``view``'s frustum (see the module docstring); differentiable in every splat field.
    ``native``: the C++ projection (``project_cpu.cpp``) instead of the torch reference."""
    options = options or RasterOptions()
    rotation, translation = cam_from_world_cv(view, splats.means)
    ids = frustum_ids(splats.means.detach(), view, rotation, translation, options.near)
    splats = splats.subset(ids)
    centre = torch.as_tensor(np.asarray(view.world_from_cam)[:3, 3], dtype=rotation.dtype, device=rotation.device)
    project = _project_cpp if native else _project_torch
    means2d, conics, colors, depth, cov = project(splats, view, rotation, translation, centre, options)
    with torch.no_grad():
        a, c, det = cov[:, 0], cov[:, 2], cov[:, 3]
        mid = 0.5 * (a + c)
        radius = torch.ceil(3.0 * torch.sqrt(mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))))
        radii = torch.where(det > 0, radius, torch.zeros_like(radius)).to(torch.int32)
        rects = _tile_rects(means2d, radii, view)
        radii = torch.where((rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1]), radii, 0)
        rects = torch.where((radii > 0)[:, None], rects, 0)
        drawn = torch.nonzero(radii > 0)[:, 0]
        order = drawn[torch.argsort(depth.detach()[drawn], stable=True)]
    return Projection(ids, means2d, conics, colors, torch.sigmoid(splats.opacity_logits), depth, radii, rects,
                      order)


def composite_torch(means2d: Tensor, conics: Tensor, features: Float[Tensor, "n c"], opacities: Tensor,
                    order: Tensor, rects: Tensor, width: int, height: int,
                    background: Float[Tensor, " c"]) -> tuple[Float[Tensor, "h w c"], Float[Tensor, "h w"]]:
    """The reference compositor (autograd): one tile row at a time, every pixel against every Gaussian of the
    row in depth order, with the C++ kernel's rules. Returns the image over ``background`` and alpha."""
    rows_img, rows_alpha = [], []
    for ty in range((height + TILE - 1) // TILE):
        rows = min(TILE, height - ty * TILE)
        idx = order[(rects[order, 1] <= ty) & (rects[order, 3] > ty)]  # [m] nearest first
        ys, xs = torch.meshgrid(torch.arange(ty * TILE, ty * TILE + rows, device=means2d.device),
                                torch.arange(width, device=means2d.device), indexing="ij")
        px = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).to(means2d.dtype) + 0.5  # [p, 2]
        tx = (xs.reshape(-1) // TILE)[:, None]
        in_tile = (rects[idx, 0][None] <= tx) & (tx < rects[idx, 2][None])  # [p, m]
        d = px[:, None, :] - means2d[idx][None]  # [p, m, 2]
        q = conics[idx]
        power = -0.5 * (q[:, 0] * d[..., 0] ** 2 + q[:, 2] * d[..., 1] ** 2) - q[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp(opacities[idx] * torch.exp(power.clamp_max(0.0)), max=MAX_ALPHA)
        alpha = torch.where(in_tile & (power <= 0) & (alpha >= MIN_ALPHA), alpha, torch.zeros_like(alpha))
        with torch.no_grad():
            keep = torch.cumprod(1.0 - alpha, dim=1) >= MIN_TRANSMITTANCE  # stop before T < 1e-4
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        trans = torch.cumprod(torch.cat([alpha.new_ones(len(alpha), 1), 1.0 - alpha], dim=1), dim=1)  # [p, m+1]
        image = (alpha * trans[:, :-1]) @ features[idx] + trans[:, -1:] * background[None]
        rows_img.append(image.reshape(rows, width, -1))
        rows_alpha.append(1.0 - trans[:, -1].reshape(rows, width))
    return torch.cat(rows_img, dim=0), torch.cat(rows_alpha, dim=0)


class _CompositeCpp(torch.autograd.Function):
    """Autograd wrapper of the C++ kernel (gradients for means2d, conics, features and opacities)."""

    @staticmethod
    def forward(ctx, means2d, conics, features, opacities, order, rects, width, height, background):  # type: ignore[override]
        ext = CPP.load()
        args = [t.detach().float().contiguous() for t in (means2d, conics, features, opacities)]
        bg = background.detach().float().contiguous()
        image, trans, count, offsets, lst = ext.splat_forward(*args, order.contiguous(), rects.contiguous(),
                                                              int(width), int(height), bg)
        ctx.save_for_backward(*args, rects, offsets, lst, trans, count, bg)
        return image, 1.0 - trans

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_image, grad_alpha):  # type: ignore[override]
        means2d, conics, features, opacities, rects, offsets, lst, trans, count, bg = ctx.saved_tensors
        if grad_image is None:
            grad_image = torch.zeros(*trans.shape, features.shape[1])
        if grad_alpha is None:
            grad_alpha = torch.zeros_like(trans)
        grads = CPP.load().splat_backward(means2d, conics, features, opacities, rects, offsets, lst, trans, count,
                                          bg, grad_image.float().contiguous(), grad_alpha.float().contiguous())
        return (*grads, None, None, None, None, None)


def choose_backend(backend: Backend, device: torch.device) -> str:
    """The backend that runs: ``auto`` -> gsplat (CUDA tensors, gsplat importable), else cpp, else torch."""
    if backend not in ("auto", "cpp", "torch", "gsplat"):
        raise ConfigError(f"splat raster backend={backend!r}: expected auto, cpp, torch or gsplat", field="backend")
    if backend == "gsplat":
        if device.type != "cuda":
            raise ConfigError("splat raster backend=gsplat needs CUDA tensors; use auto, cpp or torch on the CPU")
        GSPLAT.load()
        return "gsplat"
    if backend == "auto":
        if device.type == "cuda" and GSPLAT.available("rasterising with the C++/torch path instead"):
            return "gsplat"
        if device.type == "cpu" and CPP.available("rasterising with the pure-torch reference instead"):
            return "cpp"
        return "torch"
    return backend


def render_splats(splats: GaussianSplats, view: SplatView, background: Tensor | tuple = (1.0, 1.0, 1.0),
                  options: RasterOptions | None = None, depth: bool = False) -> SplatRender:
    """Render ``splats`` from ``view`` over ``background`` (sRGB [3]); differentiable in every splat field.
    ``depth``: also composite camera z (alpha-weighted, see ``SplatRender.depth``)."""
    options = options or RasterOptions()
    device = splats.means.device
    bg = torch.as_tensor(background, dtype=torch.float32, device=device).reshape(3)
    backend = choose_backend(options.backend, device)
    if backend == "gsplat":
        from .raster_gsplat import render_gsplat  # only with gsplat

        return SplatRender(*render_gsplat(splats, view, bg, options, depth))
    native = backend == "cpp" and PROJECT.available("projecting with the torch reference instead")
    proj = project_splats(splats, view, options, native)
    features = torch.cat([proj.colors, proj.depths[:, None]], dim=1) if depth else proj.colors
    bg_full = torch.cat([bg, bg.new_zeros(1)]) if depth else bg
    composite = _CompositeCpp.apply if backend == "cpp" else composite_torch
    image, alpha = composite(proj.means2d, proj.conics, features, proj.opacities, proj.order, proj.rects,
                             view.width, view.height, bg_full)
    radii = torch.zeros(splats.num_splats, dtype=torch.int32, device=device)
    radii[proj.ids] = proj.radii
    return SplatRender(image[..., :3], alpha, image[..., 3] if depth else None, proj, proj.means2d, radii, proj.ids)

