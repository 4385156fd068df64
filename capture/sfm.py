"""Structure-from-motion with pycolmap, in-process (no COLMAP binary), tuned for phone walk-arounds on a CPU.

:func:`run_sfm` runs SIFT extraction (one shared camera), sequential, exhaustive or retrieval matching (for
photos, ``matcher="auto"`` decides from the photos: ``sfm_pairs.py``), and incremental or global mapping, keeps
the largest model and (``fast`` tuning, sequential or retrieval matcher) runs a second, pose-guided matching pass
(``sfm_loops.py``). :func:`align_sim3` and :func:`pose_errors` (``sfm_eval.py``) measure poses
against a reference after a similarity alignment (tests and benchmarks use them).

Why the ``tuning="fast"`` defaults. Measured with ``benchmarks/capture_speed.py`` (100 synthetic frames, 640x480,
the same images for both, 2 CPU cores shared with other jobs, load average ~4): pycolmap's defaults (exhaustive +
incremental) 446 s (extract 70, match 273, map 103), 100/100 registered, mean rotation error 0.0108 deg;
these settings without the loop pass 115 s (ratio 0.26), 100/100, but 0.0179 deg: the sequential chain bends
(0.04 deg at the ends, 0.005 in the middle). The loop pass (see ``sfm_loops.py``) brings it to 0.008-0.009 deg.

* SIFT on the doubled image (``first_octave=-1``, as pycolmap does), at most 4096 features (default 8192).
  Native resolution (``first_octave=0``) is ~3x cheaper but its keypoints are less precise: 0.032-0.035 deg
  whatever the matching and mapping options, against 0.015 with the doubled image.
* Sequential matching with each frame's next 6 frames, WITHOUT the quadratic pairs (i+8, i+16, i+32, i+64):
  those long pairs tied the ends of the synthetic walk together (0.0206 -> 0.0196 deg) but on a symmetric real
  scene (beer_video/images: a can on a tiled floor) they matched look-alike views and flipped the last 18 frames
  (67 deg error vs the author's model); without them every stretch is within 0.3-1.0 deg (mean 0.61 deg).
* Loop pass: pairs every ``loop_every``-th frame gap beyond the overlap whose cameras look < 90 deg apart, chosen
  from the pass-1 POSES (never from appearance), matched and triangulated on the fixed poses, then refined.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..core.errors import ConfigError, ReconstructionError
from .sfm_eval import Sim3, align_sim3, pose_errors, reconstruction_poses, trajectory_size
from .sfm_loops import match_pairs, retriangulate, select_loop_pairs, viewing_geometry
from .sfm_pairs import MatchPlan, plan_photo_matching

if TYPE_CHECKING:
    import pycolmap
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

Matcher = Literal["auto", "sequential", "exhaustive"]
"""What the user may ask for; ``auto`` on photos may also resolve to ``retrieval`` (``sfm_pairs.py``)."""
Mapper = Literal["incremental", "global"]
SfmCameraModel = Literal["OPENCV", "SIMPLE_RADIAL", "PINHOLE", "OPENCV_FISHEYE"]
Tuning = Literal["fast", "colmap"]
__all__ = ["SfmOptions", "SfmResult", "run_sfm", "Sim3", "align_sim3", "pose_errors", "reconstruction_poses",
           "trajectory_size"]

CAMERA_MODELS: tuple[str, ...] = ("OPENCV", "SIMPLE_RADIAL", "PINHOLE", "OPENCV_FISHEYE")
EXHAUSTIVE_MAX_PHOTOS = 100
"""``matcher="auto"`` matches a photo folder of up to this many images exhaustively (as COLMAP does for small
sets; fox's 50 photos were measured so), and decides from the photos above (``sfm_pairs.py``)."""
MATCH_BUDGET_S = 600.0
"""Default time budget of exhaustive matching of an unordered photo set (the 170-photo burst room took about
10 minutes exhaustively on 2 cores, its whole capture); beyond it retrieval pairs are matched instead."""
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
    matcher: Matcher = "auto"
    """``sequential`` (video frames in order), ``exhaustive`` (every pair; small unordered photo sets) or ``auto``:
    sequential for video frames (``video_frames``), exhaustive for up to ``exhaustive_max_photos`` photos, and
    for more photos sequential when they form a sequence, else exhaustive or retrieval within ``match_budget_s``
    (see ``choose_matcher`` and ``sfm_pairs.py``)."""
    video_frames: bool = True
    """The images are a video's frames, in order (``matcher="auto"`` then matches sequentially)."""
    mapper: Mapper = "incremental"
    """``incremental`` (COLMAP) or ``global`` (GLOMAP-style rotation averaging + global positioning)."""
    tuning: Tuning = "fast"
    """``fast``: the CPU-tuned settings described in the module docstring; ``colmap``: pycolmap's defaults."""
    max_num_features: int = 4096
    """Most SIFT features kept per image (``fast`` tuning only)."""
    sequential_overlap: int = 6
    """Each frame is matched with this many following frames (sequential matcher, ``fast`` tuning); also the next
    frames added to retrieval pairs and the span within which the sequence analysis looks for links."""
    loop_every: int = 6
    """Second pass of the sequential and retrieval matchers (``fast`` tuning; ``sfm_loops.py``): from the first
    model's poses, pairs more than ``sequential_overlap`` frames apart, whose frame gap is a multiple of this and
    whose viewing axes are less than ``loop_max_angle_deg`` apart, are matched and triangulated on the fixed poses
    before the final refinement. Holds the ends of a walk together. 0 turns the pass off."""
    loop_max_angle_deg: float = 90.0
    """Largest angle between the viewing axes of the two cameras of a loop pair (degrees)."""
    exhaustive_max_photos: int = EXHAUSTIVE_MAX_PHOTOS
    """``matcher="auto"``: photo sets up to this size are matched exhaustively whatever their order (the
    sequence analysis is still reported)."""
    match_budget_s: float = MATCH_BUDGET_S
    """``matcher="auto"``: seconds exhaustive matching of an unordered photo set may take (estimated from the
    per-image and per-pair costs measured on this machine); above it, retrieval pairs are matched."""
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
    """Wall time per step: ``extract``, ``match``, ``map``, then with ``fast`` tuning ``loop_match`` and
    ``retriangulate`` (sequential or retrieval matcher, loop pass on) and ``refine``."""
    num_loop_pairs: int = 0
    """Loop pairs the second pass matched (0 when it did not run)."""
    plan: MatchPlan | None = None
    """The matching that ran and why (``sfm_pairs.py``)."""


def run_sfm(image_dir: Path, work_dir: Path, options: SfmOptions, progress: bool = True) -> SfmResult:
    """Reconstruct the images of ``image_dir``; the database and the kept model go into ``work_dir``.

    ``work_dir`` gets ``database.db`` and ``sparse/0``. Raises ReconstructionError when no model can be built.
    """
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    _check_options(options)
    image_dir, work_dir = Path(image_dir), Path(work_dir)
    names = sorted(p.name for p in image_dir.iterdir() if p.is_file())
    if len(names) < 2:
        raise ReconstructionError(f"{image_dir}: {len(names)} image(s) found, SfM needs at least 2")
    options = replace(options, matcher=choose_matcher(options.matcher, options.video_frames))
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(options.seed)
    seconds: dict[str, float] = {}
    with colmap_log(work_dir / "colmap.log"), _Steps(progress) as steps:
        with steps.step("extract", seconds):
            _extract(database, image_dir, options)
        with steps.step("match", seconds):
            plan = _match(database, work_dir, options)
        options = replace(options, matcher=plan.matcher)
        with steps.step("map", seconds, total=len(names)) as advance:
            models = _map(database, image_dir, work_dir / "models", options, advance)
        best = _largest(models, len(names))
        num_loop_pairs = 0
        if _loops_on(options):
            best, num_loop_pairs = _close_loops(best, database, image_dir, work_dir, options, steps, seconds)
        if options.tuning == "fast":
            with steps.step("refine", seconds):
                best = _refine(best, options)
    result = _write_model(best, models, work_dir, len(names), seconds)
    result.num_loop_pairs, result.plan = num_loop_pairs, plan
    return result


def _check_options(options: SfmOptions) -> None:
    if options.camera_model not in CAMERA_MODELS:
        raise ConfigError(f"camera model {options.camera_model!r}: expected one of {', '.join(CAMERA_MODELS)}")
    if options.matcher not in ("auto", "sequential", "exhaustive"):
        raise ConfigError(f"matcher {options.matcher!r}: expected 'auto', 'sequential' or 'exhaustive'",
                          field="matcher")
    if options.mapper not in ("incremental", "global"):
        raise ConfigError(f"mapper {options.mapper!r}: expected 'incremental' or 'global'")
    if options.tuning not in ("fast", "colmap"):
        raise ConfigError(f"tuning {options.tuning!r}: expected 'fast' or 'colmap'")
    if options.match_budget_s <= 0 or options.exhaustive_max_photos < 0:
        raise ConfigError(f"match_budget_s={options.match_budget_s}, exhaustive_max_photos="
                          f"{options.exhaustive_max_photos}: expected a positive budget and a count >= 0")
    if options.max_num_features < 256 or options.sequential_overlap < 1 or options.loop_every < 0:
        raise ConfigError(
            f"max_num_features={options.max_num_features}, sequential_overlap={options.sequential_overlap}, "
            f"loop_every={options.loop_every}: expected >= 256 features, an overlap >= 1 and loop_every >= 0"
        )
    if not 0.0 < options.loop_max_angle_deg <= 180.0:
        raise ConfigError(f"loop_max_angle_deg={options.loop_max_angle_deg}: expected an angle in (0, 180]")


def choose_matcher(matcher: str, video_frames: bool) -> Literal["auto", "sequential", "exhaustive"]:
    """What ``matcher`` means before the images are seen: ``auto`` = sequential for a video's frames; for photos
    ``auto`` stays, to be decided from the photos after feature extraction (``sfm_pairs.plan_photo_matching``);
    any other value as it is."""
    if matcher == "auto" and video_frames:
        return "sequential"
    return matcher  # type: ignore[return-value]


def _extract(database: Path, image_dir: Path, options: SfmOptions) -> None:
    """SIFT features into ``database``: pycolmap's defaults for ``colmap`` tuning; at most ``max_num_features``
    per image on the doubled image (``first_octave=-1``, as pycolmap does) for ``fast`` tuning."""
    _extract_once(database, image_dir, options, first_octave=None if options.tuning == "colmap" else -1)


def _extract_once(database: Path, image_dir: Path, options: SfmOptions, first_octave: int | None) -> None:
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

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


def _match_kwargs(options: SfmOptions) -> dict:
    """Matching and two-view verification options shared by every matcher call."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = options.seed
    if options.tuning == "fast":
        verification.ransac.max_num_trials = 2000
    return dict(matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu)


def _match(database: Path, work_dir: Path, options: SfmOptions) -> MatchPlan:
    """Match the images of ``database`` as ``options.matcher`` says (``auto``: as the photos call for)."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    kwargs = _match_kwargs(options)
    pairs: list[tuple[str, str]] = []
    if options.matcher == "auto":
        plan, pairs = plan_photo_matching(
            database, work_dir, kwargs, overlap=options.sequential_overlap, budget_s=options.match_budget_s,
            exhaustive_max_photos=options.exhaustive_max_photos, seed=options.seed,
        )
    else:
        why = "video frames are a sequence" if options.video_frames else "given by the user"
        plan = MatchPlan(options.matcher, why)  # type: ignore[arg-type]
    if plan.matcher == "exhaustive":
        pycolmap.match_exhaustive(database, **kwargs)  # pairs matched to measure the cost are not matched again
    elif plan.matcher == "retrieval":
        match_pairs(database, pairs, work_dir / "retrieval_pairs.txt", kwargs)
    else:
        _match_sequential(database, options, kwargs)
    return plan


def _match_sequential(database: Path, options: SfmOptions, kwargs: dict) -> None:
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    pairing = pycolmap.SequentialPairingOptions()
    pairing.num_threads = options.num_threads
    if options.tuning == "fast":
        pairing.overlap = options.sequential_overlap
        pairing.quadratic_overlap = False  # long pairs match look-alike views of symmetric scenes
    pycolmap.match_sequential(database, pairing_options=pairing, **kwargs)


def _map(database: Path, image_dir: Path, out_dir: Path, options: SfmOptions, advance) -> dict:
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

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
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

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
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    pipeline = pycolmap.GlobalPipelineOptions()
    pipeline.num_threads = options.num_threads
    pipeline.random_seed = options.seed
    pipeline.mapper.num_threads = options.num_threads
    pipeline.mapper.random_seed = options.seed
    return pipeline


def _loops_on(options: SfmOptions) -> bool:
    return options.tuning == "fast" and options.matcher in ("sequential", "retrieval") and options.loop_every > 0


def _close_loops(
    model: pycolmap.Reconstruction, database: Path, image_dir: Path, work_dir: Path, options: SfmOptions, steps,
    seconds: dict[str, float],
) -> tuple[pycolmap.Reconstruction, int]:
    """Second pass (``sfm_loops.py``): match the pose-chosen loop pairs, then re-triangulate on the fixed poses.
    Returns the model unchanged (and 0 pairs) when no pair qualifies."""
    names, axes, _ = viewing_geometry(model)
    pairs = select_loop_pairs(names, axes, options.sequential_overlap, options.loop_every,
                              options.loop_max_angle_deg)
    if not pairs:
        return model, 0
    with steps.step("loop_match", seconds):
        match_pairs(database, pairs, work_dir / "loop_pairs.txt", _match_kwargs(options))
    with steps.step("retriangulate", seconds):
        model = retriangulate(model, database, image_dir, work_dir / "retriangulated", _incremental_options(options))
    return model, len(pairs)


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
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

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
def colmap_log(path: Path) -> Iterator[Path]:
    """Route COLMAP's own log (glog: info, warnings, errors) into ``path`` instead of stderr while SfM runs: its
    lines are chatter for our users ("discarding reconstruction due to insufficient size", camera-size notes);
    our errors and the capture report say what matters, and ``path`` keeps the detail (appended per run)."""
    import pycolmap  # heavy: pycolmap loads COLMAP (only when structure-from-motion runs)

    log = pycolmap.logging
    saved = (log.minloglevel, log.stderrthreshold, log.alsologtostderr, log.logtostderr)
    base = path.with_name(path.name + ".part-")  # glog appends a timestamp and the PID to the name
    log.minloglevel, log.stderrthreshold, log.alsologtostderr, log.logtostderr = 0, 3, False, False
    log.set_log_destination(log.INFO, str(base))
    for level in (log.WARNING, log.ERROR):
        log.set_log_destination(level, "")  # one file: INFO's holds every level
    try:
        yield path
    finally:
        log.set_log_destination(log.INFO, "")
        log.minloglevel, log.stderrthreshold, log.alsologtostderr, log.logtostderr = saved
        _gather_logs(path, base)


def _gather_logs(path: Path, base: Path) -> None:
    """Append glog's file(s) ``BASE*`` to ``path`` and remove them."""
    parts = sorted(path.parent.glob(base.name + "*"))
    if not parts:
        return
    with open(path, "ab") as out:
        for part in parts:
            out.write(part.read_bytes())
            part.unlink()


class _Steps:
    """One rich progress line per step (spinner, bar when the total is known, elapsed time)."""

    def __init__(self, enabled: bool):
        self._progress = None
        if enabled:
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
