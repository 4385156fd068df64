"""Shared fixtures. Real captures come from ``NERFSTAGE_DATA`` (default ``../shared/data``); a test that needs
them skips with a reason when they are absent, except under ``CI=true`` where absence is a failure."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# OpenMP threads that busy-wait make torch 6-10x slower whenever anything else shares the cores (the viewer tests
# render on a second thread while training runs); sleeping waiters cost nothing measurable here. Set before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def data_root() -> Path:
    return Path(os.environ.get("NERFSTAGE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data():
    """Return a function ``need(name) -> Path`` for a folder of the shared real captures."""

    def need(name: str) -> Path:
        path = data_root() / name
        if not path.exists():
            reason = f"real capture {path} not found (set NERFSTAGE_DATA)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason + " -- required under CI=true")
            pytest.skip(reason)
        return path

    return need


@dataclass
class TinyRun:
    """A run trained once per test session on a thumbnail synthetic scene (see ``tiny_run``)."""

    run_dir: Path
    """The run folder (config.json, dataparser_transforms.json, checkpoints/, metrics.json)."""
    dataset_dir: Path
    """The synthetic dataset it was trained on (transforms.json, images/, ground_truth.json)."""
    capture: object
    """``nerfstage.capture.synthetic.SyntheticCapture``: true poses and intrinsics of every frame."""
    metrics: dict
    """What training returned (held-out psnr, ssim, steps, ...)."""


TINY_RUN_FRAMES, TINY_RUN_SIZE, TINY_RUN_STEPS = 24, (64, 48), 100


def tiny_run_config(steps: int = TINY_RUN_STEPS):
    """A small field and a coarse marcher that trains in well under a minute on 2 CPU threads."""
    from nerfstage.nerf.config import ModelConfig, TrainConfig
    from nerfstage.nerf.encoding import HashGridConfig

    model = ModelConfig(
        encoding=HashGridConfig(num_levels=8, log2_hashmap_size=14, max_resolution=128),
        hidden_dim=32, hidden_dim_color=32, appearance_dim=0, occupancy_resolution=16,
        occupancy_warmup_steps=32, occupancy_update_every=4, render_step_size=0.05,
        sampler="occupancy",  # the occupancy path these tests were measured on (proposal: test_proposal.py)
    )
    return TrainConfig(steps=steps, batch_rays=512, target_samples=0, lr_warmup_steps=10, lr_milestones=(0.6, 0.85),
                       checkpoint_every=100000, unbounded_cascades=2, num_threads=2, device="cpu", seed=0,
                       model=model)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """Train ONE tiny run per session (24 synthetic frames of 64x48, 100 steps, CPU): shared by the render,
    export and viewer tests. Treat it as read-only; copy it before changing anything in it."""
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset
    from nerfstage.nerf.trainer import train

    root = tmp_path_factory.mktemp("tiny_run")
    width, height = TINY_RUN_SIZE
    capture = write_synthetic_dataset(root / "scene", SyntheticOptions(num_frames=TINY_RUN_FRAMES, width=width,
                                                                       height=height, seed=0))
    metrics = train(root / "scene", root / "run", tiny_run_config(), progress=False)
    return TinyRun(root / "run", root / "scene", capture, metrics)
