"""nerf.run and nerf.chunked: the one run interface (load_run / Trainer.as_run / finished_metrics) and the one
chunked renderer every consumer calls."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nerfstage.nerf.checkpoint import checkpoint_step, latest_checkpoint
from nerfstage.nerf.chunked import render_rays_chunked, rays_per_call
from nerfstage.nerf.run import finished_metrics, load_run


def rays_of(run, count: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from the first training camera's centre towards random points of the scene box."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.as_tensor(run.world_from_cams[run.train_indices[0]][:3, 3], dtype=torch.float32)
    targets = torch.rand(count, 3, generator=gen) - 0.5
    return centre.expand(count, 3).clone(), torch.nn.functional.normalize(targets - centre, dim=-1)


def test_chunked_renderer_is_independent_of_the_chunk_size_and_reports_progress(tiny_run):
    run = load_run(tiny_run.run_dir, device="cpu")
    origins, dirs = rays_of(run)
    run.model.inference.method = "reference"  # the fast path would raise the chunk to its own max_rays
    assert rays_per_call(run.model, 50) == 50
    whole = render_rays_chunked(run.model, origins, dirs, max_rays_per_chunk=1 << 20)
    finished: list[int] = []
    parts = render_rays_chunked(run.model, origins, dirs, max_rays_per_chunk=128, progress=finished.append)
    assert finished == [128, 128, 44]
    for key in ("rgb", "depth", "accumulation"):
        assert torch.allclose(whole[key], parts[key], atol=1e-6), key
    assert whole["num_samples"] == parts["num_samples"] > 0
    assert whole["rgb"].shape == (300, 3) and whole["depth"].shape == (300,) and whole["rgb"].dtype == torch.float32
    direct = run.model.render_rays(origins, dirs, None, None, training=False)
    assert torch.allclose(direct["rgb"], whole["rgb"], atol=1e-6)


def test_chunked_renderer_backgrounds_and_fast_path(tiny_run):
    run = load_run(tiny_run.run_dir, device="cpu")
    origins, dirs = rays_of(run)
    white = render_rays_chunked(run.model, origins, dirs)  # None: the model's default (white)
    same = render_rays_chunked(run.model, origins, dirs, torch.ones(3))
    red = torch.tensor([1.0, 0.0, 0.0])
    per_ray = render_rays_chunked(run.model, origins, dirs, red.expand(len(origins), 3), max_rays_per_chunk=64)
    assert torch.allclose(white["rgb"], same["rgb"], atol=1e-6)
    # over another background the colour moves by (1 - opacity) * (background difference), ray by ray
    expected = white["rgb"] - (1.0 - white["accumulation"])[:, None] * (torch.ones(3) - red)
    assert torch.allclose(per_ray["rgb"], expected, atol=1e-5)
    assert float((1.0 - white["accumulation"]).max()) > 0.02  # some rays see the background (0.043 measured)
    assert rays_per_call(run.model, 64) == run.model.inference.max_rays  # fast path: its own batch size
    with pytest.raises(Exception, match="max_rays_per_chunk=0"):
        render_rays_chunked(run.model, origins, dirs, max_rays_per_chunk=0)


def test_trainer_as_run_equals_the_loaded_run_with_refined_poses(tmp_path):
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset
    from nerfstage.nerf.trainer import train

    from ..conftest import tiny_run_config  # noqa: TID252 - the shared tiny config

    write_synthetic_dataset(tmp_path / "scene", SyntheticOptions(num_frames=16, width=32, height=24, seed=0))
    config = tiny_run_config(steps=30)
    config.pose_refinement = "SO3xR3"
    seen = {}

    def keep_last(info) -> None:
        if info.step == info.total_steps:
            seen["run"] = info.trainer.as_run()
            seen["rgb"] = info.trainer.render_image_rays(*rays_of(seen["run"], 48), 6, 8)["rgb"]

    train(tmp_path / "scene", tmp_path / "run", config, progress=False, callback=keep_last)
    live, loaded = seen["run"], load_run(tmp_path / "run", device="cpu")
    assert live.checkpoint is None and live.step == loaded.step == 30
    assert live.train_indices == loaded.train_indices == [i for i in range(16) if i % 8]
    assert live.cameras.eval_indices == loaded.cameras.eval_indices == [0, 8]
    dataset_poses = loaded.scene.apply(loaded.dataset.world_from_cams())
    moved = np.abs(loaded.world_from_cams[loaded.train_indices] - dataset_poses[loaded.train_indices]).max()
    assert moved > 1e-6  # the training views carry their refined poses ...
    assert np.abs(loaded.world_from_cams[[0, 8]] - dataset_poses[[0, 8]]).max() == 0.0  # ... held-out ones do not
    assert np.abs(live.world_from_cams - loaded.world_from_cams).max() < 1e-9
    again = render_rays_chunked(loaded.model, *rays_of(loaded, 48))["rgb"].reshape(6, 8, 3)
    assert torch.allclose(seen["rgb"], again, atol=1e-6)


def test_finished_metrics_and_checkpoint_step(tiny_run, tmp_path):
    latest = latest_checkpoint(tiny_run.run_dir)
    assert checkpoint_step(latest) == tiny_run.metrics["steps"] and checkpoint_step(tmp_path / "x.ckpt") is None
    assert finished_metrics(tiny_run.run_dir)["psnr"] == pytest.approx(tiny_run.metrics["psnr"])
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["steps"] += 1  # the run has not reached its last step
    (copy / "config.json").write_text(json.dumps(config))
    assert finished_metrics(copy) is None
    config["steps"] -= 1
    (copy / "config.json").write_text(json.dumps(config))
    assert finished_metrics(copy) is not None
    (copy / "metrics.json").write_text("{not json")
    assert finished_metrics(copy) is None
