"""``nerfstage capture``: a video, a folder of photos, or an existing COLMAP model -> a posed dataset folder.

The dataset folder holds::

    images/              the frames SfM saw (frame_00001.jpg ... for a video)
    transforms.json      nerfstudio format, registered frames only (write_transforms)
    sparse_pc.ply        the sparse point cloud, in transforms.json's world (ply_file_path)
    colmap/sparse/0/     the kept COLMAP model (COLMAP's world, binary)
    colmap/database.db   only with ``keep_database`` (features and matches; large, so deleted by default)
    capture_report.json  frames decoded/selected/registered, reprojection error, seconds per step, warnings, options,
                         and for photos how they were ordered (``ordering``) and matched and why (``matching``)

The folder is built in a temporary sibling ``DATASET.partial-xxxx`` and moved into place only when complete, so
a crash never leaves a half-written dataset under the final name, and ``overwrite`` never destroys the old
dataset before the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, DatasetError, OutputExistsError, ReconstructionError
from ..core.version import __version__
from .convert import dataset_from_reconstruction, write_sparse_ply
from .images import import_images
from .sfm import (
    CAMERA_MODELS,
    Mapper,
    Matcher,
    SfmCameraModel,
    SfmOptions,
    SfmResult,
    choose_matcher,
    reconstruction_poses,
    run_sfm,
)
from .sfm_pairs import MatchPlan
from .transforms import write_json_atomic, write_transforms
from .video import extract_sharpest_frames, is_video_file

MIN_REGISTERED_FRACTION = 0.5
"""Below this fraction of registered frames the capture fails."""
WARN_REGISTERED_FRACTION = 0.9
"""Below this fraction of registered frames the capture succeeds with a warning."""
FLIP_WARN_DEG = 120.0
"""After exhaustive matching, a turn above this between frames adjacent in name order is reported as a likely
mirror-flipped pose (symmetric scenes: beer_video/images flips 3 times exhaustively, never sequentially)."""
FLIP_CHECK_MIN_SCORE = 0.5
"""The flip check compares cameras adjacent in name order, which says something only when most of them look
alike: it runs when the sequence score (``sfm_pairs.analyse_order``) is at least this (beer_video/images in
name order 0.94; shuffled copies of it, of fox and of the synthetic walk 0.04-0.22)."""


@dataclass
class CaptureOptions:
    """Options of :func:`run_capture` (the ``nerfstage capture`` flags map one-to-one onto these fields)."""

    frames: int = 150
    """Target number of frames taken from a video (the sharpest of each of this many equal windows)."""
    max_size: int = 1600
    """Longest image side in pixels; larger frames and photos are downscaled."""
    matcher: Matcher = SfmOptions.matcher
    """Feature matching: ``auto`` = sequential for videos, exhaustive for <= ``exhaustive_max_photos`` photos;
    above, decided from the photos: sequential for a sequence, else exhaustive when its measured cost fits
    ``match_budget_s``, else retrieval pairs (``nerfstage.capture.sfm_pairs``)."""
    match_budget_s: float = SfmOptions.match_budget_s
    """``matcher="auto"``: seconds exhaustive matching of an unordered photo set may take (see ``matcher``)."""
    exhaustive_max_photos: int = SfmOptions.exhaustive_max_photos
    """``matcher="auto"``: photo sets up to this size are matched exhaustively whatever their order (the
    sequence analysis is still reported)."""
    mapper: Mapper = SfmOptions.mapper
    """SfM mapper: COLMAP's incremental one, or global (GLOMAP-style) mapping."""
    camera_model: SfmCameraModel = SfmOptions.camera_model
    """COLMAP camera model of the one camera shared by every frame (see ``nerfstage.capture.sfm``)."""
    seed: int = 0
    """Seed of every random step."""
    overwrite: bool = False
    """Replace an existing output folder (safely: only once the new dataset is complete)."""
    colmap_model: Path | None = None
    """Existing COLMAP model folder (``.../sparse/0``) to convert instead of running SfM."""
    colmap_images: Path | None = None
    """Image folder of ``colmap_model``; its images are copied into the dataset's ``images/``."""
    max_num_features: int = SfmOptions.max_num_features
    """Most SIFT features per image (see ``nerfstage.capture.sfm`` for why 4096)."""
    loop_every: int = SfmOptions.loop_every
    """Loop-closing second SfM pass of the sequential matcher: frame pairs whose gap is a multiple of this and
    whose cameras look the same way are matched from the first model's poses (0 = off; ``capture/sfm.py``)."""
    keep_database: bool = False
    """Keep COLMAP's feature/match database at ``colmap/database.db`` (large; deleted by default)."""
    progress: bool = True
    """Show a progress line per step."""


