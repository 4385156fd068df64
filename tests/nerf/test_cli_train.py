"""`nerfstage train` / `nerfstage eval`: exit codes, run folder contents, saved renders, bad inputs (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nerfstage.app.cli import main
from nerfstage.nerf.config import ModelConfig, TrainConfig, save_config
from nerfstage.nerf.encoding import HashGridConfig


def run_cli(*args: str) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_dataset

    folder = tmp_path_factory.mktemp("cli_scene")
    write_synthetic_dataset(folder, SyntheticOptions(num_frames=10, width=32, height=24, seed=0))
    return folder


TINY_PRESET = {
    "steps": 3, "batch_rays": 128, "lr_warmup_steps": 2, "unbounded_cascades": 2,
    "model": {"encoding": {"num_levels": 4, "log2_hashmap_size": 12, "max_resolution": 64}, "hidden_dim": 16,
              "hidden_dim_color": 16, "occupancy_resolution": 8, "render_step_size": 0.1, "appearance_dim": 4},
}


@pytest.fixture
def tiny_preview(monkeypatch):
    """The CLI's plumbing is under test, not the preview preset's size: make "preview" tiny."""
    from nerfstage.core import presets

    monkeypatch.setitem(presets.PRESETS["preview"], "train", {"cpu": TINY_PRESET, "cuda": TINY_PRESET})


def test_train_then_eval(scene, tmp_path, capsys, tiny_preview):
    run = tmp_path / "run"
    code = run_cli("train", scene, "-o", run, "--preset", "preview", "--steps", "3", "--device", "cpu",
                   "--seed", "1", "--quiet")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "PSNR" in out.out and "3 steps" in out.out
    for name in ("config.json", "dataparser_transforms.json", "metrics.json", "checkpoints/step-000000003.ckpt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["eval_views"] == 2 and metrics["device"] == "cpu"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 1 and config["steps"] == 3 and config["model"]["bounded"] is False

    images = tmp_path / "renders"
    assert run_cli("eval", run, "--save-images", images, "--quiet") == 0
    again = json.loads((run / "metrics.json").read_text())
    assert again["psnr"] == pytest.approx(metrics["psnr"], abs=1e-4)  # same checkpoint, same numbers
    pairs = sorted(images.glob("*_vs_gt.png"))
    assert len(pairs) == 2
    assert cv2.imread(str(pairs[0])).shape == (24, 64, 3)  # ground truth | render

    assert run_cli("train", scene, "-o", run, "--steps", "1", "--quiet") == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert run_cli("train", "-o", run, "--resume", "--steps", "4", "--quiet") == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "not found"),
        ("empty", "no usable frames"),
        ("nan_pose", "finite"),
        ("zero_focal", "focal"),
        ("mixed_sizes", "per-frame intrinsics"),
    ],
)
def test_bad_datasets_exit_2(tmp_path, capsys, case, message):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    frames = []
    for i in range(3):
        size = (30, 40, 3) if case == "mixed_sizes" and i == 2 else (24, 32, 3)
        cv2.imwrite(str(data / "images" / f"{i}.png"), np.zeros(size, np.uint8))
        pose = np.eye(4)
        pose[0, 3] = i
        if case == "nan_pose" and i == 1:
            pose[1, 3] = float("nan")
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": pose.tolist()})
    if case == "empty":
        frames = []
    focal = 0.0 if case == "zero_focal" else 30.0
    meta = {"fl_x": focal, "fl_y": focal, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24, "camera_model": "PINHOLE"}
    (data / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
    target = tmp_path / "nothing_here" if case == "missing" else data
    code = run_cli("train", target, "-o", tmp_path / "run", "--steps", "1", "--device", "cpu", "--quiet")
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("nerfstage: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # bad input leaves no half-made run folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_requested_but_absent_exit_2(scene, tmp_path, capsys):
    assert run_cli("train", scene, "-o", tmp_path / "run", "--device", "cuda", "--quiet") == 2
    assert "cuda" in capsys.readouterr().err


def test_bad_options_and_runs_exit_2(scene, tmp_path, capsys, tiny_preview):
    assert run_cli("train", scene, "-o", tmp_path / "a", "--preset", "turbo", "--quiet") == 2
    assert "unknown preset 'turbo'" in capsys.readouterr().err
    assert run_cli("train", "-o", tmp_path / "b", "--resume", "--quiet") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert run_cli("eval", tmp_path / "no_run", "--quiet") == 2
    (tmp_path / "c").mkdir()
    save_config(tmp_path / "c" / "config.json", TrainConfig(model=ModelConfig(encoding=HashGridConfig())))
    assert run_cli("eval", tmp_path / "c", "--quiet") == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_pose_refinement_option_reaches_the_run_and_load_run_uses_the_refined_poses(scene, tmp_path, capsys,
                                                                                      tiny_preview):
    from nerfstage.nerf.checkpoint import latest_checkpoint, load_checkpoint
    from nerfstage.nerf.run import load_run

    run = tmp_path / "run"
    code = run_cli("train", scene, "-o", run, "--preset", "preview", "--steps", "3", "--device", "cpu",
                   "--pose-refinement", "SO3xR3", "--quiet")
    assert code == 0, capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["pose_refinement"] == "SO3xR3"
    data = load_checkpoint(latest_checkpoint(run), map_location="cpu")
    adjustment = data["camera_opt"]["pose_adjustment"]  # [N_train, 6]: 3 Adam steps moved it off zero
    assert float(adjustment.abs().max()) > 0.0
    plain = load_run(run, device="cpu")
    train = plain.train_indices
    # Put a known correction (5 cm along x) into the checkpoint: load_run's training cameras move by exactly it.
    shifted = adjustment.clone()
    shifted[:, :3] += torch.tensor([0.05, 0.0, 0.0])
    data["camera_opt"]["pose_adjustment"] = shifted
    torch.save(data, latest_checkpoint(run))
    moved = load_run(run, device="cpu")
    delta = moved.world_from_cams[train, :3, 3] - plain.world_from_cams[train, :3, 3]
    np.testing.assert_allclose(delta, np.tile([0.05, 0.0, 0.0], (len(train), 1)), atol=1e-6)
    held_out = sorted(set(range(len(plain.world_from_cams))) - set(train))
    np.testing.assert_allclose(moved.world_from_cams[held_out], plain.world_from_cams[held_out])
    assert run_cli("train", "--resume", "-o", run, "--pose-refinement", "off", "--quiet") == 2


def test_scene_centre_option_reaches_the_run_and_resume_keeps_the_frame(scene, tmp_path, capsys, tiny_preview):
    from nerfstage.capture.loader import load_dataset
    from nerfstage.nerf.data import normalize_scene, read_dataparser_transforms

    dataset = load_dataset(scene)
    frames = {}
    for centre in ("poses", "focus"):
        run = tmp_path / centre
        code = run_cli("train", scene, "-o", run, "--preset", "preview", "--steps", "2", "--device", "cpu",
                       "--scene-centre", centre, "--quiet")
        assert code == 0, capsys.readouterr().err
        frames[centre] = read_dataparser_transforms(run / "dataparser_transforms.json")
        expected, _ = normalize_scene(dataset, centre)
        np.testing.assert_allclose(frames[centre].transform, expected.transform, atol=1e-9)
        assert frames[centre].scale == pytest.approx(expected.scale)
    assert np.abs(frames["poses"].transform[:, 3] - frames["focus"].transform[:, 3]).max() > 1e-3  # they differ
    assert run_cli("train", "--resume", "-o", tmp_path / "poses", "--scene-centre", "focus", "--quiet") == 2
    assert "--scene-centre cannot change" in capsys.readouterr().err
    # a run from before the option existed: its config.json has no scene_centre (so it reads as "auto" = focus
    # here), yet resuming keeps the frame its checkpoints were trained in
    config_path = tmp_path / "poses" / "config.json"
    config = json.loads(config_path.read_text())
    del config["data"]["scene_centre"]
    config_path.write_text(json.dumps(config))
    assert run_cli("train", "--resume", "-o", tmp_path / "poses", "--steps", "3", "--quiet") == 0
    kept = read_dataparser_transforms(tmp_path / "poses" / "dataparser_transforms.json")
    np.testing.assert_allclose(kept.transform, frames["poses"].transform, atol=1e-12)
    assert run_cli("train", scene, "-o", tmp_path / "bad", "--scene-centre", "middle", "--quiet") == 2
    assert "middle" in capsys.readouterr().err
