"""The C++/OpenMP EWA projection and SH colour (``project_cpu.cpp``), forward and backward, beside the torch
reference :func:`nerfstage.render.splats.raster.project_splats` (the tests compare values and gradients)."""

from __future__ import annotations

import torch
from torch import Tensor

from .backends import PROJECT


class _ProjectCpp(torch.autograd.Function):
    """means, quats, log_scales, sh [m, ...] -> means2d [m, 2], conics [m, 3], colors [m, 3], depths [m], cov
    [m, 4] (a, b, c, det; no gradient)."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, sh, rotation, translation, centre, k):  # type: ignore[override]
        args = [t.detach().float().contiguous() for t in (means, quats, log_scales, sh)]
        view = [t.detach().float().contiguous() for t in (rotation, translation, centre)]
        means2d, conics, colors, depths, cov = PROJECT.load().project_forward(*args, *view, list(k))
        ctx.save_for_backward(*args, colors, *view)
        ctx.k = list(k)
        ctx.mark_non_differentiable(cov)
        return means2d, conics, colors, depths, cov

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_means2d, g_conics, g_colors, g_depths, _g_cov):  # type: ignore[override]
        means, quats, log_scales, sh, colors, rotation, translation, centre = ctx.saved_tensors

        def grad(g: Tensor | None, like: Tensor) -> Tensor:
            return torch.zeros_like(like) if g is None else g.float().contiguous()

        grads = PROJECT.load().project_backward(
            means, quats, log_scales, sh, colors, rotation, translation, centre, ctx.k,
            grad(g_means2d, means[:, :2]), grad(g_conics, means), grad(g_colors, colors), grad(g_depths, means[:, 0]))
        return (*grads, None, None, None, None)


def project_cpp(means: Tensor, quats: Tensor, log_scales: Tensor, sh: Tensor, rotation: Tensor, translation: Tensor,
                centre: Tensor, k: list[float]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``k`` = fx, fy, cx, cy, tangent limits lo_x, hi_x, lo_y, hi_y, blur (see ``raster._covariance_2d``)."""
    return _ProjectCpp.apply(means, quats, log_scales, sh, rotation, translation, centre, k)
