"""``NerfModel``: the field, its sampler (occupancy grid + ray marcher, or proposal networks), and volume
rendering behind one interface.

Rays are in the normalised scene frame, directions are normalised here, and distances / depth are measured along
the unit direction. Rendering a batch: march the occupancy grid (empty-space skipping; at inference also a
density-only pass without gradients for opacity skipping and early termination, whose densities and geometry
features are reused), evaluate the (rest of the) field on the kept samples, composite. Inference runs through
``inference.render_rays_fast`` (alive rays only, a few samples per round; same samples and image) unless
``model.inference.method`` is ``"reference"`` or per-image appearance codes are asked for.
``background=None`` composites over white (or black when ``config.background == "black"``): white is the Blender
evaluation protocol; training with random backgrounds passes them explicitly.

With ``sampler == "proposal"`` (``ModelConfig.sampler``; unbounded captures) training and inference both run
through ``proposal.ProposalSampler``: a fixed number of samples per ray placed by the proposal networks, the
field evaluated on all of them; the occupancy grid is then neither updated nor used.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from pathlib import Path

from . import field_cpu
from .baked import BakedGrids, SkipOptions, load_or_bake
from .config import ModelConfig, TrainConfig, resolve_sampler
from .fast_proposal import render_proposal_fast
from .fields import NerfField
from .inference import InferenceOptions, proposal_inference, render_rays_fast
from .occupancy import OccupancyGrid
from .proposal import ProposalSampler, distortion_loss, interlevel_loss, s_to_t
from .sampler import MarchOptions, RaySamples, march, ray_aabb
from .volrend import composite

PROPOSAL_EVAL_RAYS = 8192
"""Rays the proposal path renders at once without gradients (bounds its memory: ~100 floats per sample)."""


class NerfModel(nn.Module):
    """Instant-NGP-class radiance field for a scene box ``scene_aabb`` ([2, 3]) seen by ``num_images`` images."""

    def __init__(self, config: ModelConfig, scene_aabb: Float[Tensor, "2 3"], num_images: int, seed: int = 0):
        super().__init__()
        self.config = config
        aabb = torch.as_tensor(scene_aabb, dtype=torch.float32)
        self.field = NerfField(config, aabb, num_images, seed=seed)
        cascades = config.num_cascades if not config.bounded else max(config.num_cascades, 1)
        self.occupancy = OccupancyGrid(aabb, config.occupancy_resolution, cascades, seed=seed)
        diagonal = float((aabb[1] - aabb[0]).norm())
        self.step_size = config.render_step_size or diagonal / 1024.0
        self.occupancy.set_coarse(_coarse_factor(self.occupancy, self.step_size))
        self.generator = torch.Generator().manual_seed(seed + 7)
        self.sampler = resolve_sampler(config)
        """The sampler that runs: "occupancy" (``occupancy`` + ``sample``) or "proposal" (``proposal``)."""
        self.proposal = None
        if self.sampler == "proposal":
            backend = config.encoding.backend
            self.proposal = ProposalSampler(config.proposal, backend, seed=seed)
        self.inference = InferenceOptions()
        """How ``render_rays(training=False)`` renders (``method="reference"``: through ``sample``, as before)."""
        self.baked: BakedGrids | None = None
        """Proposal path: per-cell density bounds for empty-space skipping at inference (``baked.py``); not part
        of the state dict. Set by :meth:`use_baked_cache` lazily on the first render, or directly."""
        self.baked_cache: Path | None = None
        """Run folder whose ``baked_grids.pt`` caches ``baked`` (None and no ``baked``: the reference path)."""

    def use_baked_cache(self, run_dir: Path | None) -> None:
        """Bake (or read) the empty-space grids of the proposal path from ``run_dir`` on the first fast render."""
        self.baked_cache, self.baked = (Path(run_dir) if run_dir is not None else None), None

    def baked_grids(self) -> BakedGrids | None:
        """``baked``, read from or baked into ``baked_cache`` on first use and again when ``inference.bake``'s
        resolution changes (None without a cache folder); empty grids when that resolution is 0 (the default)."""
        stale = self.baked is None or self.baked.resolution != max(self.inference.bake.resolution, 0)
        if stale and self.baked_cache is not None and self.proposal is not None:
            self.baked = load_or_bake(self, self.baked_cache, self.inference.bake)
        return self.baked

    @property
    def device(self) -> torch.device:
        return self.field.aabb.device

    def march_options(self, training: bool) -> MarchOptions:
        c = self.config
        return MarchOptions(
            step_size=self.step_size, cone_angle=c.cone_angle, near=c.near_plane, far=c.far_plane,
            max_samples=c.max_samples_per_ray, stratified=training, alpha_threshold=c.alpha_threshold,
            early_stop_eps=c.early_stop_eps,
        )

    def sample(
        self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"], training: bool,
        keep_geometry: bool = False,
    ) -> RaySamples:
        """Packed samples of unit-direction rays (no gradients). Training marches the occupancy grid only (as
        instant-ngp trains: a density pass there would cost a third of a step on a CPU); inference adds the
        density pass for early ray termination, and with ``keep_geometry`` each kept sample carries its density
        and geometry features (``features`` [s, 1 + geo_feat_dim]) from it."""
        if self.generator.device != origins.device:
            self.generator = torch.Generator(device=origins.device).manual_seed(self.generator.initial_seed())
        sigma_fn = None if training else (self._density_and_geometry if keep_geometry else self.field.density)
        with torch.no_grad():
            return march(origins, directions, self.occupancy, self.march_options(training),
                         sigma_fn=sigma_fn, generator=self.generator)

    def _density_and_geometry(self, points: Float[Tensor, "m 3"]) -> tuple[Tensor, Tensor]:
        density, geo = self.field.geometry(points)
        return density, torch.cat([density[:, None], geo], dim=-1)

    def render_rays(
        self, origins: Float[Tensor, "n 3"], directions: Float[Tensor, "n 3"],
        image_indices: Int[Tensor, "n"] | None = None, background: Float[Tensor, "n 3"] | None = None,
        training: bool = False,
    ) -> dict[str, Tensor | int]:
        """"rgb" [n, 3], "depth" [n] (along the ray), "accumulation" [n], "num_samples" (int). With
        ``training=False`` no autograd graph is built (evaluation never needs one) and marching is not jittered."""
        if not training and torch.is_grad_enabled():
            with torch.no_grad():
                return self.render_rays(origins, directions, image_indices, background, training=False)
        directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if background is None:
            background = self.default_background(len(origins), origins)
        if self.proposal is not None:
            if training:
                return self._render_proposal(origins, directions, image_indices, background, True)
            return self._render_proposal_chunks(origins, directions, image_indices, background)
        fast = self.inference.method == "fast" and (image_indices is None or self.field.appearance is None)
        if not training and fast:
            return render_rays_fast(self, origins, directions, background, self.inference)
        samples = self.sample(origins, directions, training, keep_geometry=not training)
        rays = samples.ray_indices
        indices = image_indices[rays] if image_indices is not None else None  # None: mean appearance
        if samples.features is not None:  # evaluation: the density pass already ran the hash grid
            sigma = samples.features[:, 0]
            rgb = self.field.color(samples.features[:, 1:], directions[rays], indices)
        else:
            points = origins[rays] + directions[rays] * samples.t_mids[:, None]  # [s, 3]
            sigma, rgb = self.field(points, directions[rays], indices)
        out = composite(sigma, rgb, samples.t_starts, samples.t_ends, rays, len(origins), background)
        out.pop("weights")
        out["num_samples"] = int(rays.numel())
        return out

    def _render_proposal_chunks(self, origins: Tensor, directions: Tensor, image_indices: Tensor | None,
                                background: Tensor) -> dict[str, Tensor | int]:
        """The proposal path without gradients, ``PROPOSAL_EVAL_RAYS`` rays at a time: through
        ``fast_proposal.render_proposal_fast`` when it has baked grids (``inference.proposal == "fast"``, a
        ``baked_cache`` or ``baked`` set, mean appearance), else as trained: every sample queried, through
        ``_render_proposal`` (or, with ``inference.skip.kernel == "cpp"``, through the fused C++ loop of
        ``field_cpu.py``: the same image to float rounding)."""
        baked = self.baked_grids() if self.inference.proposal == "fast" and image_indices is None else None
        fast = baked is not None
        exact = not fast and image_indices is None and self.inference.skip.kernel == "cpp" \
            and field_cpu.usable(self, origins)
        as_trained = SkipOptions(skip_opacity=0.0, stop_transmittance=0.0, block=self.inference.skip.block,
                                 proposal_fraction=1.0, nerf_fraction=1.0, kernel="cpp")

        def one(i: int) -> dict[str, Tensor | int]:
            j = i + PROPOSAL_EVAL_RAYS
            if fast or exact:
                return render_proposal_fast(self, origins[i:j], directions[i:j], background[i:j], baked,
                                            self.inference.skip if fast else as_trained)
            return self._render_proposal(origins[i:j], directions[i:j],
                                         None if image_indices is None else image_indices[i:j], background[i:j],
                                         False)

        parts = [one(i) for i in range(0, len(origins), PROPOSAL_EVAL_RAYS)]
        out: dict[str, Tensor | int] = {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "depth", "accumulation")}
        out["num_samples"] = sum(int(p["num_samples"]) for p in parts)
        if fast or exact:
            out["num_evaluated"] = sum(int(p["num_evaluated"]) for p in parts)
        return out

    def proposal_near_far(self, origins: Float[Tensor, "n 3"],
                          directions: Float[Tensor, "n 3"]) -> tuple[Float[Tensor, "n 1"], Float[Tensor, "n 1"]]:
        """Per-ray near / far of the proposal path: the config's planes, clipped to the scene box when bounded."""
        near, far = self.proposal.near_far(len(origins), origins)
        if self.config.bounded:
            entry, exit_ = ray_aabb(origins, directions, self.field.aabb)
            near = torch.maximum(near, entry[:, None])
            far = torch.maximum(torch.minimum(far, exit_[:, None]), near + 1e-3)
        return near, far

    def _render_proposal(self, origins: Tensor, directions: Tensor, image_indices: Tensor | None,
                         background: Tensor, training: bool) -> dict[str, Tensor | int]:
        """Proposal sampling then the field on ``num_nerf_samples`` samples per ray; in training also
        "interlevel_loss" and "distortion_loss" (scalars with gradients)."""
        if self.generator.device != origins.device:
            self.generator = torch.Generator(device=origins.device).manual_seed(self.generator.initial_seed())
        near, far = self.proposal_near_far(origins, directions)
        edges, levels = self.proposal.sample(origins, directions, self.field.normalise, near, far, training,
                                             self.generator)
        t = s_to_t(edges, near, far)  # [n, k + 1]
        n, k = t.shape[0], t.shape[1] - 1
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        points = (origins[:, None] + directions[:, None] * mids[..., None]).reshape(-1, 3)  # [n k, 3]
        if not training and image_indices is None:
            return proposal_inference(self.field, points, directions, t, background)
        rays = torch.arange(n, device=origins.device).repeat_interleave(k)
        indices = image_indices[rays] if image_indices is not None else None
        sigma, rgb = self.field(points, directions[rays], indices)
        out = composite(sigma, rgb, t[:, :-1].reshape(-1), t[:, 1:].reshape(-1), rays, n, background)
        weights = out.pop("weights").view(n, k)
        if training:
            out["interlevel_loss"] = interlevel_loss(edges, weights, levels)
            out["distortion_loss"] = distortion_loss(edges, weights)
        out["num_samples"] = n * k
        return out

    def default_background(self, n: int, like: Tensor) -> Float[Tensor, "n 3"]:
        value = 0.0 if self.config.background == "black" else 1.0
        return torch.full((n, 3), value, dtype=like.dtype, device=like.device)

    def density(self, points: Float[Tensor, "n 3"]) -> Float[Tensor, "n"]:
        """Density at ``points`` of the normalised scene frame (exports, meshes)."""
        return self.field.density(points)

    def update_occupancy(self, step: int) -> None:
        """instant-ngp's density-grid update every ``occupancy_update_every`` steps (call once per step)."""
        c = self.config
        if self.proposal is not None or step % c.occupancy_update_every != 0:
            return
        self.occupancy.update(
            step, self.field.density, self.step_size, warmup_steps=c.occupancy_warmup_steps,
            decay=c.occupancy_decay, threshold=c.occupancy_threshold,
        )

    def param_groups(self) -> list[dict]:
        """Optimizer groups: "encoding" (hash tables; Adam eps 1e-15, no weight decay, as instant-ngp),
        "mlp" (weight decay 1e-6) and "appearance" (when embeddings are on). The trainer sets learning rates."""
        groups = [
            {"name": "encoding", "params": list(self.field.encoding.parameters()), "eps": 1e-15, "weight_decay": 0.0},
            {
                "name": "mlp",
                "params": list(self.field.density_mlp.parameters()) + list(self.field.color_mlp.parameters()),
                "eps": 1e-15, "weight_decay": 1e-6,
            },
        ]
        if self.proposal is not None:
            groups.append({"name": "proposal", "params": list(self.proposal.parameters()), "eps": 1e-15,
                           "weight_decay": 0.0})
        if self.field.appearance is not None:
            groups.append({"name": "appearance", "params": list(self.field.appearance.parameters()),
                           "eps": 1e-15, "weight_decay": 0.0})
        return groups


def make_model(config: TrainConfig, scene_aabb: Float[Tensor, "2 3"], num_images: int,
               device: torch.device) -> NerfModel:
    """The NerfModel of a run (``config.model``, seeded with ``config.seed``) on ``device``."""
    torch.manual_seed(config.seed)
    return NerfModel(config.model, scene_aabb=scene_aabb, num_images=num_images, seed=config.seed).to(device)


def _coarse_factor(grid: OccupancyGrid, step_size: float, group: int = 16) -> int:
    """Pooling factor (a power of two) whose coarse cells hold ``group`` steps, at most 1/8 of the grid."""
    cell = float((grid.half_size * 2.0 / grid.resolution).min())
    factor = 1
    while factor * cell < group * step_size and factor * 16 <= grid.resolution:
        factor *= 2
    return factor
