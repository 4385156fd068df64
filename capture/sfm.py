"""Structure-from-motion with pycolmap, in-process (no COLMAP binary), tuned for phone walk-arounds on a CPU.

:func:`run_sfm` runs SIFT extraction (one shared camera), sequential or exhaustive matching, and incremental or
global mapping, and keeps the largest model. :func:`align_sim3` and :func:`pose_errors` measure poses against a
reference after a similarity alignment (tests and benchmarks use them).

Why the ``tuning="fast"`` defaults. Measured with ``benchmarks/capture_speed.py`` (100 synthetic frames, 640x480,
the same images for both, 2 CPU cores shared with other jobs, load average ~7): pycolmap's defaults (exhaustive +
incremental) 675 s (extract 65, match 434, map 176), 100/100 registered, mean rotation error 0.0108 deg;
with the quadratic pairs (since dropped, see below) these settings took 193 s (extract 60, match 50, map 73, refine 11), ratio 0.29, 100/100, 0.0126 deg. NOT yet "no
worse": another mapper seed on the defaults' matches gives 0.0108 again and on ours 0.0124; the same settings on
matches of an earlier run (pairs verified in two passes) gave 0.0101, so ours sits at 0.010-0.013 deg.

* SIFT on the doubled image (``first_octave=-1``, as pycolmap does), at most 4096 features (default 8192).
  Native resolution (``first_octave=0``) is ~3x cheaper but its keypoints are less precise: 0.032-0.035 deg
  whatever the matching and mapping options, against 0.015 with the doubled image.
* Sequential matching with each frame's next 6 frames, WITHOUT the quadratic pairs (i+8, i+16, i+32, i+64):
  those long pairs tied the ends of the synthetic walk together (0.0206 -> 0.0196 deg) but on a symmetric real
  scene (beer_video/images: a can on a tiled floor) they matched look-alike views and flipped the last 18 frames
  (67 deg error vs the author's model); without them every stretch is within 0.3-1.0 deg (mean 0.61 deg).
* Two-view RANSAC capped at 2000 trials (default 10000): neighbouring frames have high inlier ratios, so the
  adaptive stop ends far earlier; the cap only bounds the cost of pairs that do not overlap.
* Incremental mapping with cheaper bundle adjustment: global BA only after the model grew by 60 % (default
  10 %), at most 30 (global) / 10 (local) solver iterations, one refinement round, local BA over 4 images
  (default 6). Global BA keeps redundant points (``ba_global_ignore_redundant_points3D`` off: 0.0196 -> 0.0154
  deg, no slower). pycolmap's default mapping options on the same matches: 0.0135 deg at 3x the mapping time.
* A final refinement (:func:`_refine`, step ``refine``, ~10 s): drop observations whose reprojection error
  exceeds max(REFINE_MIN_PX, REFINE_MEAN_FACTOR x mean error) and bundle-adjust to convergence. Mapping keeps
  observations up to 4 px; the loose ones bend the trajectory (the error grew from the middle to both ends,
  with the focal length 0.04 % long). On the same mapped model: 0.0154 -> 0.0101 deg (0.4 px: 0.0105; 1 px:
  0.0115; a tight BA alone, without the filter: 0.035 -> 0.033 on native-resolution features).

Camera model: ``SIMPLE_RADIAL`` (one focal length, one radial term; COLMAP's own default) unless asked
otherwise. ``OPENCV`` frees fx, fy and four distortion terms, which weak captures cannot pin down: on 21 beer
frames at 360x640 it drifted to fx=332, fy=388 (true ~560) and 8.3 deg mean rotation error against the
author's model, where ``SIMPLE_RADIAL`` gave 0.73 deg (full resolution: 0.48 deg). Ask for ``OPENCV`` for
lenses with strong distortion, ``OPENCV_FISHEYE`` for fisheye lenses.

``tuning="colmap"`` uses pycolmap's own defaults for every step (apart from camera model, the single shared
camera and the seed); the speed benchmark uses it as the baseline.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import ConfigError, ReconstructionError

if TYPE_CHECKING:
    import pycolmap

Matcher = Literal["sequential", "exhaustive"]
Mapper = Literal["incremental", "global"]
SfmCameraModel = Literal["OPENCV", "SIMPLE_RADIAL", "PINHOLE", "OPENCV_FISHEYE"]
Tuning = Literal["fast", "colmap"]

CAMERA_MODELS: tuple[str, ...] = ("OPENCV", "SIMPLE_RADIAL", "PINHOLE", "OPENCV_FISHEYE")
REFINE_MIN_PX = 0.5
"""``fast`` tuning's final refinement drops observations whose reprojection error exceeds the larger of this
(pixels) and REFINE_MEAN_FACTOR times the model's mean reprojection error, then re-runs global BA."""
REFINE_MEAN_FACTOR = 1.5
"""See REFINE_MIN_PX (keeps most observations of captures whose mean error is well above half a pixel)."""
REFINE_MIN_POINTS_PER_IMAGE = 30
"""The refinement is undone when it leaves a registered image with fewer 3D points than this."""


