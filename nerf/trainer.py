"""Training loop of the NeRF stage: ``train(dataset, run_dir, config)``.

One step: update the occupancy grid (the model decides the cadence), draw a random batch of training pixels,
render their rays, MSE against the pixel colours (RGBA data over a random background, as instant-ngp), Adam
(fused where supported; per-group lr/eps from ``NerfModel.param_groups``, e.g. eps 1e-15 for the hash tables as
instant-ngp), and a learning-rate schedule of linear warm-up then steps down by ``lr_gamma`` at
``lr_milestones`` of the run. With ``target_samples`` the ray count of the next batch follows the samples the
last one produced (instant-ngp / nerfacc), so each step costs about the same. With the proposal sampler
(``ModelConfig.sampler``) the loss adds the inter-level and distortion losses the model returns, weighted by
``ProposalConfig.interlevel_loss_mult`` / ``distortion_loss_mult``; the logged loss stays the colour MSE. With
``pose_refinement`` the batch's rays are first moved by their image's learned pose correction (``camera_opt.py``).

Live viewing: ``train(..., callback=)`` gets a :class:`TrainStepInfo` after every step; every step runs under
``Trainer.model_lock``, and ``Trainer.render_camera`` / ``render_rays`` take that lock, so a viewer thread can
render the current field between steps.

Resuming: a checkpoint holds the model (occupancy grid included), the optimiser, every RNG state (torch, numpy,
Python, the ray batcher's own generator), the adaptive ray count and the training seconds so far, so a run
killed at any moment and restarted with ``resume=True`` continues from its last checkpoint and ends at the same
step with the same metrics as an uninterrupted run (bit-identical on CPU without a time budget).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..capture.dataset import Dataset
from ..capture.loader import as_dataset
from ..core.cameras import camera_from_intrinsics
from ..core.errors import CheckpointError, ConfigError, Interrupted, OutputExistsError
from ..core.shards import barrier, bind_local_device, process_group, world_from_env
from ..core.geometry import Intrinsics, convert_camera_axes
from ..core.lock import output_lock
from ..core.rays import generate_ray_batch
from . import checkpoint as ckpt
from .camera_opt import make_camera_optimizer
from .chunked import OUTPUT_KEYS, render_rays_chunked
from .config import ModelConfig, TrainConfig, config_from_dict, config_to_dict, load_config, resolve_sampler
from .config import check_ranges, save_config
from .distributed import RANK_SEED_STRIDE, DataParallel, per_rank
from .data import (
    RayBatcher,
    SceneTransform,
    is_bounded,
    load_views,
    normalize_scene,
    read_dataparser_transforms,
    resolve_device,
    scene_box,
    split_indices,
    validate_dataset,
    write_dataparser_transforms,
)
from .evaluate import evaluate_views, run_figures, write_metrics
from .metrics import psnr_from_mse
from .optim import coarse_to_fine_weights, lr_factor, make_optimizer, next_num_rays, training_progress
from .renderer import make_model
from .run import LoadedRun, run_cameras


@dataclass
class TrainState:
    """Everything of a run besides model and optimiser that a resume needs."""

    step: int = 0
    """Steps completed."""
    num_rays: int = 4096
    """Ray count of the next batch (adaptive with ``target_samples``)."""
    train_seconds: float = 0.0
    """Wall-clock seconds spent in training steps so far (evaluation and checkpoint writes excluded)."""
    total_samples: int = 0
    """Field samples processed in training so far."""
    total_rays: int = 0
    """Rays processed in training so far."""


@dataclass
class TrainStepInfo:
    """What a ``train(..., callback=)`` receives after every step (cheap to build: no rendering, no sync)."""

    step: int
    """Steps completed (1 after the first step)."""
    total_steps: int
    """``config.steps``: the run ends there (or earlier, at its time budget)."""
    loss: float
    """MSE of this step's batch."""
    psnr: float
    """PSNR of this step's batch (from ``loss``; training pixels, not held-out views)."""
    rays_per_second: float
    """Rays of this step's batch / its wall-clock seconds."""
    seconds: float
    """Training seconds so far (steps only; evaluation and checkpoint writes excluded)."""
    trainer: Trainer
    """The running trainer: ``trainer.render_camera(...)`` / ``render_image_rays(...)`` render the current field under
    ``trainer.model_lock`` from any thread; ``trainer.scene`` maps dataset poses into the normalised frame."""


