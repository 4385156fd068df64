"""Tracked-camera background plates for in-camera VFX: one rendered frame per row of a track file.

``export_plates(run, "track.csv", "plates/", PlateOptions(overscan_percent=10))`` reads the track (CSV or JSON,
schema in ``track.py``: per-frame pose in the dataset frame, field of view or focal length + sensor size, plate
size), grows every plate by the overscan, maps the poses into the run's normalised frame and renders each one
with a centred pinhole camera.

Files: ``DIR/plate_NNNNN.exr`` numbered by the track's ``frame`` column (frame 1001 -> ``plate_01001.exr``), EXR
by default: scene-linear RGBA half float, colour over black (premultiplied), tiled, with Rec.709
``chromaticities`` and ``colorSpace = lin_rec709`` in the header (as ``panorama.py``); or ``png``: 8-bit sRGB RGB
over white. Each plate is written to a temp name and renamed when complete. Resumable: plates this tool wrote
(listed in ``DIR/nerfstage_plates.json``) that read back whole at the right size are skipped
(``overwrite`` re-renders them), so an interrupted export continues where it stopped. A file under a plate's name
that this tool did not write is never replaced without ``overwrite``: the export is refused, naming it, before
any plate renders. A malformed track file is refused before anything is created.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from ..core.cameras import PerspectiveCamera
from ..core import shards
from ..core.errors import ConfigError, InputError, OutputExistsError
from ..core.shards import ShardSpec, process_group
from ..nerf.config import MAX_RAYS_PER_CHUNK
from ..nerf.run import LoadedRun
from ..render.image import DEFAULT_MEMORY_BUDGET, ImageOptions, check_memory_budget, render_image
from ..render.pipeline import encode_rgb
from ..render.writers import is_valid_frame, write_png
from .panorama_io import write_rgba_exr
from .track import TrackedFrame, read_track, to_normalized

PlateFormat = Literal["exr", "png"]
PLATE_BYTES_PER_PIXEL = 80
"""RAM per pixel of one plate: the frame buffers of ``render_image`` (rgb, alpha, depth, valid) plus the encoded
RGBA planes (float32 before the cast) and slack."""


@dataclass(frozen=True)
class PlateOptions:
    """How tracked plates are rendered and written."""

    overscan_percent: float = 0.0
    """Grow each plate by this percentage of its size (half on each side), fov grown to keep the pixel size."""
    format: PlateFormat = "exr"
    """exr (scene-linear RGBA) | png (8-bit sRGB)."""
    half: bool = True
    """EXR plates as half floats (float32 otherwise)."""
    max_rays_per_chunk: int = MAX_RAYS_PER_CHUNK
    """Rays sent to the model at once (bounds the model's working memory)."""
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    """RAM one plate's buffers may take (``PLATE_BYTES_PER_PIXEL``); larger plates are refused before any work."""
    size: tuple[int, int] | None = None
    """Plate (width, height) for track files that carry no size (Nuke .chan, USD without RenderSettings)."""
    camera_prim: str | None = None
    """USD tracks: the camera prim to read (None = the stage's first camera)."""
    overwrite: bool = False
    """Re-render plates that are already in the folder (otherwise valid ones are kept: resume)."""
    progress: bool = True
    """Show a progress bar over the plates."""


@dataclass
class PlatesResult:
    """What ``export_plates`` produced."""

    directory: Path
    """The plate folder."""
    files: list[Path]
    """Every plate of the track, in track order (rendered now or kept)."""
    rendered: int
    """Plates rendered now."""
    skipped: int
    """Valid plates already there, kept."""
    seconds: float
    """Wall-clock seconds."""
    frames: list[TrackedFrame] = field(default_factory=list)
    """The tracked frames (after overscan), poses in the run's normalised frame."""


def plate_path(directory: Path, frame: int, fmt: str) -> Path:
    """``DIR/plate_NNNNN.fmt`` of a track frame number."""
    return Path(directory) / f"plate_{frame:05d}.{fmt}"


def _check(options: PlateOptions) -> None:
    if options.format not in ("exr", "png"):
        raise ConfigError(f"plate format {options.format!r}: expected exr or png")
    ImageOptions(max_rays_per_chunk=int(options.max_rays_per_chunk))  # its check of the chunk size, before any work


MANIFEST = "nerfstage_plates.json"
"""The plates this tool wrote into a folder (``{"written": [file names]}``): what resume may keep or replace."""


PART_GLOB = ".nerfstage_plates.part-*.json"
"""Manifests of the shards of a sharded export (one per shard and rank: no two processes write one file)."""


def _read_one(file: Path) -> set[str]:
    try:
        return {str(name) for name in json.loads(file.read_text(encoding="utf-8"))["written"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _read_manifest(directory: Path) -> set[str]:
    """Every plate this tool wrote into ``directory`` (the manifest and any shard's part of it)."""
    names = _read_one(directory / MANIFEST)
    for part in sorted(directory.glob(PART_GLOB)):
        names |= _read_one(part)
    return names


def _record(directory: Path, manifest: set[str], path: Path, name: str = MANIFEST) -> None:
    """Add ``path`` (just written) to the folder's manifest (or the shard's part ``name``), atomically."""
    manifest.add(path.name)
    tmp = directory / f".{name}.partial"
    tmp.write_text(json.dumps({"written": sorted(manifest)}, indent=1), encoding="utf-8")
    os.replace(tmp, directory / name)


def _foreign(paths: list[Path], manifest: set[str]) -> list[Path]:
    """The existing ``paths`` this tool did not write (not in the folder's manifest)."""
    return [p for p in paths if p.name not in manifest and (p.exists() or p.is_symlink())]


def _make_folder(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a folder; give a folder for the plates")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{directory}: cannot create the plate folder ({exc.strerror or exc})") from exc


def render_plate(run: LoadedRun, frame: TrackedFrame, path: Path, options: PlateOptions) -> Path:
    """Render one tracked frame (pose in the normalised frame) and write it to ``path`` atomically."""
    camera = PerspectiveCamera.from_intrinsics(frame.intrinsics())
    exr = options.format == "exr"
    image_options = ImageOptions(int(options.max_rays_per_chunk), (0.0, 0.0, 0.0) if exr else (1.0, 1.0, 1.0))
    images = render_image(run.model, camera, frame.world_from_cam, ("rgb", "alpha"), image_options)
    if not exr:
        return write_png(path, encode_rgb(images["rgb"], "png"), overwrite=True)
    dtype = np.float16 if options.half else np.float32
    planes = np.concatenate([encode_rgb(images["rgb"], "exr").transpose(2, 0, 1), images["alpha"][None]])
    return write_rgba_exr(path, planes.astype(dtype), envmap=False, overwrite=True)


def export_plates(run: LoadedRun, track_file: Path, out_dir: Path, options: PlateOptions | None = None,
                  shard: ShardSpec | None = None) -> PlatesResult:
    """One background plate per row of ``track_file`` from the LoadedRun ``run`` into ``out_dir`` (see the module
    docstring); plates already there and valid are kept unless ``options.overwrite``. ``shard`` (default: the
    ``torchrun`` environment) renders only some plates (``--frames`` counts track rows from 1)."""
    options = options or PlateOptions()
    shard = shard or ShardSpec.parse()
    _check(options)
    # InputError before anything is written
    frames = read_track(track_file, options.overscan_percent, options.size, options.camera_prim)
    frames = to_normalized(frames, run.scene.transform, run.scene.scale)
    largest = max(frames, key=lambda f: f.width * f.height)
    check_memory_budget(f"plate {largest.frame} ({largest.width}x{largest.height})",
                        largest.width * largest.height * PLATE_BYTES_PER_PIXEL, options.memory_budget_bytes,
                        "choose a smaller plate size in the track or a larger memory budget")
    directory = Path(out_dir)
    paths = [plate_path(directory, frame.frame, options.format) for frame in frames]
    mine = shard.select(len(frames)) if shard.sharded else list(range(len(frames)))
    manifest = _read_manifest(directory)
    foreign = [] if options.overwrite else _foreign([paths[i] for i in mine], manifest)
    if foreign:
        raise OutputExistsError(f"{foreign[0]}: exists and was not written by `nerfstage export plates` "
                                f"({len(foreign)} such file(s)); pass --overwrite to replace them")
    _make_folder(directory)
    start = time.perf_counter()
    if not shard.sharded:
        rendered = _render_plates(run, frames, paths, mine, options, manifest, MANIFEST, True)
    else:
        with process_group("cpu"):
            rendered = _render_shard(run, frames, paths, mine, options, shard)
    return PlatesResult(directory, paths, rendered, len(mine) - rendered, time.perf_counter() - start, frames)


def _render_plates(run: LoadedRun, frames: list[TrackedFrame], paths: list[Path], mine: list[int],
                   options: PlateOptions, manifest: set[str], manifest_name: str, progress: bool) -> int:
    """Render the plates ``mine`` (indices into ``frames``) not already valid; the number rendered."""
    rendered = 0
    for index in tqdm(mine, desc="plates", unit="plate", disable=not (options.progress and progress),
                      dynamic_ncols=True):
        frame, path = frames[index], paths[index]
        if not options.overwrite and path.name in manifest and is_valid_frame(path, frame.width, frame.height):
            continue
        render_plate(run, frame, path, options)
        _record(path.parent, manifest, path, manifest_name)
        rendered += 1
    return rendered


def _render_shard(run: LoadedRun, frames: list[TrackedFrame], paths: list[Path], mine: list[int],
                  options: PlateOptions, spec: ShardSpec) -> int:
    """This process's plates, its part of the manifest, the job file; rank 0 of a whole job assembles."""
    directory = paths[0].parent
    job = {"kind": "plates", "format": options.format,
           "plates": [[p.name, f.width, f.height] for p, f in zip(paths, frames, strict=True)]}
    if spec.rank == 0:
        shards.write_job(directory, job, options.overwrite)
    shards.barrier()
    if spec.rank != 0:
        shards.write_job(directory, job, overwrite=False)
    part = f".nerfstage_plates.part-{spec.shard[0] if spec.shard else 0}-{spec.rank}.json"
    rendered = _render_plates(run, frames, paths, mine, options, _read_manifest(directory), part,
                              spec.shows_progress)
    shards.mark_done(directory, spec)
    shards.barrier()
    if spec.assembles:
        assemble_plates(directory)
    return rendered


def assemble_plates(directory: Path) -> list[Path]:
    """Check a sharded plate export is complete (InputError naming missing plates and their shard) and merge the
    shards' manifests into the folder's one; returns the plates."""
    directory = Path(directory)
    job = shards.read_job(directory)
    shards.require(job is not None and job.get("kind") == "plates",
                   f"{directory}: no sharded plate export to assemble (no {shards.JOB_FILE} in it)")
    manifest = _read_manifest(directory)
    plates = [(directory / name, int(w), int(h)) for name, w, h in job["plates"]]
    missing = [i for i, (p, w, h) in enumerate(plates) if p.name not in manifest or not is_valid_frame(p, w, h)]
    if missing:
        raise InputError(shards.missing_message(directory, "plates", [i + 1 for i in missing],
                                                [plates[i][0].name for i in missing], shards.shard_total(directory)))
    tmp = directory / f".{MANIFEST}.partial"
    tmp.write_text(json.dumps({"written": sorted(manifest)}, indent=1), encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)
    for part in directory.glob(PART_GLOB):
        part.unlink(missing_ok=True)
    (directory / shards.JOB_FILE).unlink(missing_ok=True)
    shards.clear_done(directory)
    return [p for p, _, _ in plates]