@dataclass
class SfmOptions:
    """How :func:`run_sfm` reconstructs cameras from a folder of images."""

    camera_model: SfmCameraModel = "SIMPLE_RADIAL"
    """COLMAP camera model of the one camera shared by all images (why SIMPLE_RADIAL: module docstring)."""
    matcher: Matcher = "sequential"
    """``sequential`` (video frames in order) or ``exhaustive`` (every pair; small unordered photo sets)."""
    mapper: Mapper = "incremental"
    """``incremental`` (COLMAP) or ``global`` (GLOMAP-style rotation averaging + global positioning)."""
    tuning: Tuning = "fast"
    """``fast``: the CPU-tuned settings described in the module docstring; ``colmap``: pycolmap's defaults."""
    max_num_features: int = 4096
    """Most SIFT features kept per image (``fast`` tuning only)."""
    sequential_overlap: int = 6
    """Each frame is matched with this many following frames (sequential matcher, ``fast`` tuning)."""
    num_threads: int = -1
    """CPU threads for every step; -1 uses all cores."""
    seed: int = 0
    """Seed of every random step (RANSAC, mapper)."""


@dataclass
class SfmResult:
    """The kept model and what it took to get it."""

    reconstruction: pycolmap.Reconstruction
    """The largest model found (most registered images), also written to ``<work_dir>/sparse/0``."""
    num_images: int
    """Images that went into SfM."""
    num_models: int
    """Models the mapper produced (more than one means the capture broke into pieces)."""
    sparse_dir: Path
    """Where the kept model was written (COLMAP binary format)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per step: ``extract``, ``match``, ``map``."""


def run_sfm(image_dir: Path, work_dir: Path, options: SfmOptions, progress: bool = True) -> SfmResult:
    """Reconstruct the images of ``image_dir``; the database and the kept model go into ``work_dir``.

    ``work_dir`` gets ``database.db`` and ``sparse/0``. Raises ReconstructionError when no model can be built.
    """
    import pycolmap

    _check_options(options)
    image_dir, work_dir = Path(image_dir), Path(work_dir)
    names = sorted(p.name for p in image_dir.iterdir() if p.is_file())
    if len(names) < 2:
        raise ReconstructionError(f"{image_dir}: {len(names)} image(s) found, SfM needs at least 2")
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(options.seed)
    seconds: dict[str, float] = {}
    with _quiet_colmap(progress), _Steps(progress) as steps:
        with steps.step("extract", seconds):
            _extract(database, image_dir, options)
        with steps.step("match", seconds):
            _match(database, options)
        with steps.step("map", seconds, total=len(names)) as advance:
            models = _map(database, image_dir, work_dir / "models", options, advance)
        best = _largest(models, len(names))
        if options.tuning == "fast":
            with steps.step("refine", seconds):
                best = _refine(best, options)
    return _write_model(best, models, work_dir, len(names), seconds)


def _check_options(options: SfmOptions) -> None:
    if options.camera_model not in CAMERA_MODELS:
        raise ConfigError(f"camera model {options.camera_model!r}: expected one of {', '.join(CAMERA_MODELS)}")
    if options.matcher not in ("sequential", "exhaustive"):
        raise ConfigError(f"matcher {options.matcher!r}: expected 'sequential' or 'exhaustive'")
    if options.mapper not in ("incremental", "global"):
        raise ConfigError(f"mapper {options.mapper!r}: expected 'incremental' or 'global'")
    if options.tuning not in ("fast", "colmap"):
        raise ConfigError(f"tuning {options.tuning!r}: expected 'fast' or 'colmap'")
    if options.max_num_features < 256 or options.sequential_overlap < 1:
        raise ConfigError(
            f"max_num_features={options.max_num_features}, sequential_overlap={options.sequential_overlap}: "
            "expected >= 256 features and an overlap >= 1"
        )


