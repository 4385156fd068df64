"""The whole chain in one call: footage -> dataset -> trained run -> videos, mesh, splats and plates
(``nerfstage run``), and the same on the built-in synthetic capture (``nerfstage demo``).

Stages run in order (``chain_stages``) and each one is skipped when its outputs already exist and are valid (an MP4
decodes with the right frame count and size, the GLB loads with faces, the EXR opens, the run's metrics.json
reports its final step), so an interrupted run continues where it stopped: training resumes from its newest
checkpoint and a half-written video from its frame cache. A stage that runs again makes every later stage run
again. ``overwrite`` redoes every stage.

WORKDIR layout::

    synthetic/    demo only: synthetic.mp4 + ground_truth.json (the footage, with its true poses)
    dataset/      capture: images/, transforms.json, sparse model, capture_report.json
    run/          train: config.json, dataparser_transforms.json, checkpoints/, metrics.json
    renders/      orbit.mp4, dolly_zoom.mp4; demo: ground_truth/ (the same cameras rendered by the synthetic scene)
    export/       mesh.glb, scene.ply (Gaussian splats; or .spz / .glb), plate_latlong.exr, cubemap/ (six EXR faces)
    thumbnails/   PNG previews: a middle frame of each MP4, the plate tone-mapped, the mesh's coloured vertices
    summary.json  per stage: skipped, seconds, figures, files
    report.html   thumbnails, metrics, capture report and links to every file (one self-contained page)
    .chain/       the request each stage was last started with (see ``chain_stages``)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..capture.pipeline import CaptureOptions
from ..core.errors import ConfigError, InputError
from ..core.presets import DEFAULT_PRESET, DEMO_PRESET, Preset, check_preset, stage_overrides
from ..export.splats_export import DISTILL_TIME_BUDGET_S
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..render.splats.model import MAX_SPLATS
from . import chain_stages as stages
from .chain_ranks import Ranks
from .report import write_report

SplatFormat = Literal["ply", "spz", "glb"]
SPLAT_FORMATS: tuple[str, ...] = ("ply", "spz", "glb")


@dataclass
class ChainOptions:
    """What ``run_chain`` builds. The defaults are the ``default`` preset; ``chain_options(preset, ...)`` applies
    another preset's overrides (``nerfstage.core.presets``)."""

    preset: Preset = DEFAULT_PRESET
    """The preset these sizes came from (one of ``nerfstage.core.presets.PRESET_NAMES``); recorded in
    summary.json."""
    frames: int = CaptureOptions.frames
    """Capture: frames taken from a video."""
    max_size: int = CaptureOptions.max_size
    """Capture: longest image side, pixels."""
    train_preset: Preset = DEFAULT_PRESET
    """Training preset of ``nerfstage.nerf.config`` (sized for the device)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields replacing the preset's (nested dicts for model / data / model.encoding), e.g. steps."""
    video_width: int = 960
    """Orbit and dolly-zoom MP4 width, pixels (even)."""
    video_height: int = 540
    """Orbit and dolly-zoom MP4 height, pixels (even)."""
    video_seconds: float = 4.0
    """Duration of each MP4, seconds."""
    video_fps: float = 30.0
    """Frame rate of each MP4."""
    plate_width: int = 4096
    """Width of the EXR latlong plate (its height is half of it)."""
    cubemap_face: int = 1024
    """Face size of the EXR cubemap, pixels."""
    mesh_resolution: int = 256
    """Density-grid samples along the longest axis of the mesh's crop box."""
    mesh_max_faces: int = 200_000
    """Decimate the mesh to at most this many faces."""
    splat_format: SplatFormat = "ply"
    """File format of the Gaussian splats, ``export/scene.<format>``: ply (original 3DGS layout, what engines
    import), spz (compressed) or glb (glTF with KHR_gaussian_splatting)."""
    splat_max_splats: int = MAX_SPLATS
    """Most Gaussian splats exported."""
    splat_steps: int | None = None
    """Distillation steps of the splats against the field; None = the distillation's default, 0 = none."""
    splat_time_budget_s: float = DISTILL_TIME_BUDGET_S
    """Seconds the splat distillation may take at most."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays rendered at once in the render and export stages (the memory budget)."""
    seed: int = 0
    """Seed of every random step."""
    device: str = "auto"
    """auto | cpu | cuda."""
    overwrite: bool = False
    """Redo every stage even when its outputs are valid."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self):
        if self.splat_format not in SPLAT_FORMATS:
            raise ConfigError(f"splat_format={self.splat_format!r}: expected one of {', '.join(SPLAT_FORMATS)}",
                              field="splat_format")


def chain_options(preset: str = DEFAULT_PRESET, **overrides: Any) -> ChainOptions:
    """ChainOptions of ``preset`` (its capture and chain overrides, its training preset) with field ``overrides``
    (None = not given); ConfigError for an unknown preset or field."""
    check_preset(preset)
    names = {f.name for f in dataclasses.fields(ChainOptions)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ConfigError(f"unknown chain option(s) {', '.join(bad)}; expected some of {', '.join(sorted(names))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    from_preset = {**stage_overrides(preset, "capture"), **stage_overrides(preset, "chain")}
    return ChainOptions(**{"preset": preset, "train_preset": preset, **from_preset, **given})


@dataclass
class DemoFootage:
    """The synthetic footage of ``nerfstage demo``."""

    width: int = 640
    """Footage width, pixels."""
    height: int = 480
    """Footage height, pixels."""


TrainHook = Callable[[int], None]


def run_chain(input_path: Path, workdir: Path, options: ChainOptions | None = None,
              on_train_step: TrainHook | None = None) -> dict[str, Any]:
    """Run capture -> train -> render -> export on the video / image folder ``input_path`` into ``workdir``;
    write and return summary.json's dict (report.html beside it). ``on_train_step(step)`` is called after every
    training step (tests raise from it to simulate a kill). Without ``options`` it runs the default preset."""
    options = options or ChainOptions()
    input_path = Path(input_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: no such video or image folder; give the footage to run the chain on")
    workdir = _prepare_workdir(workdir)
    summary = _new_summary(workdir, input_path, options)
    with _chain_group(options) as ranks:
        return _stages_in_order(workdir, input_path, options, summary, on_train_step, None, False, ranks)


def run_demo(workdir: Path, options: ChainOptions | None = None, footage: DemoFootage | None = None,
             on_train_step: TrainHook | None = None) -> dict[str, Any]:
    """``run_chain`` on the built-in synthetic capture (written to WORKDIR/synthetic/), plus the capture's pose
    error against the true poses (summary stage ``capture``: ``mean_rotation_error_deg`` and
    ``mean_centre_error_fraction``) and the videos' PSNR / SSIM against the synthetic ground truth along the same
    cameras (summary stage ``render``: ``novel_path``, see ``chain_truth``). Without ``options`` it runs the
    ``DEMO_PRESET`` (as ``nerfstage demo``)."""
    options, footage = options or chain_options(DEMO_PRESET), footage or DemoFootage()
    workdir = _prepare_workdir(workdir)
    summary = _new_summary(workdir, None, options)
    summary["demo"] = asdict(footage)
    with _chain_group(options) as ranks:
        truth = ranks.on_main(summary, stages.synthetic_stage, workdir / "synthetic", options, footage, summary)
        rebuilt = not summary["stages"]["synthetic"]["skipped"]
        return _stages_in_order(workdir, Path(truth.video_path), options, summary, on_train_step, truth, rebuilt,
                                ranks)


def _prepare_workdir(workdir: Path) -> Path:
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise InputError(f"-o {workdir}: exists and is not a folder; give a work folder")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _new_summary(workdir: Path, input_path: Path | None, options: ChainOptions) -> dict[str, Any]:
    return {"workdir": str(workdir.resolve()), "input": None if input_path is None else str(input_path.resolve()),
            "options": asdict(options), "stages": {}, "files": []}


@contextmanager
def _chain_group(options: ChainOptions) -> Iterator[Ranks]:
    """This process's Ranks, inside its torchrun process group when there is one (``chain_ranks``)."""
    from ..core.shards import process_group  # light; the group itself imports torch.distributed
    from ..nerf.data import resolve_device  # heavy: torch

    with process_group(str(resolve_device(options.device))):
        yield Ranks()


