"""run_capture end to end: the synthetic video -> dataset (pose error against the truth), report contents, the
registration thresholds, safe (over)writing of the output folder, and conversion of an existing COLMAP model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from nerfstage.capture.loader import load_dataset
from nerfstage.capture.pipeline import (
    CaptureOptions,
    flip_check_applies,
    flip_warnings,
    run_capture,
    sfm_options_for,
)
from nerfstage.capture.sfm import pose_errors, trajectory_size
from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_video
from nerfstage.core.errors import ConfigError, DatasetError, OutputExistsError, ReconstructionError

STEPS = {"decode", "select", "extract", "match", "map", "write", "total"}


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """A 30-frame 320x240 synthetic video captured once per session: (SyntheticCapture, CaptureResult)."""
    import dataclasses

    from nerfstage.capture import pipeline

    root = tmp_path_factory.mktemp("capture")
    capture = write_synthetic_video(root / "video", SyntheticOptions(num_frames=30, width=320, height=240))
    # COLMAP on one thread: repeatable (with all threads a CI run of 2026-12-07 gave 0.50 deg, ~0.11 in every other)
    one_thread = lambda options, is_video: dataclasses.replace(  # noqa: E731
        sfm_options_for(options, is_video), num_threads=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "sfm_options_for", one_thread)
        result = run_capture(capture.video_path, root / "dataset", CaptureOptions(frames=30, progress=False))
    return capture, result


def _noise_images(folder: Path, count: int, seed: int, size=(320, 240)) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)  # blobs: few features
        cv2.imwrite(str(folder / f"noise_{seed}_{i:02d}.jpg"), cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_synthetic_video_poses_match_the_truth(synthetic_run):
    capture, result = synthetic_run
    dataset = load_dataset(result.dataset_dir)
    assert len(dataset.frames) == result.report["frames_registered"] == 30
    indices = result.report["source_frame_indices"]  # video frame of frame_00001.jpg, frame_00002.jpg, ...
    true = capture.world_from_cams[[indices[int(f.image_path.stem.split("_")[1]) - 1] for f in dataset.frames]]
    rot_err, centre_err = pose_errors(dataset.world_from_cams(), true)
    assert rot_err.mean() < 0.5, rot_err  # measured ~0.11 deg
    assert centre_err.mean() < 0.01 * trajectory_size(true), centre_err  # measured ~0.05 %
    focal = dataset.frames[0].intrinsics.fx
    assert focal == pytest.approx(capture.intrinsics.fx, rel=0.02)


def test_dataset_files_and_report_are_consistent(synthetic_run):
    _, result = synthetic_run
    root, report = result.dataset_dir, result.report
    assert json.loads((root / "capture_report.json").read_text()) == report
    assert report["frames_decoded"] == report["frames_selected"] == 30
    assert report["mean_reprojection_error_px"] < 1.0
    assert STEPS <= set(report["seconds"]) and all(v >= 0 for v in report["seconds"].values())
    steps_total = sum(v for k, v in report["seconds"].items() if k != "total")
    assert report["seconds"]["total"] == pytest.approx(steps_total, abs=0.01)
    assert report["warnings"] == [] and result.warnings == []
    assert report["options"]["frames"] == 30 and report["options"]["camera_model"] == "SIMPLE_RADIAL"
    assert report["matcher"] == "sequential" and report["input_kind"] == "video"
    assert len(list((root / "images").glob("frame_*.jpg"))) == 30
    assert (root / "colmap" / "sparse" / "0" / "images.bin").is_file()
    assert not (root / "colmap" / "database.db").exists()
    transforms = json.loads((root / "transforms.json").read_text())
    assert transforms["ply_file_path"] == "sparse_pc.ply" and len(transforms["applied_transform"]) == 3
    header = (root / "sparse_pc.ply").read_bytes()[:200].decode("ascii", "replace")
    assert f"element vertex {report['num_points3D']}\n" in header and report["num_points3D"] > 500
    assert _leftovers(root) == []


def test_existing_output_is_refused_and_left_untouched(synthetic_run, tmp_path):
    capture, _ = synthetic_run
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(OutputExistsError, match=str(out)):
        run_capture(capture.video_path, out, CaptureOptions(frames=30, progress=False))
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _leftovers(out) == []


def test_failed_overwrite_keeps_the_old_dataset(tmp_path):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        run_capture(tmp_path / "empty", out, CaptureOptions(overwrite=True, progress=False))
    assert (out / "keep.txt").read_text() == "old" and _leftovers(out) == []


@pytest.mark.parametrize("noise, expect_error", [(12, True), (4, False)])
def test_registration_thresholds(synthetic_run, tmp_path, noise, expect_error):
    """12 synthetic frames + noise images (which never register): 12 of 25 (48 %) fails, 12 of 16 (75 %) warns."""
    _, result = synthetic_run
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((result.dataset_dir / "images").iterdir())[:12]:
        (photos / path.name).write_bytes(path.read_bytes())
    _noise_images(photos, noise + (1 if expect_error else 0), seed=noise)
    options = CaptureOptions(progress=False)
    if expect_error:
        with pytest.raises(ReconstructionError, match=r"registered only 1[0-2] of 25 .*overlap"):
            run_capture(photos, tmp_path / "out", options)
        assert not (tmp_path / "out").exists() and _leftovers(tmp_path / "out") == []
        return
    got = run_capture(photos, tmp_path / "out", options)
    assert got.report["frames_registered"] == 12 and got.report["matcher"] == "exhaustive"
    assert len(got.warnings) == 1 and "12 of 16 frames registered (75%)" in got.warnings[0]
    assert got.report["warnings"] == got.warnings
    assert len(load_dataset(tmp_path / "out").frames) == 12


def test_noise_only_raises(tmp_path):
    _noise_images(tmp_path / "noise", 6, seed=1)
    with pytest.raises(ReconstructionError, match="overlap"):
        run_capture(tmp_path / "noise", tmp_path / "out", CaptureOptions(progress=False))


@pytest.mark.parametrize(
    "options, match",
    [
        (CaptureOptions(frames=1), "frames"),
        (CaptureOptions(max_size=10), "max_size"),
        (CaptureOptions(matcher="vocab"), "matcher"),  # type: ignore[arg-type]
        (CaptureOptions(camera_model="FOO"), "camera_model"),  # type: ignore[arg-type]
        (CaptureOptions(mapper="hierarchical"), "mapper"),  # type: ignore[arg-type]
        (CaptureOptions(colmap_model=Path("sparse/0")), "colmap_images"),
    ],
)
def test_bad_options(tmp_path, options, match):
    """The error names the option's field (the CLI turns it into its flag: tests/app/test_cli_errors.py)."""
    with pytest.raises(ConfigError, match=f"^{match}") as err:
        run_capture(tmp_path, tmp_path / "out", options)
    assert err.value.field == match