def _extract(database: Path, image_dir: Path, options: SfmOptions) -> None:
    """SIFT features into ``database``: pycolmap's defaults for ``colmap`` tuning; at most ``max_num_features``
    per image on the doubled image (``first_octave=-1``, as pycolmap does) for ``fast`` tuning."""
    _extract_once(database, image_dir, options, first_octave=None if options.tuning == "colmap" else -1)


def _extract_once(database: Path, image_dir: Path, options: SfmOptions, first_octave: int | None) -> None:
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = options.num_threads
    if first_octave is not None:
        extraction.sift.max_num_features = options.max_num_features
        extraction.sift.first_octave = first_octave
    pycolmap.extract_features(
        database,
        image_dir,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def _match(database: Path, options: SfmOptions) -> None:
    import pycolmap

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = options.seed
    if options.tuning == "fast":
        verification.ransac.max_num_trials = 2000
    kwargs = dict(matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu)
    if options.matcher == "exhaustive":
        pycolmap.match_exhaustive(database, **kwargs)
        return
    pairing = pycolmap.SequentialPairingOptions()
    pairing.num_threads = options.num_threads
    if options.tuning == "fast":
        pairing.overlap = options.sequential_overlap
        pairing.quadratic_overlap = False  # long pairs match look-alike views of symmetric scenes
    pycolmap.match_sequential(database, pairing_options=pairing, **kwargs)


def _map(database: Path, image_dir: Path, out_dir: Path, options: SfmOptions, advance) -> dict:
    import pycolmap

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    try:
        if options.mapper == "global":
            return pycolmap.global_mapping(database, image_dir, out_dir, options=_global_options(options))
        return pycolmap.incremental_mapping(
            database,
            image_dir,
            out_dir,
            options=_incremental_options(options),
            initial_image_pair_callback=lambda: advance(2),
            next_image_callback=lambda: advance(1),
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _incremental_options(options: SfmOptions) -> pycolmap.IncrementalPipelineOptions:
    import pycolmap

    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.num_threads = options.num_threads
    pipeline.random_seed = options.seed
    if options.tuning == "fast":
        pipeline.ba_global_frames_ratio = 1.6
        pipeline.ba_global_points_ratio = 1.6
        pipeline.ba_global_max_num_iterations = 30
        pipeline.ba_local_max_num_iterations = 10
        pipeline.ba_global_max_refinements = 1
        pipeline.ba_local_max_refinements = 1
        pipeline.mapper.ba_local_num_images = 4
    return pipeline


def _global_options(options: SfmOptions) -> pycolmap.GlobalPipelineOptions:
    import pycolmap

    pipeline = pycolmap.GlobalPipelineOptions()
    pipeline.num_threads = options.num_threads
    pipeline.random_seed = options.seed
    pipeline.mapper.num_threads = options.num_threads
    pipeline.mapper.random_seed = options.seed
    return pipeline


def _largest(models: dict, num_images: int) -> pycolmap.Reconstruction:
    if not models:
        raise ReconstructionError(
            f"SfM on {num_images} images built no model: the frames share too few matches; try more overlap "
            "(a slower walk, more --frames) or --matcher exhaustive"
        )
    return max(models.values(), key=lambda rec: rec.num_reg_images())


def _refine(reconstruction: pycolmap.Reconstruction, options: SfmOptions) -> pycolmap.Reconstruction:
    """Final global bundle adjustment on the precise observations only: drop observations whose reprojection
    error exceeds max(REFINE_MIN_PX, REFINE_MEAN_FACTOR x mean error), then bundle-adjust to convergence (tight
    tolerances). Returns the input unchanged when that would leave an image with too few points."""
    import pycolmap

    refined = pycolmap.Reconstruction(reconstruction)
    threshold = max(REFINE_MIN_PX, REFINE_MEAN_FACTOR * refined.compute_mean_reprojection_error())
    pycolmap.ObservationManager(refined).filter_all_points3D(threshold, 1.5)
    if any(im.num_points3D < REFINE_MIN_POINTS_PER_IMAGE for im in refined.images.values() if im.has_pose):
        return reconstruction
    ba = pycolmap.BundleAdjustmentOptions()
    ba.print_summary = False
    solver = ba.ceres.solver_options
    solver.num_threads = options.num_threads
    solver.max_num_iterations = 300
    solver.function_tolerance = solver.gradient_tolerance = solver.parameter_tolerance = 1e-12
    pycolmap.bundle_adjustment(refined, ba)
    return refined


def _write_model(
    best: pycolmap.Reconstruction, models: dict, work_dir: Path, num_images: int, seconds: dict[str, float]
) -> SfmResult:
    sparse_dir = work_dir / "sparse" / "0"
    shutil.rmtree(sparse_dir, ignore_errors=True)
    sparse_dir.mkdir(parents=True)
    best.write(sparse_dir)
    return SfmResult(best, num_images, len(models), sparse_dir, seconds)


# ----------------------------------------------------------------------------------------------- progress


@contextmanager
def _quiet_colmap(progress: bool) -> Iterator[None]:
    """Keep COLMAP's own log to errors while our progress display runs (its warnings are mostly chatter such as
    "discarding reconstruction due to insufficient size"; the capture report states what matters)."""
    import pycolmap

    before = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = max(before, 2)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


class _Steps:
    """One rich progress line per step (spinner, bar when the total is known, elapsed time)."""

    def __init__(self, enabled: bool):
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
            from rich.progress import TimeElapsedColumn

            columns = (SpinnerColumn(), TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn())
            self._progress = Progress(*columns, TimeElapsedColumn())

    def __enter__(self) -> _Steps:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def step(self, name: str, seconds: dict[str, float], total: int | None = None) -> Iterator:
        """Time one step into ``seconds[name]``; yields ``advance(n)`` for steps that can count their work."""
        task = None if self._progress is None else self._progress.add_task(name, total=total)

        def advance(n: int = 1) -> None:
            if task is not None:
                self._progress.advance(task, n)

        start = time.perf_counter()
        try:
            yield advance
        finally:
            seconds[name] = time.perf_counter() - start
            if task is not None:
                done = self._progress.tasks[task].completed if total else 1
                self._progress.update(task, total=total or 1, completed=done)
                self._progress.stop_task(task)


# ----------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Sim3:
    """A similarity transform ``x -> scale * rotation @ x + translation`` (``dst_from_src``)."""

    scale: float
    """Uniform scale."""
    rotation: np.ndarray
    """[3, 3] rotation."""
    translation: np.ndarray
    """[3] translation."""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [N, 3] -> [N, 3]."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


def align_sim3(src_centres: np.ndarray, dst_centres: np.ndarray) -> Sim3:
    """Least-squares similarity ``dst_from_src`` (Umeyama, via pycolmap.estimate_sim3d); centres [N, 3], N >= 3."""
    import pycolmap

    src = np.asarray(src_centres, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst_centres, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 3:
        raise ReconstructionError(f"Sim(3) alignment needs >= 3 matching centres, got {len(src)} and {len(dst)}")
    sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None:
        raise ReconstructionError(f"Sim(3) alignment of {len(src)} camera centres failed (degenerate layout?)")
    return Sim3(float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation).reshape(3))


def pose_errors(world_from_cam_est: np.ndarray, world_from_cam_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation error (degrees) and camera-centre error (units of the true world) per camera, after aligning the
    estimated centres to the true ones with a similarity transform. Both inputs [N, 4, 4] camera-to-world with the
    same camera axes convention; returns ([N], [N])."""
    est = np.asarray(world_from_cam_est, dtype=np.float64)
    true = np.asarray(world_from_cam_true, dtype=np.float64)
    sim = align_sim3(est[:, :3, 3], true[:, :3, 3])
    centre_err = np.linalg.norm(sim.apply(est[:, :3, 3]) - true[:, :3, 3], axis=1)  # [N]
    rot_aligned = np.einsum("ij,njk->nik", sim.rotation, est[:, :3, :3])  # [N, 3, 3]
    relative = np.einsum("nji,njk->nik", true[:, :3, :3], rot_aligned)  # R_true^T R_est
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos)), centre_err


def trajectory_size(world_from_cams: np.ndarray) -> float:
    """Diagonal of the bounding box of the camera centres of [N, 4, 4] camera-to-world matrices."""
    centres = np.asarray(world_from_cams, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0)))


def reconstruction_poses(reconstruction: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """Image name -> [4, 4] camera-to-world (OpenCV camera axes, COLMAP's world) of every registered image."""
    poses = {}
    for image in reconstruction.images.values():
        if image.has_pose:
            world_from_cam = np.eye(4)
            world_from_cam[:3, :4] = image.cam_from_world().inverse().matrix()
            poses[image.name] = world_from_cam
    return poses
