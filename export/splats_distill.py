"""Distil a trained NeRF into Gaussian splats: optimise the splats (Adam) so that their renders match the field's.

The field is an unlimited teacher: it renders **novel views** -- each a training view turned by up to
``novel_jitter_deg`` and moved by up to ``novel_jitter`` x the scene extent -- so the splats are constrained from
more directions than the photos alone give. At training views the target is the photo (composited over the
background) with weight ``photo_weight`` and the field's render of the view with ``1 - photo_weight`` (the photo
is skipped for distorted cameras: splats render pinhole images and the teacher renders the undistorted pinhole
view). Teacher images are rendered once, on first use, and cached.

Loss and schedule are 3DGS's: ``(1 - ssim_weight) L1 + ssim_weight (1 - SSIM)``; per-parameter learning rates
(means scaled by the scene extent and decayed exponentially); densify / prune every ``densify_every`` steps from
``densify_from`` until ``densify_until`` of the run (see :mod:`.splats_densify`) within ``max_splats``; opacities
reset every ``opacity_reset_every`` steps (never, by default: a field-initialised set starts near its answer).
The schedule follows the run's **progress**, the larger of step / steps and elapsed / ``time_budget_s``: a run
the budget stops early still decays its learning rate and ends its densification in time (on the fox capture a
step-counted schedule reset every opacity 100 steps before the budget ended, and the following prune kept 84 k
of 447 k splats). Deterministic for a given seed and thread count when there is no time budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from ..core.cameras import PerspectiveCamera, camera_from_intrinsics
from ..core.errors import ConfigError
from ..core.rays import pixel_centers
from ..nerf.data import read_image
from ..nerf.optim import run_progress
from ..nerf.run import LoadedRun, require_dataset
from ..render.image import ImageOptions, render_image
from ..render.splats.model import MAX_SPLATS, GaussianSplats
from ..render.splats.raster import RasterOptions, SplatView, render_splats
from ..render.splats.render import dataset_from_scene
from .splats_densify import DensifyStats, densify_and_prune, reset_opacity


@dataclass(frozen=True)
class DistillOptions:
    """How splats are optimised against a trained field."""

    steps: int = 2000
    """Optimisation steps (one view per step)."""
    lr_means: float = 1.6e-4
    """Learning rate of the means, times the scene extent (decays exponentially to ``lr_means_final``)."""
    lr_means_final: float = 1.6e-6
    """Final learning rate of the means, times the scene extent."""
    lr_quats: float = 1e-3
    """Learning rate of the rotations."""
    lr_scales: float = 5e-3
    """Learning rate of the log scales."""
    lr_opacity: float = 2.5e-2
    """Learning rate of the opacity logits."""
    lr_sh_dc: float = 2.5e-3
    """Learning rate of the SH degree-0 coefficients."""
    lr_sh_rest: float = 1.25e-4
    """Learning rate of the higher SH coefficients (3DGS: dc / 20)."""
    max_splats: int = MAX_SPLATS
    """Most Gaussians ever kept (densification stops growing there; a larger initial set is thinned)."""
    densify_from: int = 100
    """First step of densification."""
    densify_until: float = 0.6
    """Densification stops after this fraction of the steps."""
    densify_every: int = 100
    """Steps between densification / pruning passes."""
    grad_threshold: float = 2e-4
    """Mean view-space positional gradient (NDC units) above which a Gaussian is cloned or split."""
    dense_fraction: float = 0.01
    """Gaussians whose largest scale is at most this x extent are cloned, larger ones split."""
    prune_opacity: float = 0.005
    """Gaussians less opaque than this are removed."""
    prune_scale: float = 0.1
    """Gaussians whose largest scale exceeds this x the larger of the extent and their distance from the cameras'
    centroid are removed (3DGS: x extent; far background of an unbounded scene may be larger)."""
    opacity_reset_every: int = 0
    """Steps between opacity resets (0 = never, the default: the field's opacities are a good start and a reset
    needs thousands of steps to recover); none in the last fifth of the run."""
    novel_fraction: float = 0.5
    """Fraction of steps that use a novel (jittered) view instead of a training view."""
    novel_views: int = 24
    """Novel views drawn (each rendered by the field once)."""
    novel_jitter_deg: float = 8.0
    """Largest rotation of a novel view away from its training view, degrees."""
    novel_jitter: float = 0.05
    """Largest move of a novel view, as a fraction of the scene extent."""
    photo_weight: float = 1.0
    """Weight of the training photo vs the field's render at training views; 1 = the photo alone (the field
    then renders no training view: on a CPU a 400x400 render costs seconds, more than it adds next to the photo
    the field was fitted to)."""
    image_side: int = 400
    """Longest side of the views, pixels (images downscaled by an integer factor, as training does; 0 = full)."""
    ssim_weight: float = 0.2
    """Weight of D-SSIM in the loss."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour of the teacher and splat renders (sRGB)."""
    seed: int = 0
    """Seed of view order, novel views and splits."""
    time_budget_s: float | None = None
    """Stop after this many seconds (teacher renders included); None = run every step."""
    raster: RasterOptions = field(default_factory=RasterOptions)
    """Rasteriser backend and culling."""

    def __post_init__(self):
        for name in ("steps", "max_splats", "densify_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: expected a positive integer", field=name)
        for name in ("novel_fraction", "photo_weight", "ssim_weight", "densify_until"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)}: expected a value in [0, 1]", field=name)


