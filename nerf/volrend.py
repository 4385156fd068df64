"""Packed volume rendering: alpha compositing of samples grouped per ray by ``ray_indices`` (as nerfacc).

For the samples of one ray, in order, with optical thickness ``tau_i = sigma_i * (t_end_i - t_start_i)``:
``alpha_i = 1 - exp(-tau_i)``, transmittance ``T_i = exp(-sum_{j<i} tau_j)`` and weight ``w_i = T_i alpha_i``.
The weights of a ray sum to ``1 - exp(-sum tau) <= 1`` (its accumulated opacity). The exclusive per-ray cumulative
sum is one global cumsum minus the value at each ray's first sample, computed in float64 so that long batches
keep the precision of short ones.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def exclusive_cumsum_per_ray(values: Float[Tensor, "s"], ray_indices: Int[Tensor, "s"]) -> Float[Tensor, "s"]:
    """Sum of the previous samples' ``values`` on the same ray (samples sorted by ray, contiguous per ray)."""
    v64 = values.double()
    inclusive = torch.cumsum(v64, dim=0)
    exclusive = inclusive - v64
    is_first = torch.ones_like(ray_indices, dtype=torch.bool)
    is_first[1:] = ray_indices[1:] != ray_indices[:-1]
    first_index = torch.cummax(torch.where(is_first, torch.arange(len(values), device=values.device), 0), 0)[0]
    return (exclusive - exclusive.index_select(0, first_index)).to(values.dtype)


def render_weights(
    sigmas: Float[Tensor, "s"], t_starts: Float[Tensor, "s"], t_ends: Float[Tensor, "s"],
    ray_indices: Int[Tensor, "s"],
) -> Float[Tensor, "s"]:
    """Compositing weight ``T_i * alpha_i`` of every packed sample."""
    tau = sigmas * (t_ends - t_starts)
    transmittance = torch.exp(-exclusive_cumsum_per_ray(tau, ray_indices))
    return transmittance * (1.0 - torch.exp(-tau))


def accumulate(
    weights: Float[Tensor, "s"], values: Float[Tensor, "s c"] | None, ray_indices: Int[Tensor, "s"], n_rays: int
) -> Float[Tensor, "n c"]:
    """Per-ray sum of ``weights * values`` (``values`` None: of the weights alone, as [n, 1])."""
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device)
    return out.index_add_(0, ray_indices, src)


def composite(
    sigmas: Float[Tensor, "s"], rgbs: Float[Tensor, "s 3"], t_starts: Float[Tensor, "s"], t_ends: Float[Tensor, "s"],
    ray_indices: Int[Tensor, "s"], n_rays: int, background: Float[Tensor, "n 3"] | None = None,
) -> dict[str, Tensor]:
    """Render packed samples: "rgb" [n, 3] (over ``background`` when given), "accumulation" [n], "depth" [n]
    (expected distance of the ray's termination given it terminates: sum w t / sum w; 0 for empty rays),
    and "weights" [s]."""
    weights = render_weights(sigmas, t_starts, t_ends, ray_indices)
    t_mids = 0.5 * (t_starts + t_ends)
    ones = torch.ones_like(t_mids)[:, None]
    summed = accumulate(weights, torch.cat([rgbs, t_mids[:, None], ones], dim=-1), ray_indices, n_rays)  # [n, 5]
    rgb, acc = summed[:, :3], summed[:, 4]
    if background is not None:
        rgb = rgb + (1.0 - acc)[:, None] * background
    depth = summed[:, 3] / acc.clamp_min(1e-10)
    return {"rgb": rgb, "accumulation": acc, "depth": depth, "weights": weights}
