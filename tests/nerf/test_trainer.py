"""nerf.trainer: a tiny synthetic scene trains to a PSNR threshold; kill-and-resume; schedule; run folder rules."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from nerfstage.core.errors import CheckpointError, ConfigError, OutputExistsError
from nerfstage.nerf.checkpoint import list_checkpoints
from nerfstage.nerf.config import ModelConfig, TrainConfig
from nerfstage.nerf.encoding import HashGridConfig
from nerfstage.nerf.optim import coarse_to_fine_weights
from nerfstage.nerf.trainer import lr_factor, next_num_rays, train


def write_tiny_scene(folder: Path, num_frames: int = 16, width: int = 48, height: int = 36) -> Path:
    """The built-in synthetic room at thumbnail size (nerfstudio transforms.json with true poses)."""
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset

    write_synthetic_dataset(folder, SyntheticOptions(num_frames=num_frames, width=width, height=height, seed=0))
    return folder


def tiny_config(steps: int, rays: int = 512, **overrides) -> TrainConfig:
    """A small field and a coarse marcher: a few hundred ms per step on 2 CPU threads."""
    model = ModelConfig(
        encoding=HashGridConfig(num_levels=8, log2_hashmap_size=14, max_resolution=128),
        hidden_dim=32, hidden_dim_color=32, appearance_dim=0, occupancy_resolution=16,
        occupancy_warmup_steps=32, occupancy_update_every=4, render_step_size=0.05,
        sampler="occupancy",  # the occupancy path these tests were measured on (proposal: test_proposal.py)
    )
    fields = dict(steps=steps, batch_rays=rays, target_samples=0, lr_warmup_steps=10, lr_milestones=(0.6, 0.85),
                  checkpoint_every=1000, unbounded_cascades=2, num_threads=2, model=model)
    return TrainConfig(**{**fields, **overrides})


class Killed(Exception):
    """Stands for SIGKILL in the middle of a run."""


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_tiny_scene(tmp_path_factory.mktemp("tiny_scene"))


def constant_colour_psnr(scene: Path) -> float:
    """Held-out PSNR of the best constant image (the training images' mean colour): the floor to beat."""
    from nerfstage.capture.loader import load_dataset
    from nerfstage.nerf.data import load_views, normalize_scene, split_indices
    from nerfstage.nerf.metrics import psnr

    dataset = load_dataset(scene)
    train_idx, held, _ = split_indices(dataset)
    transform, _ = normalize_scene(dataset)
    mean = load_views(dataset, train_idx, transform).pixels.float().mean(0).numpy() / 255
    views = load_views(dataset, held, transform)
    return float(np.mean([psnr(np.broadcast_to(mean, (len(c), 3)), c.numpy())
                          for c in (views.view_rays(v)[2] for v in range(len(views)))]))


def test_tiny_scene_trains_to_psnr_threshold(tmp_path_factory, tmp_path):
    scene = write_tiny_scene(tmp_path_factory.mktemp("tiny_scene_32"), num_frames=32)
    metrics = train(scene, tmp_path / "run", tiny_config(steps=300), progress=False)
    # measured (2 cores shared with ~14 other busy threads, OMP_WAIT_POLICY=PASSIVE): held-out 20.84 dB / SSIM
    # 0.485 on the 4 held-out views after 300 steps in 27.9 s of training (19.59 dB at 100 steps, 20.24 at 200);
    # the best constant image scores ~17.4 dB on this low-contrast room. 16 frames instead of 32 plateau at
    # ~19.2 dB (too few views of a 300-degree walk for novel views).
    assert metrics["psnr"] >= 20.0, metrics["psnr"]
    assert metrics["psnr"] >= constant_colour_psnr(scene) + 2.5
    assert 0.40 <= metrics["ssim"] <= 1.0, metrics["ssim"]
    assert metrics["steps"] == 300 and metrics["eval_views"] == 4 and metrics["split"] == "every-8th"
    assert metrics["train_seconds"] < 60.0, metrics["train_seconds"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("psnr", "ssim", "split", "eval_views", "steps", "train_seconds", "device", "samples_per_second"):
        assert key in saved
    assert saved["samples_per_second"] > 0 and saved["device"] == "cpu"
    assert saved["encoding_backend"] in ("cpp", "torch")
    assert json.loads((tmp_path / "run" / "dataparser_transforms.json").read_text())["scale"] > 0
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [300]


def test_kill_and_resume_matches_uninterrupted_run(scene, tmp_path):
    config = tiny_config(steps=20, rays=256, checkpoint_every=5)
    straight = train(scene, tmp_path / "straight", config, progress=False)

    def kill_at_13(step: int) -> None:
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        train(scene, tmp_path / "killed", config, progress=False, on_step=kill_at_13)
    assert [s for s, _ in list_checkpoints(tmp_path / "killed")] == [5, 10]
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = train(None, tmp_path / "killed", resume=True, progress=False)
    assert resumed["steps"] == straight["steps"] == 20
    assert resumed["psnr"] == pytest.approx(straight["psnr"], abs=0.05)
    assert resumed["ssim"] == pytest.approx(straight["ssim"], abs=0.005)


def test_resume_rules(scene, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(scene, tmp_path / "never", resume=True, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(scene, tmp_path / "busy", tiny_config(steps=1), progress=False)
    with pytest.raises(OutputExistsError, match="not a nerfstage run"):
        train(scene, tmp_path / "busy", tiny_config(steps=1), overwrite=True, progress=False)
    train(scene, tmp_path / "run", tiny_config(steps=2), progress=False)
    with pytest.raises(ConfigError, match="cannot change seed"):
        train(None, tmp_path / "run", resume=True, resume_overrides={"seed": 3}, progress=False)
    more = train(None, tmp_path / "run", resume=True, resume_overrides={"steps": 4}, progress=False)
    assert more["steps"] == 4


def test_lr_schedule_numbers():
    config = TrainConfig(steps=1000, lr_warmup_steps=100, lr_milestones=(0.5, 0.75), lr_gamma=0.1)
    assert lr_factor(config, 0, 0.0) == pytest.approx(0.01)
    assert lr_factor(config, 50, 0.0) == pytest.approx(0.505)
    assert lr_factor(config, 400, 0.0) == pytest.approx(1.0)
    assert lr_factor(config, 500, 0.0) == pytest.approx(0.1)
    assert lr_factor(config, 999, 0.0) == pytest.approx(0.01)
    timed = TrainConfig(steps=1000, lr_warmup_steps=0, lr_milestones=(0.5,), lr_gamma=0.1, time_budget_s=10.0)
    assert lr_factor(timed, 10, 6.0) == pytest.approx(0.1)  # the time budget runs out first


def test_coarse_to_fine_window_numbers():
    """BARF's window over 16 levels opening during the first half of the run, from 4 levels."""
    start = coarse_to_fine_weights(16, 0.0, 0.5)
    assert start.tolist() == [1.0] * 4 + [0.0] * 12
    mid = coarse_to_fine_weights(16, 0.125, 0.5)  # alpha = 4 + 12 * 0.25 = 7
    assert mid[:7].tolist() == [1.0] * 7 and float(mid[7:].abs().max()) == 0.0
    eased = coarse_to_fine_weights(16, 0.25 * 0.5 / 12 + 0.125, 0.5)  # alpha = 7.25: level 7 at (1 - cos(pi/4))/2
    assert float(eased[7]) == pytest.approx((1.0 - math.cos(math.pi / 4)) / 2.0, abs=1e-5)
    assert coarse_to_fine_weights(16, 0.5, 0.5) is None and coarse_to_fine_weights(16, 0.1, 0.0) is None


def test_adaptive_ray_count():
    config = TrainConfig(target_samples=1 << 16, max_batch_rays=1 << 14)
    assert next_num_rays(config, 4096, 1 << 17) == 2048
    assert next_num_rays(config, 4096, 1 << 10) == 1 << 14  # capped
    assert next_num_rays(config, 4096, 0) == 4096
    assert next_num_rays(TrainConfig(target_samples=0), 999, 12345) == 999
    assert np.isfinite(next_num_rays(config, 256, 1 << 30))


def test_callback_every_step_and_viewer_renders_under_the_lock(scene, tmp_path):
    """A viewer thread renders the current field between steps: the step count never moves while it holds
    ``model_lock``, and ``render_camera`` (OpenGL pose, normalised frame) matches the training rays' render."""
    import threading

    import torch

    from nerfstage.capture.loader import load_dataset
    from nerfstage.nerf.metrics import psnr_from_mse

    infos, renders, held, stop = [], [], [], threading.Event()

    def viewer(trainer) -> None:
        frame = load_dataset(scene).frames[1]  # frame 1 is a training view (0 is held out)
        pose = trainer.scene.apply(np.asarray(frame.world_from_cam)[None])[0]
        while not stop.is_set() and len(renders) < 3:
            with trainer.model_lock:  # training cannot step while a viewer holds the lock
                before = trainer.state.step
                time.sleep(0.05)
                held.append((before, trainer.state.step))
            renders.append(trainer.render_camera(pose, frame.intrinsics)["rgb"])  # takes the lock itself

    def callback(info) -> None:
        assert not info.trainer.model_lock.locked()
        infos.append(info)
        if info.step == 1:
            threading.Thread(target=viewer, args=(info.trainer,), daemon=True).start()

    metrics = train(scene, tmp_path / "run", tiny_config(steps=25, rays=256), progress=False, callback=callback)
    stop.set()
    assert [i.step for i in infos] == list(range(1, 26)) and all(i.total_steps == 25 for i in infos)
    assert all(np.isfinite(i.loss) and i.psnr == pytest.approx(psnr_from_mse(i.loss)) for i in infos)
    assert all(i.rays_per_second > 0 for i in infos)
    assert np.all(np.diff([i.seconds for i in infos]) > 0)
    assert infos[-1].seconds == pytest.approx(metrics["train_seconds"])
    assert len(renders) >= 1 and renders[0].shape == (36, 48, 3) and held
    assert all(before == after for before, after in held), held
    trainer = infos[-1].trainer
    view = trainer.train_views.frame_indices.index(1)
    origins, dirs, colours = trainer.train_views.view_rays(view)
    via_rays = trainer.render_image_rays(origins, dirs, 36, 48)["rgb"]
    frame = load_dataset(scene).frames[1]
    via_camera = trainer.render_camera(trainer.scene.apply(np.asarray(frame.world_from_cam)[None])[0],
                                       frame.intrinsics)["rgb"]
    assert torch.allclose(via_rays, via_camera, atol=1e-4), float((via_rays - via_camera).abs().max())
    dataset_poses = np.stack([np.asarray(f.world_from_cam) for f in load_dataset(scene).frames])
    expected = trainer.scene.apply(dataset_poses[trainer.train_views.frame_indices])
    assert np.abs(trainer.train_world_from_cams() - expected).max() < 1e-5  # no refinement: the dataset's poses


@pytest.mark.parametrize("model", ["OPENCV", "OPENCV_FISHEYE"])
def test_render_camera_renders_the_foundation_rays(scene, tmp_path, model):
    """``Trainer.render_camera`` = the model rendering ``core.rays.generate_ray_batch`` rays of the camera; pixels
    the camera model cannot unproject (the folded fisheye's corners) get the background, depth 0, alpha 0."""
    import dataclasses

    import torch

    from nerfstage.capture.loader import load_dataset
    from nerfstage.core.cameras import camera_from_intrinsics
    from nerfstage.core.geometry import Intrinsics
    from nerfstage.core.rays import generate_ray_batch
    from nerfstage.nerf.data import normalize_scene
    from nerfstage.nerf.trainer import Trainer, scene_model_config

    dataset = load_dataset(scene)
    config = tiny_config(steps=4, rays=256)
    config = dataclasses.replace(config, model=scene_model_config(config, bounded=False))
    transform, aabb = normalize_scene(dataset)
    trainer = Trainer(config, dataset, tmp_path, transform, torch.tensor(aabb, dtype=torch.float32))
    for _ in range(4):
        trainer.step()
    if model == "OPENCV":
        intr = Intrinsics(40.0, 41.0, 24.3, 17.6, 48, 36, model, k1=-0.15, k2=0.04, p1=0.002, p2=-0.001, k3=-0.005)
    else:  # theta_d(theta) peaks at 0.86 rad: the corners have no ray
        intr = Intrinsics(24.0, 24.0, 24.0, 18.0, 48, 36, model, k1=-0.2)
    pose = transform.apply(np.asarray(dataset.frames[1].world_from_cam)[None])[0]
    out = trainer.render_camera(pose, intr)
    rays = generate_ray_batch(camera_from_intrinsics(intr), pose, dtype=torch.float64)
    keep = rays.valid.nonzero().squeeze(-1)
    assert (len(keep) == 48 * 36) == (model == "OPENCV") and len(keep) > 48 * 36 // 2
    trainer.model.eval()
    with torch.no_grad():
        direct = trainer.model.render_rays(rays.origins[keep].float(), rays.directions[keep].float(), None, None)
    assert direct["accumulation"].max() > 0.05  # the field is not empty: the comparison means something
    for key, shape in (("rgb", (36, 48, 3)), ("depth", (36, 48)), ("accumulation", (36, 48))):
        got = out[key].reshape(48 * 36, -1).squeeze(-1)
        assert out[key].shape == shape
        error = float((got[keep] - direct[key].float()).abs().max())
        assert error < 1e-5, (key, error)
    unseen = ~rays.valid
    assert torch.all(out["rgb"].reshape(-1, 3)[unseen] == 1.0)  # the model's (white) evaluation background
    assert torch.all(out["depth"].reshape(-1)[unseen] == 0) and torch.all(out["accumulation"].reshape(-1)[unseen] == 0)