@dataclass
class _View:
    camera: PerspectiveCamera
    pose: np.ndarray  # [4, 4] OpenGL, normalised frame (what the field renders)
    view: SplatView  # the same view in the splats' dataset frame
    photo: Tensor | None = None  # [H, W, 3]
    photo_valid: Tensor | None = None  # [H, W, 1] bool: pixels the (undistorted) photo covers; None = all
    teacher: Tensor | None = None  # [H, W, 3], rendered on first use


def _pinhole(intr) -> PerspectiveCamera:
    return PerspectiveCamera(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)


def _photo(img: np.ndarray, background: tuple[float, float, float]) -> Tensor:
    rgb = torch.from_numpy(img[..., :3].astype(np.float32) / 255.0)
    if img.shape[-1] == 4:
        a = torch.from_numpy(img[..., 3:].astype(np.float32) / 255.0)
        rgb = rgb * a + torch.tensor(background) * (1.0 - a)
    return rgb


def undistorted_photo(img: np.ndarray, intr) -> tuple[np.ndarray, np.ndarray | None]:
    """``img`` [H, W, C] of a camera with ``intr`` (any dataset model) resampled (bilinear) into the pinhole view
    with the same focal lengths and principal point -> (image [H, W, C], valid [H, W] bool or None when the
    camera has no distortion). A pinhole pixel's ray is projected by ``camera_from_intrinsics(intr)``."""
    camera = camera_from_intrinsics(intr)
    if not getattr(camera, "has_distortion", True):
        return img, None
    pinhole = _pinhole(intr)
    rays, _ = pinhole.unproject(pixel_centers(pinhole, None, torch.float64))  # [H*W, 3] OpenCV axes
    pixels, ok = camera.project(rays)
    pixels = (pixels - 0.5).float().numpy().reshape(intr.height, intr.width, 2)  # cv2: pixel centres at integers
    out = cv2.remap(img, pixels[..., 0], pixels[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (pixels[..., 0] >= -0.5) & (pixels[..., 0] <= intr.width - 0.5) & (pixels[..., 1] >= -0.5)
    inside &= (pixels[..., 1] <= intr.height - 0.5) & ok.numpy().reshape(intr.height, intr.width)
    return out, inside


def training_views(run: LoadedRun, options: DistillOptions) -> list[_View]:
    """The run's training views at ``image_side``, with their photos (resampled into the pinhole view when the
    camera is distorted)."""
    data = require_dataset(run)
    views = []
    for i in run.train_indices:
        img, intr = read_image(data.frames[i], options.image_side)
        camera, pose = _pinhole(intr), run.world_from_cams[i]
        photo = valid = None
        if options.photo_weight > 0:
            img, inside = undistorted_photo(img, intr)
            photo = _photo(img, options.background)
            valid = None if inside is None else torch.from_numpy(inside)[..., None]
        views.append(_View(camera, pose, SplatView.of(camera, dataset_from_scene(pose, run.scene)), photo, valid))
    return views


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def novel_views(run: LoadedRun, base: list[_View], options: DistillOptions, extent_scene: float,
                rng: np.random.Generator) -> list[_View]:
    """``novel_views`` jittered copies of random training views (turned about the camera centre, moved)."""
    out = []
    for _ in range(options.novel_views):
        src = base[int(rng.integers(len(base)))]
        pose = src.pose.copy()
        angle = math.radians(options.novel_jitter_deg) * float(rng.uniform())
        pose[:3, :3] = _rotation(rng.normal(size=3), angle) @ pose[:3, :3]
        pose[:3, 3] += rng.normal(size=3) / math.sqrt(3) * options.novel_jitter * extent_scene
        out.append(_View(src.camera, pose, SplatView.of(src.camera, dataset_from_scene(pose, run.scene))))
    return out


def scene_extent(poses: np.ndarray) -> float:
    """3DGS's extent: 1.1 x the largest distance of a camera centre ([N, 4, 4]) from their mean."""
    centres = poses[:, :3, 3]
    return 1.1 * float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()) or 1.0


def _camera_centroid(views: list[_View]) -> Tensor:
    """[3] mean camera centre of ``views`` in the splats' dataset frame."""
    return torch.tensor(np.mean([v.view.world_from_cam[:3, 3] for v in views], axis=0), dtype=torch.float32)


def ssim_map(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of two [H, W, 3] images, Gaussian window 11 / sigma 1.5 (3DGS's, applied as two 1-D passes), mean
    over pixels and channels."""
    coords = torch.arange(11, dtype=a.dtype) - 5.0
    g = torch.exp(-coords**2 / (2 * 1.5**2))
    g = g / g.sum()
    rows, cols = g.reshape(1, 1, 11, 1).expand(3, 1, 11, 1), g.reshape(1, 1, 1, 11).expand(3, 1, 1, 11)
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]

    def blur(t: Tensor) -> Tensor:
        t = torch.nn.functional.conv2d(t, rows.contiguous(), padding=(5, 0), groups=3)
        return torch.nn.functional.conv2d(t, cols.contiguous(), padding=(0, 5), groups=3)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))).mean()


def photometric_loss(pred: Tensor, target: Tensor, ssim_weight: float) -> Tensor:
    """(1 - w) L1 + w (1 - SSIM)."""
    loss = (pred - target).abs().mean() * (1.0 - ssim_weight)
    return loss + ssim_weight * (1.0 - ssim_map(pred, target)) if ssim_weight > 0 else loss


def teacher_image(run: LoadedRun, view: _View, background) -> Tensor:
    """The field's render of ``view`` (cached on the view)."""
    if view.teacher is None:
        out = render_image(run.model, view.camera, view.pose, ("rgb",), ImageOptions(background=background))
        view.teacher = torch.from_numpy(out["rgb"]).clamp(0.0, 1.0)
    return view.teacher


def _parameters(splats: GaussianSplats, options: DistillOptions) -> dict[str, Tensor]:
    """Trainable leaves; ``max_splats`` most opaque kept when there are more."""
    if splats.num_splats > options.max_splats:
        splats = splats.subset(torch.argsort(splats.opacity_logits.detach(), descending=True)[:options.max_splats])
    s = splats.detach()
    leaves = {"means": s.means, "quats": s.quats, "log_scales": s.log_scales, "opacity_logits": s.opacity_logits,
              "sh_dc": s.sh[:, :1], "sh_rest": s.sh[:, 1:]}
    return {k: torch.nn.Parameter(v.float().clone().contiguous()) for k, v in leaves.items()}


def _optimizer(params: dict[str, Tensor], options: DistillOptions, extent: float) -> torch.optim.Adam:
    lrs = {"means": options.lr_means * extent, "quats": options.lr_quats, "log_scales": options.lr_scales,
           "opacity_logits": options.lr_opacity, "sh_dc": options.lr_sh_dc, "sh_rest": options.lr_sh_rest}
    groups = [{"params": [params[k]], "lr": lr, "name": k} for k, lr in lrs.items()]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def as_splats(params: dict[str, Tensor]) -> GaussianSplats:
    return GaussianSplats(params["means"], params["quats"], params["log_scales"], params["opacity_logits"],
                          torch.cat([params["sh_dc"], params["sh_rest"]], dim=1))


def _means_lr(options: DistillOptions, extent: float, progress: float) -> float:
    t = min(1.0, progress)
    return extent * math.exp((1 - t) * math.log(options.lr_means) + t * math.log(options.lr_means_final))


class _Schedule:
    """Which step densifies, resets opacity, and which view it uses; ``progress`` in [0, 1] is the larger of
    step / steps and elapsed / time budget (see the module docstring)."""

    def __init__(self, options: DistillOptions, num_train: int, num_novel: int):
        self.options, self.num_train, self.num_novel = options, num_train, num_novel

    def progress(self, step: int, elapsed_s: float) -> float:
        return min(1.0, run_progress(step, self.options.steps - 1, elapsed_s, self.options.time_budget_s))

    def densifying(self, step: int, progress: float) -> bool:
        return self.options.densify_from <= step and progress < self.options.densify_until

    def densify_now(self, step: int, progress: float) -> bool:
        return (self.densifying(step, progress) and step > self.options.densify_from
                and step % self.options.densify_every == 0)

    def reset_now(self, step: int, progress: float) -> bool:
        every = self.options.opacity_reset_every
        return every > 0 and step > 0 and step % every == 0 and progress < 0.8

    def view(self, rng: np.random.Generator) -> int:
        """Index into training views + novel views."""
        if self.num_novel and float(rng.uniform()) < self.options.novel_fraction:
            return self.num_train + int(rng.integers(self.num_novel))
        return int(rng.integers(self.num_train))


def _loss(run: LoadedRun, view: _View, image: Tensor, options: DistillOptions) -> Tensor:
    weight = options.photo_weight if view.photo is not None else 0.0
    loss = image.new_zeros(())
    if weight < 1.0:
        teacher = teacher_image(run, view, options.background)
        loss = loss + (1.0 - weight) * photometric_loss(image, teacher, options.ssim_weight)
    if weight > 0.0:
        photo = view.photo if view.photo_valid is None else torch.where(view.photo_valid, view.photo, image.detach())
        loss = loss + weight * photometric_loss(image, photo, options.ssim_weight)
    return loss


def distill_splats(run: LoadedRun, splats: GaussianSplats, options: DistillOptions | None = None,
                   progress: Callable[[int, dict], None] | None = None) -> GaussianSplats:
    """Optimise ``splats`` (dataset frame, e.g. from ``splats_from_run``) against the field of ``run`` (see the
    module docstring); returns the distilled splats (detached, CPU). ``progress(step, info)`` after every step
    (info: loss, splats, seconds)."""
    options = options or DistillOptions()
    start = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    train = training_views(run, options)
    if not train:
        raise ConfigError(f"{run.run_dir}: the run has no training views to distil from")
    extent = scene_extent(np.stack([dataset_from_scene(v.pose, run.scene) for v in train]))
    views = train + novel_views(run, train, options, extent * run.scene.scale, rng)
    schedule = _Schedule(options, len(train), len(views) - len(train))
    params = _parameters(splats.to("cpu"), options)
    optimizer = _optimizer(params, options, extent)
    stats = DensifyStats.zeros(len(params["means"]), "cpu")
    centroid = _camera_centroid(train)
    for step in range(options.steps):
        elapsed = time.perf_counter() - start
        if options.time_budget_s is not None and elapsed > options.time_budget_s:
            break
        progress_now = schedule.progress(step, elapsed)
        view = views[schedule.view(rng)]
        out = render_splats(as_splats(params), view.view, options.background, options.raster)
        out.means2d.retain_grad()
        loss = _loss(run, view, out.image, options)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.param_groups[0]["lr"] = _means_lr(options, extent, progress_now)
        optimizer.step()
        if schedule.densifying(step, progress_now) and out.means2d.grad is not None:
            stats.add(out.means2d.grad, out.ids, out.radii, view.view.width, view.view.height)
        if schedule.densify_now(step, progress_now):
            params = densify_and_prune(params, optimizer, stats, options, extent, generator, centroid=centroid)
            stats = DensifyStats.zeros(len(params["means"]), "cpu")
        if schedule.reset_now(step, progress_now):
            reset_opacity(params, optimizer)
        if progress is not None:
            progress(step, {"loss": float(loss.detach()), "splats": len(params["means"]),
                            "seconds": time.perf_counter() - start})
    return as_splats(params).detach()
