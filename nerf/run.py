"""The one way to get a trained field: :func:`load_run` reads a run folder into a :class:`LoadedRun`.

A run folder (``nerfstage train`` output) holds ``config.json``, ``dataparser_transforms.json``,
``checkpoints/step-*.ckpt`` and, once evaluated, ``metrics.json``. :func:`load_run` rebuilds the model of the
newest checkpoint in eval mode and reads the dataset's cameras mapped into the normalised scene frame (the frame
camera paths live in), the training views with the poses the run refined. Every consumer -- evaluation, render,
export, the whole-chain runner, the viewer -- takes a ``LoadedRun``; a running ``Trainer`` gives the same object
for its current field (``Trainer.as_run``). A run whose dataset moved still loads, without cameras, unless
``dataset`` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..capture.dataset import Dataset
from ..capture.loader import as_dataset
from ..core.errors import CheckpointError, DatasetError, InputError
from ..core.geometry import Intrinsics
from .camera_opt import refine_from_checkpoint
from .checkpoint import check_finite, checkpoint_step, latest_checkpoint, load_checkpoint
from .config import TrainConfig, load_config
from .data import SceneTransform, read_dataparser_transforms, resolve_device, split_indices
from .renderer import make_model


@dataclass
class RunCameras:
    """The dataset's cameras in a run's normalised frame, and the run's train / held-out split of them."""

    world_from_cams: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    """[N, 4, 4] every dataset camera, OpenGL axes, normalised scene frame (training views as refined)."""
    intrinsics: list[Intrinsics] = field(default_factory=list)
    """Intrinsics of each camera (full resolution, as in the dataset)."""
    image_paths: list[Path] = field(default_factory=list)
    """Image file of each camera."""
    train_indices: list[int] = field(default_factory=list)
    """Indices of the training views."""
    eval_indices: list[int] = field(default_factory=list)
    """Indices of the held-out views (all of them, before ``DataConfig.eval_view_stride``)."""
    split: str = ""
    """Name of the split ("test" or "every-8th", see ``data.split_indices``)."""


def run_cameras(dataset: Dataset, scene: SceneTransform, hold_every: int,
                refine=lambda train_world_from_cams: train_world_from_cams) -> RunCameras:
    """The cameras of ``dataset`` in the normalised frame of ``scene``; ``refine`` maps the training views'
    poses ([T, 4, 4], training-split order) to the run's refined ones."""
    poses = np.stack([np.asarray(f.world_from_cam, dtype=np.float64) for f in dataset.frames])  # [N, 4, 4]
    world_from_cams = scene.apply(poses)
    train, held, split = split_indices(dataset, hold_every)
    world_from_cams[train] = refine(world_from_cams[train])
    return RunCameras(world_from_cams, [f.intrinsics for f in dataset.frames],
                      [Path(f.image_path) for f in dataset.frames], list(train), list(held), split)


@dataclass
class LoadedRun:
    """A trained run ready to render: the model, its scene frame and the cameras it was trained from."""

    run_dir: Path
    """The run folder."""
    model: torch.nn.Module
    """The NerfModel (newest checkpoint, eval mode, on ``device``)."""
    config: TrainConfig
    """RUN/config.json."""
    scene: SceneTransform
    """Dataset frame -> normalised scene frame (RUN/dataparser_transforms.json)."""
    step: int
    """Training step of the loaded checkpoint (of the running trainer for ``Trainer.as_run``)."""
    checkpoint: Path | None
    """The checkpoint file loaded (None for a running trainer's field)."""
    device: torch.device
    """Where the model lives."""
    dataset_path: Path | None
    """The dataset the run was trained on (None when it is not recorded)."""
    cameras: RunCameras = field(default_factory=RunCameras)
    """The dataset's cameras (empty when the dataset is gone)."""
    dataset: Dataset | None = None
    """The dataset read (None when it is gone)."""
    trainer_state: dict[str, Any] = field(default_factory=dict)
    """The checkpoint's training state (``train_seconds``, ``total_samples``, ``total_rays``, ...)."""

    @property
    def has_cameras(self) -> bool:
        return len(self.cameras.world_from_cams) > 0

    @property
    def world_from_cams(self) -> np.ndarray:
        """[N, 4, 4] every dataset camera, OpenGL axes, normalised frame (see ``RunCameras``)."""
        return self.cameras.world_from_cams

    @property
    def intrinsics(self) -> list[Intrinsics]:
        return self.cameras.intrinsics

    @property
    def image_paths(self) -> list[Path]:
        return self.cameras.image_paths

    @property
    def train_indices(self) -> list[int]:
        return self.cameras.train_indices


