"""Capture speed: our SfM settings vs pycolmap's defaults on the same frames of the synthetic video.

Renders the synthetic video (100 frames, 640x480 by default), extracts its frames ONCE, then runs on the same
images (a) pycolmap's defaults: exhaustive matching + incremental mapping with default options, and (b) the
settings ``nerfstage capture`` uses for a video. Prints seconds per step, registered frames, pose error against
the true cameras after a Sim(3) alignment, and the time ratio b/a. Requirement: ratio <= 0.4 (goal 0.25), no
fewer registered frames, mean rotation error no worse (no slack). Exit code 1 when a requirement fails.

    python benchmarks/capture_speed.py [--frames 100] [--width 640] [--height 480] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from _common import machine, pose_summary, work_dir
from nerfstage.capture.pipeline import CaptureOptions, sfm_options_for
from nerfstage.capture.sfm import SfmOptions, SfmResult, pose_errors, reconstruction_poses, run_sfm, trajectory_size
from nerfstage.capture.synthetic import SyntheticOptions, write_synthetic_video
from nerfstage.capture.video import extract_sharpest_frames
from nerfstage.core.geometry import convert_camera_axes

MAX_RATIO, GOAL_RATIO, ROTATION_SLACK_DEG = 0.4, 0.25, 0.0


def _errors(result: SfmResult, truth_by_name: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    poses = reconstruction_poses(result.reconstruction)  # OpenCV axes
    names = sorted(set(poses) & set(truth_by_name))
    true = np.stack([truth_by_name[n] for n in names])
    rot, centre = pose_errors(np.stack([poses[n] for n in names]), true)
    return rot, centre, trajectory_size(true)


def _run(label: str, options: SfmOptions, images, work, truth_by_name) -> tuple[SfmResult, float, np.ndarray]:
    print(f"\n({label}) {options}", flush=True)
    start = time.perf_counter()
    result = run_sfm(images, work, options, progress=True)
    total = time.perf_counter() - start
    rot, centre, size = _errors(result, truth_by_name)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"({label}) {steps}; total {total:.1f} s; loop pairs {result.num_loop_pairs}")
    print(f"({label}) registered {result.reconstruction.num_reg_images()}/{result.num_images}, "
          f"{result.reconstruction.num_points3D()} points, {pose_summary(rot, centre, size)}")
    return result, total, rot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--work", default=None, help="work folder (emptied); default: a temporary folder")
    args = parser.parse_args(argv)
    work = work_dir(args.work, "capture-speed")
    print(f"machine: {machine()}; work folder {work}")
    start = time.perf_counter()
    synthetic = SyntheticOptions(num_frames=args.frames, width=args.width, height=args.height)
    capture = write_synthetic_video(work / "video", synthetic)
    selection = extract_sharpest_frames(
        capture.video_path, work / "images", args.frames, max(args.width, args.height), progress=True
    )
    print(f"rendered + extracted {selection.frames_selected} frames in {time.perf_counter() - start:.1f} s")
    truth = convert_camera_axes(capture.world_from_cams[selection.source_indices])  # OpenCV, like COLMAP
    truth_by_name = {p.name: t for p, t in zip(selection.image_paths, truth)}

    ours = sfm_options_for(CaptureOptions(), is_video=True)
    defaults = SfmOptions(camera_model=ours.camera_model, matcher="exhaustive", tuning="colmap", seed=ours.seed)
    a, time_a, rot_a = _run("a: pycolmap defaults", defaults, work / "images", work / "a", truth_by_name)
    b, time_b, rot_b = _run("b: nerfstage capture", ours, work / "images", work / "b", truth_by_name)

    ratio = time_b / time_a
    reg_a, reg_b = a.reconstruction.num_reg_images(), b.reconstruction.num_reg_images()
    print(f"\nratio b/a = {time_b:.1f} s / {time_a:.1f} s = {ratio:.3f} (required <= {MAX_RATIO}, goal {GOAL_RATIO})")
    print(f"registered: a {reg_a}, b {reg_b}; mean rotation error: a {rot_a.mean():.4f} deg, b {rot_b.mean():.4f} deg")
    ok = ratio <= MAX_RATIO and reg_b >= reg_a and rot_b.mean() <= rot_a.mean() + ROTATION_SLACK_DEG
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
