"""Photo folders: the order (EXIF capture time or name), the sequence analysis on constructed similarities, and
``matcher="auto"`` on synthetic photo folders: a walk in order -> sequential; the same photos named in bursts
whose order is wrong -> exhaustive; shuffled with a small time budget -> retrieval pairs; every one registers
all photos with small pose error after a Sim(3) alignment."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from nerfstage.capture.images import import_images
from nerfstage.capture.photo_order import capture_time, order_photos
from nerfstage.capture.pipeline import CaptureOptions, run_capture
from nerfstage.capture.sfm import SfmOptions, pose_errors, reconstruction_poses, run_sfm
from nerfstage.capture.sfm_pairs import (
    RETRIEVAL_MIN_K,
    _solve_costs,
    analyse_order,
    retrieval_k,
    retrieval_pairs,
)
from nerfstage.capture.synthetic import SyntheticOptions, render_synthetic_frames, synthetic_cameras
from nerfstage.core.geometry import convert_camera_axes

NUM_FRAMES = 24
_EXIF_SUB_IFD, _DATETIME_ORIGINAL, _SUBSEC_ORIGINAL = 0x8769, 0x9003, 0x9291


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """24 frames of the synthetic walk (320x240, ~12 deg apart) as walk/000.jpg ... and their true poses
    ([24, 4, 4] camera-to-world, OpenCV axes like COLMAP)."""
    synthetic = SyntheticOptions(num_frames=NUM_FRAMES, width=320, height=240, supersample=1)
    folder = tmp_path_factory.mktemp("walk")
    for i, rgb in enumerate(render_synthetic_frames(synthetic)):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder, convert_camera_axes(synthetic_cameras(synthetic)[0])


def _copy_as(walk_dir: Path, dest: Path, names: dict[str, int]) -> Path:
    """Copy walk frame ``index`` to ``dest/name`` for each name -> index."""
    dest.mkdir()
    for name, index in names.items():
        shutil.copy(walk_dir / f"{index:03d}.jpg", dest / name)
    return dest


def _rotation_errors(result, names: dict[str, int], truth: np.ndarray) -> np.ndarray:
    poses = reconstruction_poses(result.reconstruction)
    keys = sorted(poses)
    return pose_errors(np.stack([poses[k] for k in keys]), truth[[names[k] for k in keys]])[0]


# ----------------------------------------------------------------------------------------------- analysis


def _chain_similarity(order: np.ndarray) -> np.ndarray:  # [N] walk position of each frame -> [N, N]
    """Similarity falling with the distance along the walk, as global descriptors of a walk behave."""
    return np.exp(-np.abs(order[:, None] - order[None, :]) / 3.0)


def test_analyse_order_tells_a_walk_from_bursts_and_a_shuffle():
    n = 40
    walk = analyse_order(_chain_similarity(np.arange(n, dtype=float)), overlap=6)
    assert (walk.sequence_score, walk.breaks, walk.is_sequence) == (1.0, 0, True)
    assert walk.neighbour_similarity == pytest.approx(np.exp(-1 / 3))

    # four bursts of 10 taken along the walk, named so that the bursts come in the order 0, 2, 1, 3
    bursts = np.concatenate([np.arange(10) + 10 * b for b in (0, 2, 1, 3)]).astype(float)
    burst = analyse_order(_chain_similarity(bursts), overlap=6)
    assert burst.breaks == 3 and not burst.is_sequence  # sequential matching cannot bridge them
    assert burst.sequence_score == pytest.approx(36 / 39)  # neighbours still look alike inside each burst

    shuffled = analyse_order(_chain_similarity(np.random.default_rng(0).permutation(n).astype(float)), 6)
    assert shuffled.sequence_score < 0.3 and not shuffled.is_sequence


def test_retrieval_pairs_are_the_most_similar_plus_the_next_frames():
    order = np.array([0, 5, 1, 6, 2, 7, 3, 8, 4, 9], dtype=float)  # two interleaved halves of a walk
    pairs = retrieval_pairs(_chain_similarity(order), k=2, overlap=1)
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    assert {(i, i + 1) for i in range(9)} <= set(pairs)  # the sequential neighbours
    assert (0, 2) in pairs and (1, 3) in pairs  # walk positions 0-1 and 5-6: most similar, two apart in name
    assert (0, 9) not in pairs  # walk positions 0 and 9: far apart
    assert retrieval_k(100, pair_budget=5000) == 50
    assert retrieval_k(100, pair_budget=10) == RETRIEVAL_MIN_K
    assert retrieval_k(12, pair_budget=1e6) == 11


def test_match_cost_separates_per_image_and_per_pair_costs():
    """t = 0.05 s per image + 0.02 s per pair: 24 random pairs over 40 images, 28 pairs among 8 images."""
    t_spread, t_block = 0.05 * 40 + 0.02 * 24, 0.05 * 8 + 0.02 * 28
    per_image, per_pair = _solve_costs(t_spread, 24, 40, t_block, 28, 8)
    assert (per_image, per_pair) == (pytest.approx(0.05), pytest.approx(0.02))
    # timing noise that would make a cost negative: everything goes on the pairs
    assert _solve_costs(1.0, 24, 40, 5.0, 28, 8) == (0.0, pytest.approx(6.0 / 52))
    assert _solve_costs(1.0, 10, 20, 0.0, 0, 8) == (0.0, pytest.approx(0.1))  # no block pairs


# ----------------------------------------------------------------------------------------------- ordering


def _write_with_time(path: Path, source: Path, stamp: str | None, subsec: str | None = None) -> None:
    image = Image.open(source)
    exif = Image.Exif()
    if stamp is not None:
        sub_ifd = exif.get_ifd(_EXIF_SUB_IFD)
        sub_ifd[_DATETIME_ORIGINAL] = stamp
        if subsec is not None:
            sub_ifd[_SUBSEC_ORIGINAL] = subsec
    image.save(path, exif=exif, quality=95)


def _exif_shuffled(walk_dir: Path, dest: Path, count: int, subsec: bool) -> dict[str, int]:
    """``count`` walk frames under shuffled names, with EXIF times in walk order (0.25 s apart with sub-second
    tags, else all in the same second); returns name -> walk index."""
    dest.mkdir()
    names = {}
    for rank, index in enumerate(np.random.default_rng(3).permutation(count)):
        name = f"IMG_{rank:02d}.jpg"
        seconds, fraction = divmod(int(index) * 25, 100) if subsec else (0, None)
        _write_with_time(dest / name, walk_dir / f"{index:03d}.jpg", f"2026:12:07 10:00:{seconds:02d}",
                         None if fraction is None else f"{fraction:02d}")
        names[name] = int(index)
    return names


def test_capture_time_reads_date_and_subseconds(tmp_path, walk):
    _write_with_time(tmp_path / "a.jpg", walk[0] / "000.jpg", "2026:12:07 10:00:07", "25")
    _write_with_time(tmp_path / "b.jpg", walk[0] / "000.jpg", None)
    base = datetime(2026, 12, 7, 10, 0, 0).timestamp()
    assert capture_time(tmp_path / "a.jpg") - base == pytest.approx(7.25)
    assert capture_time(tmp_path / "b.jpg") is None
    assert capture_time(walk[0] / "000.jpg") is None  # cv2-written, no EXIF at all


def test_photos_are_ordered_by_exif_time_and_by_name_when_times_cannot_order_them(tmp_path, walk):
    names = _exif_shuffled(walk[0], tmp_path / "timed", 10, subsec=True)
    got = import_images(tmp_path / "timed", tmp_path / "out", progress=False)
    assert [names[p.name] for p in got.source_paths] == list(range(10))
    assert got.order.source == "exif_time" and got.order.describe()["distinct_times"] == 10

    _exif_shuffled(walk[0], tmp_path / "same_second", 10, subsec=False)  # a burst within one second
    order = order_photos(sorted((tmp_path / "same_second").iterdir()))
    assert order.source == "name" and (order.with_time, order.distinct_times) == (10, 1)
    assert [p.name for p in order.paths] == [f"IMG_{i:02d}.jpg" for i in range(10)]


# ----------------------------------------------------------------------------------------------- auto matcher
# COLMAP on one thread in these tests: it is repeatable only then. With two, CI runs of 2026-12-07 (never a run
# here) registered 22 of the 24 walk photos, or matched 195 retrieval pairs (189 here) and mapped two photos wrongly
# (70 and 89 degrees): 24 small synthetic frames 12 degrees apart are a thin capture for SfM.


def test_walk_in_order_is_a_sequence_and_matched_sequentially(tmp_path, walk):
    names = {f"p{i:03d}.jpg": i for i in range(NUM_FRAMES)}
    photos = _copy_as(walk[0], tmp_path / "photos", names)
    options = SfmOptions(video_frames=False, exhaustive_max_photos=0, num_threads=1)
    result = run_sfm(photos, tmp_path / "work", options, progress=False)
    plan = result.plan
    assert plan.matcher == "sequential" and plan.analysis.is_sequence, plan.reason
    assert plan.analysis.sequence_score >= 0.9 and plan.analysis.breaks == 0  # measured 0.96 (filmable scene), 0
    assert plan.seconds_per_pair is None  # a sequence needs no cost estimate
    assert result.reconstruction.num_reg_images() == NUM_FRAMES
    # measured 0.17 deg on the filmable scene (0.032 on the old noise texture)
    assert _rotation_errors(result, names, walk[1]).mean() < 0.3


def test_bursts_named_out_of_order_are_unordered_and_matched_exhaustively(tmp_path, walk):
    """Three bursts of 8 consecutive frames named 0_*, 1_*, 2_* but taken in the order 0, 2, 1: natural name
    order jumps twice, which sequential matching cannot bridge."""
    names = {f"{b}_{i}.jpg": 8 * burst + i for b, burst in enumerate((0, 2, 1)) for i in range(8)}
    photos = _copy_as(walk[0], tmp_path / "photos", names)
    options = SfmOptions(video_frames=False, exhaustive_max_photos=0, num_threads=1)
    result = run_sfm(photos, tmp_path / "work", options, progress=False)
    plan = result.plan
    assert plan.matcher == "exhaustive" and not plan.analysis.is_sequence, plan.reason
    # measured 1 break and 0.87 (2 and 0.91 on the old noise texture): bursts look like a walk from neighbour to
    # neighbour; only the breaks give them away
    assert plan.analysis.breaks >= 1 and plan.analysis.sequence_score > 0.8
    assert plan.exhaustive_pairs == plan.num_pairs == NUM_FRAMES * (NUM_FRAMES - 1) // 2
    assert 0 < plan.seconds_per_pair < 5 and plan.estimated_exhaustive_s < options.match_budget_s
    assert result.reconstruction.num_reg_images() == NUM_FRAMES
    assert _rotation_errors(result, names, walk[1]).mean() < 0.3  # measured 0.016 deg on the old noise texture


def test_shuffled_photos_over_budget_get_retrieval_pairs(tmp_path, walk):
    perm = np.random.default_rng(1).permutation(NUM_FRAMES)
    names = {f"p{k:03d}.jpg": int(i) for k, i in enumerate(perm)}
    photos = _copy_as(walk[0], tmp_path / "photos", names)
    options = SfmOptions(video_frames=False, exhaustive_max_photos=0, match_budget_s=0.01, num_threads=1)
    result = run_sfm(photos, tmp_path / "work", options, progress=False)
    plan = result.plan
    assert plan.matcher == "retrieval" and plan.analysis.sequence_score < 0.4, plan.reason  # measured 0.22
    assert plan.retrieval_k == RETRIEVAL_MIN_K and plan.estimated_exhaustive_s > options.match_budget_s
    assert plan.num_pairs < plan.exhaustive_pairs  # measured 189 of 276
    assert result.reconstruction.num_reg_images() == NUM_FRAMES
    assert {"loop_match", "retriangulate"} <= set(result.seconds)  # loop closure runs after retrieval too
    # measured 0.12 deg on the filmable scene (0.016 on the old noise texture)
    assert _rotation_errors(result, names, walk[1]).mean() < 0.3


def test_capture_report_says_how_photos_were_ordered_and_matched(tmp_path, walk):
    names = _exif_shuffled(walk[0], tmp_path / "photos", 12, subsec=True)
    result = run_capture(tmp_path / "photos", tmp_path / "ds", CaptureOptions(progress=False))
    report = result.report
    assert report["ordering"]["source"] == "exif_time"
    assert [names[report["source_names"][f"frame_{i:05d}.jpg"]] for i in range(1, 13)] == list(range(12))
    matching = report["matching"]
    assert report["matcher"] == matching["matcher"] == "exhaustive" and "<= 100 photos" in matching["reason"]
    assert matching["analysis"]["is_sequence"] and matching["analysis"]["breaks"] == 0
    assert report["frames_registered"] == 12 and result.warnings == []
