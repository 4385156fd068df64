"""The stages of ``nerfstage run`` / ``demo`` (see ``nerfstage.chain``): each checks whether its outputs are valid
and its request unchanged, runs when they are not, and adds ``{"skipped", "seconds", figures..., "files"}`` to the
summary. A stage returns True when it ran, which makes every later stage run again.

Every stage keeps a stamp, ``WORKDIR/.chain/STAGE.json``: the request (sizes, presets) it was last started with.
Outputs count as valid only under the same request, and an unfinished stage resumes (training from its newest
checkpoint, an MP4 from its frame cache) only when the stamp matches; otherwise it starts afresh.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..capture.loader import load_dataset
from ..capture.pipeline import CaptureOptions, run_capture
from ..capture.sfm import pose_errors, trajectory_size
from ..capture.synthetic import SyntheticOptions, load_ground_truth, write_synthetic_video
from ..core.errors import NerfstageError
from ..export.from_run import MeshExportOptions, export_mesh
from ..export.panorama import PanoramaOptions, export_panorama, latlong_size
from ..export.splats_export import SplatExportOptions, export_splats
from ..export.splats_init import SplatInitOptions
from ..nerf.checkpoint import checkpoint_step, latest_checkpoint
from ..nerf.config import TrainConfig, build_config, config_from_dict, config_to_dict
from ..nerf.run import LoadedRun, finished_metrics, load_run
from ..nerf.trainer import train
from ..render.paths.base import CameraPath
from ..render.pipeline import RenderOptions, render_path
from ..render.plan import ShotOptions, build_path, rig_of, training_arc
from .chain_ranks import Ranks
from .chain_checks import exr_size, glb_faces, splat_info, video_info
from .chain_truth import TRUTH_DIR, novel_path_figures, run_true_poses, true_from_run

STAMPS = ".chain"
VIDEOS = {"orbit": "orbit.mp4", "dolly_zoom": "dolly_zoom.mp4"}
MESH_NAME, PLATE_NAME, CUBEMAP_DIR = "mesh.glb", "plate_latlong.exr", "cubemap"
SPLATS_STEM = "scene"
"""export/scene.ply (or .spz / .glb: ``ChainOptions.splat_format``)."""


def _workdir(summary: dict) -> Path:
    return Path(summary["workdir"])


def _rel(summary: dict, path: Path) -> str:
    return Path(path).resolve().relative_to(_workdir(summary)).as_posix()


def _stamp_path(summary: dict, stage: str) -> Path:
    return _workdir(summary) / STAMPS / f"{stage}.json"


def _same_request(summary: dict, stage: str, request: dict) -> bool:
    try:
        return json.loads(_stamp_path(summary, stage).read_text()) == json.loads(json.dumps(request))
    except (OSError, ValueError):
        return False


def _write_stamp(summary: dict, stage: str, request: dict) -> None:
    _write_stamp_file(_stamp_path(summary, stage), request)


def _write_stamp_file(path: Path, request: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(request, indent=2) + "\n")
    tmp.replace(path)


def _record(summary: dict, stage: str, skipped: bool, start: float, files: list[Path], **figures: Any) -> None:
    summary["stages"][stage] = {"skipped": skipped, "seconds": round(time.perf_counter() - start, 2), **figures,
                                "files": [_rel(summary, f) for f in files]}


def _load(run_dir: Path, options) -> LoadedRun:
    return load_run(run_dir, device=options.device)


# --- synthetic footage (demo) ---------------------------------------------------------------------------------

def synthetic_stage(folder: Path, options, footage, summary: dict) -> Any:
    """Write (or keep) the demo's synthetic video and its true poses; returns the SyntheticCapture."""
    synthetic = SyntheticOptions(num_frames=options.frames, width=footage.width, height=footage.height,
                                 seed=options.seed)
    start = time.perf_counter()
    truth = _valid_footage(folder, synthetic)
    skipped = truth is not None and not options.overwrite
    if not skipped:
        truth = write_synthetic_video(folder, synthetic, overwrite=True)
    _record(summary, "synthetic", skipped, start, [truth.video_path, folder / "ground_truth.json"],
            frames=synthetic.num_frames, width=synthetic.width, height=synthetic.height)
    return truth


