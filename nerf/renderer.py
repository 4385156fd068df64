"""``NerfModel``: the field, its occupancy grid, the ray marcher and volume rendering behind one interface.

Rays are in the normalised scene frame, directions are normalised here, and distances / depth are measured along
the unit direction. Rendering a batch: march the occupancy grid (empty-space skipping; at inference also a
density-only pass without gradients for opacity skipping and early termination, whose densities and geometry
features are reused), evaluate the (rest of the) field on the kept samples, composite. Inference runs through
``inference.render_rays_fast`` (alive rays only, a few samples per round; same samples and image) unless
``model.inference.method`` is ``"reference"`` or per-image appearance codes are asked for.
``background=None`` composites over white (or black when ``config.background == "black"``): white is the Blender
evaluation protocol; training with random backgrounds passes them explicitly.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .config import ModelConfig, TrainConfig
from .fields import NerfField
from .inference import InferenceOptions, render_rays_fast
from .occupancy import OccupancyGrid
from .sampler import MarchOptions, RaySamples, march
from .volrend import composite


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
        self.inference = InferenceOptions()
        """How ``render_rays(training=False)`` renders (``method="reference"``: through ``sample``, as before)."""

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
        fast = self.inference.method == "fast" and (image_indices is None or self.field.appearance is None)
        if not training and fast:
            if background is None:
                background = self.default_background(len(origins), origins)
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
        if background is None:
            background = self.default_background(len(origins), origins)
        out = composite(sigma, rgb, samples.t_starts, samples.t_ends, rays, len(origins), background)
        out.pop("weights")
        out["num_samples"] = int(rays.numel())
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
        if step % c.occupancy_update_every != 0:
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
