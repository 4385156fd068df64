"""The whole chain on the built-in synthetic capture (``nerfstage demo``).

Stages run in order and each one is skipped when its outputs already exist and are valid, so an interrupted demo
continues where it stopped and a second run does no work. ``overwrite`` redoes every stage.

WORKDIR layout::

    synthetic/   synthetic.mp4 + ground_truth.json (the footage, with its true poses)
    dataset/     capture output: images/, transforms.json, colmap/sparse/0, sparse_pc.ply, capture_report.json
    summary.json what ran, where the files are, and the figures measured against the ground truth
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class DemoOptions:
    """What the demo builds."""

    frames: int = 60
    """Frames of synthetic footage (and frames kept by capture)."""
    width: int = 640
    """Footage width, pixels."""
    height: int = 480
    """Footage height, pixels."""
    seed: int = 0
    """Seed of every random step."""
    overwrite: bool = False
    """Redo every stage even when its outputs are valid."""
    progress: bool = True
    """Show progress bars."""


def run_demo(workdir: Path, options: DemoOptions | None = None) -> dict[str, Any]:
    """Run every stage that has landed on the synthetic capture; return (and write) the summary."""
    options = options or DemoOptions()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"workdir": str(workdir.resolve()), "options": asdict(options), "stages": {}}
    footage = _synthetic_stage(workdir / "synthetic", options, summary)
    _capture_stage(footage, workdir / "dataset", options, summary)
    _write_summary(workdir / "summary.json", summary)
    return summary


def _synthetic_stage(folder: Path, options: DemoOptions, summary: dict) -> Any:
    from .capture.synthetic import SyntheticOptions, load_ground_truth, write_synthetic_video

    synthetic = SyntheticOptions(num_frames=options.frames, width=options.width, height=options.height, seed=options.seed)
    start = time.perf_counter()
    if _valid_footage(folder, synthetic) and not options.overwrite:
        footage, skipped = load_ground_truth(folder / "ground_truth.json"), True
    else:
        footage, skipped = write_synthetic_video(folder, synthetic, overwrite=True), False
    summary["stages"]["synthetic"] = _stage_entry(skipped, start, video=str(footage.video_path))
    return footage


def _valid_footage(folder: Path, synthetic: Any) -> bool:
    from .capture.synthetic import load_ground_truth

    try:
        truth = load_ground_truth(folder / "ground_truth.json")
    except Exception:  # noqa: BLE001 - anything unreadable means "build it again"
        return False
    same = truth.options is not None and asdict(truth.options) == asdict(synthetic)
    return same and truth.video_path is not None and Path(truth.video_path).is_file()


def _capture_stage(footage: Any, dataset_dir: Path, options: DemoOptions, summary: dict) -> None:
    from .capture.pipeline import CaptureOptions, run_capture

    start = time.perf_counter()
    report_path = dataset_dir / "capture_report.json"
    skipped = _valid_dataset(dataset_dir) and not options.overwrite
    if skipped:
        report = json.loads(report_path.read_text())
    else:
        capture_options = CaptureOptions(frames=options.frames, seed=options.seed, overwrite=True, progress=options.progress)
        report = run_capture(Path(footage.video_path), dataset_dir, capture_options).report
    figures = _pose_figures(footage, dataset_dir, report)
    summary["stages"]["capture"] = _stage_entry(skipped, start, dataset=str(dataset_dir), **figures)


def _valid_dataset(dataset_dir: Path) -> bool:
    from .capture.loader import load_dataset
    from .errors import NerfstageError

    transforms = dataset_dir / "transforms.json"
    if not (dataset_dir / "capture_report.json").is_file() or not transforms.is_file():
        return False
    try:
        return len(load_dataset(transforms).frames) >= 2
    except NerfstageError:
        return False


def _pose_figures(footage: Any, dataset_dir: Path, report: dict) -> dict[str, Any]:
    """Registered frames and pose error against the true poses after a similarity alignment."""
    from .capture.loader import load_dataset
    from .capture.sfm import pose_errors, trajectory_size

    dataset = load_dataset(dataset_dir)
    indices = report["source_frame_indices"]  # video frame index of frame_00001.jpg, frame_00002.jpg, ...
    rows = [indices[int(f.image_path.stem.split("_")[-1]) - 1] for f in dataset.frames]
    true = footage.world_from_cams[rows]
    rotation_deg, centre = pose_errors(dataset.world_from_cams(), true)
    return {
        "frames_registered": int(report["frames_registered"]),
        "frames_selected": int(report["frames_selected"]),
        "mean_rotation_error_deg": float(rotation_deg.mean()),
        "mean_centre_error_fraction": float(centre.mean() / trajectory_size(true)),
    }


def _stage_entry(skipped: bool, start: float, **fields: Any) -> dict[str, Any]:
    return {"skipped": skipped, "seconds": round(time.perf_counter() - start, 2), **fields}


def _write_summary(path: Path, summary: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)