def _valid_footage(folder: Path, synthetic) -> Any:
    try:
        truth = load_ground_truth(folder / "ground_truth.json")
    except Exception:  # noqa: BLE001 - anything unreadable means "build it again"
        return None
    same = truth.options is not None and asdict(truth.options) == asdict(synthetic)
    ok = same and truth.video_path is not None and video_info(Path(truth.video_path)) is not None
    return truth if ok else None


# --- capture ----------------------------------------------------------------------------------------------------

def capture_stage(input_path: Path, dataset_dir: Path, options, summary: dict, redo: bool, truth=None) -> bool:
    """Footage -> posed dataset (``nerfstage.capture.pipeline.run_capture``)."""
    start = time.perf_counter()
    request = {"input": str(Path(input_path).resolve()), "frames": options.frames, "max_size": options.max_size,
               "seed": options.seed}
    skipped = not redo and _same_request(summary, "capture", request) and _valid_dataset(dataset_dir)
    if skipped:
        report = json.loads((dataset_dir / "capture_report.json").read_text())
    else:
        _write_stamp(summary, "capture", request)
        capture = CaptureOptions(frames=options.frames, max_size=options.max_size, seed=options.seed,
                                 overwrite=True, progress=options.progress)
        report = run_capture(Path(input_path), dataset_dir, capture).report
    figures = {"frames_registered": int(report["frames_registered"]),
               "frames_selected": int(report["frames_selected"]),
               "mean_reprojection_error_px": report["mean_reprojection_error_px"], "warnings": report["warnings"]}
    if truth is not None:
        figures |= pose_figures(truth, dataset_dir, report)
    _record(summary, "capture", skipped, start, [dataset_dir / "transforms.json", dataset_dir / "capture_report.json"],
            **figures)
    return not skipped


def _valid_dataset(dataset_dir: Path) -> bool:
    if not (dataset_dir / "capture_report.json").is_file() or not (dataset_dir / "transforms.json").is_file():
        return False
    try:
        return len(load_dataset(dataset_dir / "transforms.json").frames) >= 2
    except NerfstageError:
        return False


def pose_figures(truth, dataset_dir: Path, report: dict) -> dict[str, Any]:
    """Pose error of the captured cameras against the true ones, after a similarity alignment."""
    dataset = load_dataset(dataset_dir)
    indices = report["source_frame_indices"]  # video frame index of frame_00001.jpg, frame_00002.jpg, ...
    rows = [indices[int(f.image_path.stem.split("_")[-1]) - 1] for f in dataset.frames]
    true = truth.world_from_cams[rows]  # [N, 4, 4]
    rotation_deg, centre = pose_errors(dataset.world_from_cams(), true)
    return {"mean_rotation_error_deg": float(rotation_deg.mean()),
            "mean_centre_error_fraction": float(centre.mean() / trajectory_size(true))}


# --- train ------------------------------------------------------------------------------------------------------

def train_request(options) -> dict[str, Any]:
    """The TrainConfig the chain asks for, as plain JSON (preset + overrides, seed, device)."""
    base = config_to_dict(build_config(options.train_preset, device=options.device, seed=options.seed))
    return _merge(base, options.train_overrides)


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def train_stage(dataset_dir: Path, run_dir: Path, options, summary: dict, redo: bool, on_step=None,
                ranks: Ranks | None = None) -> bool:
    """Dataset -> trained run (``nerfstage.nerf.trainer.train``), resumed from its checkpoint when interrupted.
    Under torchrun every rank trains (data-parallel); rank 0 decides what to redo and writes the run."""
    ranks = ranks or Ranks()
    start = time.perf_counter()
    request = train_request(options)
    metrics, resume, resumed_from = ranks.share(_train_decision(run_dir, summary, request, redo) if ranks.main
                                                else None)
    skipped = metrics is not None
    if not skipped:
        if ranks.main:
            _write_stamp(summary, "train", request)
        config = config_from_dict(TrainConfig, request)
        metrics = train(dataset_dir, run_dir, None if resume else config, resume=resume, overwrite=not resume,
                        progress=options.progress, on_step=on_step)
    files = [run_dir / "config.json", run_dir / "metrics.json", latest_checkpoint(run_dir)]
    _record(summary, "train", skipped, start, files, psnr=metrics["psnr"], ssim=metrics["ssim"],
            steps=metrics["steps"], split=metrics["split"], eval_views=metrics["eval_views"],
            train_seconds=round(metrics["train_seconds"], 1), device=metrics["device"],
            resumed_from_step=resumed_from)
    return not skipped


