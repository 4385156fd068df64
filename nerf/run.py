"""Load a trained run folder once, for every stage that renders or exports from it.

A run folder (``nerfstage train`` output) holds ``config.json``, ``dataparser_transforms.json`` and
``checkpoints/step-*.ckpt``. :func:`load_run` rebuilds the model of the newest checkpoint in eval mode and
reads the training cameras mapped into the normalised scene frame (the frame camera paths live in). Reading the
dataset is optional for the model but needed for the training cameras; a run whose dataset moved still loads,
with ``world_from_cams`` empty unless ``dataset`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.geometry import Intrinsics
from ..core.errors import CheckpointError, InputError
from .config import TrainConfig
from .data import SceneTransform


@dataclass
class LoadedRun:
    """A trained run ready to render: the model and the cameras it was trained from."""

    run_dir: Path
    """The run folder."""
    model: torch.nn.Module
    """The NerfModel of the newest checkpoint, in eval mode, on ``device``."""
    config: TrainConfig
    """RUN/config.json."""
    scene: SceneTransform
    """Dataset frame -> normalised scene frame (RUN/dataparser_transforms.json)."""
    step: int
    """Training step of the loaded checkpoint."""
    checkpoint: Path
    """The checkpoint file loaded."""
    device: torch.device
    """Where the model lives."""
    dataset_path: Path | None
    """The dataset the run was trained on (None when it is not recorded)."""
    world_from_cams: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    """[N, 4, 4] every dataset camera, OpenGL axes, normalised scene frame (empty if the dataset is gone)."""
    intrinsics: list[Intrinsics] = field(default_factory=list)
    """Intrinsics of each camera in ``world_from_cams`` (full-resolution, as in the dataset)."""
    train_indices: list[int] = field(default_factory=list)
    """Indices into ``world_from_cams`` of the training views (the rest were held out)."""
    image_paths: list[Path] = field(default_factory=list)
    """Image file of each camera in ``world_from_cams``."""

    @property
    def has_cameras(self) -> bool:
        return len(self.world_from_cams) > 0


def _require_files(run_dir: Path) -> Path:
    """The newest checkpoint; CheckpointError naming what is missing."""
    from .checkpoint import latest_checkpoint

    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found; give a folder written by `nerfstage train`")
    for name in ("config.json", "dataparser_transforms.json"):
        if not (run_dir / name).is_file():
            raise CheckpointError(f"{run_dir}: no {name}; expected a run folder written by `nerfstage train`")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(f"{run_dir}: no checkpoints/step-*.ckpt; train the run (or resume it) first")
    return latest


def _build_model(config: TrainConfig, data: dict, device: torch.device, path: Path) -> torch.nn.Module:
    from .trainer import make_model

    try:
        scene = data["scene"]
        model = make_model(config, scene["aabb"], int(scene["num_images"]), device)
        model.load_state_dict(data["model"])
    except (KeyError, RuntimeError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: does not match the run's config.json ({first})") from err
    return model.eval()


def _read_cameras(loaded: LoadedRun, dataset: Path, checkpoint: dict) -> None:
    """Fill the cameras from the dataset (normalised frame); training views get the run's refined poses when it
    refined them (``pose_refinement``), held-out views keep their dataset poses."""
    from .camera_opt import refine_from_checkpoint
    from .data import split_indices
    from .trainer import load_any_dataset

    dset = load_any_dataset(dataset)
    poses = np.stack([np.asarray(f.world_from_cam, dtype=np.float64) for f in dset.frames])  # [N, 4, 4]
    loaded.world_from_cams = loaded.scene.apply(poses)
    loaded.intrinsics = [f.intrinsics for f in dset.frames]
    loaded.image_paths = [Path(f.image_path) for f in dset.frames]
    loaded.train_indices = split_indices(dset, loaded.config.data.hold_every)[0]
    train = list(loaded.train_indices)
    loaded.world_from_cams[train] = refine_from_checkpoint(checkpoint, loaded.world_from_cams[train])


def load_run(run_dir: Path, device: str = "auto", dataset: Path | None = None, cameras: bool = True) -> LoadedRun:
    """Load RUN's newest checkpoint into an eval-mode model on ``device`` (auto | cpu | cuda).

    ``dataset`` overrides the dataset recorded in config.json (for moved data); with ``cameras`` the training
    cameras are read from it (skipped silently when the recorded dataset no longer exists). CheckpointError
    when the folder is not a trained run; ConfigError / DatasetError for an unreadable config or transforms.
    """
    from .checkpoint import load_checkpoint
    from .config import load_config
    from .data import read_dataparser_transforms, resolve_device

    run_dir = Path(run_dir)
    latest = _require_files(run_dir)
    config = load_config(run_dir / "config.json")
    scene = read_dataparser_transforms(run_dir / "dataparser_transforms.json")
    dev = resolve_device(device)
    data = load_checkpoint(latest, map_location="cpu")
    model = _build_model(config, data, dev, latest)
    source = Path(dataset) if dataset is not None else (Path(config.dataset) if config.dataset else None)
    loaded = LoadedRun(run_dir, model, config, scene, int(data["step"]), latest, dev, source)
    if cameras and source is not None and (dataset is not None or source.exists()):
        try:
            _read_cameras(loaded, source, data)
        except InputError:
            if dataset is not None:
                raise
    return loaded