def _require_files(run_dir: Path) -> Path:
    """The newest checkpoint; CheckpointError naming what is missing."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found; give a folder written by `nerfstage train`")
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: no config.json; expected a run folder written by `nerfstage train`")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(f"{run_dir}: no checkpoints/step-*.ckpt; train the run (or resume it) first")
    if not (run_dir / "dataparser_transforms.json").is_file():
        raise CheckpointError(f"{run_dir}: no dataparser_transforms.json; expected a run folder written by "
                              "`nerfstage train`")
    return latest


def _build_model(config: TrainConfig, data: dict, device: torch.device, path: Path) -> torch.nn.Module:
    check_finite(data, path)
    try:
        scene = data["scene"]
        model = make_model(config, scene["aabb"], int(scene["num_images"]), device)
        model.load_state_dict(data["model"])
    except (KeyError, RuntimeError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: does not match the run's config.json ({first})") from err
    return model.eval()


def _read_dataset(loaded: LoadedRun, checkpoint: dict) -> None:
    """Fill the dataset and its cameras: training views get the run's refined poses when it refined them
    (``pose_refinement``), held-out views keep their dataset poses."""
    loaded.dataset = as_dataset(loaded.dataset_path)
    loaded.cameras = run_cameras(loaded.dataset, loaded.scene, loaded.config.data.hold_every,
                                 lambda poses: refine_from_checkpoint(checkpoint, poses))


def load_run(run_dir: Path, device: str = "auto", dataset: Path | None = None, cameras: bool = True) -> LoadedRun:
    """Load RUN's newest checkpoint into an eval-mode model on ``device`` (auto | cpu | cuda).

    ``dataset`` overrides the dataset recorded in config.json (for moved data); with ``cameras`` the dataset and
    its cameras are read (skipped silently when the recorded dataset no longer exists). CheckpointError when the
    folder is not a trained run; ConfigError / DatasetError for an unreadable config or transforms.
    """
    run_dir = Path(run_dir)
    latest = _require_files(run_dir)
    config = load_config(run_dir / "config.json")
    scene = read_dataparser_transforms(run_dir / "dataparser_transforms.json")
    dev = resolve_device(device)
    data = load_checkpoint(latest, map_location="cpu")
    model = _build_model(config, data, dev, latest)
    if getattr(model, "proposal", None) is not None:
        model.use_baked_cache(run_dir)  # empty-space grids baked on the first fast render, cached in the run
    source = Path(dataset) if dataset is not None else (Path(config.dataset) if config.dataset else None)
    loaded = LoadedRun(run_dir, model, config, scene, int(data["step"]), latest, dev, source,
                       trainer_state=dict(data.get("trainer") or {}))
    if cameras and source is not None and (dataset is not None or source.exists()):
        try:
            _read_dataset(loaded, data)
        except InputError:
            if dataset is not None:
                raise
    return loaded


def require_dataset(run: LoadedRun) -> Dataset:
    """The run's dataset; DatasetError naming where it was expected when it is not available."""
    if run.dataset is None:
        raise DatasetError(f"{run.dataset_path}: the dataset of run {run.run_dir} is not available; "
                           "pass the dataset's new location")
    return run.dataset


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """RUN/metrics.json, or None when it is missing or unreadable."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def finished_metrics(run_dir: Path) -> dict[str, Any] | None:
    """RUN/metrics.json when the run reached its final step (its steps, or its time budget), holds the held-out
    ``psnr`` and ``ssim``, and the checkpoint of that step exists; None otherwise."""
    metrics, latest = read_metrics(run_dir), latest_checkpoint(run_dir)
    try:
        config = load_config(Path(run_dir) / "config.json")
        step, seconds = int(metrics["steps"]), float(metrics["train_seconds"])
        float(metrics["psnr"]), float(metrics["ssim"])
    except (InputError, KeyError, TypeError, ValueError):
        return None
    budget = config.time_budget_s if config.time_budget_s is not None else float("inf")
    done = step >= config.steps or seconds >= budget
    if not done or latest is None or checkpoint_step(latest) != step:
        return None
    return metrics