def _train_decision(run_dir: Path, summary: dict, request: dict, redo: bool) -> tuple[dict | None, bool, int]:
    """(metrics of a finished run of the same request or None, resume from its checkpoint?, step resumed from)."""
    same = not redo and _same_request(summary, "train", request)
    metrics = finished_metrics(run_dir) if same else None
    resume = same and metrics is None and (run_dir / "config.json").is_file()
    latest = latest_checkpoint(run_dir) if resume else None
    return metrics, resume, checkpoint_step(latest) if latest is not None else 0


# --- render -----------------------------------------------------------------------------------------------------

def render_stage(run_dir: Path, renders_dir: Path, options, summary: dict, redo: bool, truth=None,
                 ranks: Ranks | None = None) -> bool:
    """Trained run -> orbit.mp4 and dolly_zoom.mp4 (``nerfstage.render.pipeline.render_path``); an interrupted
    video continues from its frame cache. With the demo's ``truth`` (a SyntheticCapture), each video is also
    rendered as ground truth from the same cameras (``renders/ground_truth/``) and the stage's ``novel_path``
    figures hold its PSNR / SSIM against it (``chain_truth``). Under torchrun the frames of each video are split
    across the ranks and rank 0 encodes the MP4 (the same file as one process writes)."""
    ranks = ranks or Ranks()
    start = time.perf_counter()
    request = {"width": options.video_width, "height": options.video_height, "seconds": options.video_seconds,
               "fps": options.video_fps}
    same, infos = ranks.share(_render_decision(renders_dir, options, summary, request, redo) if ranks.main
                              else None)
    todo = [name for name, info in infos.items() if info is None]
    rendered = {}
    run = _load(run_dir, options) if todo or (truth is not None and ranks.main) else None
    if todo and ranks.main:
        _write_stamp(summary, "render", request)
    for name in todo:
        rendered[name] = _render_video(run, renders_dir / VIDEOS[name], chain_path(run, name, options), options,
                                       resume=same)
    ranks.on_main(summary, _finish_render, run, renders_dir, options, summary, truth, todo, infos, rendered, start)
    return bool(todo)


def _render_decision(renders_dir: Path, options, summary: dict, request: dict,
                     redo: bool) -> tuple[bool, dict[str, Any]]:
    """(same request as last time?, each video's info when it is still valid, else None)."""
    same = not redo and _same_request(summary, "render", request)
    return same, {name: _valid_video(renders_dir / file, options) if same else None for name, file in VIDEOS.items()}


def _finish_render(run: LoadedRun | None, renders_dir: Path, options, summary: dict, truth, todo: list[str],
                   infos: dict[str, Any], rendered: dict[str, int], start: float) -> None:
    """The render stage's summary entry: the videos' infos and, for the demo, the novel-path figures."""
    figures = {}
    for name in todo:
        infos[name] = video_info(renders_dir / VIDEOS[name])
    files = [renders_dir / file for file in VIDEOS.values()]
    if truth is not None:
        figures["novel_path"], truth_files = _novel_path(run, renders_dir, truth, options, summary)
        files += truth_files
    _record(summary, "render", not todo, start, files, videos=infos, rendered_now=rendered, **figures)


def _valid_video(path: Path, options) -> dict[str, Any] | None:
    info = video_info(path)
    expected = (int(round(options.video_fps * options.video_seconds)), options.video_width, options.video_height)
    return info if info is not None and (info["frames"], info["width"], info["height"]) == expected else None


DOLLY_ZOOM_FOV_RATIO = 1.5
"""The chain's dolly zoom widens the fov 1.5 x: the camera moves about 40 % of the way in towards the subject
(2 x took it inside the objects of the demo's scene, into space no training camera saw)."""


