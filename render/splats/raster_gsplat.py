"""The optional CUDA path of the splat rasteriser: gsplat's ``rasterization`` (imported only here, on first use).

gsplat uses the 3DGS conventions of :mod:`.model` (quats w, x, y, z; SH colour + 0.5 clamped at 0; OpenCV
world-to-camera view matrices), so the splats go in as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...core.geometry import convert_camera_axes
from .backends import GSPLAT
from .model import GaussianSplats


def render_gsplat(splats: GaussianSplats, view, background: Tensor, options, depth: bool) -> tuple:
    """Render a ``SplatView`` with ``gsplat.rasterization`` (CUDA tensors) under ``RasterOptions``: the fields of
    a ``SplatRender`` (image, alpha, depth, projection None, means2d, radii, ids), as the CPU path gives."""
    gsplat = GSPLAT.load()
    device = splats.means.device
    world_from_cv = convert_camera_axes(np.asarray(view.world_from_cam, np.float64)[:4])
    viewmat = torch.as_tensor(np.linalg.inv(world_from_cv), dtype=torch.float32, device=device)[None]
    K = torch.tensor([[view.fx, 0.0, view.cx], [0.0, view.fy, view.cy], [0.0, 0.0, 1.0]], device=device)[None]
    colors, alphas, meta = gsplat.rasterization(
        splats.means, splats.quats, torch.exp(splats.log_scales), torch.sigmoid(splats.opacity_logits), splats.sh,
        viewmat, K, view.width, view.height, near_plane=options.near, eps2d=options.blur_px2,
        sh_degree=splats.sh_degree, backgrounds=background[None], render_mode="RGB+ED" if depth else "RGB",
        packed=False)
    image = colors[0]
    z = image[..., 3] * alphas[0, ..., 0] if depth else None  # expected depth -> alpha-weighted, as the CPU path
    radii = meta["radii"][0]
    radii = radii.amax(dim=-1) if radii.dim() == 2 else radii  # newer gsplat: per-axis radii [n, 2]
    ids = torch.arange(splats.num_splats, device=device)
    return image[..., :3], alphas[0, ..., 0], z, None, meta["means2d"][0], radii.int(), ids