class InterruptFlag:
    """Set by the first Ctrl+C (SIGINT) while ``deferred_interrupt`` is active; a second one interrupts at once."""

    requested: bool = False


@contextmanager
def deferred_interrupt() -> Iterator[InterruptFlag]:
    """Inside the block the first SIGINT only sets the yielded flag (the training loop stops at the end of the
    step, so the checkpoint it then writes is a whole step's state); outside the main thread nothing changes."""
    flag = InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum, frame) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create RUN, or check it may be resumed / replaced (OutputExistsError, CheckpointError)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir}: is a file; expected a run folder (choose another output)")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / "config.json").is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (no config.json); start it without --resume")
        return
    if exists and not overwrite:
        raise OutputExistsError(f"{run_dir} already exists; pass --overwrite to replace it or --resume to continue")
    if exists:
        if not (run_dir / "config.json").is_file():
            raise OutputExistsError(f"{run_dir} is not empty and is not a nerfstage run; choose another output")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def scene_model_config(config: TrainConfig, bounded: bool) -> ModelConfig:
    """The model config for the kind of scene: bounded (Blender) -> one cascade, no appearance embeddings;
    unbounded -> contraction, at least ``unbounded_cascades`` cascades and a cone angle for the marcher. The
    sampler is resolved ("auto" -> "occupancy" or "proposal" by ``config.resolve_sampler``)."""
    model = config.model
    if bounded:
        model = dataclasses.replace(model, bounded=True, num_cascades=1, appearance_dim=0)
        return dataclasses.replace(model, sampler=resolve_sampler(model))
    cone = model.cone_angle if model.cone_angle > 0 else config.unbounded_cone_angle
    cascades = max(model.num_cascades, config.unbounded_cascades)
    model = dataclasses.replace(model, bounded=False, num_cascades=cascades, cone_angle=cone)
    return dataclasses.replace(model, sampler=resolve_sampler(model))


def _model_generator_state(model: torch.nn.Module) -> torch.Tensor | None:
    """State of the model's own sampling generator (stratified jitter), which is not part of its state_dict."""
    generator = getattr(model, "generator", None)
    return generator.get_state() if isinstance(generator, torch.Generator) else None