def chain_path(run: LoadedRun, name: str, options) -> CameraPath:
    """The camera path of video ``name``, built from the run's training cameras and kept inside what they saw:
    the orbit flies the arc they cover (at their mean radius and height, looking where they look) and the dolly
    zoom starts in the middle of that arc and moves in, widening the fov ``DOLLY_ZOOM_FOV_RATIO`` x."""
    train = run.train_indices
    poses, intrinsics = run.world_from_cams[train], [run.intrinsics[i] for i in train]
    rig = rig_of(poses, intrinsics)
    start, span = training_arc(poses, rig.center)
    size = {"width": options.video_width, "height": options.video_height, "fps": options.video_fps,
            "seconds": options.video_seconds}
    if name == "orbit":
        shot = ShotOptions(path="orbit", start_deg=start, turns=max(span, 1.0) / 360.0, **size)
    else:
        shot = ShotOptions(path="dolly-zoom", start_deg=start + span / 2.0,
                           fov_end=min(DOLLY_ZOOM_FOV_RATIO * rig.fov_deg, 120.0), **size)
    return build_path(shot, poses, intrinsics)


def _render_video(run: LoadedRun, path: Path, camera_path: CameraPath, options, resume: bool) -> int:
    """Render one MP4 of the chain along ``camera_path``; returns the frames rendered now (fewer when resuming)."""
    render = RenderOptions(max_rays_per_chunk=options.max_rays_per_chunk, resume=resume, overwrite=True,
                           progress=options.progress)
    return render_path(run, path, ShotOptions(), render, path=camera_path).rendered


def _novel_path(run: LoadedRun, renders_dir: Path, truth, options, summary: dict) -> tuple[dict[str, Any], list[Path]]:
    """PSNR / SSIM of each chain video against the synthetic ground truth along the same cameras."""
    report = json.loads((_workdir(summary) / "dataset" / "capture_report.json").read_text())
    train = run.train_indices
    true = run_true_poses([run.image_paths[i] for i in train], report["source_frame_indices"], truth)
    true_from_norm = true_from_run(run.world_from_cams[train], true)
    figures, files = {}, []
    for name, file in VIDEOS.items():
        target = renders_dir / TRUTH_DIR / file
        figures[name] = novel_path_figures(renders_dir / file, chain_path(run, name, options), true_from_norm,
                                           target, options.video_fps)
        files.append(target)
    figures["mean_psnr"] = round(sum(figures[n]["psnr"] for n in VIDEOS) / len(VIDEOS), 3)
    figures["mean_ssim"] = round(sum(figures[n]["ssim"] for n in VIDEOS) / len(VIDEOS), 4)
    return figures, files


# --- export: mesh -----------------------------------------------------------------------------------------------

def mesh_stage(run_dir: Path, export_dir: Path, options, summary: dict, redo: bool) -> bool:
    """Trained run -> coloured GLB mesh in the dataset frame (``nerfstage.export.from_run.export_mesh``: the part of
    the scene box half the training cameras see)."""
    start = time.perf_counter()
    request = {"resolution": options.mesh_resolution, "max_faces": options.mesh_max_faces}
    path = export_dir / MESH_NAME
    same = not redo and _same_request(summary, "mesh", request)
    info = glb_faces(path) if same else None
    skipped = info is not None
    if not skipped:
        _write_stamp(summary, "mesh", request)
        export_mesh(_load(run_dir, options), path, MeshExportOptions(
            resolution=options.mesh_resolution, max_faces=options.mesh_max_faces, overwrite=True,
            progress=options.progress))
        info = glb_faces(path)
    _record(summary, "mesh", skipped, start, [path], **(info or {"faces": 0, "vertices": 0}))
    return not skipped


# --- export: Gaussian splats -----------------------------------------------------------------------------------