@dataclass
class CaptureResult:
    """What :func:`run_capture` produced."""

    dataset_dir: Path
    """The finished dataset folder."""
    report: dict[str, Any]
    """The content of ``capture_report.json``."""
    warnings: list[str] = field(default_factory=list)
    """Non-fatal problems (e.g. only 50-90 % of the frames registered), also in the report."""


def run_capture(input_path: Path | None, output: Path, options: CaptureOptions | None = None) -> CaptureResult:
    """Turn a video, a folder of photos, or (``options.colmap_model``) a COLMAP model into a dataset at ``output``.

    Raises OutputExistsError when ``output`` exists and ``options.overwrite`` is off, VideoError/DatasetError
    for unusable input, ReconstructionError when fewer than half of the frames register.
    """
    options = options or CaptureOptions()
    _check_options(input_path, options)
    output = Path(output).absolute()
    _check_output(output, options.overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{output.name}.partial-", dir=output.parent))
    try:
        if options.colmap_model is not None:
            report = _convert_colmap(options, staging)
        else:
            report = _capture(Path(input_path), options, staging)
        report["output"] = str(output)
        _write_report(report, staging)
        _swap_into_place(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CaptureResult(output, report, list(report["warnings"]))


def _check_options(input_path: Path | None, options: CaptureOptions) -> None:
    if options.colmap_model is None and input_path is None:
        raise ConfigError("no input: give a video file, a folder of images, or --colmap MODEL --images DIR")
    if options.colmap_model is not None and options.colmap_images is None:
        raise ConfigError(f"colmap_images: give the image folder of the COLMAP model {options.colmap_model} too",
                          field="colmap_images")
    if options.frames < 2:
        raise ConfigError(f"frames={options.frames}: expected at least 2 frames", field="frames")
    if options.max_size < 64:
        raise ConfigError(f"max_size={options.max_size}: expected at least 64 pixels", field="max_size")
    if options.matcher not in ("auto", "sequential", "exhaustive"):
        raise ConfigError(f"matcher={options.matcher!r}: expected auto, sequential or exhaustive", field="matcher")
    if options.mapper not in ("incremental", "global"):
        raise ConfigError(f"mapper={options.mapper!r}: expected incremental or global", field="mapper")
    if options.camera_model not in CAMERA_MODELS:
        raise ConfigError(f"camera_model={options.camera_model!r}: expected one of {', '.join(CAMERA_MODELS)}",
                          field="camera_model")


def _check_output(output: Path, overwrite: bool) -> None:
    if not output.exists() or overwrite:
        return
    if output.is_dir() and not any(output.iterdir()):
        return
    raise OutputExistsError(f"{output} already exists; pass --overwrite to replace it or choose another -o folder")


def _swap_into_place(staging: Path, output: Path) -> None:
    """Move the finished ``staging`` folder to ``output``; an old ``output`` is removed only after the swap."""
    if not output.exists():
        os.replace(staging, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f"{output.name}.old-", dir=output.parent))
    os.replace(output, old / output.name)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- SfM capture


def _capture(input_path: Path, options: CaptureOptions, staging: Path) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    is_video = is_video_file(input_path)
    if not input_path.exists():
        raise DatasetError(f"{input_path}: no such file or folder; expected a video file or a folder of images")
    if not is_video and not input_path.is_dir():
        raise DatasetError(f"{input_path}: not a video file (mp4, mov, ...) nor a folder of images")
    frames = _frames_into(input_path, is_video, options, staging / "images", seconds)
    sfm_options = sfm_options_for(options, is_video)
    sfm = run_sfm(staging / "images", staging / "colmap", sfm_options, progress=options.progress)
    seconds.update(sfm.seconds)
    if not options.keep_database:
        (staging / "colmap" / "database.db").unlink(missing_ok=True)
    plan = sfm.plan
    warnings = frames.pop("import_warnings") + _registration_warnings(sfm, input_path, plan.matcher)
    if flip_check_applies(plan):
        warnings += flip_warnings(reconstruction_poses(sfm.reconstruction))
    start = time.perf_counter()
    summary = _write_dataset(sfm.reconstruction, staging)
    seconds["write"] = time.perf_counter() - start
    report = _report_base(input_path, "video" if is_video else "images", options, frames, seconds, warnings)
    report.update(summary, matcher=plan.matcher, matching=plan.to_json(), num_models=sfm.num_models,
                  loop_pairs=sfm.num_loop_pairs)
    return report


def sfm_options_for(options: CaptureOptions, is_video: bool) -> SfmOptions:
    """The SfM settings ``run_capture`` uses for this input (the speed benchmark reuses them)."""
    return SfmOptions(
        camera_model=options.camera_model,
        matcher=choose_matcher(options.matcher, is_video),
        match_budget_s=options.match_budget_s,
        exhaustive_max_photos=options.exhaustive_max_photos,
        video_frames=is_video,
        mapper=options.mapper,
        max_num_features=options.max_num_features,
        loop_every=options.loop_every,
        seed=options.seed,
    )


def _frames_into(input_path: Path, is_video: bool, options: CaptureOptions, images: Path, seconds) -> dict:
    """Decode/select video frames, or import photos, into ``images``; returns the report fields about frames."""
    start = time.perf_counter()
    if is_video:
        got = extract_sharpest_frames(input_path, images, options.frames, options.max_size, options.progress)
        seconds["decode"] = got.seconds.get("count", 0.0) + got.seconds.get("decode", 0.0)
        seconds["select"] = got.seconds.get("select", 0.0)
        fields = {"frames_decoded": got.frames_decoded, "source_frame_indices": list(got.source_indices)}
        fields.update(video_rotation_deg=got.rotation_deg, video_fps=got.fps, import_warnings=[])
    else:
        got = import_images(input_path, images, options.max_size, options.progress)
        seconds["decode"], seconds["select"] = time.perf_counter() - start, 0.0
        fields = {"frames_decoded": len(got.image_paths), "source_names": dict(_invert(got.name_map))}
        fields["import_warnings"] = list(got.warnings)
        fields["ordering"] = got.order.describe()
    fields["frames_selected"] = len(got.image_paths)
    if fields["frames_selected"] < 2:
        raise ReconstructionError(f"{input_path}: only {fields['frames_selected']} usable frame(s); SfM needs 2+")
    return fields


def _invert(name_map: dict[str, str]) -> list[tuple[str, str]]:
    """Written name -> original name, in written order."""
    return sorted((written, original) for original, written in name_map.items())


def _registration_warnings(sfm: SfmResult, input_path: Path, matcher: str) -> list[str]:
    """Fail below 50 % registered frames; warn below 90 %."""
    registered, total = sfm.reconstruction.num_reg_images(), sfm.num_images
    fraction = registered / max(total, 1)
    advice = "try more overlap between frames (a slower walk, more --frames)"
    if matcher in ("sequential", "retrieval"):
        advice += " or --matcher exhaustive"
    if fraction < MIN_REGISTERED_FRACTION:
        raise ReconstructionError(
            f"{input_path}: SfM registered only {registered} of {total} frames ({fraction:.0%}, "
            f"need >= {MIN_REGISTERED_FRACTION:.0%}); {advice}"
        )
    if fraction < WARN_REGISTERED_FRACTION:
        return [f"only {registered} of {total} frames registered ({fraction:.0%}); the rest are left out; {advice}"]
    return []


def flip_check_applies(plan: MatchPlan) -> bool:
    """Whether ``flip_warnings`` means something after this matching: matching by appearance (exhaustive or
    retrieval; sequential matching does not flip) of frames whose name order is not random (FLIP_CHECK_MIN_SCORE)."""
    if plan.matcher == "sequential":
        return False
    return plan.analysis is None or plan.analysis.sequence_score >= FLIP_CHECK_MIN_SCORE


def flip_warnings(poses: dict[str, np.ndarray]) -> list[str]:
    """A warning when cameras adjacent in name order turn by more than FLIP_WARN_DEG (poses: name -> [4, 4])."""
    names = sorted(poses)
    flips = []
    for prev, name in zip(names, names[1:]):
        relative = poses[prev][:3, :3].T @ poses[name][:3, :3]
        angle = np.degrees(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)))
        if angle > FLIP_WARN_DEG:
            flips.append(f"{prev}->{name} ({angle:.0f} deg)")
    if not flips:
        return []
    return [
        f"camera turns by more than {FLIP_WARN_DEG:.0f} deg between consecutive frames {', '.join(flips[:5])}: "
        "likely mirror-flipped poses of a symmetric scene; if the photos are in capture order, try --matcher "
        "sequential"
    ]