def _stages_in_order(workdir: Path, input_path: Path, options: ChainOptions, summary: dict, on_train_step,
                     demo, rebuilt: bool, ranks: Ranks) -> dict[str, Any]:
    start = time.perf_counter()
    run_dir, export_dir = workdir / "run", workdir / "export"
    redo = ranks.on_main(summary, stages.capture_stage, input_path, workdir / "dataset", options, summary,
                         options.overwrite or rebuilt, demo)
    redo = stages.train_stage(workdir / "dataset", run_dir, options, summary, redo, on_train_step, ranks)
    stages.render_stage(run_dir, workdir / "renders", options, summary, redo, demo, ranks)
    ranks.on_main(summary, stages.mesh_stage, run_dir, export_dir, options, summary, redo)
    ranks.on_main(summary, stages.splats_stage, run_dir, export_dir, options, summary, redo)
    stages.panorama_stage(run_dir, export_dir, options, summary, redo, ranks)
    if ranks.main:
        summary["seconds"] = round(time.perf_counter() - start, 2)
        summary["files"] = _list_files(workdir, summary)
        _write_json(workdir / "summary.json", summary)
        write_report(workdir, summary)
        summary["files"].append("report.html")
        _write_json(workdir / "summary.json", summary)
    return ranks.share(summary)


def _list_files(workdir: Path, summary: dict) -> list[str]:
    """Every output file named by a stage (relative to WORKDIR), in stage order."""
    files = []
    for stage in summary["stages"].values():
        files.extend(stage.get("files", []))
    return files + ["summary.json"]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What the CLI prints after a run: one line per stage, the figures, where the files are."""
    lines = []
    for name, stage in summary["stages"].items():
        state = "kept (already valid)" if stage["skipped"] else f"done in {stage['seconds']:.1f} s"
        lines.append(f"{name:>10}: {state}")
    cap, train = summary["stages"]["capture"], summary["stages"]["train"]
    line = f"capture registered {cap['frames_registered']}/{cap['frames_selected']} frames"
    if "mean_rotation_error_deg" in cap:
        line += (f"; pose error vs truth: {cap['mean_rotation_error_deg']:.3f} deg, "
                 f"{100 * cap['mean_centre_error_fraction']:.3f} % of the path")
    lines.append(line)
    lines.append(f"train: {train['split']} PSNR {train['psnr']:.2f} dB, SSIM {train['ssim']:.4f} after "
                 f"{train['steps']} steps")
    splats = summary["stages"].get("splats")
    if splats:
        lines.append(f"splats: {splats['splats']} Gaussians, {splats['bytes'] / 1e6:.2f} MB "
                     f"({', '.join(splats['files'])})")
    novel = summary["stages"].get("render", {}).get("novel_path")
    if novel:
        lines.append(f"novel paths vs ground truth: PSNR {novel['mean_psnr']:.2f} dB, SSIM {novel['mean_ssim']:.4f} "
                     f"(orbit {novel['orbit']['psnr']:.2f} dB, dolly zoom {novel['dolly_zoom']['psnr']:.2f} dB)")
    workdir = Path(summary["workdir"])
    lines.append(f"files: {workdir}  (open {workdir / 'report.html'}; summary.json lists every file)")
    return lines