def splats_stage(run_dir: Path, export_dir: Path, options, summary: dict, redo: bool) -> bool:
    """Trained run -> Gaussian splats in the dataset frame, ``export/scene.ply`` (3DGS layout) or ``.spz`` /
    ``.glb`` (``nerfstage.export.splats_export.export_splats``: placed from the field, then distilled)."""
    start = time.perf_counter()
    request = {"format": options.splat_format, "max_splats": options.splat_max_splats, "steps": options.splat_steps,
               "time_budget_s": options.splat_time_budget_s}
    path = export_dir / f"{SPLATS_STEM}.{options.splat_format}"
    same = not redo and _same_request(summary, "splats", request)
    info = splat_info(path) if same else None
    skipped = info is not None
    if not skipped:
        _write_stamp(summary, "splats", request)
        init = SplatInitOptions(max_rays_per_chunk=options.max_rays_per_chunk, seed=options.seed)
        export_splats(_load(run_dir, options), path, SplatExportOptions(
            max_splats=options.splat_max_splats, steps=options.splat_steps, time_budget_s=options.splat_time_budget_s,
            init=init, overwrite=True, progress=options.progress))
        info = splat_info(path)
    _record(summary, "splats", skipped, start, [path], format=options.splat_format,
            **(info or {"splats": 0, "bytes": 0}))
    return not skipped


# --- export: latlong plate and cubemap --------------------------------------------------------------------------

def panorama_stage(run_dir: Path, export_dir: Path, options, summary: dict, redo: bool,
                   ranks: Ranks | None = None) -> bool:
    """Trained run -> EXR latlong plate and six EXR cubemap faces (``nerfstage.export.panorama``). Under torchrun
    the tiles are split across the ranks and rank 0 stitches each file."""
    ranks = ranks or Ranks()
    start = time.perf_counter()
    request = {"plate_width": options.plate_width, "cubemap_face": options.cubemap_face}
    plate = export_dir / PLATE_NAME
    info = ranks.share(_panorama_decision(plate, export_dir, options, summary, request, redo) if ranks.main
                       else None)
    skipped = info is not None
    if not skipped:
        if ranks.main:
            _write_stamp(summary, "panorama", request)
        run = _load(run_dir, options)
        _export_panorama(run, plate, "latlong", options)
        _export_panorama(run, export_dir / CUBEMAP_DIR / "cubemap.exr", "cubemap", options)
    ranks.on_main(summary, _finish_panorama, plate, export_dir, options, summary, info, skipped, start)
    return not skipped


def _panorama_decision(plate: Path, export_dir: Path, options, summary: dict, request: dict,
                       redo: bool) -> dict[str, Any] | None:
    """The plate's and faces' infos when they are still valid for the same request, else None."""
    same = not redo and _same_request(summary, "panorama", request)
    return _valid_panorama(plate, _cube_faces(export_dir / CUBEMAP_DIR), options) if same else None


def _finish_panorama(plate: Path, export_dir: Path, options, summary: dict, info: dict[str, Any] | None,
                     skipped: bool, start: float) -> None:
    faces = _cube_faces(export_dir / CUBEMAP_DIR)
    if not skipped:
        info = _valid_panorama(plate, faces, options) or {}
    _record(summary, "panorama", skipped, start, [plate, *faces], **info)


def _cube_faces(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.exr")) if folder.is_dir() else []


def _valid_panorama(plate: Path, faces: list[Path], options) -> dict[str, Any] | None:
    plate_info = exr_size(plate)
    face_infos = [exr_size(face) for face in faces]
    want_plate = latlong_size(options.plate_width)
    if plate_info is None or (plate_info["width"], plate_info["height"]) != want_plate or len(faces) != 6:
        return None
    if any(f is None or (f["width"], f["height"]) != (options.cubemap_face,) * 2 for f in face_infos):
        return None
    return {"plate": plate_info, "cubemap_face": face_infos[0], "cubemap_faces": len(faces)}


def _export_panorama(run: LoadedRun, output: Path, layout: str, options) -> None:
    size = {"width": options.plate_width} if layout == "latlong" else {
        "width": 4 * options.cubemap_face, "face_size": options.cubemap_face, "cubemap_layout": "six"}
    export_panorama(run, output, PanoramaOptions(layout=layout, max_rays_per_chunk=options.max_rays_per_chunk,
                                                 overwrite=True, progress=options.progress, **size))