# ----------------------------------------------------------------------------------------------- COLMAP input


def _convert_colmap(options: CaptureOptions, staging: Path) -> dict[str, Any]:
    """Convert an existing COLMAP model (no SfM): copy model and images into the dataset, write the rest."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    model_dir, image_dir = Path(options.colmap_model), Path(options.colmap_images)
    if not model_dir.is_dir():
        raise DatasetError(f"--colmap {model_dir}: not a folder; expected a COLMAP model folder like sparse/0")
    if not image_dir.is_dir():
        raise DatasetError(f"--images {image_dir}: not a folder; expected the folder of the model's images")
    start = time.perf_counter()
    try:
        rec = pycolmap.Reconstruction(model_dir)
    except Exception as err:  # pycolmap raises plain RuntimeError/ValueError on unreadable models
        raise DatasetError(f"--colmap {model_dir}: cannot read a COLMAP model ({err}); expected sparse/0") from None
    names = sorted(image.name for image in rec.images.values() if image.has_pose)
    _copy_images(names, image_dir, staging / "images")
    (staging / "colmap" / "sparse" / "0").mkdir(parents=True)
    rec.write(staging / "colmap" / "sparse" / "0")
    seconds = {"copy": time.perf_counter() - start}
    start = time.perf_counter()
    summary = _write_dataset(rec, staging)
    seconds["write"] = time.perf_counter() - start
    counts = {"frames_decoded": rec.num_images(), "frames_selected": rec.num_images()}
    report = _report_base(model_dir, "colmap", options, counts, seconds, [])
    report.update(summary, colmap_images=str(image_dir))
    return report


def _copy_images(names: list[str], image_dir: Path, dest: Path) -> None:
    missing = [name for name in names if not (image_dir / name).is_file()]
    if missing:
        raise DatasetError(
            f"--images {image_dir}: {len(missing)} image(s) of the model are missing, e.g. {missing[0]}"
        )
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image_dir / name, target)


# ----------------------------------------------------------------------------------------------- outputs


def _write_dataset(rec, staging: Path) -> dict[str, Any]:
    """transforms.json + sparse_pc.ply for ``rec`` (images already in ``staging/images``); returns report fields."""
    dataset = dataset_from_reconstruction(rec, staging / "images", staging, apply_nerfstudio_world=True)
    ply_path = staging / "sparse_pc.ply"
    write_sparse_ply(rec, ply_path, dataset.applied_transform)
    dataset.ply_path = ply_path

    write_transforms(dataset, staging / "transforms.json")
    return {
        "frames_registered": int(rec.num_reg_images()),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "num_points3D": int(rec.num_points3D()),
        "cameras": [_camera_json(camera) for camera in rec.cameras.values()][:8],
        "num_cameras": int(rec.num_cameras()),
    }


def _camera_json(camera) -> dict[str, Any]:
    return {
        "model": camera.model_name,
        "width": int(camera.width),
        "height": int(camera.height),
        "params": [float(v) for v in camera.params],
        "params_info": camera.params_info,
    }


def _report_base(input_path: Path, kind: str, options: CaptureOptions, counts, seconds, warnings) -> dict:
    counts = dict(counts)
    return {
        "nerfstage_version": __version__,
        "input": str(input_path),
        "input_kind": kind,
        "frames_decoded": int(counts.pop("frames_decoded")),
        "frames_selected": int(counts.pop("frames_selected")),
        "frames_registered": 0,
        "mean_reprojection_error_px": None,
        "seconds": {k: round(float(v), 3) for k, v in seconds.items()},
        "warnings": list(warnings),
        "options": _options_json(options),
        **counts,
    }


def _options_json(options: CaptureOptions) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}


def _write_report(report: dict[str, Any], staging: Path) -> None:
    report["seconds"]["total"] = round(sum(v for k, v in report["seconds"].items() if k != "total"), 3)
    write_json_atomic(report, staging / "capture_report.json")