def test_colmap_model_converts_to_a_self_contained_dataset(shared_data, tmp_path):
    beer = shared_data("beer_video")
    options = CaptureOptions(colmap_model=beer / "sparse" / "0", colmap_images=beer / "images", progress=False)
    result = run_capture(None, tmp_path / "beer", options)
    dataset = load_dataset(tmp_path / "beer")
    assert len(dataset.frames) == result.report["frames_registered"] == 71
    assert len(list((tmp_path / "beer" / "images").iterdir())) == 71
    assert all(f.image_path.parent == tmp_path / "beer" / "images" for f in dataset.frames)
    assert result.report["mean_reprojection_error_px"] == pytest.approx(0.754, abs=0.001)
    assert (tmp_path / "beer" / "sparse_pc.ply").is_file()

    (tmp_path / "beer" / "marker").write_text("old")
    again = run_capture(None, tmp_path / "beer", CaptureOptions(**{**options.__dict__, "overwrite": True}))
    assert again.report["frames_registered"] == 71 and not (tmp_path / "beer" / "marker").exists()
    assert _leftovers(tmp_path / "beer") == []


def test_flip_warning_names_the_jump():
    def turn(degrees: float) -> np.ndarray:
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        pose = np.eye(4)
        pose[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        return pose

    smooth = {f"frame_{i:05d}.jpg": turn(10.0 * i) for i in range(1, 8)}
    assert flip_warnings(smooth) == []
    flipped = dict(smooth, **{"frame_00004.jpg": turn(40.0 + 170.0)})
    (warning,) = flip_warnings(flipped)
    assert "frame_00003.jpg->frame_00004.jpg (180 deg)" in warning and "--matcher sequential" in warning


def test_flip_check_runs_after_exhaustive_matching_of_photos_whose_name_order_means_something():
    from nerfstage.capture.sfm_pairs import MatchPlan, OrderAnalysis

    def plan(matcher: str, score: float | None) -> MatchPlan:
        analysis = None if score is None else OrderAnalysis(score, 1, False, 0.3, 0.1)
        return MatchPlan(matcher, "test", analysis)  # type: ignore[arg-type]

    assert flip_check_applies(plan("exhaustive", None))  # asked for by the user: no analysis, check as before
    assert flip_check_applies(plan("exhaustive", 0.94))  # beer_video/images in name order, 1 break
    assert not flip_check_applies(plan("exhaustive", 0.12))  # fox shuffled: neighbours in name are unrelated
    assert flip_check_applies(plan("retrieval", 0.9)) and not flip_check_applies(plan("retrieval", 0.2))
    assert not flip_check_applies(plan("sequential", 1.0))


def test_loop_every_reaches_the_sfm_settings_and_zero_turns_the_pass_off():
    from nerfstage.capture.pipeline import CaptureOptions, sfm_options_for
    from nerfstage.capture.sfm import _loops_on

    default = sfm_options_for(CaptureOptions(), is_video=True)
    assert default.loop_every == 6 and _loops_on(default)
    off = sfm_options_for(CaptureOptions(loop_every=0), is_video=True)
    assert off.loop_every == 0 and not _loops_on(off)