class Trainer:
    """Owns the model, optimiser, data and state of one run folder."""

    def __init__(self, config: TrainConfig, dataset: Dataset, run_dir: Path, scene: SceneTransform,
                 scene_aabb: torch.Tensor):
        self.dp = DataParallel(config.allreduce)
        self.job_config = config
        """The run's config as saved (its batch is the whole job's; ``config`` holds this rank's share)."""
        config = dataclasses.replace(config, batch_rays=per_rank(config.batch_rays, self.dp.world_size),
                                     target_samples=per_rank(config.target_samples, self.dp.world_size))
        self.config, self.run_dir, self.dataset = config, Path(run_dir), dataset
        self.device = resolve_device(config.device)
        train_idx, eval_idx, self.split = split_indices(dataset, config.data.hold_every)
        side = config.data.max_image_side
        self.train_views = load_views(dataset, train_idx, scene, side).to(self.device)
        eval_idx = eval_idx[:: config.data.eval_view_stride]
        self.eval_views = load_views(dataset, eval_idx, scene, side) if eval_idx else None
        self.model = make_model(config, scene_aabb, len(train_idx), self.device)
        self.camera_opt = make_camera_optimizer(config.pose_refinement, len(train_idx), self.device)
        extra = [self.camera_opt.param_group(config.pose_lr)] if self.camera_opt is not None else []
        self.optimizer = make_optimizer(self.model, config.lr, self.device, extra)
        self.dp.broadcast_module(self.model)
        generator = getattr(self.model, "generator", None)
        if self.dp.rank > 0 and isinstance(generator, torch.Generator):  # each rank its own marching jitter
            generator.manual_seed(generator.initial_seed() + RANK_SEED_STRIDE * self.dp.rank)
        self.batcher = RayBatcher(self.train_views, config.seed + RANK_SEED_STRIDE * self.dp.rank,
                                  config.model.background)
        self.scene_aabb, self.scene = scene_aabb, scene
        self.state = TrainState(num_rays=config.batch_rays)
        self.model_lock = threading.Lock()
        """Held during every optimisation step; take it to read or render the model from another thread."""

    def step(self) -> dict[str, float]:
        """One optimisation step; returns loss and the batch's sample / ray counts."""
        cfg, state = self.config, self.state
        factor = lr_factor(cfg, state.step, state.train_seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        if cfg.coarse_to_fine > 0.0:
            progress = training_progress(cfg, state.step, state.train_seconds)
            self.model.field.set_level_weights(coarse_to_fine_weights(
                cfg.model.encoding.num_levels, progress, cfg.coarse_to_fine))
        self.model.train()
        self.model.update_occupancy(state.step)
        if self.dp.active and state.step % cfg.model.occupancy_update_every == 0:
            self.dp.broadcast_buffers(getattr(self.model, "occupancy", None))
        batch = self.batcher.next(state.num_rays)
        origins, directions = batch["origins"], batch["directions"]
        if self.camera_opt is not None:
            origins, directions = self.camera_opt.apply_to_rays(origins, directions, batch["image_indices"])
        out = self.model.render_rays(origins, directions, batch["image_indices"], batch["background"],
                                     training=True)
        loss = torch.nn.functional.mse_loss(out["rgb"], batch["rgb"])
        total = loss + self._sampler_losses(out)
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
        if self.dp.active:  # every rank steps with the averaged gradients, even one whose batch had none
            self.dp.average_gradients([p for g in self.optimizer.param_groups for p in g["params"]])
            self.optimizer.step()
        elif total.requires_grad:
            self.optimizer.step()
        samples = int(out["num_samples"])
        rays = state.num_rays
        state.num_rays = next_num_rays(cfg, rays, samples)
        state.step += 1
        state.total_samples += samples
        state.total_rays += rays
        return {"loss": float(loss.detach()), "samples": samples, "rays": rays}

    def _sampler_losses(self, out: dict) -> torch.Tensor | float:
        """The proposal path's inter-level and distortion losses with their weights (0 for the occupancy path)."""
        if "interlevel_loss" not in out:
            return 0.0
        proposal = self.config.model.proposal
        return (proposal.interlevel_loss_mult * out["interlevel_loss"]
                + proposal.distortion_loss_mult * out["distortion_loss"])

    def train_world_from_cams(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world of the training views, OpenGL axes, normalised scene frame: the refined
        poses when pose refinement is on, the dataset's otherwise."""
        poses = np.tile(np.eye(4), (len(self.train_views), 1, 1))  # [N, 4, 4]
        poses[:, :3, :] = self.train_views.world_from_cams.cpu().double().numpy()  # OpenCV axes
        if self.camera_opt is not None:
            poses = self.camera_opt.refine_poses(poses)
        return convert_camera_axes(poses)

    def render_image_rays(self, origins: torch.Tensor, directions: torch.Tensor, height: int, width: int,
                          chunk: int | None = None) -> dict[str, torch.Tensor]:
        """Render rays of the normalised scene frame (origins, directions [H*W, 3], row-major) with the current
        field, between training steps (waits on ``model_lock``): "rgb" [H, W, 3], "depth", "accumulation" [H, W]
        on the CPU. Evaluation rendering (no jitter, mean appearance embedding, white background)."""
        with self.model_lock:
            was_training = self.model.training
            self.model.eval()
            try:
                out = render_rays_chunked(self.model, origins.cpu(), directions.cpu(), None,
                                          chunk or self.config.eval_chunk)
            finally:
                self.model.train(was_training)
        return {k: out[k].reshape(height, width, -1).squeeze(-1) for k in OUTPUT_KEYS}

    def as_run(self) -> LoadedRun:
        """The current field as a LoadedRun (what the viewer and every renderer take): the dataset's cameras in
        the run's frame, training views with their current refined poses; ``checkpoint`` is None."""
        opt = self.camera_opt
        cameras = run_cameras(self.dataset, self.scene, self.config.data.hold_every,
                              (lambda poses: poses) if opt is None else opt.refine_poses)
        return LoadedRun(self.run_dir, self.model, self.config, self.scene, self.state.step, None, self.device,
                         Path(self.config.dataset) if self.config.dataset else None, cameras, self.dataset,
                         dataclasses.asdict(self.state))

    def render_camera(self, world_from_cam, intrinsics: Intrinsics) -> dict[str, torch.Tensor]:
        """Render a camera with the current field: ``world_from_cam`` [4, 4] camera-to-world in the normalised
        scene frame with OpenGL camera axes (as camera_path.json), ``intrinsics`` its camera (any model). Rays
        come from ``core.rays.generate_ray_batch`` in float64, as the training table; pixels the camera model
        cannot see (``valid`` false) get the model's background, depth 0 and accumulation 0."""
        rays = generate_ray_batch(camera_from_intrinsics(intrinsics), world_from_cam, dtype=torch.float64)
        h, w = intrinsics.height, intrinsics.width
        if bool(rays.valid.all()):
            return self.render_image_rays(rays.origins.float(), rays.directions.float(), h, w)
        keep = rays.valid.nonzero().squeeze(-1)  # [n]
        out = {"rgb": self.model.default_background(h * w, rays.origins).float().cpu(),
               "depth": torch.zeros(h * w), "accumulation": torch.zeros(h * w)}
        if len(keep):
            seen = self.render_image_rays(rays.origins[keep].float(), rays.directions[keep].float(), len(keep), 1)
            for key, value in out.items():
                value[keep] = seen[key].reshape(len(keep), *value.shape[1:])
        return {key: value.reshape(h, w, *value.shape[1:]) for key, value in out.items()}

    def checkpoint(self) -> Path:
        """Write the checkpoint of the current step (rank 0; every rank takes part: it holds all batchers)."""
        batchers = self.dp.gather(self.batcher.state_dict())
        generators = self.dp.gather(_model_generator_state(self.model))
        path = ckpt.checkpoint_path(self.run_dir, self.state.step)
        if not self.dp.is_main:
            return path
        payload = {
            "config": config_to_dict(self.job_config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.rng_state(),
            "batcher": self.batcher.state_dict(),
            "model_generator": _model_generator_state(self.model),
            "camera_opt": None if self.camera_opt is None else self.camera_opt.state_dict(),
            "trainer": dataclasses.asdict(self.state),
            "scene": {"aabb": self.scene_aabb.cpu(), "num_images": len(self.train_views)},
        }
        if self.dp.active:
            payload |= {"rank_batchers": batchers, "rank_model_generators": generators}
        return ckpt.save_checkpoint(self.run_dir, self.state.step, payload, self.config.keep_checkpoints)

    def restore(self, path: Path, data: dict[str, Any] | None = None) -> None:
        """Continue from checkpoint ``path`` (``data``: its content when already read and checked)."""
        if data is None:
            data = ckpt.load_checkpoint(path, map_location="cpu")
            ckpt.check_finite(data, path)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        rank = self.dp.rank
        ranks = data.get("rank_batchers")
        if ranks is not None and len(ranks) == self.dp.world_size:  # the same job size: each rank its own
            data["batcher"], data["model_generator"] = ranks[rank], data["rank_model_generators"][rank]
        elif rank > 0:  # another job size: rank 0 keeps its state, the other ranks their fresh seeds
            data["batcher"] = None
        if data["batcher"] is not None:
            self.batcher.load_state_dict(data["batcher"])
        if self.camera_opt is not None:
            self.camera_opt.load_state_dict(data["camera_opt"])
        generator = getattr(self.model, "generator", None)
        if isinstance(generator, torch.Generator) and data.get("model_generator") is not None:
            generator.set_state(data["model_generator"])
        ckpt.set_rng_state(data["rng"])
        self.state = TrainState(**data["trainer"])

    def quick_eval(self) -> float:
        """PSNR of the first held-out view (progress feedback during training)."""
        if self.eval_views is None:
            return math.nan
        result = evaluate_views(self.model, self.eval_views.subset([0]), self.config.eval_chunk)
        return result["psnr"]

    def run(self, progress: bool = True, on_step: Callable[[int], None] | None = None,
            save_images: Path | None = None,
            callback: Callable[[TrainStepInfo], None] | None = None) -> dict[str, Any]:
        """Train to ``config.steps`` (or the time budget), checkpoint, evaluate (renders saved to
        ``save_images`` when given); returns the metrics dict. ``callback`` gets a :class:`TrainStepInfo` after
        every step, outside ``model_lock``."""
        cfg, state = self.config, self.state
        bar = tqdm(total=cfg.steps, initial=state.step, disable=not (progress and self.dp.is_main), desc="train",
                   unit="step",
                   dynamic_ncols=True)
        window = {"loss": 0.0, "rays": 0, "seconds": 0.0, "n": 0}
        with deferred_interrupt() as stop:
            self._loop(bar, window, stop, on_step, callback)
        bar.close()
        if stop.requested:
            raise Interrupted(self._interrupted_message(self.checkpoint()))
        if not self.dp.share(ckpt.checkpoint_path(self.run_dir, state.step).exists()):
            self.checkpoint()
        return self.final_metrics(progress, save_images)

    def _interrupted_message(self, path: Path) -> str:
        command = shlex.join(["nerfstage", "train", "--resume", "-o", str(self.run_dir)])
        return (f"training interrupted at step {self.state.step}/{self.config.steps}; checkpoint {path}; "
                f"resume with: {command}")

    def _loop(self, bar, window: dict, stop: InterruptFlag, on_step, callback) -> None:
        """Training steps until the run's end, its time budget, or Ctrl+C (``stop``, honoured between steps)."""
        cfg, state = self.config, self.state
        while state.step < cfg.steps and not self._out_of_time() and not stop.requested:
            with self.model_lock:
                start = time.perf_counter()
                info = self.step()
                elapsed = time.perf_counter() - start
                state.train_seconds += elapsed
            self._progress(bar, window, info, elapsed)
            if cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0:
                self.checkpoint()
            if cfg.eval_every > 0 and state.step % cfg.eval_every == 0 and self.dp.is_main:
                bar.write(f"step {state.step}: held-out view PSNR {self.quick_eval():.2f} dB")
            if callback is not None:
                callback(self._step_info(info, elapsed))
            if on_step is not None:
                on_step(state.step)

    def _step_info(self, info: dict, elapsed: float) -> TrainStepInfo:
        return TrainStepInfo(step=self.state.step, total_steps=self.config.steps, loss=info["loss"],
                             psnr=psnr_from_mse(info["loss"]), rays_per_second=info["rays"] / max(elapsed, 1e-9),
                             seconds=self.state.train_seconds, trainer=self)

    def _out_of_time(self) -> bool:
        budget = self.config.time_budget_s
        return budget is not None and self.dp.any(self.state.train_seconds >= budget)

    def _progress(self, bar, window: dict, info: dict, elapsed: float) -> None:
        window["loss"] += info["loss"]
        window["rays"] += info["rays"]
        window["seconds"] += elapsed
        window["n"] += 1
        if window["n"] >= 10 or self.state.step == self.config.steps:
            loss = window["loss"] / window["n"]
            bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{psnr_from_mse(loss):.2f}",
                            rays_s=f"{window['rays'] / max(window['seconds'], 1e-9):.0f}", refresh=False)
            bar.update(window["n"])
            window.update(loss=0.0, rays=0, seconds=0.0, n=0)

    def final_metrics(self, progress: bool, save_images: Path | None = None) -> dict[str, Any]:
        """Evaluate the held-out views and write RUN/metrics.json (rank 0; every rank returns the metrics)."""
        state = dataclasses.asdict(self.state)
        state["total_samples"] = int(self.dp.sum(state["total_samples"]))  # the whole job's samples and rays
        state["total_rays"] = int(self.dp.sum(state["total_rays"]))
        comm = self.dp.comm_seconds / max(self.dp.steps, 1)
        if not self.dp.is_main:
            return self.dp.share(None)
        metrics = self._evaluate(progress, save_images, state)
        if self.dp.active:
            metrics |= {"world_size": self.dp.world_size, "comm_seconds_per_step": comm,
                        "allreduce_bytes_per_step": self.dp.bytes_per_step}
        write_metrics(self.run_dir / "metrics.json", metrics)
        return self.dp.share(metrics)

    def _evaluate(self, progress: bool, save_images: Path | None, state: dict) -> dict[str, Any]:
        metrics: dict[str, Any] = {"psnr": math.nan, "ssim": math.nan}
        start = time.perf_counter()
        if self.eval_views is not None:
            metrics = evaluate_views(self.model, self.eval_views, self.config.eval_chunk, progress, save_images)
        metrics["eval_seconds"] = time.perf_counter() - start
        eval_views = 0 if self.eval_views is None else len(self.eval_views)
        metrics.update(run_figures(self.split, eval_views, self.state.step, state, self.device, self.model))
        return metrics


def train(
    dataset: Dataset | Path | str | None,
    run_dir: Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    resume_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    save_images: Path | None = None,
    callback: Callable[[TrainStepInfo], None] | None = None,
) -> dict[str, Any]:
    """Train a radiance field on ``dataset`` into ``run_dir``; returns the held-out metrics (also in
    RUN/metrics.json). With ``resume`` the run's own config.json is used (``config`` is ignored;
    ``resume_overrides`` may change steps / time budget / eval and checkpoint cadence / device / threads), and
    training continues from the newest checkpoint (from step 0 when the run died before its first one).
    ``dataset`` may be None on resume (the run's recorded dataset is used). ``on_step(step)`` is called after
    every step (tests raise from it to simulate a kill). ``save_images``: folder for the final held-out renders
    (``NAME.png`` and ``NAME_vs_gt.png``, ground truth | render). ``callback(TrainStepInfo)`` is called after
    every step (a live viewer renders through ``info.trainer.render_camera`` under ``info.trainer.model_lock``)."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.json").is_file():
            raise CheckpointError(f"{run_dir}: nothing to resume (no config.json); start it without --resume")
        config = _resumed_config(load_config(run_dir / "config.json"), resume_overrides or {})
    config = config or TrainConfig()
    check_ranges(config)
    resolve_device(config.device)
    data = as_dataset(dataset if dataset is not None else config.dataset)
    validate_dataset(data)
    bind_local_device()
    with process_group(str(resolve_device(config.device))):
        rank = world_from_env()[0]
        with output_lock(run_dir) if rank == 0 else nullcontext():  # rank 0 writes RUN
            return _train(data, run_dir, config, resume, overwrite, progress, on_step, save_images, callback)


def _train(data: Dataset, run_dir: Path, config: TrainConfig, resume: bool, overwrite: bool, progress: bool,
           on_step, save_images, callback) -> dict[str, Any]:
    """``train`` inside its process group (a no-op one outside torchrun), the dataset valid and RUN's lock held
    by rank 0, which alone writes to RUN."""
    rank = world_from_env()[0]
    if rank == 0:
        prepare_run_dir(run_dir, resume, overwrite)
    barrier()
    config = dataclasses.replace(config, dataset=str(data.root), model=scene_model_config(config, is_bounded(data)))
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    ckpt.seed_everything(config.seed)
    scene, aabb = _scene_frame(data, run_dir, config, resume)
    latest = ckpt.latest_checkpoint(run_dir) if resume else None
    saved = ckpt.load_checkpoint(latest, map_location="cpu") if latest is not None else None
    if saved is not None:
        ckpt.check_finite(saved, latest)  # a damaged run is refused before anything in it changes
    if rank == 0:
        save_config(run_dir / "config.json", config)
        write_dataparser_transforms(run_dir / "dataparser_transforms.json", scene)
    trainer = Trainer(config, data, run_dir, scene, torch.tensor(aabb, dtype=torch.float32))
    if saved is not None:
        trainer.restore(latest, saved)
    return trainer.run(progress=progress, on_step=on_step, save_images=save_images, callback=callback)


def _scene_frame(data: Dataset, run_dir: Path, config: TrainConfig, resume: bool) -> tuple[SceneTransform, Any]:
    """The normalised frame: on resume the run's own ``dataparser_transforms.json`` (so a run started under
    other centring rules keeps its frame), otherwise ``normalize_scene`` with ``config.data.scene_centre``."""
    existing = run_dir / "dataparser_transforms.json"
    if resume and existing.is_file():
        return read_dataparser_transforms(existing), scene_box(data)
    return normalize_scene(data, config.data.scene_centre)


_RESUME_OVERRIDABLE = ("steps", "time_budget_s", "eval_every", "device", "checkpoint_every", "num_threads")


def _resumed_config(saved: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config with the fields a resume may change replaced (ConfigError for any other field)."""
    bad = sorted(set(overrides) - set(_RESUME_OVERRIDABLE))
    if bad:
        raise ConfigError(f"cannot change {', '.join(bad)} when resuming; only {', '.join(_RESUME_OVERRIDABLE)}")
    merged = {**config_to_dict(saved), **overrides}
    return config_from_dict(TrainConfig, merged)


__all__ = ["TrainConfig", "TrainState", "TrainStepInfo", "Trainer", "train", "config_from_dict", "lr_factor"]
